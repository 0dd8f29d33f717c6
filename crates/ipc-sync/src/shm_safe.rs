//! The `ShmSafe` marker and its implementations (`unsafe impl`s).
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicU8, AtomicU16, AtomicU32, AtomicU64};

/// A type that may live in memory shared between processes and be used
/// through a shared reference from all of them at once.
///
/// ipc-shm hands out `&T` into a shared mapping only for `T: ShmSafe`
/// (`Shared<T>`); every primitive of this crate that lives in shared memory
/// implements it.
///
/// # Safety
///
/// An implementation promises that the type
///
/// - is valid when all its bytes are zero (a fresh mapping is zero-filled,
///   and there is no step that initializes it before a peer may look),
/// - contains no pointers, references, file descriptors or other values
///   that mean something only in one process (addresses differ between
///   processes),
/// - changes through `&self` only by atomic operations, or by plain
///   accesses that its own protocol (a lock built from atomics) makes
///   exclusive,
/// - has a layout that does not depend on the compiler's choices
///   (`#[repr(C)]` or a primitive), so that two programs built separately
///   agree on it, and uses no `usize` across processes.
///
/// Every bit pattern a misbehaving peer may write must leave the type
/// memory-safe to use (at worst, wrong values or errors).
pub unsafe trait ShmSafe: Sync + Sized {}

macro_rules! shm_safe_atomics {
    ($($t:ty),*) => {
        $(
            // SAFETY: atomics are zero-valid, pointer-free, changed only
            // atomically, and every bit pattern is a valid value.
            unsafe impl ShmSafe for $t {}
        )*
    };
}

// Not AtomicBool: a peer could store a byte that is not a valid bool.
shm_safe_atomics!(AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicI8, AtomicI16, AtomicI32, AtomicI64);

// SAFETY: an array of ShmSafe elements has all of their properties; arrays
// have a fixed layout.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}

/// `ShmSafe` and `Zeroable` for the primitives of this crate that live in
/// shared memory: `#[repr(C)]` structs of atomics.
macro_rules! shm_safe_primitives {
    ($($t:ty),*) => {
        $(
            // SAFETY: a repr(C) struct of 32-bit atomics: zero-valid (the
            // zero state is the documented initial state), pointer-free,
            // changed only atomically; any values a peer writes make waits
            // end early or late, never memory unsafety.
            unsafe impl ShmSafe for $t {}
            // SAFETY: as above, all zeroes is a valid, ready value.
            unsafe impl bytemuck::Zeroable for $t {}
        )*
    };
}

shm_safe_primitives!(crate::Condvar, crate::Semaphore, crate::Event);

// SAFETY: repr(C) of a RawLock (atomics only) and a Pod value. Zero-valid:
// an unlocked mutex holding a zeroed T. Pointer-free as far as this
// process is concerned: the robust-list link words in the RawLock are only
// ever written by us (from thread-private knowledge) and read only by the
// kernel when the holding thread dies; no code of ours follows them, so
// any value a peer writes there is harmless to us. Any lock word a peer
// writes reads as free, held or owner-died, and every wait on it ends at
// its deadline. The data changes only under the lock; any bytes are a T.
unsafe impl<T: bytemuck::Pod> ShmSafe for crate::Mutex<T> {}
// SAFETY: all zeroes is an unlocked mutex holding a zeroed T.
unsafe impl<T: bytemuck::Pod> bytemuck::Zeroable for crate::Mutex<T> {}

// SAFETY: as for Mutex: the same RawLock and a Pod value; a lock word
// marked not recoverable is one more state any peer may write.
unsafe impl<T: bytemuck::Pod> ShmSafe for crate::RobustMutex<T> {}
// SAFETY: all zeroes is an unlocked robust mutex holding a zeroed T.
unsafe impl<T: bytemuck::Pod> bytemuck::Zeroable for crate::RobustMutex<T> {}
