//! How a side learns that no peer is left, from kernel objects alone:
//! never from a pid (pids are local to a PID namespace, and reused), a
//! clock (a peer may be merely stalled) or what shared memory says (a peer
//! may write anything there).
//!
//! - **A claimed side** holds an exclusive lock on one byte of the
//!   channel's file. The kernel drops it when the claiming process closes
//!   the side or dies, in any PID namespace, so the peer asks the kernel
//!   (`F_OFD_GETLK`) whether it is still held. The lock also settles a
//!   race between claimers of the same side in different processes.
//!   - In a channel made for `fork`, it is a record lock of the process
//!     (`F_SETLK`): a child forked later does not inherit it, and it needs
//!     nothing but the channel's own fd, which no other fd of this process
//!     refers to (the memfd behind it is never handed out), so no close
//!     elsewhere can drop it early.
//!   - In a named or memfd channel, whose file the program may open again
//!     or hold in other fds, it is taken through an open file description
//!     of the side's own (`F_OFD_SETLK` on a fresh open of
//!     `/proc/self/fd/N`, or of the name where /proc is missing). A child
//!     forked after the claim shares that description until it exits or
//!     execs (it is close-on-exec). Where no such description can be had
//!     (a memfd channel without /proc), the side cannot be claimed.
//!
//!   Every claimed side holds its lock, so a peer asks the kernel whatever
//!   the state word says short of closed: what a peer writes there cannot
//!   make a dead side pass for a live one.
//! - **A side nobody claimed yet**, in a channel made before `fork`: every
//!   process that may still claim it holds the write end of a pipe made
//!   with the channel, inherited across `fork`. A process may claim a side
//!   through each handle ([`Channel`](super::Channel) or
//!   [`ByteChannel`](super::ByteChannel) value, clones included) that has
//!   not claimed one yet; once it has none left, it closes its copies of
//!   both write ends. So once every possible claimer is gone, the read end
//!   hangs up (`POLLHUP`). Named and memfd channels have no such pipe: any
//!   process that opens the name or receives the fd may still come.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

pub(super) use ipc_sync::process::Process;

use super::layout::Role;
use super::sys;
use crate::PosixShm;

/// The first of the two lock bytes: far past the end of any channel's
/// file (a lock may cover bytes a file does not have). The sender's is
/// here, the receiver's the next.
const LOCK_AT: u64 = 1 << 62;

/// The lock byte of a side.
fn lock_byte(role: Role) -> u64 {
    LOCK_AT + role.ix() as u64
}

/// How a claimed side holds its lock (see the module docs).
#[derive(Debug)]
pub(super) enum Lock {
    /// Through this open file description, which frees it when closed (on
    /// drop, or by the kernel at the process's death).
    Description(#[allow(dead_code, reason = "held for its lock, which closing it frees")] OwnedFd),
    /// Through the named object opened again by name (where /proc is
    /// missing), which frees it when dropped.
    Name(#[allow(dead_code, reason = "held for its lock, which closing it frees")] PosixShm),
    /// As a record lock of the claiming process on the channel's own fd,
    /// freed by [`release`] or by the kernel at the process's death.
    Process,
}

/// What trying to take a side's lock gave.
#[derive(Debug)]
pub(super) enum Claim {
    /// This process holds the side's lock.
    Locked(Lock),
    /// Another process holds it: the side is claimed.
    Taken,
    /// This process cannot open a description of its own (a memfd channel
    /// without /proc, or a file whose permissions refuse a new open): the
    /// side is not claimed, since its peer could not tell when it dies.
    Unlocked(io::Error),
}

/// Takes side `role`'s lock on `file`: as a record lock of this process
/// when `for_fork` (the channel's file has no other fd here), else through
/// a new open file description of it: of `/proc/self/fd/N`, or where that
/// fails, of the object `name` opened again (the same file, checked).
pub(super) fn take_lock(
    file: BorrowedFd<'_>,
    role: Role,
    for_fork: bool,
    name: Option<&PosixShm>,
) -> io::Result<Claim> {
    if for_fork {
        // Two threads of this process claiming the same side both get it
        // (the lock is the process's); the state's compare-and-swap then
        // picks one, and the other leaves the lock alone.
        return Ok(if sys::lock_byte_for_process(file, lock_byte(role))? {
            Claim::Locked(Lock::Process)
        } else {
            Claim::Taken
        });
    }
    let own = match sys::reopen(file) {
        Ok(own) => own,
        Err(e) => {
            let Some(again) = name.and_then(|n| n.open_again().ok().flatten()) else { return Ok(Claim::Unlocked(e)) };
            return Ok(if sys::lock_byte(again.as_fd(), lock_byte(role))? {
                Claim::Locked(Lock::Name(again))
            } else {
                Claim::Taken
            });
        }
    };
    Ok(if sys::lock_byte(own.as_fd(), lock_byte(role))? { Claim::Locked(Lock::Description(own)) } else { Claim::Taken })
}

/// Frees side `role`'s lock as its claimer closes it (a description frees
/// itself as it is dropped).
pub(super) fn release(file: BorrowedFd<'_>, role: Role, lock: &Lock) {
    if let Lock::Process = lock {
        // Failing leaves it to the kernel, at our exit; the side's CLOSED
        // state says it all before.
        let _ = sys::unlock_byte_for_process(file, lock_byte(role));
    }
}

/// Whether the claimer of side `role` still holds its lock (asked through
/// `file`, whose description is not the claimer's). An error reads as
/// "held": we cannot prove the claimer gone.
pub(super) fn lock_held(file: BorrowedFd<'_>, role: Role) -> bool {
    sys::byte_locked(file, lock_byte(role)).unwrap_or(true)
}

/// This process (see [`Process`]).
pub(super) fn this_process() -> Process {
    Process::current()
}

/// The processes that may still claim each side of a channel made before
/// `fork` (see the module docs).
#[derive(Debug)]
pub(super) struct Candidates {
    /// Read ends, by side: they hang up when no possible claimer is left.
    watch: [OwnedFd; 2],
    /// This process's standing as a possible claimer of each side.
    mine: Mutex<Standing>,
}

/// What [`Candidates::mine`] guards.
#[derive(Debug)]
struct Standing {
    /// This process's write ends, by side.
    writes: [Option<OwnedFd>; 2],
    /// Which process claimed each side through this copy of the channel.
    /// A forked child's copy names an ancestor, not itself.
    claimed_by: [Option<Process>; 2],
    /// The handles in this process through which no side was claimed yet
    /// (a forked child counts the copies it inherited).
    fresh: usize,
}

impl Candidates {
    pub(super) fn new() -> io::Result<Candidates> {
        let (tx_read, tx_write) = sys::pipe()?;
        let (rx_read, rx_write) = sys::pipe()?;
        Ok(Candidates {
            watch: [tx_read, rx_read],
            mine: Mutex::new(Standing { writes: [Some(tx_write), Some(rx_write)], claimed_by: [None, None], fresh: 0 }),
        })
    }

    fn mine(&self) -> std::sync::MutexGuard<'_, Standing> {
        // A panic while holding it cannot leave the fds inconsistent.
        self.mine.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this process may claim side `role`: it still stands as a
    /// possible claimer, or it claimed the other side itself (one process
    /// may hold both sides; it lives as long as either of them).
    pub(super) fn may_claim(&self, role: Role) -> bool {
        let mine = self.mine();
        mine.writes[role.ix()].is_some() || mine.claimed_by[role.peer().ix()] == Some(this_process())
    }

    /// This process claimed side `role` (through a handle that is then
    /// [`spent`](Self::handle_spent)).
    pub(super) fn claimed(&self, role: Role) {
        self.mine().claimed_by[role.ix()] = Some(this_process());
    }

    /// A new handle (a channel made, or a handle cloned) that may claim a
    /// side.
    pub(super) fn handle_made(&self) {
        self.mine().fresh += 1;
    }

    /// A handle that could claim claimed a side, or went: with the last
    /// one, this process stops standing as a possible claimer of either.
    pub(super) fn handle_spent(&self) {
        let mut mine = self.mine();
        mine.fresh = mine.fresh.saturating_sub(1);
        if mine.fresh == 0 {
            mine.writes = [None, None];
        }
    }

    /// Whether every process that could claim side `role` is gone. An error
    /// reads as "not gone".
    pub(super) fn none_left(&self, role: Role) -> bool {
        sys::hung_up(self.watch[role.ix()].as_fd()).unwrap_or(false)
    }
}
