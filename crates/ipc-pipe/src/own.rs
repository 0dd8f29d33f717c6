//! Pipe ends on an open file description of their own
//! ([`PipeWriter::reopen`](crate::PipeWriter::reopen)), kept in
//! nonblocking mode, so that the calls that must not wait cost one plain
//! `read(2)` or `write(2)` instead of `preadv2`/`pwritev2` with
//! `RWF_NOWAIT`, and no other holder of the pipe can change that mode.
//!
//! Such ends are marked in a process-wide table by fd number, so that
//! every path that reaches the fd (also through `AsFd`, as
//! `FrameWriter<W>` does) knows: the calls that must not wait go straight
//! to the kernel, and the calls that wait poll between attempts, as the
//! kernel would have waited on a blocking description.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use ipc_sync::os::{PollFlags, poll_until};
use ipc_sync::{Deadline, retry_eintr};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::stat::{Mode, SFlag, fstat};

use crate::sys;

/// Ends of their own are kept for fds below this number; an end reopened
/// at a higher number is refused (and the end stays as it was).
const TRACKED: usize = 4096;

/// One bit per fd number below [`TRACKED`]: set while that fd is an end of
/// its own. Set and cleared only by [`Mark`], which lives inside the end
/// that owns the fd: set before the fd is used, cleared before it closes.
static OWN: [AtomicU64; TRACKED / 64] = [const { AtomicU64::new(0) }; TRACKED / 64];

/// Whether `fd` is an end of its own: its open file description is this
/// end's alone and in nonblocking mode.
pub(crate) fn is_own(fd: BorrowedFd<'_>) -> bool {
    let Ok(n) = usize::try_from(fd.as_raw_fd()) else { return false };
    // Relaxed: an end is handed to another thread only with the
    // synchronization that takes, after its mark was set.
    OWN.get(n / 64).is_some_and(|word| word.load(Ordering::Relaxed) & (1 << (n % 64)) != 0)
}

/// The mark of an fd that is an end of its own; cleared when dropped.
#[derive(Debug)]
struct Mark(usize);

impl Mark {
    fn new(fd: &OwnedFd) -> Option<Mark> {
        let n = usize::try_from(fd.as_raw_fd()).ok().filter(|&n| n < TRACKED)?;
        OWN[n / 64].fetch_or(1 << (n % 64), Ordering::Relaxed);
        Some(Mark(n))
    }

    /// Clears the mark (again, after [`clear`](Self::clear), is harmless:
    /// the fd is still open, so no other end has its number).
    fn clear(&self) {
        OWN[self.0 / 64].fetch_and(!(1 << (self.0 % 64)), Ordering::Relaxed);
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The fd of a pipe end, and its mark when the end has a description of
/// its own.
#[derive(Debug)]
pub(crate) struct EndFd {
    // Declared first, so dropped first: the mark is cleared before the fd
    // closes and its number can be reused.
    mark: Option<Mark>,
    fd: OwnedFd,
}

impl EndFd {
    pub(crate) fn new(fd: OwnedFd) -> EndFd {
        EndFd { mark: None, fd }
    }

    /// Whether the end has a description of its own.
    pub(crate) fn is_own(&self) -> bool {
        is_own(self.fd.as_fd())
    }

    /// The same pipe or FIFO opened again through `/proc/self/fd`, with the
    /// same access, on a description of its own in nonblocking mode.
    pub(crate) fn reopen(&self) -> io::Result<EndFd> {
        let access = OFlag::from_bits_retain(fcntl(&self.fd, FcntlArg::F_GETFL)?) & OFlag::O_ACCMODE;
        let path = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        let flags = access | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
        let fd = nix::fcntl::open(path.as_str(), flags, Mode::empty())?;
        // The same pipe (a /proc that is not this process's, or not procfs
        // at all, could name another file).
        let (was, now) = (fstat(&self.fd)?, fstat(&fd)?);
        let fifo = SFlag::from_bits_truncate(now.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO;
        if (was.st_dev, was.st_ino) != (now.st_dev, now.st_ino) || !fifo {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{path} is not the same pipe")));
        }
        let mark = Mark::new(&fd).ok_or_else(|| {
            io::Error::new(io::ErrorKind::OutOfMemory, format!("fd {} is above the {TRACKED} tracked", fd.as_raw_fd()))
        })?;
        Ok(EndFd { mark: Some(mark), fd })
    }

    /// A second handle: for an end of its own, a description of its own
    /// again (so that neither can change the other's mode), else a
    /// duplicate of the fd.
    pub(crate) fn try_clone(&self) -> io::Result<EndFd> {
        if self.is_own() { self.reopen() } else { self.fd.try_clone().map(EndFd::new) }
    }

    /// Makes the end an ordinary one again, on the same description: in
    /// blocking mode, and no longer marked.
    pub(crate) fn to_ordinary(&self) -> io::Result<()> {
        if let Some(mark) = self.mark.as_ref().filter(|_| self.is_own()) {
            sys::set_nonblocking(self.fd.as_fd(), false)?;
            mark.clear();
        }
        Ok(())
    }

    /// The fd, for use outside this crate's ends: an end of its own is made
    /// ordinary first (in blocking mode), as whoever receives it expects.
    pub(crate) fn into_fd(mut self) -> OwnedFd {
        // Best effort: clearing O_NONBLOCK on a valid fd does not fail.
        let _ = self.to_ordinary();
        self.mark = None;
        self.fd
    }
}

impl AsFd for EndFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for EndFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl IntoRawFd for EndFd {
    fn into_raw_fd(self) -> RawFd {
        self.into_fd().into_raw_fd()
    }
}

/// Runs `op`, a call that waits, on `fd`: on an end of its own, whose
/// description is nonblocking, it polls for `events` whenever `op` finds
/// that it would block, and tries again, as the kernel would have waited.
/// On any other fd `op`'s result is returned as it is (`WouldBlock` from a
/// description someone made nonblocking included).
pub(crate) fn waiting<T>(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && is_own(fd) => {
                poll_until(fd, events, Deadline::never())?;
            }
            other => return other,
        }
    }
}

/// [`waiting`] for a call between two fds (`splice`, `tee`): when it
/// would block, the side that stops it is found (`from` without data, or
/// else `to` without room) and waited on if it is an end of its own; if it
/// is not, the call's `WouldBlock` is returned as it is.
pub(crate) fn waiting_between<T>(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && (is_own(from) || is_own(to)) => {
                let (fd, events) = if ipc_sync::os::poll_now(from, PollFlags::POLLIN)?.is_empty() {
                    (from, PollFlags::POLLIN)
                } else {
                    (to, PollFlags::POLLOUT)
                };
                if !is_own(fd) {
                    return Err(e);
                }
                poll_until(fd, events, Deadline::never())?;
            }
            other => return other,
        }
    }
}

/// One `read(2)` that waits (see [`waiting`]), `EINTR` retried.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    waiting(fd, PollFlags::POLLIN, || retry_eintr(|| sys::read(fd, buf)))
}

/// One `readv(2)` that waits (see [`waiting`]), `EINTR` retried.
pub(crate) fn readv(fd: BorrowedFd<'_>, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
    waiting(fd, PollFlags::POLLIN, || retry_eintr(|| sys::readv(fd, bufs)))
}

/// One `write(2)` that waits (see [`waiting`]), `EINTR` retried. Call it
/// under `without_sigpipe`.
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    waiting(fd, PollFlags::POLLOUT, || retry_eintr(|| sys::write(fd, buf)))
}

/// One `writev(2)` that waits (see [`waiting`]), `EINTR` retried. Call it
/// under `without_sigpipe`.
pub(crate) fn writev(fd: BorrowedFd<'_>, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    waiting(fd, PollFlags::POLLOUT, || retry_eintr(|| sys::writev(fd, bufs)))
}

/// One `vmsplice(2)` that waits (see [`waiting`]), `EINTR` retried. Call
/// it under `without_sigpipe`.
pub(crate) fn vmsplice(fd: BorrowedFd<'_>, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    waiting(fd, PollFlags::POLLOUT, || retry_eintr(|| sys::vmsplice(fd, bufs, 0)))
}
