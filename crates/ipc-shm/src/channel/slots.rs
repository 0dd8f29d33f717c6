use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use ipc_sync::Deadline;

use super::layout::{DATA, HEAD, TAIL};
use super::{Channel, ChannelStats, Side, WaitPolicy, check_head, check_tail};
use crate::error::{Error, Result};

/// A channel of `T` messages in anonymous shared memory with `capacity`
/// slots (a power of two), for a parent and the children it forks
/// afterwards: one process claims the [`Sender`], another the
/// [`Receiver`].
///
/// # Errors
///
/// [`Error::InvalidSize`] for a capacity that is not a power of two or a
/// zero-sized `T`; [`Error::Io`] when the memory cannot be mapped.
///
/// # Examples
///
/// ```
/// use ipc_shm::channel;
///
/// let chan = channel::<u64>(1024)?;
/// // After a fork, one process would claim each side.
/// let mut tx = chan.sender()?;
/// let mut rx = chan.receiver()?;
/// tx.send_many(&[1, 2, 3])?;
/// let mut got = [0; 8];
/// assert_eq!(rx.recv_many(&mut got)?, 3);
/// assert_eq!(&got[..3], &[1, 2, 3]);
/// drop(tx);
/// assert!(matches!(rx.recv(), Err(ipc_shm::Error::Disconnected)));
/// # Ok::<(), ipc_shm::Error>(())
/// ```
pub fn channel<T: Pod>(capacity: usize) -> Result<Channel<T>> {
    Channel::anonymous(capacity)
}

/// The sending side of a [`Channel`]. Dropping it closes the channel: the
/// receiver gets what was sent, then [`Error::Disconnected`].
#[derive(Debug)]
pub struct Sender<T> {
    side: Side,
    /// Our index: the next slot to write. Kept here, never read back from
    /// shared memory.
    tail: u64,
    /// The receiver's index as last read.
    head: u64,
    _t: PhantomData<fn(T)>,
}

/// The receiving side of a [`Channel`].
#[derive(Debug)]
pub struct Receiver<T> {
    side: Side,
    /// Our index: the next slot to read.
    head: u64,
    /// The sender's index as last read.
    tail: u64,
    _t: PhantomData<fn() -> T>,
}

#[inline]
fn slot_offset(index: u64, capacity: u64, slot: u64) -> usize {
    DATA + ((index & (capacity - 1)) * slot) as usize
}

impl<T: Pod> Sender<T> {
    pub(super) fn new(side: Side) -> Result<Self> {
        let (tail, head) = side.initial_indices()?;
        Ok(Sender { side, tail, head, _t: PhantomData })
    }

    /// Free slots, reading the receiver's index again when the cached one
    /// shows fewer than `want`.
    #[inline]
    fn free(&mut self, want: usize) -> Result<u64> {
        let cap = self.side.capacity();
        let cached = cap - (self.tail - self.head);
        if cached >= want as u64 {
            return Ok(cached);
        }
        // Acquire: the receiver's reads of the slots it frees happen before
        // we overwrite them.
        let head = self.side.conn.line(HEAD).index.load(Ordering::Acquire);
        check_head(&self.side.conn, head, self.head, self.tail)?;
        self.head = head;
        Ok(cap - (self.tail - head))
    }

    #[inline]
    fn receiver_closed(&mut self) -> bool {
        // The state flag only: a receiver that died without closing is
        // noticed when the ring fills and this side waits.
        self.side.peer_closed()
    }

    /// Writes `values` into free slots and publishes them with one index
    /// update; returns how many fit.
    #[inline]
    fn put(&mut self, values: &[T]) -> Result<usize> {
        let free = self.free(values.len())?;
        let n = values.len().min(free as usize);
        if n == 0 {
            return Ok(0);
        }
        let (cap, slot) = (self.side.capacity(), size_of::<T>() as u64);
        for (i, v) in values[..n].iter().enumerate() {
            self.side.conn.write_slot(slot_offset(self.tail + i as u64, cap, slot), bytemuck::bytes_of(v))?;
        }
        self.tail += n as u64;
        // Release: the slot contents happen before the receiver sees the
        // new index.
        self.side.publish(self.tail);
        Ok(n)
    }

    /// Sends a message, waiting while the channel is full.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when the receiver closed or died;
    /// [`Error::Corrupted`] when the receiver's index is impossible.
    pub fn send(&mut self, value: T) -> Result<()> {
        self.send_until(&value, Deadline::never())
    }

    /// Sends a copy of `*value`, waiting while the channel is full: for
    /// large messages, which it copies straight into the slot rather than
    /// through the stack.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub fn send_ref(&mut self, value: &T) -> Result<()> {
        self.send_until(value, Deadline::never())
    }

    /// Sends a message if there is room now.
    ///
    /// # Errors
    ///
    /// [`Error::Full`]; [`Error::Disconnected`]; [`Error::Corrupted`].
    pub fn try_send(&mut self, value: T) -> Result<()> {
        if self.receiver_closed() {
            return Err(Error::Disconnected);
        }
        match self.put(std::slice::from_ref(&value))? {
            // A full ring whose receiver died stays full: say so.
            0 if self.side.peer_gone(false) => Err(Error::Disconnected),
            0 => Err(Error::Full),
            _ => Ok(()),
        }
    }

    /// Sends a message, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`send`](Self::send).
    pub fn send_timeout(&mut self, value: T, timeout: Duration) -> Result<()> {
        self.send_until(&value, Deadline::after(timeout))
    }

    /// Sends a message, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As for [`send_timeout`](Self::send_timeout).
    pub fn send_deadline(&mut self, value: T, deadline: Instant) -> Result<()> {
        self.send_until(&value, Deadline::at(deadline))
    }

    #[inline]
    fn send_until(&mut self, value: &T, deadline: Deadline) -> Result<()> {
        if self.receiver_closed() {
            return Err(Error::Disconnected);
        }
        if self.put(std::slice::from_ref(value))? == 1 {
            return Ok(());
        }
        self.wait_for_room(deadline)?;
        self.put(std::slice::from_ref(value)).map(drop)
    }

    /// Sends all of `values`, publishing as many as fit at a time with one
    /// index update each, waiting for room as needed.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send); on an error, the messages before it were
    /// sent.
    pub fn send_many(&mut self, mut values: &[T]) -> Result<()> {
        while !values.is_empty() {
            if self.receiver_closed() {
                return Err(Error::Disconnected);
            }
            let n = self.put(values)?;
            values = &values[n..];
            if !values.is_empty() {
                self.wait_for_room(Deadline::never())?;
            }
        }
        Ok(())
    }

    /// Sends as many of `values` as fit now (one index update); returns how
    /// many.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`]; [`Error::Corrupted`].
    pub fn try_send_many(&mut self, values: &[T]) -> Result<usize> {
        if self.receiver_closed() {
            return Err(Error::Disconnected);
        }
        match self.put(values)? {
            0 if !values.is_empty() && self.side.peer_gone(false) => Err(Error::Disconnected),
            n => Ok(n),
        }
    }

    fn wait_for_room(&mut self, deadline: Deadline) -> Result<()> {
        let head = &mut self.head;
        let tail = self.tail;
        self.side.wait(deadline, |side| {
            let cap = side.capacity();
            let h = side.conn.line(HEAD).index.load(Ordering::Acquire);
            check_head(&side.conn, h, *head, tail)?;
            *head = h;
            Ok(tail - h < cap)
        })
    }

    /// Chooses how to wait for room.
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.side.policy = policy;
    }

    /// The system calls this side has made.
    pub fn stats(&self) -> ChannelStats {
        self.side.stats
    }

    /// The capacity in messages.
    pub fn capacity(&self) -> usize {
        self.side.capacity() as usize
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.side.close();
    }
}

impl<T: Pod> Receiver<T> {
    pub(super) fn new(side: Side) -> Result<Self> {
        let (_, head) = side.initial_indices()?;
        Ok(Receiver { side, head, tail: head, _t: PhantomData })
    }

    /// Messages waiting, reading the sender's index again when the cached
    /// one shows fewer than `want`.
    #[inline]
    fn available(&mut self, want: usize) -> Result<u64> {
        if self.tail - self.head >= want as u64 {
            return Ok(self.tail - self.head);
        }
        // Acquire: the sender's slot writes happen before we read them.
        let tail = self.side.conn.line(TAIL).index.load(Ordering::Acquire);
        check_tail(&self.side.conn, tail, self.head, self.tail, self.side.capacity(), 1)?;
        self.tail = tail;
        Ok(tail - self.head)
    }

    /// Copies up to `out.len()` waiting messages out and frees their slots
    /// with one index update; returns how many.
    #[inline]
    fn take(&mut self, out: &mut [T]) -> Result<usize> {
        let n = out.len().min(self.available(out.len())? as usize);
        if n == 0 {
            return Ok(0);
        }
        let (cap, slot) = (self.side.capacity(), size_of::<T>() as u64);
        for (i, v) in out[..n].iter_mut().enumerate() {
            self.side.conn.read_slot(slot_offset(self.head + i as u64, cap, slot), bytemuck::bytes_of_mut(v))?;
        }
        self.head += n as u64;
        // Release: our reads of the slots happen before the sender reuses
        // them.
        self.side.publish(self.head);
        Ok(n)
    }

    /// Receives a message, waiting for one.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when the sender is gone and everything it
    /// sent was received; [`Error::Corrupted`].
    pub fn recv(&mut self) -> Result<T> {
        self.recv_until(Deadline::never())
    }

    /// Receives a message into `*out`, waiting for one: for large
    /// messages, which it copies straight from the slot rather than
    /// through the stack.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    pub fn recv_into(&mut self, out: &mut T) -> Result<()> {
        self.recv_many(std::slice::from_mut(out)).map(drop)
    }

    /// Receives a message if one is waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`]; [`Error::Disconnected`]; [`Error::Corrupted`].
    pub fn try_recv(&mut self) -> Result<T> {
        let mut v = [T::zeroed()];
        if self.take(&mut v)? == 1 {
            return Ok(v[0]);
        }
        if self.side.peer_gone(false) {
            // What it sent before going still counts.
            return if self.take(&mut v)? == 1 { Ok(v[0]) } else { Err(Error::Disconnected) };
        }
        Err(Error::Empty)
    }

    /// Receives a message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`recv`](Self::recv).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
        self.recv_until(Deadline::after(timeout))
    }

    /// Receives a message, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As for [`recv_timeout`](Self::recv_timeout).
    pub fn recv_deadline(&mut self, deadline: Instant) -> Result<T> {
        self.recv_until(Deadline::at(deadline))
    }

    fn recv_until(&mut self, deadline: Deadline) -> Result<T> {
        let mut v = [T::zeroed()];
        loop {
            if self.take(&mut v)? == 1 {
                return Ok(v[0]);
            }
            self.wait_for_data(deadline)?;
        }
    }

    /// Receives up to `out.len()` messages, waiting for at least one;
    /// frees all their slots with one index update. Returns how many.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    pub fn recv_many(&mut self, out: &mut [T]) -> Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.take(out)? {
                0 => self.wait_for_data(Deadline::never())?,
                n => return Ok(n),
            }
        }
    }

    /// Receives the messages waiting now, up to `out.len()`; returns how
    /// many (0 when none).
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when none are waiting and the sender is
    /// gone; [`Error::Corrupted`].
    pub fn try_recv_many(&mut self, out: &mut [T]) -> Result<usize> {
        match self.take(out)? {
            0 if self.side.peer_gone(false) => match self.take(out)? {
                0 => Err(Error::Disconnected),
                n => Ok(n),
            },
            n => Ok(n),
        }
    }

    fn wait_for_data(&mut self, deadline: Deadline) -> Result<()> {
        let (head, tail) = (self.head, &mut self.tail);
        self.side.wait(deadline, |side| {
            let t = side.conn.line(TAIL).index.load(Ordering::Acquire);
            check_tail(&side.conn, t, head, *tail, side.capacity(), 1)?;
            *tail = t;
            Ok(t > head)
        })
    }

    /// Chooses how to wait for messages.
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.side.policy = policy;
    }

    /// The system calls this side has made.
    pub fn stats(&self) -> ChannelStats {
        self.side.stats
    }

    /// The capacity in messages.
    pub fn capacity(&self) -> usize {
        self.side.capacity() as usize
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.side.close();
    }
}
