//! The driver of `ipc-kit bench`: its options, and what each of its two
//! modes runs and prints; the comparison (the default) and `--detail`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::mech::Mech;
use super::method::{Impl, Placement, Probed, median, probed_pairs, settled};
use super::workload::{Size, Unit, Workload};
use super::{channel, chart, compare, output, pipe, sync, workload};
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
    /// Runs 64 B round trips and streams of every mechanism through the
    /// async traits on tokio instead, beside tokio's own UnixStream and
    /// pipe (with --quick, --json, --pairs, --mechanism).
    #[arg(long = "async", conflicts_with_all = ["detail", "svg", "sizes"])]
    run_async: bool,
    /// With --detail: only the workloads whose name contains this text.
    #[arg(long, requires = "detail")]
    only: Option<String>,
    /// With --detail: MiB moved by each bulk run.
    #[arg(long, requires = "detail", value_parser = clap::value_parser!(u64).range(1..))]
    mib: Option<u64>,
}

pub(crate) fn run(args: &Args) -> Result<(), String> {
    if args.run_async {
        let pairs = args.pairs.unwrap_or(if args.quick { 5 } else { COMPARISON_PAIRS });
        let run_time = Duration::from_millis(if args.quick { 20 } else { 150 });
        let only: Vec<&str> = args.mechanisms.iter().map(|m| m.name()).collect();
        return super::async_bench::compare(pairs, run_time, &only, args.json.as_deref());
    }
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
    let to_stdout = args.json.as_deref() == Some(Path::new("-"));
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
    compare::set_limits(&mut results);
    if !results.is_empty() {
        say(output::tables(&results));
        for line in output::verdicts(&results) {
            say(line);
        }
    }
    let connects = if mechs.contains(&Mech::Service) {
        let count = if args.quick { 50 } else { 500 };
        match super::service::connect_times(count) {
            Ok(h) => {
                say(format!(
                    "service connect and handshake, the service in another process: p50 {}, p99 {} ({} connects)",
                    output::nanos(h.value_at_quantile(0.5)),
                    output::nanos(h.value_at_quantile(0.99)),
                    h.len()
                ));
                Some(h)
            }
            Err(e) => {
                failures.push(format!("service connect: {e}"));
                None
            }
        }
    } else {
        None
    };
    let pubsub = if mechs.contains(&Mech::PubSub) {
        let reps = if args.quick { 3 } else { 9 };
        let bar = indicatif::ProgressBar::new(super::pubsub::runs(reps));
        bar.set_message("pubsub");
        let rows = super::pubsub::measure(reps, run_time, pinned, || bar.inc(1));
        bar.finish_and_clear();
        match rows {
            Ok(rows) => {
                say(super::pubsub::table(&rows));
                rows
            }
            Err(e) => {
                failures.push(format!("pubsub: {e}"));
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    for s in &plan.skipped {
        say(format!("skipped: {s}"));
    }
    if let Some(path) = &args.json {
        let mut doc = output::json(&machine, &plan, &results);
        if let Some(rows) = doc["results"].as_array_mut() {
            rows.extend(super::pubsub::json_rows(&pubsub));
        }
        if let Some(h) = &connects {
            doc["service_connect"] = serde_json::json!({
                "p50_ns": h.value_at_quantile(0.5),
                "p99_ns": h.value_at_quantile(0.99),
                "samples": h.len(),
            });
        }
        let doc = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
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

/// One pair of runs of a `--detail` workload.
struct Pair {
    at: Probed,
    ours: f64,
    raw: f64,
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
            let (mut ours, mut raw) = (0.0, 0.0);
            for imp in Impl::order(i) {
                let figure = (w.run)(imp, size).map_err(|e| format!("{} ({imp:?}): {e}", w.name))?;
                match imp {
                    Impl::IpcKit => ours = figure,
                    Impl::Raw => raw = figure,
                }
            }
            Ok::<_, String>((ours, raw))
        })?;
        let results: Vec<Pair> = results.into_iter().map(|(at, (ours, raw))| Pair { at, ours, raw }).collect();
        medians.push((w.name, report(w, &results)));
    }
    summary(&medians);
    let notes = workload::notes();
    if !notes.is_empty() {
        println!();
    }
    for n in &notes {
        println!("{n}");
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
    let kept = settled(pairs, |p| p.at.moved);
    if kept.len() < pairs.len() {
        println!("  {} pairs dropped: the placement changed while they ran", pairs.len() - kept.len());
    }
    let mut medians = Vec::new();
    for placement in Placement::ALL {
        let sel: Vec<&Pair> = kept.iter().copied().filter(|p| p.at.placement == placement).collect();
        if sel.is_empty() {
            continue;
        }
        let ours = median(sel.iter().map(|p| p.ours));
        let raw = median(sel.iter().map(|p| p.raw));
        let ratio = median(sel.iter().map(|p| p.ours / p.raw));
        let probe = median(sel.iter().map(|p| p.at.probe_ns));
        println!(
            "  {:<6} {:>2} pairs (probe {probe:>4.0} ns): ipc-kit {ours:>8.2}  raw {raw:>8.2}  ratio {ratio:.3}",
            placement.name(),
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
    for placement in Placement::ALL {
        if let (Some(vm), Some(plain)) = (get(pipe::VMSPLICE, placement), get(pipe::PLAIN_64K, placement)) {
            let at = placement.name();
            println!("\nvmsplice of 1 MiB against plain 64 KiB writes, ipc-kit, {at}: {:.2}x", vm / plain);
        }
    }
}
