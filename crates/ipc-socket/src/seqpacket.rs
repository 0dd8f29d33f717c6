//! Connected Unix seqpacket sockets: messages with boundaries, in order,
//! reliable, connection-oriented.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::Credentials;
use crate::call::{self, Wait};
use crate::error::{Error, Result};
use crate::name::SocketName;
use crate::socket::{self, Kind};

/// A connected Unix seqpacket socket: whole messages in order, both ways,
/// with descriptors passed alongside. A message is sent in one piece or
/// not at all, and received in one piece (or cut, with
/// [`Error::Truncated`], when the buffer is too small).
///
/// An empty message cannot be told from the peer's going when the peer
/// closes right after sending it: [`send`](Self::send) refuses empty
/// messages, and a receive of an empty message is taken for the end when
/// the peer has closed.
#[derive(Debug)]
pub struct SeqpacketSocket {
    fd: OwnedFd,
}

crate::connected::connected!(SeqpacketSocket, Kind::Seqpacket, "seqpacket");

impl SeqpacketSocket {
    /// Sends `msg` whole, waiting for room.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`] over what the socket carries (its send
    /// buffer less 32 bytes, at most 4 MiB) or for an empty message;
    /// [`Error::Disconnected`];
    /// [`Error::Io`].
    #[inline]
    pub fn send(&self, msg: &[u8]) -> Result<()> {
        self.send_wait(msg, &[], Wait::FOREVER)
    }

    /// Sends `msg` whole if there is room now.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`]; as for [`send`](Self::send).
    pub fn try_send(&self, msg: &[u8]) -> Result<()> {
        self.send_wait(msg, &[], Wait::No)
    }

    /// Sends `msg` whole, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]; as for [`send`](Self::send).
    pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_wait(msg, &[], Wait::after(timeout))
    }

    /// Sends `msg` with `fds`, waiting for room.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyFds`]; [`Error::OutOfDescriptors`]; as for
    /// [`send`](Self::send).
    #[doc(alias = "SCM_RIGHTS")]
    pub fn send_with_fds(&self, msg: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.send_wait(msg, fds, Wait::FOREVER)
    }

    /// [`send_with_fds`](Self::send_with_fds) without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`]; as for [`send_with_fds`](Self::send_with_fds).
    pub fn try_send_with_fds(&self, msg: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.send_wait(msg, fds, Wait::No)
    }

    /// [`send_with_fds`](Self::send_with_fds), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]; as for [`send_with_fds`](Self::send_with_fds).
    pub fn send_with_fds_timeout(&self, msg: &[u8], fds: &[BorrowedFd<'_>], timeout: Duration) -> Result<()> {
        self.send_wait(msg, fds, Wait::after(timeout))
    }

    #[inline]
    fn send_wait(&self, msg: &[u8], fds: &[BorrowedFd<'_>], wait: Wait) -> Result<()> {
        let fd = self.fd.as_fd();
        if msg.is_empty() {
            return Err(Error::MessageTooLarge { len: 0, max: call::max_message(fd) });
        }
        // The common case in one call, nothing around it: a message
        // without descriptors that goes at once.
        if fds.is_empty() && call::send_once(fd, msg, wait) {
            return Ok(());
        }
        call::send(fd, msg, fds, None, wait)
            .map_err(|e| e.or_os(|e| call::message_send_error(fd, msg.len(), e)))
            .map(drop)
    }

    /// Receives the next message into `buf`, waiting for one: its length.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when the peer is gone and every message it
    /// sent was received; [`Error::Truncated`] when the message was longer
    /// than `buf` (its first `buf.len()` bytes are there, the rest is
    /// lost); [`Error::Io`].
    pub fn recv(&self, buf: &mut [u8]) -> Result<usize> {
        self.recv_wait(buf, 0, Wait::FOREVER).map(|(n, _)| n)
    }

    /// Receives a message that has come.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`]; as for [`recv`](Self::recv).
    pub fn try_recv(&self, buf: &mut [u8]) -> Result<usize> {
        self.recv_wait(buf, 0, Wait::No).map(|(n, _)| n)
    }

    /// Receives the next message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]; as for [`recv`](Self::recv).
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        self.recv_wait(buf, 0, Wait::after(timeout)).map(|(n, _)| n)
    }

    /// Receives the next message into `buf` (replacing its contents),
    /// waiting for one: its length. `buf` grows to hold any message a
    /// peer can send with the system's largest send buffer
    /// (`net.core.wmem_max`, doubled as the kernel does); only the bytes
    /// received are written.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] for a message over that (from a peer that
    /// forced a larger send buffer): its first bytes are in `buf`, the
    /// rest is lost; as for [`recv`](Self::recv).
    pub fn recv_vec(&self, buf: &mut Vec<u8>) -> Result<usize> {
        self.recv_vec_wait(buf, Wait::FOREVER)
    }

    /// [`recv_vec`](Self::recv_vec) of a message that has come.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`]; as for [`recv_vec`](Self::recv_vec).
    pub fn try_recv_vec(&self, buf: &mut Vec<u8>) -> Result<usize> {
        self.recv_vec_wait(buf, Wait::No)
    }

    /// [`recv_vec`](Self::recv_vec), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`]; as for [`recv_vec`](Self::recv_vec).
    pub fn recv_vec_timeout(&self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        self.recv_vec_wait(buf, Wait::after(timeout))
    }

    fn recv_vec_wait(&self, buf: &mut Vec<u8>, wait: Wait) -> Result<usize> {
        let fd = self.fd.as_fd();
        buf.clear();
        buf.reserve(call::largest_message());
        let flags = call::flag(wait).bits() | libc::MSG_TRUNC;
        let whole = call::again(fd, ipc_sync::os::PollFlags::POLLIN, wait, || {
            crate::sys::recv_into_spare(fd, buf, flags)
                .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
        })
        .map_err(|e| e.or_os(|e| Error::of_call("recv", e)))?;
        if whole > buf.len() {
            return Err(Error::Truncated { len: whole, capacity: buf.len() });
        }
        if whole == 0 && call::peer_gone(fd) {
            return Err(Error::Disconnected);
        }
        Ok(whole)
    }

    /// Receives the next message with the descriptors sent with it (at
    /// most `max_fds`), waiting for one. Each descriptor is owned and
    /// close-on-exec.
    ///
    /// # Errors
    ///
    /// [`Error::FdsTruncated`] when more than `max_fds` came (all were
    /// closed; the message was received); [`Error::Truncated`] (the
    /// descriptors that came were closed); [`Error::OutOfDescriptors`]; as
    /// for [`recv`](Self::recv).
    pub fn recv_with_fds(&self, buf: &mut [u8], max_fds: usize) -> Result<(usize, Vec<OwnedFd>)> {
        self.recv_wait(buf, max_fds, Wait::FOREVER)
    }

    fn recv_wait(&self, buf: &mut [u8], max_fds: usize, wait: Wait) -> Result<(usize, Vec<OwnedFd>)> {
        let capacity = buf.len();
        let fd = self.fd.as_fd();
        let got = call::recv(fd, buf, max_fds, true, wait).map_err(|e| e.or_os(|e| Error::of_call("recv", e)))?;
        if let Some(e) = call::Cut::error(got.cut, max_fds, got.len) {
            return Err(e);
        }
        if got.whole > capacity {
            return Err(Error::Truncated { len: got.whole, capacity });
        }
        if got.whole == 0 && got.fds.is_empty() && call::peer_gone(fd) {
            return Err(Error::Disconnected);
        }
        Ok((got.len, got.fds))
    }
}
