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
//! # The robust list, and what is written where
//!
//! glibc registers a robust-list head for every thread and enters its own
//! robust pthread mutexes there; our locks go into the same list. The
//! kernel finds an entry's futex word at `entry + futex_offset`, one offset
//! for the whole list (glibc's, -32 on x86-64), so the entry of a lock is
//! its link word, `RawLock::next`, 32 bytes after its lock word.
//!
//! A held lock is two entries: the mutex's link, which points to a *link
//! slot* in thread-private memory (`HeldLocks`), and that slot, which
//! points to the next older lock (or back to the head). A slot is shaped
//! like a lock whose word is always 0, so the kernel passes over it. In
//! front of all our entries is one more private slot, the *sentinel*:
//!
//! ```text
//! head → [glibc's] → sentinel → C ⇢ slot → B ⇢ slot → A ⇢ slot → head
//! ```
//!
//! (`⇢`: the link word inside a shared mutex, written once, when this
//! thread takes the lock; `→`: a private word.) So **this code writes into
//! no mutex but the one it is locking** (its link word, once the lock word
//! is ours) **and, unlocking, the lock word of the one it unlocks**. All
//! the rest it writes is private: the slots, the sentinel, the head.
//!
//! - An unlock, in any order, takes the lock out of the list at once, by
//!   pointing the private word that led to it (the sentinel, or the slot of
//!   the next newer lock) past it. No released lock stays in the list: its
//!   next holder rewriting its link word cuts nothing off our list, and
//!   its memory may be freed as soon as the unlock returns. Out-of-order
//!   unlocks leave nothing behind, so the list never grows beyond the
//!   locks held: at most `1 + 2 ×` [`MAX_HELD`] entries of ours, far below
//!   the kernel's walk limit (`ROBUST_LIST_LIMIT`, 2048).
//! - A lock whose guard was leaked (`mem::forget`) and whose memory was
//!   then freed is never written: unlocking the locks around it rewrites
//!   private words only.
//! - glibc, linking one of its mutexes in front of ours, writes the back
//!   link (`prev`) of the first entry: always the sentinel, never a mutex.
//!
//! The link words live in shared memory, where any peer can rewrite them.
//! This process never reads them: the list's order is kept in
//! `HeldLocks`. Their one reader is the kernel, when the thread dies.
//!
//! # What the kernel may do at the thread's death
//!
//! When a thread ends (killed, or exiting), the kernel walks its list from
//! the head, at most 2048 entries, stopping at the head or at a link it
//! cannot read. At each entry it reads the 32-bit word 32 bytes before the
//! link, and writes only when that word's owner bits are the dying
//! thread's id: it replaces the word by [`OWNER_DIED`] plus the word's
//! [`WAITERS`] bit, and wakes a waiter. The walk follows a link we did not
//! write in two cases:
//!
//! - A peer rewrote the link word of a lock this thread holds: the kernel
//!   follows the peer's value. It may then miss this thread's older locks
//!   (their waiters are not told: timed waits end at their deadline), or
//!   mark a word of the dying process that holds the dying thread's id.
//! - A guard was leaked and the mutex's memory freed or unmapped while the
//!   thread lives. The lock stays held and listed, by design: that is how
//!   a thread that ends with a leaked guard gets the lock reported as
//!   owner-died. But the kernel then reads whatever took the mutex's place
//!   as a link, with the same two outcomes. Nothing of ours can bound this
//!   further: a leaked guard runs no code, and no later code can tell
//!   whether the leaked mutex's memory is still the mutex without reading
//!   it, which would be the very access to freed memory to avoid (a
//!   thread-local destructor at exit could only drop the lock from the
//!   list, which would hang its waiters instead). The residual risk is
//!   thus the kernel's conditional write, at the thread's end, of words
//!   that hold the thread's id, within 2048 steps of a leaked and freed
//!   mutex. One case is caught: when this thread locks a mutex at the
//!   address of a leaked one whose lock word no longer holds our id, the
//!   leaked entry is taken out of the list (that memory is plainly reused)
//!   and the new lock is entered as usual.
//!
//! # `list_op_pending`
//!
//! The ABI's order, both ways, so that a death at any instruction leaves
//! the word to the kernel exactly once. Locking: announce the lock's entry
//! in `list_op_pending`, take the word, write its link word and its slot,
//! point the sentinel at it, withdraw the announcement. Unlocking:
//! announce it, point the word that led to it past it, release the word,
//! withdraw the announcement, wake. The kernel handles the announced entry
//! by its lock word alone (it skips it in the walk and never follows its
//! link): with our id in it, it is marked; freed (0), one waiter is woken,
//! for a wake the unlock may not have made yet.
//!
//! # Living beside glibc's robust mutexes
//!
//! The list is one per thread, and glibc links its entries both ways. The
//! rules that keep both consistent:
//!
//! - Our sentinel enters the list only when the list is empty, and stays
//!   there (so that a thread's later first lock is the fast path); with no
//!   lock of ours held it is one entry with a zero word.
//! - We link a lock in only when the list's first entry is the sentinel.
//!   If the thread holds a robust pthread mutex locked after its last lock
//!   of ours, locking fails with [`Fail::ListBusy`]: putting our sentinel
//!   in front of glibc's entry would need a write to that entry's back
//!   link, which is glibc's.
//! - A robust pthread mutex locked and unlocked while ours are held, in
//!   any order, is fine: glibc writes the sentinel's back link and the
//!   head, and our unlocks meanwhile change private words only.
//!
//! No `unsafe` here: the head is reached through `sys`.

use std::cell::Cell;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering, compiler_fence};

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

const _: () = assert!(MAX_HELD <= u64::BITS as usize);

/// A lock word with its robust-list link. All zero bytes: free.
#[repr(C, align(8))]
pub(crate) struct RawLock {
    /// 0, or owner id | [`WAITERS`] | [`OWNER_DIED`].
    word: AtomicU32,
    /// Room up to the link word; unused (where glibc keeps its back link,
    /// which nothing writes here: no mutex of ours is ever first in the
    /// list).
    _reserved: [AtomicU32; 7],
    /// The robust-list link: written when this thread takes the lock (it
    /// then points to the lock's private slot), read only by the kernel.
    next: AtomicU64,
}

const _: () = assert!(std::mem::offset_of!(RawLock, next) == LINK_OFFSET);
const _: () = assert!(std::mem::size_of::<RawLock>() == 40);

/// A list entry in thread-private memory: a held lock's slot, or the
/// sentinel. Shaped like a [`RawLock`], so that the word the kernel looks
/// at, 32 bytes before the link, is `word`: always 0, no owner, passed
/// over.
#[repr(C, align(8))]
struct Link {
    /// Always 0: what the kernel reads as this entry's futex word.
    _word: AtomicU32,
    _reserved: [AtomicU32; 5],
    /// glibc's back link: glibc writes the sentinel's when it links one of
    /// its mutexes in front of ours. Never read here.
    _prev: AtomicUsize,
    /// The kernel's link: written here, read only by the kernel.
    next: AtomicUsize,
}

const _: () = assert!(std::mem::offset_of!(Link, next) == LINK_OFFSET);
const _: () = assert!(std::mem::offset_of!(Link, _prev) == LINK_OFFSET - 8);

impl Link {
    const fn new() -> Link {
        Link {
            _word: AtomicU32::new(0),
            _reserved: [const { AtomicU32::new(0) }; 5],
            _prev: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
        }
    }

    /// This entry's address in the list: its link word.
    fn entry(&self) -> usize {
        std::ptr::from_ref(&self.next) as usize
    }

    /// Points the link at `to`. A plain store to private memory; the
    /// callers' compiler fences keep it where the code puts it, since the
    /// kernel may read it at any instruction (when the thread is killed).
    fn point(&self, to: usize) {
        self.next.store(to, Ordering::Relaxed);
    }
}

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

/// The locks this thread holds and the private half of its robust list:
/// the list's truth.
struct HeldLocks {
    /// Our thread id; 0 until set up (and again in a forked child).
    tid: Cell<u32>,
    head: Cell<Option<RobustHead>>,
    /// Whether `sentinel` is in the kernel's list.
    linked: Cell<bool>,
    len: Cell<usize>,
    /// The held locks' addresses, oldest first (the kernel's list has them
    /// newest first).
    held: [Cell<usize>; MAX_HELD],
    /// `slot[i]`: the index in `slots` of `held[i]`'s slot.
    slot: [Cell<u8>; MAX_HELD],
    /// Bit `k` set: `slots[k]` is free.
    free: Cell<u64>,
    /// The first of our entries; leads to the newest lock (or the head).
    sentinel: Link,
    /// Each leads from a held lock to the next older one (or the head).
    slots: [Link; MAX_HELD],
}

/// Every slot free.
const ALL_FREE: u64 = u64::MAX >> (u64::BITS as usize - MAX_HELD);

thread_local! {
    // No destructor: the memory stays valid as long as the thread, for the
    // kernel's walk at its end.
    static HELD: HeldLocks = const {
        HeldLocks {
            tid: Cell::new(0),
            head: Cell::new(None),
            linked: Cell::new(false),
            len: Cell::new(0),
            held: [const { Cell::new(0) }; MAX_HELD],
            slot: [const { Cell::new(0) }; MAX_HELD],
            free: Cell::new(ALL_FREE),
            sentinel: Link::new(),
            slots: [const { Link::new() }; MAX_HELD],
        }
    };
}

/// In a forked child: the child holds none of its parent's locks, glibc
/// gave its thread a fresh, empty list, and its thread id is new.
extern "C" fn forget_after_fork() {
    let _ = HELD.try_with(HeldLocks::reset);
}

impl HeldLocks {
    fn reset(&self) {
        self.tid.set(0);
        self.len.set(0);
        self.free.set(ALL_FREE);
        self.linked.set(false);
    }

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
        self.reset();
        self.head.set(Some(head));
        self.tid.set(tid);
        Ok((tid, head))
    }

    /// Where held lock `i`'s slot leads: the next older lock's entry, or
    /// the head.
    fn older(&self, i: usize, head: RobustHead) -> usize {
        if i == 0 { head.addr() } else { self.held[i - 1].get() + LINK_OFFSET }
    }

    /// The private entry that leads to held lock `i`: the sentinel for the
    /// newest, else the slot of the next newer one.
    fn newer(&self, i: usize) -> &Link {
        if i + 1 == self.len.get() { &self.sentinel } else { &self.slots[usize::from(self.slot[i + 1].get())] }
    }

    /// Whether the sentinel is the list's first entry (we may link a lock
    /// in); it is put there when the list is empty.
    #[inline]
    fn in_front(&self, head: RobustHead) -> bool {
        let first = head.list();
        if self.linked.get() {
            return first == self.sentinel.entry();
        }
        if first != head.addr() {
            return false;
        }
        self.sentinel.point(head.addr());
        compiler_fence(Ordering::SeqCst);
        head.set_list(self.sentinel.entry());
        self.linked.set(true);
        true
    }

    /// Where `lock` is among the held, newest first.
    fn find(&self, lock: usize) -> Option<usize> {
        (0..self.len.get()).rev().find(|&i| self.held[i].get() == lock)
    }

    /// Enters `lock`, just taken, as the newest; then withdraws the pending
    /// announcement. Writes the lock's own link word and private words.
    /// The caller saw a free slot.
    fn link_in(&self, lock: &RawLock, head: RobustHead) {
        let len = self.len.get();
        let free = self.free.get();
        let k = free.trailing_zeros() as usize;
        let slot = &self.slots[k];
        slot.point(self.older(len, head));
        // The lock's link word: ours to write now that its word is ours.
        lock.next.store(slot.entry() as u64, Ordering::Relaxed);
        compiler_fence(Ordering::SeqCst);
        self.sentinel.point(lock.link());
        compiler_fence(Ordering::SeqCst);
        head.set_pending(0);
        self.held[len].set(lock.addr());
        self.slot[len].set(k as u8);
        self.free.set(free & !(1 << k));
        self.len.set(len + 1);
    }

    /// Takes held lock `i` out of the list and the record: the entry that
    /// led to it now leads past it. Writes one private word; the lock's
    /// memory is not touched.
    fn unlink(&self, i: usize, head: RobustHead) {
        let k = self.slot[i].get();
        self.newer(i).point(self.older(i, head));
        compiler_fence(Ordering::SeqCst);
        let len = self.len.get();
        for j in i..len - 1 {
            self.held[j].set(self.held[j + 1].get());
            self.slot[j].set(self.slot[j + 1].get());
        }
        self.len.set(len - 1);
        self.free.set(self.free.get() | 1 << k);
    }
}

impl RawLock {
    /// A free lock.
    pub(crate) const fn new() -> RawLock {
        RawLock { word: AtomicU32::new(0), _reserved: [const { AtomicU32::new(0) }; 7], next: AtomicU64::new(0) }
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
            if h.free.get() != 0 && h.in_front(head) && h.find(self.addr()).is_none() {
                // The ABI's order: announce the entry, take the word, link
                // it in, withdraw the announcement; at each step a death
                // leaves the word to the kernel.
                head.set_pending(self.link());
                compiler_fence(Ordering::SeqCst);
                // Acquire: the last holder's writes happen before ours.
                if self.word.compare_exchange(0, tid, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    h.link_in(self, head);
                    return Ok(Acquired::Clean);
                }
                head.set_pending(0);
            }
            self.lock_slow(h, tid, head, wait, recoverable)
        })
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
        if let Some(i) = h.find(self.addr()) {
            if self.word.load(Ordering::Relaxed) & TID_MASK == tid {
                return Err(if matches!(wait, Wait::Try) { Fail::WouldBlock } else { Fail::WouldDeadlock });
            }
            // Listed as held here, yet the word is not ours: a guard was
            // leaked and this memory now holds another mutex (or a peer
            // rewrote the word). The old entry leaves the list; this lock
            // is entered anew below.
            h.unlink(i, head);
        }
        if !h.in_front(head) {
            return Err(Fail::ListBusy);
        }
        if h.free.get() == 0 {
            return Err(Fail::TooMany);
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
                    h.link_in(self, head);
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
    /// a forked child, say). Writes the lock word and private words only.
    pub(crate) fn unlock(&self, to: u32) {
        let _ = HELD.try_with(|h| {
            let Some(head) = h.head.get() else { return };
            if h.tid.get() == 0 {
                return;
            }
            let Some(i) = h.find(self.addr()) else { return };
            head.set_pending(self.link());
            compiler_fence(Ordering::SeqCst);
            h.unlink(i, head);
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
        });
    }

    /// The word, for `Debug`.
    pub(crate) fn peek(&self) -> u32 {
        self.word.load(Ordering::Relaxed)
    }
}
