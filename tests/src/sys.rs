//! The harness's raw system calls: fork, pidfd, fd surgery in the child.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::unistd::{ForkResult, Pid};

/// Forks. The caller's process must be able to continue in the child with
/// only the forking thread; the harness forks from its single thread, and
/// cases fork before starting threads of their own.
pub(crate) fn fork() -> nix::Result<ForkResult> {
    // SAFETY: the child runs only code that the harness controls: the case
    // or a closure, which do not rely on other threads' locks (tests start
    // no threads before forking), and then exits with _exit.
    unsafe { nix::unistd::fork() }
}

/// `pidfd_open(2)`: an fd that becomes readable when `pid` exits.
pub(crate) fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the syscall returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes `fd` the process's fd number `target` (dup2).
pub(crate) fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    // SAFETY: dup2 of an open fd onto a plain number; the target is a
    // standard stream whose previous file is replaced on purpose.
    if unsafe { libc::dup2(fd.as_raw_fd(), target) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Closes fd number `fd` in this process, for a child that inherited a
/// copy of an end its parent keeps. The `OwnedFd` that held it lives in the
/// parent's part of the stack and is never dropped in the child, which
/// leaves by `_exit`.
pub(crate) fn close_raw(fd: RawFd) {
    // SAFETY: closes only this process's copy; no Rust value in the child
    // uses the number afterwards (the owning value is never dropped: the
    // child exits with _exit).
    unsafe { libc::close(fd) };
}

/// Sets `SIGPIPE` back to its default action (terminate), as a C program
/// has it; the Rust runtime starts programs with it ignored.
pub(crate) fn set_sigpipe_default() {
    // SAFETY: SIG_DFL installs no handler code; no other thread is relying
    // on the old disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

extern "C" fn noop_handler(_: libc::c_int) {}

/// Installs a handler that does nothing for `sig`, without `SA_RESTART`,
/// so that blocking system calls fail with `EINTR` when it arrives.
pub(crate) fn interrupt_on(sig: libc::c_int) {
    // SAFETY: an all-zero sigaction is valid (empty mask, no flags).
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = noop_handler as *const () as libc::sighandler_t;
    // SAFETY: the handler is async-signal-safe (it does nothing) and the
    // struct is fully initialized.
    unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) };
}

/// Whether `sig` is pending for this thread or process.
pub(crate) fn is_pending(sig: libc::c_int) -> bool {
    // SAFETY: an all-zero sigset is a valid value to be overwritten.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigpending fills the set it is given.
    unsafe { libc::sigpending(&mut set) };
    // SAFETY: `set` was filled in above.
    unsafe { libc::sigismember(&set, sig) == 1 }
}

/// Ends the process at once with `code`, without running exit handlers or
/// destructors (which belong to the process that forked us).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

/// Maps a page of a new memfd (no seals), shrinks the memfd to nothing,
/// and reads the page: the access past the end of the file raises
/// `SIGBUS`. Returns the byte read only if the process survived that.
pub(crate) fn read_past_end_of_shrunk_file() -> io::Result<u8> {
    let fd = nix::sys::memfd::memfd_create("ipc-kit-test-raw", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    nix::unistd::ftruncate(&fd, 4096)?;
    // SAFETY: a new shared mapping of one page at an address the kernel
    // chooses; no existing memory is affected.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ, libc::MAP_SHARED, fd.as_raw_fd(), 0) };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    nix::unistd::ftruncate(&fd, 0)?;
    // SAFETY: the page is mapped (just above) and aligned; reading it
    // after the shrink is the point: it raises SIGBUS, which is what the
    // caller checks. A volatile read, so that it is not optimized out.
    let byte = unsafe { std::ptr::read_volatile(p.cast::<u8>()) };
    // SAFETY: unmaps the page mapped above; nothing refers to it.
    unsafe { libc::munmap(p, 4096) };
    Ok(byte)
}

/// A System V object kind, for [`Refusal::apply_to_sysv`](crate::Refusal::apply_to_sysv).
#[derive(Clone, Copy, Debug)]
pub enum SysvKind {
    /// A shared-memory segment (`shmctl`).
    Segment,
    /// A semaphore set (`semctl`).
    Semaphores,
    /// A message queue (`msgctl`).
    Queue,
}

/// Sets the permission bits of the System V object `id` (`IPC_SET`, which
/// its owner may do whatever the bits say), keeping its owner.
pub(crate) fn sysv_set_mode(kind: SysvKind, id: i32, mode: u32) -> io::Result<()> {
    // The same steps for every kind, with its `*id_ds` and its `*ctl`
    // call (whose arguments before the command are given): IPC_STAT, the
    // mode changed, IPC_SET.
    macro_rules! stat_and_set {
        ($ds:ty, $perm:ident, $ctl:ident($($arg:expr),*)) => {{
            // SAFETY: an all-zero `*id_ds` (a C struct of plain integers)
            // is valid; IPC_STAT fills it in.
            let mut ds: $ds = unsafe { std::mem::zeroed() };
            // SAFETY: IPC_STAT writes one `*id_ds` through the pointer
            // (semctl takes it as its fourth, union semun, argument).
            if unsafe { libc::$ctl($($arg,)* libc::IPC_STAT, &mut ds as *mut $ds) } == -1 {
                return Err(io::Error::last_os_error());
            }
            ds.$perm.mode = mode as _;
            // SAFETY: IPC_SET reads the uid, gid and mode (and a queue's
            // msg_qbytes) through the pointer.
            unsafe { libc::$ctl($($arg,)* libc::IPC_SET, &mut ds as *mut $ds) }
        }};
    }
    let rc = match kind {
        SysvKind::Segment => stat_and_set!(libc::shmid_ds, shm_perm, shmctl(id)),
        SysvKind::Queue => stat_and_set!(libc::msqid_ds, msg_perm, msgctl(id)),
        SysvKind::Semaphores => stat_and_set!(libc::semid_ds, sem_perm, semctl(id, 0)),
    };
    if rc == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Takes fd `n`, which this program was started with (handed over at that
/// number by its parent), as an owned fd, once it is known to be open.
pub(crate) fn adopt_inherited(n: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only reads the flags of whatever is at `n`, or fails.
    if unsafe { libc::fcntl(n, libc::F_GETFD) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `n` is open, and it was handed to this program at start: no
    // value in this process owns it yet, and the caller takes it once.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// `F_DUPFD_CLOEXEC`: a new fd for `fd`'s file at the lowest free number
/// from `n` up.
pub(crate) fn dup_at_least(fd: BorrowedFd<'_>, n: RawFd) -> io::Result<OwnedFd> {
    let new = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(n))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// A duplicate (close-on-exec) of whatever is open at `n`; an error when
/// nothing is.
pub(crate) fn dup_open(n: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC only reads fd `n`, or fails when it is not
    // open; it returns a new fd that nothing else owns.
    let new = unsafe { libc::fcntl(n, libc::F_DUPFD_CLOEXEC, 0) };
    if new == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above: a new fd, owned here only.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}
