//! `ipc-kit-stress`: every mechanism under load from several processes.
//!
//! For each mechanism and each shape of N producer and M consumer
//! processes (N, M ∈ {1, 4}), the producers send sequence-numbered,
//! checksummed messages and the consumers check every one they get. The
//! report counts, per run, the messages sent, lost, duplicated, reordered
//! (a consumer saw a producer's sequence go backwards) and corrupted, the
//! processes that hung, and the wall time; the program exits with 1 unless
//! every one of those counts is 0.
//!
//! `ipc-kit-stress [--quick] [--messages N] [--mechanism NAME]... [--json FILE]`:
//! 1,000,000 messages per run by default, 100,000 with `--quick`.
//!
//! How each mechanism carries many producers and consumers: `carry.rs`.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};
use ipc_kit::pipe::{FrameReader, FrameWriter};
use ipc_kit_tests::{Exit, Forked, fork};

mod carry;
mod tally;

use carry::{ALL, Mech, Setup};
use tally::Tally;

/// Every mechanism under load from several producer and consumer
/// processes.
#[derive(Debug, Parser)]
#[command(name = "ipc-kit-stress", args_override_self = true)]
struct Args {
    /// 100,000 messages per run instead of 1,000,000.
    #[arg(long, overrides_with = "messages")]
    quick: bool,
    /// Messages per run, at least 16 (of --quick and --messages, the last
    /// counts).
    #[arg(long, value_name = "N", overrides_with = "quick")]
    messages: Option<u64>,
    /// Only this mechanism (repeat for more; default: all).
    #[arg(long = "mechanism", value_name = "NAME")]
    mechanisms: Vec<Mech>,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<String>,
}

impl Args {
    /// Messages per run: of --quick and --messages, the last given (clap
    /// keeps only that one); checked only then, so that a count --quick
    /// overrides is no error.
    fn messages(&self) -> Result<u64, &'static str> {
        match self.messages {
            Some(n) if n < 16 => Err("--messages: at least 16"),
            Some(n) => Ok(n),
            None if self.quick => Ok(100_000),
            None => Ok(1_000_000),
        }
    }
}

/// One run's outcome.
#[derive(Debug, Default)]
struct Row {
    mech: &'static str,
    producers: usize,
    consumers: usize,
    sent: u64,
    received: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    corrupted: u64,
    hung: u64,
    errors: Vec<String>,
    wall: Duration,
}

impl Row {
    fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.reordered == 0
            && self.corrupted == 0
            && self.hung == 0
            && self.errors.is_empty()
            && self.received == self.sent
    }
}

/// Runs one shape of one mechanism.
fn run(mech: Mech, producers: usize, consumers: usize, messages: u64, limit: Duration) -> Row {
    let per = messages.div_ceil(producers as u64);
    // Publish/subscribe delivers every message to every consumer.
    let deliveries = if mech.broadcasts() { consumers as u64 } else { 1 };
    let sent = per * producers as u64 * deliveries;
    let mut row = Row { mech: mech.name(), producers, consumers, sent, ..Row::default() };
    let mut setup = match Setup::new(mech, producers, consumers) {
        Ok(s) => s,
        Err(e) => {
            row.errors.push(e);
            return row;
        }
    };
    let start = Instant::now();
    let deadline = start + limit;
    // Each consumer reports through a pipe of its own.
    let mut reports = Vec::new();
    let mut children: Vec<Forked> = Vec::new();
    for c in 0..consumers {
        let (r, w) = match ipc_kit::pipe::pipe() {
            Ok(p) => p,
            Err(e) => {
                row.errors.push(format!("report pipe: {e}"));
                return row;
            }
        };
        let setup = &setup;
        children.push(fork(move || {
            let mut tally = Tally::new(producers, per);
            let outcome = setup.consume(c, producers, consumers, &mut tally);
            let mut out = FrameWriter::with_max(&w, usize::MAX);
            let err = outcome.err().unwrap_or_default();
            out.send(&tally.report(&err)).expect("send the report");
        }));
        reports.push(r);
    }
    let mut producer_procs = Vec::new();
    for p in 0..producers {
        let setup = &setup;
        producer_procs.push(fork(move || {
            if let Err(e) = setup.produce(p, per, consumers) {
                panic!("producer {p}: {e}");
            }
        }));
    }
    for (p, child) in producer_procs.iter_mut().enumerate() {
        match child.wait_timeout(deadline.saturating_duration_since(Instant::now())) {
            Some(Exit::Code(0)) => {}
            Some(other) => row.errors.push(format!("producer {p} ended with {other:?}")),
            None => {
                row.hung += 1;
                child.kill();
            }
        }
    }
    if let Err(e) = setup.finish(consumers) {
        row.errors.push(e);
    }
    // One tally of all consumers' messages; for publish/subscribe one per
    // consumer, each of which must hold every message, added up after.
    let mut merged = Tally::new(producers, per);
    let mut each = Vec::new();
    for (c, r) in reports.iter().enumerate() {
        if mech.broadcasts() && c > 0 {
            each.push(std::mem::replace(&mut merged, Tally::new(producers, per)));
        }
        let mut frames = FrameReader::with_max(r, usize::MAX);
        let mut buf = Vec::new();
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        match frames.recv_timeout(&mut buf, left) {
            Ok(Some(_)) => match merged.merge(&buf) {
                Ok(None) => {}
                Ok(Some(err)) if err.contains("nothing received") || err.contains("timed out") => {
                    row.hung += 1;
                    row.errors.push(format!("consumer {c}: {err}"));
                }
                Ok(Some(err)) => row.errors.push(format!("consumer {c}: {err}")),
                Err(e) => row.errors.push(format!("consumer {c}: unreadable report: {e}")),
            },
            Ok(None) => row.errors.push(format!("consumer {c} died without a report")),
            Err(e) => {
                row.hung += 1;
                row.errors.push(format!("consumer {c}: no report ({e})"));
                children[c].kill();
            }
        }
    }
    for (c, child) in children.iter_mut().enumerate() {
        match child.wait_timeout(Duration::from_secs(5)) {
            Some(Exit::Code(0)) => {}
            Some(other) => row.errors.push(format!("consumer {c} ended with {other:?}")),
            None => {
                row.hung += 1;
                child.kill();
            }
        }
    }
    row.wall = start.elapsed();
    each.push(merged);
    for t in &each {
        row.received += t.received;
        row.corrupted += t.corrupted;
        row.reordered += t.reordered;
        row.duplicated += t.duplicated;
        row.lost += t.lost();
    }
    drop(setup);
    row
}

fn print_row(out: &mut impl Write, r: &Row) {
    let rate = r.received as f64 / r.wall.as_secs_f64().max(1e-9);
    let _ = writeln!(
        out,
        "{:<17} {:>2}x{:<2} {:>9} {:>9} {:>5} {:>5} {:>5} {:>5} {:>4} {:>8.2} s {:>9.0}/s",
        r.mech,
        r.producers,
        r.consumers,
        r.sent,
        r.received,
        r.lost,
        r.duplicated,
        r.reordered,
        r.corrupted,
        r.hung,
        r.wall.as_secs_f64(),
        rate
    );
    for e in &r.errors {
        let _ = writeln!(out, "    error: {e}");
    }
}

fn to_json(rows: &[Row], messages: u64) -> serde_json::Value {
    serde_json::json!({
        "messages_per_run": messages,
        "runs": rows.iter().map(|r| serde_json::json!({
            "mechanism": r.mech,
            "producers": r.producers,
            "consumers": r.consumers,
            "sent": r.sent,
            "received": r.received,
            "lost": r.lost,
            "duplicated": r.duplicated,
            "reordered": r.reordered,
            "corrupted": r.corrupted,
            "hung": r.hung,
            "errors": r.errors,
            "wall_s": r.wall.as_secs_f64(),
        })).collect::<Vec<_>>(),
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let messages = match args.messages() {
        Ok(n) => n,
        Err(e) => Args::command().error(clap::error::ErrorKind::ValueValidation, e).exit(),
    };
    let mechanisms = if args.mechanisms.is_empty() { ALL.clone() } else { args.mechanisms };
    // A run may take a minute per million messages on a slow machine;
    // beyond that it is stuck.
    let limit = Duration::from_secs(30 + messages / 20_000);
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "{:<17} {:>5} {:>9} {:>9} {:>5} {:>5} {:>5} {:>5} {:>4} {:>10} {:>11}",
        "mechanism", "NxM", "sent", "received", "lost", "dup", "reord", "corr", "hung", "wall", "rate"
    );
    let mut rows = Vec::new();
    for &mech in &mechanisms {
        for (n, m) in [(1, 1), (1, 4), (4, 1), (4, 4)] {
            let row = run(mech, n, m, messages, limit);
            print_row(&mut out, &row);
            let _ = out.flush();
            rows.push(row);
        }
    }
    let bad = rows.iter().filter(|r| !r.clean()).count();
    let total: u64 = rows.iter().map(|r| r.sent).sum();
    let sum = |f: fn(&Row) -> u64| rows.iter().map(f).sum::<u64>();
    let _ = writeln!(
        out,
        "{} runs, {total} messages: {} lost, {} duplicated, {} reordered, {} corrupted, {} hung; {bad} run(s) not clean",
        rows.len(),
        sum(|r| r.lost),
        sum(|r| r.duplicated),
        sum(|r| r.reordered),
        sum(|r| r.corrupted),
        sum(|r| r.hung),
    );
    if let Some(path) = &args.json {
        let doc = to_json(&rows, messages);
        if let Err(e) = std::fs::write(path, format!("{doc:#}\n")) {
            eprintln!("ipc-kit-stress: writing {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if bad == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(args: &[&str]) -> Result<u64, &'static str> {
        let args = Args::try_parse_from(std::iter::once("ipc-kit-stress").chain(args.iter().copied())).unwrap();
        args.messages()
    }

    #[test]
    fn the_last_of_quick_and_messages_counts() {
        assert_eq!(messages(&[]), Ok(1_000_000));
        assert_eq!(messages(&["--quick"]), Ok(100_000));
        assert_eq!(messages(&["--quick", "--messages", "500"]), Ok(500));
        assert_eq!(messages(&["--messages", "500", "--quick"]), Ok(100_000));
        assert_eq!(messages(&["--messages", "10", "--quick"]), Ok(100_000), "an overridden count is no error");
        assert_eq!(messages(&["--quick", "--messages", "10"]), Err("--messages: at least 16"));
        assert_eq!(messages(&["--messages", "16"]), Ok(16));
        assert!(Args::try_parse_from(["ipc-kit-stress", "--messages", "x"]).is_err());
    }
}
