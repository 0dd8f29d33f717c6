//! Unix datagram sockets: messages with boundaries, reliable and in order
//! between two sockets (on Linux, a full receiver makes the sender wait),
//! without connections.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::UnixAddr;

use ipc_sync::object::Guard;

use crate::bind::{self, BindOptions, Bound, SocketFile};
use crate::call::{self, Wait};
use crate::error::{Error, Result};
use crate::name::SocketName;
use crate::socket::{self, Kind};

/// A Unix datagram socket, bound to a name or not, connected to a default
/// peer or not. On Linux a datagram to a socket whose queue is full waits
/// (or is refused, in the `try_*` forms), so none is lost between two
/// live sockets.
///
/// A socket that [`bind`](Self::bind)s a path removes its file when
/// dropped in the process that made it, as a listener does.
#[derive(Debug)]
pub struct DatagramSocket {
    // Dropped first, as a listener's (see `Bound`).
    file: Option<Guard<SocketFile>>,
    fd: OwnedFd,
    name: Option<SocketName>,
}

impl DatagramSocket {
    /// Binds `name` with the default [`BindOptions`] (a stale socket file
    /// taken over, mode `0o600`: only processes that may write the file
    /// can send to it).
    ///
    /// # Errors
    ///
    /// As `Listener::bind`.
    pub fn bind(name: &SocketName) -> Result<DatagramSocket> {
        Self::bind_with(name, &BindOptions::default())
    }

    /// Binds `name` with `options`.
    ///
    /// # Errors
    ///
    /// As `Listener::bind`.
    pub fn bind_with(name: &SocketName, options: &BindOptions) -> Result<DatagramSocket> {
        let Bound { fd, name, file } = bind::bind(Kind::Datagram, name, options)?;
        Ok(DatagramSocket { fd, name: Some(name), file })
    }

    /// A socket without a name: it can send, and receive replies only over
    /// a connection or from peers that send to it through a pair.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfDescriptors`]; [`Error::Io`].
    pub fn unbound() -> Result<DatagramSocket> {
        Ok(DatagramSocket { fd: socket::new(Kind::Datagram, false)?, name: None, file: None })
    }

    /// Two sockets connected to each other (`socketpair`).
    ///
    /// # Errors
    ///
    /// [`Error::OutOfDescriptors`]; [`Error::Io`].
    #[doc(alias = "socketpair")]
    pub fn pair() -> Result<(DatagramSocket, DatagramSocket)> {
        let (a, b) = socket::pair(Kind::Datagram)?;
        let unnamed = |fd| DatagramSocket { fd, name: None, file: None };
        Ok((unnamed(a), unnamed(b)))
    }

    /// The name it is bound to, if it bound one.
    pub fn name(&self) -> Option<&SocketName> {
        self.name.as_ref()
    }

    /// Leaves the socket file in place when dropped.
    pub fn persist(&mut self) {
        if let Some(f) = self.file.as_mut() {
            f.persist();
        }
    }

    /// Sends to `name` by default ([`send`](Self::send)), and takes
    /// datagrams from it alone.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; [`Error::Refused`] (nobody is bound there);
    /// [`Error::PermissionDenied`]; [`Error::WrongType`].
    pub fn connect(&self, name: &SocketName) -> Result<()> {
        let addr = name.addr()?;
        loop {
            match nix::sys::socket::connect(self.fd.as_raw_fd(), &addr) {
                Ok(()) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EPROTOTYPE) => {
                    return Err(Error::WrongType { name: name.to_string(), wanted: Kind::Datagram.name() });
                }
                Err(e) => return Err(Error::of_name(name, "connect", e.into())),
            }
        }
    }

    /// Sends `msg` to `to`, waiting while its queue is full.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Refused`] (nobody is bound there any
    /// more), [`Error::PermissionDenied`]; [`Error::MessageTooLarge`];
    /// [`Error::Io`].
    pub fn send_to(&self, msg: &[u8], to: &SocketName) -> Result<()> {
        self.send_wait(msg, &[], Some(to), Wait::FOREVER)
    }

    /// Sends `msg` to `to` if its queue has room now.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`]; as for [`send_to`](Self::send_to).
    pub fn try_send_to(&self, msg: &[u8], to: &SocketName) -> Result<()> {
        self.send_wait(msg, &[], Some(to), Wait::No)
    }

    /// Sends `msg` to `to`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]; as for [`send_to`](Self::send_to).
    pub fn send_to_timeout(&self, msg: &[u8], to: &SocketName, timeout: Duration) -> Result<()> {
        self.send_wait(msg, &[], Some(to), Wait::after(timeout))
    }

    /// Sends `msg` with `fds` to `to`, waiting for room.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyFds`]; [`Error::OutOfDescriptors`]; as for
    /// [`send_to`](Self::send_to).
    #[doc(alias = "SCM_RIGHTS")]
    pub fn send_to_with_fds(&self, msg: &[u8], fds: &[BorrowedFd<'_>], to: &SocketName) -> Result<()> {
        self.send_wait(msg, fds, Some(to), Wait::FOREVER)
    }

    /// Sends `msg` to the connected peer, waiting while its queue is full.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when the peer is gone or it was never
    /// connected; as for [`send_to`](Self::send_to).
    pub fn send(&self, msg: &[u8]) -> Result<()> {
        self.send_wait(msg, &[], None, Wait::FOREVER)
    }

    /// Sends `msg` to the connected peer if there is room now.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`]; as for [`send`](Self::send).
    pub fn try_send(&self, msg: &[u8]) -> Result<()> {
        self.send_wait(msg, &[], None, Wait::No)
    }

    /// Sends `msg` to the connected peer, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]; as for [`send`](Self::send).
    pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_wait(msg, &[], None, Wait::after(timeout))
    }

    /// Sends `msg` with `fds` to the connected peer, waiting for room.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send) and [`send_to_with_fds`](Self::send_to_with_fds).
    pub fn send_with_fds(&self, msg: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.send_wait(msg, fds, None, Wait::FOREVER)
    }

    fn send_wait(&self, msg: &[u8], fds: &[BorrowedFd<'_>], to: Option<&SocketName>, wait: Wait) -> Result<()> {
        let addr: Option<UnixAddr> = to.map(SocketName::addr).transpose()?;
        let fd = self.fd.as_fd();
        call::send(fd, msg, fds, addr.as_ref(), wait)
            .map_err(|e| {
                e.or_os(|e| match (e.raw_os_error(), to) {
                    (Some(libc::EMSGSIZE | libc::ENOBUFS), _) => call::message_send_error(fd, msg.len(), e),
                    (Some(libc::EPROTOTYPE), Some(to)) => {
                        Error::WrongType { name: to.to_string(), wanted: Kind::Datagram.name() }
                    }
                    (_, Some(to)) => Error::of_name(to, "sendmsg", e),
                    (_, None) => Error::of_call("send", e),
                })
            })
            .map(drop)
    }

    /// Receives the next datagram into `buf`, waiting for one: its length
    /// and its sender's name (`None` for a sender without one).
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] when it was longer than `buf` (the rest is
    /// lost); [`Error::Io`].
    pub fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, Option<SocketName>)> {
        self.recv_wait(buf, 0, Wait::FOREVER).map(|(n, _, from)| (n, from))
    }

    /// Receives a datagram that has come.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`]; as for [`recv_from`](Self::recv_from).
    pub fn try_recv_from(&self, buf: &mut [u8]) -> Result<(usize, Option<SocketName>)> {
        self.recv_wait(buf, 0, Wait::No).map(|(n, _, from)| (n, from))
    }

    /// Receives the next datagram, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]; as for [`recv_from`](Self::recv_from).
    pub fn recv_from_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<(usize, Option<SocketName>)> {
        self.recv_wait(buf, 0, Wait::after(timeout)).map(|(n, _, from)| (n, from))
    }

    /// Receives the next datagram, waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]; as for [`recv_from`](Self::recv_from).
    pub fn recv_from_deadline(&self, buf: &mut [u8], deadline: Instant) -> Result<(usize, Option<SocketName>)> {
        self.recv_wait(buf, 0, Wait::at(deadline)).map(|(n, _, from)| (n, from))
    }

    /// Receives the next datagram with the descriptors sent with it (at
    /// most `max_fds`), waiting for one: its length, the descriptors (owned,
    /// close-on-exec) and its sender's name.
    ///
    /// # Errors
    ///
    /// [`Error::FdsTruncated`] (all closed; the datagram was received);
    /// [`Error::OutOfDescriptors`]; as for [`recv_from`](Self::recv_from).
    pub fn recv_from_with_fds(
        &self,
        buf: &mut [u8],
        max_fds: usize,
    ) -> Result<(usize, Vec<OwnedFd>, Option<SocketName>)> {
        self.recv_wait(buf, max_fds, Wait::FOREVER)
    }

    /// [`recv_from_with_fds`](Self::recv_from_with_fds) without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`]; as for [`recv_from_with_fds`](Self::recv_from_with_fds).
    pub fn try_recv_from_with_fds(
        &self,
        buf: &mut [u8],
        max_fds: usize,
    ) -> Result<(usize, Vec<OwnedFd>, Option<SocketName>)> {
        self.recv_wait(buf, max_fds, Wait::No)
    }

    fn recv_wait(
        &self,
        buf: &mut [u8],
        max_fds: usize,
        wait: Wait,
    ) -> Result<(usize, Vec<OwnedFd>, Option<SocketName>)> {
        let capacity = buf.len();
        let got = call::recv(self.fd.as_fd(), buf, max_fds, true, wait)
            .map_err(|e| e.or_os(|e| Error::of_call("recvmsg", e)))?;
        if let Some(e) = call::Cut::error(got.cut, max_fds, got.len) {
            return Err(e);
        }
        if got.whole > capacity {
            return Err(Error::Truncated { len: got.whole, capacity });
        }
        Ok((got.len, got.fds, got.from))
    }
}

impl AsFd for DatagramSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for DatagramSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}
