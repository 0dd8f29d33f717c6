//! The raw system calls of the benchmark: fork, CPU pinning, and the plain
//! libc loops that ipc-kit is measured against.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

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
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both fds are new and owned by nothing else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
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

/// A private System V message queue, removed on drop: plain msgsnd and
/// msgrcv through a buffer of `long` type and text, as C code does it.
pub(crate) struct RawSysvQueue(libc::c_int);

#[repr(C)]
struct MsgBuf {
    mtype: libc::c_long,
    text: [u8; 8192],
}

impl RawSysvQueue {
    pub(crate) fn new() -> io::Result<RawSysvQueue> {
        // SAFETY: msgget takes plain integers.
        let id = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
        if id == -1 { Err(io::Error::last_os_error()) } else { Ok(RawSysvQueue(id)) }
    }

    /// Sends `text` (at most 8192 bytes) with type `mtype`.
    pub(crate) fn send(&self, mtype: i64, text: &[u8]) -> io::Result<()> {
        let mut msg = MsgBuf { mtype: mtype as libc::c_long, text: [0; 8192] };
        msg.text[..text.len()].copy_from_slice(text);
        loop {
            // SAFETY: `msg` is a valid msgbuf with `text.len()` <= 8192
            // bytes of text.
            let r = unsafe { libc::msgsnd(self.0, (&msg as *const MsgBuf).cast(), text.len(), 0) };
            if r == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receives a message of type `mtype` into `out`; its length.
    pub(crate) fn recv(&self, mtype: i64, out: &mut [u8]) -> io::Result<usize> {
        let mut msg = MsgBuf { mtype: 0, text: [0; 8192] };
        let room = out.len().min(8192);
        loop {
            // SAFETY: `msg` has room for `room` <= 8192 bytes of text.
            let r = unsafe { libc::msgrcv(self.0, (&mut msg as *mut MsgBuf).cast(), room, mtype as libc::c_long, 0) };
            if r >= 0 {
                let n = r as usize;
                out[..n].copy_from_slice(&msg.text[..n]);
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for RawSysvQueue {
    fn drop(&mut self) {
        // SAFETY: removes the queue this value created.
        unsafe { libc::msgctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

/// A POSIX message queue, unlinked on drop by the process that made it.
pub(crate) struct PosixQueue {
    mq: libc::mqd_t,
    name: std::ffi::CString,
    owner: u32,
}

impl PosixQueue {
    pub(crate) fn new(name: &str, msgsize: i64) -> io::Result<PosixQueue> {
        let c = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: an all-zero mq_attr is valid; the fields set below follow.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        attr.mq_maxmsg = 10;
        attr.mq_msgsize = msgsize;
        // SAFETY: `c` is NUL-terminated; with O_CREAT the mode and the
        // attribute pointer are read, and `attr` is valid.
        let mq = unsafe {
            libc::mq_open(c.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC, 0o600, &attr)
        };
        if mq == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(PosixQueue { mq, name: c, owner: std::process::id() })
    }

    pub(crate) fn send(&self, text: &[u8]) -> io::Result<()> {
        // SAFETY: sends `text.len()` bytes from a valid buffer on an open
        // queue.
        if unsafe { libc::mq_send(self.mq, text.as_ptr().cast(), text.len(), 0) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Receives into `out`, which holds at least the queue's message size.
    pub(crate) fn recv(&self, out: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `out` is valid for writes of its length.
        let r = unsafe { libc::mq_receive(self.mq, out.as_mut_ptr().cast(), out.len(), std::ptr::null_mut()) };
        usize::try_from(r).map_err(|_| io::Error::last_os_error())
    }
}

impl Drop for PosixQueue {
    fn drop(&mut self) {
        // SAFETY: closes this process's descriptor.
        unsafe { libc::mq_close(self.mq) };
        if self.owner == std::process::id() {
            // SAFETY: `name` is NUL-terminated.
            unsafe { libc::mq_unlink(self.name.as_ptr()) };
        }
    }
}

/// `mkfifo(3)` at `path` with mode 0600.
pub(crate) fn raw_mkfifo(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is NUL-terminated.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Plain `open(2)` of `path` with `flags` (and `O_CLOEXEC`).
pub(crate) fn raw_open(path: &std::path::Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is NUL-terminated; no mode without O_CREAT.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Plain `read(2)` until `buf` is full; false at end of file.
pub(crate) fn raw_read_exact(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the rest of `buf` is valid for writes.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        match n {
            0 => return Ok(false),
            n if n > 0 => got += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(true)
}
