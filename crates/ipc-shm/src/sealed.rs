//! What the broadcast ring, the blackboard and the event table share:
//! memory in a memfd that its maker writes through the one mapping it
//! made and that everyone else can only map for reading, with a header of
//! little-endian words that starts with a magic.

use std::fmt;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::memfd::Memfd;
use crate::sys::{self, Pinned, Region, SealFlag};

/// A new memfd of `bytes` bytes labelled `label`, mapped for writing and
/// then sealed against any other write access (no new writable mapping,
/// no `write(2)`, no hole punched, no new size, no seal removed), its
/// header's words written (`(offset, value)`, the magic at 0 last).
pub(crate) fn create<const MIN: usize>(
    label: &str,
    bytes: usize,
    words: &[(usize, u64)],
) -> Result<(Memfd, Pinned<Region, MIN>)> {
    let memfd = Memfd::create(label, bytes)?;
    memfd.seal_grow()?;
    let region = Region::map_fd(memfd.as_fd(), bytes, true, false).map_err(|e| Error::Io { op: "mmap", source: e })?;
    sys::add_seals(memfd.as_fd(), SealFlag::F_SEAL_FUTURE_WRITE | SealFlag::F_SEAL_SEAL)
        .map_err(|e| Error::Io { op: "F_ADD_SEALS", source: e })?;
    let pinned = Pinned::new(Arc::new(region), |r| r).ok_or(Error::InvalidSize { size: bytes, reason: "too short" })?;
    let mut words = words.to_vec();
    words.sort_by_key(|&(off, _)| off == 0);
    for (off, v) in words {
        pinned
            .span()
            .copy_in(off, &v.to_le_bytes())
            .map_err(|_| Error::InvalidSize { size: bytes, reason: "the header does not fit" })?;
    }
    Ok((memfd, pinned))
}

/// The header (`MIN` bytes) of memory a maker handed over, mapped
/// read-only while its words are looked at.
pub(crate) struct Header(Region);

impl Header {
    /// Maps the header of `memfd` and checks its `magic`; `what` names the
    /// layout in errors.
    pub(crate) fn read<const MIN: usize>(memfd: &Memfd, magic: u64, what: &str) -> Result<Header> {
        if memfd.len() < MIN {
            return Err(mismatch(format!("{} bytes hold no {what}", memfd.len())));
        }
        let region =
            Region::map_fd(memfd.as_fd(), MIN, false, false).map_err(|e| Error::Io { op: "mmap", source: e })?;
        let header = Header(region);
        if header.word(0) != magic {
            return Err(mismatch(format!("no {what}")));
        }
        Ok(header)
    }

    /// The word at `off` (0 when out of bounds).
    pub(crate) fn word(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        self.0.copy_out(off, &mut b).map(|()| u64::from_le_bytes(b)).unwrap_or(0)
    }
}

/// Maps the first `bytes` bytes of `memfd` read-only, once its header was
/// checked (`bytes` at most its size).
pub(crate) fn open<const MIN: usize>(memfd: &Memfd, bytes: usize) -> Result<Pinned<Region, MIN>> {
    if bytes > memfd.len() {
        return Err(mismatch(format!("{bytes} bytes asked of {}", memfd.len())));
    }
    let region = Region::map_fd(memfd.as_fd(), bytes, false, false).map_err(|e| Error::Io { op: "mmap", source: e })?;
    Pinned::new(Arc::new(region), |r| r).ok_or_else(|| mismatch("shorter than its header".to_owned()))
}

pub(crate) fn mismatch(reason: String) -> Error {
    Error::LayoutMismatch { reason }
}

/// Where a writer is (the broadcast ring's head, the board's latest
/// version, the table's generation), for a thread of the writer's process
/// that must compare it with a reader's place: a word of the writer's
/// memory, read on its own.
#[derive(Clone)]
pub struct Position {
    pinned: Pinned<Region, 256>,
}

impl Position {
    /// The position, word `OFF` of `pinned`.
    pub(crate) fn new<const OFF: usize>(pinned: &Pinned<Region, 256>) -> Position {
        const { assert!(OFF == 64, "every layout keeps its position at 64") };
        Position { pinned: pinned.clone() }
    }

    /// The position now.
    pub fn load(&self) -> u64 {
        self.pinned.at::<AtomicU64, 64>().load(Ordering::SeqCst)
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Position").field(&self.load()).finish()
    }
}
