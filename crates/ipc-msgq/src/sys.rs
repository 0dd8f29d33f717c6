//! The system calls of ipc-msgq. Every `unsafe` block of the crate is
//! here, one call per block, each with the reason it is sound.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

thread_local! {
    /// A message buffer (`long mtype` then the text) reused by every send
    /// and receive on this thread, so a steady loop allocates nothing.
    static SCRATCH: RefCell<Vec<libc::c_long>> = const { RefCell::new(Vec::new()) };
}

/// Messages up to this long use a buffer on the stack.
const STACK_TEXT: usize = 8192;

/// A msgbuf on the stack: the type, then room for [`STACK_TEXT`] bytes of
/// text, left uninitialized (only what is sent or received is touched).
#[repr(C)]
struct StackMsg {
    mtype: libc::c_long,
    text: [std::mem::MaybeUninit<u8>; STACK_TEXT],
}

/// Runs `f` with a pointer to a msgbuf with room for `text_len` bytes of
/// text, whose contents are undefined: on the stack up to 8 KiB (msgmax by
/// default), else the thread's reusable heap buffer.
fn with_msgbuf<R>(text_len: usize, f: impl FnOnce(*mut libc::c_long) -> R) -> R {
    if text_len <= STACK_TEXT {
        let mut buf = std::mem::MaybeUninit::<StackMsg>::uninit();
        return f(buf.as_mut_ptr().cast());
    }
    let words = 1 + text_len.div_ceil(size_of::<libc::c_long>());
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < words {
            s.resize(words, 0);
        }
        f(s.as_mut_ptr())
    })
}

/// `msgget(2)`.
pub(crate) fn msgget(key: libc::key_t, flags: libc::c_int) -> io::Result<libc::c_int> {
    // SAFETY: msgget takes plain integers.
    cvt(unsafe { libc::msgget(key, flags) })
}

/// `msgsnd(2)` of `data` with type `mtype`; `EINTR` is returned.
#[inline]
pub(crate) fn msgsnd(id: libc::c_int, mtype: libc::c_long, data: &[u8], flags: libc::c_int) -> io::Result<()> {
    with_msgbuf(data.len(), |buf| {
        // SAFETY: `buf` points to a msgbuf with room for `data.len()` text
        // bytes after the type: both writes stay inside it, and msgsnd reads
        // only the type and the `data.len()` bytes just written.
        unsafe {
            buf.write(mtype);
            std::ptr::copy_nonoverlapping(data.as_ptr(), buf.add(1).cast::<u8>(), data.len());
            cvt(libc::msgsnd(id, buf.cast(), data.len(), flags)).map(drop)
        }
    })
}

/// `msgrcv(2)` of a message of at most `room` bytes, handed to `out`:
/// the message's type and length. `EINTR` is returned; `E2BIG` leaves the
/// message queued unless `MSG_NOERROR`.
#[inline]
pub(crate) fn msgrcv_with(
    id: libc::c_int,
    room: usize,
    mtype: libc::c_long,
    flags: libc::c_int,
    out: impl FnOnce(&[u8]),
) -> io::Result<(i64, usize)> {
    with_msgbuf(room, |buf| {
        // SAFETY: `buf` is a msgbuf with room for `room` text bytes.
        let n = unsafe { libc::msgrcv(id, buf.cast(), room, mtype, flags) };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        // SAFETY: on success the kernel wrote the type and `n <= room` text
        // bytes, so both are initialized and inside the buffer.
        let (got, text) = unsafe { (buf.read(), std::slice::from_raw_parts(buf.add(1).cast::<u8>(), n)) };
        out(text);
        #[allow(clippy::useless_conversion)] // c_long is i64 here, i32 elsewhere
        Ok((i64::from(got), n))
    })
}

/// `msgctl(IPC_STAT)`.
pub(crate) fn msg_stat(id: libc::c_int) -> io::Result<libc::msqid_ds> {
    // SAFETY: an all-zero msqid_ds is a valid value for the kernel to fill.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one msqid_ds through a valid pointer.
    cvt(unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) })?;
    Ok(ds)
}

/// `msgctl(IPC_SET)` with `ds` (from IPC_STAT, changed).
pub(crate) fn msg_set(id: libc::c_int, ds: &mut libc::msqid_ds) -> io::Result<()> {
    // SAFETY: IPC_SET reads one msqid_ds through a valid pointer.
    cvt(unsafe { libc::msgctl(id, libc::IPC_SET, ds) }).map(drop)
}

/// `msgctl(IPC_RMID)`.
pub(crate) fn msg_remove(id: libc::c_int) -> io::Result<()> {
    // SAFETY: IPC_RMID ignores the buffer argument.
    cvt(unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// `mq_open(3)` with `O_CLOEXEC`; on Linux the descriptor is an fd.
pub(crate) fn mq_open(
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
    attr: Option<(i64, i64)>,
) -> io::Result<OwnedFd> {
    // SAFETY: an all-zero mq_attr is valid; the two fields set follow.
    let mut a: libc::mq_attr = unsafe { std::mem::zeroed() };
    let attr_ptr = match attr {
        Some((maxmsg, msgsize)) => {
            a.mq_maxmsg = maxmsg;
            a.mq_msgsize = msgsize;
            &mut a as *mut libc::mq_attr
        }
        None => std::ptr::null_mut(),
    };
    // SAFETY: `name` is NUL-terminated; the variadic mode (promoted to
    // unsigned int) and attribute pointer (null: defaults) are what
    // mq_open reads with O_CREAT.
    let mq = unsafe { libc::mq_open(name.as_ptr(), flags | libc::O_CLOEXEC, libc::c_uint::from(mode), attr_ptr) };
    let fd = cvt(mq)?;
    // SAFETY: on Linux an mqd_t is a new fd that nothing else owns; close
    // releases it as mq_close would.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `mq_timedsend(3)` with an absolute `CLOCK_REALTIME` deadline (`None`:
/// wait without limit).
#[inline]
pub(crate) fn mq_send(mq: BorrowedFd<'_>, data: &[u8], prio: u32, at: Option<&libc::timespec>) -> io::Result<()> {
    let at = at.map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `data` is valid for its length; the timespec pointer is null
    // or valid for the call.
    cvt(unsafe { libc::mq_timedsend(mq.as_raw_fd(), data.as_ptr().cast(), data.len(), prio, at) }).map(drop)
}

/// `mq_timedreceive(3)` into `out` (at least the queue's message size):
/// the length and priority.
pub(crate) fn mq_recv(mq: BorrowedFd<'_>, out: &mut [u8], at: Option<&libc::timespec>) -> io::Result<(usize, u32)> {
    let at = at.map_or(std::ptr::null(), |t| t as *const libc::timespec);
    let mut prio = 0;
    // SAFETY: `out` is valid for writes of its length; `prio` is a valid
    // u32; the timespec pointer is null or valid for the call.
    let n = unsafe { libc::mq_timedreceive(mq.as_raw_fd(), out.as_mut_ptr().cast(), out.len(), &mut prio, at) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    Ok((n, prio))
}

/// `mq_timedreceive(3)` into `out`, replacing its contents, with room for
/// `room` bytes (at least the queue's message size). The priority is
/// stored in `prio` when given; without it the kernel is not asked for it
/// (one write to user memory less per message).
#[inline]
pub(crate) fn mq_recv_vec(
    mq: BorrowedFd<'_>,
    out: &mut Vec<u8>,
    room: usize,
    prio: Option<&mut u32>,
    at: Option<&libc::timespec>,
) -> io::Result<()> {
    out.clear();
    out.reserve(room);
    let spare = out.spare_capacity_mut();
    let at = at.map_or(std::ptr::null(), |t| t as *const libc::timespec);
    let prio = prio.map_or(std::ptr::null_mut(), |p| p as *mut u32);
    // SAFETY: the spare capacity is valid for writes of its length (at
    // least `room`); the priority pointer is null or a valid u32; the
    // timespec pointer is null or valid for the call.
    let n = unsafe { libc::mq_timedreceive(mq.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), prio, at) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: the kernel wrote the message's `n` bytes (no more than the
    // spare capacity it was given) at the start of the vector.
    unsafe { out.set_len(n) };
    Ok(())
}

/// `mq_getattr(3)`: (max messages, message size, current messages).
pub(crate) fn mq_getattr(mq: BorrowedFd<'_>) -> io::Result<(i64, i64, i64)> {
    // SAFETY: an all-zero mq_attr is a valid value for the call to fill.
    let mut a: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: mq_getattr writes one mq_attr through a valid pointer.
    cvt(unsafe { libc::mq_getattr(mq.as_raw_fd(), &mut a) })?;
    Ok((a.mq_maxmsg, a.mq_msgsize, a.mq_curmsgs))
}

/// `mq_unlink(3)`.
pub(crate) fn mq_unlink(name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated.
    cvt(unsafe { libc::mq_unlink(name.as_ptr()) }).map(drop)
}
