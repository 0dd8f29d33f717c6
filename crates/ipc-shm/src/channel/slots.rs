//! The slot channel: [`Channel`], and the layout of its ring that both
//! sides use (`slot_sender` and `slot_receiver` hold the sides).

use std::marker::PhantomData;

use bytemuck::Pod;

use super::conn::{Backing, Conn, Handle, Spec};
use super::handoff::Handoff;
use super::layout::Role;
use super::side::Side;
pub use super::slot_receiver::Receiver;
pub use super::slot_sender::Sender;
use crate::Memfd;
#[cfg(doc)]
use crate::PosixShm;
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
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

    /// A channel in a new memfd, with a doorbell per side, for a process
    /// that does not inherit it by `fork`: [`handoff`](Self::handoff) gives
    /// the descriptors to hand over (to an exec'd program, or over a Unix
    /// socket), and that process opens it with
    /// [`from_handoff`](Self::from_handoff).
    ///
    /// # Errors
    ///
    /// As for [`anonymous`](Self::anonymous).
    pub fn new_memfd(capacity: usize) -> Result<Self> {
        Conn::create(Spec::slots::<T>()?, capacity, Backing::Memfd("ipc-kit-channel")).map(Self::with)
    }

    /// A channel under a new POSIX shared memory name (mode 0600); this
    /// process owns the name and unlinks it when its last handle to the
    /// channel goes. Peers [`open`](Self::open) it by name.
    ///
    /// Should a process shrink the object under connected sides, every
    /// later call of theirs, waiting or not, gives [`Error::Truncated`].
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

    /// Opens the channel handed over by the process that made it with
    /// [`new_memfd`](Self::new_memfd) (see [`Handoff`]).
    ///
    /// # Errors
    ///
    /// As for [`open`](Self::open); [`Error::LayoutMismatch`] also for a
    /// memfd of a channel made without doorbells.
    pub fn from_handoff(handoff: Handoff) -> Result<Self> {
        Conn::open_handoff(Spec::slots::<T>()?, handoff).map(Self::with)
    }

    /// What another process needs to open this channel, made with
    /// [`new_memfd`](Self::new_memfd) (or opened from a handoff): copies of
    /// its memfd and doorbells.
    ///
    /// # Errors
    ///
    /// [`Error::LayoutMismatch`] for a channel not in a memfd of its own
    /// (made for `fork`, or named); [`Error::Io`] when out of fds.
    pub fn handoff(&self) -> Result<Handoff> {
        self.conn.handoff()
    }

    /// The memfd behind the channel, when made with
    /// [`new_memfd`](Self::new_memfd) or opened with
    /// [`from_handoff`](Self::from_handoff).
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
