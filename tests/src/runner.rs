//! The runner: forks each case, watches it, reports.

use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{ForkResult, Pid, setpgid};

use crate::{Case, Exit, Forked, Helper, sys};

/// The fork suite: each case forked into its own process under a watchdog.
///
/// Takes the arguments that cargo's test runner and cargo-nextest pass to
/// a test binary (those without a meaning here are accepted and ignored).
#[derive(Debug, Parser)]
#[command(name = "fork", args_override_self = true)]
struct Options {
    /// Runs the cases whose names contain a FILTER (all when none is given).
    #[arg(value_name = "FILTER")]
    filters: Vec<String>,
    /// Prints the names of the cases instead of running them.
    #[arg(long)]
    list: bool,
    /// A FILTER matches a whole name only.
    #[arg(long)]
    exact: bool,
    /// Prints what a passing case wrote too.
    #[arg(long, visible_alias = "show-output")]
    nocapture: bool,
    /// Seconds a case may run before the watchdog kills it (instead of its
    /// own limit).
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// The cases marked ignored only: there are none.
    #[arg(long)]
    ignored: bool,
    /// Ignored cases too: there are none, so this changes nothing.
    #[arg(long)]
    include_ignored: bool,
    /// How `--list` prints: `terse` as libtest does (`NAME: test`).
    #[arg(long, value_name = "FORMAT", value_parser = ["pretty", "terse"])]
    format: Option<String>,
    /// Accepted for cargo's test runner; the output is always plain.
    #[arg(short, long)]
    quiet: bool,
    /// Accepted for cargo's test runner; the output is always plain.
    #[arg(long, value_name = "WHEN", value_parser = ["auto", "always", "never"])]
    color: Option<String>,
    /// Accepted for cargo's test runner; the cases always run one at a time.
    #[arg(long, value_name = "N")]
    test_threads: Option<usize>,
}

enum Outcome {
    Passed,
    Failed(String),
}

/// Runs the suite made of `groups` of cases; prints `N passed, N failed`
/// last. Started as `--helper NAME ARGS...`, runs that helper instead.
pub fn main(groups: &[&[Case]], helpers: &[&[Helper]]) -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--helper") {
        let name = args.get(2).map_or("", String::as_str);
        let Some(helper) = helpers.iter().flat_map(|h| h.iter()).find(|h| h.name == name) else {
            eprintln!("no helper named {name:?}");
            return ExitCode::from(2);
        };
        let rest = &args[3..];
        return match std::panic::catch_unwind(|| (helper.run)(rest)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(101),
        };
    }
    let opts = Options::parse();
    let timeout = opts.timeout.map(|secs| Duration::try_from_secs_f64(secs).map_err(|e| e.to_string()));
    let timeout = match timeout.transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("--timeout: {e}");
            return ExitCode::from(2);
        }
    };
    let selected: Vec<Case> = groups
        .iter()
        .flat_map(|g| g.iter().copied())
        .filter(|c| {
            !opts.ignored
                && (opts.filters.is_empty()
                    || opts.filters.iter().any(|f| if opts.exact { c.name == f } else { c.name.contains(f.as_str()) }))
        })
        .collect();
    if opts.list {
        let terse = opts.format.as_deref() == Some("terse");
        for c in &selected {
            if terse {
                println!("{}: test", c.name);
            } else {
                println!("{}", c.name);
            }
        }
        return ExitCode::SUCCESS;
    }
    // Orphans of the cases come back to us to be killed and reaped.
    let _ = nix::sys::prctl::set_child_subreaper(true);

    println!("running {} cases", selected.len());
    let started = Instant::now();
    let mut failures = Vec::new();
    for case in &selected {
        let t = Instant::now();
        print!("{} ... ", case.name);
        let _ = std::io::stdout().flush();
        let timeout = timeout.unwrap_or(case.timeout);
        let (outcome, output) = run_case(case, timeout);
        let ms = t.elapsed().as_millis();
        match outcome {
            Outcome::Passed => {
                println!("ok ({ms} ms)");
                if opts.nocapture && !output.is_empty() {
                    println!("{output}");
                }
            }
            Outcome::Failed(why) => {
                println!("FAILED: {why} ({ms} ms)");
                failures.push((case.name, why, output));
            }
        }
    }
    for (name, why, output) in &failures {
        println!("\n---- {name}: {why} ----\n{}", output.trim_end());
    }
    if !failures.is_empty() {
        println!("\nfailed:");
        for (name, ..) in &failures {
            println!("    {name}");
        }
    }
    println!("\nfinished in {:.1} s", started.elapsed().as_secs_f64());
    let failed = failures.len();
    println!("{} passed, {failed} failed", selected.len() - failed);
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn run_case(case: &Case, timeout: Duration) -> (Outcome, String) {
    let out = match memfd_create("ipc-kit-case-output", MFdFlags::MFD_CLOEXEC) {
        Ok(fd) => fd,
        Err(e) => return (Outcome::Failed(format!("memfd_create: {e}")), String::new()),
    };
    let _ = std::io::stdout().flush();
    let pid = match sys::fork() {
        Err(e) => return (Outcome::Failed(format!("fork: {e}")), String::new()),
        Ok(ForkResult::Child) => {
            // A process group of its own, so the watchdog can kill the case
            // and everything it started at once.
            let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
            let redirected = sys::dup_onto(out.as_fd(), 1).and_then(|()| sys::dup_onto(out.as_fd(), 2));
            if redirected.is_err() {
                sys::exit_now(102);
            }
            let ok = std::panic::catch_unwind(case.run).is_ok();
            let _ = std::io::stdout().flush();
            sys::exit_now(if ok { 0 } else { 101 });
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    let _ = setpgid(pid, pid);
    let mut child = match sys::pidfd_open(pid) {
        Ok(pidfd) => Forked { pid, pidfd, exit: None },
        Err(e) => {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return (Outcome::Failed(format!("pidfd_open: {e}")), String::new());
        }
    };
    let outcome = match child.wait_timeout(timeout) {
        Some(Exit::Code(0)) => Outcome::Passed,
        Some(Exit::Code(101)) => Outcome::Failed("panicked".into()),
        Some(other) => Outcome::Failed(format!("ended with {other:?}")),
        None => {
            child.kill();
            child.wait();
            Outcome::Failed(format!("timed out after {timeout:?}: killed by the watchdog"))
        }
    };
    let strays = reap_strays(pid);
    let outcome = match outcome {
        Outcome::Passed if strays > 0 => {
            Outcome::Failed(format!("left {strays} process(es) running after it returned"))
        }
        o => o,
    };
    let mut file = std::fs::File::from(out);
    let mut output = String::new();
    let _ = file.rewind();
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    output.push_str(&String::from_utf8_lossy(&bytes));
    (outcome, output)
}

/// Kills and reaps whatever the case left: its process group, and any
/// orphan that was reparented to the runner. Returns how many of them were
/// still running (zombies do not count).
fn reap_strays(pgid: Pid) -> usize {
    let me = nix::unistd::getpid().as_raw();
    let strays = processes().filter(|p| (p.pgrp == pgid.as_raw() || p.ppid == me) && p.state != 'Z').count();
    let _ = kill(Pid::from_raw(-pgid.as_raw()), Signal::SIGKILL);
    for p in processes().filter(|p| p.ppid == me) {
        let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
    }
    // Reap every child; the killed ones die at once.
    while let Ok(_) | Err(nix::errno::Errno::EINTR) = waitpid(None, Some(WaitPidFlag::__WALL)) {}
    strays
}

struct ProcStat {
    pid: i32,
    state: char,
    ppid: i32,
    pgrp: i32,
}

/// Every process in /proc with its state, parent and process group.
fn processes() -> impl Iterator<Item = ProcStat> {
    let dir = std::fs::read_dir("/proc").into_iter().flatten();
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses: the fields after
        // the last ')' are state, ppid, pgrp.
        let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
        let state = rest.next()?.chars().next()?;
        let ppid = rest.next()?.parse().ok()?;
        let pgrp = rest.next()?.parse().ok()?;
        Some(ProcStat { pid, state, ppid, pgrp })
    })
}
