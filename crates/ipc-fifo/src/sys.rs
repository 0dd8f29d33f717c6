//! The system calls of ipc-fifo, all through nix and ipc-sync's `poll`:
//! the crate has no `unsafe` code.

use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use ipc_sync::os::{PollFlags, poll_now};
use nix::fcntl::{AT_FDCWD, AtFlags, FcntlArg, OFlag, fcntl};
use nix::sys::stat::Mode;

/// `mkfifo(3)` with permissions `mode`.
pub(crate) fn mkfifo(path: &CStr, mode: u32) -> io::Result<()> {
    Ok(nix::unistd::mkfifo(path, Mode::from_bits_truncate(mode & 0o777))?)
}

/// `link(2)`: a second name for a file; fails with `EEXIST` rather than
/// replace anything.
pub(crate) fn link(from: &CStr, to: &CStr) -> io::Result<()> {
    Ok(nix::unistd::linkat(AT_FDCWD, from, AT_FDCWD, to, AtFlags::empty())?)
}

/// `open(2)` with `O_CLOEXEC | O_NOFOLLOW` added; `EINTR` is returned.
pub(crate) fn open(path: &CStr, flags: OFlag) -> io::Result<OwnedFd> {
    Ok(nix::fcntl::open(path, flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW, Mode::empty())?)
}

/// The file type bits and (device, inode) of an open fd (`fstat`).
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<(libc::mode_t, (u64, u64))> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok((st.st_mode & libc::S_IFMT, (st.st_dev, st.st_ino)))
}

/// Clears `O_NONBLOCK` on an fd this crate just opened (its own open file
/// description, shared with no one yet).
pub(crate) fn set_blocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags & !OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Whether the pipe or FIFO that `fd`, a writing end, leads to has no
/// reader left: the kernel reports `POLLERR` on a writer then. Does not
/// wait.
pub(crate) fn readers_gone(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(poll_now(fd, PollFlags::POLLOUT)?.contains(PollFlags::POLLERR))
}
