//! How a side learns that no peer is left, from kernel objects alone:
//! never from a pid (pids are local to a PID namespace, and reused), a
//! clock (a peer may be merely stalled) or what shared memory says (a peer
//! may write anything there).
//!
//! - **A claimed side** holds an exclusive lock on one byte of the
//!   channel's file, taken through an open file description of its own
//!   (`F_OFD_SETLK` on a fresh `open` of the file). The kernel drops it when
//!   the claiming process closes the side or dies, in any PID namespace, so
//!   the peer asks the kernel (`F_OFD_GETLK`) whether it is still held.
//!   The lock also settles a race between two claimers of the same side.
//! - **A side nobody claimed yet**, in a channel made before `fork`: every
//!   process that may still claim it holds the write end of a pipe made
//!   with the channel, inherited across `fork`. A process that claims one
//!   side closes its copy of the other side's write end (it will not claim
//!   that one), so once every possible claimer is gone, the read end hangs
//!   up (`POLLHUP`). Named and memfd channels have no such pipe: any
//!   process that opens the name or receives the fd may still come.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use super::sys;

/// The first of the two lock bytes: far past the end of any channel's
/// file (a lock may cover bytes a file does not have). The sender's is
/// here, the receiver's the next.
const LOCK_AT: u64 = 1 << 62;

/// Side index: 0 for the sender, 1 for the receiver.
fn ix(tx: bool) -> usize {
    usize::from(!tx)
}

/// The lock byte of a side.
pub(super) fn lock_byte(tx: bool) -> u64 {
    LOCK_AT + ix(tx) as u64
}

/// What trying to take a side's lock gave.
#[derive(Debug)]
pub(super) enum Claim {
    /// This process holds the side's lock, through this description.
    Locked(OwnedFd),
    /// Another process holds it: the side is claimed.
    Taken,
    /// This process cannot open a description of its own (no /proc, or the
    /// file's permissions refuse a new open): the side goes without a lock,
    /// and its peer cannot tell when its process dies.
    Unlocked,
}

/// Takes side `tx`'s lock through a new open file description of `file`.
pub(super) fn take_lock(file: BorrowedFd<'_>, tx: bool) -> io::Result<Claim> {
    let Ok(own) = sys::reopen(file) else { return Ok(Claim::Unlocked) };
    Ok(if sys::lock_byte(own.as_fd(), lock_byte(tx))? { Claim::Locked(own) } else { Claim::Taken })
}

/// Whether the claimer of side `tx` still holds its lock (asked through
/// `file`, whose description is not the claimer's). An error reads as
/// "held": we cannot prove the claimer gone.
pub(super) fn lock_held(file: BorrowedFd<'_>, tx: bool) -> bool {
    sys::byte_locked(file, lock_byte(tx)).unwrap_or(true)
}

/// The processes that may still claim each side of a channel made before
/// `fork` (see the module docs).
#[derive(Debug)]
pub(super) struct Candidates {
    /// Read ends, by side: they hang up when no possible claimer is left.
    watch: [OwnedFd; 2],
    /// This process's write ends, by side: its standing as a possible
    /// claimer of each.
    mine: Mutex<[Option<OwnedFd>; 2]>,
    /// Which process claimed each side through this copy of the channel
    /// (0: none). A forked child's copy names its parent, not itself.
    claimed_by: [AtomicU32; 2],
}

impl Candidates {
    pub(super) fn new() -> io::Result<Candidates> {
        let (tx_read, tx_write) = sys::pipe()?;
        let (rx_read, rx_write) = sys::pipe()?;
        Ok(Candidates {
            watch: [tx_read, rx_read],
            mine: Mutex::new([Some(tx_write), Some(rx_write)]),
            claimed_by: [AtomicU32::new(0), AtomicU32::new(0)],
        })
    }

    fn mine(&self) -> std::sync::MutexGuard<'_, [Option<OwnedFd>; 2]> {
        // A panic while holding it cannot leave the fds inconsistent.
        self.mine.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this process may claim side `tx`: it still stands as a
    /// possible claimer, or it claimed the other side itself (one process
    /// may hold both sides; it lives as long as either of them).
    pub(super) fn may_claim(&self, tx: bool) -> bool {
        self.mine()[ix(tx)].is_some() || self.claimed_by[ix(!tx)].load(Ordering::Relaxed) == std::process::id()
    }

    /// This process claimed side `tx`: it gives up the other side.
    pub(super) fn claimed(&self, tx: bool) {
        self.claimed_by[ix(tx)].store(std::process::id(), Ordering::Relaxed);
        self.mine()[ix(!tx)] = None;
    }

    /// Whether every process that could claim side `tx` is gone. An error
    /// reads as "not gone".
    pub(super) fn none_left(&self, tx: bool) -> bool {
        sys::hung_up(self.watch[ix(tx)].as_fd()).unwrap_or(false)
    }
}
