//! The raw side of `ipc-kit bench`: each mechanism driven with plain libc
//! calls, the way a C program does it, to measure ipc-kit against.
//!
//! Byte streams (pipes, FIFOs) carry each message as a 4-byte length and
//! the body: one `writev`, then a `read` of the length and `read`s of the
//! body. Unix seqpacket sockets carry each as one `send` and one `recv`
//! into a buffer as long as the longest message. System V queues go through one `struct msgbuf`
//! per side, POSIX queues through one buffer of the queue's message size.
//! Shared memory is an `mmap` of anonymous shared memory ([`Region`]), in
//! which `super::ring` keeps its rings.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Takes two fds the kernel just made.
fn adopt_pair(fds: [RawFd; 2]) -> (OwnedFd, OwnedFd) {
    // SAFETY: both fds were just returned by the kernel and nothing else
    // owns them.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// `pipe2(O_CLOEXEC)` with the kernel's default capacity: (read, write).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok(adopt_pair(fds))
}

/// A connected pair of Unix seqpacket sockets.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: `fds` has room for the two fds socketpair writes.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) })?;
    Ok(adopt_pair(fds))
}

/// The longest message the bench sends through a seqpacket socket (its
/// default send buffer, 212,992 bytes, less the kernel's 32).
pub(crate) const SEQPACKET_MAX: usize = 212_992 - 32;

/// One message with `send(2)` (no `SIGPIPE`), as a C programmer sends on
/// a seqpacket socket.
pub(crate) fn send_message(fd: BorrowedFd<'_>, msg: &[u8]) -> io::Result<()> {
    loop {
        // SAFETY: `msg` is a live slice the kernel only reads.
        let n = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One message with `recv(2)` into `buf`, grown once to
/// [`SEQPACKET_MAX`] bytes: its length.
pub(crate) fn recv_message(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.len() < SEQPACKET_MAX {
        buf.resize(SEQPACKET_MAX, 0);
    }
    loop {
        // SAFETY: `buf` is `buf.len()` writable bytes.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        match n {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n if n > 0 => return Ok(n as usize),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// `mkfifo(3)` at `path` with mode 0600.
pub(crate) fn mkfifo(path: &Path) -> io::Result<()> {
    let c = cstring(path.as_os_str().as_bytes())?;
    // SAFETY: `c` is NUL-terminated.
    cvt(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }).map(drop)
}

/// Opens both ends of the FIFO at `path` without waiting: the reader
/// nonblocking first, then the writer, then the reader back to blocking.
pub(crate) fn open_fifo(path: &Path) -> io::Result<(OwnedFd, OwnedFd)> {
    let c = cstring(path.as_os_str().as_bytes())?;
    let open = |flags| {
        // SAFETY: `c` is NUL-terminated; no mode without O_CREAT.
        cvt(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) })
            // SAFETY: a new fd that nothing else owns.
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let r = open(libc::O_RDONLY | libc::O_NONBLOCK)?;
    let w = open(libc::O_WRONLY)?;
    // SAFETY: F_SETFL with plain flags on an fd we own.
    cvt(unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, 0) })?;
    Ok((r, w))
}

/// Writes `msg` as a frame: its length (4 bytes, little-endian) and its
/// bytes, in one `writev` and more for what a short write left.
pub(crate) fn write_frame(fd: BorrowedFd<'_>, msg: &[u8]) -> io::Result<()> {
    let header = u32::try_from(msg.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?.to_le_bytes();
    let total = header.len() + msg.len();
    let mut done = 0;
    while done < total {
        let (h, m) = if done < header.len() { (&header[done..], msg) } else { (&[][..], &msg[done - header.len()..]) };
        let iov = [
            libc::iovec { iov_base: h.as_ptr() as *mut libc::c_void, iov_len: h.len() },
            libc::iovec { iov_base: m.as_ptr() as *mut libc::c_void, iov_len: m.len() },
        ];
        // SAFETY: two iovecs over live slices, only read by the kernel.
        let n = unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        done += n as usize;
    }
    Ok(())
}

/// Reads until `buf` is full; false at end of file before the first byte.
pub(crate) fn read_exact(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the rest of `buf` is valid for writes.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        match n {
            0 if got == 0 => return Ok(false),
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
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

/// Reads one frame written by [`write_frame`] into `buf`, growing it if
/// the frame is longer; the frame's length.
pub(crate) fn read_frame(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut header = [0u8; 4];
    if !read_exact(fd, &mut header)? {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let len = u32::from_le_bytes(header) as usize;
    if buf.len() < len {
        buf.resize(len, 0);
    }
    if !read_exact(fd, &mut buf[..len])? && len > 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(len)
}

/// The largest System V message text this bench sends.
pub(crate) const MSG_TEXT: usize = 8192;

/// A `struct msgbuf` with room for [`MSG_TEXT`] bytes.
#[repr(C)]
pub(crate) struct MsgBuf {
    mtype: libc::c_long,
    text: [u8; MSG_TEXT],
}

impl MsgBuf {
    pub(crate) fn new() -> Box<MsgBuf> {
        Box::new(MsgBuf { mtype: 1, text: [0; MSG_TEXT] })
    }

    /// The first `len` bytes of the text.
    pub(crate) fn text(&self, len: usize) -> &[u8] {
        &self.text[..len.min(MSG_TEXT)]
    }
}

/// `msgget(IPC_PRIVATE, IPC_CREAT | 0600)`: a new queue's id.
pub(crate) fn msgget_private() -> io::Result<libc::c_int> {
    // SAFETY: msgget takes plain integers.
    cvt(unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) })
}

/// `msgctl(IPC_RMID)`.
pub(crate) fn msg_remove(id: libc::c_int) {
    // SAFETY: IPC_RMID takes no buffer.
    unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
}

/// `msgsnd` of `text` (at most [`MSG_TEXT`] bytes) with type 1, copied
/// into `buf` first as C code does.
pub(crate) fn msgsnd(id: libc::c_int, buf: &mut MsgBuf, text: &[u8]) -> io::Result<()> {
    let len = text.len().min(MSG_TEXT);
    buf.mtype = 1;
    buf.text[..len].copy_from_slice(&text[..len]);
    loop {
        // SAFETY: `buf` is a valid msgbuf holding `len` bytes of text.
        if unsafe { libc::msgsnd(id, (buf as *const MsgBuf).cast(), len, 0) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `msgrcv` of the first message into `buf`; its text's length.
pub(crate) fn msgrcv(id: libc::c_int, buf: &mut MsgBuf) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` has room for MSG_TEXT bytes of text.
        let r = unsafe { libc::msgrcv(id, (buf as *mut MsgBuf).cast(), MSG_TEXT, 0, 0) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// A POSIX queue descriptor.
pub(crate) type Mqd = libc::mqd_t;

/// `mq_open(name, O_CREAT | O_EXCL | O_RDWR)` with room for `maxmsg`
/// messages of `msgsize` bytes.
pub(crate) fn mq_create(name: &str, maxmsg: i64, msgsize: i64) -> io::Result<Mqd> {
    let c = cstring(name.as_bytes())?;
    // SAFETY: an all-zero mq_attr is valid; the fields set below follow.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    attr.mq_maxmsg = maxmsg;
    attr.mq_msgsize = msgsize;
    // SAFETY: `c` is NUL-terminated; with O_CREAT the mode and the
    // attribute pointer are read, and `attr` is valid.
    let mq = unsafe {
        libc::mq_open(c.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC, 0o600, &attr)
    };
    if mq == -1 { Err(io::Error::last_os_error()) } else { Ok(mq) }
}

/// `mq_close` and, when `unlink`, `mq_unlink(name)`.
pub(crate) fn mq_close(mq: Mqd, name: &str, unlink: bool) {
    // SAFETY: closes a descriptor this process opened.
    unsafe { libc::mq_close(mq) };
    if let (true, Ok(c)) = (unlink, cstring(name.as_bytes())) {
        // SAFETY: `c` is NUL-terminated.
        unsafe { libc::mq_unlink(c.as_ptr()) };
    }
}

/// `mq_send` of `msg` at priority 0.
pub(crate) fn mq_send(mq: Mqd, msg: &[u8]) -> io::Result<()> {
    loop {
        // SAFETY: `msg` is valid for reads of its length.
        if unsafe { libc::mq_send(mq, msg.as_ptr().cast(), msg.len(), 0) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `mq_receive` into `buf` (at least the queue's message size); the
/// message's length.
pub(crate) fn mq_receive(mq: Mqd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let r = unsafe { libc::mq_receive(mq, buf.as_mut_ptr().cast(), buf.len(), std::ptr::null_mut()) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Anonymous shared memory (`mmap(MAP_SHARED | MAP_ANONYMOUS)`) that
/// forked children share; unmapped on drop. Accessed through raw pointers
/// by `super::ring`, which keeps within the length it asked for.
pub(crate) struct Region {
    ptr: *mut u8,
    len: usize,
}

impl Region {
    pub(crate) fn new(len: usize) -> io::Result<Region> {
        // SAFETY: a new anonymous shared mapping; no existing memory is
        // touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region { ptr: p.cast(), len })
    }

    /// The start of the mapping.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no reference
        // into it outlives `self`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
