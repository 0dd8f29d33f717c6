use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use ipc_sync::Deadline;

use super::conn::{Backing, Conn, Handle, Spec};
use super::layout::{DATA, Role};
use super::side::{Side, check_head, check_tail, side_methods};
use crate::Memfd;
#[cfg(doc)]
use crate::PosixShm;
use crate::error::{Error, Result};
use crate::mapping::Mapping;

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

/// A channel of `T` messages in shared memory, before its sides are
/// claimed. See [`channel`].
pub struct Channel<T> {
    conn: Conn,
    /// Whether a side was claimed through this handle (see [`Handle`]).
    handle: Handle,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> Channel<T> {
    fn with(conn: Conn) -> Self {
        let handle = Handle::new(&conn);
        Channel { conn, handle, _t: PhantomData }
    }

    /// A channel of `capacity` slots (a power of two) in anonymous shared
    /// memory, for this process and the children it forks afterwards.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`] for a capacity that is not a power of two, or
    /// a zero-sized `T`.
    pub fn anonymous(capacity: usize) -> Result<Self> {
        Conn::create(Spec::slots::<T>()?, capacity, Backing::Anonymous).map(Self::with)
    }

    /// A channel in a new memfd, whose fd ([`memfd`](Self::memfd)) can be
    /// handed to an exec'd child, which opens it with
    /// [`from_memfd`](Self::from_memfd).
    ///
    /// # Errors
    ///
    /// As for [`anonymous`](Self::anonymous).
    pub fn new_memfd(capacity: usize) -> Result<Self> {
        Conn::create(Spec::slots::<T>()?, capacity, Backing::Memfd).map(Self::with)
    }

    /// A channel under a new POSIX shared memory name (mode 0600); this
    /// process owns the name and unlinks it when its last handle to the
    /// channel goes. Peers [`open`](Self::open) it by name.
    ///
    /// # Errors
    ///
    /// As for [`anonymous`](Self::anonymous), and as for
    /// [`PosixShm::create`].
    pub fn create(name: &str, capacity: usize) -> Result<Self> {
        Conn::create(Spec::slots::<T>()?, capacity, Backing::Named(name)).map(Self::with)
    }

    /// As [`create`](Self::create), but when the name holds a stale channel
    /// (one no process holds any more: its processes were killed before
    /// they could unlink it, or its creation was interrupted) that one is
    /// unlinked and a new one made. Every process that creates or opens a
    /// named channel holds a shared `flock` on its object for as long as it
    /// has a handle, side or child made with `fork` using it; the kernel
    /// drops the lock when the process dies, so a name no one holds is
    /// safe to take over.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] when a live process holds the channel there;
    /// [`Error::LayoutMismatch`] when the name holds something other than a
    /// channel (left alone); as for [`create`](Self::create).
    pub fn create_or_reclaim(name: &str, capacity: usize) -> Result<Self> {
        Conn::create_or_reclaim(Spec::slots::<T>()?, capacity, name).map(Self::with)
    }

    /// Opens the channel another process created under `name`.
    ///
    /// # Errors
    ///
    /// [`Error::LayoutMismatch`] when it is not a channel of `T` (another
    /// message type, a byte channel, foreign data); as for
    /// [`PosixShm::open`].
    pub fn open(name: &str) -> Result<Self> {
        Conn::open_named(Spec::slots::<T>()?, name).map(Self::with)
    }

    /// Opens the channel in a memfd received from another process.
    ///
    /// # Errors
    ///
    /// As for [`open`](Self::open).
    pub fn from_memfd(memfd: Memfd) -> Result<Self> {
        Conn::open_memfd(Spec::slots::<T>()?, memfd).map(Self::with)
    }

    /// The memfd behind the channel, when made with
    /// [`new_memfd`](Self::new_memfd) or [`from_memfd`](Self::from_memfd).
    pub fn memfd(&self) -> Option<&Memfd> {
        self.conn.memfd()
    }

    /// Claims the sending side for this process.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyConnected`] when it was claimed before;
    /// [`Error::SideGivenUp`] in a child forked after its parent claimed
    /// the receiver; [`Error::Corrupted`] for impossible indices.
    pub fn sender(&self) -> Result<Sender<T>> {
        Side::claim(&self.conn, &self.handle, Role::Sender).and_then(Sender::new)
    }

    /// Claims the receiving side for this process.
    ///
    /// # Errors
    ///
    /// As for [`sender`](Self::sender), with the sides swapped.
    pub fn receiver(&self) -> Result<Receiver<T>> {
        Side::claim(&self.conn, &self.handle, Role::Receiver).and_then(Receiver::new)
    }

    /// The capacity in messages.
    pub fn capacity(&self) -> usize {
        self.conn.header.capacity as usize
    }

    /// A channel in loom's model of shared memory, for `cargo xtask loom`.
    ///
    /// # Panics
    ///
    /// For a zero-sized `T`.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn model(capacity: usize) -> Self {
        Self::with(Conn::model(Spec::slots::<T>().expect("a sized message type"), capacity))
    }

    /// The shared memory under the channel (header, indices and ring), for
    /// inspection. Writing into it breaks the channel: the sides then
    /// report [`Error::Corrupted`] or carry wrong bytes.
    pub fn mapping(&self) -> &Mapping {
        &self.conn.mem.map
    }
}

impl<T: Pod> Clone for Channel<T> {
    /// Another handle to the same channel, through which a side can be
    /// claimed (in this process, or in a child forked later).
    fn clone(&self) -> Self {
        Channel::with(self.conn.clone())
    }
}

impl<T> Drop for Channel<T> {
    fn drop(&mut self) {
        self.handle.drop_from(&self.conn);
    }
}

impl<T> std::fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("type", &std::any::type_name::<T>())
            .field("capacity", &self.conn.header.capacity)
            .finish()
    }
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

/// The room a sender that found its ring full waits for, for a while,
/// before it writes again: slots (or bytes, for the byte channel) ahead of
/// the receiver. The slots right behind a receiver that keeps up hold the
/// cache lines it is reading; a sender that wrote into each as soon as it
/// was freed would take those lines from under it, message by message.
pub(super) const LEAD: u64 = 32;

/// The looks at the receiver's index for which a waiting sender holds out
/// for its lead (see [`LEAD`]); then any room will do.
pub(super) const LEAD_LOOKS: u32 = 32;

/// What a waiting sender finds with `free` slots (or bytes) free, holding
/// out for `lead` of them for [`LEAD_LOOKS`] looks: 0 while it waits on,
/// 1 for a little room, 2 for its lead (see `Side::wait`).
#[inline]
pub(super) fn room(free: u64, lead: u64, looks: u32) -> u64 {
    if free >= lead {
        2
    } else if free > 0 && looks > LEAD_LOOKS {
        1
    } else {
        0
    }
}

/// The bytes of a run of slots that the batch forms copy and then publish
/// (or free) with one index update: a batch of small messages in one, and
/// large ones a few at a time, so that the peer can work on the first
/// while the rest are copied (a peer kept waiting long enough goes to
/// sleep, and must then be woken). At least one slot.
pub(super) const RUN: u64 = 16 << 10;

/// The slots in a run of slots of `slot` bytes.
#[inline]
fn run_len(slot: u64) -> usize {
    (RUN / slot).max(1) as usize
}

#[inline]
fn slot_offset(index: u64, capacity: u64, slot: u64) -> usize {
    DATA + ((index & (capacity - 1)) * slot) as usize
}

impl<T: Pod> Sender<T> {
    fn new(side: Side) -> Result<Self> {
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
        match self.put(std::slice::from_ref(value))? {
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
        match self.put(values)? {
            0 if !values.is_empty() && self.side.peer_gone(false) => Err(Error::Disconnected),
            n => Ok(n),
        }
    }

    /// The room a waiting sender holds out for before it writes `want`
    /// messages: [`LEAD`] slots, or `want` when more, at most an eighth of
    /// the ring, at least one.
    fn lead(&self, want: usize) -> u64 {
        (self.side.capacity() / 8).clamp(1, LEAD.max(want as u64))
    }

    /// Waits until `deadline` for room: for `lead` free slots at first,
    /// then for any (see [`room`]).
    fn wait_for_room(&mut self, deadline: Deadline, lead: u64) -> Result<()> {
        let head = &mut self.head;
        let tail = self.tail;
        let mut looks = 0;
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

impl<T: Pod> Receiver<T> {
    fn new(side: Side) -> Result<Self> {
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
    /// [`Sender::send_fast`] is. `Ok(false)`: nothing was waiting, and the
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{LEAD_LOOKS, room};

    #[test]
    fn a_waiting_sender_holds_out_for_its_lead_then_takes_any_room() {
        // The lead at once, whatever the looks.
        assert_eq!(room(32, 32, 1), 2);
        assert_eq!(room(1000, 32, LEAD_LOOKS + 5), 2);
        // Less than the lead: on for LEAD_LOOKS looks, then taken.
        for looks in 1..=LEAD_LOOKS {
            assert_eq!(room(31, 32, looks), 0, "look {looks}");
        }
        assert_eq!(room(31, 32, LEAD_LOOKS + 1), 1);
        assert_eq!(room(1, 32, LEAD_LOOKS + 1), 1);
        // No room is never taken.
        assert_eq!(room(0, 32, u32::MAX), 0);
        // A lead of one slot is any room.
        assert_eq!(room(1, 1, 1), 2);
    }
}
