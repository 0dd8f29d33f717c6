//! Synchronization: ipc-sync's futex primitives against the same
//! algorithms written directly on raw futex calls.

use std::hint::black_box;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use ipc_kit::shm::Mapping;
use ipc_kit::sync::{Event, Mutex};

use super::method::{Impl, two_processes};
use super::workload::{Size, Unit, Workload, ns_per_op};
use crate::sys;

pub(crate) const WORKLOADS: &[Workload] = &[
    Workload {
        name: "Mutex (robust: a holder's death is reported), uncontended lock and unlock, raw = plain futex lock",
        unit: Unit::NanosPerOp,
        run: mutex_uncontended,
    },
    Workload {
        name: "Event round trip between two processes, raw = futex ping-pong (always sleeps)",
        unit: Unit::NanosPerOp,
        run: |imp, size| round_trip(imp, size, RawWait::Futex),
    },
    Workload {
        name: "Event round trip between two processes, raw = spin-then-futex ping-pong",
        unit: Unit::NanosPerOp,
        run: |imp, size| round_trip(imp, size, RawWait::SpinThenFutex),
    },
];

/// A lock and unlock takes some nanoseconds: many of them per run.
const LOCKS_PER_OP: u64 = 100;

fn mutex_uncontended(imp: Impl, size: Size) -> io::Result<f64> {
    let map = Mapping::anonymous(4096)?;
    let ops = size.ops * LOCKS_PER_OP;
    let start = Instant::now();
    match imp {
        Impl::IpcKit => {
            let m = map.shared::<Mutex<u64>>(0)?;
            for _ in 0..ops {
                let mut g = m.lock().map_err(|e| io::Error::other(e.to_string()))?;
                *g = black_box(*g + 1);
            }
        }
        Impl::Raw => {
            // A lock word and a value, as in Mutex<u64>, without its robust-list
            // link: the classic futex lock, which no holder's death unlocks.
            let state = map.shared::<AtomicU32>(0)?;
            let value = map.shared::<AtomicU64>(8)?;
            for _ in 0..ops {
                raw_lock(&state);
                value.store(black_box(value.load(Ordering::Relaxed) + 1), Ordering::Relaxed);
                raw_unlock(&state);
            }
        }
    }
    Ok(ns_per_op(ops, start.elapsed()))
}

/// The classic three-state futex lock: 0 free, 1 locked, 2 contended.
fn raw_lock(state: &AtomicU32) {
    if state.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_ok() {
        return;
    }
    while state.swap(2, Ordering::Acquire) != 0 {
        sys::futex_wait(state, 2);
    }
}

fn raw_unlock(state: &AtomicU32) {
    if state.swap(0, Ordering::Release) == 2 {
        sys::futex_wake(state, 1);
    }
}

#[derive(Clone, Copy)]
enum RawWait {
    /// Sleep in the kernel at once; always wake with a system call.
    Futex,
    /// Spin a while, then sleep; wake only a sleeper.
    SpinThenFutex,
}

/// Offsets in the shared page: a cache line per word. Each end has a
/// flag that says it sleeps, at `SLEEPING + 64 * end`.
const PING: usize = 0;
const PONG: usize = 128;
const SLEEPING: usize = 256;

/// Round trips between this process (CPU 0) and a forked one (CPU 1): ns
/// per round trip.
fn round_trip(imp: Impl, size: Size, raw: RawWait) -> io::Result<f64> {
    let map = Mapping::anonymous(4096)?;
    let ops = size.ops;
    two_processes(
        || exchange(&map, End::Responder, imp, raw, ops),
        || {
            let start = Instant::now();
            exchange(&map, End::Initiator, imp, raw, ops)?;
            Ok(ns_per_op(ops, start.elapsed()))
        },
    )
}

/// An end of the round trips: the initiator sets PING and waits for PONG,
/// the responder waits for PING and sets PONG.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Initiator,
    Responder,
}

/// `ops` round trips from one end.
fn exchange(map: &Mapping, end: End, imp: Impl, raw: RawWait, ops: u64) -> io::Result<()> {
    // The word this end sets, the one it waits on, its sleeping flag and
    // its peer's.
    let (set, wait, own, peer) = match end {
        End::Initiator => (PING, PONG, SLEEPING, SLEEPING + 64),
        End::Responder => (PONG, PING, SLEEPING + 64, SLEEPING),
    };
    match imp {
        Impl::IpcKit => {
            let (set, wait) = (map.shared::<Event>(set)?, map.shared::<Event>(wait)?);
            turns(end, ops, || set.set(), || wait.wait_reset());
        }
        Impl::Raw => {
            let (set, wait) = (map.shared::<AtomicU32>(set)?, map.shared::<AtomicU32>(wait)?);
            let (own, peer) = (map.shared::<AtomicU32>(own)?, map.shared::<AtomicU32>(peer)?);
            turns(end, ops, || raw_signal(&set, &peer, raw), || raw_wait(&wait, &own, raw));
        }
    }
    Ok(())
}

/// `ops` turns of signalling the peer and waiting for it, in the order of
/// `end`.
fn turns(end: End, ops: u64, mut signal: impl FnMut(), mut wait: impl FnMut()) {
    for _ in 0..ops {
        if end == End::Initiator {
            signal();
            wait();
        } else {
            wait();
            signal();
        }
    }
}

/// Spins before sleeping, in the spin-then-futex variant.
const SPINS: u32 = 4000;

fn raw_signal(word: &AtomicU32, peer_sleeping: &AtomicU32, raw: RawWait) {
    word.store(1, Ordering::SeqCst);
    match raw {
        RawWait::Futex => sys::futex_wake(word, 1),
        RawWait::SpinThenFutex => {
            if peer_sleeping.load(Ordering::SeqCst) != 0 {
                sys::futex_wake(word, 1);
            }
        }
    }
}

fn raw_wait(word: &AtomicU32, sleeping: &AtomicU32, raw: RawWait) {
    if let RawWait::SpinThenFutex = raw {
        for _ in 0..SPINS {
            // Read first: a read-modify-write in the loop would take the
            // cache line away from the signaller every time.
            if word.load(Ordering::Relaxed) == 1 && word.swap(0, Ordering::SeqCst) == 1 {
                return;
            }
            std::hint::spin_loop();
        }
    }
    loop {
        sleeping.store(1, Ordering::SeqCst);
        if word.swap(0, Ordering::SeqCst) == 1 {
            sleeping.store(0, Ordering::SeqCst);
            return;
        }
        sys::futex_wait(word, 0);
        sleeping.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The spin-then-futex round trips with a responder that has gone to
    /// sleep before the initiator starts: the initiator must wake it by the
    /// responder's sleeping flag, or both sleep for good.
    #[test]
    fn spin_then_futex_wakes_a_responder_that_sleeps() {
        const OPS: u64 = 50;
        // Leaked: a thread that hangs keeps it, and the test ends anyway.
        let map: &'static Mapping = Box::leak(Box::new(Mapping::anonymous(4096).unwrap()));
        let (done_tx, done) = std::sync::mpsc::channel();
        let responder_done = done_tx.clone();
        std::thread::spawn(move || {
            let r = exchange(map, End::Responder, Impl::Raw, RawWait::SpinThenFutex, OPS);
            let _ = responder_done.send(("the responder", r.is_ok()));
        });
        // The responder has spun, and sleeps in the kernel on PING.
        let ping = map.shared::<AtomicU32>(PING).unwrap();
        let t = Instant::now();
        while !a_thread_sleeps_on(&ping) {
            assert!(t.elapsed() < Duration::from_secs(10), "the responder never went to sleep");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::spawn(move || {
            let r = exchange(map, End::Initiator, Impl::Raw, RawWait::SpinThenFutex, OPS);
            let _ = done_tx.send(("the initiator", r.is_ok()));
        });
        for _ in 0..2 {
            let (who, ok) = done.recv_timeout(Duration::from_secs(10)).expect("a side still waits after 10 s");
            assert!(ok, "{who} failed");
        }
    }

    /// Whether a thread of this process is in a `futex` call on `word`
    /// (its /proc/self/task/TID/syscall: the call's number, then its
    /// first argument, the word's address).
    fn a_thread_sleeps_on(word: &AtomicU32) -> bool {
        let (futex, addr) = (libc::SYS_futex.to_string(), format!("{:#x}", word.as_ptr() as usize));
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return false };
        tasks.flatten().any(|task| {
            std::fs::read_to_string(task.path().join("syscall")).is_ok_and(|call| {
                let mut fields = call.split_whitespace();
                fields.next() == Some(futex.as_str()) && fields.next() == Some(addr.as_str())
            })
        })
    }
}
