//! `cargo xtask test | lint | ci | bench`: the project's tasks.
//!
//! - `test [FILTER...]`: unit, doc and property tests of the workspace, then
//!   the fork suite (FILTERs pick its cases, and skip the other tests),
//!   which runs the `ipc-kit` command and the examples (built first), then
//!   the tidy checks of the repository's conventions (`tests/tidy.rs`),
//!   then a check that no System V object, /dev/shm entry, POSIX queue or
//!   scratch directory was left.
//! - `lint`: rustfmt, clippy with warnings denied, rustdoc with warnings
//!   denied.
//! - `loom`: the loom model check of the shared-memory channel's ring
//!   (`--cfg loom`, its own target directory).
//! - `ci`: `test`, `lint`, `loom`, `stress --quick`, `faults --quick`, then
//!   `fuzz --seconds 10`.
//! - `bench [ARGS...]`: `ipc-kit bench` in release mode.
//! - `stress [--quick] [ARGS...]`: every mechanism under N producer and M
//!   consumer processes (`ipc-kit-stress`, release mode), then the leak
//!   check.
//! - `fuzz [--seconds S] [ARGS...]`: the fuzz targets (frame decoder, byte
//!   records, slot indices, channel header, channels prepared before
//!   connecting, the FIFO server's requests) for S seconds each (default
//!   30), built with overflow checks and debug assertions.
//! - `faults [--quick] [ARGS...]`: peers of every mechanism killed at random
//!   points, and what the survivors see (`ipc-kit-faults`, release mode),
//!   then the leak check.

mod leaks;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = args.split_first().map_or(("help", &[][..]), |(t, r)| (t.as_str(), r));
    let result = match task {
        "test" => test(rest),
        "lint" => lint(),
        "ci" => test(&[])
            .and_then(|()| lint())
            .and_then(|()| loom())
            .and_then(|()| stress(&["--quick".into()]))
            .and_then(|()| faults(&["--quick".into()]))
            .and_then(|()| fuzz(&["--seconds".into(), "10".into()])),
        "loom" => loom(),
        "bench" => bench(rest),
        "stress" => stress(rest),
        "faults" => faults(rest),
        "fuzz" => fuzz(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <test [FILTER...] | lint | loom | ci | bench [ARGS...] | stress [--quick] [ARGS...] \
                 | faults [--quick] [ARGS...] | fuzz [--seconds S] [ARGS...]>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(project_root());
    cmd
}

fn run(what: &str, cmd: &mut Command) -> Result {
    eprintln!("==> {what}");
    let status = cmd.status().map_err(|e| format!("{what}: cannot start: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{what} failed ({status})")) }
}

fn test(filters: &[String]) -> Result {
    leak_checked(|| {
        if filters.is_empty() {
            run("unit, doc and property tests", cargo().args(["test", "--workspace", "--exclude", "ipc-kit-tests"]))?;
            run("the stress program's own tests", cargo().args(["test", "--package", "ipc-kit-tests", "--bins"]))?;
        }
        // The suite runs the real `ipc-kit` binary and the examples too,
        // and so does tidy.
        run("the ipc-kit command", cargo().args(["build", "--package", "ipc-kit-cli"]))?;
        run("the examples", cargo().args(["build", "--workspace", "--examples"]))?;
        let suite = run(
            "fork suite",
            cargo().args(["test", "--package", "ipc-kit-tests", "--test", "fork", "--"]).args(filters),
        );
        // Last, so that a convention out of step does not hide the
        // suite's results.
        if filters.is_empty() {
            let mut tidy = cargo();
            tidy.args(["test", "--package", "ipc-kit-tests", "--test", "tidy"]);
            suite.and(run("tidy: the repository's conventions", &mut tidy))
        } else {
            suite
        }
    })
}

/// Runs `task`, then checks that no System V object, /dev/shm entry,
/// POSIX queue or scratch directory appeared meanwhile. The check runs
/// after a failure too: a failing run must not leave objects behind either.
fn leak_checked(task: impl FnOnce() -> Result) -> Result {
    let before = leaks::Snapshot::take();
    let mut outcome = task();
    let after = leaks::Snapshot::take();
    eprintln!("==> leak check");
    let leaked = after.new_since(&before);
    for note in after.notes() {
        eprintln!("    note: {note}");
    }
    if leaked.is_empty() {
        eprintln!("    nothing left behind ({})", after.summary());
    } else {
        for l in &leaked {
            eprintln!("    LEAKED: {l}");
        }
        outcome = outcome.and(Err(format!("{} IPC object(s) left behind", leaked.len())));
    }
    outcome
}

fn lint() -> Result {
    run("rustfmt", cargo().args(["fmt", "--all", "--check"]))?;
    run("clippy", cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    run("rustdoc", cargo().args(["doc", "--workspace", "--no-deps"]).env("RUSTDOCFLAGS", "-D warnings"))
}

fn loom() -> Result {
    let target = project_root().join("target").join("loom");
    run(
        "loom model check of the channel ring",
        cargo()
            .args(["test", "--release", "--package", "ipc-shm", "--test", "loom"])
            .env("RUSTFLAGS", "--cfg loom")
            .env("CARGO_TARGET_DIR", target)
            .env("LOOM_MAX_PREEMPTIONS", std::env::var("LOOM_MAX_PREEMPTIONS").unwrap_or_else(|_| "3".into())),
    )
}

fn bench(args: &[String]) -> Result {
    run(
        "ipc-kit bench",
        cargo().args(["run", "--release", "--package", "ipc-kit-cli", "--bin", "ipc-kit", "--", "bench"]).args(args),
    )
}

fn stress(args: &[String]) -> Result {
    release_program("ipc-kit-stress", args)
}

fn faults(args: &[String]) -> Result {
    release_program("ipc-kit-faults", args)
}

fn fuzz(args: &[String]) -> Result {
    leak_checked(|| {
        run(
            "ipc-kit-fuzz",
            cargo()
                .args(["run", "--profile", "fuzz", "--package", "ipc-kit-tests", "--bin", "ipc-kit-fuzz", "--"])
                .args(args),
        )
    })
}

/// Runs one of the test crate's programs in release mode, under the leak
/// check.
fn release_program(bin: &str, args: &[String]) -> Result {
    leak_checked(|| {
        run(bin, cargo().args(["run", "--release", "--package", "ipc-kit-tests", "--bin", bin, "--"]).args(args))
    })
}
