//! The system calls ipc-pipe makes. Every `unsafe` block of the crate is
//! here; each wraps one call and says why it is sound. The calls nix
//! offers safely go through nix; libc remains for `preadv2`/`pwritev2`
//! with `RWF_NOWAIT`, `FIONREAD`, reading `SIGPIPE`'s disposition, taking
//! a pending `SIGPIPE`, and the fd mapping a child gets before exec.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use ipc_sync::os::{PollFlags, cvt};
use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// `PIPE_BUF`: writes of at most this many bytes to a pipe are atomic.
pub(crate) const PIPE_BUF: usize = libc::PIPE_BUF;

/// A byte count from a call that succeeded (so is not negative).
fn count(r: isize) -> io::Result<usize> {
    Ok(usize::try_from(cvt(r)?).unwrap_or(0))
}

/// An `fcntl` result that is a size.
fn size(n: libc::c_int) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// `pipe2(O_CLOEXEC)`: the read end first.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// One `read(2)`; `EINTR` is returned to the caller.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    Ok(nix::unistd::read(fd, buf)?)
}

/// One `readv(2)`.
pub(crate) fn readv(fd: BorrowedFd<'_>, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
    let n = iov_count(bufs.len());
    Ok(nix::sys::uio::readv(fd, &mut bufs[..n])?)
}

/// One `write(2)`; `EINTR` is returned to the caller. Call it under
/// [`without_sigpipe`].
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    Ok(nix::unistd::write(fd, buf)?)
}

/// One `writev(2)`. Call it under [`without_sigpipe`].
pub(crate) fn writev(fd: BorrowedFd<'_>, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    Ok(nix::sys::uio::writev(fd, &bufs[..iov_count(bufs.len())])?)
}

/// How many of `n` buffers one call passes: IOV_MAX is 1024 on Linux, and
/// passing fewer buffers is always allowed.
fn iov_count(n: usize) -> usize {
    n.min(1024)
}

/// Whether `RWF_NOWAIT` works on pipes here (Linux 5.x and later). Cleared the
/// first time the kernel answers `EOPNOTSUPP`.
static NOWAIT_WORKS: AtomicBool = AtomicBool::new(true);

fn nowait_unsupported(e: &io::Error) -> bool {
    if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
        // Relaxed: a hint only; a stale `true` costs one more EOPNOTSUPP.
        NOWAIT_WORKS.store(false, Ordering::Relaxed);
        true
    } else {
        false
    }
}

/// Whether `fd` has `events` now, without waiting (`POLLHUP` and
/// `POLLERR` count: the next read or write reports them).
fn ready_now(fd: BorrowedFd<'_>, events: PollFlags) -> io::Result<bool> {
    Ok(!ipc_sync::os::poll_now(fd, events)?.is_empty())
}

/// A read that never blocks, whatever the fd's `O_NONBLOCK` flag says:
/// `preadv2(RWF_NOWAIT)`, or where the kernel lacks it, `poll` with a zero
/// timeout and then `read` (which can block only if another reader of the
/// same pipe takes the data in between).
pub(crate) fn read_nowait(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    if NOWAIT_WORKS.load(Ordering::Relaxed) {
        let iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: one iovec pointing to `buf`, valid for writes of its length;
        // offset -1 means the current position, as pipes require.
        let r = unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
        match count(r) {
            Err(e) if nowait_unsupported(&e) => {}
            other => return other,
        }
    }
    if ready_now(fd, PollFlags::POLLIN)? { read(fd, buf) } else { Err(io::ErrorKind::WouldBlock.into()) }
}

/// A write that never blocks: `pwritev2(RWF_NOWAIT)`, or where the kernel
/// lacks it, `poll` with a zero timeout and then a write of at most
/// `PIPE_BUF` bytes (which fits in the free slot that `POLLOUT` reports).
/// Writes of at most `PIPE_BUF` bytes are all or nothing. Call it under
/// [`without_sigpipe`].
pub(crate) fn write_nowait(fd: BorrowedFd<'_>, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    if NOWAIT_WORKS.load(Ordering::Relaxed) {
        let n = libc::c_int::try_from(iov_count(bufs.len())).unwrap_or(0);
        // SAFETY: IoSlice is ABI-compatible with `struct iovec` and each of
        // the first `n` points to readable memory of its length; offset -1
        // is required for pipes.
        let r = unsafe { libc::pwritev2(fd.as_raw_fd(), bufs.as_ptr().cast(), n, -1, libc::RWF_NOWAIT) };
        match count(r) {
            Err(e) if nowait_unsupported(&e) => {}
            other => return other,
        }
    }
    if !ready_now(fd, PollFlags::POLLOUT)? {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    if total <= PIPE_BUF {
        writev(fd, bufs)
    } else {
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
        write(fd, &first[..first.len().min(PIPE_BUF)])
    }
}

/// `fcntl(F_GETPIPE_SZ)`.
pub(crate) fn pipe_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    Ok(size(fcntl(fd, FcntlArg::F_GETPIPE_SZ)?))
}

/// `fcntl(F_SETPIPE_SZ)`: the size the kernel chose (rounded up to a power
/// of two pages).
pub(crate) fn set_pipe_size(fd: BorrowedFd<'_>, bytes: libc::c_int) -> io::Result<usize> {
    Ok(size(fcntl(fd, FcntlArg::F_SETPIPE_SZ(bytes))?))
}

/// The file status flags of the open file description (`F_GETFL`).
fn status_flags(fd: BorrowedFd<'_>) -> io::Result<OFlag> {
    Ok(OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?))
}

/// Whether `O_NONBLOCK` is set on the open file description.
pub(crate) fn nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(status_flags(fd)?.contains(OFlag::O_NONBLOCK))
}

/// Sets or clears `O_NONBLOCK` on the open file description.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = status_flags(fd)?;
    let mut new = flags;
    new.set(OFlag::O_NONBLOCK, on);
    if new != flags {
        fcntl(fd, FcntlArg::F_SETFL(new))?;
    }
    Ok(())
}

/// `ioctl(FIONREAD)`: the bytes waiting in the pipe.
pub(crate) fn bytes_available(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which is valid.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) })?;
    Ok(size(n))
}

/// `splice(2)` between two fds at their current positions. Call it under
/// [`without_sigpipe`] when `out` is a pipe.
pub(crate) fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize, flags: libc::c_uint) -> io::Result<usize> {
    Ok(nix::fcntl::splice(from, None, to, None, len, SpliceFFlags::from_bits_retain(flags))?)
}

/// `tee(2)`. Call it under [`without_sigpipe`].
pub(crate) fn tee(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize, flags: libc::c_uint) -> io::Result<usize> {
    Ok(nix::fcntl::tee(from, to, len, SpliceFFlags::from_bits_retain(flags))?)
}

/// `vmsplice(2)` of user memory into a pipe. Call it under
/// [`without_sigpipe`]. Without `SPLICE_F_GIFT` (which no caller passes)
/// the kernel takes its own page references, so later changes or frees of
/// the memory by us cannot make it read freed memory.
pub(crate) fn vmsplice(to: BorrowedFd<'_>, bufs: &[io::IoSlice<'_>], flags: libc::c_uint) -> io::Result<usize> {
    Ok(nix::fcntl::vmsplice(to, &bufs[..iov_count(bufs.len())], SpliceFFlags::from_bits_retain(flags))?)
}

/// Whether `SIGPIPE` was ignored (`SIG_IGN`, as in every Rust program
/// unless it opted out) when a pipe writer was last made in this process.
static SIGPIPE_IGNORED: AtomicBool = AtomicBool::new(false);

/// Reads `SIGPIPE`'s disposition into [`SIGPIPE_IGNORED`].
pub(crate) fn note_sigpipe_disposition() {
    let mut old = libc::sigaction {
        sa_sigaction: libc::SIG_DFL,
        sa_mask: *SigSet::empty().as_ref(),
        sa_flags: 0,
        sa_restorer: None,
    };
    // SAFETY: a null new action only reads the current one into `old`,
    // which is valid for writes.
    let r = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) };
    SIGPIPE_IGNORED.store(r == 0 && old.sa_sigaction == libc::SIG_IGN, Ordering::Relaxed);
}

thread_local! {
    /// This thread's [`SigpipeBlock`]s: how many are alive, and what the
    /// last one to go must do.
    static BLOCKS: Cell<Blocks> = const { Cell::new(Blocks { alive: 0, unblock: false, sweep: false }) };
}

/// The state shared by the [`SigpipeBlock`]s alive in one thread. They form
/// a count, not a stack: they may be dropped in any order, and only the last
/// one to go restores the mask.
#[derive(Clone, Copy)]
struct Blocks {
    /// How many are alive.
    alive: usize,
    /// Whether the first of them blocked `SIGPIPE` (it was not blocked
    /// before), so the last one must unblock it.
    unblock: bool,
    /// Whether one of them asked to discard a pending `SIGPIPE` at the end.
    sweep: bool,
}

/// Runs `op` (a write to a pipe) so that `SIGPIPE` cannot kill the
/// process: directly when the signal is ignored, else with `SIGPIPE`
/// blocked in this thread, consuming the `SIGPIPE` that a write to a pipe without readers raised, so
/// the process does not die of it even when its disposition is the default.
/// The write's `EPIPE` is returned as an error instead.
///
/// If the thread already blocked `SIGPIPE` (or a [`SigpipeBlock`] is alive
/// in it), the mask is left alone. A process-directed `SIGPIPE` sent by
/// `kill` in the short window in which a failing write runs may be
/// consumed with it.
pub(crate) fn without_sigpipe<T>(op: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    if BLOCKS.get().alive > 0 {
        return consume_on_epipe(op());
    }
    if SIGPIPE_IGNORED.load(Ordering::Relaxed) {
        // An ignored signal is discarded when raised: nothing to hold off.
        return op();
    }
    let block = SigpipeBlock::new(false);
    let result = consume_on_epipe(op());
    drop(block);
    result
}

/// Takes the `SIGPIPE` that an `EPIPE` raised (it is blocked, so pending).
fn consume_on_epipe<T>(result: io::Result<T>) -> io::Result<T> {
    if matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EPIPE)) {
        take_pending_sigpipe();
    }
    result
}

fn take_pending_sigpipe() {
    let set = sigpipe_set();
    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: SIGPIPE is blocked in this thread (the callers hold a
    // SigpipeBlock), so sigtimedwait takes it if pending and returns at once
    // (zero timeout) if not; the set and timespec are valid, and the
    // siginfo pointer may be null.
    unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &zero) };
}

/// `SIGPIPE` blocked in this thread while the value lives. The values
/// alive in a thread are counted: the first blocks `SIGPIPE` (noting whether
/// it was blocked already), and whichever goes last, in any order, unblocks
/// it again, unless it was blocked before the first; with `sweep` on any of
/// them, a `SIGPIPE` left pending (by writes that did not go through
/// ipc-pipe) is taken first.
pub(crate) struct SigpipeBlock {
    /// Not `Send`: the count is per thread.
    _not_send: PhantomData<*const ()>,
}

impl SigpipeBlock {
    pub(crate) fn new(sweep: bool) -> Self {
        let mut blocks = BLOCKS.get();
        if blocks.alive == 0 {
            // pthread_sigmask cannot fail with valid arguments.
            let old = sigpipe_set().thread_swap_mask(SigmaskHow::SIG_BLOCK);
            let was_blocked = old.is_ok_and(|old| old.contains(Signal::SIGPIPE));
            blocks.unblock = !was_blocked;
            blocks.sweep = false;
        }
        blocks.alive += 1;
        blocks.sweep |= sweep;
        BLOCKS.set(blocks);
        SigpipeBlock { _not_send: PhantomData }
    }
}

impl Drop for SigpipeBlock {
    fn drop(&mut self) {
        let mut blocks = BLOCKS.get();
        blocks.alive = blocks.alive.saturating_sub(1);
        BLOCKS.set(blocks);
        if blocks.alive == 0 && blocks.unblock {
            if blocks.sweep {
                take_pending_sigpipe();
            }
            // Unblocks only SIGPIPE, which the first block of this thread
            // blocked.
            let _ = sigpipe_set().thread_unblock();
        }
    }
}

fn sigpipe_set() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGPIPE);
    set
}

/// The file an open fd refers to (device and inode), or `None` when the fd
/// is not open. Async-signal-safe.
fn file_id(fd: RawFd) -> Option<(u64, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a whole `stat` into the buffer it is given, or
    // fails (a closed fd) and writes nothing; async-signal-safe.
    let r = unsafe { libc::fstat(fd, st.as_mut_ptr()) };
    if r != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so it initialized `st`.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}

/// One fd to place in the child, with what is known in the parent about the
/// number it goes to.
struct Mapping {
    source: OwnedFd,
    target: RawFd,
    /// The source's file.
    source_id: Option<(u64, u64)>,
    /// The file the parent had open at `target` when the mapping was made,
    /// when it was not free (then nothing reserves the number).
    parent_id: Option<(u64, u64)>,
    /// A close-on-exec copy of the source held at `target` in the parent,
    /// when the number was free, so that nothing `Command::spawn` opens
    /// (its exec-error pipe) lands there.
    _reserved: Option<OwnedFd>,
}

/// Makes `cmd`'s child see `fds[i].0` at fd number `fds[i].1`, without
/// `FD_CLOEXEC`, after the standard streams are set up and before exec.
///
/// std reports a failed exec through a close-on-exec pipe that `spawn`
/// makes in the parent and whose writing end the child keeps at the number
/// it got; a dup2 onto that number would turn a failed exec into a success
/// and put the error's bytes into the given fd. So each target number that
/// is free in the parent now is held (by a close-on-exec copy of its source,
/// until `cmd` is dropped), and a number the parent already uses is noted.
/// In the child, a target number open on a file that is neither its source
/// nor the one noted is refused: the spawn fails with `EBUSY` instead of
/// misreporting.
///
/// In the child, each source is first duplicated above every target (close
/// on exec), so no dup2 overwrites a source another mapping still needs; the
/// copies then go to their targets. The fds stay open in the parent until
/// `cmd` is dropped.
pub(crate) fn map_fds_on_exec(cmd: &mut Command, fds: Vec<(OwnedFd, RawFd)>) {
    let floor = fds.iter().map(|&(_, target)| target).max().unwrap_or(2).saturating_add(1);
    let maps: Vec<Mapping> = fds
        .into_iter()
        .map(|(source, target)| {
            // F_DUPFD_CLOEXEC makes a new fd at the lowest free number
            // from `target` up; it closes nothing.
            let r = fcntl(&source, FcntlArg::F_DUPFD_CLOEXEC(target));
            // SAFETY: a successful F_DUPFD_CLOEXEC returns a new fd that
            // nothing else owns.
            let copy = r.ok().map(|r| unsafe { OwnedFd::from_raw_fd(r) });
            let (reserved, parent_id) = match copy {
                Some(copy) if copy.as_raw_fd() == target => (Some(copy), None),
                // The number was taken (the copy, if any, landed above it
                // and closes here): note what the parent has there.
                _ => (None, file_id(target)),
            };
            let source_id = nix::sys::stat::fstat(&source).ok().map(|st| (st.st_dev, st.st_ino));
            Mapping { source, target, source_id, parent_id, _reserved: reserved }
        })
        .collect();
    // Scratch space allocated here, in the parent: the child must not
    // allocate between fork and exec.
    let mut scratch: Vec<RawFd> = vec![-1; maps.len()];
    let closure = move || -> io::Result<()> {
        for m in &maps {
            if let Some(id) = file_id(m.target)
                && Some(id) != m.source_id
                && Some(id) != m.parent_id
            {
                // Opened since the mapping was made: possibly std's
                // exec-error pipe, which must not be replaced.
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
        }
        for (m, tmp) in maps.iter().zip(scratch.iter_mut()) {
            // On an fd that is open in the child (inherited from the
            // parent's OwnedFd); fcntl is async-signal-safe.
            *tmp = fcntl(&m.source, FcntlArg::F_DUPFD_CLOEXEC(floor))?;
        }
        for (m, tmp) in maps.iter().zip(scratch.iter()) {
            // SAFETY: dup2 of an open fd onto a number that holds nothing,
            // a copy of the same source, or a file the parent had there
            // before spawning (not std's); it clears FD_CLOEXEC on the
            // target and is async-signal-safe.
            cvt(unsafe { libc::dup2(*tmp, m.target) })?;
        }
        Ok(())
    };
    // SAFETY: the closure only calls fstat, fcntl and dup2, which are
    // async-signal-safe, and writes into memory allocated before the fork.
    unsafe { cmd.pre_exec(closure) };
}

/// `end` registered with the current tokio runtime's reactor.
#[cfg(feature = "tokio")]
pub(crate) fn async_fd<T: std::os::fd::AsRawFd + PipeEnd>(
    end: T,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: a pipe end (`PipeEnd`) owns its fd for all its life and never
    // changes it: the raw fd stays open and names the same open file
    // description until the end is dropped, which happens only with the
    // AsyncFd that owns it (or after `into_inner` gives it back).
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(end, interest) }.map_err(io::Error::from)
}

/// The ends of this crate, each owning one fd for all its life.
#[cfg(feature = "tokio")]
pub(crate) trait PipeEnd {}
#[cfg(feature = "tokio")]
impl PipeEnd for crate::PipeReader {}
#[cfg(feature = "tokio")]
impl PipeEnd for crate::PipeWriter {}
