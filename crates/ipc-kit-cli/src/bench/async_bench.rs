//! `ipc-kit bench --async`: 64 B round trips and streams through the
//! async traits on tokio (`ipc_kit::Async`), every mechanism of the
//! umbrella, beside tokio's own `UnixStream` and pipe doing the same work.
//!
//! Each round runs every subject once, between two probes of the placement
//! (see `method`); rounds whose placement moved are dropped, and the near
//! rounds kept when there are any. Each run is two processes pinned to CPU
//! 0 and CPU 1, each with a current-thread tokio runtime.

use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ipc_kit::{Async, AsyncMessageReceiver, AsyncMessageSender, Interest, Mechanism, Pair};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::links::Taken;
use super::method::histogram;
use super::method::{Placement, Probed, median, probed_pairs, settled, two_processes};
use super::output;
use crate::sys;

/// The message size.
const SIZE: usize = 64;

/// What one run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Test {
    Rtt,
    Stream,
}

/// What is measured: a mechanism through the async traits, or a tokio
/// reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Subject {
    Kit(Mechanism),
    TokioUnixStream,
    TokioPipe,
    /// tokio's pipe module on a FIFO, the same kernel object as the FIFO
    /// mechanism's.
    TokioFifo,
}

impl Subject {
    /// Every subject, or with names in `only`, those mechanisms and the
    /// tokio references they are compared with (`unix-socket` names
    /// tokio's `UnixStream`).
    fn chosen(only: &[&str]) -> Vec<Subject> {
        let mut all: Vec<Subject> = Mechanism::ALL.iter().map(|&m| Subject::Kit(m)).collect();
        all.extend([Subject::TokioUnixStream, Subject::TokioPipe, Subject::TokioFifo]);
        if only.is_empty() {
            return all;
        }
        let named = |s: Subject| only.contains(&s.names().0) && !matches!(s, Subject::TokioPipe | Subject::TokioFifo);
        let wanted: Vec<Subject> = all.iter().copied().filter(|&s| named(s)).collect();
        all.into_iter().filter(|s| wanted.contains(s) || wanted.iter().any(|&w| reference(w) == Some(*s))).collect()
    }

    /// The JSON's `mechanism` and `impl`.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Subject::Kit(m) => (m.name(), "ipc-kit-async"),
            Subject::TokioUnixStream => ("unix-socket", "tokio"),
            Subject::TokioPipe => ("pipe", "tokio"),
            Subject::TokioFifo => ("fifo", "tokio"),
        }
    }
}

/// What one run measured.
#[derive(Debug)]
enum Outcome {
    Rtt(Histogram<u64>),
    Stream(f64),
}

/// A current-thread tokio runtime with I/O and time.
fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// The two ways of a subject, made before the fork: messages out (to the
/// child) and back.
enum Ways {
    Kit(Box<(Pair, Pair)>),
    Unix(std::os::unix::net::UnixStream, std::os::unix::net::UnixStream),
    Pipes((OwnedFd, OwnedFd), (OwnedFd, OwnedFd)),
}

fn ways(subject: Subject) -> io::Result<Ways> {
    Ok(match subject {
        Subject::Kit(m) => Ways::Kit(Box::new((m.pair()?, m.pair()?))),
        Subject::TokioUnixStream => {
            let (a, b) = std::os::unix::net::UnixStream::pair()?;
            Ways::Unix(a, b)
        }
        Subject::TokioPipe => {
            let (r1, w1) = std::io::pipe()?;
            let (r2, w2) = std::io::pipe()?;
            Ways::Pipes((r1.into(), w1.into()), (r2.into(), w2.into()))
        }
        Subject::TokioFifo => Ways::Pipes(super::raw_links::fifo_ends()?, super::raw_links::fifo_ends()?),
    })
}

/// One end's sending and receiving of fixed 64-byte messages.
trait End {
    async fn put(&mut self, msg: &[u8; SIZE]) -> io::Result<()>;
    async fn take(&mut self, msg: &mut [u8; SIZE]) -> io::Result<()>;
}

/// A mechanism through the async traits.
struct KitEnd {
    tx: Async<Box<dyn ipc_kit::MessageSender + Send>>,
    rx: Async<Box<dyn ipc_kit::MessageReceiver + Send>>,
    buf: Vec<u8>,
}

impl End for KitEnd {
    async fn put(&mut self, msg: &[u8; SIZE]) -> io::Result<()> {
        self.tx.send(msg).await.map_err(io::Error::other)
    }

    async fn take(&mut self, msg: &mut [u8; SIZE]) -> io::Result<()> {
        let n = self.rx.recv(&mut self.buf).await.map_err(io::Error::other)?;
        let got = self.buf.get(..n).and_then(|b| <&[u8; SIZE]>::try_from(b).ok());
        *msg = *got.ok_or_else(|| io::Error::other(format!("a message of {n} bytes")))?;
        Ok(())
    }
}

/// tokio's own stream: a `UnixStream`, or a pipe each way.
struct TokioEnd<W, R> {
    tx: W,
    rx: R,
}

impl<W: tokio::io::AsyncWrite + Unpin, R: tokio::io::AsyncRead + Unpin> End for TokioEnd<W, R> {
    async fn put(&mut self, msg: &[u8; SIZE]) -> io::Result<()> {
        self.tx.write_all(msg).await
    }

    async fn take(&mut self, msg: &mut [u8; SIZE]) -> io::Result<()> {
        self.rx.read_exact(msg).await.map(drop)
    }
}

/// The side of a pair: taken out, with an empty one left behind.
fn sides(pair: &mut Pair) -> (Box<dyn ipc_kit::MessageSender + Send>, Box<dyn ipc_kit::MessageReceiver + Send>) {
    (std::mem::replace(&mut pair.sender, Box::new(Taken)), std::mem::replace(&mut pair.receiver, Box::new(Taken)))
}

/// This process's part of a run with its end of `ways` (`first`: the
/// parent's, which sends out and receives back): the parent's outcome.
fn with_end(ways: &mut Ways, first: bool, test: Test, run_time: Duration) -> io::Result<Option<Outcome>> {
    let rt = runtime()?;
    let limit = run_time * 20 + Duration::from_secs(5);
    rt.block_on(async {
        let run = async {
            match ways {
                Ways::Kit(pairs) => {
                    let (out, back) = &mut **pairs;
                    let ((tx, _), (_, rx)) = if first { (sides(out), sides(back)) } else { (sides(back), sides(out)) };
                    let mut end = KitEnd {
                        tx: Async::new(tx, Interest::Writable)?,
                        rx: Async::new(rx, Interest::Readable)?,
                        buf: Vec::new(),
                    };
                    part(&mut end, test, first, run_time).await
                }
                Ways::Unix(a, b) => {
                    let s = if first { a.try_clone()? } else { b.try_clone()? };
                    s.set_nonblocking(true)?;
                    let (rx, tx) = tokio::net::UnixStream::from_std(s)?.into_split();
                    part(&mut TokioEnd { tx, rx }, test, first, run_time).await
                }
                Ways::Pipes(out, back) => {
                    let (w, r) = if first { (&out.1, &back.0) } else { (&back.1, &out.0) };
                    let tx = tokio::net::unix::pipe::Sender::from_owned_fd(w.try_clone()?)?;
                    let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(r.try_clone()?)?;
                    part(&mut TokioEnd { tx, rx }, test, first, run_time).await
                }
            }
        };
        tokio::time::timeout(limit, run).await.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    })
}

/// A message: its first byte says "stop" (1) or not (0), then its number.
fn stamp(n: u64, stop: bool) -> [u8; SIZE] {
    let mut m = [0u8; SIZE];
    m[0] = u8::from(stop);
    m[8..16].copy_from_slice(&n.to_le_bytes());
    m
}

/// Round trips: the parent times each, the child answers until "stop".
/// Streams: the child sends for `run_time` and then "stop", the parent
/// counts what arrives after the first message.
async fn part<E: End>(end: &mut E, test: Test, first: bool, run_time: Duration) -> io::Result<Option<Outcome>> {
    let mut m = [0u8; SIZE];
    match (test, first) {
        (Test::Rtt, true) => {
            let mut h = histogram();
            let until = Instant::now() + run_time;
            let mut n = 0;
            while Instant::now() < until {
                let t = Instant::now();
                end.put(&stamp(n, false)).await?;
                end.take(&mut m).await?;
                let _ = h.record(t.elapsed().as_nanos() as u64);
                n += 1;
            }
            end.put(&stamp(n, true)).await?;
            Ok(Some(Outcome::Rtt(h)))
        }
        (Test::Rtt, false) => loop {
            end.take(&mut m).await?;
            if m[0] == 1 {
                return Ok(None);
            }
            end.put(&m).await?;
        },
        (Test::Stream, true) => {
            end.take(&mut m).await?;
            let start = Instant::now();
            let mut n = 0u64;
            loop {
                end.take(&mut m).await?;
                if m[0] == 1 {
                    break;
                }
                n += 1;
            }
            Ok(Some(Outcome::Stream(n as f64 / start.elapsed().as_secs_f64().max(1e-9))))
        }
        (Test::Stream, false) => {
            let until = Instant::now() + run_time;
            let mut n = 0;
            while Instant::now() < until {
                end.put(&stamp(n, false)).await?;
                n += 1;
            }
            end.put(&stamp(n, true)).await?;
            Ok(None)
        }
    }
}

/// One run of `test` on `subject` for about `run_time`, in two processes.
fn run(subject: Subject, test: Test, run_time: Duration) -> io::Result<Outcome> {
    let ways = std::cell::RefCell::new(ways(subject)?);
    // Each closure runs in its own process (the child's in the fork).
    two_processes(
        || with_end(&mut ways.borrow_mut(), false, test, run_time).map(drop),
        || {
            with_end(&mut ways.borrow_mut(), true, test, run_time)?
                .ok_or_else(|| io::Error::other("the parent measured nothing"))
        },
    )
}

/// A subject's figures over the kept rounds.
#[derive(Debug)]
struct Figures {
    subject: Subject,
    test: Test,
    placement: Placement,
    rounds: usize,
    /// Round trips: the merged histogram's p50, p99 and p99.9; streams:
    /// the median messages per second.
    p: Option<[u64; 3]>,
    samples: u64,
    msgs_per_s: f64,
    /// Speed over the tokio reference's in the same round (the median of
    /// the per-round ratios): for pipes tokio's pipe, for FIFOs tokio's
    /// pipe module on a FIFO, for the rest tokio's `UnixStream`.
    vs_tokio: Option<f64>,
}

/// A round: every subject's outcome of both tests.
type Round = Vec<(Subject, Test, Outcome)>;

/// The tokio reference of a subject.
fn reference(subject: Subject) -> Option<Subject> {
    match subject {
        Subject::Kit(Mechanism::Pipe) => Some(Subject::TokioPipe),
        Subject::Kit(Mechanism::Fifo) => Some(Subject::TokioFifo),
        Subject::Kit(_) => Some(Subject::TokioUnixStream),
        _ => None,
    }
}

fn speed(o: &Outcome) -> f64 {
    match o {
        Outcome::Rtt(h) => 1e9 / h.value_at_quantile(0.5).max(1) as f64,
        Outcome::Stream(r) => *r,
    }
}

/// Sums the kept rounds up for each subject and test.
fn summarize(rounds: &[(Probed, Round)]) -> Vec<Figures> {
    let pool = settled(rounds, |r| r.0.moved);
    let near = pool.iter().any(|r| r.0.placement == Placement::Near);
    let placement = if near { Placement::Near } else { pool.first().map_or(Placement::Single, |r| r.0.placement) };
    let kept: Vec<&Round> = pool.iter().filter(|r| r.0.placement == placement).map(|r| &r.1).collect();
    let mut out = Vec::new();
    for subject in Subject::chosen(&[]) {
        for test in [Test::Rtt, Test::Stream] {
            let find = |round: &Round, s: Subject| -> Option<f64> {
                round.iter().find(|(x, t, _)| *x == s && *t == test).map(|r| speed(&r.2))
            };
            let mine: Vec<&Outcome> = kept
                .iter()
                .flat_map(|r| r.iter())
                .filter(|(x, t, _)| *x == subject && *t == test)
                .map(|r| &r.2)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let mut all = histogram();
            for o in &mine {
                if let Outcome::Rtt(h) = o {
                    let _ = all.add(h);
                }
            }
            let is_rtt = test == Test::Rtt;
            let vs_tokio = reference(subject)
                .map(|r| median(kept.iter().filter_map(|round| Some(find(round, subject)? / find(round, r)?))));
            out.push(Figures {
                subject,
                test,
                placement,
                rounds: mine.len(),
                p: is_rtt.then(|| [0.5, 0.99, 0.999].map(|q| all.value_at_quantile(q))),
                samples: all.len(),
                msgs_per_s: if is_rtt { 0.0 } else { median(mine.iter().map(|o| speed(o))) },
                vs_tokio: vs_tokio.filter(|v| v.is_finite()),
            });
        }
    }
    out
}

/// Runs the async comparison: `rounds` rounds of `run_time` runs.
pub(crate) fn compare(
    rounds: u32,
    run_time: Duration,
    only: &[&str],
    json: Option<&std::path::Path>,
) -> Result<(), String> {
    let subjects = Subject::chosen(only);
    if subjects.iter().all(|s| !matches!(s, Subject::Kit(_))) && !only.contains(&"unix-socket") {
        return Err(format!("--async runs the umbrella's mechanisms and tokio's references; none is in {only:?}"));
    }
    let machine = output::Machine::this();
    let pinned = machine.cpus >= 2 && sys::pin_to_cpu(0);
    println!(
        "ipc-kit bench --async on {}: {rounds} rounds of {} ms runs, 64 B messages, {}",
        machine.describe(),
        run_time.as_millis(),
        if pinned { "the two processes on CPU 0 and CPU 1" } else { "not pinned" }
    );
    let results = probed_pairs(pinned, rounds, |_| {
        let mut round = Vec::new();
        for &subject in &subjects {
            for test in [Test::Rtt, Test::Stream] {
                let o = run(subject, test, run_time)
                    .map_err(|e| format!("{} {:?} {test:?}: {e}", subject.names().0, subject.names().1))?;
                round.push((subject, test, o));
            }
        }
        Ok::<_, String>(round)
    })?;
    let figures = summarize(&results);
    for f in &figures {
        let (mech, imp) = f.subject.names();
        let what = match f.p {
            Some([p50, p99, p999]) => {
                format!("rtt p50 {} p99 {} p99.9 {}", output::nanos(p50), output::nanos(p99), output::nanos(p999))
            }
            None => format!("stream {} msgs/s", output::si(f.msgs_per_s)),
        };
        let vs = f.vs_tokio.map_or(String::new(), |v| format!(", {v:.2}× tokio's {}", reference_name(f.subject)));
        println!("{mech:>16} {imp:<13} {what}{vs} ({} {} rounds)", f.rounds, f.placement.name());
    }
    if let Some(path) = json {
        let doc = json_doc(&machine, rounds, run_time, &figures);
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn reference_name(subject: Subject) -> &'static str {
    match reference(subject) {
        Some(Subject::TokioPipe) => "pipe",
        Some(Subject::TokioFifo) => "pipe on a FIFO",
        _ => "UnixStream",
    }
}

/// The JSON document: as `bench --json`'s (schema 1), with
/// `"settings": {"async": true, …}`, rows with `impl` `ipc-kit-async` or
/// `tokio`, and `vs_tokio` on the ipc-kit rows.
fn json_doc(machine: &output::Machine, rounds: u32, run_time: Duration, figures: &[Figures]) -> Value {
    let rows: Vec<Value> = figures
        .iter()
        .map(|f| {
            let (mech, imp) = f.subject.names();
            let mut row = json!({
                "mechanism": mech,
                "impl": imp,
                "test": match f.test { Test::Rtt => "rtt", Test::Stream => "stream" },
                "size": SIZE,
                "placement": f.placement.name(),
                "pairs": f.rounds,
            });
            match f.p {
                Some([p50, p99, p999]) => {
                    row["p50_ns"] = json!(p50);
                    row["p99_ns"] = json!(p99);
                    row["p999_ns"] = json!(p999);
                    row["samples"] = json!(f.samples);
                }
                None => {
                    row["msgs_per_s"] = json!(f.msgs_per_s.round());
                    row["bytes_per_s"] = json!((f.msgs_per_s * SIZE as f64).round());
                }
            }
            if let Some(v) = f.vs_tokio {
                row["vs_tokio"] = json!((v * 1000.0).round() / 1000.0);
            }
            row
        })
        .collect();
    json!({
        "schema": 1,
        "machine": {"cpus": machine.cpus, "cpu": machine.cpu, "kernel": machine.kernel},
        "settings": {"async": true, "pairs": rounds, "run_ms": run_time.as_millis() as u64},
        "results": rows,
    })
}
