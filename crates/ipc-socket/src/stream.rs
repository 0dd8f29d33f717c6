//! Connected Unix stream sockets.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::Credentials;
use crate::call::{self, Wait};
use crate::error::{Error, Result};
use crate::name::SocketName;
use crate::socket::{self, Kind};

/// A connected Unix stream socket: bytes in order, both ways, with
/// descriptors passed alongside ([`send_with_fds`](Self::send_with_fds)).
///
/// Writes never raise `SIGPIPE`: a peer that is gone is
/// [`Error::Disconnected`] (`BrokenPipe` through `Write`). Its description
/// stays in blocking mode: the waiting forms block in the kernel, the
/// `try_*` and timed forms use `MSG_DONTWAIT` and `poll`, so what other
/// holders of the descriptor do to its mode changes none of them.
#[derive(Debug)]
pub struct StreamSocket {
    fd: OwnedFd,
}

crate::connected::connected!(StreamSocket, Kind::Stream, "stream");

impl StreamSocket {
    /// Writes some of `data`, waiting for room: how many bytes went.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when the peer is gone; [`Error::Io`].
    pub fn send(&self, data: &[u8]) -> Result<usize> {
        self.send_wait(data, &[], Wait::FOREVER)
    }

    /// Writes what fits now: [`Error::WouldBlock`] when nothing does.
    ///
    /// # Errors
    ///
    /// As said, and as for [`send`](Self::send).
    pub fn try_send(&self, data: &[u8]) -> Result<usize> {
        self.send_wait(data, &[], Wait::No)
    }

    /// Writes some of `data`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]; as for [`send`](Self::send).
    pub fn send_timeout(&self, data: &[u8], timeout: Duration) -> Result<usize> {
        self.send_wait(data, &[], Wait::after(timeout))
    }

    /// Writes some of `data` with `fds` attached to its first byte,
    /// waiting for room: how many bytes went (at least one: the
    /// descriptors went with them). The peer receives them with
    /// [`recv_with_fds`](Self::recv_with_fds); a plain receive drops (and
    /// closes) them.
    ///
    /// # Errors
    ///
    /// [`Error::FdsWithoutData`] for empty `data`; [`Error::TooManyFds`]
    /// for over [`MAX_FDS`](crate::MAX_FDS); [`Error::OutOfDescriptors`]
    /// when the kernel's limit of descriptors in flight is reached; as for
    /// [`send`](Self::send).
    #[doc(alias = "SCM_RIGHTS")]
    pub fn send_with_fds(&self, data: &[u8], fds: &[BorrowedFd<'_>]) -> Result<usize> {
        self.send_wait(data, fds, Wait::FOREVER)
    }

    /// [`send_with_fds`](Self::send_with_fds) without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`]; as for [`send_with_fds`](Self::send_with_fds).
    pub fn try_send_with_fds(&self, data: &[u8], fds: &[BorrowedFd<'_>]) -> Result<usize> {
        self.send_wait(data, fds, Wait::No)
    }

    /// [`send_with_fds`](Self::send_with_fds), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]; as for [`send_with_fds`](Self::send_with_fds).
    pub fn send_with_fds_timeout(&self, data: &[u8], fds: &[BorrowedFd<'_>], timeout: Duration) -> Result<usize> {
        self.send_wait(data, fds, Wait::after(timeout))
    }

    fn send_wait(&self, data: &[u8], fds: &[BorrowedFd<'_>], wait: Wait) -> Result<usize> {
        if !fds.is_empty() && data.is_empty() {
            return Err(Error::FdsWithoutData);
        }
        call::send(self.fd.as_fd(), data, fds, None, wait).map_err(|e| e.or_os(|e| Error::of_call("send", e)))
    }

    /// Reads what has come, waiting for something: how many bytes; 0 when
    /// the peer is gone and everything it sent was read.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when the peer reset the connection;
    /// [`Error::Io`].
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize> {
        self.recv_wait(buf, 0, Wait::FOREVER).map(|(n, _)| n)
    }

    /// Reads what has come: [`Error::WouldBlock`] when nothing has.
    ///
    /// # Errors
    ///
    /// As said, and as for [`recv`](Self::recv).
    pub fn try_recv(&self, buf: &mut [u8]) -> Result<usize> {
        self.recv_wait(buf, 0, Wait::No).map(|(n, _)| n)
    }

    /// Reads what has come, waiting at most `timeout` for something.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]; as for [`recv`](Self::recv).
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        self.recv_wait(buf, 0, Wait::after(timeout)).map(|(n, _)| n)
    }

    /// Reads what has come, with the descriptors sent with it (at most
    /// `max_fds`, up to [`MAX_FDS`](crate::MAX_FDS)), waiting for
    /// something. Each descriptor is owned (closed when dropped) and
    /// close-on-exec. A read stops where a byte that carries descriptors
    /// begins, so descriptors always come with the bytes they were sent
    /// with.
    ///
    /// # Errors
    ///
    /// [`Error::FdsTruncated`] when more than `max_fds` came: every one of
    /// them was closed, and the bytes were read (their count is in the
    /// error); [`Error::OutOfDescriptors`]; as for [`recv`](Self::recv).
    pub fn recv_with_fds(&self, buf: &mut [u8], max_fds: usize) -> Result<(usize, Vec<OwnedFd>)> {
        self.recv_wait(buf, max_fds, Wait::FOREVER)
    }

    fn recv_wait(&self, buf: &mut [u8], max_fds: usize, wait: Wait) -> Result<(usize, Vec<OwnedFd>)> {
        let got = call::recv(self.fd.as_fd(), buf, max_fds, false, wait)
            .map_err(|e| e.or_os(|e| Error::of_call("recv", e)))?;
        if let Some(e) = call::Cut::error(got.cut, max_fds, got.len) {
            return Err(e);
        }
        Ok((got.len, got.fds))
    }
}

impl Read for &StreamSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.recv(buf) {
            Err(Error::Disconnected) => Err(io::ErrorKind::ConnectionReset.into()),
            other => other.map_err(io::Error::from),
        }
    }
}

impl Read for StreamSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for &StreamSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf).map_err(io::Error::from)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for StreamSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl From<StreamSocket> for std::os::unix::net::UnixStream {
    fn from(s: StreamSocket) -> Self {
        s.fd.into()
    }
}
