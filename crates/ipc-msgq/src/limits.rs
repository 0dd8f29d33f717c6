//! The kernel's limits on message queues, as /proc tells them.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Reads a number from a file under /proc (a system limit).
pub(crate) fn proc_limit(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The largest message text now, read from /proc/sys/kernel/msgmax (8192
/// when it cannot be read). The limit can change at run time: a send over
/// the last value seen reads it again before refusing, a receive into a
/// `Vec` grows when a message is longer, and a send the kernel refuses
/// after the limit was lowered is
/// [`Error::MessageTooLarge`](crate::Error::MessageTooLarge).
pub fn sysv_max_message() -> usize {
    let max = proc_limit("/proc/sys/kernel/msgmax").map_or(8192, |v| usize::try_from(v).unwrap_or(usize::MAX));
    MSGMAX_SEEN.store(max, Ordering::Relaxed);
    max
}

/// The msgmax last read (0 before the first read), so that the common case
/// reads no file.
static MSGMAX_SEEN: AtomicUsize = AtomicUsize::new(0);

/// The msgmax last read, reading it the first time.
#[inline]
pub(crate) fn msgmax_seen() -> usize {
    match MSGMAX_SEEN.load(Ordering::Relaxed) {
        0 => sysv_max_message(),
        max => max,
    }
}

/// The longest message text `msgrcv` can be asked for (its size is a
/// `long`, and the kernel's limits are `int`s).
pub(crate) const MAX_ROOM: usize = i32::MAX as usize;
