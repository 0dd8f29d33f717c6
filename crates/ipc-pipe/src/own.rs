//! Pipe ends on an open file description of their own
//! ([`PipeWriter::reopen`](crate::PipeWriter::reopen)), kept in
//! nonblocking mode for their whole life, so that the calls that must not
//! wait cost one plain `read(2)` or `write(2)` instead of
//! `preadv2`/`pwritev2` with `RWF_NOWAIT`, and no other holder of the pipe
//! can change that mode.
//!
//! Such ends are marked in a process-wide table by fd number, so that
//! every path that reaches the fd (also through `AsFd`, as
//! `FrameWriter<W>` does) knows: the calls that must not wait go straight
//! to the kernel, and the calls that wait poll between attempts, as the
//! kernel would have waited on a blocking description. The mode the end's
//! own calls follow ([`set_nonblocking`](crate::PipeWriter::set_nonblocking))
//! is kept in the table too: the description's flag never changes.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use ipc_sync::os::{PollFlags, poll_now, poll_until};
use ipc_sync::{Deadline, retry_eintr};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::stat::{Mode, SFlag, fstat};

use crate::sys;

/// Ends of their own are kept for fds below this number; an end reopened
/// at a higher number is refused (and the end stays as it was).
const TRACKED: usize = 4096;

/// A table entry's bit: the end's calls follow nonblocking mode (they
/// return `WouldBlock` rather than wait), as its user asked.
const NONBLOCKING: u64 = 1;

/// One entry per fd number below [`TRACKED`]: 0, or the end's mode
/// ([`NONBLOCKING`]) and, above it, the process that last knew the fd for
/// an end of its own (`ipc_sync::process::forks() + 1`). Set and cleared
/// only by [`Mark`], which lives inside the end that owns the fd: set
/// before the fd is used, cleared before it closes.
///
/// A forked child inherits the table with the fds. An entry made by the
/// process it was forked from is checked once in the child before it is
/// trusted (the fd may have been closed there behind its end's back, and
/// the number reused): it must still be the same pipe or FIFO ([`FILES`]),
/// in nonblocking mode. A child made by a bare `clone(2)` runs none of
/// `fork`'s handlers and counts as the process it came from: one that
/// closes an inherited end without its owner and reuses the number may
/// have the new fd taken for that end.
static OWN: [AtomicU64; TRACKED] = [const { AtomicU64::new(0) }; TRACKED];

/// For each entry of [`OWN`], the file it was made for (see [`file_key`]).
static FILES: [AtomicU64; TRACKED] = [const { AtomicU64::new(0) }; TRACKED];

/// A pipe's device and inode, folded into one word.
fn file_key(st: &nix::sys::stat::FileStat) -> u64 {
    st.st_ino ^ st.st_dev.rotate_left(32)
}

/// Whether the file is a pipe or FIFO.
fn is_fifo(st: &nix::sys::stat::FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO
}

/// This process's tag in [`OWN`].
fn tag() -> u64 {
    (ipc_sync::process::forks() + 1) << 1
}

/// What the calls on `fd` follow when it is an end of its own: `Some`
/// with whether they follow nonblocking mode; `None` for any other fd.
pub(crate) fn own_mode(fd: BorrowedFd<'_>) -> Option<bool> {
    let n = usize::try_from(fd.as_raw_fd()).ok()?;
    let entry = OWN.get(n)?;
    // Relaxed: an end is handed to another thread only with the
    // synchronization that takes, after its entry was set.
    let value = entry.load(Ordering::Relaxed);
    if value == 0 {
        return None;
    }
    let me = tag();
    if value & !NONBLOCKING != me {
        // Made before a fork, in the process this one was forked from.
        let still = is_nonblocking_pipe(fd, FILES[n].load(Ordering::Relaxed));
        let new = if still { me | (value & NONBLOCKING) } else { 0 };
        let _ = entry.compare_exchange(value, new, Ordering::Relaxed, Ordering::Relaxed);
        if !still {
            return None;
        }
    }
    Some(value & NONBLOCKING != 0)
}

/// Whether `fd` is an end of its own (whatever mode its calls follow).
pub(crate) fn is_own(fd: BorrowedFd<'_>) -> bool {
    own_mode(fd).is_some()
}

/// Whether `fd` is the pipe or FIFO `key` names, on a nonblocking
/// description.
fn is_nonblocking_pipe(fd: BorrowedFd<'_>, key: u64) -> bool {
    let same = fstat(fd).is_ok_and(|st| is_fifo(&st) && file_key(&st) == key);
    same && sys::nonblocking(fd).unwrap_or(false)
}

/// The entry of an fd that is an end of its own; cleared when dropped.
#[derive(Debug)]
struct Mark(usize);

impl Mark {
    fn new(fd: &OwnedFd, nonblocking: bool) -> Option<Mark> {
        let n = usize::try_from(fd.as_raw_fd()).ok().filter(|&n| n < TRACKED)?;
        let key = fstat(fd).ok().map(|st| file_key(&st))?;
        FILES[n].store(key, Ordering::Relaxed);
        OWN[n].store(tag() | u64::from(nonblocking), Ordering::Relaxed);
        Some(Mark(n))
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        OWN[self.0].store(0, Ordering::Relaxed);
    }
}

/// The fd of a pipe end, and its mark when the end has a description of
/// its own.
#[derive(Debug)]
pub(crate) struct EndFd {
    // Declared first, so dropped first: the entry is cleared before the fd
    // closes and its number can be reused.
    mark: Option<Mark>,
    fd: OwnedFd,
}

impl EndFd {
    pub(crate) fn new(fd: OwnedFd) -> EndFd {
        EndFd { mark: None, fd }
    }

    /// The same pipe or FIFO opened again through `/proc/self/fd`, with the
    /// same access, on a description of its own in nonblocking mode; its
    /// calls follow `nonblocking`.
    fn reopen_as(&self, nonblocking: bool) -> io::Result<EndFd> {
        let fd = reopen_fd(self.fd.as_fd())?;
        let mark = Mark::new(&fd, nonblocking).ok_or_else(|| {
            io::Error::new(io::ErrorKind::OutOfMemory, format!("fd {} is above the {TRACKED} tracked", fd.as_raw_fd()))
        })?;
        Ok(EndFd { mark: Some(mark), fd })
    }

    /// See [`reopen_as`](Self::reopen_as): an end whose calls wait.
    pub(crate) fn reopen(&self) -> io::Result<EndFd> {
        self.reopen_as(false)
    }

    /// A second handle: for an end of its own, a description of its own
    /// again in the same mode, or where that cannot be had a duplicate
    /// sharing this one's (whose flag never changes either); else a
    /// duplicate of the fd.
    pub(crate) fn try_clone(&self) -> io::Result<EndFd> {
        let Some(nonblocking) = self.mark.as_ref().and_then(|_| own_mode(self.fd.as_fd())) else {
            return self.fd.try_clone().map(EndFd::new);
        };
        if let Ok(end) = self.reopen_as(nonblocking) {
            return Ok(end);
        }
        let fd = self.fd.try_clone()?;
        match Mark::new(&fd, nonblocking) {
            Some(mark) => Ok(EndFd { mark: Some(mark), fd }),
            // Above the tracked range: an ordinary end on a fresh
            // description, or failing that, the error.
            None => ordinary_copy(fd.as_fd()).map(EndFd::new),
        }
    }

    /// Sets the mode the end's calls follow: for an end of its own, in its
    /// entry (its description stays nonblocking); else `O_NONBLOCK`.
    pub(crate) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match &self.mark {
            Some(mark) => {
                OWN[mark.0].store(tag() | u64::from(on), Ordering::Relaxed);
                Ok(())
            }
            None => sys::set_nonblocking(self.fd.as_fd(), on),
        }
    }

    /// Whether the end's calls follow nonblocking mode.
    pub(crate) fn is_nonblocking(&self) -> io::Result<bool> {
        follows_nonblocking(self.fd.as_fd())
    }

    /// The fd, for use outside this crate's ends. An end of its own hands
    /// over a description of the pipe opened anew in blocking mode, as
    /// whoever receives it expects (its own stays nonblocking, for any
    /// copy a fork made); where none can be opened, its own, made blocking.
    pub(crate) fn into_fd(self) -> OwnedFd {
        let EndFd { mark, fd } = self;
        let Some(mark) = mark else { return fd };
        if let Ok(fresh) = ordinary_copy(fd.as_fd()) {
            return fresh;
        }
        drop(mark);
        // Best effort: clearing O_NONBLOCK on a valid fd does not fail.
        let _ = sys::set_nonblocking(fd.as_fd(), false);
        fd
    }
}

/// `fd`'s pipe or FIFO opened again through `/proc/self/fd`, with the same
/// access, in nonblocking mode (the open itself never waits: a FIFO's
/// writing end opened blocking would wait for a reader), checked to be the
/// same pipe, and still at end of file if `fd` is (a FIFO's reading end
/// opened while it has no writer does not report that to `poll`).
fn reopen_fd(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let access = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?) & OFlag::O_ACCMODE;
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let flags = access | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
    let new = nix::fcntl::open(path.as_str(), flags, Mode::empty())?;
    // The same pipe (a /proc that is not this process's, or not procfs at
    // all, could name another file).
    let (was, now) = (fstat(fd)?, fstat(&new)?);
    if (was.st_dev, was.st_ino) != (now.st_dev, now.st_ino) || !is_fifo(&now) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{path} is not the same pipe")));
    }
    let hup = |f: BorrowedFd<'_>| poll_now(f, PollFlags::POLLIN).map(|r| r.contains(PollFlags::POLLHUP));
    if hup(fd)? && !hup(new.as_fd())? {
        return Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            format!("{path} has no writer left, which a new description would not report"),
        ));
    }
    Ok(new)
}

/// A description of `fd`'s pipe of its own, in blocking mode.
fn ordinary_copy(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let fresh = reopen_fd(fd)?;
    sys::set_nonblocking(fresh.as_fd(), false)?;
    Ok(fresh)
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

/// Runs `op`, a call that waits, on `fd`: on an end of its own in
/// blocking mode, whose description is nonblocking all the same, it polls
/// for `events` whenever `op` finds that it would block, and tries again,
/// as the kernel would have waited. On any other fd, or an end of its own
/// in nonblocking mode, `op`'s result is returned as it is.
pub(crate) fn waiting<T>(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && own_mode(fd) == Some(false) => {
                poll_until(fd, events, Deadline::never())?;
            }
            other => return other,
        }
    }
}

/// Whether the calls on `fd` follow nonblocking mode: an end of its own's
/// mode, else the description's flag.
fn follows_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    match own_mode(fd) {
        Some(on) => Ok(on),
        None => sys::nonblocking(fd),
    }
}

/// [`waiting`] for a call between two fds (`splice`, `tee`), either of
/// which may be an end of its own (whose nonblocking description makes
/// the kernel answer `WouldBlock` for the whole call): when it would
/// block, and both sides follow blocking mode, the side that stops it is
/// waited on (`from` without data, or else `to` without room), and the
/// call tried again; when either side follows nonblocking mode, the
/// call's `WouldBlock` is returned, as between ordinary ends.
pub(crate) fn waiting_between<T>(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && (is_own(from) || is_own(to)) => {
                if follows_nonblocking(from)? || follows_nonblocking(to)? {
                    return Err(e);
                }
                if poll_now(from, PollFlags::POLLIN)?.is_empty() {
                    poll_until(from, PollFlags::POLLIN, Deadline::never())?;
                } else {
                    poll_until(to, PollFlags::POLLOUT, Deadline::never())?;
                }
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

/// A read that never waits: on an end of its own, whose description is
/// nonblocking, a plain `read`; on any other fd, `sys::read_nowait`.
pub(crate) fn read_nowait(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    if is_own(fd) { sys::read(fd, buf) } else { sys::read_nowait(fd, buf) }
}

/// A write that never waits: on an end of its own, a plain `write` (for
/// one buffer, the cheaper call) or `writev`; on any other fd,
/// `sys::write_nowait`. Call it under `without_sigpipe`.
pub(crate) fn write_nowait(fd: BorrowedFd<'_>, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    match bufs {
        _ if !is_own(fd) => sys::write_nowait(fd, bufs),
        [one] => sys::write(fd, one),
        _ => sys::writev(fd, bufs),
    }
}
