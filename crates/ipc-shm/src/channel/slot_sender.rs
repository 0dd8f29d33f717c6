//! The sending side of a slot channel.

use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use ipc_sync::Deadline;

#[cfg(doc)]
use super::layout::RUN;
use super::layout::{run_len, slot_offset};
use super::pace::{LEAD, looks_before, room};
use super::side::{Side, check_head, side_methods};
use crate::error::{Error, Result};

/// The sending side of a [`Channel`](super::Channel). Dropping it closes the channel: the
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
        let head = self.side.conn.head().index.load(Ordering::Acquire);
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

    /// A send in a steady stream: when the receiver has not closed and
    /// the receiver's index as last read shows room, writes `value` into
    /// the next slot and publishes it. Inlined into the caller whole, with
    /// no call and no store but the slot, our index and the published one:
    /// stores queue behind the cache line the receiver last took, so each
    /// one more holds the sender up. `Ok(false)`: nothing was done, and
    /// the caller goes the slow way ([`send_slow`](Self::send_slow)).
    #[inline(always)]
    fn send_fast(&mut self, value: &T) -> Result<bool> {
        let cap = self.side.capacity();
        if self.tail - self.head >= cap || self.side.peer_closed() {
            return Ok(false);
        }
        self.side.conn.write_slot(slot_offset(self.tail, cap, size_of::<T>() as u64), bytemuck::bytes_of(value))?;
        self.tail += 1;
        // Release: the slot contents happen before the receiver sees the
        // new index.
        self.side.publish_tail(self.tail);
        Ok(true)
    }

    /// A send that [`send_fast`](Self::send_fast) could not make: the
    /// receiver closed, or its index must be read again, or the ring is
    /// full and this side waits until `deadline`.
    #[cold]
    #[inline(never)]
    fn send_slow(&mut self, value: &T, deadline: Deadline) -> Result<()> {
        if self.receiver_closed() {
            return Err(Error::Disconnected);
        }
        if self.put(std::slice::from_ref(value))? == 1 {
            return Ok(());
        }
        self.wait_for_room(deadline, self.lead(1))?;
        self.put(std::slice::from_ref(value)).map(drop)
    }

    /// Writes `values` into free slots and publishes them, one index
    /// update per run of slots (see [`RUN`]); returns how many fit.
    #[inline]
    fn put(&mut self, values: &[T]) -> Result<usize> {
        let free = self.free(values.len())?;
        let n = values.len().min(free as usize);
        let (cap, slot) = (self.side.capacity(), size_of::<T>() as u64);
        let mut done = 0;
        while done < n {
            // A run ends at the end of the ring, and after RUN bytes.
            let k = (n - done).min(run_len(slot)).min((cap - (self.tail & (cap - 1))) as usize);
            let run = bytemuck::cast_slice(&values[done..done + k]);
            self.side.conn.write_slots(slot_offset(self.tail, cap, slot), run, slot)?;
            self.tail += k as u64;
            done += k;
            // Release: the slot contents happen before the receiver sees
            // the new index.
            self.side.publish_tail(self.tail);
        }
        Ok(n)
    }

    /// Sends a message, waiting while the channel is full.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when the receiver closed or died;
    /// [`Error::Corrupted`] when the receiver's index is impossible.
    #[inline]
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
    #[inline]
    pub fn send_ref(&mut self, value: &T) -> Result<()> {
        self.send_until(value, Deadline::never())
    }

    /// Sends a message if there is room now.
    ///
    /// # Errors
    ///
    /// [`Error::Full`]; [`Error::Disconnected`]; [`Error::Corrupted`].
    #[inline]
    pub fn try_send(&mut self, value: T) -> Result<()> {
        if self.send_fast(&value)? {
            return Ok(());
        }
        self.try_send_slow(&value)
    }

    #[cold]
    #[inline(never)]
    fn try_send_slow(&mut self, value: &T) -> Result<()> {
        if self.receiver_closed() {
            return Err(Error::Disconnected);
        }
        if self.put(std::slice::from_ref(value))? == 1 {
            return Ok(());
        }
        // A full ring whose receiver died stays full: say so.
        Err(if self.side.peer_gone(false)? { Error::Disconnected } else { Error::Full })
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

    #[inline(always)]
    fn send_until(&mut self, value: &T, deadline: Deadline) -> Result<()> {
        if self.send_fast(value)? {
            return Ok(());
        }
        self.send_slow(value, deadline)
    }

    /// Sends all of `values`, as many as fit at a time, waiting for room as
    /// needed; publishes them with one index update per 16 KiB of
    /// messages (per message for larger ones).
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send); on an error, the messages before it were
    /// sent.
    #[inline]
    pub fn send_many(&mut self, mut values: &[T]) -> Result<()> {
        while !values.is_empty() {
            if self.receiver_closed() {
                return Err(Error::Disconnected);
            }
            // Room for the batch, or a lead (see `LEAD`) of a batch, before
            // writing any of it.
            let lead = self.lead(values.len());
            if self.free(lead as usize)? < lead.min(values.len() as u64) {
                self.wait_for_room(Deadline::never(), lead)?;
            }
            let n = self.put(values)?;
            values = &values[n..];
        }
        Ok(())
    }

    /// Sends as many of `values` as fit now (one index update per 16 KiB of
    /// messages); returns how many.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`]; [`Error::Corrupted`].
    pub fn try_send_many(&mut self, values: &[T]) -> Result<usize> {
        if self.receiver_closed() {
            return Err(Error::Disconnected);
        }
        let n = self.put(values)?;
        // A full ring whose receiver died stays full: say so (as `try_send`).
        if n == 0 && !values.is_empty() && self.side.peer_gone(false)? {
            return Err(Error::Disconnected);
        }
        Ok(n)
    }

    /// The room a waiting sender holds out for before it writes `want`
    /// messages: [`LEAD`] slots, or `want` when more, at most an eighth of
    /// the ring, at least one.
    fn lead(&self, want: usize) -> u64 {
        (self.side.capacity() / 8).clamp(1, LEAD.max(want as u64))
    }

    /// Waits until `deadline` for room: for `lead` free slots at first,
    /// then for any (see [`room`]; a sender that sleeps at once takes any
    /// room at once, see [`looks_before`]).
    fn wait_for_room(&mut self, deadline: Deadline, lead: u64) -> Result<()> {
        let head = &mut self.head;
        let tail = self.tail;
        let mut looks = looks_before(self.side.policy);
        self.side.wait(deadline, |side| {
            let cap = side.capacity();
            let h = side.conn.head().index.load(Ordering::Acquire);
            check_head(&side.conn, h, *head, tail)?;
            *head = h;
            looks += 1;
            Ok(room(cap - (tail - h), lead, looks))
        })
    }

    /// The capacity in messages.
    pub fn capacity(&self) -> usize {
        self.side.capacity() as usize
    }
}

side_methods!(Sender<T>, "room");
