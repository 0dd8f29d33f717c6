//! The byte channel's handle, [`ByteChannel`], from which its sides are
//! claimed: [`ByteSender`] and [`ByteReceiver`].

use super::byte_receiver::ByteReceiver;
use super::byte_sender::ByteSender;
use super::conn::{Backing, Conn, Handle, Spec};
use super::handoff::Handoff;
use super::layout::{Role, max_record};
use super::side::Side;
use crate::Memfd;
use crate::error::{Error, Result};

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
/// may claim a side (see [`Channel`](crate::Channel) on handles).
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

    /// In a new memfd, with a doorbell per side, for a process that does
    /// not inherit it by `fork`: see [`Channel::new_memfd`](crate::Channel::new_memfd)
    /// ([`handoff`](Self::handoff), [`from_handoff`](Self::from_handoff)).
    ///
    /// # Errors
    ///
    /// As for [`byte_channel`].
    pub fn new_memfd(capacity: usize) -> Result<Self> {
        Self::new_memfd_labelled(capacity, "ipc-kit-channel")
    }

    /// As [`new_memfd`](Self::new_memfd), with the memfd's name (its
    /// label, seen as `/memfd:LABEL` in `/proc/PID/fd` of every process
    /// that holds it; no object is named by it) set to `label`, so that
    /// tools can tell what the channel is for.
    ///
    /// # Errors
    ///
    /// As for [`byte_channel`]; [`Error::InvalidName`] for a label over
    /// 249 bytes or with a NUL byte.
    pub fn new_memfd_labelled(capacity: usize, label: &str) -> Result<Self> {
        check_capacity(capacity)?;
        Conn::create(Spec::bytes(), capacity, Backing::Memfd(label)).map(ByteChannel::with)
    }

    /// Under a new POSIX shared memory name, owned (and unlinked when its
    /// last handle here goes) by this process.
    ///
    /// Should a process shrink the object under connected sides, every
    /// later call of theirs, waiting or not, gives [`Error::Truncated`].
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

    /// Opens the byte channel handed over by the process that made it
    /// with [`new_memfd`](Self::new_memfd) (see [`Handoff`]).
    ///
    /// # Errors
    ///
    /// As for [`open`](Self::open).
    pub fn from_handoff(handoff: Handoff) -> Result<Self> {
        Conn::open_handoff(Spec::bytes(), handoff).map(ByteChannel::with)
    }

    /// What another process needs to open this channel: see
    /// [`Channel::handoff`](crate::Channel::handoff).
    ///
    /// # Errors
    ///
    /// As for [`Channel::handoff`](crate::Channel::handoff).
    pub fn handoff(&self) -> Result<Handoff> {
        self.conn.handoff()
    }

    /// The memfd behind the channel, if any.
    pub fn memfd(&self) -> Option<&Memfd> {
        self.conn.memfd()
    }

    /// Claims the sending side for this process.
    ///
    /// # Errors
    ///
    /// As for [`Channel::sender`](crate::Channel::sender).
    pub fn sender(&self) -> Result<ByteSender> {
        Side::claim(&self.conn, &self.handle, Role::Sender).and_then(ByteSender::new)
    }

    /// Claims the receiving side for this process.
    ///
    /// # Errors
    ///
    /// As for [`Channel::receiver`](crate::Channel::receiver).
    pub fn receiver(&self) -> Result<ByteReceiver> {
        Side::claim(&self.conn, &self.handle, Role::Receiver).and_then(ByteReceiver::new)
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
