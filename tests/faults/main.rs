//! `ipc-kit-faults`: peers killed with SIGKILL at random points, and what
//! the survivor sees.
//!
//! Every scenario runs many times (200 by default, 20 with `--quick`). In
//! each run a victim process works the mechanism in a loop — sending,
//! receiving, holding a lock, or opening and creating the object — and is
//! killed after a random delay (sometimes at once, so that the kill lands
//! in its set-up), or at a failpoint between the two steps of making a
//! named object (ipc-sync's `failpoints` feature). Then the survivor
//! checks, within a bound:
//!
//! - that it gets the documented outcome: end of file or a truncated
//!   frame from a pipe whose writer died, `BrokenPipe` writing to one
//!   whose reader died, `Disconnected` from a channel, `OwnerDied` from a
//!   robust mutex, the semaphore given back by `SEM_UNDO`; queues, which
//!   know no peers, keep every message;
//! - that nothing the victim acknowledged is lost, and nothing arrives
//!   twice, out of order or damaged;
//! - that a FIFO server answers every honest client's request, once, in
//!   order and intact, while garbage writers killed mid-write pour bytes
//!   into its request FIFO, and that its reply to a client killed
//!   mid-request finds the client gone;
//! - that the next run can open or create the same-named object again:
//!   the FIFO, the queues, the semaphore set and the named channel keep
//!   one name or key for all runs of a scenario, taken over with
//!   `open_or_create`, `create_replacing` or `create_or_reclaim`.
//!
//! The report counts, per scenario, runs, survived, hung (the survivor's
//! bound passed) and corrupted (data lost, doubled or damaged), and any
//! other failure. At the end, nothing may be left: the last owner removes
//! each object when it exits normally.
//!
//! `ipc-kit-faults [--quick] [--runs N] [--seed S] [--only TEXT] [--list]`
//!
//! The harness (board, kill timer, burying, in-order check) is in
//! `harness.rs`; each mechanism's scenarios in a file of their own; the
//! table [`SCENARIOS`] lists them all, so that adding one is one edit.

mod channel;
mod fifo;
mod fifo_server;
mod harness;
mod msgq;
mod pipe;
mod pubsub;
mod service;
mod sides;
mod socket;
mod sync;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use ipc_kit::Mechanism;
use ipc_kit_tests::Rng;

use harness::{Campaign, Corrupted, Failed, Hung, Outcome, SLOWEST, Survived, kill_delay};

/// What a scenario kills: a process using one of the umbrella's
/// mechanisms, or something the umbrella does not carry (a lock, the
/// typed channel, a named object's making, the FIFO server).
#[derive(Clone, Copy, Debug)]
enum Subject {
    Mechanism(Mechanism),
    Other(&'static str),
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Mechanism(m) => m.fmt(f),
            Subject::Other(s) => f.write_str(s),
        }
    }
}

/// What a scenario needs of the process that runs it.
#[derive(Clone, Copy, Debug)]
enum Needs {
    Nothing,
    /// Making a PID namespace needs root.
    Root,
}

/// One run of a scenario: the campaign, the run's number, the kill delay
/// (drawn before anything else, in every run) and the random source for
/// the scenario's own choices.
type RunFn = fn(&mut Campaign, u32, Duration, &mut Rng) -> Outcome;

/// A scenario: what is killed, how the report names it, and its run.
struct Scenario {
    subject: Subject,
    what: &'static str,
    needs: Needs,
    run: RunFn,
}

impl Scenario {
    /// The name in the report: `SUBJECT: WHAT`.
    fn name(&self) -> String {
        format!("{}: {}", self.subject, self.what)
    }
}

macro_rules! scenarios {
    ($($subject:expr, $what:literal, $needs:ident => $run:path;)*) => {
        &[$(Scenario { subject: $subject, what: $what, needs: Needs::$needs, run: $run }),*]
    };
}

use Mechanism::{Fifo, Pipe, PosixQueue, ShmByteChannel, SysvQueue, UnixSocket};
use Subject::Other;

const fn mech(m: Mechanism) -> Subject {
    Subject::Mechanism(m)
}

/// Every scenario, in the order of the report.
const SCENARIOS: &[Scenario] = scenarios! {
    mech(Pipe), "writer killed", Nothing => pipe::writer_killed;
    mech(Pipe), "reader killed", Nothing => pipe::reader_killed;
    mech(Fifo), "creator and writer killed", Nothing => fifo::writer_killed;
    mech(Fifo), "reader killed", Nothing => fifo::reader_killed;
    mech(SysvQueue), "creator and sender killed", Nothing => msgq::sysv_sender_killed;
    mech(SysvQueue), "receiver killed", Nothing => msgq::sysv_receiver_killed;
    mech(PosixQueue), "creator and sender killed", Nothing => msgq::posix_sender_killed;
    mech(PosixQueue), "receiver killed", Nothing => msgq::posix_receiver_killed;
    Other("shm-channel"), "sender killed", Nothing => channel::slot_sender_killed;
    Other("shm-channel"), "receiver killed", Nothing => channel::slot_receiver_killed;
    mech(ShmByteChannel), "sender killed", Nothing => channel::byte_sender_killed;
    mech(ShmByteChannel), "receiver killed", Nothing => channel::byte_receiver_killed;
    mech(UnixSocket), "sender killed", Nothing => socket::sender_killed;
    mech(UnixSocket), "receiver killed", Nothing => socket::receiver_killed;
    Other("service"), "client killed", Nothing => service::client_killed;
    Other("service"), "service killed", Nothing => service::service_killed;
    Other("pubsub"), "subscriber killed", Nothing => pubsub::subscriber_killed;
    Other("pubsub"), "publisher killed", Nothing => pubsub::publisher_killed;
    Other("shm channel, named"), "creator killed", Nothing => channel::named_creator_killed;
    Other("shm channel, named"), "opener killed", Nothing => channel::named_opener_killed;
    Other("robust-mutex"), "holder killed", Nothing => sync::robust_holder_killed;
    Other("shm segment, named"), "creator killed", Nothing => sync::segment_creator_killed;
    Other("sysv-semaphore"), "holder killed", Nothing => sync::sem_holder_killed;
    Other("shm channel"), "sender killed early", Nothing => channel::unclaimed_sender_killed;
    Other("shm channel"), "receiver killed early", Nothing => channel::unclaimed_receiver_killed;
    Other("shm channel"), "sender in a PID namespace", Root => channel::namespaced_sender_killed;
    Other("shm channel"), "receiver in a PID namespace", Root => channel::namespaced_receiver_killed;
    Other("shm channel, named"), "creator stalled", Nothing => channel::named_creator_stalled;
    Other("fifo-server"), "garbage writers killed", Nothing => fifo_server::garbage_writers_killed;
};

/// Peers of every mechanism killed at random points, and what the
/// survivors see.
#[derive(Debug, Parser)]
#[command(name = "ipc-kit-faults", args_override_self = true)]
struct Args {
    /// 20 runs per scenario instead of 200.
    #[arg(long, overrides_with = "runs")]
    quick: bool,
    /// Runs per scenario (of --quick and --runs, the last counts).
    #[arg(long, value_name = "N", overrides_with = "quick")]
    runs: Option<u32>,
    /// The seed of the random choices (default: from the clock).
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// Only the scenarios whose names contain TEXT.
    #[arg(long, value_name = "TEXT")]
    only: Option<String>,
    /// Print the scenarios' names, one a line, and exit.
    #[arg(long)]
    list: bool,
}

#[derive(Default)]
struct Tally {
    runs: u32,
    survived: u32,
    /// How the survivals went, by what the survivor saw.
    how: std::collections::BTreeMap<&'static str, u32>,
    hung: u32,
    corrupted: u32,
    failed: u32,
    notes: Vec<String>,
}

impl Tally {
    fn count(&mut self, run: u32, outcome: Outcome) {
        self.runs += 1;
        match outcome {
            Survived(how) => {
                self.survived += 1;
                *self.how.entry(how).or_default() += 1;
            }
            Hung(why) => {
                self.hung += 1;
                self.notes.push(format!("run {run}: hung: {why}"));
            }
            Corrupted(why) => {
                self.corrupted += 1;
                self.notes.push(format!("run {run}: corrupted: {why}"));
            }
            Failed(why) => {
                self.failed += 1;
                self.notes.push(format!("run {run}: failed: {why}"));
            }
        }
    }

    fn add(&mut self, t: &Tally) {
        self.runs += t.runs;
        self.survived += t.survived;
        self.hung += t.hung;
        self.corrupted += t.corrupted;
        self.failed += t.failed;
    }
}

/// Runs `scenario` `runs` times and prints its line of the report.
fn campaign(scenario: &Scenario, runs: u32, rng: &mut Rng) -> Tally {
    let name = scenario.name();
    let mut campaign = Campaign::new();
    if let Ok(mut slowest) = SLOWEST.lock() {
        *slowest = Duration::ZERO;
    }
    let mut t = Tally::default();
    let start = Instant::now();
    for run in 0..runs {
        campaign.board.reset();
        let delay = kill_delay(rng);
        t.count(run, (scenario.run)(&mut campaign, run, delay, rng));
    }
    if let Err(e) = campaign.clean_up() {
        t.failed += 1;
        t.notes.push(format!("clean-up: {e}"));
    }
    println!(
        "{:<40} {:>5} {:>8} {:>5} {:>9} {:>6} {:>6.1} s",
        name,
        t.runs,
        t.survived,
        t.hung,
        t.corrupted,
        t.failed,
        start.elapsed().as_secs_f64()
    );
    let how: Vec<String> = t.how.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("    {}", how.join(", "));
    let slowest = SLOWEST.lock().map_or(Duration::ZERO, |s| *s);
    if !slowest.is_zero() {
        println!("    slowest to see the death after the kill: {:.1} ms", slowest.as_secs_f64() * 1e3);
    }
    for note in t.notes.iter().take(5) {
        println!("    {note}");
    }
    t
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for s in SCENARIOS {
            println!("{}", s.name());
        }
        return ExitCode::SUCCESS;
    }
    let runs = args.runs.unwrap_or(if args.quick { 20 } else { 200 });
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    println!("seed {seed} (repeat with --seed {seed})");
    println!(
        "{:<40} {:>5} {:>8} {:>5} {:>9} {:>6} {:>8}",
        "scenario", "runs", "survived", "hung", "corrupted", "failed", "wall"
    );
    let mut rng = Rng::new(seed);
    let mut all = Tally::default();
    let mut bad = false;
    for scenario in SCENARIOS {
        let name = scenario.name();
        if args.only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        if let Needs::Root = scenario.needs
            && !nix::unistd::geteuid().is_root()
        {
            println!("{name:<40} skipped: a new PID namespace needs root");
            continue;
        }
        let t = campaign(scenario, runs, &mut rng);
        bad |= t.survived != t.runs;
        all.add(&t);
    }
    println!(
        "{} runs: {} survived, {} hung, {} corrupted, {} failed otherwise",
        all.runs, all.survived, all.hung, all.corrupted, all.failed
    );
    if bad { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
