//! The memory of a broadcast: one writer, any number of readers, each
//! reader with a cursor of its own.
//!
//! A [`BroadcastWriter`] makes a ring of fixed slots in a memfd, maps it
//! for writing and then seals it against any further write access
//! (`F_SEAL_FUTURE_WRITE`, with `F_SEAL_SHRINK` and `F_SEAL_GROW`): a
//! process that receives the memfd can map it only for reading, so no
//! reader can change what the others read. Each message `n` (counted from
//! 0) goes to slot `n % capacity`, stamped `2n + 1` while it is written
//! and `2n + 2` once whole; the count of messages published, the head,
//! follows. A [`BroadcastReader`] reads message `n` in place and checks
//! the stamp before and after: a message overwritten meanwhile is
//! reported as lost ([`Read::Lagged`]), never handed over torn.
//!
//! A [`CursorCell`] is a page of its own per reader, which reader and
//! writer both map: the reader's cursor (for a writer that waits for its
//! readers), whether it sleeps (for a writer that must wake it), and where
//! it starts. A reader can scribble on its own cell only; the writer
//! reads every value there as untrusted.
//!
//! The layout, for programs in other languages (little-endian, the words
//! naturally aligned): at 0 the magic `ipcbcst` and a byte 1, at 8 the
//! number of slots (`u64`, a power of two), at 16 the bytes of one slot
//! (16 plus the longest message, rounded up to 64), at 24 the longest
//! message; at 64 the head (`u64`); at 128 a `u32` that is 1 once the
//! writer is gone; at 136 the cursor every reader is to pass while the
//! writer waits for room (`u64`, all ones when it does not wait); slots
//! from 256 on, each its stamp (`u64`), the message's length (`u32`), 4
//! bytes unused and the message. A reader's cell is one page: its cursor
//! (`u64`) at 0, whether it sleeps (`u32`) at 64, where it starts (`u64`,
//! all ones until the writer sets it) at 128, how many times it went to
//! sleep (`u64`) at 192.
//!
//! Who waits, wakes whom and drops whom is the business of the layer
//! above (ipc-service's publish/subscribe, which passes these memfds over
//! a socket).

use std::fmt;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use crate::error::{Error, Result};
use crate::memfd::Memfd;
pub use crate::sealed::Position;
use crate::sealed::{self, Header, mismatch};
use crate::sys::{Pinned, Region};

/// `ipcbcst` and the layout's version.
const MAGIC: u64 = u64::from_le_bytes(*b"ipcbcst\x01");
const OFF_MAGIC: usize = 0;
const OFF_CAPACITY: usize = 8;
const OFF_SLOT: usize = 16;
const OFF_MAX: usize = 24;
/// The head: how many messages were published. A line of its own.
const OFF_HEAD: usize = 64;
/// Set when the writer is gone for good.
const OFF_CLOSED: usize = 128;
/// While the writer waits for its readers to make room: the cursor each
/// reader is to pass (before which it rings the writer); else `u64::MAX`.
const OFF_WAITING: usize = 136;
/// [`OFF_WAITING`] when the writer does not wait.
const NOT_WAITING: u64 = u64::MAX;
/// Where the slots start.
const SLOTS: usize = 256;
/// In a slot: its stamp, then the message's length, then the message.
const SLOT_HEADER: usize = 16;

/// A count of messages past any a writer reaches (2^63: 292 years at a
/// billion a second): a reader takes a head or cursor beyond it for a
/// corrupted ring.
const LAST: u64 = 1 << 63;

/// The most slots a ring may have.
pub const MAX_SLOTS: usize = 1 << 24;
/// The longest message a ring may carry.
pub const MAX_MESSAGE: usize = 1 << 24;

/// What reading message `n` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read<R> {
    /// The message, through the closure's result.
    Message(R),
    /// Not published yet.
    Empty,
    /// Overwritten before it could be read, or while it was: the reader
    /// should go on from `next` (the messages in between are lost).
    Lagged {
        /// The message to read next.
        next: u64,
    },
}

/// The ring's geometry.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    capacity: u64,
    slot: usize,
    max: usize,
}

impl Geometry {
    fn new(capacity: usize, max_message: usize) -> Result<Geometry> {
        if !capacity.is_power_of_two() || !(2..=MAX_SLOTS).contains(&capacity) {
            return Err(Error::InvalidSize { size: capacity, reason: "slots: a power of two from 2 to 2^24" });
        }
        if max_message == 0 || max_message > MAX_MESSAGE {
            return Err(Error::InvalidSize { size: max_message, reason: "message size: 1 byte to 16 MiB" });
        }
        let slot = (SLOT_HEADER + max_message).next_multiple_of(64);
        Ok(Geometry { capacity: capacity as u64, slot, max: max_message })
    }

    fn bytes(&self) -> Option<usize> {
        usize::try_from(self.capacity).ok()?.checked_mul(self.slot)?.checked_add(SLOTS)
    }

    fn at(&self, n: u64) -> usize {
        SLOTS + (n & (self.capacity - 1)) as usize * self.slot
    }
}

/// The writer's half of a broadcast ring (see the [module](self)).
pub struct BroadcastWriter {
    pinned: Pinned<Region, SLOTS>,
    memfd: Memfd,
    geometry: Geometry,
    /// The head as this writer knows it (it alone moves it).
    head: u64,
    /// A loan is out: the slot of message `head` is stamped as being
    /// written.
    loaned: bool,
}

impl BroadcastWriter {
    /// A ring of `capacity` slots (a power of two, 2 to 2^24) of messages
    /// up to `max_message` bytes, in a new memfd labelled `label`, which
    /// no one can map for writing from now on but this writer.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`] for a capacity or size out of range;
    /// [`Error::Io`] when the memfd cannot be made, mapped or sealed.
    pub fn create(label: &str, capacity: usize, max_message: usize) -> Result<BroadcastWriter> {
        let geometry = Geometry::new(capacity, max_message)?;
        let bytes = geometry.bytes().ok_or(Error::InvalidSize { size: capacity, reason: "too large a ring" })?;
        let words = [
            (OFF_MAGIC, MAGIC),
            (OFF_CAPACITY, geometry.capacity),
            (OFF_SLOT, geometry.slot as u64),
            (OFF_MAX, geometry.max as u64),
            (OFF_WAITING, NOT_WAITING),
        ];
        let (memfd, pinned) = sealed::create(label, bytes, &words)?;
        Ok(BroadcastWriter { pinned, memfd, geometry, head: 0, loaned: false })
    }

    /// Where it is (for a hub's thread that compares it with a reader's
    /// place).
    pub fn position(&self) -> Position {
        Position::new::<OFF_HEAD>(&self.pinned)
    }

    /// The memfd, to hand to readers.
    pub fn memfd(&self) -> &Memfd {
        &self.memfd
    }

    /// How many slots.
    pub fn capacity(&self) -> u64 {
        self.geometry.capacity
    }

    /// The longest message.
    pub fn max_message(&self) -> usize {
        self.geometry.max
    }

    /// How many messages were published.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The slot of message `head`, stamped as being written, for the
    /// caller to fill (`max_message` bytes). The caller has made sure
    /// that no reader still needs the message it overwrites, or does not
    /// care. [`commit`](Self::commit) publishes it.
    pub fn loan(&mut self) -> &mut [u8] {
        let at = self.geometry.at(self.head);
        if !self.loaned {
            let stamp = self.stamp(at);
            stamp.store(self.head.wrapping_mul(2).wrapping_add(1), Ordering::Relaxed);
            // The odd stamp is seen before any byte of the new message.
            fence(Ordering::Release);
            self.loaned = true;
        }
        // In bounds: `at` and the slot were fixed at creation.
        self.pinned.span().slice_mut(at + SLOT_HEADER, self.geometry.max).unwrap_or_default()
    }

    /// The slot of message `head` as it is now, for reading: what
    /// [`loan`](Self::loan) lends.
    pub fn loaned(&self) -> &[u8] {
        let at = self.geometry.at(self.head);
        self.pinned.span().slice(at + SLOT_HEADER, self.geometry.max).unwrap_or_default()
    }

    /// Publishes the loaned slot's first `len` bytes (at most
    /// `max_message`) as message `head`, and returns its number.
    ///
    /// # Errors
    ///
    /// [`Error::RecordTooLarge`] for `len` over `max_message`.
    pub fn commit(&mut self, len: usize) -> Result<u64> {
        if len > self.geometry.max {
            return Err(Error::RecordTooLarge { len, max: self.geometry.max });
        }
        let _ = self.loan();
        let n = self.head;
        let at = self.geometry.at(n);
        self.len_of(at).store(len as u32, Ordering::Relaxed);
        self.stamp(at).store(n.wrapping_mul(2).wrapping_add(2), Ordering::Release);
        self.head = n + 1;
        self.loaned = false;
        self.pinned.at::<AtomicU64, OFF_HEAD>().store(self.head, Ordering::Release);
        Ok(n)
    }

    /// Publishes a copy of `bytes`: [`loan`](Self::loan) and
    /// [`commit`](Self::commit) at once.
    ///
    /// # Errors
    ///
    /// As for [`commit`](Self::commit).
    pub fn write(&mut self, bytes: &[u8]) -> Result<u64> {
        if bytes.len() > self.geometry.max {
            return Err(Error::RecordTooLarge { len: bytes.len(), max: self.geometry.max });
        }
        self.loan()[..bytes.len()].copy_from_slice(bytes);
        self.commit(bytes.len())
    }

    /// A handle on the waiting word and the head, for the waits, which
    /// run apart from the writer (a poller's hook).
    pub fn flags(&self) -> WriterFlags {
        WriterFlags { pinned: self.pinned.clone() }
    }

    /// Marks the ring closed: no message follows those published.
    pub fn close(&self) {
        self.pinned.at::<AtomicU32, OFF_CLOSED>().store(1, Ordering::Release);
    }

    fn stamp(&self, at: usize) -> &AtomicU64 {
        // In bounds and aligned (slots are multiples of 64 bytes).
        self.pinned.span().view::<AtomicU64>(at).unwrap_or_else(|_| self.pinned.at::<AtomicU64, OFF_HEAD>())
    }

    fn len_of(&self, at: usize) -> &AtomicU32 {
        self.pinned.span().view::<AtomicU32>(at + 8).unwrap_or_else(|_| self.pinned.at::<AtomicU32, OFF_CLOSED>())
    }
}

impl Drop for BroadcastWriter {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for BroadcastWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastWriter").field("geometry", &self.geometry).field("head", &self.head).finish()
    }
}

/// The writer's waiting flag and head, apart from the writer
/// ([`BroadcastWriter::flags`]).
#[derive(Clone)]
pub struct WriterFlags {
    pinned: Pinned<Region, SLOTS>,
}

impl WriterFlags {
    /// Says that the writer waits for room until every reader's cursor
    /// reaches `until` (readers that pass it then ring it), or (`None`)
    /// that it does not wait.
    pub fn set_waiting(&self, until: Option<u64>) {
        self.pinned.at::<AtomicU64, OFF_WAITING>().store(until.unwrap_or(NOT_WAITING), Ordering::SeqCst);
    }

    /// How many messages were published.
    pub fn head(&self) -> u64 {
        self.pinned.at::<AtomicU64, OFF_HEAD>().load(Ordering::SeqCst)
    }
}

impl fmt::Debug for WriterFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterFlags").field("head", &self.head()).finish()
    }
}

/// A reader's view of a broadcast ring, mapped read-only: it only ever
/// loads from the memory, and checks all it loads.
pub struct BroadcastReader {
    pinned: Pinned<Region, SLOTS>,
    geometry: Geometry,
}

impl BroadcastReader {
    /// Maps a ring received from its writer (read-only) and checks its
    /// header.
    ///
    /// # Errors
    ///
    /// [`Error::LayoutMismatch`] when the memory holds no ring or a ring
    /// its memfd is too small for; [`Error::Io`] when it cannot be mapped.
    pub fn open(memfd: &Memfd) -> Result<BroadcastReader> {
        let header = Header::read::<SLOTS>(memfd, MAGIC, "broadcast ring")?;
        let (capacity, slot, max) = (header.word(OFF_CAPACITY), header.word(OFF_SLOT), header.word(OFF_MAX));
        let geometry = Geometry::new(usize::try_from(capacity).unwrap_or(0), usize::try_from(max).unwrap_or(0))
            .map_err(|_| mismatch(format!("{capacity} slots of {max} bytes")))?;
        if geometry.slot as u64 != slot {
            return Err(mismatch(format!("slots of {slot} bytes for messages of {max}")));
        }
        let bytes = geometry.bytes().filter(|&b| b <= memfd.len());
        let bytes = bytes.ok_or_else(|| mismatch(format!("{capacity} slots do not fit {} bytes", memfd.len())))?;
        let pinned = sealed::open(memfd, bytes)?;
        Ok(BroadcastReader { pinned, geometry })
    }

    /// How many slots.
    pub fn capacity(&self) -> u64 {
        self.geometry.capacity
    }

    /// The longest message.
    pub fn max_message(&self) -> usize {
        self.geometry.max
    }

    /// How many messages the writer says it published.
    pub fn head(&self) -> u64 {
        self.pinned.at::<AtomicU64, OFF_HEAD>().load(Ordering::Acquire)
    }

    /// Whether the writer marked the ring closed.
    pub fn closed(&self) -> bool {
        self.pinned.at::<AtomicU32, OFF_CLOSED>().load(Ordering::Acquire) != 0
    }

    /// The cursor the writer waits for every reader to reach, if it
    /// waits for room.
    pub fn writer_waiting_for(&self) -> Option<u64> {
        Some(self.pinned.at::<AtomicU64, OFF_WAITING>().load(Ordering::SeqCst)).filter(|&w| w != NOT_WAITING)
    }

    /// Reads message `n` in place: `f` sees its bytes, and its result is
    /// kept only when the message was whole before and after (otherwise
    /// [`Read::Lagged`]; `f` may then have seen bytes being overwritten).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupted`] when the memory says something no writer
    /// following the layout says (a slot older than the head, a length
    /// over the maximum that does not change).
    pub fn read_with<R>(&self, n: u64, f: impl FnOnce(&[u8]) -> R) -> Result<Read<R>> {
        if n >= LAST {
            return Err(corrupted("a count of messages no writer reaches"));
        }
        let cap = self.geometry.capacity;
        let lagged = |head: u64| Read::Lagged { next: head.min(LAST).saturating_sub(cap / 2).max(n + 1) };
        let at = self.geometry.at(n);
        let span = self.pinned.span();
        let (Ok(stamp), Ok(len)) = (span.view::<AtomicU64>(at), span.view::<AtomicU32>(at + 8)) else {
            return Err(corrupted("a slot outside the ring"));
        };
        let want = n.wrapping_mul(2).wrapping_add(2);
        // The slot's stamp says whether the message is there: the head
        // (a line every reader would pull at every message) is looked at
        // only when it is not.
        let mut before = stamp.load(Ordering::Acquire);
        if before != want {
            if before > want {
                return Ok(lagged(self.head()));
            }
            let head = self.head();
            if head <= n {
                return Ok(Read::Empty);
            }
            if head - n > cap {
                return Ok(lagged(head));
            }
            // Published meanwhile (the stamp goes before the head)?
            before = stamp.load(Ordering::Acquire);
            if before > want {
                return Ok(lagged(self.head()));
            }
            if before != want {
                return Err(corrupted("a slot older than the head"));
            }
        }
        let len = len.load(Ordering::Relaxed) as usize;
        let result = if len <= self.geometry.max { span.slice(at + SLOT_HEADER, len).ok().map(f) } else { None };
        fence(Ordering::Acquire);
        if stamp.load(Ordering::Relaxed) != before {
            return Ok(lagged(self.head()));
        }
        match result {
            Some(r) => Ok(Read::Message(r)),
            None => Err(corrupted("a message longer than the ring's slots")),
        }
    }
}

impl fmt::Debug for BroadcastReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastReader").field("geometry", &self.geometry).finish()
    }
}

fn corrupted(what: &str) -> Error {
    Error::Corrupted { what: what.to_owned() }
}

/// The size of a [`CursorCell`].
const CELL: usize = 4096;
const OFF_CURSOR: usize = 0;
const OFF_ASLEEP: usize = 64;
const OFF_START: usize = 128;
const OFF_NAPS: usize = 192;
/// The cell's `start` before the writer set it.
pub const NOT_STARTED: u64 = u64::MAX;

/// A reader's page, shared by the reader and the writer (see the
/// [module](self)): its cursor, whether it sleeps (and how many times it
/// went to sleep), where it starts.
#[derive(Clone)]
pub struct CursorCell {
    pinned: Pinned<Region, CELL>,
}

impl CursorCell {
    /// A new cell in a memfd labelled `label` (sealed against shrinking
    /// and growing), returned with it to hand over; not started.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the memfd cannot be made or mapped.
    pub fn create(label: &str) -> Result<(CursorCell, Memfd)> {
        let memfd = Memfd::create(label, CELL)?;
        memfd.seal_grow()?;
        let cell = CursorCell::open(&memfd)?;
        cell.pinned.at::<AtomicU64, OFF_START>().store(NOT_STARTED, Ordering::Relaxed);
        Ok((cell, memfd))
    }

    /// Maps a cell received from the other side.
    ///
    /// # Errors
    ///
    /// [`Error::LayoutMismatch`] for a memfd of another size;
    /// [`Error::Io`].
    pub fn open(memfd: &Memfd) -> Result<CursorCell> {
        if memfd.len() != CELL {
            return Err(Error::LayoutMismatch { reason: format!("a cursor cell of {} bytes", memfd.len()) });
        }
        let region =
            Region::map_fd(memfd.as_fd(), CELL, true, false).map_err(|e| Error::Io { op: "mmap", source: e })?;
        let pinned = Pinned::new(Arc::new(region), |r| r)
            .ok_or(Error::InvalidSize { size: CELL, reason: "a cursor cell is one page" })?;
        Ok(CursorCell { pinned })
    }

    /// The next message the reader will read, as it says.
    #[inline]
    pub fn cursor(&self) -> u64 {
        self.pinned.at::<AtomicU64, OFF_CURSOR>().load(Ordering::SeqCst)
    }

    /// Sets the cursor (the reader).
    #[inline]
    pub fn set_cursor(&self, n: u64) {
        self.pinned.at::<AtomicU64, OFF_CURSOR>().store(n, Ordering::SeqCst);
    }

    /// Whether the reader says it sleeps, or is about to.
    #[inline]
    pub fn asleep(&self) -> bool {
        self.pinned.at::<AtomicU32, OFF_ASLEEP>().load(Ordering::SeqCst) != 0
    }

    /// Says the reader sleeps or is about to (`true`), or is awake.
    #[inline]
    pub fn set_asleep(&self, asleep: bool) {
        self.pinned.at::<AtomicU32, OFF_ASLEEP>().store(u32::from(asleep), Ordering::SeqCst);
    }

    /// Counts one more time the reader went to sleep (the reader, before
    /// it says it sleeps): the writer wakes it once per such time.
    #[inline]
    pub fn nap(&self) {
        let n = self.pinned.at::<AtomicU64, OFF_NAPS>().load(Ordering::Relaxed);
        self.pinned.at::<AtomicU64, OFF_NAPS>().store(n.wrapping_add(1), Ordering::SeqCst);
    }

    /// How many times the reader says it went to sleep.
    #[inline]
    pub fn naps(&self) -> u64 {
        self.pinned.at::<AtomicU64, OFF_NAPS>().load(Ordering::SeqCst)
    }

    /// Takes the reader's word that it sleeps (the writer, about to wake
    /// it): whether it said so.
    #[inline]
    pub fn take_asleep(&self) -> bool {
        self.pinned.at::<AtomicU32, OFF_ASLEEP>().swap(0, Ordering::SeqCst) != 0
    }

    /// Where the reader starts, or [`NOT_STARTED`].
    #[inline]
    pub fn start(&self) -> u64 {
        self.pinned.at::<AtomicU64, OFF_START>().load(Ordering::Acquire)
    }

    /// Sets where the reader starts (the writer).
    #[inline]
    pub fn set_start(&self, n: u64) {
        self.pinned.at::<AtomicU64, OFF_START>().store(n, Ordering::Release);
    }
}

impl fmt::Debug for CursorCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CursorCell").field("cursor", &self.cursor()).field("start", &self.start()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(cap: usize, max: usize) -> (BroadcastWriter, BroadcastReader) {
        let w = BroadcastWriter::create("test-ring", cap, max).unwrap();
        let m = Memfd::from_fd(w.memfd().try_clone_fd().unwrap()).unwrap();
        let r = BroadcastReader::open(&m).unwrap();
        (w, r)
    }

    #[test]
    fn messages_read_back_and_overwritten_ones_are_lagged() {
        let (mut w, r) = pair(4, 100);
        assert_eq!(r.read_with(0, <[u8]>::to_vec).unwrap(), Read::Empty);
        for i in 0..6u8 {
            w.write(&[i; 3]).unwrap();
        }
        assert_eq!(r.head(), 6);
        assert_eq!(r.read_with(0, <[u8]>::to_vec).unwrap(), Read::Lagged { next: 4 });
        assert_eq!(r.read_with(2, <[u8]>::to_vec).unwrap(), Read::Message(vec![2; 3]));
        assert_eq!(r.read_with(5, <[u8]>::to_vec).unwrap(), Read::Message(vec![5; 3]));
        assert_eq!(r.read_with(6, <[u8]>::to_vec).unwrap(), Read::Empty);
        assert!(matches!(w.write(&[0; 101]), Err(Error::RecordTooLarge { len: 101, max: 100 })));
        // A loan stamps its slot: the message it overwrites is lost at once.
        w.loan()[0] = 9;
        assert_eq!(r.read_with(2, <[u8]>::to_vec).unwrap(), Read::Lagged { next: 4 });
        assert_eq!(w.commit(1).unwrap(), 6);
        assert_eq!(r.read_with(6, <[u8]>::to_vec).unwrap(), Read::Message(vec![9]));
        assert!(!r.closed());
        drop(w);
        assert!(r.closed());
    }

    #[test]
    fn the_ring_cannot_be_mapped_for_writing_by_whoever_receives_it() {
        let (w, _r) = pair(2, 8);
        let m = Memfd::from_fd(w.memfd().try_clone_fd().unwrap()).unwrap();
        assert!(m.map().is_err(), "a writable mapping of a sealed ring");
        assert!(BroadcastWriter::create("x", 3, 8).is_err());
        assert!(BroadcastWriter::create("x", 2, 0).is_err());
    }

    #[test]
    fn a_cell_starts_unset_and_is_shared() {
        let (cell, memfd) = CursorCell::create("cell").unwrap();
        let other = CursorCell::open(&memfd).unwrap();
        assert_eq!(other.start(), NOT_STARTED);
        cell.set_start(5);
        other.set_cursor(7);
        other.set_asleep(true);
        assert_eq!((other.start(), cell.cursor()), (5, 7));
        assert!(cell.take_asleep());
        assert!(!cell.take_asleep());
    }
}
