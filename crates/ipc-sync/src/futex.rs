//! Futex waits and wake-ups on 32-bit words that may live in memory shared
//! between processes.
//!
//! These are the shared (not `FUTEX_PRIVATE_FLAG`) operations, so a waiter
//! in one process is woken by a `wake` in another as long as both name the
//! same word of a shared mapping. Timed waits are measured on the
//! monotonic clock.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use ipc_sync::{Deadline, futex};
//!
//! let word = AtomicU32::new(0);
//! // Nobody wakes us: the wait ends at the deadline.
//! assert!(!futex::wait_until(&word, 0, Deadline::after(Duration::from_millis(5))));
//! // The value is not the expected one: no wait at all.
//! word.store(1, Ordering::Release);
//! assert!(futex::wait_until(&word, 0, Deadline::never()));
//! assert_eq!(futex::wake(&word, 1), 0, "nobody was waiting");
//! ```
//!
//! # References
//!
//! [futex(2)](https://man7.org/linux/man-pages/man2/futex.2.html)

use std::io;
use std::sync::atomic::AtomicU32;

use crate::Deadline;
use crate::sys;

/// Sleeps while `*word == expected`, until a [`wake`] on the same word.
///
/// Returns at once if the value differs. May also return without a wake
/// (a signal, or a wake meant for an earlier wait): callers check their
/// condition in a loop.
pub fn wait(word: &AtomicU32, expected: u32) {
    let _ = sys::futex_wait(word, expected, None);
}

/// Like [`wait`], but gives up at `deadline`: returns `false` when the
/// deadline passed, `true` otherwise (woken, value changed, or spurious).
pub fn wait_until(word: &AtomicU32, expected: u32, deadline: Deadline) -> bool {
    let Some(left) = deadline.remaining() else {
        wait(word, expected);
        return true;
    };
    if left.is_zero() {
        return false;
    }
    match sys::futex_wait(word, expected, Some(left)) {
        Err(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) => false,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => !deadline.has_expired(),
        _ => true,
    }
}

/// Wakes up to `n` waiters sleeping on `word`; returns how many woke.
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    sys::futex_wake(word, n)
}

/// Wakes every waiter sleeping on `word`; returns how many woke.
pub fn wake_all(word: &AtomicU32) -> usize {
    sys::futex_wake(word, u32::MAX)
}
