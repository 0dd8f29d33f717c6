//! Waiting: spin briefly, then sleep on a futex.

use std::sync::atomic::{AtomicU32, Ordering};

use crossbeam_utils::Backoff;

use crate::{Deadline, futex};

/// Spins a little (a few microseconds: busy-waits, then yields the CPU)
/// until `ready()` holds. Waking a process that really sleeps costs tens of
/// microseconds on a virtual machine, so a short spin pays off when the
/// other side is about to act.
pub(crate) fn spin_until(mut ready: impl FnMut() -> bool) -> bool {
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
