//! `ipc-kit`: benchmarks the IPC mechanisms of this machine side by side,
//! each beside a raw libc implementation of the same work measured in the
//! same run.
#![deny(unsafe_code)]

mod bench;
mod sys;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ipc-kit", version, about = "Unix IPC on this machine: benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Throughput of each mechanism between two processes, against a raw
    /// libc loop doing the same work, alternated in one run.
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipc-kit: {e}");
            ExitCode::FAILURE
        }
    }
}
