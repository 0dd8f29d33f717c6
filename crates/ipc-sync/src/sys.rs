//! The system calls of ipc-sync. Every `unsafe` block of the crate is here,
//! one call per block, each with the reason it is sound, except the
//! mutex guards' access to the value they protect (`mutex_forms`). The
//! calls nix offers go through nix; libc remains for futexes, System V
//! semaphores, POSIX named semaphores and `sem_clockwait`, robust lists,
//! `membarrier`, `ftok` and `pthread_atfork`.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use crate::os::cvt;

/// `FUTEX_WAIT` on a shared (not process-private) futex word: sleeps while
/// `*word == expected`, at most `timeout` (relative, on the monotonic
/// clock). Returns the error the kernel gave: `EAGAIN` when the value
/// differed, `ETIMEDOUT`, `EINTR`.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<()> {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    });
    futex(word, libc::FUTEX_WAIT, expected, ts.as_ref()).map(drop)
}

/// `FUTEX_WAKE` on a shared futex word: wakes up to `n` waiters; returns how
/// many were woken.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    let n = u32::try_from(i32::MAX).map_or(n, |max| n.min(max));
    futex(word, libc::FUTEX_WAKE, n, None).map_or(0, |r| usize::try_from(r).unwrap_or(0))
}

/// One `futex(2)` call of `op` (`FUTEX_WAIT` or `FUTEX_WAKE`, on a shared
/// word) with `val` and, for a wait, a relative timeout.
fn futex(word: &AtomicU32, op: libc::c_int, val: u32, timeout: Option<&libc::timespec>) -> io::Result<libc::c_long> {
    let ts_ptr = timeout.map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the whole call (it is
    // borrowed); FUTEX_WAIT only reads it, FUTEX_WAKE only hashes its
    // address. The timespec pointer is null or points to a timespec the
    // caller keeps alive for the call; FUTEX_WAKE ignores it.
    cvt(unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, ts_ptr) })
}

/// `membarrier(2)` with `cmd` (no flags, no CPU): what the kernel returned.
pub(crate) fn membarrier(cmd: libc::c_int) -> io::Result<libc::c_long> {
    // SAFETY: membarrier takes plain integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_uint, 0 as libc::c_int) };
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// `ftok(3)`.
pub(crate) fn ftok(path: &CStr, proj_id: u8) -> io::Result<libc::key_t> {
    // SAFETY: `path` is a valid NUL-terminated string.
    let key = unsafe { libc::ftok(path.as_ptr(), libc::c_int::from(proj_id)) };
    if key == -1 { Err(io::Error::last_os_error()) } else { Ok(key) }
}

/// The current time on `CLOCK_MONOTONIC` plus `after`, as the absolute
/// timespec that `*_clocklock` and `*_clockwait` take.
fn monotonic_after(after: Duration) -> libc::timespec {
    clock_after(libc::CLOCK_MONOTONIC, after)
}

/// The current time on `clock` plus `after`, as an absolute timespec
/// (saturating instead of overflowing).
pub(crate) fn clock_after(clock: libc::clockid_t, after: Duration) -> libc::timespec {
    let now = nix::time::clock_gettime(nix::time::ClockId::from_raw(clock))
        .map_or(libc::timespec { tv_sec: 0, tv_nsec: 0 }, |t| *t.as_ref());
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0) + u64::from(after.subsec_nanos());
    let secs =
        u64::try_from(now.tv_sec).unwrap_or(0).saturating_add(after.as_secs()).saturating_add(nanos / 1_000_000_000);
    libc::timespec {
        tv_sec: libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::try_from(nanos % 1_000_000_000).unwrap_or(0),
    }
}

/// The kernel's `struct robust_list_head` (see the kernel's
/// Documentation/locking/robust-futex-ABI.rst): the head of one thread's
/// list of held robust futexes, which the kernel walks when the thread dies.
#[repr(C)]
struct RawRobustHead {
    /// The first entry; the head's own address when the list is empty.
    list: usize,
    /// Where an entry's futex word is, relative to the entry.
    futex_offset: libc::c_long,
    /// The entry being locked or unlocked right now, or 0.
    list_op_pending: usize,
}

/// The robust-list head the calling thread registered with the kernel
/// (glibc registers one for every thread it starts, in the thread's own
/// control block). A handle is used only on the thread it was made on,
/// which keeps the head alive and owns its `list` and `list_op_pending`
/// words between calls into glibc.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RobustHead(std::ptr::NonNull<RawRobustHead>);

impl RobustHead {
    /// The calling thread's head, from `get_robust_list(2)`; `None` when
    /// it registered none.
    pub(crate) fn of_this_thread() -> io::Result<Option<RobustHead>> {
        let mut head: *mut RawRobustHead = std::ptr::null_mut();
        let mut len: libc::size_t = 0;
        // SAFETY: pid 0 is the calling thread; the kernel writes one
        // pointer and one size_t through the two valid pointers.
        let r = unsafe {
            libc::syscall(libc::SYS_get_robust_list, 0 as libc::c_int, &mut head as *mut *mut RawRobustHead, &mut len)
        };
        if r == -1 {
            return Err(io::Error::last_os_error());
        }
        if len != std::mem::size_of::<RawRobustHead>() {
            return Ok(None);
        }
        Ok(std::ptr::NonNull::new(head).map(RobustHead))
    }

    /// The head's address: what the last entry of the list points to.
    pub(crate) fn addr(self) -> usize {
        self.0.as_ptr() as usize
    }

    /// The head's `futex_offset`.
    pub(crate) fn futex_offset(self) -> libc::c_long {
        // SAFETY: the head is the calling thread's registered head, alive
        // as long as the thread (see the type); a plain read of our own
        // thread's memory.
        unsafe { std::ptr::addr_of!((*self.0.as_ptr()).futex_offset).read_volatile() }
    }

    /// The first entry of the list.
    pub(crate) fn list(self) -> usize {
        // SAFETY: as in futex_offset.
        unsafe { std::ptr::addr_of!((*self.0.as_ptr()).list).read_volatile() }
    }

    /// Makes `entry` the first entry of the list. Volatile, so that the
    /// store is made where the code puts it: the kernel may read the list
    /// at any instruction, when the thread is killed.
    pub(crate) fn set_list(self, entry: usize) {
        // SAFETY: as in futex_offset; the thread owns the word.
        unsafe { std::ptr::addr_of_mut!((*self.0.as_ptr()).list).write_volatile(entry) }
    }

    /// Sets `list_op_pending` (0 for none).
    pub(crate) fn set_pending(self, entry: usize) {
        // SAFETY: as in set_list.
        unsafe { std::ptr::addr_of_mut!((*self.0.as_ptr()).list_op_pending).write_volatile(entry) }
    }
}

/// The calling thread's id in its own PID namespace (`gettid(2)`): what
/// the kernel compares a robust futex's owner field with when the thread
/// dies.
pub(crate) fn gettid() -> u32 {
    u32::try_from(nix::unistd::gettid().as_raw()).unwrap_or(0)
}

unsafe extern "C" {
    // POSIX; the libc crate does not declare it for Linux.
    fn pthread_atfork(
        prepare: Option<unsafe extern "C" fn()>,
        parent: Option<unsafe extern "C" fn()>,
        child: Option<unsafe extern "C" fn()>,
    ) -> libc::c_int;
}

/// Runs `child` in the child of every later `fork` (on the forking thread,
/// the child's only thread), before `fork` returns there.
pub(crate) fn at_fork_child(child: unsafe extern "C" fn()) -> io::Result<()> {
    // SAFETY: registers a function pointer that lives for the whole
    // program; the other two handlers are none.
    match unsafe { pthread_atfork(None, None, Some(child)) } {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // No signal: only checks that the process exists.
    let r = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None);
    let exists = matches!(r, Ok(()) | Err(nix::errno::Errno::EPERM));
    // A process that died but was not yet reaped by its parent (a zombie)
    // still "exists" for kill(2): it is gone all the same.
    exists && !is_zombie(pid)
}

/// Whether /proc says `pid` is a zombie (or dead).
fn is_zombie(pid: libc::pid_t) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name, which is in parentheses and may
    // itself contain them.
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
    matches!(state, Some("Z" | "X"))
}

unsafe extern "C" {
    // The libc crate does not declare it for glibc; glibc has it since 2.3.
    fn semtimedop(
        semid: libc::c_int,
        sops: *mut libc::sembuf,
        nsops: libc::size_t,
        timeout: *const libc::timespec,
    ) -> libc::c_int;
}

/// Kills this process with `SIGKILL` (a failpoint).
#[cfg(feature = "failpoints")]
pub(crate) fn kill_self() -> ! {
    let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
    unreachable!("SIGKILL returned")
}

/// Stops this process with `SIGSTOP` until another sends `SIGCONT` (a
/// failpoint).
#[cfg(feature = "failpoints")]
pub(crate) fn stop_self() {
    // Stops us until a SIGCONT, and then the call returns.
    let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGSTOP);
}

/// `semget(2)`.
pub(crate) fn semget(key: libc::key_t, nsems: libc::c_int, flags: libc::c_int) -> io::Result<libc::c_int> {
    // SAFETY: semget takes plain integers.
    cvt(unsafe { libc::semget(key, nsems, flags) })
}

/// `semtimedop(2)` (`timeout` relative; `None` waits without limit).
pub(crate) fn semop(id: libc::c_int, ops: &mut [libc::sembuf], timeout: Option<Duration>) -> io::Result<()> {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `ops` is a valid array of sembufs of the given length; the
    // timespec pointer is null or points to `ts`, alive for the call.
    cvt(unsafe { semtimedop(id, ops.as_mut_ptr(), ops.len(), ts_ptr) }).map(drop)
}

/// `semctl` with a command that takes an int or nothing as its fourth
/// argument: `GETVAL`, `SETVAL`, `IPC_RMID`.
fn semctl_int(id: libc::c_int, index: libc::c_int, cmd: libc::c_int, value: libc::c_int) -> io::Result<libc::c_int> {
    // Checked in release builds too: another command would read the int
    // as a pointer, and this function is safe.
    if !matches!(cmd, libc::GETVAL | libc::SETVAL | libc::IPC_RMID) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: semctl is variadic: SETVAL reads the `val` member of the
    // union semun argument, which an int passed in its place represents
    // the same way on Linux ABIs, and GETVAL and IPC_RMID read no fourth
    // argument, so the int passed is ignored.
    cvt(unsafe { libc::semctl(id, index, cmd, value) })
}

/// `semctl(GETVAL)`.
pub(crate) fn sem_getval(id: libc::c_int, index: libc::c_int) -> io::Result<libc::c_int> {
    semctl_int(id, index, libc::GETVAL, 0)
}

/// `semctl(SETVAL)`.
pub(crate) fn sem_setval(id: libc::c_int, index: libc::c_int, value: libc::c_int) -> io::Result<()> {
    semctl_int(id, index, libc::SETVAL, value).map(drop)
}

/// `semctl(IPC_STAT)`.
pub(crate) fn sem_stat(id: libc::c_int) -> io::Result<libc::semid_ds> {
    // SAFETY: an all-zero semid_ds is a valid value for the kernel to fill.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one semid_ds through the `buf` pointer.
    cvt(unsafe { libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) })?;
    Ok(ds)
}

/// `semctl(IPC_RMID)`.
pub(crate) fn sem_remove(id: libc::c_int) -> io::Result<()> {
    semctl_int(id, 0, libc::IPC_RMID, 0).map(drop)
}

unsafe extern "C" {
    // glibc 2.30 and later; the libc crate does not declare it.
    fn sem_clockwait(sem: *mut libc::sem_t, clock: libc::clockid_t, abstime: *const libc::timespec) -> libc::c_int;
}

/// An open POSIX named semaphore (`sem_open`), closed on drop.
#[derive(Debug)]
pub(crate) struct NamedSem(std::ptr::NonNull<libc::sem_t>);

// SAFETY: sem_* functions are thread-safe on one sem_t.
unsafe impl Send for NamedSem {}
// SAFETY: as above.
unsafe impl Sync for NamedSem {}

impl NamedSem {
    /// `sem_open(name, flags, mode, value)`.
    pub(crate) fn open(name: &CStr, flags: libc::c_int, mode: libc::mode_t, value: u32) -> io::Result<NamedSem> {
        // SAFETY: `name` is NUL-terminated; with O_CREAT the variadic mode
        // and value are read, and they are passed with the promoted types
        // (unsigned int) sem_open reads.
        let p = unsafe { libc::sem_open(name.as_ptr(), flags, libc::c_uint::from(mode), value) };
        if p == libc::SEM_FAILED {
            return Err(io::Error::last_os_error());
        }
        std::ptr::NonNull::new(p).map(NamedSem).ok_or_else(|| io::Error::other("sem_open returned null"))
    }

    /// `sem_post`, `sem_wait` or `sem_trywait` on the semaphore.
    fn call(&self, call: SemCall) -> io::Result<()> {
        let f: unsafe extern "C" fn(*mut libc::sem_t) -> libc::c_int = match call {
            SemCall::Post => libc::sem_post,
            SemCall::Wait => libc::sem_wait,
            SemCall::TryWait => libc::sem_trywait,
        };
        // SAFETY: each of those functions takes a pointer to an open
        // semaphore, which this is until drop.
        cvt(unsafe { f(self.0.as_ptr()) }).map(drop)
    }

    pub(crate) fn post(&self) -> io::Result<()> {
        self.call(SemCall::Post)
    }

    /// Waits: without limit (`None`), not at all (`Some(ZERO)`), or for
    /// `timeout` on the monotonic clock. `EINTR` is returned.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<()> {
        match timeout {
            None => self.call(SemCall::Wait),
            Some(t) if t.is_zero() => self.call(SemCall::TryWait),
            Some(t) => {
                let at = monotonic_after(t);
                // SAFETY: the semaphore is open until drop; `at` is a valid
                // timespec.
                cvt(unsafe { sem_clockwait(self.0.as_ptr(), libc::CLOCK_MONOTONIC, &at) }).map(drop)
            }
        }
    }

    pub(crate) fn value(&self) -> io::Result<i32> {
        let mut v = 0;
        // SAFETY: the semaphore is open; sem_getvalue writes one int.
        cvt(unsafe { libc::sem_getvalue(self.0.as_ptr(), &mut v) })?;
        Ok(v)
    }
}

impl Drop for NamedSem {
    fn drop(&mut self) {
        // SAFETY: closes this process's handle, open until now and used no
        // more.
        unsafe { libc::sem_close(self.0.as_ptr()) };
    }
}

/// The calls on an open named semaphore that take nothing but it. (Not a
/// function pointer: a safe `call` must not be handed `sem_close` or
/// `sem_destroy`.)
#[derive(Clone, Copy)]
enum SemCall {
    Post,
    Wait,
    TryWait,
}

/// `sem_unlink(3)`.
pub(crate) fn sem_unlink(name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated.
    cvt(unsafe { libc::sem_unlink(name.as_ptr()) }).map(drop)
}

/// `eventfd(2)` with `EFD_CLOEXEC | EFD_NONBLOCK` and the given extra flags.
pub(crate) fn eventfd(initval: u32, flags: libc::c_int) -> io::Result<std::os::fd::OwnedFd> {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    let flags = EfdFlags::from_bits_retain(flags) | EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK;
    Ok(EventFd::from_value_and_flags(initval, flags)?.into())
}

/// One 8-byte `read(2)` from an eventfd.
pub(crate) fn eventfd_read(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<u64> {
    let mut v = [0; 8];
    match nix::unistd::read(fd, &mut v)? {
        8 => Ok(u64::from_ne_bytes(v)),
        n => Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("an eventfd read gave {n} bytes, not 8"))),
    }
}

/// One 8-byte `write(2)` to an eventfd.
pub(crate) fn eventfd_write(fd: std::os::fd::BorrowedFd<'_>, v: u64) -> io::Result<()> {
    match nix::unistd::write(fd, &v.to_ne_bytes())? {
        8 => Ok(()),
        n => Err(io::Error::new(io::ErrorKind::WriteZero, format!("an eventfd write took {n} bytes, not 8"))),
    }
}

/// Wake-ups on every read of an eventfd: an edge-triggered epoll that
/// watches it for `POLLOUT`. The kernel signals `POLLOUT` to the eventfd's
/// waiters each time a read takes from the counter, and an edge-triggered
/// epoll reports each such signal once (writes signal only `POLLIN`, which
/// it does not watch). So a writer that needs room for more than 1 can
/// sleep until the next read instead of polling a `POLLOUT` level that
/// already holds.
#[derive(Debug)]
pub(crate) struct ReadEdges(nix::sys::epoll::Epoll);

impl ReadEdges {
    /// Starts watching `fd`. The first [`wait`](Self::wait) may return at
    /// once (the level at the start counts as an edge).
    pub(crate) fn new(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<Self> {
        use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLOUT | EpollFlags::EPOLLET, 0))?;
        Ok(ReadEdges(epoll))
    }

    /// Sleeps until the next read, at most `timeout_ms` (-1: no limit).
    /// `EINTR` is returned.
    pub(crate) fn wait(&self, timeout_ms: libc::c_int) -> io::Result<()> {
        let timeout =
            nix::sys::epoll::EpollTimeout::try_from(timeout_ms.max(-1)).unwrap_or(nix::poll::PollTimeout::MAX);
        let mut events = [nix::sys::epoll::EpollEvent::empty()];
        self.0.wait(&mut events, timeout)?;
        Ok(())
    }
}

/// `epoll_ctl(2)` with `EPOLL_CTL_ADD` of a descriptor known only by its
/// number, which may have been closed (`EBADF`).
pub(crate) fn epoll_add_number(
    epoll: &nix::sys::epoll::Epoll,
    fd: std::os::fd::RawFd,
    event: nix::sys::epoll::EpollEvent,
) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    let mut ev = libc::epoll_event { events: event.events().bits() as u32, u64: event.data() };
    // SAFETY: as in `epoll_ctl_number`: `ev` is valid for the call, and `fd`
    // is only a number to the kernel.
    let r = unsafe { libc::epoll_ctl(epoll.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
    nix::errno::Errno::result(r).map(drop)
}

/// `epoll_ctl(2)` on a descriptor known only by its number, which may have
/// been closed since it was registered: `EPOLL_CTL_MOD` to `event`, or
/// `EPOLL_CTL_DEL` without one. A closed number fails (`EBADF`), as does
/// one that is open but not registered (`ENOENT`).
pub(crate) fn epoll_ctl_number(
    epoll: &nix::sys::epoll::Epoll,
    fd: std::os::fd::RawFd,
    event: Option<nix::sys::epoll::EpollEvent>,
) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    let (op, mut ev) = match event {
        Some(e) => (libc::EPOLL_CTL_MOD, libc::epoll_event { events: e.events().bits() as u32, u64: e.data() }),
        None => (libc::EPOLL_CTL_DEL, libc::epoll_event { events: 0, u64: 0 }),
    };
    // SAFETY: epoll_ctl reads `ev`, a valid epoll_event that outlives the
    // call, and takes `fd` as a number: nothing is read or written through
    // it, so a closed or reused number is at worst refused or unregistered.
    let r = unsafe { libc::epoll_ctl(epoll.0.as_raw_fd(), op, fd, &mut ev) };
    nix::errno::Errno::result(r).map(drop)
}

/// A descriptor registered with a tokio runtime's reactor while somebody
/// in that runtime waits on it: the first [`wait`](Self::wait) there
/// registers it, and the last to end takes the registration away again.
/// A doorbell (`keep`), which is rung but never drained and so must be
/// waited on for its edges, stays registered with each runtime it was
/// waited in, for the value's life. Registering and deregistering happen
/// under one lock, so a registration never meets its predecessor's
/// (`EEXIST`).
#[cfg(feature = "tokio")]
pub(crate) struct OnDemand {
    // Dropped before `fd`: the registrations go while its number is still
    // this descriptor's.
    slot: std::sync::Mutex<Vec<(tokio::runtime::Id, Hold)>>,
    fd: std::os::fd::OwnedFd,
    interest: tokio::io::Interest,
    keep: bool,
}

/// A runtime's registration, as the slot holds it.
#[cfg(feature = "tokio")]
enum Hold {
    /// Kept for the value's life (a doorbell).
    Kept(std::sync::Arc<tokio::io::unix::AsyncFd<std::os::fd::RawFd>>),
    /// Alive while a `Registered` holds it.
    Shared(std::sync::Weak<tokio::io::unix::AsyncFd<std::os::fd::RawFd>>),
}

#[cfg(feature = "tokio")]
impl OnDemand {
    /// `fd`, to be registered for `interest` while waited on (for the
    /// value's life once waited on, with `keep`). It is registered once
    /// here with the current runtime (and, unless kept, at once taken
    /// away), so that a descriptor the reactor refuses is an error now.
    pub(crate) fn new(fd: std::os::fd::OwnedFd, interest: tokio::io::Interest, keep: bool) -> io::Result<OnDemand> {
        let me = OnDemand { slot: std::sync::Mutex::new(Vec::new()), fd, interest, keep };
        drop(me.enter()?);
        Ok(me)
    }

    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Waits until the descriptor is readable (or writable), and forgets
    /// that readiness; registered with the current runtime for the wait
    /// (unless other waits there already hold the registration). A
    /// descriptor that became ready before its registration is reported
    /// ready by it.
    pub(crate) async fn wait(&self, readable: bool) -> io::Result<()> {
        let hold = self.enter()?;
        if let Some(fd) = hold.shared.as_deref() {
            let mut guard = if readable { fd.readable().await? } else { fd.writable().await? };
            guard.clear_ready();
        }
        Ok(())
    }

    /// The current runtime's registration, made now if there is none.
    fn enter(&self) -> io::Result<Registered<'_>> {
        use std::os::fd::AsRawFd;
        use std::sync::Arc;
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?.id();
        let mut slot = self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.retain(|(_, h)| !matches!(h, Hold::Shared(w) if w.strong_count() == 0));
        let found = slot.iter().find(|(id, _)| *id == runtime).and_then(|(_, h)| match h {
            Hold::Kept(a) => Some(Arc::clone(a)),
            Hold::Shared(w) => w.upgrade(),
        });
        if let Some(shared) = found {
            return Ok(Registered { owner: self, shared: Some(shared) });
        }
        // SAFETY: `self.fd` is open and names the same description until
        // `self` is dropped, and the AsyncFd lives only as long as the
        // values that hold it: `Registered` values, each of which borrows
        // `self`, and the slot's `Kept` holds, which `self` drops before
        // `fd` (a `Weak` does not keep the AsyncFd alive).
        let fd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(self.fd.as_raw_fd(), self.interest) }
            .map_err(io::Error::from)?;
        let shared = Arc::new(fd);
        let hold = if self.keep { Hold::Kept(Arc::clone(&shared)) } else { Hold::Shared(Arc::downgrade(&shared)) };
        slot.push((runtime, hold));
        Ok(Registered { owner: self, shared: Some(shared) })
    }
}

/// A hold on one of an [`OnDemand`]'s registrations (`Some` until
/// dropped).
#[cfg(feature = "tokio")]
struct Registered<'a> {
    owner: &'a OnDemand,
    shared: Option<std::sync::Arc<tokio::io::unix::AsyncFd<std::os::fd::RawFd>>>,
}

#[cfg(feature = "tokio")]
impl Drop for Registered<'_> {
    fn drop(&mut self) {
        // The last hold deregisters (in the AsyncFd's drop) under the lock.
        let _slot = self.owner.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        drop(self.shared.take());
    }
}

/// Sets `FD_CLOEXEC` on `fd` and `O_NONBLOCK` on its description.
pub(crate) fn cloexec_nonblocking(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}
