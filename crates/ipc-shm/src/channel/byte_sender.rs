//! The sending side of a byte channel, and its reservations: room for a
//! record written in place.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ipc_sync::Deadline;

use super::layout::{DATA, RECORD_HEADER, WRAP, max_record, padded, ring_pos};
use super::pace::{LEAD, looks_before, room};
use super::side::{Side, check_head, side_methods};
use crate::error::{Error, Result};
use crate::sys::Fault;

/// The sending side of a [`ByteChannel`](super::ByteChannel). Dropping it
/// closes the channel.
#[derive(Debug)]
pub struct ByteSender {
    side: Side,
    tail: u64,
    head: u64,
}

/// Space reserved in the ring for one record, written in place through
/// [`as_mut_slice`](Self::as_mut_slice). It is published when committed,
/// explicitly or by being dropped.
#[derive(Debug)]
pub struct Reservation<'a> {
    sender: &'a mut ByteSender,
    /// Bytes to skip (to the start of the ring) before the record.
    skip: u64,
    len: usize,
}

impl ByteSender {
    pub(super) fn new(side: Side) -> Result<Self> {
        let (tail, head) = side.initial_indices()?;
        Ok(ByteSender { side, tail, head })
    }

    /// The bytes to skip (to the start of the ring) before a record that
    /// needs `need` bytes, if it fits in front of the receiver's index as
    /// last seen.
    #[inline]
    fn fits(&self, need: u64) -> Option<u64> {
        let cap = self.side.capacity();
        let pos = ring_pos(self.tail, cap);
        let skip = if need <= cap - pos { 0 } else { cap - pos };
        (self.tail - self.head + skip + need <= cap).then_some(skip)
    }

    /// Room for a record of `len` bytes: the bytes to skip before it.
    ///
    /// Inlined, and returning a plain number, so that the common case (a
    /// fitting record, a connected peer) keeps to registers: a result
    /// passed through memory can stall the load that reads it back until
    /// every earlier store (the previous record, on cache lines the
    /// receiver is reading) has left the store buffer.
    #[inline]
    fn room(&mut self, len: usize, wait: Option<Deadline>) -> Result<u64> {
        if len <= max_record(self.side.capacity())
            && !self.side.peer_closed()
            && let Some(skip) = self.fits(padded(len))
        {
            return Ok(skip);
        }
        self.room_slow(len, wait)
    }

    /// [`room`](Self::room) when the record is too large, the peer has
    /// closed, or the ring looks full: the checks, then the receiver's
    /// index read again, then waiting as `wait` says (`None`: not at all).
    #[cold]
    #[inline(never)]
    fn room_slow(&mut self, len: usize, wait: Option<Deadline>) -> Result<u64> {
        let max = max_record(self.side.capacity());
        if len > max {
            return Err(Error::RecordTooLarge { len, max });
        }
        if self.side.peer_closed() {
            return Err(Error::Disconnected);
        }
        let need = padded(len);
        self.refresh_head()?;
        if let Some(skip) = self.fits(need) {
            return Ok(skip);
        }
        let Some(deadline) = wait else {
            // A full ring whose receiver died stays full: say so.
            if self.side.peer_gone(false)? {
                return Err(Error::Disconnected);
            }
            // A poller reports the sender writable when this record fits.
            self.side.wants(len);
            return Err(Error::Full);
        };
        let mut found = 0;
        let (mut head, tail) = (self.head, self.tail);
        // The lead (see `pace::LEAD`) in bytes: as many 64-byte records.
        let lead = (self.side.capacity() / 8).min(LEAD * 64);
        let mut looks = looks_before(self.side.policy);
        self.side.wait(deadline, |side| {
            let cap = side.capacity();
            let h = side.conn.head().index.load(Ordering::Acquire);
            check_head(&side.conn, h, head, tail)?;
            head = h;
            let pos = ring_pos(tail, cap);
            found = if need <= cap - pos { 0 } else { cap - pos };
            looks += 1;
            // The room beyond this record's: 0 when even it does not fit.
            let free = (cap - (tail - h)).checked_sub(found + need).map_or(0, |beyond| beyond + 1);
            Ok(room(free, lead + 1, looks))
        })?;
        self.head = head;
        Ok(found)
    }

    fn refresh_head(&mut self) -> Result<()> {
        // Acquire: the receiver is done with the bytes it frees.
        let head = self.side.conn.head().index.load(Ordering::Acquire);
        check_head(&self.side.conn, head, self.head, self.tail)?;
        self.head = head;
        Ok(())
    }

    /// Where the data of the record after `skip` bytes goes, in the mapping.
    #[inline]
    fn data_offset(&self, skip: u64) -> usize {
        DATA + (ring_pos(self.tail + skip, self.side.capacity()) + RECORD_HEADER) as usize
    }

    /// The place for a record of `len` bytes after `skip` (from
    /// [`room`](Self::room)), to write into.
    #[inline]
    fn record_mut(&mut self, skip: u64, len: usize) -> &mut [u8] {
        let offset = self.data_offset(skip);
        // In bounds: `room` put the whole record before the end of the
        // ring. The region check fails only if that were broken.
        self.side.conn.region().slice_mut(offset, len).unwrap_or_default()
    }

    /// Publishes the record of `len` bytes written after `skip`: the wrap
    /// marker if any, the header, then the index. `Truncated` when the
    /// object was shrunk under the record (it is published anyway: the
    /// mapping is of no more use, and every later call says so).
    #[inline(always)]
    fn publish(&mut self, skip: u64, len: usize) -> Result<()> {
        let wrap = if skip > 0 { self.mark_wrap(skip) } else { Ok(()) };
        // The length, then 4 zero bytes, in one store.
        let at = DATA + ring_pos(self.tail, self.side.capacity()) as usize;
        let header = self.side.conn.region().copy_in(at, &(len as u64).to_le_bytes());
        self.tail += padded(len);
        self.side.sent();
        // Release: the record (and any wrap marker) happen before the
        // receiver sees the new index.
        self.side.publish_tail(self.tail);
        match (wrap, header) {
            (Ok(()), Ok(())) => Ok(()),
            (Err((fault, at)), _) => Err(self.side.conn.fault(fault, at, 8)),
            (Ok(()), Err(fault)) => Err(self.side.conn.fault(fault, at, 8)),
        }
    }

    /// Writes the wrap marker where the sender is and moves it `skip` bytes
    /// on, to the start of the ring; the fault and its offset if the
    /// marker could not be written whole.
    #[cold]
    #[inline(never)]
    fn mark_wrap(&mut self, skip: u64) -> std::result::Result<(), (Fault, usize)> {
        let at = DATA + ring_pos(self.tail, self.side.capacity()) as usize;
        self.tail += skip;
        self.side.conn.region().copy_in(at, &u64::from(WRAP).to_le_bytes()).map_err(|f| (f, at))
    }

    #[inline(always)]
    fn send_until(&mut self, record: &[u8], wait: Option<Deadline>) -> Result<()> {
        let skip = self.room(record.len(), wait)?;
        self.record_mut(skip, record.len()).copy_from_slice(record);
        self.publish(skip, record.len())
    }

    fn reserve_until(&mut self, len: usize, wait: Option<Deadline>) -> Result<Reservation<'_>> {
        let skip = self.room(len, wait)?;
        Ok(Reservation { sender: self, skip, len })
    }

    /// Reserves room for a record of `len` bytes, waiting for it.
    ///
    /// # Errors
    ///
    /// [`Error::RecordTooLarge`] (before anything is written);
    /// [`Error::Disconnected`]; [`Error::Corrupted`].
    pub fn reserve(&mut self, len: usize) -> Result<Reservation<'_>> {
        self.reserve_until(len, Some(Deadline::never()))
    }

    /// Reserves room if there is some now.
    ///
    /// # Errors
    ///
    /// [`Error::Full`], and as for [`reserve`](Self::reserve).
    pub fn try_reserve(&mut self, len: usize) -> Result<Reservation<'_>> {
        self.reserve_until(len, None)
    }

    /// Reserves room, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`reserve`](Self::reserve).
    pub fn reserve_timeout(&mut self, len: usize, timeout: Duration) -> Result<Reservation<'_>> {
        self.reserve_until(len, Some(Deadline::after(timeout)))
    }

    /// Sends a copy of `record`, waiting for room.
    ///
    /// # Errors
    ///
    /// As for [`reserve`](Self::reserve).
    #[inline]
    pub fn send(&mut self, record: &[u8]) -> Result<()> {
        self.send_until(record, Some(Deadline::never()))
    }

    /// Sends a copy of `record` if there is room now.
    ///
    /// # Errors
    ///
    /// As for [`try_reserve`](Self::try_reserve).
    #[inline]
    pub fn try_send(&mut self, record: &[u8]) -> Result<()> {
        self.send_until(record, None)
    }

    /// Sends a copy of `record`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As for [`reserve_timeout`](Self::reserve_timeout).
    pub fn send_timeout(&mut self, record: &[u8], timeout: Duration) -> Result<()> {
        self.send_until(record, Some(Deadline::after(timeout)))
    }

    /// Sends a copy of `record`, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As for [`reserve_timeout`](Self::reserve_timeout).
    pub fn send_deadline(&mut self, record: &[u8], deadline: Instant) -> Result<()> {
        self.send_until(record, Some(Deadline::at(deadline)))
    }

    /// The longest record this channel takes.
    pub fn max_record(&self) -> usize {
        max_record(self.side.capacity())
    }
}

impl Reservation<'_> {
    /// The reserved bytes, to write the record into. They start zeroed or
    /// hold old data: write all of them.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.sender.record_mut(self.skip, self.len)
    }

    /// The record's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the record is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Publishes the record.
    pub fn commit(self) {
        // Drop does it.
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        // A shrunk object is reported by the sender's next call: the mark
        // on its mapping stays.
        let _ = self.sender.publish(self.skip, self.len);
    }
}

side_methods!(ByteSender, "room");
