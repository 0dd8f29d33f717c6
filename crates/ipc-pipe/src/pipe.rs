use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ipc_sync::Deadline;
use ipc_sync::os::{NotReady, PollFlags};

use crate::error::{Error, Result};
use crate::own::{self, EndFd};
use crate::sys;

/// The most bytes a single write to a pipe can carry without being
/// interleaved with other writers' data (`PIPE_BUF`, 4096 on Linux).
pub const PIPE_BUF: usize = sys::PIPE_BUF;

/// Creates an anonymous pipe: the reading end first, then the writing end.
///
/// Both ends are close-on-exec, so a child started by
/// [`std::process::Command`] sees only the ends handed to it explicitly (as
/// stdin/stdout through [`Stdio`], or at a chosen fd number through
/// [`ChildFds`](crate::ChildFds)). A child created by `fork` inherits both
/// ends; each side should drop the end it does not use, or the reader never
/// sees end of file.
///
/// # Behavior
///
/// Reads return what is there (at least one byte) or wait for data; they
/// return `Ok(0)` (end of file) once every writing end, in every process,
/// is closed and the pipe is empty. Writes of at most [`PIPE_BUF`] bytes are
/// atomic. A write when every reading end is closed fails with
/// [`io::ErrorKind::BrokenPipe`] (or [`Error::BrokenPipe`]) and never kills
/// the process with `SIGPIPE`, whatever its disposition.
///
/// # Capacity
///
/// A new pipe holds 64 KiB on Linux; a writer that finds it full waits for
/// the reader. [`PipeWriter::set_capacity`] changes it up to
/// `/proc/sys/fs/pipe-max-size` (1 MiB by default).
///
/// # Errors
///
/// [`Error::Io`] when the process or the system is out of file descriptors.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
///
/// let (mut reader, mut writer) = ipc_pipe::pipe()?;
/// writer.write_all(b"hello")?;
/// drop(writer); // the last writer closes: the reader sees end of file
/// let mut got = String::new();
/// reader.read_to_string(&mut got)?;
/// assert_eq!(got, "hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # References
///
/// [pipe(7)](https://man7.org/linux/man-pages/man7/pipe.7.html),
/// [pipe2(2)](https://man7.org/linux/man-pages/man2/pipe2.2.html)
#[doc(alias = "pipe2")]
pub fn pipe() -> Result<(PipeReader, PipeWriter)> {
    let (r, w) = sys::pipe().map_err(|e| Error::from_io("pipe2", e))?;
    Ok((PipeReader::adopt(r), PipeWriter::adopt(w)))
}

/// The reading end of a pipe (or of a FIFO).
///
/// Reading is through [`Read`] (also on `&PipeReader`, so several threads
/// can read one end), [`try_read`](Self::try_read) and
/// [`read_timeout`](Self::read_timeout). Dropping it closes the fd.
pub struct PipeReader(EndFd);

/// The writing end of a pipe (or of a FIFO).
///
/// Writing is through [`Write`](std::io::Write) (also on `&PipeWriter`),
/// [`try_write`](Self::try_write), [`write_timeout`](Self::write_timeout),
/// [`write_atomic`](Self::write_atomic) and
/// [`vmsplice`](Self::vmsplice). None of them lets `SIGPIPE` kill the
/// process: a write to a pipe without readers is
/// [`Error::BrokenPipe`] (or [`io::ErrorKind::BrokenPipe`]). Dropping it
/// closes the fd; when the last writing end closes, the reader sees end of
/// file.
///
/// Making a writer reads `SIGPIPE`'s disposition. While it is ignored (as
/// in every Rust program that has not opted out), writes go straight to the
/// kernel; otherwise each write holds the signal off in its thread, at the
/// cost of two `rt_sigprocmask` calls, unless a
/// [`SigpipeGuard`](crate::SigpipeGuard) does that for many writes. A
/// program that sets `SIGPIPE` from ignored back to its default while it
/// has writers should do so before making them, or hold a guard while
/// writing: writers made earlier may still write as if it were ignored.
pub struct PipeWriter(EndFd);

/// Methods and conversions that both ends share.
macro_rules! pipe_end_common {
    ($ty:ident, $std:ty, $what:literal, $interest:ident, $ready:literal) => {
        impl $ty {
            /// The pipe's capacity in bytes (`F_GETPIPE_SZ`). Both ends of a
            /// pipe report the same value.
            ///
            /// # Errors
            ///
            /// [`Error::Io`] if the fd is not a pipe.
            #[doc(alias = "F_GETPIPE_SZ")]
            pub fn capacity(&self) -> Result<usize> {
                sys::pipe_size(self.0.as_fd()).map_err(|e| Error::from_io("F_GETPIPE_SZ", e))
            }

            /// Sets the pipe's capacity (`F_SETPIPE_SZ`) and returns the
            /// capacity the kernel chose: `bytes` rounded up to a power of two
            /// pages.
            ///
            /// # Errors
            ///
            /// [`Error::CapacityRefused`] (naming
            /// `/proc/sys/fs/pipe-max-size` and its value) when `bytes` is
            /// over the limit for processes without `CAP_SYS_RESOURCE`, or the
            /// user's pipe pages are used up;
            /// [`Error::CapacityBelowContents`] when the pipe holds more than
            /// `bytes`.
            #[doc(alias = "F_SETPIPE_SZ")]
            pub fn set_capacity(&self, bytes: usize) -> Result<usize> {
                crate::pipe::set_capacity(self.0.as_fd(), bytes)
            }

            /// Sets or clears nonblocking mode: in it, [`Read`] and
            /// [`Write`](std::io::Write) return [`io::ErrorKind::WouldBlock`]
            /// instead of waiting. The `try_*` and `*_timeout` methods do not
            /// need it.
            ///
            /// On an ordinary end this is `O_NONBLOCK`, which belongs to the
            /// open file description, shared by every duplicate of this fd,
            /// including the copies a forked child inherited: they all change
            #[doc = concat!("with it. On an end made by [`reopen`](", stringify!($ty), "::reopen), only this handle's calls")]
            /// change: its description stays nonblocking, whatever the mode.
            ///
            /// # Errors
            ///
            /// [`Error::Io`] if `fcntl` fails.
            pub fn set_nonblocking(&self, nonblocking: bool) -> Result<()> {
                self.0.set_nonblocking(nonblocking).map_err(|e| Error::from_io("F_SETFL", e))
            }

            /// Whether the end is in nonblocking mode (see
            /// [`set_nonblocking`](Self::set_nonblocking)): whether [`Read`]
            /// or [`Write`](std::io::Write) return `WouldBlock` rather than wait.
            ///
            /// # Errors
            ///
            /// [`Error::Io`] if `fcntl` fails.
            pub fn is_nonblocking(&self) -> Result<bool> {
                self.0.is_nonblocking().map_err(|e| Error::from_io("F_GETFL", e))
            }

            /// Creates a new handle to the same end (`F_DUPFD_CLOEXEC`). For
            #[doc = concat!("an end made by [`reopen`](", stringify!($ty), "::reopen), a second reopening in the same")]
            /// mode, so that neither handle's mode is the other's, or where
            /// that cannot be had, a duplicate sharing its description.
            ///
            /// # Errors
            ///
            /// [`Error::Io`] when out of file descriptors.
            pub fn try_clone(&self) -> Result<Self> {
                self.0.try_clone().map($ty).map_err(|e| Error::from_io("F_DUPFD_CLOEXEC", e))
            }

            /// This end again, on an open file description of its own: the
            /// same pipe or FIFO opened anew through `/proc/self/fd`. The
            /// copies of the old description (in forked children, or made
            /// by `dup`) no longer share its mode, and this end keeps
            /// `O_NONBLOCK` set on its own for its whole life, so that the
            /// calls that must not wait (`try_*`, the timed forms, the
            /// async ends, frame writers and readers) cost one plain
            /// `read(2)` or `write(2)`, where a shared description takes
            /// `preadv2`/`pwritev2` with `RWF_NOWAIT`, the dearer calls.
            /// Everything else behaves as on any end: [`Read`], [`Write`](std::io::Write)
            /// and the other calls that wait still wait, and the end leaves
            /// (as an `OwnedFd`, a raw fd, a `Stdio` or std's end) on a
            /// description opened anew in blocking mode.
            ///
            /// The old handle is left as it was (drop it when done). A
            /// process forked later shares the new description, as with any
            /// fd: if it clears `O_NONBLOCK` there (this crate never does),
            /// the calls of this end that must not wait may wait. Such ends
            /// are known by fd number: a child made by a bare `clone(2)`
            /// (not `fork`, whose handlers tell a child apart) that closes
            /// an inherited end without its owner, and gets another file at
            /// that number, may have it taken for the end.
            ///
            /// # Errors
            ///
            /// [`Error::Io`] when `/proc` is not this process's procfs, when
            /// the pipe cannot be opened again (a FIFO's writing end with no
            /// reader left, `ENXIO`; a FIFO's reading end with no writer
            /// left, whose end of file a new description would not report
            /// to `poll`; the pipe of another user, `EACCES`), when out of
            /// fds, or when the new fd is above 4095; the end can then be
            /// used as it is.
            pub fn reopen(&self) -> Result<Self> {
                self.0.reopen().map($ty).map_err(|e| Error::from_io("reopening through /proc/self/fd", e))
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty)).field("fd", &self.0.as_raw_fd()).finish()
            }
        }

        impl AsFd for $ty {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0.as_fd()
            }
        }

        #[doc = concat!("The ", $what, "'s fd; ", $ready, ".")]
        impl ipc_sync::ready::Pollable for $ty {
            fn source(
                &self,
                interest: ipc_sync::ready::Interest,
            ) -> std::io::Result<Option<ipc_sync::ready::Source<'_>>> {
                Ok((interest == ipc_sync::ready::Interest::$interest)
                    .then(|| ipc_sync::ready::Source::fd(self.0.as_fd())))
            }
        }

        impl AsRawFd for $ty {
            fn as_raw_fd(&self) -> RawFd {
                self.0.as_raw_fd()
            }
        }

        impl IntoRawFd for $ty {
            fn into_raw_fd(self) -> RawFd {
                self.0.into_raw_fd()
            }
        }

        impl From<OwnedFd> for $ty {
            #[doc = concat!("Takes the fd as the ", $what, " of a pipe or FIFO. Nothing checks that it is one;")]
            /// calls that need a pipe then fail with [`Error::Io`].
            fn from(fd: OwnedFd) -> Self {
                $ty::adopt(fd)
            }
        }

        impl From<$ty> for OwnedFd {
            fn from(end: $ty) -> Self {
                end.0.into_fd()
            }
        }

        impl From<$ty> for Stdio {
            /// Hands the end to a child process as one of its standard
            /// streams. The parent's copy closes when the `Command` holding
            /// it is dropped.
            fn from(end: $ty) -> Self {
                Stdio::from(end.0.into_fd())
            }
        }

        impl From<$std> for $ty {
            fn from(end: $std) -> Self {
                $ty::adopt(OwnedFd::from(end))
            }
        }

        impl From<$ty> for $std {
            fn from(end: $ty) -> Self {
                <$std>::from(end.0.into_fd())
            }
        }
    };
}

impl PipeReader {
    fn adopt(fd: OwnedFd) -> Self {
        PipeReader(EndFd::new(fd))
    }
}

impl PipeWriter {
    /// Every writer is made here: it reads `SIGPIPE`'s disposition, which
    /// decides whether writes must hold the signal off (see
    /// [`SigpipeGuard`](crate::SigpipeGuard)).
    fn adopt(fd: OwnedFd) -> Self {
        sys::note_sigpipe_disposition();
        PipeWriter(EndFd::new(fd))
    }
}

pipe_end_common!(
    PipeReader,
    std::io::PipeReader,
    "reading end",
    Readable,
    "readable when bytes wait, and at end of file (every writer closed); never writable"
);
pipe_end_common!(
    PipeWriter,
    std::io::PipeWriter,
    "writing end",
    Writable,
    "writable when there is room, and when every reader closed (a write then fails); never readable"
);

fn set_capacity(fd: BorrowedFd<'_>, bytes: usize) -> Result<usize> {
    let refused = || Error::CapacityRefused { requested: bytes, max: pipe_max_size() };
    let arg = libc::c_int::try_from(bytes).map_err(|_| refused())?;
    sys::set_pipe_size(fd, arg).map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM | libc::EINVAL) => refused(),
        Some(libc::EBUSY) => Error::CapacityBelowContents { requested: bytes },
        _ => Error::from_io("F_SETPIPE_SZ", e),
    })
}

/// The value of /proc/sys/fs/pipe-max-size, if it can be read.
pub fn pipe_max_size() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/fs/pipe-max-size").ok()?.trim().parse().ok()
}

pub(crate) use ipc_sync::os::Wait;

/// Reads into `buf` without blocking past `wait`.
pub(crate) fn read_waiting(fd: BorrowedFd<'_>, buf: &mut [u8], wait: Wait) -> Result<usize> {
    loop {
        match own::read_nowait(fd, buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Error::from_io("read from pipe", e)),
        }
        wait_ready(fd, PollFlags::POLLIN, wait)?;
    }
}

/// Writes from `bufs` without blocking past `wait`: as much as fits, at
/// least one byte. At most [`PIPE_BUF`] bytes in all are written whole or
/// not at all.
pub(crate) fn write_waiting(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>], wait: Wait) -> Result<usize> {
    loop {
        match sys::without_sigpipe(|| own::write_nowait(fd, bufs)) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Error::from_io("write to pipe", e)),
        }
        wait_ready(fd, PollFlags::POLLOUT, wait)?;
    }
}

/// Waits for `events` on `fd` until the deadline in `wait`: `WouldBlock` for
/// `Wait::No`, `Timeout` once the deadline has passed.
fn wait_ready(fd: BorrowedFd<'_>, events: PollFlags, wait: Wait) -> Result<()> {
    ipc_sync::os::wait_ready(fd, events, wait).map_err(|e| match e {
        NotReady::WouldBlock => Error::WouldBlock,
        NotReady::Timeout => Error::Timeout,
        NotReady::Os(e) => Error::from_io("poll on pipe", e),
    })
}

impl PipeReader {
    /// Reads what is in the pipe without waiting.
    ///
    /// Works whether or not the end is in nonblocking mode, and does not
    /// change that mode (it uses `preadv2(RWF_NOWAIT)`).
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when the pipe is empty and a writer is still
    /// open; `Ok(0)` means end of file.
    pub fn try_read(&self, buf: &mut [u8]) -> Result<usize> {
        read_waiting(self.0.as_fd(), buf, Wait::No)
    }

    /// Reads, waiting at most `timeout` for data to arrive.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when nothing arrived in time; `Ok(0)` means end of
    /// file.
    pub fn read_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<usize> {
        read_waiting(self.0.as_fd(), buf, Wait::Until(Deadline::after(timeout)))
    }

    /// Reads, waiting until `deadline` (monotonic clock) at the latest.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when nothing arrived in time.
    pub fn read_deadline(&self, buf: &mut [u8], deadline: Instant) -> Result<usize> {
        read_waiting(self.0.as_fd(), buf, Wait::Until(Deadline::at(deadline)))
    }

    /// The number of bytes waiting in the pipe (`FIONREAD`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the ioctl fails.
    #[doc(alias = "FIONREAD")]
    pub fn available(&self) -> Result<usize> {
        sys::bytes_available(self.0.as_fd()).map_err(|e| Error::from_io("FIONREAD", e))
    }
}

impl Read for &PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        own::read(self.0.as_fd(), buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        own::readv(self.0.as_fd(), bufs)
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }
}
