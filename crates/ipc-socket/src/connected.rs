//! What the two connected kinds share: connecting to a name in the three
//! forms, socket pairs, peer credentials, shutdown, and the descriptor
//! conversions (`TryFrom<OwnedFd>` checks the descriptor's kind).

use std::os::fd::{AsFd, OwnedFd};

use crate::error::{Error, Result};
use crate::socket::Kind;

/// Checks that `fd` is a Unix socket of `kind`, for a descriptor handed
/// over (inherited across exec, received).
pub(crate) fn check_kind(fd: &OwnedFd, kind: Kind) -> Result<()> {
    use nix::sys::socket::{getsockname, getsockopt, sockopt};
    let wrong = || Error::WrongType {
        name: format!("descriptor {}", std::os::fd::AsRawFd::as_raw_fd(fd)),
        wanted: kind.name(),
    };
    let ty = match getsockopt(&fd.as_fd(), sockopt::SockType) {
        Ok(ty) => ty,
        Err(nix::errno::Errno::ENOTSOCK) => return Err(wrong()),
        Err(e) => return Err(Error::Io { op: "getsockopt on a handed-over descriptor", source: e.into() }),
    };
    let unix = getsockname::<nix::sys::socket::UnixAddr>(std::os::fd::AsRawFd::as_raw_fd(fd)).is_ok();
    let want = match kind {
        Kind::Stream => nix::sys::socket::SockType::Stream,
        Kind::Seqpacket => nix::sys::socket::SockType::SeqPacket,
        Kind::Datagram => nix::sys::socket::SockType::Datagram,
    };
    if ty == want && unix {
        Ok(())
    } else {
        Err(Error::WrongType {
            name: format!("descriptor {}", std::os::fd::AsRawFd::as_raw_fd(fd)),
            wanted: kind.name(),
        })
    }
}

/// The shared part of a connected socket type `$ty` of kind `$kind`.
macro_rules! connected {
    ($ty:ident, $kind:expr, $what:literal) => {
        impl $ty {
            pub(crate) fn from_fd(fd: OwnedFd) -> $ty {
                $ty { fd }
            }

            #[doc = concat!("Connects to the ", $what, " listener at `name`, waiting while its backlog is full.")]
            ///
            /// # Errors
            ///
            /// [`Error::NotFound`] when nothing is there; [`Error::Refused`]
            /// when nobody listens (a stale socket file);
            /// [`Error::PermissionDenied`] without write permission on the
            /// socket file; [`Error::WrongType`] for a socket of another
            /// type; [`Error::InvalidName`].
            pub fn connect(name: &SocketName) -> Result<$ty> {
                socket::connect($kind, name, Wait::FOREVER).map(Self::from_fd)
            }

            /// Connects without waiting: [`Error::WouldBlock`] when the
            /// listener's backlog is full; as for [`connect`](Self::connect).
            ///
            /// # Errors
            ///
            /// As said.
            pub fn try_connect(name: &SocketName) -> Result<$ty> {
                socket::connect($kind, name, Wait::No).map(Self::from_fd)
            }

            /// Connects, waiting at most `timeout` for room in the backlog.
            ///
            /// # Errors
            ///
            /// [`Error::Timeout`]; as for [`connect`](Self::connect).
            pub fn connect_timeout(name: &SocketName, timeout: Duration) -> Result<$ty> {
                socket::connect($kind, name, Wait::after(timeout)).map(Self::from_fd)
            }

            /// Connects, waiting until `deadline` for room in the backlog.
            ///
            /// # Errors
            ///
            /// [`Error::Timeout`]; as for [`connect`](Self::connect).
            pub fn connect_deadline(name: &SocketName, deadline: Instant) -> Result<$ty> {
                socket::connect($kind, name, Wait::at(deadline)).map(Self::from_fd)
            }

            /// Two connected sockets (`socketpair`), for a parent and the
            /// child it forks, or to hand one to another program.
            ///
            /// # Errors
            ///
            /// [`Error::OutOfDescriptors`]; [`Error::Io`].
            #[doc(alias = "socketpair")]
            pub fn pair() -> Result<($ty, $ty)> {
                let (a, b) = socket::pair($kind)?;
                Ok((Self::from_fd(a), Self::from_fd(b)))
            }

            /// The peer's credentials, as the kernel recorded them when the
            /// connection was made.
            ///
            /// # Errors
            ///
            /// [`Error::Io`].
            #[doc(alias = "SO_PEERCRED")]
            pub fn peer_credentials(&self) -> Result<Credentials> {
                call::peer_credentials(&self.fd)
            }

            /// [`recv_with_fds`](Self::recv_with_fds) without waiting.
            ///
            /// # Errors
            ///
            /// [`Error::WouldBlock`]; as for [`recv_with_fds`](Self::recv_with_fds).
            pub fn try_recv_with_fds(&self, buf: &mut [u8], max_fds: usize) -> Result<(usize, Vec<OwnedFd>)> {
                self.recv_wait(buf, max_fds, Wait::No)
            }

            /// [`recv_with_fds`](Self::recv_with_fds), waiting at most `timeout`.
            ///
            /// # Errors
            ///
            /// [`Error::Timeout`]; as for [`recv_with_fds`](Self::recv_with_fds).
            pub fn recv_with_fds_timeout(
                &self,
                buf: &mut [u8],
                max_fds: usize,
                timeout: Duration,
            ) -> Result<(usize, Vec<OwnedFd>)> {
                self.recv_wait(buf, max_fds, Wait::after(timeout))
            }

            /// Shuts down reading, writing or both (`shutdown(2)`): after
            /// writing is shut, the peer receives the end after what was
            /// sent.
            ///
            /// # Errors
            ///
            /// [`Error::Io`].
            pub fn shutdown(&self, how: std::net::Shutdown) -> Result<()> {
                call::shutdown(self.fd.as_fd(), how)
            }
        }

        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.fd.as_fd()
            }
        }

        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(&self.fd)
            }
        }

        impl From<$ty> for OwnedFd {
            fn from(s: $ty) -> OwnedFd {
                s.fd
            }
        }

        #[doc = concat!("A connected Unix ", $what, " socket handed over as a descriptor (inherited across exec, received): checked to be one.")]
        impl TryFrom<OwnedFd> for $ty {
            type Error = Error;

            fn try_from(fd: OwnedFd) -> Result<$ty> {
                crate::connected::check_kind(&fd, $kind)?;
                Ok($ty::from_fd(fd))
            }
        }
    };
}

pub(crate) use connected;
