//! The channel's shared memory as loom models it (`cargo xtask loom`):
//! the lines as loom atomics, and each slot in a loom cell that reports
//! any access not ordered after the last conflicting one (a data race).
#![allow(unsafe_code, reason = "loom's cells hand out raw pointers to the slots they check")]

use loom::cell::UnsafeCell;

use super::layout::{DATA, LINE, Line};
use crate::sys::{Fault, Span};

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
}

/// Where a channel's slots are under loom: the model, or (for a channel
/// made as usual) its mapping.
pub(crate) enum Ring<'a> {
    Model(&'a Store),
    Mapped(&'a Span),
}

impl Ring<'_> {
    /// As [`Span::copy_in`].
    pub(crate) fn copy_in(&self, offset: usize, bytes: &[u8]) -> Result<(), Fault> {
        match self {
            // SAFETY: loom checks that no other access to this slot is
            // concurrent with this one (it panics if so).
            Ring::Model(store) => {
                Ok(store.slot(offset, bytes.len()).with_mut(|p| unsafe { (*p).copy_from_slice(bytes) }))
            }
            Ring::Mapped(region) => region.copy_in(offset, bytes),
        }
    }

    /// As [`Span::copy_out`].
    pub(crate) fn copy_out(&self, offset: usize, out: &mut [u8]) -> Result<(), Fault> {
        match self {
            // SAFETY: as in `copy_in`.
            Ring::Model(store) => Ok(store.slot(offset, out.len()).with(|p| out.copy_from_slice(unsafe { &*p }))),
            Ring::Mapped(region) => region.copy_out(offset, out),
        }
    }
}
