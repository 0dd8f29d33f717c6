//! Waiting: spin briefly, then sleep on a futex.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;

use crate::{Deadline, futex};

/// Checks of `ready` while busy-waiting, one CPU pause apart: some
/// microseconds in all.
const SPINS: u32 = 2000;

/// Spins a little (busy-waits some microseconds, checking `ready` after
/// every pause so that a change is seen within a cache-line transfer, then
/// yields the CPU a few times) until `ready()` holds. Waking a process that
/// really sleeps costs tens of microseconds on a virtual machine, so a
/// short spin pays off when the other side is about to act.
///
/// The checks are evenly spaced, not backed off exponentially: this waits
/// for another process to act, not for contention to clear, and a backed-off
/// check would see the change late.
pub(crate) fn spin_until(mut ready: impl FnMut() -> bool) -> bool {
    for _ in 0..SPINS {
        if ready() {
            return true;
        }
        std::hint::spin_loop();
    }
    // Then give the CPU away briefly, for when the other side is waiting
    // for this CPU (both on one core).
    let backoff = Backoff::new();
    while !backoff.is_completed() {
        if ready() {
            return true;
        }
        backoff.snooze();
    }
    ready()
}

/// The longest a waiter sleeps on a futex in shared memory before it looks
/// at its condition again, woken or not.
///
/// A peer can write anything into the words of a primitive it shares,
/// such as zero into the count of waiters that tells the waking side to
/// make the wake system call. A waiter that trusted that count could sleep
/// forever after the event it waits for; one that looks again at least
/// this often is late by at most this much, and sleeps all the same (ten
/// wake-ups a second).
pub(crate) const RECHECK: Duration = Duration::from_millis(100);

/// The end of one sleep of at most [`RECHECK`] within `deadline`.
pub(crate) fn slice_of(deadline: Deadline) -> Deadline {
    let slice = Instant::now().checked_add(RECHECK);
    match (deadline.instant(), slice) {
        (Some(at), Some(slice)) => Deadline::at(at.min(slice)),
        (Some(at), None) => Deadline::at(at),
        (None, Some(slice)) => Deadline::at(slice),
        (None, None) => deadline,
    }
}

/// Waits until `ready()` holds: spins, then sleeps on `word` while it reads
/// `asleep`, counted in `waiters` so that the waking side knows to make the
/// wake system call. Returns `false` when `deadline` passed first.
///
/// `ready` must be checked after `waiters` is raised (it is: the counter
/// and the condition are read and written `SeqCst` on both sides), so a
/// wake-up is never lost: either the waker sees the waiter, or the waiter
/// sees the waker's change. As a peer may have written the counter, each
/// sleep lasts at most [`RECHECK`], and `ready` is checked after it.
pub(crate) fn wait_for(
    word: &AtomicU32,
    asleep: u32,
    waiters: &AtomicU32,
    deadline: Deadline,
    mut ready: impl FnMut() -> bool,
) -> bool {
    if spin_until(&mut ready) {
        return true;
    }
    loop {
        // SeqCst: pairs with the waker's SeqCst change then read of
        // `waiters` (see above).
        waiters.fetch_add(1, Ordering::SeqCst);
        if ready() {
            waiters.fetch_sub(1, Ordering::SeqCst);
            return true;
        }
        futex::wait_until(word, asleep, slice_of(deadline));
        waiters.fetch_sub(1, Ordering::SeqCst);
        if ready() {
            return true;
        }
        if deadline.has_expired() {
            return false;
        }
    }
}
