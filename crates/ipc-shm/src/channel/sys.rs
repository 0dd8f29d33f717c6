//! The system calls of a channel's liveness signals: pipes whose write ends
//! stand for the processes that may still claim a side, and locks on one
//! byte of the channel's file that stand for a side's claiming process.
//! All through nix: no `unsafe` here.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use ipc_sync::os::{PollFlags, poll_now};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::stat::Mode;

/// `pipe2(O_CLOEXEC)`: (read end, write end).
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// Whether every write end of the pipe whose read end is `fd` is closed
/// (`POLLHUP`), asked without waiting.
pub(super) fn hung_up(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(poll_now(fd, PollFlags::empty())?.contains(PollFlags::POLLHUP))
}

/// A new open file description of the file behind `fd`
/// (`open("/proc/self/fd/N", O_RDWR | O_CLOEXEC)`): locks taken through it
/// belong to it alone, not to the descriptions a forked process shares.
pub(super) fn reopen(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    Ok(nix::fcntl::open(path.as_str(), OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())?)
}

/// A lock (`F_WRLCK`) or unlock (`F_UNLCK`) of the one byte at `at`.
fn one_byte(kind: libc::c_int, at: u64) -> libc::flock {
    // l_pid 0, as OFD locks need.
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: at as libc::off_t,
        l_len: 1,
        l_pid: 0,
    }
}

/// Takes an exclusive lock on byte `at` through `request` (`F_OFD_SETLK`
/// or `F_SETLK`: without waiting), again after `EINTR`; `false` when
/// another lock holds the byte.
fn try_lock(fd: BorrowedFd<'_>, at: u64, request: fn(&libc::flock) -> FcntlArg<'_>) -> io::Result<bool> {
    let l = one_byte(libc::F_WRLCK, at);
    loop {
        match fcntl(fd, request(&l)) {
            Ok(_) => return Ok(true),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN | Errno::EACCES) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Takes an exclusive open-file-description lock on byte `at` of the file,
/// without waiting (`F_OFD_SETLK`); `false` when another description holds
/// it. It is released when every fd of this description is closed — by
/// the kernel too, when the process dies.
pub(super) fn lock_byte(fd: BorrowedFd<'_>, at: u64) -> io::Result<bool> {
    try_lock(fd, at, |l| FcntlArg::F_OFD_SETLK(l))
}

/// Takes an exclusive record lock of this process on byte `at` of the
/// file, without waiting (`F_SETLK`); `false` when another process or
/// description holds it. Forked children do not inherit it; the kernel
/// frees it when the process dies or closes any fd of the file.
pub(super) fn lock_byte_for_process(fd: BorrowedFd<'_>, at: u64) -> io::Result<bool> {
    try_lock(fd, at, |l| FcntlArg::F_SETLK(l))
}

/// Frees this process's record lock on byte `at` of the file (`F_SETLK`
/// with `F_UNLCK`).
pub(super) fn unlock_byte_for_process(fd: BorrowedFd<'_>, at: u64) -> io::Result<()> {
    fcntl(fd, FcntlArg::F_SETLK(&one_byte(libc::F_UNLCK, at)))?;
    Ok(())
}

/// Whether another open file description holds a lock on byte `at` of the
/// file (`F_OFD_GETLK`).
pub(super) fn byte_locked(fd: BorrowedFd<'_>, at: u64) -> io::Result<bool> {
    let mut l = one_byte(libc::F_WRLCK, at);
    fcntl(fd, FcntlArg::F_OFD_GETLK(&mut l))?;
    Ok(l.l_type != libc::F_UNLCK as libc::c_short)
}
