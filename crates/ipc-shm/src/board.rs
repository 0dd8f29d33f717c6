//! The memory of a blackboard: one writer keeps the latest value, any
//! number of readers read it whenever they like, without ever blocking the
//! writer or each other.
//!
//! A [`BoardWriter`] makes it in a memfd that it maps for writing and
//! then seals against any other write access (`F_SEAL_FUTURE_WRITE`, as a
//! broadcast ring), so readers map it read-only. The value is kept in
//! several copies: version `v` (counted from 1) goes to copy `v % copies`,
//! stamped `2v + 1` while written and `2v + 2` once whole, then `latest`
//! says `v`. A [`BoardReader`] reads the copy `latest` names and checks
//! its stamp before and after: a copy overwritten meanwhile (the writer
//! wrote `copies` more values during the read) is read again, a bounded
//! number of times. A value is never handed over torn.
//!
//! The layout, for programs in other languages (all little-endian, the
//! words naturally aligned): at 0 the magic `ipcboard`, at 8 the number
//! of copies (`u64`), at 16 the largest value in bytes, at 24 the bytes
//! of one copy (16 plus the largest value, rounded up to 64); at 64
//! `latest` (`u64`, 0 before the first value); at 128 a `u32` that is 1
//! once the writer is gone; copies from 256 on, each its stamp (`u64`),
//! the value's length (`u32`), 4 bytes unused and the value.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use crate::error::{Error, Result};
use crate::memfd::Memfd;
pub use crate::sealed::Position;
use crate::sealed::{self, Header, mismatch};
use crate::sys::{Pinned, Region};

const MAGIC: u64 = u64::from_le_bytes(*b"ipcboard");
const OFF_MAGIC_AT: usize = 0;
const OFF_COPIES: usize = 8;
const OFF_MAX: usize = 16;
const OFF_SLOT: usize = 24;
const OFF_LATEST: usize = 64;
const OFF_CLOSED: usize = 128;
const COPIES: usize = 256;
const COPY_HEADER: usize = 16;

/// The most copies a board may keep.
pub const MAX_COPIES: usize = 64;
/// The largest value a board may hold.
pub const MAX_VALUE: usize = 1 << 26;

#[derive(Clone, Copy, Debug)]
struct Geometry {
    copies: u64,
    max: usize,
    slot: usize,
}

impl Geometry {
    fn new(copies: usize, max: usize) -> Result<Geometry> {
        if !(2..=MAX_COPIES).contains(&copies) {
            return Err(Error::InvalidSize { size: copies, reason: "copies: 2 to 64" });
        }
        if max == 0 || max > MAX_VALUE {
            return Err(Error::InvalidSize { size: max, reason: "value size: 1 byte to 64 MiB" });
        }
        Ok(Geometry { copies: copies as u64, max, slot: (COPY_HEADER + max).next_multiple_of(64) })
    }

    fn bytes(&self) -> usize {
        COPIES + self.copies as usize * self.slot
    }

    fn at(&self, version: u64) -> usize {
        COPIES + (version % self.copies) as usize * self.slot
    }
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub enum BoardRead<R> {
    /// The value of this version, through the closure's result.
    Value {
        /// Its version (from 1).
        version: u64,
        /// What the closure returned.
        value: R,
    },
    /// No value was written yet.
    Empty,
    /// Every try found the copy changing under it.
    Unsettled,
}

/// The writer's side of a blackboard (see the [module](self)).
pub struct BoardWriter {
    pinned: Pinned<Region, COPIES>,
    memfd: Memfd,
    geometry: Geometry,
    latest: u64,
}

impl BoardWriter {
    /// A board of `copies` copies (2 to 64) of values up to `max` bytes, in
    /// a new memfd labelled `label` that only this writer can write.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`]; [`Error::Io`].
    pub fn create(label: &str, copies: usize, max: usize) -> Result<BoardWriter> {
        let geometry = Geometry::new(copies, max)?;
        let bytes = geometry.bytes();
        let words = [
            (OFF_MAGIC_AT, MAGIC),
            (OFF_COPIES, geometry.copies),
            (OFF_MAX, geometry.max as u64),
            (OFF_SLOT, geometry.slot as u64),
        ];
        let (memfd, pinned) = sealed::create(label, bytes, &words)?;
        Ok(BoardWriter { pinned, memfd, geometry, latest: 0 })
    }

    /// Where it is (for a hub's thread that compares it with a reader's
    /// place).
    pub fn position(&self) -> Position {
        Position::new::<OFF_LATEST>(&self.pinned)
    }

    /// The memfd, to hand to readers.
    pub fn memfd(&self) -> &Memfd {
        &self.memfd
    }

    /// The largest value.
    pub fn max(&self) -> usize {
        self.geometry.max
    }

    /// The version of the latest value (0: none yet).
    pub fn version(&self) -> u64 {
        self.latest
    }

    /// Writes a value of `len` bytes (at most `max`) that `f` fills in
    /// place, and returns its version.
    ///
    /// # Errors
    ///
    /// [`Error::RecordTooLarge`] for `len` over `max`.
    pub fn write_with(&mut self, len: usize, f: impl FnOnce(&mut [u8])) -> Result<u64> {
        if len > self.geometry.max {
            return Err(Error::RecordTooLarge { len, max: self.geometry.max });
        }
        let v = self.latest + 1;
        let at = self.geometry.at(v);
        let span = self.pinned.span();
        let (Ok(stamp), Ok(length)) = (span.view::<AtomicU64>(at), span.view::<AtomicU32>(at + 8)) else {
            return Err(Error::Corrupted { what: "a copy outside the board".into() });
        };
        stamp.store(v.wrapping_mul(2).wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        // In bounds: the copy holds `max` bytes.
        f(span.slice_mut(at + COPY_HEADER, len).unwrap_or_default());
        length.store(len as u32, Ordering::Relaxed);
        stamp.store(v.wrapping_mul(2).wrapping_add(2), Ordering::Release);
        self.pinned.at::<AtomicU64, OFF_LATEST>().store(v, Ordering::Release);
        self.latest = v;
        Ok(v)
    }

    /// Writes a copy of `bytes`.
    ///
    /// # Errors
    ///
    /// As for [`write_with`](Self::write_with).
    pub fn write(&mut self, bytes: &[u8]) -> Result<u64> {
        self.write_with(bytes.len(), |buf| buf.copy_from_slice(bytes))
    }

    /// Marks the board closed: no value follows.
    pub fn close(&self) {
        self.pinned.at::<AtomicU32, OFF_CLOSED>().store(1, Ordering::Release);
    }
}

impl Drop for BoardWriter {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for BoardWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoardWriter").field("geometry", &self.geometry).field("latest", &self.latest).finish()
    }
}

/// A reader's view of a blackboard, mapped read-only.
pub struct BoardReader {
    pinned: Pinned<Region, COPIES>,
    geometry: Geometry,
}

impl BoardReader {
    /// Maps a board received from its writer (read-only) and checks its
    /// header.
    ///
    /// # Errors
    ///
    /// [`Error::LayoutMismatch`]; [`Error::Io`].
    pub fn open(memfd: &Memfd) -> Result<BoardReader> {
        let header = Header::read::<COPIES>(memfd, MAGIC, "blackboard")?;
        let (copies, max, slot) = (header.word(OFF_COPIES), header.word(OFF_MAX), header.word(OFF_SLOT));
        let geometry = Geometry::new(usize::try_from(copies).unwrap_or(0), usize::try_from(max).unwrap_or(0))
            .map_err(|_| mismatch(format!("{copies} copies of {max} bytes")))?;
        if geometry.slot as u64 != slot || geometry.bytes() > memfd.len() {
            return Err(mismatch(format!("{copies} copies of {slot} bytes in {} bytes", memfd.len())));
        }
        let pinned = sealed::open(memfd, geometry.bytes())?;
        Ok(BoardReader { pinned, geometry })
    }

    /// The largest value.
    pub fn max(&self) -> usize {
        self.geometry.max
    }

    /// The version of the latest value, as the writer says (0: none).
    pub fn version(&self) -> u64 {
        self.pinned.at::<AtomicU64, OFF_LATEST>().load(Ordering::Acquire)
    }

    /// Whether the writer marked the board closed.
    pub fn closed(&self) -> bool {
        self.pinned.at::<AtomicU32, OFF_CLOSED>().load(Ordering::Acquire) != 0
    }

    /// Reads the latest value in place, trying at most `tries` times: `f`
    /// sees its bytes, and its result is kept only when the copy was
    /// whole before and after (it may see bytes being overwritten in the
    /// tries that fail).
    pub fn read_with<R>(&self, tries: u32, mut f: impl FnMut(&[u8]) -> R) -> BoardRead<R> {
        let span = self.pinned.span();
        for _ in 0..tries {
            let v = self.version();
            if v == 0 {
                return BoardRead::Empty;
            }
            // A version no writer reaches (and whose stamp would wrap to
            // that of a copy never written).
            if v >= 1 << 63 {
                continue;
            }
            let at = self.geometry.at(v);
            let (Ok(stamp), Ok(len)) = (span.view::<AtomicU64>(at), span.view::<AtomicU32>(at + 8)) else {
                continue;
            };
            let before = stamp.load(Ordering::Acquire);
            if before != v.wrapping_mul(2).wrapping_add(2) {
                std::hint::spin_loop();
                continue;
            }
            let len = len.load(Ordering::Relaxed) as usize;
            let value =
                if len <= self.geometry.max { span.slice(at + COPY_HEADER, len).ok().map(&mut f) } else { None };
            fence(Ordering::Acquire);
            if stamp.load(Ordering::Relaxed) != before {
                continue;
            }
            if let Some(value) = value {
                return BoardRead::Value { version: v, value };
            }
        }
        BoardRead::Unsettled
    }
}

impl fmt::Debug for BoardReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoardReader").field("geometry", &self.geometry).field("version", &self.version()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_value_reads_back_and_the_board_is_read_only_to_readers() {
        let mut w = BoardWriter::create("test-board", 4, 16).unwrap();
        let m = Memfd::from_fd(w.memfd().try_clone_fd().unwrap()).unwrap();
        assert!(m.map().is_err(), "a writable mapping of a sealed board");
        let r = BoardReader::open(&m).unwrap();
        assert_eq!(r.read_with(1, <[u8]>::to_vec), BoardRead::Empty);
        for i in 1..=10u8 {
            assert_eq!(w.write(&[i; 5]).unwrap(), u64::from(i));
        }
        assert_eq!(r.read_with(1, <[u8]>::to_vec), BoardRead::Value { version: 10, value: vec![10; 5] });
        assert!(w.write(&[0; 17]).is_err());
        assert!(!r.closed());
        drop(w);
        assert!(r.closed());
        assert!(BoardWriter::create("x", 1, 8).is_err());
        assert!(BoardWriter::create("x", 2, 0).is_err());
    }
}
