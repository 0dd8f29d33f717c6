//! The lock word both mutexes share, whose holder's death the kernel
//! proves: a robust futex.
//!
//! # The lock word
//!
//! `word` is 0 when free. A holder stores its thread id, as `gettid(2)`
//! gives it in the holder's own PID namespace, and enters the lock in its
//! thread's kernel robust list. When a thread dies, the kernel walks its
//! list and, for every futex whose owner field is that thread's id *in the
//! dying thread's namespace*, sets it to [`OWNER_DIED`] (keeping
//! [`WAITERS`]) and wakes a waiter. So the proof of death comes from the
//! kernel, also across PID namespaces; no waiter ever looks at the id.
//! [`WAITERS`] says someone may sleep on the word (the unlock must wake).
//! [`NOT_RECOVERABLE`], an owner id no thread can have, marks a robust
//! mutex given up after its owner died.
//!
//! # The robust list, and what is shared
//!
//! glibc registers a robust-list head for every thread and enters its own
//! robust pthread mutexes there; our locks go into the same list. The
//! kernel finds an entry's futex word at `entry + futex_offset`, one offset
//! for the whole list, so our entry (`next`, a link word) sits where glibc
//! keeps its own: 32 bytes after the lock word on x86-64, with glibc's
//! back link (`prev`) before it, which glibc writes when it links one of
//! its mutexes in front of ours.
//!
//! The link words live in shared memory, where any peer can rewrite them.
//! So this process never reads them: the list's order is kept in
//! thread-private memory ([`HeldLocks`]), and a link word is only ever
//! written, from that private knowledge. The one reader of a link word is
//! the kernel, when the holding thread dies; a rewritten link can then make
//! the kernel skip entries (their waiters time out) or mark as owner-died
//! another word of the dying process that holds the dying thread's id.
//!
//! # Living beside glibc's robust mutexes
//!
//! The list is one per thread, and glibc links its entries both ways. The
//! rules that keep both consistent:
//!
//! - We link a lock in only when the list's first entry is ours (or the
//!   list is empty). If the thread holds a robust pthread mutex locked
//!   after its last lock of ours, locking fails with
//!   [`Fail::ListBusy`]: linking in front of glibc's entry would let
//!   glibc's unlock drop ours from the list.
//! - A robust pthread mutex locked and unlocked while one of ours is held
//!   (nested) is fine: glibc writes only our `prev` word.
//! - Unlocking our first entry while a pthread robust mutex locked after it
//!   is still held cannot unlink it (its predecessor is glibc's). The lock
//!   is released and the entry stays linked, a *tombstone*, until it is
//!   first in the list again; then it is unlinked at our next lock or
//!   unlock on the thread. Until then glibc may still write its `prev`
//!   word: the mutex must stay mapped until the pthread mutex is unlocked.
//!   Locking the same mutex again meanwhile takes the tombstone's place.
//!
//! `unsafe` here: one store to the link word of another lock this thread
//! holds, known by its address in [`HeldLocks`].
#![allow(unsafe_code)]

use std::cell::Cell;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, compiler_fence};

use crate::spin::spin_until;
use crate::sys::{self, RobustHead};
use crate::{Deadline, futex};

/// Someone may sleep on the word: the unlock must wake.
pub(crate) const WAITERS: u32 = 0x8000_0000;
/// The previous holder died holding the lock (set by the kernel).
pub(crate) const OWNER_DIED: u32 = 0x4000_0000;
/// The owner field: a thread id.
pub(crate) const TID_MASK: u32 = 0x3fff_ffff;
/// An owner id no thread can have (ids stop at 2^22): a robust mutex that
/// is not recoverable.
pub(crate) const NOT_RECOVERABLE: u32 = TID_MASK;

/// Where the link word is relative to the lock word: glibc's robust
/// pthread mutex layout on x86-64 (`__lock` at 0, `__list.__next` at 32),
/// which fixes the list's `futex_offset` at -32.
const LINK_OFFSET: usize = 32;

/// How many locks one thread may hold at once.
pub(crate) const MAX_HELD: usize = 64;

/// A lock word with its robust-list link. All zero bytes: free.
#[repr(C, align(8))]
pub(crate) struct RawLock {
    /// 0, or owner id | [`WAITERS`] | [`OWNER_DIED`].
    word: AtomicU32,
    _reserved: [AtomicU32; 5],
    /// glibc's back link, written by glibc, never read here.
    prev: AtomicU64,
    /// The robust-list link: written here, read only by the kernel.
    next: AtomicU64,
}

const _: () = assert!(std::mem::offset_of!(RawLock, next) == LINK_OFFSET);
const _: () = assert!(std::mem::offset_of!(RawLock, prev) == LINK_OFFSET - 8);
const _: () = assert!(std::mem::size_of::<RawLock>() == 40);

/// How a lock was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Free, as the last holder left it.
    Clean,
    /// The last holder died holding it.
    OwnerDied,
}

/// Why a lock was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fail {
    /// Held, and the caller would not wait.
    WouldBlock,
    /// Held until the deadline.
    Timeout,
    /// Given up after its owner died (robust mutexes only).
    NotRecoverable,
    /// This thread holds it.
    WouldDeadlock,
    /// A robust pthread mutex is in front of our locks in the thread's
    /// robust list.
    ListBusy,
    /// The thread holds [`MAX_HELD`] locks.
    TooMany,
    /// The thread has no robust list this code can share.
    Unsupported,
}

/// How long to wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Not at all: [`Fail::WouldBlock`] when held.
    Try,
    /// Until the deadline: [`Fail::Timeout`] then. A past deadline tries
    /// once.
    Until(Deadline),
}

/// The locks this thread holds, in robust-list order (oldest first), as
/// the addresses of their [`RawLock`]s; bit 0 marks a tombstone (released,
/// still linked). Private memory: the list's truth.
pub(crate) struct HeldLocks {
    /// Our thread id; 0 until set up (and again in a forked child).
    tid: Cell<u32>,
    head: Cell<Option<RobustHead>>,
    len: Cell<usize>,
    /// How many of them are tombstones.
    tombs: Cell<usize>,
    held: [Cell<usize>; MAX_HELD],
}

thread_local! {
    static HELD: HeldLocks = const {
        HeldLocks {
            tid: Cell::new(0),
            head: Cell::new(None),
            len: Cell::new(0),
            tombs: Cell::new(0),
            held: [const { Cell::new(0) }; MAX_HELD],
        }
    };
}

const TOMB: usize = 1;

/// In a forked child: the child holds none of its parent's locks, glibc
/// gave its thread a fresh, empty list, and its thread id is new.
extern "C" fn forget_after_fork() {
    let _ = HELD.try_with(|h| {
        h.tid.set(0);
        h.len.set(0);
        h.tombs.set(0);
    });
}

impl HeldLocks {
    /// Our id and head, setting them up on first use.
    #[inline]
    fn ready(&self) -> Result<(u32, RobustHead), Fail> {
        let tid = self.tid.get();
        match self.head.get() {
            Some(head) if tid != 0 => Ok((tid, head)),
            _ => self.set_up(),
        }
    }

    #[cold]
    fn set_up(&self) -> Result<(u32, RobustHead), Fail> {
        static AT_FORK: Once = Once::new();
        let mut registered = true;
        AT_FORK.call_once(|| registered = sys::at_fork_child(forget_after_fork).is_ok());
        if !registered {
            return Err(Fail::Unsupported);
        }
        let head = match RobustHead::of_this_thread() {
            Ok(Some(head)) => head,
            _ => return Err(Fail::Unsupported),
        };
        if head.futex_offset() != -(LINK_OFFSET as libc::c_long) {
            return Err(Fail::Unsupported);
        }
        let tid = sys::gettid();
        if tid == 0 || tid >= NOT_RECOVERABLE {
            return Err(Fail::Unsupported);
        }
        self.len.set(0);
        self.tombs.set(0);
        self.head.set(Some(head));
        self.tid.set(tid);
        Ok((tid, head))
    }

    fn entry(&self, i: usize) -> usize {
        self.held[i].get()
    }

    /// The link address of entry `i`, or the head's address below entry 0:
    /// what entry `i + 1` links to.
    fn below(&self, i: usize, head: RobustHead) -> usize {
        if i == 0 { head.addr() } else { (self.entry(i - 1) & !TOMB) + LINK_OFFSET }
    }

    /// What the list's first entry must be when all of it is ours.
    #[inline]
    fn top(&self, head: RobustHead) -> usize {
        self.below(self.len.get(), head)
    }

    fn find(&self, lock: usize) -> Option<usize> {
        (0..self.len.get()).rev().find(|&i| self.entry(i) & !TOMB == lock)
    }

    fn remove(&self, i: usize) {
        let len = self.len.get();
        for j in i..len - 1 {
            self.held[j].set(self.held[j + 1].get());
        }
        self.len.set(len - 1);
    }

    /// Unlinks entry `i` from the kernel's list: the entry above it (or
    /// the head) now links to the one below. Writes one link word, from
    /// private knowledge; reads none. `false` when a foreign entry is
    /// above it (it then stays linked).
    fn unlink(&self, i: usize, head: RobustHead) -> bool {
        let below = self.below(i, head);
        let lock = self.entry(i) & !TOMB;
        if i + 1 == self.len.get() {
            if head.list() != lock + LINK_OFFSET {
                return false;
            }
            head.set_list(below);
        } else {
            let above = self.entry(i + 1) & !TOMB;
            // SAFETY: `above` is the address of a RawLock this thread holds
            // (its guard borrows the memory, so it is mapped) or keeps
            // linked as a tombstone (mapped by the documented rule); its
            // link word is an aligned AtomicU64 at LINK_OFFSET, shared
            // memory that atomics may access.
            let word = unsafe { &*((above + LINK_OFFSET) as *const AtomicU64) };
            word.store(below as u64, Ordering::Relaxed);
        }
        compiler_fence(Ordering::SeqCst);
        self.remove(i);
        true
    }

    /// Unlinks every tombstone that can be unlinked now.
    fn sweep(&self, head: RobustHead) {
        if self.tombs.get() == 0 {
            return;
        }
        let mut i = self.len.get();
        while i > 0 {
            i -= 1;
            if self.entry(i) & TOMB != 0 && self.unlink(i, head) {
                self.tombs.set(self.tombs.get() - 1);
            }
        }
    }
}

impl RawLock {
    /// A free lock.
    pub(crate) const fn new() -> RawLock {
        RawLock {
            word: AtomicU32::new(0),
            _reserved: [const { AtomicU32::new(0) }; 5],
            prev: AtomicU64::new(0),
            next: AtomicU64::new(0),
        }
    }

    fn addr(&self) -> usize {
        self as *const RawLock as usize
    }

    fn link(&self) -> usize {
        self.addr() + LINK_OFFSET
    }

    /// Locks. With `recoverable` false (the plain mutex), an owner field
    /// of [`NOT_RECOVERABLE`] (which only a peer could write) counts as an
    /// ordinary holder.
    ///
    /// The uncontended path is one atomic operation (the compare-exchange
    /// of the lock word) and some plain stores to private memory and to our
    /// own link word.
    #[inline]
    pub(crate) fn lock(&self, wait: Wait, recoverable: bool) -> Result<Acquired, Fail> {
        HELD.with(|h| {
            let (tid, head) = h.ready()?;
            let len = h.len.get();
            let top = h.top(head);
            if len < MAX_HELD && h.tombs.get() == 0 && head.list() == top {
                // The ABI's order: announce the entry, take the word, link
                // it in, withdraw the announcement; at each step a death
                // leaves the word to the kernel.
                head.set_pending(self.link());
                compiler_fence(Ordering::SeqCst);
                // Acquire: the last holder's writes happen before ours.
                if self.word.compare_exchange(0, tid, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    self.link_in(h, head, top);
                    return Ok(Acquired::Clean);
                }
                head.set_pending(0);
            }
            self.lock_slow(h, tid, head, wait, recoverable)
        })
    }

    /// Enters this (just taken) lock in the list and in `h`; clears the
    /// pending entry.
    fn link_in(&self, h: &HeldLocks, head: RobustHead, top: usize) {
        self.next.store(top as u64, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        head.set_list(self.link());
        compiler_fence(Ordering::SeqCst);
        head.set_pending(0);
        let len = h.len.get();
        h.held[len].set(self.addr());
        h.len.set(len + 1);
    }

    #[cold]
    fn lock_slow(
        &self,
        h: &HeldLocks,
        tid: u32,
        head: RobustHead,
        wait: Wait,
        recoverable: bool,
    ) -> Result<Acquired, Fail> {
        h.sweep(head);
        // A tombstone of this lock is still linked: taking the word back
        // revives it in place, with no list change.
        let revive = match h.find(self.addr()) {
            Some(i) if h.entry(i) & TOMB != 0 => Some(i),
            Some(_) => return Err(if matches!(wait, Wait::Try) { Fail::WouldBlock } else { Fail::WouldDeadlock }),
            None => None,
        };
        if revive.is_none() {
            if head.list() != h.top(head) {
                return Err(Fail::ListBusy);
            }
            if h.len.get() == MAX_HELD {
                return Err(Fail::TooMany);
            }
        }
        let deadline = match wait {
            Wait::Try => None,
            Wait::Until(d) => Some(d),
        };
        let mut slept = false;
        let mut spun = false;
        loop {
            let v = self.word.load(Ordering::Relaxed);
            let owner = v & TID_MASK;
            if owner == 0 {
                // Free: as left by an unlock, or by the kernel after the
                // holder died. After sleeping, others may sleep too: keep
                // WAITERS so that our unlock wakes the next.
                let new = tid | (v & WAITERS) | if slept { WAITERS } else { 0 };
                head.set_pending(self.link());
                compiler_fence(Ordering::SeqCst);
                // Acquire: as in lock.
                if self.word.compare_exchange(v, new, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    match revive {
                        Some(i) => {
                            h.held[i].set(self.addr());
                            h.tombs.set(h.tombs.get() - 1);
                            head.set_pending(0);
                        }
                        None => self.link_in(h, head, h.top(head)),
                    }
                    return Ok(if v & OWNER_DIED != 0 { Acquired::OwnerDied } else { Acquired::Clean });
                }
                head.set_pending(0);
                continue;
            }
            if recoverable && owner == NOT_RECOVERABLE {
                return Err(Fail::NotRecoverable);
            }
            let Some(deadline) = deadline else { return Err(Fail::WouldBlock) };
            if deadline.has_expired() {
                return Err(Fail::Timeout);
            }
            if !spun {
                spun = true;
                spin_until(|| self.word.load(Ordering::Relaxed) & TID_MASK == 0);
                continue;
            }
            // Announce a sleeper, then sleep while the word stays so.
            let asleep = v | WAITERS;
            if v != asleep && self.word.compare_exchange(v, asleep, Ordering::Relaxed, Ordering::Relaxed).is_err() {
                continue;
            }
            slept = true;
            futex::wait_until(&self.word, asleep, deadline);
        }
    }

    /// Unlocks, leaving `to` in the word: 0 (free) or [`NOT_RECOVERABLE`].
    /// Does nothing unless this thread holds the lock (a guard copied into
    /// a forked child, say).
    pub(crate) fn unlock(&self, to: u32) {
        let _ = HELD.try_with(|h| {
            let Some(head) = h.head.get() else { return };
            if h.tid.get() == 0 {
                return;
            }
            let Some(i) = h.find(self.addr()) else { return };
            if h.entry(i) & TOMB != 0 {
                return;
            }
            head.set_pending(self.link());
            compiler_fence(Ordering::SeqCst);
            if !h.unlink(i, head) {
                h.held[i].set(self.addr() | TOMB);
                h.tombs.set(h.tombs.get() + 1);
            }
            // Release: our writes to the data happen before the next
            // holder's reads.
            let old = self.word.swap(to, Ordering::Release);
            compiler_fence(Ordering::SeqCst);
            head.set_pending(0);
            if to != 0 {
                futex::wake_all(&self.word);
            } else if old & WAITERS != 0 {
                futex::wake(&self.word, 1);
            }
            h.sweep(head);
        });
    }

    /// The word, for `Debug`.
    pub(crate) fn peek(&self) -> u32 {
        self.word.load(Ordering::Relaxed)
    }
}
