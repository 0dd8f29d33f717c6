//! A side's part in a poller's wait (`ipc_sync::Pollable`): the doorbell
//! a poller sleeps on, and the look at the ring that says whether the side
//! is ready.
//!
//! A channel made for fork has an eventfd per side, its doorbell, which
//! every process of the channel inherits (see `ring` for how it is rung).
//! A poller about to sleep arms the side (sets `ARMED` in its sleep line's
//! `waiting`, then the same fence and barrier as a side about to sleep),
//! looks at the ring once more, and sleeps on the doorbell; the peer,
//! publishing its index, finds the bit, clears it and rings the doorbell
//! once. A side nobody arms is never rung: a steady stream makes no system
//! call for pollers that are not there.
//!
//! A channel in a memfd has them too, handed over with the memfd
//! (`Handoff`). A named channel has none (its processes share no eventfd)
//! and is watched instead: a thread of the polling process sleeps on the
//! side's futex word while a poller is armed (`WATCHED`, which the peer
//! wakes like a sleeping side), and rings an eventfd of its own.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ipc_sync::EventFd;
use ipc_sync::ready::{Readiness, Watch, Watcher};

use super::conn::Conn;
use super::layout::{ARMED, CLOSED, CONNECTED, KIND_BYTES, LOCKED, Role, UNCLAIMED, WATCHED, padded, ring_pos};
use super::liveness;
use super::shim::{self, fence};

/// How often a poller looks again at a side whose peer's death nothing
/// rings for (a killed process rings no doorbell): the `recheck` of a
/// side's readiness, unless its barrier was refused (then 1 ms). A
/// program that learns of the peer's death another way (a socket that
/// hangs up) may leave it out.
pub const RECHECK: Duration = Duration::from_millis(20);

/// How often a poller looks again when the barrier that orders its
/// arming against the peer's publish was refused.
const UNBARRIERED: Duration = Duration::from_millis(1);

/// How often the kernel is asked whether the peer is gone, at most.
const ASK_EVERY: Duration = Duration::from_millis(10);

/// A side's readiness, shared by the side and the pollers it is
/// registered with: the look at the ring, and the doorbell.
#[derive(Debug)]
pub(super) struct Bell {
    look: Arc<Look>,
    door: Door,
}

/// What a poller sleeps on for a side.
#[derive(Debug)]
enum Door {
    /// The channel's doorbell for the side, rung by the peer.
    Rung(Arc<EventFd>),
    /// A watching thread's eventfd (a channel without doorbells).
    Watched(Watcher),
}

/// The look at a side's ring that says whether it is ready.
#[derive(Debug)]
struct Look {
    conn: Conn,
    role: Role,
    /// This process forces a barrier on the peer before it sleeps (the
    /// side's FLAG_BARRIER): arming must do the same.
    barrier: bool,
    /// A sender's need: the bytes of the byte record it last found no
    /// room for (0: the smallest record, or a slot).
    want: AtomicU64,
    /// The side's own index as it published it, kept here in private
    /// memory: only the peer's index is read from the shared memory, where
    /// a peer could forge ours.
    own: AtomicU64,
    /// Pollers armed now: the first sets `ARMED`, the last clears it (a
    /// lock, so that a clearing and a setting never cross).
    armed: Mutex<u32>,
    /// The peer was found gone: its side's death, seen by a poller.
    gone: AtomicBool,
    /// The last arming's barrier was refused (see [`UNBARRIERED`]).
    unbarriered: AtomicBool,
    /// When the kernel was last asked about the peer, in nanoseconds
    /// after `born`.
    asked: AtomicU64,
    born: Instant,
}

impl Bell {
    /// The readiness of side `role`; for a channel without doorbells, with
    /// the thread that watches it.
    pub(super) fn new(conn: Conn, role: Role, barrier: bool, own: u64) -> std::io::Result<Bell> {
        let look = Arc::new(Look::new(conn, role, barrier, own));
        let door = match doorbell(&look.conn, role) {
            Some(bell) => Door::Rung(Arc::clone(bell)),
            None => Door::Watched(Watcher::start("ipc-shm-watch", Arc::clone(&look) as Arc<dyn Watch>)?),
        };
        Ok(Bell { look, door })
    }

    /// The descriptor a poller sleeps on: the channel's doorbell, or the
    /// watcher's.
    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        match &self.door {
            Door::Rung(bell) => bell.as_fd(),
            Door::Watched(w) => w.fd(),
        }
    }

    /// See [`Look::wants`].
    pub(super) fn wants(&self, len: usize) {
        self.look.wants(len);
    }

    /// The side published `index`.
    #[inline(always)]
    pub(super) fn published(&self, index: u64) {
        // Relaxed: read by a poller of this process after its arming (a
        // SeqCst read-modify-write); a poller on another thread that reads
        // an older value reports the side ready once too often, or looks
        // again after its recheck time.
        self.look.own.store(index, Ordering::Relaxed);
    }

    /// Whether a poller found the peer gone for good.
    pub(super) fn peer_gone(&self) -> bool {
        self.look.gone.load(Ordering::Relaxed)
    }
}

impl Look {
    fn new(conn: Conn, role: Role, barrier: bool, own: u64) -> Look {
        Look {
            conn,
            role,
            barrier,
            want: AtomicU64::new(0),
            own: AtomicU64::new(own),
            armed: Mutex::new(0),
            gone: AtomicBool::new(false),
            unbarriered: AtomicBool::new(false),
            asked: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    /// A sender found no room for a byte record of `len` bytes: it is
    /// writable again when there is (0: any record).
    fn wants(&self, len: usize) {
        // Relaxed: read by a poller of this process, which arms (a SeqCst
        // read-modify-write) before it looks.
        self.want.store(padded(len), Ordering::Relaxed);
    }

    /// Sets `bit` in the side's `waiting`, then the fence and the barrier
    /// of a side about to sleep (see `shim::publish`): the peer's next
    /// publish sees the bit, or a look after this sees its index.
    fn announce(&self, bit: u32) {
        let line = self.conn.sleep_line(self.role);
        line.waiting.fetch_or(bit, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        // Should the kernel refuse the barrier, the peer's index may reach
        // us late: look again soon.
        let late = self.barrier && !shim::barrier();
        self.unbarriered.store(late, Ordering::Relaxed);
    }

    /// Whether the side is ready: a message waits (receiver), there is
    /// room (sender), the peer is gone, or the memory says something the
    /// next call reports as an error (an impossible index, a shrunk
    /// object).
    fn ready(&self) -> bool {
        let conn = &self.conn;
        if conn.faults().is_err() {
            return true;
        }
        // Ours from private memory; the peer's, with Acquire, as the
        // side's own reads of it.
        let own = self.own.load(Ordering::Relaxed);
        let (tail, head) = match self.role {
            Role::Receiver => (conn.tail().index.load(Ordering::Acquire), own),
            Role::Sender => (own, conn.head().index.load(Ordering::Acquire)),
        };
        let cap = conn.header.capacity;
        if head > tail || tail - head > cap {
            // Impossible: the next call says so (a receiver's), or the
            // peer holds back room it may not free (a sender's).
            return self.role == Role::Receiver || self.peer_gone_now();
        }
        let now = match self.role {
            Role::Receiver => tail != head,
            Role::Sender if conn.header.kind == KIND_BYTES => {
                // Relaxed: see `wants`.
                let need = self.want.load(Ordering::Relaxed).max(padded(0));
                let pos = ring_pos(tail, cap);
                let skip = if need <= cap - pos { 0 } else { cap - pos };
                tail - head + skip + need <= cap
            }
            Role::Sender => tail - head < cap,
        };
        now || self.peer_gone_now()
    }

    /// Whether the peer is gone: its state says closed, or (asking the
    /// kernel at most every [`ASK_EVERY`]) its process is.
    fn peer_gone_now(&self) -> bool {
        if self.gone.load(Ordering::Relaxed) {
            return true;
        }
        let state = self.conn.status().state(self.role.peer());
        // Acquire: the peer's last index happens before its CLOSED, which
        // the side then trusts (see `Bell::peer_gone`).
        let gone = if state.load(Ordering::Acquire) == CLOSED {
            true
        } else {
            let now = self.born.elapsed().as_nanos() as u64;
            let last = self.asked.load(Ordering::Relaxed);
            if now.saturating_sub(last) < ASK_EVERY.as_nanos() as u64 && last != 0 {
                return false;
            }
            self.asked.store(now.max(1), Ordering::Relaxed);
            peer_gone_now(&self.conn, self.role)
        };
        if gone {
            self.gone.store(true, Ordering::Relaxed);
        }
        gone
    }
}

/// Several pollers may wait for one side at once, each armed between its
/// `arm` and its `disarm`: the bit stays while any is. The doorbell is
/// never drained: pollers wait for its edges (each ring is one), so that
/// none takes another's.
impl Readiness for Bell {
    fn arm(&self) -> bool {
        match &self.door {
            Door::Rung(_) => {
                let mut armed = self.look.armed.lock().unwrap_or_else(PoisonError::into_inner);
                *armed += 1;
                // Every arming: the bit again (a ring cleared it), and the
                // fence and barrier that order this look.
                self.look.announce(ARMED);
                drop(armed);
                self.look.ready()
            }
            Door::Watched(w) => w.arm(),
        }
    }

    fn disarm(&self) {
        match &self.door {
            Door::Rung(_) => {
                let mut armed = self.look.armed.lock().unwrap_or_else(PoisonError::into_inner);
                *armed = armed.saturating_sub(1);
                if *armed == 0 {
                    // Relaxed: a peer that still sees the bit rings once
                    // too often.
                    self.look.conn.sleep_line(self.look.role).waiting.fetch_and(!ARMED, Ordering::Relaxed);
                }
            }
            Door::Watched(w) => w.disarm(),
        }
    }

    fn edges(&self) -> bool {
        true
    }

    fn recheck(&self) -> Option<Duration> {
        Some(if self.look.unbarriered.load(Ordering::Relaxed) { UNBARRIERED } else { RECHECK })
    }
}

/// The watching thread's part: it sleeps on the side's futex word as the
/// side itself would (`WATCHED`, which the peer wakes like `ASLEEP`).
impl Watch for Look {
    fn ready(&self) -> bool {
        Look::ready(self)
    }

    fn sleep(&self, _round: u32, watching: &dyn Fn() -> bool) {
        let line = self.conn.sleep_line(self.role);
        // Acquire: pairs with the waker's Release bump.
        let seen = line.signal.load(Ordering::Acquire);
        if !watching() {
            return; // stopped before `seen`: its nudge is in it
        }
        self.announce(WATCHED);
        if !Look::ready(self) {
            let slice = if self.unbarriered.load(Ordering::Relaxed) { UNBARRIERED } else { RECHECK };
            shim::futex_wait_until(&line.signal, seen, ipc_sync::Deadline::after(slice));
        }
        line.waiting.fetch_and(!WATCHED, Ordering::Relaxed);
    }

    fn nudge(&self) {
        let line = self.conn.sleep_line(self.role);
        line.signal.fetch_add(1, Ordering::Release);
        shim::futex_wake(&line.signal, u32::MAX);
    }
}

/// The doorbell of side `role`, if the channel has doorbells.
pub(super) fn doorbell(conn: &Conn, role: Role) -> Option<&Arc<EventFd>> {
    conn.mem.bells.as_ref().map(|b| &b[role.ix()])
}

/// Rings the doorbell of side `role` (the peer's), if a poller armed it:
/// clears the bit and writes 0 to the eventfd, once per arming. Whether it
/// rang.
///
/// A write of 0 wakes the eventfd's pollers like any write, and the epoll
/// that reports it finds the eventfd readable because its counter starts
/// at 1 and nobody takes from it. And a write of 0 never waits: an eventfd
/// write waits only when it would take the counter past its maximum, and
/// only while the description is blocking. The description is shared with
/// the peer's process, which may clear `O_NONBLOCK` and fill the counter;
/// a write of 1 would then wait for ever (eventfds refuse `RWF_NOWAIT`).
/// A peer that takes the counter down to 0 only keeps its own pollers
/// from waking, as not ringing would.
pub(super) fn ring(conn: &Conn, role: Role) -> bool {
    let line = conn.sleep_line(role);
    // Relaxed: the publish that led here ordered the index against the
    // poller's arming; only the bit is read and cleared.
    if line.waiting.fetch_and(!ARMED, Ordering::Relaxed) & ARMED != 0
        && let Some(bell) = doorbell(conn, role)
    {
        let _ = bell.try_add(0);
        return true;
    }
    false
}

/// Whether the peer of side `role` is gone for good: it closed, its
/// claiming process died (its lock is free), or it was never claimed and
/// no process that could claim it is left. Asks the kernel (one or two
/// system calls).
pub(super) fn peer_gone_now(conn: &Conn, role: Role) -> bool {
    let peer = role.peer();
    let state = conn.status().state(peer);
    // Acquire: the peer's last index update happens before its CLOSED,
    // and its lock before its LOCKED.
    if state.load(Ordering::Acquire) == UNCLAIMED {
        let Some(c) = &conn.mem.candidates else { return false };
        if !c.none_left(peer) {
            return false;
        }
        // The last possible claimer may have claimed just before it went.
        if state.load(Ordering::Acquire) == UNCLAIMED {
            return true;
        }
    }
    match state.load(Ordering::Acquire) {
        // Every claimed side holds its lock: the kernel decides, whatever
        // of the two a peer wrote.
        LOCKED | CONNECTED => conn.mem.file().is_some_and(|file| !liveness::lock_held(file, peer)),
        UNCLAIMED => false,
        _ => true, // CLOSED, or garbage from a broken peer
    }
}
