//! The measurement method shared by the comparison and `--detail`: the
//! two implementations run alternately in pairs, each pair between two
//! probes of where the vCPUs are; pairs during which they moved are
//! dropped, and the figures are medians.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::sys;

/// Which implementation a run measures: ipc-kit, or the raw libc one
/// doing the same work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Impl {
    IpcKit,
    Raw,
}

impl Impl {
    /// The name of the tables and of the JSON output's `impl` field.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Impl::IpcKit => "ipc-kit",
            Impl::Raw => "raw",
        }
    }

    /// The order of the two runs of pair number `pair`: ipc-kit first in
    /// even pairs, raw first in odd ones, so that neither always runs on
    /// caches and a scheduler the other left.
    pub(crate) fn order(pair: u32) -> [Impl; 2] {
        if pair.is_multiple_of(2) { [Impl::IpcKit, Impl::Raw] } else { [Impl::Raw, Impl::IpcKit] }
    }
}

/// Where the two vCPUs were when a pair ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    Near,
    Far,
    /// One CPU only: nothing to probe.
    Single,
}

impl Placement {
    /// Every placement, in the order figures are reported.
    pub(crate) const ALL: [Placement; 3] = [Placement::Near, Placement::Far, Placement::Single];

    /// The name of the reports and of the JSON output's `placement` field.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Placement::Near => "near",
            Placement::Far => "far",
            Placement::Single => "single",
        }
    }
}

/// Cross-core round trips slower than this are a far placement.
const FAR_NS: f64 = 150.0;

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

/// Latency samples are recorded from 1 ns to 100 s with 3 significant
/// digits.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}
