//! `ipc-kit bench`: the measurement method.
//!
//! Two vCPUs of a virtual machine can sit near each other or far apart,
//! and the host may move them at any time; figures change several times
//! over with it. So ipc-kit and the raw libc implementation run alternately
//! in pairs (the order swapped from pair to pair), each pair is preceded and
//! followed by a probe of the placement (a cross-core spin ping-pong). Pairs
//! during which the placement changed are dropped, and so are the pairs of
//! the other placement when there are near ones (reported apart in
//! `--detail`). The two processes are pinned to CPU 0 and CPU 1.
//!
//! The default is the comparison of every mechanism (`compare`); `--detail`
//! runs the workloads of the crates' own benchmarks instead.

mod channel;
mod chart;
pub(crate) mod compare;
mod links;
mod mech;
mod output;
mod pipe;
mod sync;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mech::Mech;

use crate::sys;

/// Pairs per measurement in a full comparison. The per-pair ratio of a
/// stream moves by 10–20% between pairs on a 2-vCPU VM (how often either
/// side sleeps, and for shared memory whether the reader keeps up with
/// the writer, settle differently from run to run): by resampling series
/// of 21 pairs, the median of 7 lands within about ±5% of the long-run
/// value, that of 15 within about ±3%.
const COMPARISON_PAIRS: u32 = 15;

/// The message sizes compared unless `--size` says otherwise.
const SIZES: [usize; 3] = [64, 4096, 65536];

/// Options of `ipc-kit bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Only this mechanism (repeat for more); default all.
    #[arg(long = "mechanism", value_name = "M", value_enum)]
    mechanisms: Vec<Mech>,
    /// Message size in bytes (repeat for more); default 64, 4096 and 65536.
    #[arg(long = "size", value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    sizes: Vec<u64>,
    /// A short run, under 30 s on 2 cores: 5 pairs of 20 ms runs per
    /// measurement (the default is 15 pairs of 150 ms runs).
    #[arg(long)]
    quick: bool,
    /// Writes the results as JSON to FILE ("-" for standard output).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draws the latency and throughput charts into FILE (SVG).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Pairs of runs (ipc-kit and raw) per measurement; at least 5.
    #[arg(long, value_parser = clap::value_parser!(u32).range(5..))]
    pairs: Option<u32>,
    /// Runs the crates' own workloads instead (pipe bulk transfer and
    /// vmsplice, mutex and event, batched channel streams), each against
    /// a raw loop.
    #[arg(long)]
    detail: bool,
    /// With --detail: only the workloads whose name contains this text.
    #[arg(long, requires = "detail")]
    only: Option<String>,
    /// With --detail: MiB moved by each bulk run.
    #[arg(long, requires = "detail", value_parser = clap::value_parser!(u64).range(1..))]
    mib: Option<u64>,
}

pub(crate) fn run(args: &Args) -> Result<(), String> {
    if args.detail { detail(args) } else { comparison(args) }
}

/// The comparison of every mechanism.
fn comparison(args: &Args) -> Result<(), String> {
    let mechs: Vec<Mech> = if args.mechanisms.is_empty() { Mech::ALL.to_vec() } else { args.mechanisms.clone() };
    let sizes: Vec<usize> =
        if args.sizes.is_empty() { SIZES.to_vec() } else { args.sizes.iter().map(|&s| s as usize).collect() };
    let pairs = args.pairs.unwrap_or(if args.quick { 5 } else { COMPARISON_PAIRS });
    let run_time = Duration::from_millis(if args.quick { 20 } else { 150 });
    let machine = output::Machine::this();
    let pinned = machine.cpus >= 2 && sys::pin_to_cpu(0);
    let plan = compare::Plan::new(&mechs, &sizes, pairs, run_time, pinned);
    let to_stdout = args.json.as_deref() == Some(std::path::Path::new("-"));
    let say = |line: String| {
        if to_stdout {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    say(format!(
        "ipc-kit bench on {}: {} pairs of {} ms runs per measurement, {}",
        machine.describe(),
        pairs,
        run_time.as_millis(),
        if pinned { "the two processes on CPU 0 and CPU 1" } else { "not pinned" }
    ));
    let bar = indicatif::ProgressBar::new(plan.runs());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} runs, {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for &cell in &plan.cells {
        bar.set_message(format!("{} {} {}", cell.mech.name(), cell.test.name(), output::size(cell.size)));
        match compare::run_cell(&plan, cell, || bar.inc(1)) {
            Ok(pairs) => results.push(compare::summarize(cell, &pairs)),
            Err(e) => {
                failures.push(format!("{} {} {}: {e}", cell.mech.name(), cell.test.name(), output::size(cell.size)))
            }
        }
    }
    bar.finish_and_clear();
    say(output::tables(&results));
    for line in output::verdicts(&results) {
        say(line);
    }
    for s in &plan.skipped {
        say(format!("skipped: {s}"));
    }
    if let Some(path) = &args.json {
        let doc = serde_json::to_string_pretty(&output::json(&machine, &plan, &results)).map_err(|e| e.to_string())?;
        if to_stdout {
            println!("{doc}");
        } else {
            std::fs::File::create(path)
                .and_then(|mut f| f.write_all(doc.as_bytes()))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    if let Some(path) = &args.svg {
        chart::svg(path, &machine, &results)?;
    }
    if failures.is_empty() { Ok(()) } else { Err(format!("measurements failed: {}", failures.join("; "))) }
}

/// Which side of a pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Impl {
    IpcKit,
    Raw,
}

/// Where the two vCPUs were when a pair ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    Near,
    Far,
    /// One CPU only: nothing to probe.
    Single,
}

/// Cross-core round trips slower than this are a far placement.
const FAR_NS: f64 = 150.0;

struct Pair {
    placement: Placement,
    /// The probe after the pair found another placement.
    moved: bool,
    probe_ns: f64,
    ours: f64,
    raw: f64,
}

/// How much work one run does.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Size {
    /// Bytes a throughput run moves.
    pub(crate) bytes: u64,
    /// Operations (round trips, lock and unlock pairs) a latency run makes.
    pub(crate) ops: u64,
}

/// What a workload measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Throughput in GB/s: higher is better.
    GigabytesPerSecond,
    /// Time per operation in ns: lower is better.
    NanosPerOp,
}

/// One workload: `run` does one run of it with ipc-kit or the raw
/// implementation and returns its figure in `unit`.
pub(crate) struct Workload {
    pub(crate) name: &'static str,
    pub(crate) unit: Unit,
    pub(crate) run: fn(Impl, Size) -> std::io::Result<f64>,
}

/// Runs `child` in a forked process pinned to CPU 1 and `parent` here
/// (on CPU 0), and returns what `parent` returned once the child has
/// exited successfully.
pub(crate) fn two_processes<R>(
    child: impl FnOnce() -> std::io::Result<()>,
    parent: impl FnOnce() -> std::io::Result<R>,
) -> std::io::Result<R> {
    let pid = match sys::fork()? {
        sys::Forked::Child => {
            sys::die_with_parent();
            sys::pin_to_cpu(1);
            let ok = child().is_ok();
            sys::exit_now(if ok { 0 } else { 1 });
        }
        sys::Forked::Parent(pid) => pid,
    };
    let result = parent();
    let code = sys::wait(pid)?;
    let value = result?;
    if code != 0 {
        return Err(std::io::Error::other(format!("the peer process failed (exit {code})")));
    }
    Ok(value)
}

/// Lines a workload adds below the table (such as system calls counted).
static NOTES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Adds a line to print after the results.
pub(crate) fn note(line: String) {
    if let Ok(mut notes) = NOTES.lock() {
        notes.push(line);
    }
}

/// GB/s for `bytes` moved in `elapsed`.
pub(crate) fn gbps(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e9
}

/// Nanoseconds per operation.
pub(crate) fn ns_per_op(ops: u64, elapsed: Duration) -> f64 {
    elapsed.as_nanos() as f64 / ops as f64
}

/// The crates' own workloads, each against a raw loop.
fn detail(args: &Args) -> Result<(), String> {
    let pairs = args.pairs.unwrap_or(if args.quick { 5 } else { 7 });
    let mib = args.mib.unwrap_or(if args.quick { 128 } else { 1024 });
    let size = Size { bytes: mib << 20, ops: if args.quick { 20_000 } else { 100_000 } };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned = cpus >= 2 && sys::pin_to_cpu(0);
    println!(
        "ipc-kit bench: {pairs} pairs per workload, {mib} MiB per run, {cpus} CPUs{}",
        if pinned { ", writer on CPU 0 and reader on CPU 1" } else { ", not pinned" }
    );
    println!("ratio = ipc-kit / raw implementation, the median of the per-pair ratios");
    let mut medians = Vec::new();
    let all = pipe::WORKLOADS.iter().chain(sync::WORKLOADS).chain(channel::WORKLOADS);
    let selected = all.filter(|w| args.only.as_ref().is_none_or(|o| w.name.contains(o.as_str())));
    for w in selected {
        let results = probed_pairs(pinned, pairs, |i| {
            let order = if i % 2 == 0 { [Impl::IpcKit, Impl::Raw] } else { [Impl::Raw, Impl::IpcKit] };
            let (mut ours, mut raw) = (0.0, 0.0);
            for imp in order {
                let figure = (w.run)(imp, size).map_err(|e| format!("{} ({imp:?}): {e}", w.name))?;
                match imp {
                    Impl::IpcKit => ours = figure,
                    Impl::Raw => raw = figure,
                }
            }
            Ok::<_, String>((ours, raw))
        })?;
        let results: Vec<Pair> = results
            .into_iter()
            .map(|(at, (ours, raw))| Pair {
                placement: at.placement,
                moved: at.moved,
                probe_ns: at.probe_ns,
                ours,
                raw,
            })
            .collect();
        medians.push((w.name, report(w, &results)));
    }
    summary(&medians);
    if let Ok(notes) = NOTES.lock() {
        if !notes.is_empty() {
            println!();
        }
        for n in notes.iter() {
            println!("{n}");
        }
    }
    Ok(())
}

/// Prints the figures of one workload, one line per placement; returns
/// the median throughput of ipc-kit for each placement seen.
fn report(w: &Workload, pairs: &[Pair]) -> Vec<(Placement, f64)> {
    let (unit, better) = match w.unit {
        Unit::GigabytesPerSecond => ("GB/s", "higher"),
        Unit::NanosPerOp => ("ns per operation", "lower"),
    };
    println!("\n{} ({unit}; {better} is better)", w.name);
    let kept = settled(pairs, |p| p.moved);
    if kept.len() < pairs.len() {
        println!("  {} pairs dropped: the placement changed while they ran", pairs.len() - kept.len());
    }
    let mut medians = Vec::new();
    for placement in [Placement::Near, Placement::Far, Placement::Single] {
        let sel: Vec<&Pair> = kept.iter().copied().filter(|p| p.placement == placement).collect();
        if sel.is_empty() {
            continue;
        }
        let ours = median(sel.iter().map(|p| p.ours));
        let raw = median(sel.iter().map(|p| p.raw));
        let ratio = median(sel.iter().map(|p| p.ours / p.raw));
        let probe = median(sel.iter().map(|p| p.probe_ns));
        println!(
            "  {:<6} {:>2} pairs (probe {probe:>4.0} ns): ipc-kit {ours:>8.2}  raw {raw:>8.2}  ratio {ratio:.3}",
            format!("{placement:?}").to_lowercase(),
            sel.len()
        );
        medians.push((placement, ours));
    }
    medians
}

/// Compares vmsplice with plain writes where both ran in the same
/// placement.
fn summary(medians: &[(&str, Vec<(Placement, f64)>)]) {
    let get = |n: &str, p: Placement| {
        medians.iter().find(|(name, _)| *name == n).and_then(|(_, m)| m.iter().find(|(q, _)| *q == p)).map(|m| m.1)
    };
    for placement in [Placement::Near, Placement::Far, Placement::Single] {
        if let (Some(vm), Some(plain)) = (get(pipe::VMSPLICE, placement), get(pipe::PLAIN_64K, placement)) {
            let at = format!("{placement:?}").to_lowercase();
            println!("\nvmsplice of 1 MiB against plain 64 KiB writes, ipc-kit, {at}: {:.2}x", vm / plain);
        }
    }
}

/// Where the vCPUs were around one pair of runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Probed {
    /// The placement the probe before the pair found, and its round trip.
    pub(crate) placement: Placement,
    pub(crate) probe_ns: f64,
    /// Whether the probe after the pair found another placement: the vCPUs
    /// moved while it ran, and its two runs may have run apart.
    pub(crate) moved: bool,
}

/// Runs `pairs` pairs with `run` (given the pair's number), each between
/// two probes of the placement; the probe after a pair is the one before
/// the next.
pub(crate) fn probed_pairs<T, E>(
    pinned: bool,
    pairs: u32,
    mut run: impl FnMut(u32) -> Result<T, E>,
) -> Result<Vec<(Probed, T)>, E> {
    let mut out = Vec::new();
    let (mut placement, mut probe_ns) = probe(pinned);
    for i in 0..pairs {
        let result = run(i)?;
        let (after, after_ns) = probe(pinned);
        out.push((Probed { placement, probe_ns, moved: after != placement }, result));
        (placement, probe_ns) = (after, after_ns);
    }
    Ok(out)
}

/// The pairs during which the placement held, or all of them if none did.
pub(crate) fn settled<T>(pairs: &[T], moved: impl Fn(&T) -> bool) -> Vec<&T> {
    let held: Vec<&T> = pairs.iter().filter(|p| !moved(p)).collect();
    if held.is_empty() { pairs.iter().collect() } else { held }
}

pub(crate) fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Measures the placement: the median cross-core round trip of a spin
/// ping-pong between this thread (CPU 0) and a helper thread on CPU 1.
fn probe(pinned: bool) -> (Placement, f64) {
    if !pinned {
        return (Placement::Single, 0.0);
    }
    const ROUNDS: u64 = 2000;
    const BATCHES: usize = 11;
    let ball = Arc::new(AtomicU64::new(0));
    let other = Arc::clone(&ball);
    let helper = std::thread::spawn(move || {
        sys::pin_to_cpu(1);
        let last = ROUNDS * BATCHES as u64 * 2;
        let mut want = 1;
        while want < last {
            // Acquire/Release: each hit hands the ball over; nothing else
            // is published through it.
            while other.load(Ordering::Acquire) != want {
                std::hint::spin_loop();
            }
            other.store(want + 1, Ordering::Release);
            want += 2;
        }
    });
    let mut batches = Vec::with_capacity(BATCHES);
    let mut next = 0;
    for _ in 0..BATCHES {
        let t = Instant::now();
        for _ in 0..ROUNDS {
            ball.store(next + 1, Ordering::Release);
            while ball.load(Ordering::Acquire) != next + 2 {
                std::hint::spin_loop();
            }
            next += 2;
        }
        batches.push(t.elapsed().as_nanos() as f64 / ROUNDS as f64);
    }
    let _ = helper.join();
    let ns = median(batches.into_iter());
    (if ns < FAR_NS { Placement::Near } else { Placement::Far }, ns)
}
