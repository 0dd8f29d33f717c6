//! The receiving side of a slot channel.

use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use ipc_sync::Deadline;

#[cfg(doc)]
use super::layout::RUN;
use super::layout::{run_len, slot_offset};
use super::side::{Side, check_tail, side_methods};
use crate::error::{Error, Result};

/// The receiving side of a [`Channel`](super::Channel).
#[derive(Debug)]
pub struct Receiver<T> {
    side: Side,
    /// Our index: the next slot to read.
    head: u64,
    /// The sender's index as last read.
    tail: u64,
    _t: PhantomData<fn() -> T>,
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
        let tail = self.side.conn.tail().index.load(Ordering::Acquire);
        check_tail(&self.side.conn, tail, self.head, self.tail, self.side.capacity(), 1)?;
        self.tail = tail;
        Ok(tail - self.head)
    }

    /// A receive in a steady stream: when a message is waiting by the
    /// sender's index as last read, or as read once more now, copies it
    /// into `out` and frees its slot. Inlined whole, as
    /// [`Sender::send_fast`](super::Sender) is. `Ok(false)`: nothing was waiting, and the
    /// caller waits ([`recv_slow`](Self::recv_slow)).
    #[inline(always)]
    fn recv_fast(&mut self, out: &mut T) -> Result<bool> {
        if self.tail == self.head {
            if self.side.slipping() {
                // Streaming: the wait lets the sender get ahead first.
                return Ok(false);
            }
            // Acquire: the sender's slot writes happen before we read them.
            let tail = self.side.conn.tail().index.load(Ordering::Acquire);
            if tail == self.head {
                return Ok(false);
            }
            check_tail(&self.side.conn, tail, self.head, self.tail, self.side.capacity(), 1)?;
            self.tail = tail;
        }
        let (cap, slot) = (self.side.capacity(), size_of::<T>() as u64);
        self.side.conn.read_slot(slot_offset(self.head, cap, slot), bytemuck::bytes_of_mut(out))?;
        self.head += 1;
        // Release: our read of the slot happens before the sender reuses it.
        self.side.publish_head(self.head);
        Ok(true)
    }

    /// A receive that [`recv_fast`](Self::recv_fast) found nothing for:
    /// waits until `deadline` for a message, then takes it.
    #[cold]
    #[inline(never)]
    fn recv_slow(&mut self, out: &mut T, deadline: Deadline) -> Result<()> {
        loop {
            self.wait_for_data(deadline)?;
            if self.take(std::slice::from_mut(out))? == 1 {
                return Ok(());
            }
        }
    }

    /// Copies up to `out.len()` waiting messages out and frees their slots,
    /// one index update per run of slots (see [`RUN`]); returns how many.
    #[inline]
    fn take(&mut self, out: &mut [T]) -> Result<usize> {
        let n = out.len().min(self.available(out.len())? as usize);
        let (cap, slot) = (self.side.capacity(), size_of::<T>() as u64);
        let mut done = 0;
        while done < n {
            let k = (n - done).min(run_len(slot)).min((cap - (self.head & (cap - 1))) as usize);
            let run = bytemuck::cast_slice_mut(&mut out[done..done + k]);
            self.side.conn.read_slots(slot_offset(self.head, cap, slot), run, slot)?;
            self.head += k as u64;
            done += k;
            // Release: our reads of the slots happen before the sender
            // reuses them.
            self.side.publish_head(self.head);
        }
        Ok(n)
    }

    /// Receives a message, waiting for one.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when the sender is gone and everything it
    /// sent was received; [`Error::Corrupted`].
    #[inline]
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
    #[inline]
    pub fn recv_into(&mut self, out: &mut T) -> Result<()> {
        if self.recv_fast(out)? {
            return Ok(());
        }
        self.recv_slow(out, Deadline::never())
    }

    /// Receives a message if one is waiting.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`]; [`Error::Disconnected`]; [`Error::Corrupted`].
    #[inline]
    pub fn try_recv(&mut self) -> Result<T> {
        let mut v = [T::zeroed()];
        if self.recv_fast(&mut v[0])? {
            return Ok(v[0]);
        }
        self.try_recv_slow()
    }

    /// A [`try_recv`](Self::try_recv) that the fast path found nothing
    /// for. A slipping receiver's fast path does not read the sender's
    /// index once its cached messages run out (its waits do), and
    /// `try_recv` never waits: it reads the index here.
    #[cold]
    #[inline(never)]
    fn try_recv_slow(&mut self) -> Result<T> {
        let mut v = [T::zeroed()];
        if self.take(&mut v)? == 1 {
            return Ok(v[0]);
        }
        if self.side.peer_gone(false)? {
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

    #[inline(always)]
    fn recv_until(&mut self, deadline: Deadline) -> Result<T> {
        let mut v = T::zeroed();
        if !self.recv_fast(&mut v)? {
            self.recv_slow(&mut v, deadline)?;
        }
        Ok(v)
    }

    /// Receives up to `out.len()` messages, waiting for at least one;
    /// frees their slots with one index update per 16 KiB of messages (per
    /// message for larger ones). Returns how many.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    #[inline]
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
        let n = self.take(out)?;
        if n > 0 {
            return Ok(n);
        }
        match self.side.peer_gone(false)? {
            true => match self.take(out)? {
                0 => Err(Error::Disconnected),
                n => Ok(n),
            },
            false => Ok(0),
        }
    }

    fn wait_for_data(&mut self, deadline: Deadline) -> Result<()> {
        let (head, tail) = (self.head, &mut self.tail);
        self.side.wait(deadline, |side| {
            let t = side.conn.tail().index.load(Ordering::Acquire);
            check_tail(&side.conn, t, head, *tail, side.capacity(), 1)?;
            *tail = t;
            Ok((t - head).min(2))
        })
    }

    /// The capacity in messages.
    pub fn capacity(&self) -> usize {
        self.side.capacity() as usize
    }
}

side_methods!(Receiver<T>, "messages");
