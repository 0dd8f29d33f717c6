//! Making sockets, and connecting them to a name.

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket, socketpair};

use crate::call::Wait;
use crate::error::{Error, Result};
use crate::name::SocketName;

/// The three kinds of Unix socket. (`pub` for the sealed trait that
/// listeners accept through; not reachable from outside the crate.)
#[allow(unreachable_pub)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Stream,
    Seqpacket,
    Datagram,
}

impl Kind {
    fn sock_type(self) -> SockType {
        match self {
            Kind::Stream => SockType::Stream,
            Kind::Seqpacket => SockType::SeqPacket,
            Kind::Datagram => SockType::Datagram,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Stream => "stream",
            Kind::Seqpacket => "seqpacket",
            Kind::Datagram => "datagram",
        }
    }
}

/// A new socket of `kind`, close-on-exec, and nonblocking if asked.
pub(crate) fn new(kind: Kind, nonblocking: bool) -> Result<OwnedFd> {
    let mut flags = SockFlag::SOCK_CLOEXEC;
    if nonblocking {
        flags |= SockFlag::SOCK_NONBLOCK;
    }
    socket(AddressFamily::Unix, kind.sock_type(), flags, None).map_err(|e| os(kind, "socket", e))
}

/// A connected pair of sockets of `kind`, close-on-exec.
pub(crate) fn pair(kind: Kind) -> Result<(OwnedFd, OwnedFd)> {
    socketpair(AddressFamily::Unix, kind.sock_type(), None, SockFlag::SOCK_CLOEXEC)
        .map_err(|e| os(kind, "socketpair", e))
}

fn os(_kind: Kind, op: &'static str, e: nix::errno::Errno) -> Error {
    Error::of_call(op, e.into())
}

/// A socket of `kind` connected to `name`, as `wait` allows, in blocking
/// mode. A listener whose backlog is full (`EAGAIN`) is tried again after
/// pauses from 50 µs doubling to 10 ms (a Unix socket's connect has no
/// readiness to wait for).
pub(crate) fn connect(kind: Kind, name: &SocketName, wait: Wait) -> Result<OwnedFd> {
    let addr = name.addr()?;
    let fd = new(kind, true)?;
    let mut backoff = crate::call::Backoff::new();
    loop {
        match nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => break,
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => backoff.pause(wait)?,
            Err(nix::errno::Errno::EPROTOTYPE) => {
                return Err(Error::WrongType { name: name.to_string(), wanted: kind.name() });
            }
            Err(e) => return Err(Error::of_name(name, "connect", e.into())),
        }
    }
    set_blocking(fd.as_fd())?;
    Ok(fd)
}

/// Clears `O_NONBLOCK` on a socket this process alone holds yet.
pub(crate) fn set_blocking(fd: std::os::fd::BorrowedFd<'_>) -> Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let io = |e: nix::errno::Errno| Error::Io { op: "fcntl on a socket", source: e.into() };
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).map_err(io)?);
    fcntl(fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)).map_err(io)?;
    Ok(())
}
