//! What the channel's ring uses to synchronize, switched by `cfg(loom)`:
//! the standard atomics and futex calls normally, loom's model of them
//! when `cargo xtask loom` model-checks the orderings.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, fence};

/// Publishes `value` in `index`, then reads `waiting`: whether the peer
/// sleeps (or is about to) and must be woken.
///
/// The peer that goes to sleep stores `waiting`, issues a SeqCst fence,
/// then reads `index` again (`Side::wait`); one of the two must see the
/// other's store. With `light` false, our SeqCst store and SeqCst load do
/// it against that fence: were our load to miss its store and its read to
/// miss ours, the single order of SeqCst operations and fences would need
/// our load before its fence (C++20 [atomics.order]/4, second case) and
/// its fence before our store (third case), while our store comes before
/// our load. On x86-64 that is an `xchg`: it waits until every earlier
/// store of ours, the message among them, has reached the other core.
///
/// With `light` true, both processes are registered for
/// `ipc_sync::membarrier` and the sleeper calls its `barrier` after the
/// fence: only the compiler is kept from reordering here, and the barrier
/// the sleeper forces on us does the rest (see that module). The message
/// then leaves the store buffer while we go on.
///
/// Loom models SeqCst loads and stores as acquire/release only, and knows
/// nothing of membarrier, so under loom the equivalent fence form is used
/// (Release store, SeqCst fence, Relaxed load), which the model checks.
#[inline]
pub(crate) fn publish(index: &AtomicU64, value: u64, waiting: &AtomicU32, light: bool) -> bool {
    use std::sync::atomic::Ordering;
    #[cfg(not(loom))]
    {
        if light {
            // Release: what was written before (the slots) happens before
            // the peer's Acquire read of the index.
            index.store(value, Ordering::Release);
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
            // Relaxed: ordered against the sleeper by its barrier.
            waiting.load(Ordering::Relaxed) != 0
        } else {
            // SeqCst: also Release, as above.
            index.store(value, Ordering::SeqCst);
            waiting.load(Ordering::SeqCst) != 0
        }
    }
    #[cfg(loom)]
    {
        let _ = light;
        index.store(value, Ordering::Release);
        fence(Ordering::SeqCst);
        waiting.load(Ordering::Relaxed) != 0
    }
}

/// Registers this process for the barriers of `ipc_sync::membarrier`;
/// never under loom.
pub(crate) fn register_barriers() -> bool {
    #[cfg(not(loom))]
    return ipc_sync::membarrier::register();
    #[cfg(loom)]
    false
}

/// Forces a barrier on the peer (see [`publish`]); false if the kernel
/// refused.
pub(crate) fn barrier() -> bool {
    #[cfg(not(loom))]
    return ipc_sync::membarrier::barrier();
    #[cfg(loom)]
    true
}

/// One turn of a busy-wait.
pub(crate) fn spin() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Sleeps while `*word == seen`, until `deadline`; false when it passed.
/// Under loom nobody sleeps (the model checks the spinning policy).
pub(crate) fn futex_wait_until(word: &AtomicU32, seen: u32, deadline: ipc_sync::Deadline) -> bool {
    #[cfg(not(loom))]
    {
        ipc_sync::futex::wait_until(word, seen, deadline)
    }
    #[cfg(loom)]
    {
        let _ = (word, seen, deadline);
        loom::thread::yield_now();
        true
    }
}

/// Wakes up to `n` sleepers on `word`.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) {
    #[cfg(not(loom))]
    ipc_sync::futex::wake(word, n);
    #[cfg(loom)]
    let _ = (word, n);
}
