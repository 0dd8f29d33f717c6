//! The writing end's own calls: writes that never wait, wait until a
//! deadline, or are atomic, `vmsplice`, and [`Write`].

use std::io::{self, IoSlice, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use ipc_sync::Deadline;

use crate::error::{Error, Result};
use crate::own;
use crate::pipe::{PIPE_BUF, PipeWriter, Wait, write_waiting};
use crate::sys;

impl PipeWriter {
    /// Writes as much of `buf` as fits without waiting.
    ///
    /// Works whether or not the end is in nonblocking mode (it uses
    /// `pwritev2(RWF_NOWAIT)`). A buffer of at most [`PIPE_BUF`] bytes is
    /// written whole or not at all.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when the pipe is full; [`Error::BrokenPipe`]
    /// when no reader is left.
    pub fn try_write(&self, buf: &[u8]) -> Result<usize> {
        write_waiting(self.as_fd(), &[IoSlice::new(buf)], Wait::No)
    }

    /// Writes as much of `buf` as fits once there is room, waiting at most
    /// `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the pipe stayed full; [`Error::BrokenPipe`]
    /// when no reader is left.
    pub fn write_timeout(&self, buf: &[u8], timeout: Duration) -> Result<usize> {
        write_waiting(self.as_fd(), &[IoSlice::new(buf)], Wait::Until(Deadline::after(timeout)))
    }

    /// Like [`write_timeout`](Self::write_timeout) with a deadline on the
    /// monotonic clock.
    ///
    /// # Errors
    ///
    /// As for [`write_timeout`](Self::write_timeout).
    pub fn write_deadline(&self, buf: &[u8], deadline: Instant) -> Result<usize> {
        write_waiting(self.as_fd(), &[IoSlice::new(buf)], Wait::Until(Deadline::at(deadline)))
    }

    /// Writes `msg` in one piece, so that any number of processes can write
    /// messages to one pipe and the reader never sees two interleaved.
    ///
    /// The kernel guarantees this for writes of at most [`PIPE_BUF`] bytes:
    /// such a write waits until the whole message fits.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`] for more than [`PIPE_BUF`] bytes, before
    /// anything is written; [`Error::BrokenPipe`] when no reader is left;
    /// [`Error::WouldBlock`] in nonblocking mode when the message does not
    /// fit now (nothing was written).
    pub fn write_atomic(&self, msg: &[u8]) -> Result<()> {
        check_atomic(msg)?;
        let fd = self.as_fd();
        let n = sys::without_sigpipe(|| own::write(fd, msg)).map_err(|e| Error::from_io("atomic write to pipe", e))?;
        short_atomic(n, msg.len())
    }

    /// [`write_atomic`](Self::write_atomic) without waiting: the message is
    /// written whole or not at all.
    ///
    /// # Errors
    ///
    /// As for [`write_atomic`](Self::write_atomic), and
    /// [`Error::WouldBlock`] when the message does not fit now.
    pub fn try_write_atomic(&self, msg: &[u8]) -> Result<()> {
        check_atomic(msg)?;
        let n = write_waiting(self.as_fd(), &[IoSlice::new(msg)], Wait::No)?;
        short_atomic(n, msg.len())
    }

    /// [`write_atomic`](Self::write_atomic), waiting at most `timeout` for
    /// room: the message is written whole or not at all.
    ///
    /// # Errors
    ///
    /// As for [`write_atomic`](Self::write_atomic), and [`Error::Timeout`].
    pub fn write_atomic_timeout(&self, msg: &[u8], timeout: Duration) -> Result<()> {
        check_atomic(msg)?;
        let wait = Wait::Until(Deadline::after(timeout));
        let n = write_waiting(self.as_fd(), &[IoSlice::new(msg)], wait)?;
        short_atomic(n, msg.len())
    }

    /// Maps the pages of `data` into the pipe instead of copying them
    /// (`vmsplice(2)`); returns how many bytes went in, which may be fewer
    /// than `data.len()` when the pipe fills.
    ///
    /// The pipe keeps references to those pages until the reader has
    /// consumed them: bytes changed in `data` before then may reach the
    /// reader changed. So write into a buffer again only after the reader
    /// has read what was spliced from it (a pipe never holds more than its
    /// capacity, so rotating through buffers that add up to more than the
    /// capacity is one way). The memory itself is never freed under the
    /// kernel: it holds its own references.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenPipe`] when no reader is left.
    ///
    /// # References
    ///
    /// [vmsplice(2)](https://man7.org/linux/man-pages/man2/vmsplice.2.html)
    pub fn vmsplice(&self, data: &[u8]) -> Result<usize> {
        let fd = self.as_fd();
        let iov = [IoSlice::new(data)];
        sys::without_sigpipe(|| own::vmsplice(fd, &iov)).map_err(|e| Error::from_io("vmsplice into pipe", e))
    }

    /// [`vmsplice`](Self::vmsplice) until all of `data` is in the pipe.
    ///
    /// # Errors
    ///
    /// As for [`vmsplice`](Self::vmsplice).
    pub fn vmsplice_all(&self, mut data: &[u8]) -> Result<()> {
        let fd = self.as_fd();
        // SIGPIPE is held off once for the whole loop: a pipe that the
        // reader drains concurrently takes many partial vmsplices.
        sys::without_sigpipe(|| {
            while !data.is_empty() {
                let n = own::vmsplice(fd, &[IoSlice::new(data)])?;
                data = &data[n..];
            }
            Ok(())
        })
        .map_err(|e| Error::from_io("vmsplice into pipe", e))
    }
}

fn check_atomic(msg: &[u8]) -> Result<()> {
    if msg.len() > PIPE_BUF {
        return Err(Error::MessageTooLarge { len: msg.len(), max: PIPE_BUF });
    }
    Ok(())
}

pub(crate) fn short_atomic(written: usize, len: usize) -> Result<()> {
    if written == len {
        Ok(())
    } else {
        // The kernel promises this never happens for len <= PIPE_BUF.
        Err(Error::Io {
            op: "atomic write to pipe",
            source: io::Error::new(io::ErrorKind::WriteZero, format!("only {written} of {len} bytes were written")),
        })
    }
}

impl Write for &PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.as_fd();
        sys::without_sigpipe(|| own::write(fd, buf))
    }

    /// Like the provided method, but with `SIGPIPE` held off once for the
    /// whole buffer rather than around each `write(2)`.
    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        let fd = self.as_fd();
        sys::without_sigpipe(|| {
            while !buf.is_empty() {
                match own::write(fd, buf)? {
                    0 => return Err(io::ErrorKind::WriteZero.into()),
                    n => buf = &buf[n..],
                }
            }
            Ok(())
        })
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let fd = self.as_fd();
        sys::without_sigpipe(|| own::writev(fd, bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        (&*self).write_all(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
