//! The system calls of a channel's liveness signals: pipes whose write ends
//! stand for the processes that may still claim a side, and open file
//! description locks that stand for a side's claiming process. Every
//! `unsafe` block of the channel is here, one operation per block.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// `pipe2(O_CLOEXEC)`: (read end, write end).
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two fds into an array of two ints.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both are new fds the kernel just returned, owned by nobody
    // else.
    let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: as above.
    let write = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((read, write))
}

/// Whether every write end of the pipe whose read end is `fd` is closed
/// (`POLLHUP`), asked without waiting.
pub(super) fn hung_up(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: 0, revents: 0 };
    loop {
        // SAFETY: poll reads and writes one pollfd through a valid pointer;
        // a zero timeout never blocks.
        match cvt(unsafe { libc::poll(&mut p, 1, 0) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(p.revents & libc::POLLHUP != 0),
        }
    }
}

/// A new open file description of the file behind `fd`
/// (`open("/proc/self/fd/N", O_RDWR | O_CLOEXEC)`): locks taken through it
/// belong to it alone, not to the descriptions a forked process shares.
pub(super) fn reopen(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(io::Error::other)?;
    // SAFETY: `path` is NUL-terminated; open returns a new fd or -1.
    let new = cvt(unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    // SAFETY: a new fd the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn one_byte(kind: libc::c_int, at: u64) -> libc::flock {
    // SAFETY: an all-zero flock is a valid value (l_pid 0, as OFD locks need).
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = kind as libc::c_short;
    l.l_whence = libc::SEEK_SET as libc::c_short;
    l.l_start = at as libc::off_t;
    l.l_len = 1;
    l
}

/// Takes an exclusive open-file-description lock on byte `at` of the file,
/// without waiting (`F_OFD_SETLK`); `false` when another description holds
/// it. It is released when every fd of this description is closed — by
/// the kernel too, when the process dies.
pub(super) fn lock_byte(fd: BorrowedFd<'_>, at: u64) -> io::Result<bool> {
    let l = one_byte(libc::F_WRLCK, at);
    loop {
        // SAFETY: F_OFD_SETLK reads one flock through a valid pointer.
        match cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &l) }) {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// Takes an exclusive record lock of this process on byte `at` of the
/// file, without waiting (`F_SETLK`); `false` when another process or
/// description holds it. Forked children do not inherit it; the kernel
/// frees it when the process dies or closes any fd of the file.
pub(super) fn lock_byte_for_process(fd: BorrowedFd<'_>, at: u64) -> io::Result<bool> {
    let l = one_byte(libc::F_WRLCK, at);
    loop {
        // SAFETY: F_SETLK reads one flock through a valid pointer.
        match cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLK, &l) }) {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// Frees this process's record lock on byte `at` of the file (`F_SETLK`
/// with `F_UNLCK`).
pub(super) fn unlock_byte_for_process(fd: BorrowedFd<'_>, at: u64) -> io::Result<()> {
    let l = one_byte(libc::F_UNLCK, at);
    // SAFETY: F_SETLK reads one flock through a valid pointer.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLK, &l) }).map(drop)
}

/// Whether another open file description holds a lock on byte `at` of the
/// file (`F_OFD_GETLK`).
pub(super) fn byte_locked(fd: BorrowedFd<'_>, at: u64) -> io::Result<bool> {
    let mut l = one_byte(libc::F_WRLCK, at);
    // SAFETY: F_OFD_GETLK reads and writes one flock through a valid
    // pointer.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut l) })?;
    Ok(l.l_type != libc::F_UNLCK as libc::c_short)
}
