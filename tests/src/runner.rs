//! The runner: forks each case, watches it, reports.

use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{ForkResult, Pid, setpgid};

use crate::{Case, Exit, Forked, Helper, sys};

struct Options {
    list: bool,
    show_output: bool,
    exact: bool,
    filters: Vec<String>,
    timeout: Option<Duration>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options { list: false, show_output: false, exact: false, filters: Vec::new(), timeout: None };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--list" => o.list = true,
            "--nocapture" | "--show-output" => o.show_output = true,
            "--exact" => o.exact = true,
            "--timeout" => {
                let secs: f64 = args.next().and_then(|s| s.parse().ok()).ok_or("--timeout takes seconds")?;
                o.timeout = Some(Duration::from_secs_f64(secs));
            }
            // Flags that cargo's test runner passes to every test binary.
            "--quiet" | "-q" | "--color=auto" | "--color=never" | "--color=always" => {}
            "-h" | "--help" => {
                return Err("usage: fork [--list] [--exact] [--nocapture] [--timeout SECS] [FILTER...]\n\
                     Runs every case whose name contains a FILTER (all when none is given)."
                    .into());
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => o.filters.push(s.to_owned()),
        }
    }
    Ok(o)
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
    let opts = match parse_args() {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let selected: Vec<Case> = groups
        .iter()
        .flat_map(|g| g.iter().copied())
        .filter(|c| {
            opts.filters.is_empty()
                || opts.filters.iter().any(|f| if opts.exact { c.name == f } else { c.name.contains(f.as_str()) })
        })
        .collect();
    if opts.list {
        for c in &selected {
            println!("{}", c.name);
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
        let timeout = opts.timeout.unwrap_or(case.timeout);
        let (outcome, output) = run_case(case, timeout);
        let ms = t.elapsed().as_millis();
        match outcome {
            Outcome::Passed => {
                println!("ok ({ms} ms)");
                if opts.show_output && !output.is_empty() {
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
