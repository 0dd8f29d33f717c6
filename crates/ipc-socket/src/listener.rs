//! Listening sockets: a stream or seqpacket socket bound to a name, which
//! accepts connections.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use ipc_sync::os::PollFlags;
use nix::sys::socket::SockFlag;

use crate::bind::{self, BindOptions, Bound};
use crate::call::{self, Wait};
use crate::error::{Error, Result};
use crate::name::SocketName;
use crate::sys;
use crate::{SeqpacketSocket, StreamSocket};

/// A connected socket that a listener accepts: [`StreamSocket`] or
/// [`SeqpacketSocket`].
pub trait Accepted: private::Sealed {}

pub(crate) mod private {
    use std::os::fd::OwnedFd;

    use crate::socket::Kind;

    /// What a listener needs of the sockets it accepts.
    pub trait Sealed: Sized {
        const KIND: Kind;
        fn from_accepted(fd: OwnedFd) -> Self;
    }

    impl Sealed for crate::StreamSocket {
        const KIND: Kind = Kind::Stream;
        fn from_accepted(fd: OwnedFd) -> Self {
            crate::StreamSocket::from_fd(fd)
        }
    }

    impl Sealed for crate::SeqpacketSocket {
        const KIND: Kind = Kind::Seqpacket;
        fn from_accepted(fd: OwnedFd) -> Self {
            crate::SeqpacketSocket::from_fd(fd)
        }
    }
}

impl Accepted for StreamSocket {}
impl Accepted for SeqpacketSocket {}

/// A socket bound to a name that accepts connections of `S`
/// ([`StreamListener`] or [`SeqpacketListener`]).
///
/// The listener that made a socket file removes it when dropped (unless
/// [`persist`](Self::persist)ed), if the path still names that file; a
/// process forked from it does not. Its descriptor is nonblocking: accepts
/// wait by polling it.
pub struct Listener<S> {
    bound: Bound,
    _accepts: PhantomData<fn() -> S>,
}

/// Accepts Unix stream connections.
pub type StreamListener = Listener<StreamSocket>;

/// Accepts Unix seqpacket connections (messages with boundaries, in
/// order, reliable).
pub type SeqpacketListener = Listener<SeqpacketSocket>;

impl<S: Accepted> Listener<S> {
    /// Binds `name` with the default [`BindOptions`] (mode `0o600`, a
    /// stale socket file taken over) and listens.
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] when a live socket has the name;
    /// [`Error::NotASocket`] when something else is at the path;
    /// [`Error::NotFound`] and [`Error::PermissionDenied`] for its
    /// directory; [`Error::InvalidName`].
    #[doc(alias = "listen")]
    pub fn bind(name: &SocketName) -> Result<Self> {
        Self::bind_with(name, &BindOptions::default())
    }

    /// Binds `name` with `options` and listens (see [`bind`](Self::bind)).
    ///
    /// # Errors
    ///
    /// As for [`bind`](Self::bind).
    pub fn bind_with(name: &SocketName, options: &BindOptions) -> Result<Self> {
        Ok(Listener { bound: bind::bind(S::KIND, name, options)?, _accepts: PhantomData })
    }

    /// The name it is bound to.
    pub fn name(&self) -> &SocketName {
        &self.bound.name
    }

    /// Leaves the socket file in place when dropped.
    pub fn persist(&mut self) {
        if let Some(f) = self.bound.file.as_mut() {
            f.persist();
        }
    }

    /// Accepts the next connection, waiting for one.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfDescriptors`] when this process has no room for the
    /// new socket (the connection stays queued); [`Error::Io`].
    #[doc(alias = "accept4")]
    pub fn accept(&self) -> Result<S> {
        self.accept_wait(Wait::FOREVER)
    }

    /// Accepts a connection that is waiting, if there is one.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when none waits; as for [`accept`](Self::accept).
    pub fn try_accept(&self) -> Result<S> {
        self.accept_wait(Wait::No)
    }

    /// Accepts the next connection, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]; as for [`accept`](Self::accept).
    pub fn accept_timeout(&self, timeout: Duration) -> Result<S> {
        self.accept_wait(Wait::after(timeout))
    }

    /// Accepts the next connection, waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]; as for [`accept`](Self::accept).
    pub fn accept_deadline(&self, deadline: Instant) -> Result<S> {
        self.accept_wait(Wait::at(deadline))
    }

    fn accept_wait(&self, wait: Wait) -> Result<S> {
        let fd = self.bound.fd.as_fd();
        loop {
            let got = call::again(fd, PollFlags::POLLIN, wait, || {
                nix::sys::socket::accept4(fd.as_raw_fd(), SockFlag::SOCK_CLOEXEC)
            });
            match got {
                Ok(raw) => return Ok(S::from_accepted(sys::own_accepted(raw))),
                // A connection that went before it was taken: the next.
                Err(call::CallError::Os(e)) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                Err(e) => return Err(e.or_os(|e| Error::of_call("accept", e))),
            }
        }
    }
}

impl<S> AsFd for Listener<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.bound.fd.as_fd()
    }
}

impl<S> AsRawFd for Listener<S> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.bound.fd.as_raw_fd()
    }
}

impl<S> fmt::Debug for Listener<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener").field("name", &self.bound.name).field("fd", &self.bound.fd).finish()
    }
}
