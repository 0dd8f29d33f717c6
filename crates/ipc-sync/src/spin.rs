//! Waiting: spin briefly, then sleep on a futex.

use std::sync::atomic::{AtomicU32, Ordering};

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

/// Waits until `ready()` holds: spins, then sleeps on `word` while it reads
/// `asleep`, counted in `waiters` so that the waking side knows to make the
/// wake system call. Returns `false` when `deadline` passed first.
///
/// `ready` must be checked after `waiters` is raised (it is: the counter
/// and the condition are read and written `SeqCst` on both sides), so a
/// wake-up is never lost: either the waker sees the waiter, or the waiter
/// sees the waker's change.
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
        let in_time = futex::wait_until(word, asleep, deadline);
        waiters.fetch_sub(1, Ordering::SeqCst);
        if ready() {
            return true;
        }
        if !in_time || deadline.has_expired() {
            return false;
        }
    }
}
