//! Memory barriers one process forces on others (`membarrier(2)`), for
//! protocols whose common side should not pay for a barrier that only
//! their rare side needs.
//!
//! The shape is Dekker's: one process publishes a value then checks a flag,
//! the other sets the flag then checks the value, and at least one of them
//! must see the other's write. Normally both need a full barrier between
//! their store and their load. With this module the frequent side (a
//! channel publishing each message) keeps only a compiler barrier, and the
//! rare side (a channel's reader about to sleep) calls [`barrier`], which
//! makes every registered process running on another CPU execute a full
//! barrier before it returns; a process not running then passes through
//! one when it is next scheduled. So either the frequent side's store was
//! made visible before the rare side's load, or its load comes after the
//! barrier and sees the flag.
//!
//! A process must [`register`] before others' barriers reach it; a child
//! made by `fork` is not registered (the registration belongs to the
//! address space) and registers again. Linux has the calls since 4.16;
//! where they are missing or refused (a seccomp filter), [`register`]
//! says so and the caller keeps its own full barriers.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::sys;

/// `MEMBARRIER_CMD_QUERY`: the bitmask of supported commands.
const CMD_QUERY: libc::c_int = 0;
/// `MEMBARRIER_CMD_GLOBAL_EXPEDITED`: a barrier on every running thread of
/// every registered process.
const CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
/// `MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED`.
const CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

/// The process that registered (its pid, shifted left by one) and whether
/// it succeeded (the low bit); 0 before any attempt.
static REGISTERED: AtomicU64 = AtomicU64::new(0);

/// Registers this process to receive the barriers others issue with
/// [`barrier`]; true when it is registered (now or before). Costs one pid
/// lookup once registered, and a few system calls the first time in a
/// process.
pub fn register() -> bool {
    let me = u64::from(std::process::id()) << 1;
    // Relaxed: the value is only a cache of what the kernel knows; a stale
    // or missing entry means one more registration, which is harmless.
    let known = REGISTERED.load(Ordering::Relaxed);
    if known & !1 == me {
        return known & 1 == 1;
    }
    let wanted = CMD_GLOBAL_EXPEDITED | CMD_REGISTER_GLOBAL_EXPEDITED;
    let ok = sys::membarrier(CMD_QUERY)
        .is_ok_and(|cmds| cmds & libc::c_long::from(wanted) == libc::c_long::from(wanted))
        && sys::membarrier(CMD_REGISTER_GLOBAL_EXPEDITED).is_ok();
    REGISTERED.store(me | u64::from(ok), Ordering::Relaxed);
    ok
}

/// Makes every thread of every registered process that runs now on
/// another CPU execute a full memory barrier, and orders this thread's
/// accesses before and after the call; false if the kernel refused (then
/// nothing is promised).
pub fn barrier() -> bool {
    sys::membarrier(CMD_GLOBAL_EXPEDITED).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_is_remembered_and_barriers_work_after_it() {
        let first = register();
        assert_eq!(register(), first);
        assert_eq!(REGISTERED.load(Ordering::Relaxed) >> 1, u64::from(std::process::id()));
        if first {
            assert!(barrier());
        }
    }
}
