//! The system calls of ipc-fifo. Every `unsafe` block of the crate is
//! here, one call per block, each with the reason it is sound.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// `mkfifo(3)`.
pub(crate) fn mkfifo(path: &CStr, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated.
    cvt(unsafe { libc::mkfifo(path.as_ptr(), mode) }).map(drop)
}

/// `link(2)`: a second name for a file; fails with `EEXIST` rather than
/// replace anything.
pub(crate) fn link(from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: both paths are NUL-terminated.
    cvt(unsafe { libc::link(from.as_ptr(), to.as_ptr()) }).map(drop)
}

/// `open(2)` with `O_CLOEXEC | O_NOFOLLOW` added; `EINTR` is returned.
pub(crate) fn open(path: &CStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: `path` is NUL-terminated; no mode is read without O_CREAT.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) })?;
    // SAFETY: open returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The file type bits and (device, inode) of an open fd (`fstat`).
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<(libc::mode_t, (u64, u64))> {
    // SAFETY: an all-zero stat is a valid value for the kernel to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one stat through a valid pointer.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok((st.st_mode & libc::S_IFMT, (st.st_dev, st.st_ino)))
}

/// Clears `O_NONBLOCK` on an fd this crate just opened (its own open file
/// description, shared with no one yet).
pub(crate) fn set_blocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: F_SETFL takes an int of status flags.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) }).map(drop)
}

/// `poll(2)` on one fd: whether `events` (or HUP/ERR) came within
/// `timeout_ms`. `EINTR` is returned.
pub(crate) fn poll(fd: BorrowedFd<'_>, events: libc::c_short, timeout_ms: libc::c_int) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 };
    // SAFETY: one valid pollfd.
    Ok(cvt(unsafe { libc::poll(&mut pfd, 1, timeout_ms) })? > 0)
}

/// Whether the pipe or FIFO that `fd`, a writing end, leads to has no
/// reader left: the kernel reports `POLLERR` on a writer then. Does not
/// wait.
pub(crate) fn readers_gone(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
    loop {
        // SAFETY: one valid pollfd; a zero timeout does not wait.
        match cvt(unsafe { libc::poll(&mut pfd, 1, 0) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map(|_| pfd.revents & libc::POLLERR != 0),
        }
    }
}

/// `poll(2)` on several fds, each for reading (`true`) or writing, until
/// one is ready (or has HUP/ERR), `timeout_ms` passes (`None`: no limit;
/// longer waits are cut into spans the call takes) or a signal comes.
pub(crate) fn poll_many(fds: &[(BorrowedFd<'_>, bool)], timeout_ms: Option<u128>) -> io::Result<()> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, read)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: if read { libc::POLLIN } else { libc::POLLOUT },
            revents: 0,
        })
        .collect();
    let timeout = timeout_ms.map_or(-1, |ms| libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX));
    let count = libc::nfds_t::try_from(pfds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `pfds` holds `count` valid pollfds that the call may write.
    match cvt(unsafe { libc::poll(pfds.as_mut_ptr(), count, timeout) }) {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        other => other.map(drop),
    }
}
