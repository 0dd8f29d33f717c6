//! `ipc-kit`: benchmarks the IPC mechanisms of this machine side by side,
//! each beside a raw libc implementation of the same work measured in the
//! same run; lists and removes the IPC objects on the machine; sends to and
//! receives from message queues.
#![deny(unsafe_code)]

mod bench;
mod hubs;
mod objects;
mod queue;
mod services;
mod sys;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ipc-kit", version, about = "Unix IPC on this machine: benchmarks, objects, queues")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Throughput of each mechanism between two processes, against a raw
    /// libc loop doing the same work, alternated in one run.
    Bench(bench::Args),
    /// The System V and POSIX IPC objects on this machine.
    Ls {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Removes IPC objects: addresses as `ls` prints them (shm-id:ID,
    /// msg-id:ID, sem-id:ID, posix-shm:/name, posix-sem:/name,
    /// posix-mq:/name).
    Rm {
        /// The objects to remove.
        objects: Vec<String>,
        /// Also every System V segment and queue that nobody is attached
        /// to and whose every recorded pid (creator, last attacher, last
        /// sender and receiver) is gone. The kernel records no creator for
        /// a queue and no receiver that has not received anything yet: a
        /// queue that only a dead process sent to looks orphaned even while
        /// a live process waits on it. Use --dry-run first and check.
        #[arg(long)]
        orphaned: bool,
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Sends a message: QUEUE is sysv:KEY (decimal or 0x hex), sysv-id:ID
    /// or posix:/name. Exit status 1 when the queue is full.
    Send {
        /// The queue.
        queue: queue::Address,
        /// The message text.
        message: String,
        /// The System V message type (default 1).
        #[arg(long = "type")]
        mtype: Option<i64>,
        /// The POSIX priority (default 0).
        #[arg(long)]
        priority: Option<u32>,
    },
    /// Receives a message and prints it. Exit status 1 when there is none
    /// (before the timeout, if one is given).
    Recv {
        /// The queue (as for send).
        queue: queue::Address,
        /// System V selector: any, N, <=N (lowest type up to N) or !N.
        #[arg(long = "type")]
        selector: Option<ipc_kit::msgq::Selector>,
        /// How long to wait, such as 250ms or 2s (default: do not wait).
        #[arg(long, value_parser = queue::parse_duration)]
        timeout: Option<std::time::Duration>,
        /// Print {"type"|"priority": …, "message": …, "bytes": …, "hex": …}
        /// ("message" is the text, with invalid UTF-8 replaced; "hex" is
        /// every byte).
        #[arg(long, conflicts_with = "raw")]
        json: bool,
        /// Write the message's bytes exactly as they are, with no newline
        /// added (for binary messages).
        #[arg(long)]
        raw: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return bad_arguments(e),
    };
    let result = match cli.command {
        Cmd::Bench(args) => bench::run(&args),
        Cmd::Ls { json } => {
            let (mut objects, notes) = objects::list();
            objects.extend(services::list());
            objects.extend(hubs::list());
            if json {
                for o in &objects {
                    println!("{}", o.to_json());
                }
                for n in &notes {
                    eprintln!("note: {n}");
                }
            } else {
                objects::print_table(&objects, &notes);
            }
            Ok(())
        }
        Cmd::Rm { objects: targets, orphaned, dry_run } => return rm(targets, orphaned, dry_run),
        Cmd::Send { queue, message, mtype, priority } => return finish(queue::send(&queue, &message, mtype, priority)),
        Cmd::Recv { queue, selector, timeout, json, raw } => {
            let form = if raw {
                queue::Form::Raw
            } else if json {
                queue::Form::Json
            } else {
                queue::Form::Text
            };
            return finish(queue::recv(&queue, selector, timeout, form));
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipc-kit: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A value that does not parse is told in one line, as the commands tell
/// their own errors, with exit status 2 (clap's); clap tells the rest
/// (usage errors, also with exit status 2) and prints help and versions.
fn bad_arguments(e: clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ErrorKind};
    let (arg, value) = (e.get(ContextKind::InvalidArg), e.get(ContextKind::InvalidValue));
    match (e.kind(), arg, value, std::error::Error::source(&e)) {
        (ErrorKind::ValueValidation, Some(arg), Some(value), Some(why)) => {
            eprintln!("ipc-kit: invalid value '{value}' for '{arg}': {why}");
            ExitCode::from(2)
        }
        _ => e.exit(),
    }
}

fn finish(outcome: queue::Outcome) -> ExitCode {
    match outcome {
        queue::Outcome::Done => ExitCode::SUCCESS,
        queue::Outcome::Nothing(msg) => {
            eprintln!("ipc-kit: {msg}");
            ExitCode::from(1)
        }
        queue::Outcome::Failed(msg) => {
            eprintln!("ipc-kit: {msg}");
            ExitCode::from(2)
        }
    }
}

fn rm(mut targets: Vec<String>, orphaned: bool, dry_run: bool) -> ExitCode {
    if orphaned {
        let (objects, _) = objects::list();
        targets.extend(objects.iter().filter(|o| o.is_orphaned()).map(|o| o.address.clone()));
    }
    if targets.is_empty() {
        eprintln!("ipc-kit: nothing to remove (name objects, or use --orphaned)");
        return ExitCode::from(1);
    }
    let mut failed = false;
    // A dry run checks each address as a removal would: well formed, and
    // naming an object that is there.
    let present = dry_run.then(|| objects::list().0);
    for t in &targets {
        if let Some(present) = &present {
            match objects::canonical(t) {
                Ok(a) if present.iter().any(|o| objects::canonical(&o.address).is_ok_and(|b| b == a)) => {
                    println!("would remove {t}");
                }
                Ok(_) => {
                    eprintln!("ipc-kit: cannot remove {t}: no such object");
                    failed = true;
                }
                Err(msg) => {
                    eprintln!("ipc-kit: {msg}");
                    failed = true;
                }
            }
            continue;
        }
        match objects::remove(t) {
            Ok(()) => println!("removed {t}"),
            Err(msg) => {
                eprintln!("ipc-kit: {msg}");
                failed = true;
            }
        }
    }
    if failed { ExitCode::from(2) } else { ExitCode::SUCCESS }
}
