//! The system calls of ipc-sync. Every `unsafe` block of the crate is here
//! or in a module's own `sys` part, one call per block, each with the
//! reason it is sound.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// `FUTEX_WAIT` on a shared (not process-private) futex word: sleeps while
/// `*word == expected`, at most `timeout` (relative, on the monotonic
/// clock). Returns the error the kernel gave: `EAGAIN` when the value
/// differed, `ETIMEDOUT`, `EINTR`.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<()> {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the whole call (it is
    // borrowed); FUTEX_WAIT only reads it. The timespec pointer is null or
    // points to `ts`, which outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, ts_ptr) };
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `FUTEX_WAKE` on a shared futex word: wakes up to `n` waiters; returns how
/// many were woken.
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE does not access
    // memory through the pointer beyond hashing its address.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
    usize::try_from(r).unwrap_or(0)
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
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(clock, &mut now) };
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0) + u64::from(after.subsec_nanos());
    let secs =
        u64::try_from(now.tv_sec).unwrap_or(0).saturating_add(after.as_secs()).saturating_add(nanos / 1_000_000_000);
    libc::timespec {
        tv_sec: libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::try_from(nanos % 1_000_000_000).unwrap_or(0),
    }
}

unsafe extern "C" {
    // glibc 2.30 and later; the libc crate does not declare it.
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// What locking a robust mutex gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RobustLock {
    Locked,
    /// Locked, but the previous owner died holding it.
    OwnerDied,
    NotRecoverable,
    Busy,
    TimedOut,
    /// This thread holds it already.
    Deadlock,
    Failed(i32),
}

/// A process-shared, robust, error-checking pthread mutex that initializes
/// itself on first use, so that all zero bytes are a valid (not yet
/// initialized) value.
///
/// `init` is 0 before initialization, the pid of the initializing process
/// during it, and `READY` after. A process that finds another's pid there
/// waits, or takes over if that process is gone.
///
/// `lost` is set once the mutex is known to be not recoverable: glibc can
/// leave such a mutex looking merely busy after a process that tried it
/// exits, so the state is kept here too.
#[repr(C)]
pub(crate) struct RawRobustMutex {
    init: AtomicU32,
    lost: AtomicU32,
    mutex: std::cell::UnsafeCell<libc::pthread_mutex_t>,
}

const READY: u32 = u32::MAX;

// SAFETY: the pthread mutex is made for concurrent use from many threads
// and (process-shared) processes; `init` is atomic.
unsafe impl Sync for RawRobustMutex {}

impl RawRobustMutex {
    fn ptr(&self) -> *mut libc::pthread_mutex_t {
        self.mutex.get()
    }

    /// Initializes the pthread mutex once, whoever comes first.
    fn ensure_init(&self) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        let me = std::process::id();
        let mut spins = 0u32;
        loop {
            // Acquire: the initializer's writes to the mutex happen before.
            let state = self.init.load(Ordering::Acquire);
            if state == READY {
                return Ok(());
            }
            let claim = if state == 0 {
                Some(0)
            } else if !pid_alive(state) {
                Some(state) // the initializer died mid-way: take over
            } else {
                None
            };
            if let Some(from) = claim {
                if self.init.compare_exchange(from, me, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                    self.initialize()?;
                    // Release: publishes the initialized mutex.
                    self.init.store(READY, Ordering::Release);
                    return Ok(());
                }
                continue;
            }
            spins += 1;
            if spins < 100 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn initialize(&self) -> io::Result<()> {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: initializes the attribute object in place.
        let r = unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        let attr = attr.as_mut_ptr();
        // SAFETY: `attr` was initialized above; the constants are valid.
        let r = unsafe { libc::pthread_mutexattr_setpshared(attr, libc::PTHREAD_PROCESS_SHARED) };
        // SAFETY: as above.
        let r2 = unsafe { libc::pthread_mutexattr_setrobust(attr, libc::PTHREAD_MUTEX_ROBUST) };
        // SAFETY: as above.
        let r3 = unsafe { libc::pthread_mutexattr_settype(attr, libc::PTHREAD_MUTEX_ERRORCHECK) };
        // SAFETY: the mutex memory is ours to initialize (we hold the
        // `init` claim) and stays at this address (it lives in shared memory
        // or behind a reference while used); `attr` is initialized.
        let r4 = unsafe { libc::pthread_mutex_init(self.ptr(), attr) };
        // SAFETY: `attr` was initialized and is not used afterwards.
        unsafe { libc::pthread_mutexattr_destroy(attr) };
        match [r, r2, r3, r4].into_iter().find(|&r| r != 0) {
            Some(e) => Err(io::Error::from_raw_os_error(e)),
            None => Ok(()),
        }
    }

    /// Locks: waits without limit (`None`), not at all (`Some(ZERO)`), or
    /// until `timeout` from now on the monotonic clock.
    pub(crate) fn lock(&self, timeout: Option<Duration>) -> RobustLock {
        use std::sync::atomic::Ordering;
        if self.lost.load(Ordering::Acquire) != 0 {
            return RobustLock::NotRecoverable;
        }
        if let Err(e) = self.ensure_init() {
            return RobustLock::Failed(e.raw_os_error().unwrap_or(libc::EINVAL));
        }
        let r = match timeout {
            // SAFETY: the mutex is initialized (ensure_init) and stays put.
            None => unsafe { libc::pthread_mutex_lock(self.ptr()) },
            // SAFETY: as above.
            Some(t) if t.is_zero() => unsafe { libc::pthread_mutex_trylock(self.ptr()) },
            Some(t) => {
                // glibc's timed lock waits out the timeout on a mutex that
                // is not recoverable; a try first (and after a timeout)
                // tells that case apart at once.
                // SAFETY: as above.
                match unsafe { libc::pthread_mutex_trylock(self.ptr()) } {
                    libc::EBUSY => {
                        let at = monotonic_after(t);
                        // SAFETY: as above; `at` is a valid timespec.
                        match unsafe { pthread_mutex_clocklock(self.ptr(), libc::CLOCK_MONOTONIC, &at) } {
                            // SAFETY: as above.
                            libc::ETIMEDOUT => match unsafe { libc::pthread_mutex_trylock(self.ptr()) } {
                                libc::EBUSY => libc::ETIMEDOUT,
                                other => other,
                            },
                            other => other,
                        }
                    }
                    other => other,
                }
            }
        };
        match r {
            0 => RobustLock::Locked,
            libc::EOWNERDEAD => RobustLock::OwnerDied,
            libc::ENOTRECOVERABLE => {
                self.mark_lost();
                RobustLock::NotRecoverable
            }
            libc::EBUSY => RobustLock::Busy,
            libc::ETIMEDOUT => RobustLock::TimedOut,
            libc::EDEADLK => RobustLock::Deadlock,
            e => RobustLock::Failed(e),
        }
    }

    /// Marks the state protected by a mutex whose owner died as repaired.
    /// Call only while holding it after `OwnerDied`.
    pub(crate) fn make_consistent(&self) -> io::Result<()> {
        // SAFETY: the mutex is initialized (we hold it).
        match unsafe { libc::pthread_mutex_consistent(self.ptr()) } {
            0 => Ok(()),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }

    /// Records that the mutex is not recoverable.
    pub(crate) fn mark_lost(&self) {
        // Release: pairs with the Acquire load in `lock`.
        self.lost.store(1, std::sync::atomic::Ordering::Release);
    }

    /// Unlocks. Call only while holding it.
    pub(crate) fn unlock(&self) {
        // SAFETY: the mutex is initialized and held by this thread.
        unsafe { libc::pthread_mutex_unlock(self.ptr()) };
    }
}

pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    let exists = r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
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

/// Stops this process with `SIGSTOP` until it is sent `SIGCONT` (a
/// failpoint).
#[cfg(feature = "failpoints")]
pub(crate) fn stop_self() {
    // SAFETY: raise takes a signal number; SIGSTOP stops the process and
    // the call returns once it is continued.
    unsafe { libc::raise(libc::SIGSTOP) };
}

/// Kills this process with `SIGKILL` (a failpoint).
#[cfg(feature = "failpoints")]
pub(crate) fn kill_self() -> ! {
    // SAFETY: kill takes a pid and a signal; SIGKILL to ourselves does not
    // return.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    unreachable!("SIGKILL returned")
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(r) }
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

/// `semctl(GETVAL)`.
pub(crate) fn sem_getval(id: libc::c_int, index: libc::c_int) -> io::Result<libc::c_int> {
    // SAFETY: GETVAL takes no fourth argument.
    cvt(unsafe { libc::semctl(id, index, libc::GETVAL) })
}

/// `semctl(SETVAL)`.
pub(crate) fn sem_setval(id: libc::c_int, index: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: SETVAL reads the `val` member of the union semun argument; an
    // int passed in its place has the same representation on Linux ABIs.
    cvt(unsafe { libc::semctl(id, index, libc::SETVAL, value) }).map(drop)
}

/// `semctl(SETALL)`.
pub(crate) fn sem_setall(id: libc::c_int, values: &[u16]) -> io::Result<()> {
    // SAFETY: SETALL reads `nsems` unsigned shorts through the `array`
    // member of the union semun argument; the caller passes exactly as many
    // values as the set has, and a pointer in place of the union has the
    // same representation.
    cvt(unsafe { libc::semctl(id, 0, libc::SETALL, values.as_ptr()) }).map(drop)
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
    // SAFETY: IPC_RMID takes no fourth argument.
    cvt(unsafe { libc::semctl(id, 0, libc::IPC_RMID) }).map(drop)
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

    pub(crate) fn post(&self) -> io::Result<()> {
        // SAFETY: the semaphore is open until drop.
        cvt(unsafe { libc::sem_post(self.0.as_ptr()) }).map(drop)
    }

    /// Waits: without limit (`None`), not at all (`Some(ZERO)`), or for
    /// `timeout` on the monotonic clock. `EINTR` is returned.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> io::Result<()> {
        let r = match timeout {
            // SAFETY: the semaphore is open until drop.
            None => unsafe { libc::sem_wait(self.0.as_ptr()) },
            // SAFETY: as above.
            Some(t) if t.is_zero() => unsafe { libc::sem_trywait(self.0.as_ptr()) },
            Some(t) => {
                let at = monotonic_after(t);
                // SAFETY: as above; `at` is a valid timespec.
                unsafe { sem_clockwait(self.0.as_ptr(), libc::CLOCK_MONOTONIC, &at) }
            }
        };
        cvt(r).map(drop)
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
        // SAFETY: closes this process's handle, used no more.
        unsafe { libc::sem_close(self.0.as_ptr()) };
    }
}

/// `sem_unlink(3)`.
pub(crate) fn sem_unlink(name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated.
    cvt(unsafe { libc::sem_unlink(name.as_ptr()) }).map(drop)
}

/// `eventfd(2)` with `EFD_CLOEXEC | EFD_NONBLOCK` and the given extra flags.
pub(crate) fn eventfd(initval: u32, flags: libc::c_int) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: eventfd takes plain integers and returns a new fd or -1.
    let fd = cvt(unsafe { libc::eventfd(initval, flags | libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: the fd is new and owned by nothing else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// One 8-byte `read(2)` from an eventfd.
pub(crate) fn eventfd_read(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into a u64.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    if n == 8 { Ok(v) } else { Err(io::Error::last_os_error()) }
}

/// One 8-byte `write(2)` to an eventfd.
pub(crate) fn eventfd_write(fd: std::os::fd::BorrowedFd<'_>, v: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: writes the 8 bytes of a u64.
    let n = unsafe { libc::write(fd.as_raw_fd(), (&v as *const u64).cast(), 8) };
    if n == 8 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// `poll(2)` on one fd for `events`, at most `timeout_ms` (-1: no limit):
/// whether it became ready. `EINTR` is returned.
pub(crate) fn poll(
    fd: std::os::fd::BorrowedFd<'_>,
    events: libc::c_short,
    timeout_ms: libc::c_int,
) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 };
    // SAFETY: one valid pollfd.
    Ok(cvt(unsafe { libc::poll(&mut pfd, 1, timeout_ms) })? > 0)
}
