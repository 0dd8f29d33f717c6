//! The system calls ipc-pipe makes. Every `unsafe` block of the crate is
//! here; each wraps one call and says why it is sound.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// `PIPE_BUF`: writes of at most this many bytes to a pipe are atomic.
pub(crate) const PIPE_BUF: usize = libc::PIPE_BUF;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn cvt_size(r: libc::ssize_t) -> io::Result<usize> {
    // A negative return is -1 with errno set; anything else fits in usize.
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

/// `pipe2(O_CLOEXEC)`: the read end first.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so fds[0] is a new open fd that nothing else owns.
    let r = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    // SAFETY: likewise for fds[1].
    let w = unsafe { OwnedFd::from_raw_fd(fds[1]) };
    Ok((r, w))
}

/// One `read(2)`; `EINTR` is returned to the caller.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    cvt_size(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// One `readv(2)`.
pub(crate) fn readv(fd: BorrowedFd<'_>, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
    let n = iov_count(bufs.len());
    // SAFETY: IoSliceMut is ABI-compatible with `struct iovec`, and each
    // points to memory valid for writes of its length.
    cvt_size(unsafe { libc::readv(fd.as_raw_fd(), bufs.as_mut_ptr().cast(), n) })
}

/// One `write(2)`; `EINTR` is returned to the caller. Call it under
/// [`without_sigpipe`].
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    cvt_size(unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
}

/// One `writev(2)`. Call it under [`without_sigpipe`].
pub(crate) fn writev(fd: BorrowedFd<'_>, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    let n = iov_count(bufs.len());
    // SAFETY: IoSlice is ABI-compatible with `struct iovec`, and each points
    // to memory valid for reads of its length.
    cvt_size(unsafe { libc::writev(fd.as_raw_fd(), bufs.as_ptr().cast(), n) })
}

fn iov_count(n: usize) -> libc::c_int {
    // IOV_MAX is 1024 on Linux; passing fewer buffers is always allowed.
    libc::c_int::try_from(n.min(1024)).unwrap_or(1024)
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
        match cvt_size(r) {
            Err(e) if nowait_unsupported(&e) => {}
            other => return other,
        }
    }
    if poll(fd, libc::POLLIN, 0)? { read(fd, buf) } else { Err(io::ErrorKind::WouldBlock.into()) }
}

/// A write that never blocks: `pwritev2(RWF_NOWAIT)`, or where the kernel
/// lacks it, `poll` with a zero timeout and then a write of at most
/// `PIPE_BUF` bytes (which fits in the free slot that `POLLOUT` reports).
/// Writes of at most `PIPE_BUF` bytes are all or nothing. Call it under
/// [`without_sigpipe`].
pub(crate) fn write_nowait(fd: BorrowedFd<'_>, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    if NOWAIT_WORKS.load(Ordering::Relaxed) {
        let n = iov_count(bufs.len());
        // SAFETY: IoSlice is ABI-compatible with `struct iovec` and each
        // points to readable memory of its length; offset -1 is required for
        // pipes.
        let r = unsafe { libc::pwritev2(fd.as_raw_fd(), bufs.as_ptr().cast(), n, -1, libc::RWF_NOWAIT) };
        match cvt_size(r) {
            Err(e) if nowait_unsupported(&e) => {}
            other => return other,
        }
    }
    if !poll(fd, libc::POLLOUT, 0)? {
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

/// `poll(2)` on one fd: whether it became ready (`POLLHUP` and `POLLERR`
/// count as ready: the next read or write reports them) before `timeout_ms`
/// (-1: no limit). `EINTR` is returned to the caller.
pub(crate) fn poll(fd: BorrowedFd<'_>, events: libc::c_short, timeout_ms: libc::c_int) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 };
    // SAFETY: one valid pollfd.
    let n = cvt(unsafe { libc::poll(&mut pfd, 1, timeout_ms) })?;
    Ok(n > 0)
}

/// `fcntl(F_GETPIPE_SZ)`.
pub(crate) fn pipe_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: F_GETPIPE_SZ takes no argument and only reads the fd.
    let n = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) })?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `fcntl(F_SETPIPE_SZ)`: the size the kernel chose (rounded up to a power
/// of two pages).
pub(crate) fn set_pipe_size(fd: BorrowedFd<'_>, size: libc::c_int) -> io::Result<usize> {
    // SAFETY: F_SETPIPE_SZ takes an int argument and changes only the pipe.
    let n = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) })?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Whether `O_NONBLOCK` is set on the open file description.
pub(crate) fn nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: F_GETFL takes no argument and only reads the fd's flags.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    Ok(flags & libc::O_NONBLOCK != 0)
}

/// Sets or clears `O_NONBLOCK` on the open file description.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument and only reads the fd's flags.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let new = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
    if new != flags {
        // SAFETY: F_SETFL takes an int of file status flags.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, new) })?;
    }
    Ok(())
}

/// `ioctl(FIONREAD)`: the bytes waiting in the pipe.
pub(crate) fn bytes_available(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which is valid.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) })?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `splice(2)` between two fds at their current positions. Call it under
/// [`without_sigpipe`] when `out` is a pipe.
pub(crate) fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize, flags: libc::c_uint) -> io::Result<usize> {
    // SAFETY: null offsets mean the current file positions; no memory is
    // passed to the kernel.
    cvt_size(unsafe {
        libc::splice(from.as_raw_fd(), std::ptr::null_mut(), to.as_raw_fd(), std::ptr::null_mut(), len, flags)
    })
}

/// `tee(2)`. Call it under [`without_sigpipe`].
pub(crate) fn tee(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize, flags: libc::c_uint) -> io::Result<usize> {
    // SAFETY: tee takes two fds and no memory.
    cvt_size(unsafe { libc::tee(from.as_raw_fd(), to.as_raw_fd(), len, flags) })
}

/// `vmsplice(2)` of user memory into a pipe. Call it under
/// [`without_sigpipe`].
pub(crate) fn vmsplice(to: BorrowedFd<'_>, bufs: &[io::IoSlice<'_>], flags: libc::c_uint) -> io::Result<usize> {
    let n = usize::try_from(iov_count(bufs.len())).unwrap_or(0);
    // SAFETY: IoSlice is ABI-compatible with `struct iovec`; the kernel takes
    // page references to the memory, so later changes or frees by us cannot
    // make it read freed memory (without SPLICE_F_GIFT, which we never pass).
    cvt_size(unsafe { libc::vmsplice(to.as_raw_fd(), bufs.as_ptr().cast(), n, flags) })
}

/// Whether `SIGPIPE` was ignored (`SIG_IGN`, as in every Rust program
/// unless it opted out) when a pipe writer was last made in this process.
static SIGPIPE_IGNORED: AtomicBool = AtomicBool::new(false);

/// Reads `SIGPIPE`'s disposition into [`SIGPIPE_IGNORED`].
pub(crate) fn note_sigpipe_disposition() {
    // SAFETY: an all-zero sigaction is a valid value for the kernel to
    // overwrite.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
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
    // (zero timeout) if not; the siginfo pointer may be null.
    unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) };
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
            let block = sigpipe_set();
            let mut old = empty_sigset();
            // SAFETY: both pointers are valid sigsets; pthread_sigmask cannot
            // fail with valid arguments.
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old) };
            // SAFETY: `old` was filled in by pthread_sigmask.
            let was_blocked = unsafe { libc::sigismember(&old, libc::SIGPIPE) } == 1;
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
            let set = sigpipe_set();
            // SAFETY: unblocks only SIGPIPE, which the first block of this
            // thread blocked; the pointers are valid or null.
            unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
        }
    }
}

fn sigpipe_set() -> libc::sigset_t {
    let mut set = empty_sigset();
    // SAFETY: `set` is an initialized sigset and SIGPIPE a valid signal.
    unsafe { libc::sigaddset(&mut set, libc::SIGPIPE) };
    set
}

fn empty_sigset() -> libc::sigset_t {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initializes the whole set it is given.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    // SAFETY: initialized just above.
    unsafe { set.assume_init() }
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
            // SAFETY: F_DUPFD_CLOEXEC on an open fd makes a new fd at the
            // lowest free number from `target` up; it closes nothing.
            let r = unsafe { libc::fcntl(source.as_raw_fd(), libc::F_DUPFD_CLOEXEC, target) };
            // SAFETY: a successful F_DUPFD_CLOEXEC returns a new fd that
            // nothing else owns.
            let copy = (r >= 0).then(|| unsafe { OwnedFd::from_raw_fd(r) });
            let (reserved, parent_id) = match copy {
                Some(copy) if copy.as_raw_fd() == target => (Some(copy), None),
                // The number was taken (the copy, if any, landed above it
                // and closes here): note what the parent has there.
                _ => (None, file_id(target)),
            };
            let source_id = file_id(source.as_raw_fd());
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
            // SAFETY: F_DUPFD_CLOEXEC on an fd that is open in the child
            // (inherited from the parent's OwnedFd); async-signal-safe.
            *tmp = cvt(unsafe { libc::fcntl(m.source.as_raw_fd(), libc::F_DUPFD_CLOEXEC, floor) })?;
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
