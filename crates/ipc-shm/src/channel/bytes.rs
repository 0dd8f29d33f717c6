use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ipc_sync::Deadline;

use super::layout::{DATA, HEAD, TAIL};
use super::{Backing, ChannelStats, Conn, Handle, Side, Spec, WaitPolicy, check_head, check_tail};
use crate::Memfd;
use crate::error::{Error, Result};

/// A record's header: its length (u32, little-endian), then 4 zero bytes.
const RECORD_HEADER: u64 = 8;

/// A length that means "nothing more before the end of the ring: go on at
/// its start".
const WRAP: u32 = u32::MAX;

/// Every record starts and ends on a multiple of this.
pub(super) const RECORD_ALIGN: u64 = 8;

#[inline]
fn padded(len: usize) -> u64 {
    RECORD_HEADER + (len as u64).div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

/// A channel of byte records in anonymous shared memory with a ring of
/// `capacity` bytes (a power of two, at least 64), for a parent and the
/// children it forks afterwards.
///
/// A record takes its length rounded up to 8, plus 8 bytes of header; one
/// that would cross the end of the ring starts again at its beginning. So
/// the longest record is half the capacity less 8 bytes (any record that
/// long always fits once the ring drains).
///
/// # Errors
///
/// [`Error::InvalidSize`] for a capacity that is not a power of two or is
/// below 64.
///
/// # Examples
///
/// ```
/// use ipc_shm::byte_channel;
///
/// let chan = byte_channel(1 << 16)?;
/// let (mut tx, mut rx) = (chan.sender()?, chan.receiver()?);
/// // Write in place, no copy: the record is published when the guard goes.
/// let mut r = tx.reserve(5)?;
/// r.as_mut_slice().copy_from_slice(b"hello");
/// r.commit();
/// tx.send(b"world")?;
/// // Read in place.
/// assert_eq!(rx.recv_with(|bytes| bytes.len())?, 5);
/// let mut buf = Vec::new();
/// rx.recv(&mut buf)?;
/// assert_eq!(buf, b"world");
/// # Ok::<(), ipc_shm::Error>(())
/// ```
pub fn byte_channel(capacity: usize) -> Result<ByteChannel> {
    ByteChannel::anonymous(capacity)
}

/// A channel of byte records in shared memory, before its sides are
/// claimed. See [`byte_channel`]. Clones refer to the same channel; each
/// may claim a side (see [`Channel`](super::Channel) on handles).
#[derive(Debug)]
pub struct ByteChannel {
    conn: Conn,
    handle: Handle,
}

impl ByteChannel {
    fn with(conn: Conn) -> Self {
        let handle = Handle::new(&conn);
        ByteChannel { conn, handle }
    }
}

impl Clone for ByteChannel {
    fn clone(&self) -> Self {
        ByteChannel::with(self.conn.clone())
    }
}

impl Drop for ByteChannel {
    fn drop(&mut self) {
        self.handle.drop_from(&self.conn);
    }
}

fn check_capacity(capacity: usize) -> Result<()> {
    if capacity < 64 {
        return Err(Error::InvalidSize { size: capacity, reason: "a byte channel needs at least 64 bytes" });
    }
    Ok(())
}

impl ByteChannel {
    /// In anonymous shared memory, for this process and the children it
    /// forks afterwards.
    ///
    /// # Errors
    ///
    /// As for [`byte_channel`].
    pub fn anonymous(capacity: usize) -> Result<Self> {
        check_capacity(capacity)?;
        Conn::create(Spec::bytes(), capacity, Backing::Anonymous).map(ByteChannel::with)
    }

    /// In a new memfd ([`memfd`](Self::memfd)), for an exec'd child that
    /// opens it with [`from_memfd`](Self::from_memfd).
    ///
    /// # Errors
    ///
    /// As for [`byte_channel`].
    pub fn new_memfd(capacity: usize) -> Result<Self> {
        check_capacity(capacity)?;
        Conn::create(Spec::bytes(), capacity, Backing::Memfd).map(ByteChannel::with)
    }

    /// Under a new POSIX shared memory name, owned (and unlinked when its
    /// last handle here goes) by this process.
    ///
    /// # Errors
    ///
    /// As for [`byte_channel`] and [`PosixShm::create`](crate::PosixShm::create).
    pub fn create(name: &str, capacity: usize) -> Result<Self> {
        check_capacity(capacity)?;
        Conn::create(Spec::bytes(), capacity, Backing::Named(name)).map(ByteChannel::with)
    }

    /// As [`create`](Self::create), taking over a stale channel under the
    /// name as [`Channel::create_or_reclaim`](crate::Channel::create_or_reclaim)
    /// does.
    ///
    /// # Errors
    ///
    /// As for [`Channel::create_or_reclaim`](crate::Channel::create_or_reclaim).
    pub fn create_or_reclaim(name: &str, capacity: usize) -> Result<Self> {
        check_capacity(capacity)?;
        Conn::create_or_reclaim(Spec::bytes(), capacity, name).map(ByteChannel::with)
    }

    /// Opens the byte channel another process created under `name`.
    ///
    /// # Errors
    ///
    /// [`Error::LayoutMismatch`] when it holds something else.
    pub fn open(name: &str) -> Result<Self> {
        Conn::open_named(Spec::bytes(), name).map(ByteChannel::with)
    }

    /// Opens the byte channel in a memfd received from another process.
    ///
    /// # Errors
    ///
    /// As for [`open`](Self::open).
    pub fn from_memfd(memfd: Memfd) -> Result<Self> {
        Conn::open_memfd(Spec::bytes(), memfd).map(ByteChannel::with)
    }

    /// The memfd behind the channel, if any.
    pub fn memfd(&self) -> Option<&Memfd> {
        self.conn.memfd()
    }

    /// Claims the sending side for this process.
    ///
    /// # Errors
    ///
    /// As for [`Channel::sender`](super::Channel::sender).
    pub fn sender(&self) -> Result<ByteSender> {
        let side = self.handle.claim(&self.conn, true)?;
        let (tail, head) = side.initial_indices()?;
        Ok(ByteSender { side, tail, head })
    }

    /// Claims the receiving side for this process.
    ///
    /// # Errors
    ///
    /// As for [`Channel::receiver`](super::Channel::receiver).
    pub fn receiver(&self) -> Result<ByteReceiver> {
        let side = self.handle.claim(&self.conn, false)?;
        let (_, head) = side.initial_indices()?;
        Ok(ByteReceiver { side, head, tail: head })
    }

    /// The ring's size in bytes.
    pub fn capacity(&self) -> usize {
        self.conn.header.capacity as usize
    }

    /// The longest record: half the capacity less the 8-byte header (and
    /// below 4 GiB).
    pub fn max_record(&self) -> usize {
        max_record(self.conn.header.capacity)
    }

    /// The shared memory under the channel, for inspection. Writing into it
    /// breaks the channel: the sides then report [`Error::Corrupted`] or
    /// carry wrong bytes.
    pub fn mapping(&self) -> &crate::Mapping {
        &self.conn.mem.map
    }
}

/// Where byte `index` of the stream sits in a ring of `cap` bytes, a power
/// of two (checked when the channel is made or opened).
#[inline]
fn ring_pos(index: u64, cap: u64) -> u64 {
    index & (cap - 1)
}

#[inline]
fn max_record(capacity: u64) -> usize {
    // Half the ring, and what a u32 length (below the wrap marker) can say.
    (capacity / 2 - RECORD_HEADER).min(u64::from(u32::MAX) - 16) as usize
}

/// The sending side of a [`ByteChannel`]. Dropping it closes the channel.
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
            return Err(if self.side.peer_gone(false) { Error::Disconnected } else { Error::Full });
        };
        let mut found = 0;
        let (mut head, tail) = (self.head, self.tail);
        self.side.wait(deadline, |side| {
            let cap = side.capacity();
            let h = side.conn.line(HEAD).index.load(Ordering::Acquire);
            check_head(&side.conn, h, head, tail)?;
            head = h;
            let pos = ring_pos(tail, cap);
            found = if need <= cap - pos { 0 } else { cap - pos };
            Ok(tail - h + found + need <= cap)
        })?;
        self.head = head;
        Ok(found)
    }

    fn refresh_head(&mut self) -> Result<()> {
        // Acquire: the receiver is done with the bytes it frees.
        let head = self.side.conn.line(HEAD).index.load(Ordering::Acquire);
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
    #[inline]
    fn publish(&mut self, skip: u64, len: usize) -> Result<()> {
        let cap = self.side.capacity();
        let conn = &self.side.conn;
        let mut copied = Ok(());
        if skip > 0 {
            let at = DATA + ring_pos(self.tail, cap) as usize;
            copied = conn.region().copy_in(at, &u64::from(WRAP).to_le_bytes()).map_err(|f| conn.fault(f, at, 8));
            self.tail += skip;
        }
        // The length, then 4 zero bytes, in one store.
        let at = DATA + ring_pos(self.tail, cap) as usize;
        let header = conn.region().copy_in(at, &(len as u64).to_le_bytes()).map_err(|f| conn.fault(f, at, 8));
        self.tail += padded(len);
        // Release: the record (and any wrap marker) happen before the
        // receiver sees the new index.
        self.side.publish(self.tail);
        copied.and(header)
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

    /// Chooses how to wait for room.
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.side.policy = policy;
    }

    /// The system calls this side has made.
    pub fn stats(&self) -> ChannelStats {
        self.side.stats
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

impl Drop for ByteSender {
    fn drop(&mut self) {
        self.side.close();
    }
}

/// The receiving side of a [`ByteChannel`].
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
    #[inline]
    fn refresh_tail(&mut self) -> Result<()> {
        // Acquire: the sender's record writes happen before we read them.
        let tail = self.side.conn.line(TAIL).index.load(Ordering::Acquire);
        check_tail(&self.side.conn, tail, self.head, self.tail, self.side.capacity(), RECORD_ALIGN)?;
        self.tail = tail;
        Ok(())
    }

    /// The next complete record, if any, after skipping wrap markers.
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
                self.side.conn.line(HEAD).index.store(self.head, Ordering::Release);
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
        self.side.publish(self.head);
    }

    /// Waits for the next record and calls `f` with its bytes, in place;
    /// the bytes are released to the sender when `f` returns.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when the sender is gone and everything it
    /// sent was received; [`Error::Corrupted`].
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_with_until(Some(Deadline::never()), f)
    }

    /// Calls `f` with the next record if one is waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`], and as for [`recv_with`](Self::recv_with).
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

    fn recv_with_until<R>(&mut self, wait: Option<Deadline>, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let found = loop {
            if let Some(found) = self.next()? {
                break found;
            }
            match wait {
                None if self.side.peer_gone(false) => match self.next()? {
                    Some(found) => break found,
                    None => return Err(Error::Disconnected),
                },
                None => return Err(Error::Empty),
                Some(deadline) => {
                    let (head, tail) = (self.head, &mut self.tail);
                    self.side.wait(deadline, |side| {
                        let t = side.conn.line(TAIL).index.load(Ordering::Acquire);
                        check_tail(&side.conn, t, head, *tail, side.capacity(), RECORD_ALIGN)?;
                        *tail = t;
                        Ok(t > head)
                    })?;
                }
            }
        };
        let conn = &self.side.conn;
        let bytes = conn.region().slice(found.offset, found.len).map_err(|f| conn.fault(f, found.offset, found.len))?;
        let r = f(bytes);
        // Pages of the record cut off from a shrunk object read as zeros:
        // what `f` saw was not the record.
        self.side.conn.faults()?;
        self.consume(&found);
        Ok(r)
    }

    /// Receives a copy of the next record into `buf` (replacing its
    /// contents), waiting for it; returns its length.
    ///
    /// # Errors
    ///
    /// As for [`recv_with`](Self::recv_with).
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.recv_with(|b| copy_into(buf, b))
    }

    /// Receives a copy of the next record if one is waiting.
    ///
    /// # Errors
    ///
    /// As for [`try_recv_with`](Self::try_recv_with).
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

    /// Chooses how to wait for records.
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.side.policy = policy;
    }

    /// The system calls this side has made.
    pub fn stats(&self) -> ChannelStats {
        self.side.stats
    }
}

#[inline]
fn copy_into(buf: &mut Vec<u8>, bytes: &[u8]) -> usize {
    buf.clear();
    buf.extend_from_slice(bytes);
    bytes.len()
}

impl Drop for ByteReceiver {
    fn drop(&mut self) {
        self.side.close();
    }
}
