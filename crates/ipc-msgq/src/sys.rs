//! The system calls of ipc-msgq. POSIX queues go through nix, except the
//! two calls it lacks (`mq_timedsend`, and a receive into a vector's
//! spare capacity that need not ask for the priority); System V queues
//! go through libc, as nix has no System V IPC. Every `unsafe` block of
//! the crate is here, one call per block, each with the reason it is
//! sound.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use ipc_sync::os::cvt;
use nix::mqueue::{MQ_OFlag, MqAttr, MqdT};
use nix::sys::stat::Mode;
use nix::sys::time::TimeSpec;

thread_local! {
    /// A message buffer (`long mtype` then the text) reused by every send
    /// and receive on this thread, so a steady loop allocates nothing. It
    /// is all initialized: it only grows, with zeros.
    static SCRATCH: RefCell<Vec<libc::c_long>> = const { RefCell::new(Vec::new()) };
}

/// Messages up to this long (msgmax by default) fall back to a buffer on
/// the stack when the thread's buffer cannot be had.
const STACK_TEXT: usize = 8192;

/// The words of a msgbuf with room for [`STACK_TEXT`] bytes of text.
const STACK_WORDS: usize = 1 + STACK_TEXT / size_of::<libc::c_long>();

/// Runs `f` with a msgbuf, all initialized: the type, then room for at
/// least `text_len` bytes of text. It is this thread's buffer; where that
/// cannot be had (in a thread-local's destructor after the buffer was
/// dropped, or a call from inside another's, as from a signal handler), a
/// zeroed buffer of its own: on the stack up to [`STACK_TEXT`], so that
/// small messages never need the heap there either.
fn with_msgbuf<R>(text_len: usize, f: impl FnOnce(&mut [libc::c_long]) -> R) -> R {
    let words = 1 + text_len.div_ceil(size_of::<libc::c_long>());
    let mut f = Some(f);
    let done = SCRATCH.try_with(|s| {
        let mut s = s.try_borrow_mut().ok()?;
        if s.len() < words {
            s.resize(words, 0);
        }
        f.take().map(|f| f(&mut s[..words]))
    });
    if let Ok(Some(r)) = done {
        return r;
    }
    let Some(f) = f else { unreachable!("`f` is taken only by a call whose result is returned") };
    if words <= STACK_WORDS { f(&mut [0; STACK_WORDS][..words]) } else { f(vec![0; words].as_mut_slice()) }
}

/// The text of a msgbuf: the bytes after the type.
fn text(buf: &mut [libc::c_long]) -> &mut [u8] {
    bytemuck::cast_slice_mut(buf.get_mut(1..).unwrap_or_default())
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
        buf[0] = mtype;
        text(buf)[..data.len()].copy_from_slice(data);
        // SAFETY: `buf` is a msgbuf: the type, then at least `data.len()`
        // bytes of text, all initialized; msgsnd reads the type and that
        // many bytes of text.
        cvt(unsafe { libc::msgsnd(id, buf.as_ptr().cast(), data.len(), flags) }).map(drop)
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
        // SAFETY: `buf` is a msgbuf with room for the type and at least
        // `room` bytes of text, which is all msgrcv writes.
        let n = unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), room, mtype, flags) };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        let got = buf[0];
        // The kernel wrote at most `room` bytes.
        let text = text(buf).get(..n).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
        out(text);
        #[allow(clippy::useless_conversion)] // c_long is i64 here, i32 elsewhere
        Ok((i64::from(got), n))
    })
}

/// What `msgctl(2)` is asked to do, with the buffer each command uses.
enum Ctl<'a> {
    /// `IPC_STAT`: fill in the queue's state.
    Stat(&'a mut libc::msqid_ds),
    /// `IPC_SET`: take the owner, mode and capacity from it.
    Set(&'a libc::msqid_ds),
    /// `IPC_RMID`: remove the queue.
    Remove,
}

/// `msgctl(2)`.
fn msgctl(id: libc::c_int, ctl: Ctl<'_>) -> io::Result<()> {
    let (cmd, ds) = match ctl {
        Ctl::Stat(ds) => (libc::IPC_STAT, std::ptr::from_mut(ds)),
        Ctl::Set(ds) => (libc::IPC_SET, std::ptr::from_ref(ds).cast_mut()),
        Ctl::Remove => (libc::IPC_RMID, std::ptr::null_mut()),
    };
    // SAFETY: IPC_STAT writes one msqid_ds through `ds`, which comes from
    // an exclusive reference; IPC_SET only reads one through it (from a
    // shared reference: the kernel does not write it); IPC_RMID ignores it.
    cvt(unsafe { libc::msgctl(id, cmd, ds) }).map(drop)
}

/// `msgctl(IPC_STAT)`.
pub(crate) fn msg_stat(id: libc::c_int) -> io::Result<libc::msqid_ds> {
    // SAFETY: msqid_ds holds only integers, for which all zeros is a
    // valid value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    msgctl(id, Ctl::Stat(&mut ds))?;
    Ok(ds)
}

/// `msgctl(IPC_SET)` with `ds` (from IPC_STAT, changed).
pub(crate) fn msg_set(id: libc::c_int, ds: &libc::msqid_ds) -> io::Result<()> {
    msgctl(id, Ctl::Set(ds))
}

/// `msgctl(IPC_RMID)`.
pub(crate) fn msg_remove(id: libc::c_int) -> io::Result<()> {
    msgctl(id, Ctl::Remove)
}

/// A POSIX queue descriptor, closed when dropped (nix's `MqdT` is not).
#[derive(Debug)]
pub(crate) struct Mq(Option<MqdT>);

impl Mq {
    fn mqd(&self) -> &MqdT {
        // Only `drop` takes the descriptor out.
        self.0.as_ref().unwrap_or_else(|| unreachable!("a queue descriptor used after close"))
    }
}

impl Drop for Mq {
    fn drop(&mut self) {
        if let Some(mqd) = self.0.take() {
            let _ = nix::mqueue::mq_close(mqd);
        }
    }
}

impl AsFd for Mq {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.mqd().as_fd()
    }
}

/// `mq_open(3)` with `O_CLOEXEC`, creating the queue with `mode` and
/// these sizes (max messages, message size) when `flags` say so.
pub(crate) fn mq_open(name: &CStr, flags: MQ_OFlag, mode: u32, attr: Option<(i64, i64)>) -> io::Result<Mq> {
    let attr = attr.map(|(maxmsg, msgsize)| MqAttr::new(0, maxmsg, msgsize, 0));
    let mode = Mode::from_bits_truncate(mode & 0o777);
    Ok(Mq(Some(nix::mqueue::mq_open(name, flags | MQ_OFlag::O_CLOEXEC, mode, attr.as_ref())?)))
}

/// `mq_timedsend(3)` with an absolute `CLOCK_REALTIME` deadline (`None`:
/// wait without limit).
#[inline]
pub(crate) fn mq_send(mq: &Mq, data: &[u8], prio: u32, at: Option<&libc::timespec>) -> io::Result<()> {
    let Some(at) = at else { return Ok(nix::mqueue::mq_send(mq.mqd(), data, prio)?) };
    // SAFETY: `data` is valid for reads of its length and `at` is a valid
    // timespec, both for the call (nix has no mq_timedsend).
    cvt(unsafe { libc::mq_timedsend(mq.as_fd().as_raw_fd(), data.as_ptr().cast(), data.len(), prio, at) }).map(drop)
}

/// `mq_timedreceive(3)` into `out` (at least the queue's message size):
/// the length and priority.
pub(crate) fn mq_recv(mq: &Mq, out: &mut [u8], at: Option<&libc::timespec>) -> io::Result<(usize, u32)> {
    let mut prio = 0;
    let n = match at {
        None => nix::mqueue::mq_receive(mq.mqd(), out, &mut prio)?,
        Some(at) => nix::mqueue::mq_timedreceive(mq.mqd(), out, &mut prio, &TimeSpec::from(*at))?,
    };
    Ok((n, prio))
}

/// `mq_timedreceive(3)` into `out`, replacing its contents, with room for
/// `room` bytes (at least the queue's message size). The priority is
/// stored in `prio` when given; without it the kernel is not asked for it
/// (one write to user memory less per message). nix's receive takes
/// initialized memory and always asks for the priority, so this one goes
/// to libc: it receives into the vector's spare capacity, which it need
/// not clear first.
#[inline]
pub(crate) fn mq_recv_vec(
    mq: &Mq,
    out: &mut Vec<u8>,
    room: usize,
    prio: Option<&mut u32>,
    at: Option<&libc::timespec>,
) -> io::Result<()> {
    out.clear();
    out.reserve(room);
    let spare = out.spare_capacity_mut();
    let at = at.map_or(std::ptr::null(), std::ptr::from_ref);
    let prio = prio.map_or(std::ptr::null_mut(), std::ptr::from_mut);
    // SAFETY: the spare capacity is valid for writes of its length (at
    // least `room`); the priority pointer is null or a valid u32; the
    // timespec pointer is null or valid for the call.
    let n = unsafe { libc::mq_timedreceive(mq.as_fd().as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), prio, at) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: the kernel wrote the message's `n` bytes (no more than the
    // spare capacity it was given) at the start of the vector.
    unsafe { out.set_len(n) };
    Ok(())
}

/// `mq_getattr(3)`: (max messages, message size, current messages).
pub(crate) fn mq_getattr(mq: &Mq) -> io::Result<(i64, i64, i64)> {
    let a = nix::mqueue::mq_getattr(mq.mqd())?;
    Ok((a.maxmsg(), a.msgsize(), a.curmsgs()))
}

/// `mq_unlink(3)`.
pub(crate) fn mq_unlink(name: &CStr) -> io::Result<()> {
    Ok(nix::mqueue::mq_unlink(name)?)
}

#[cfg(test)]
mod tests {
    use super::with_msgbuf;

    /// A msgbuf asked for while another is in use on the same thread (as
    /// by a signal handler that sends while a receive waits) is a buffer
    /// of its own, zeroed, and leaves the other alone; small and large.
    #[test]
    fn a_msgbuf_inside_another_is_its_own() {
        for inner_len in [0, 16, super::STACK_TEXT, super::STACK_TEXT + 1, 100_000] {
            with_msgbuf(64, |outer| {
                outer.fill(7);
                with_msgbuf(inner_len, |inner| {
                    assert!(size_of_val(inner) >= size_of::<libc::c_long>() + inner_len);
                    assert!(inner.iter().all(|&w| w == 0), "a fresh buffer is zeroed");
                    inner.fill(9);
                });
                assert!(outer.iter().all(|&w| w == 7), "the outer buffer is untouched");
            });
        }
    }
}
