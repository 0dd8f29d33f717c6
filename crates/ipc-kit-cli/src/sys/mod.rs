//! The raw system calls of the benchmark: fork, CPU pinning, process
//! groups, and the plain libc loops of the byte-stream workloads; the raw
//! mechanisms that ipc-kit is compared with are in [`raw`]. Also the one
//! file-system check of `ls`.
#![allow(unsafe_code)]

pub(crate) mod raw;
pub(crate) mod ring;

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// The result of [`fork`].
pub(crate) enum Forked {
    Child,
    Parent(libc::pid_t),
}

/// Forks. Call it only while the process has a single thread.
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: the benchmark forks only from its single thread (helper
    // threads are joined first); the child runs a read loop and `_exit`s.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Waits for `pid` and returns its exit code (128 + signal when killed).
pub(crate) fn wait(pid: libc::pid_t) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int for waitpid to fill.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    if libc::WIFEXITED(status) { Ok(libc::WEXITSTATUS(status)) } else { Ok(128 + libc::WTERMSIG(status)) }
}

/// Ends a forked child at once.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and never returns.
    unsafe { libc::_exit(code) }
}

/// Pins the calling thread to `cpu`; false when that is not possible.
pub(crate) fn pin_to_cpu(cpu: usize) -> bool {
    // SAFETY: an all-zero cpu_set_t is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes one bit inside `set`; it checks `cpu` against
    // the set's size.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the set is valid and its size given.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// A raw pipe of `size` bytes' capacity: (read end, write end).
pub(crate) fn raw_pipe(size: usize) -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = raw::pipe()?;
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_SETPIPE_SZ takes an int and changes only this pipe.
    if unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, size) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok((r, w))
}

/// Plain `write(2)` of `buf` again and again until `total` bytes are out.
pub(crate) fn raw_write_loop(fd: BorrowedFd<'_>, buf: &[u8], total: u64) -> io::Result<()> {
    let mut left = total;
    while left > 0 {
        let len = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        // SAFETY: `buf` is valid for reads of `len <= buf.len()` bytes.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), len) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        left -= n as u64;
    }
    Ok(())
}

/// Plain `vmsplice(2)` of `buf` again and again until `total` bytes are in.
pub(crate) fn raw_vmsplice_loop(fd: BorrowedFd<'_>, buf: &[u8], total: u64) -> io::Result<()> {
    let mut left = total;
    let mut off = 0;
    while left > 0 {
        let len = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len() - off);
        let iov = libc::iovec { iov_base: buf[off..].as_ptr() as *mut libc::c_void, iov_len: len };
        // SAFETY: one iovec over `buf[off..off + len]`, which stays alive;
        // no SPLICE_F_GIFT, so the kernel only takes page references.
        let n = unsafe { libc::vmsplice(fd.as_raw_fd(), &iov, 1, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = n as usize;
        left -= n as u64;
        off = (off + n) % buf.len();
    }
    Ok(())
}

/// Plain `read(2)` into `buf` until end of file; the bytes read.
pub(crate) fn raw_read_loop(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0;
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => return Ok(total),
            n if n > 0 => total += n as u64,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// Raw `FUTEX_WAIT` (shared) while `*word == expected`.
pub(crate) fn futex_wait(word: &std::sync::atomic::AtomicU32, expected: u32) {
    // SAFETY: `word` is a valid aligned u32 for the call; no timeout.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, std::ptr::null::<u8>()) };
}

/// Raw `FUTEX_WAKE` (shared) of up to `n` waiters.
pub(crate) fn futex_wake(word: &std::sync::atomic::AtomicU32, n: i32) {
    // SAFETY: `word` is a valid aligned u32; FUTEX_WAKE reads nothing else.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
}

/// Makes the calling process the leader of a new process group, so that
/// it and the processes it forks can be killed together.
pub(crate) fn new_process_group() {
    // SAFETY: setpgid(0, 0) changes only the calling process's group.
    unsafe { libc::setpgid(0, 0) };
}

/// Has the kernel SIGKILL the calling process when its parent exits.
pub(crate) fn die_with_parent() {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and changes only the
    // calling process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
}

/// SIGKILLs every process of the group `pgid`.
pub(crate) fn kill_group(pgid: libc::pid_t) {
    // SAFETY: kill with a negative pid signals a process group; no memory
    // is involved.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
}

/// The file-system type of mqueue mounts (`MQUEUE_MAGIC` in
/// `linux/magic.h`).
const MQUEUE_MAGIC: nix::sys::statfs::FsType = nix::sys::statfs::FsType(0x1980_0202);

/// Whether `path` is in an mqueue file system (where the kernel shows the
/// POSIX message queues as files); false when it cannot be checked.
pub(crate) fn is_mqueue(path: &std::path::Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|fs| fs.filesystem_type() == MQUEUE_MAGIC)
}
