//! What the channel's ring uses to synchronize, switched by `cfg(loom)`:
//! the standard atomics and futex calls normally, loom's model of them
//! when `cargo xtask loom` model-checks the orderings.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, fence};

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

#[cfg(loom)]
pub(crate) mod model {
    //! The channel's shared memory as loom models it: the lines as loom
    //! atomics, and each slot in a loom cell that reports any access not
    //! ordered after the last conflicting one (a data race).
    #![allow(unsafe_code)]

    use loom::cell::UnsafeCell;

    use super::super::layout::{DATA, LINE, Line};

    #[derive(Debug)]
    pub(crate) struct Store {
        lines: Vec<Line>,
        slots: Vec<UnsafeCell<Vec<u8>>>,
        slot_size: usize,
    }

    // SAFETY: the slots are shared between the two sides as the ring
    // protocol allows; loom's cells check that every access is ordered.
    unsafe impl Sync for Store {}

    impl Store {
        pub(crate) fn new(capacity: usize, slot_size: usize) -> Store {
            Store {
                lines: (0..DATA / LINE).map(|_| Line::new()).collect(),
                slots: (0..capacity).map(|_| UnsafeCell::new(vec![0; slot_size])).collect(),
                slot_size,
            }
        }

        pub(crate) fn line(&self, offset: usize) -> &Line {
            &self.lines[offset / LINE]
        }

        fn slot(&self, offset: usize, len: usize) -> &UnsafeCell<Vec<u8>> {
            assert_eq!(len, self.slot_size, "the model stores whole slots");
            &self.slots[(offset - DATA) / self.slot_size]
        }

        pub(crate) fn write(&self, offset: usize, bytes: &[u8]) {
            // SAFETY: loom checks that no other access to this slot is
            // concurrent with this one (it panics if so).
            self.slot(offset, bytes.len()).with_mut(|p| unsafe { (*p).copy_from_slice(bytes) });
        }

        pub(crate) fn read(&self, offset: usize, out: &mut [u8]) {
            // SAFETY: as in write.
            self.slot(offset, out.len()).with(|p| out.copy_from_slice(unsafe { &*p }));
        }
    }
}
