//! The receiving side of a byte channel.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ipc_sync::Deadline;

use super::layout::{DATA, RECORD_ALIGN, RECORD_HEADER, WRAP, max_record, padded, ring_pos};
use super::side::{Side, check_tail, side_methods};
use crate::error::{Error, Result};

/// The receiving side of a [`ByteChannel`](super::ByteChannel).
#[derive(Debug)]
pub struct ByteReceiver {
    side: Side,
    head: u64,
    tail: u64,
}

/// Where the next record is: its data's offset in the mapping, its length,
/// and the bytes it takes in the ring.
struct Found {
    offset: usize,
    len: usize,
    advance: u64,
}

impl ByteReceiver {
    pub(super) fn new(side: Side) -> Result<Self> {
        let (_, head) = side.initial_indices()?;
        Ok(ByteReceiver { side, head, tail: head })
    }

    #[inline]
    fn refresh_tail(&mut self) -> Result<()> {
        // Acquire: the sender's record writes happen before we read them.
        let tail = self.side.conn.tail().index.load(Ordering::Acquire);
        check_tail(&self.side.conn, tail, self.head, self.tail, self.side.capacity(), RECORD_ALIGN)?;
        self.tail = tail;
        Ok(())
    }

    /// The next record in a steady stream: one that starts where the
    /// receiver is, published by the sender's index as last read (or as
    /// read once more now), with a length that passes every check. Inlined
    /// whole, with nothing written. Anything else (nothing waiting, a wrap
    /// marker, a length to report as corrupt) goes to [`next`](Self::next).
    #[inline(always)]
    fn next_fast(&mut self) -> Result<Option<Found>> {
        if self.tail == self.head {
            // Acquire: the sender's record writes happen before we read them.
            let tail = self.side.conn.tail().index.load(Ordering::Acquire);
            if tail == self.head {
                return Ok(None);
            }
            check_tail(&self.side.conn, tail, self.head, self.tail, self.side.capacity(), RECORD_ALIGN)?;
            self.tail = tail;
        }
        let cap = self.side.capacity();
        let (avail, pos) = (self.tail - self.head, ring_pos(self.head, cap));
        let at = DATA + pos as usize;
        let mut header = [0u8; RECORD_HEADER as usize];
        if avail >= RECORD_HEADER && self.side.conn.region().copy_out(at, &mut header).is_ok() {
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let advance = padded(len as usize);
            if len != WRAP && len as usize <= max_record(cap) && advance <= cap - pos && advance <= avail {
                return Ok(Some(Found { offset: at + RECORD_HEADER as usize, len: len as usize, advance }));
            }
        }
        self.next()
    }

    /// The next complete record, if any, after skipping wrap markers.
    #[cold]
    #[inline(never)]
    fn next(&mut self) -> Result<Option<Found>> {
        let cap = self.side.capacity();
        loop {
            if self.tail == self.head {
                self.refresh_tail()?;
                if self.tail == self.head {
                    return Ok(None);
                }
            }
            let avail = self.tail - self.head;
            let pos = ring_pos(self.head, cap);
            let corrupt = |what: String| Err(Error::Corrupted { what });
            if avail < RECORD_HEADER {
                return corrupt(format!("{avail} bytes published: less than a record header"));
            }
            let mut len = [0u8; 4];
            let conn = &self.side.conn;
            let at = DATA + pos as usize;
            conn.region().copy_out(at, &mut len).map_err(|f| conn.fault(f, at, 4))?;
            let len = u32::from_le_bytes(len);
            if len == WRAP {
                let skip = cap - pos;
                if skip > avail {
                    return corrupt(format!("a wrap marker skips {skip} bytes; {avail} are published"));
                }
                self.head += skip;
                // Release: as when taking a record.
                self.side.conn.head().index.store(self.head, Ordering::Release);
                continue;
            }
            let len = len as usize;
            let advance = padded(len);
            if len > max_record(cap) || advance > cap - pos || advance > avail {
                return corrupt(format!(
                    "a record of {len} bytes at ring offset {pos}: {avail} bytes published, {} before the end",
                    cap - pos
                ));
            }
            return Ok(Some(Found { offset: DATA + (pos + RECORD_HEADER) as usize, len, advance }));
        }
    }

    #[inline]
    fn consume(&mut self, found: &Found) {
        self.head += found.advance;
        // Release: our reads of the record happen before the sender reuses
        // its bytes.
        self.side.publish_head(self.head);
    }

    /// Waits for the next record and calls `f` with its bytes, in place;
    /// the bytes are released to the sender when `f` returns.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when the sender is gone and everything it
    /// sent was received; [`Error::Corrupted`].
    #[inline]
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_with_until(Some(Deadline::never()), f)
    }

    /// Calls `f` with the next record if one is waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`], and as for [`recv_with`](Self::recv_with).
    #[inline]
    pub fn try_recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_with_until(None, f)
    }

    /// Like [`recv_with`](Self::recv_with), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`recv_with`](Self::recv_with).
    pub fn recv_with_timeout<R>(&mut self, timeout: Duration, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_with_until(Some(Deadline::after(timeout)), f)
    }

    #[inline(always)]
    fn recv_with_until<R>(&mut self, wait: Option<Deadline>, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let found = match self.next_fast()? {
            Some(found) => found,
            None => self.next_waiting(wait)?,
        };
        self.take(&found, f)
    }

    /// The next record when none was waiting: waits until the deadline in
    /// `wait` (`None`: not at all).
    #[cold]
    #[inline(never)]
    fn next_waiting(&mut self, wait: Option<Deadline>) -> Result<Found> {
        let Some(deadline) = wait else {
            if let Some(found) = self.next()? {
                return Ok(found);
            }
            return match self.side.peer_gone(false)? {
                // What it sent before going still counts.
                true => self.next()?.ok_or(Error::Disconnected),
                false => Err(Error::Empty),
            };
        };
        loop {
            let (head, tail) = (self.head, &mut self.tail);
            self.side.wait(deadline, |side| {
                let t = side.conn.tail().index.load(Ordering::Acquire);
                check_tail(&side.conn, t, head, *tail, side.capacity(), RECORD_ALIGN)?;
                *tail = t;
                Ok(records_waiting(side, head, t))
            })?;
            if let Some(found) = self.next()? {
                return Ok(found);
            }
        }
    }

    /// Calls `f` with the record `found`, in place, then releases it.
    #[inline(always)]
    fn take<R>(&mut self, found: &Found, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let conn = &self.side.conn;
        let bytes = conn.region().slice(found.offset, found.len).map_err(|f| conn.fault(f, found.offset, found.len))?;
        let r = f(bytes);
        // Pages of the record cut off from a shrunk object read as zeros:
        // what `f` saw was not the record.
        self.side.conn.faults()?;
        self.consume(found);
        Ok(r)
    }

    /// Receives a copy of the next record into `buf` (replacing its
    /// contents), waiting for it; returns its length.
    ///
    /// # Errors
    ///
    /// As for [`recv_with`](Self::recv_with).
    #[inline]
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.recv_with(|b| copy_into(buf, b))
    }

    /// Receives a copy of the next record if one is waiting.
    ///
    /// # Errors
    ///
    /// As for [`try_recv_with`](Self::try_recv_with).
    #[inline]
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.try_recv_with(|b| copy_into(buf, b))
    }

    /// Receives a copy of the next record, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`recv_with_timeout`](Self::recv_with_timeout).
    pub fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        self.recv_with_timeout(timeout, |b| copy_into(buf, b))
    }
}

/// Whether the bytes from `head` to `tail` hold no record (0), one (1) or
/// more (2), by the length of the first; for pacing the waits only, so
/// whatever a broken peer wrote there just gives some answer (`next`
/// checks the records it takes).
fn records_waiting(side: &Side, head: u64, tail: u64) -> u64 {
    if tail <= head {
        return 0;
    }
    let at = DATA + ring_pos(head, side.capacity()) as usize;
    let mut len = [0u8; 4];
    match side.conn.region().copy_out(at, &mut len).map(|()| u32::from_le_bytes(len)) {
        Ok(len) if len != WRAP && padded(len as usize) >= tail - head => 1,
        _ => 2,
    }
}

#[inline]
fn copy_into(buf: &mut Vec<u8>, bytes: &[u8]) -> usize {
    buf.clear();
    buf.extend_from_slice(bytes);
    bytes.len()
}

side_methods!(ByteReceiver, "records");
