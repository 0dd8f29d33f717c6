//! The comparison of every mechanism: round-trip latency percentiles and
//! streaming throughput by message size, ipc-kit beside a raw libc
//! implementation of the same work, alternated pair by pair in one run.
//!
//! Each run happens in a process of its own (forked from this one, with
//! its peer forked from it), which this process kills if it overstays its
//! time limit; the objects of a run are made here, before those forks, so
//! they are removed here whatever happens to the run.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ipc_kit::sync::Deadline;
use ipc_kit::sync::os::{PollFlags, poll_until};

use super::link::{Link, Runner, Rx, Tx};
use super::links;
use super::mech::Mech;
use super::method::{Impl, Placement, Probed, histogram, median, probed_pairs, settled, two_processes};
use crate::sys;
use crate::sys::ring::Ways;

/// What a cell measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Test {
    /// A message there and back, timed one by one.
    Rtt,
    /// Messages one way as fast as they go.
    Stream,
    /// Messages one way in batches of [`BATCH`], through the batched
    /// forms (`send_many`/`recv_many`) where a mechanism has them.
    Batch,
}

/// Messages per batch of [`Test::Batch`].
pub(crate) const BATCH: usize = 64;

impl Test {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Test::Rtt => "rtt",
            Test::Stream => "stream",
            Test::Batch => "batch",
        }
    }

    /// The tests made of `mech`: round trips and streams, batches where
    /// the mechanism has a batched form, round trips only for the limit.
    fn of(mech: Mech) -> &'static [Test] {
        match mech {
            Mech::ShmLine(_) => &[Test::Rtt],
            // Measured apart (`bench::pubsub`).
            Mech::PubSub => &[],
            Mech::ShmChannel => &[Test::Rtt, Test::Stream, Test::Batch],
            _ => &[Test::Rtt, Test::Stream],
        }
    }
}

/// One measurement: a mechanism, a test and a message size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cell {
    pub(crate) mech: Mech,
    pub(crate) test: Test,
    pub(crate) size: usize,
}

/// How a comparison runs.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) cells: Vec<Cell>,
    /// Cells left out, and why.
    pub(crate) skipped: Vec<String>,
    /// Pairs of runs (ipc-kit and raw) per cell.
    pub(crate) pairs: u32,
    /// How long one run should last.
    pub(crate) run_time: Duration,
    pub(crate) pinned: bool,
}

impl Plan {
    pub(crate) fn new(mechs: &[Mech], sizes: &[usize], pairs: u32, run_time: Duration, pinned: bool) -> Plan {
        let (mut cells, mut skipped) = (Vec::new(), Vec::new());
        for &mech in mechs {
            for &test in Test::of(mech) {
                for &size in sizes {
                    match links::fits(mech, size) {
                        Ok(()) => cells.push(Cell { mech, test, size }),
                        Err(why) if test == Test::Rtt => skipped.push(format!("{} at {size} B: {why}", mech.name())),
                        Err(_) => {}
                    }
                }
            }
        }
        Plan { cells, skipped, pairs, run_time, pinned }
    }

    /// Runs in all: per cell a calibration run and the pairs.
    pub(crate) fn runs(&self) -> u64 {
        self.cells.iter().map(|c| 1 + u64::from(self.pairs) * if c.mech.has_ipc_kit() { 2 } else { 1 }).sum()
    }
}

/// What one run measured.
#[derive(Debug)]
pub(crate) enum Outcome {
    Rtt(Histogram<u64>),
    Stream { msgs: u64, nanos: u64 },
}

impl Outcome {
    /// Operations per second: round trips at the median, or messages.
    fn speed(&self) -> f64 {
        match self {
            Outcome::Rtt(h) => 1e9 / h.value_at_quantile(0.5).max(1) as f64,
            Outcome::Stream { msgs, nanos } => *msgs as f64 * 1e9 / (*nanos).max(1) as f64,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Outcome::Rtt(h) => {
                out.push(b'R');
                for v in h.iter_recorded() {
                    out.extend_from_slice(&v.value_iterated_to().to_le_bytes());
                    out.extend_from_slice(&v.count_at_value().to_le_bytes());
                }
            }
            Outcome::Stream { msgs, nanos } => {
                out.push(b'S');
                out.extend_from_slice(&msgs.to_le_bytes());
                out.extend_from_slice(&nanos.to_le_bytes());
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> io::Result<Outcome> {
        let bad = || io::Error::other("malformed result from a run");
        let words: Vec<u64> = bytes
            .get(1..)
            .ok_or_else(bad)?
            .chunks(8)
            .map(|c| c.try_into().map(u64::from_le_bytes).map_err(|_| bad()))
            .collect::<io::Result<_>>()?;
        match (bytes.first(), words.as_slice()) {
            (Some(b'S'), &[msgs, nanos]) => Ok(Outcome::Stream { msgs, nanos }),
            (Some(b'R'), pairs) if pairs.len() % 2 == 0 => {
                let mut h = histogram();
                for p in pairs.chunks(2) {
                    h.record_n(p[0], p[1]).map_err(|_| bad())?;
                }
                Ok(Outcome::Rtt(h))
            }
            _ => Err(bad()),
        }
    }
}

/// Round trips not recorded at the start of a run, while caches and the
/// scheduler settle.
const WARM_UP: u64 = 20;

/// Writes `seq` into the first 8 bytes of `msg`, where there is room.
fn stamp(msg: &mut [u8], seq: u64) {
    if let Some(head) = msg.get_mut(..8) {
        head.copy_from_slice(&seq.to_le_bytes());
    }
}

/// Checks a received message's length and stamp.
fn check(buf: &[u8], n: usize, size: usize, seq: u64) -> io::Result<()> {
    let stamp_ok = buf.get(..8).is_none_or(|h| size < 8 || h == seq.to_le_bytes());
    if n != size || !stamp_ok {
        return Err(io::Error::other(format!("message {seq} arrived wrong ({n} bytes)")));
    }
    Ok(())
}

/// `count` round trips of `size`-byte messages, out on `ping` and back
/// on `pong`; the peer echoes.
fn rtt<T: Tx, R: Rx>(ping: Link<T, R>, pong: Link<T, R>, size: usize, count: u64) -> io::Result<Outcome> {
    let (mut ping_tx, mut ping_rx) = (ping.tx, ping.rx);
    let (mut pong_tx, mut pong_rx) = (pong.tx, pong.rx);
    two_processes(
        move || {
            let mut buf = vec![0u8; size];
            for _ in 0..count + WARM_UP {
                let n = ping_rx.recv(&mut buf)?;
                pong_tx.send(&buf[..n])?;
            }
            Ok(())
        },
        move || {
            let mut msg = vec![0xA5u8; size];
            let mut buf = vec![0u8; size];
            let mut h = histogram();
            let mut t = Instant::now();
            for i in 0..count + WARM_UP {
                stamp(&mut msg, i);
                ping_tx.send(&msg)?;
                let n = pong_rx.recv(&mut buf)?;
                let now = Instant::now();
                check(&buf, n, size, i)?;
                if i >= WARM_UP {
                    h.saturating_record(u64::try_from((now - t).as_nanos()).unwrap_or(u64::MAX));
                }
                t = now;
            }
            Ok(Outcome::Rtt(h))
        },
    )
}

/// `count` messages of `size` bytes one way; timed at the receiver from
/// the first message's arrival to the last's.
fn stream<T: Tx, R: Rx>(link: Link<T, R>, size: usize, count: u64) -> io::Result<Outcome> {
    let (mut tx, mut rx) = (link.tx, link.rx);
    two_processes(
        move || {
            let mut msg = vec![0x5Au8; size];
            for i in 0..count {
                stamp(&mut msg, i);
                tx.send(&msg)?;
            }
            Ok(())
        },
        move || {
            let mut buf = vec![0u8; size];
            let n = rx.recv(&mut buf)?;
            check(&buf, n, size, 0)?;
            let start = Instant::now();
            for i in 1..count {
                let n = rx.recv(&mut buf)?;
                check(&buf, n, size, i)?;
            }
            let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            Ok(Outcome::Stream { msgs: count - 1, nanos })
        },
    )
}

/// As [`stream`], in batches of [`BATCH`] messages on both sides (the
/// receiver takes what is there, up to a batch); `count` is rounded up to
/// whole batches.
fn batch<T: Tx, R: Rx>(link: Link<T, R>, size: usize, count: u64) -> io::Result<Outcome> {
    let (mut tx, mut rx) = (link.tx, link.rx);
    let count = count.next_multiple_of(BATCH as u64);
    two_processes(
        move || {
            let mut msgs = vec![0x5Au8; size * BATCH];
            let mut sent = 0;
            while sent < count {
                for (i, m) in msgs.chunks_mut(size).enumerate() {
                    stamp(m, sent + i as u64);
                }
                tx.send_batch(&msgs, size)?;
                sent += BATCH as u64;
            }
            Ok(())
        },
        move || {
            let mut buf = vec![0u8; size * BATCH];
            let mut got = 0;
            let mut start = Instant::now();
            while got < count {
                let n = rx.recv_batch(&mut buf, size)?;
                if got == 0 {
                    start = Instant::now();
                }
                for (i, m) in buf.chunks(size).take(n).enumerate() {
                    check(m, m.len(), size, got + i as u64)?;
                }
                got += n as u64;
            }
            let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            Ok(Outcome::Stream { msgs: count - 1, nanos })
        },
    )
}

/// One run of `cell` with `count` operations: its links made here, the
/// run in a process of its own.
fn run_once(cell: Cell, imp: Impl, count: u64, limit: Duration) -> io::Result<Outcome> {
    let run = Run { test: cell.test, size: cell.size, count, limit };
    links::with_links(cell.mech, imp, cell.size, cell.test == Test::Rtt, run)?
}

/// A run with its links of whatever type (see [`links::with_links`]).
struct Run {
    test: Test,
    size: usize,
    count: u64,
    limit: Duration,
}

impl Runner for Run {
    type Out = io::Result<Outcome>;

    fn run<T: Tx + 'static, R: Rx + 'static>(
        self,
        first: Link<T, R>,
        back: Option<Link<T, R>>,
    ) -> io::Result<Self::Out> {
        let Run { test, size, count, limit } = self;
        Ok(match (test, back) {
            (Test::Rtt, Some(pong)) => isolated(limit, move || rtt(first, pong, size, count)),
            (Test::Rtt, None) => Err(io::Error::other("a round trip needs a way back")),
            (Test::Stream, _) => isolated(limit, move || stream(first, size, count)),
            (Test::Batch, _) => isolated(limit, move || batch(first, size, count)),
        })
    }
}

/// Runs `f` in a forked process (leading a process group of its own, on
/// CPU 0) and returns its outcome; kills the group if it is not done
/// within `limit`.
fn isolated(limit: Duration, f: impl FnOnce() -> io::Result<Outcome>) -> io::Result<Outcome> {
    let (r, w) = sys::raw::pipe()?;
    let pid = match sys::fork()? {
        sys::Forked::Child => {
            drop(r);
            sys::new_process_group();
            sys::die_with_parent();
            sys::pin_to_cpu(0);
            let mut reply = match f() {
                Ok(outcome) => outcome.encode(),
                Err(e) => [b"E".as_slice(), e.to_string().as_bytes()].concat(),
            };
            if reply.is_empty() {
                reply.push(b'E');
            }
            let ok = std::fs::File::from(w).write_all(&reply).is_ok();
            sys::exit_now(if ok { 0 } else { 1 });
        }
        sys::Forked::Parent(pid) => pid,
    };
    drop(w);
    let reply = read_until(r, Instant::now() + limit);
    let reply = match reply {
        Ok(reply) => reply,
        Err(e) => {
            sys::kill_group(pid);
            let _ = sys::wait(pid);
            return Err(e);
        }
    };
    let code = sys::wait(pid)?;
    match reply.split_first() {
        Some((b'E', msg)) => Err(io::Error::other(String::from_utf8_lossy(msg).into_owned())),
        Some(_) if code == 0 => Outcome::decode(&reply),
        _ => Err(io::Error::other(format!("the run's process failed (exit {code})"))),
    }
}

/// Reads `fd` to its end, giving up at `deadline`.
fn read_until(fd: OwnedFd, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut file = std::fs::File::from(fd);
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let readable = || poll_until(file.as_fd(), PollFlags::POLLIN, Deadline::at(deadline));
        if Instant::now() >= deadline || !readable()? {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the run did not finish in time; it was killed"));
        }
        match file.read(&mut chunk)? {
            0 => return Ok(out),
            n => out.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A run that takes longer than this many times its planned time, plus
/// [`LIMIT_SLACK`], is killed.
const LIMIT_FACTOR: u32 = 20;
const LIMIT_SLACK: Duration = Duration::from_secs(10);

/// Operations per run: from a short calibration run, as many as take
/// about `run_time`.
fn calibrate(cell: Cell, run_time: Duration) -> io::Result<u64> {
    let imp = if cell.mech.has_ipc_kit() { Impl::IpcKit } else { Impl::Raw };
    let (probe_count, min, max) = match cell.test {
        Test::Rtt => (200, 200, 5_000_000),
        Test::Stream | Test::Batch => (2_000, 2_000, 50_000_000),
    };
    let outcome = run_once(cell, imp, probe_count, LIMIT_SLACK)?;
    let per_second = outcome.speed();
    Ok(((per_second * run_time.as_secs_f64()) as u64).clamp(min, max))
}

/// One pair of runs, with the placement they ran in.
#[derive(Debug)]
pub(crate) struct PairRun {
    pub(crate) at: Probed,
    pub(crate) ipc_kit: Option<Outcome>,
    pub(crate) raw: Outcome,
}

/// Runs one cell: calibration, then the pairs, alternating which side
/// goes first; `tick` is called after each run.
pub(crate) fn run_cell(plan: &Plan, cell: Cell, mut tick: impl FnMut()) -> io::Result<Vec<PairRun>> {
    let count = calibrate(cell, plan.run_time)?;
    tick();
    let limit = plan.run_time * LIMIT_FACTOR + LIMIT_SLACK;
    let pairs = probed_pairs(plan.pinned, plan.pairs, |i| {
        let both = Impl::order(i);
        let order: &[Impl] = if cell.mech.has_ipc_kit() { &both } else { &[Impl::Raw] };
        let (mut ipc_kit, mut raw) = (None, None);
        for &imp in order {
            let outcome = run_once(cell, imp, count, limit)?;
            tick();
            match imp {
                Impl::IpcKit => ipc_kit = Some(outcome),
                Impl::Raw => raw = Some(outcome),
            }
        }
        let raw = raw.ok_or_else(|| io::Error::other("no raw run"))?;
        Ok::<_, io::Error>((ipc_kit, raw))
    })?;
    Ok(pairs.into_iter().map(|(at, (ipc_kit, raw))| PairRun { at, ipc_kit, raw }).collect())
}

/// A side's figures over the runs kept.
#[derive(Clone, Debug)]
pub(crate) enum Figures {
    Rtt { p50: u64, p99: u64, p999: u64, samples: u64 },
    Stream { msgs_per_s: f64, bytes_per_s: f64 },
}

/// Which pairs a cell's figures come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kept {
    /// The placement of the pairs kept.
    pub(crate) placement: Placement,
    /// Pairs kept; pairs dropped for running in the other placement, and
    /// for the placement changing while they ran.
    pub(crate) pairs: usize,
    pub(crate) dropped: usize,
    pub(crate) moved: usize,
}

/// A cell's result.
#[derive(Clone, Debug)]
pub(crate) struct CellResult {
    pub(crate) cell: Cell,
    pub(crate) kept: Kept,
    pub(crate) ipc_kit: Option<Figures>,
    pub(crate) raw: Figures,
    /// ipc-kit's speed over raw's (round trips per second at the median,
    /// or messages per second): the median of the per-pair ratios.
    pub(crate) vs_raw: Option<f64>,
    /// For a channel's round trip: the p50s of the limits at the same
    /// size in the same run, where they ran (see [`set_limits`]).
    pub(crate) limits: Limits,
}

/// The p50s of the round-trip limits: one line handed back and forth
/// (`shm-line`), and a line each way (`shm-lines`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Limits {
    pub(crate) line: Option<u64>,
    pub(crate) lines: Option<u64>,
}

impl CellResult {
    /// A side's round trip p50 over a limit's p50 (`limit` picks which
    /// one): how many times the limit it takes (`None` without one).
    pub(crate) fn vs(&self, figures: Option<&Figures>, limit: fn(Limits) -> Option<u64>) -> Option<f64> {
        match (figures, limit(self.limits)) {
            (Some(Figures::Rtt { p50, .. }), Some(limit)) => Some(*p50 as f64 / limit.max(1) as f64),
            _ => None,
        }
    }
}

/// Gives each channel's round trip the limits measured at its size.
pub(crate) fn set_limits(results: &mut [CellResult]) {
    let p50 = |results: &[CellResult], ways, size| {
        results.iter().find_map(|r| match r.raw {
            Figures::Rtt { p50, .. } if r.cell.mech == Mech::ShmLine(ways) && r.cell.size == size => Some(p50),
            _ => None,
        })
    };
    for i in 0..results.len() {
        let cell = results[i].cell;
        if cell.mech.is_channel() && cell.test == Test::Rtt {
            let line = p50(results, Ways::Shared, cell.size);
            let lines = p50(results, Ways::Apart, cell.size);
            results[i].limits = Limits { line, lines };
        }
    }
}

/// Keeps the pairs that ran in one placement throughout (all, if none
/// did), of those the near ones if there are any, and sums them up.
pub(crate) fn summarize(cell: Cell, pairs: &[PairRun]) -> CellResult {
    let pool = settled(pairs, |p| p.at.moved);
    let near = pool.iter().any(|p| p.at.placement == Placement::Near);
    let placement = if near { Placement::Near } else { pool.first().map_or(Placement::Single, |p| p.at.placement) };
    let kept: Vec<&PairRun> = pool.iter().copied().filter(|p| p.at.placement == placement).collect();
    let figures = |outcomes: &[&Outcome]| match outcomes.first() {
        Some(Outcome::Rtt(_)) => {
            let mut all = histogram();
            for o in outcomes {
                if let Outcome::Rtt(h) = o {
                    let _ = all.add(h);
                }
            }
            Figures::Rtt {
                p50: all.value_at_quantile(0.5),
                p99: all.value_at_quantile(0.99),
                p999: all.value_at_quantile(0.999),
                samples: all.len(),
            }
        }
        _ => {
            let msgs_per_s = median(outcomes.iter().map(|o| o.speed()));
            Figures::Stream { msgs_per_s, bytes_per_s: msgs_per_s * cell.size as f64 }
        }
    };
    let raw: Vec<&Outcome> = kept.iter().map(|p| &p.raw).collect();
    let ours: Vec<&Outcome> = kept.iter().filter_map(|p| p.ipc_kit.as_ref()).collect();
    let ratios: Vec<f64> = kept.iter().filter_map(|p| p.ipc_kit.as_ref().map(|o| o.speed() / p.raw.speed())).collect();
    CellResult {
        cell,
        kept: Kept { placement, pairs: kept.len(), dropped: pool.len() - kept.len(), moved: pairs.len() - pool.len() },
        ipc_kit: (!ours.is_empty()).then(|| figures(&ours)),
        raw: figures(&raw),
        vs_raw: (!ratios.is_empty()).then(|| median(ratios.into_iter())),
        limits: Limits::default(),
    }
}

#[cfg(test)]
mod tests {
    use ipc_kit::Mechanism;

    use super::*;

    #[test]
    fn outcomes_survive_encoding() {
        let mut h = histogram();
        for v in [90, 95, 120, 40_000, 1_000_000] {
            h.record(v).unwrap();
        }
        let Outcome::Rtt(back) = Outcome::decode(&Outcome::Rtt(h.clone()).encode()).unwrap() else { panic!() };
        assert_eq!(back.len(), 5);
        assert_eq!(back.value_at_quantile(0.5), h.value_at_quantile(0.5));
        let s = Outcome::decode(&Outcome::Stream { msgs: 7, nanos: 9 }.encode()).unwrap();
        assert!(matches!(s, Outcome::Stream { msgs: 7, nanos: 9 }));
        assert!(Outcome::decode(b"S123").is_err());
        assert!(Outcome::decode(b"").is_err());
    }

    #[test]
    fn pairs_that_moved_or_ran_far_are_dropped() {
        let cell = Cell { mech: Mech::Kit(Mechanism::Pipe), test: Test::Stream, size: 64 };
        let pair = |placement, moved, ours: u64, raw: u64| PairRun {
            at: Probed { placement, probe_ns: 100.0, moved },
            ipc_kit: Some(Outcome::Stream { msgs: ours, nanos: 1_000_000_000 }),
            raw: Outcome::Stream { msgs: raw, nanos: 1_000_000_000 },
        };
        let (near, far) = (Placement::Near, Placement::Far);
        let pairs = [pair(near, false, 100, 100), pair(near, true, 400, 100), pair(far, false, 10, 40)];
        let r = summarize(cell, &pairs);
        assert_eq!(r.kept, Kept { placement: near, pairs: 1, dropped: 1, moved: 1 });
        assert_eq!(r.vs_raw, Some(1.0));
        // Only moved pairs: they are all there is.
        let r = summarize(cell, &[pair(near, true, 100, 50), pair(far, true, 90, 30)]);
        assert_eq!(r.kept, Kept { placement: near, pairs: 1, dropped: 1, moved: 0 });
        assert_eq!(r.vs_raw, Some(2.0));
        // No near pair that stayed: the far ones that stayed.
        let r = summarize(cell, &[pair(near, true, 100, 50), pair(far, false, 90, 30)]);
        assert_eq!(r.kept, Kept { placement: far, pairs: 1, dropped: 0, moved: 1 });
    }

    #[test]
    fn plans_skip_what_a_mechanism_cannot_carry() {
        let plan = Plan::new(&Mech::ALL, &[64, 65536, 100], 5, Duration::from_millis(1), false);
        let has = |m, s| plan.cells.iter().any(|c| c.mech == m && c.size == s);
        let (pipe, sysv, posix) =
            (Mech::Kit(Mechanism::Pipe), Mech::Kit(Mechanism::SysvQueue), Mech::Kit(Mechanism::PosixQueue));
        assert!(has(pipe, 65536) && has(sysv, 64) && has(posix, 100));
        assert!(!has(sysv, 65536) && !has(posix, 65536) && !has(Mech::ShmChannel, 100));
        assert!(plan.skipped.iter().any(|s| s.starts_with("shm-channel at 100 B")));
    }
}
