//! Synchronization for processes that share memory, and the pieces every
//! blocking call in ipc-kit is built on.
//!
//! A process writing into shared memory cannot otherwise tell another that
//! data is there: that is what this crate is for.
//!
//! - Primitives that live inside shared memory and are ready when
//!   zero-filled (a fresh mapping is), so there is no initialization race:
//!   [`Mutex`] (protecting a `T: Pod`), [`Condvar`], [`Semaphore`] and
//!   [`Event`], built on [`futex`] waits that spin briefly before sleeping.
//!   [`ShmSafe`] marks what may live in shared memory.
//! - [`RobustMutex`]: a mutex whose next locker is told when its holder
//!   died, and must repair the data; [`Mutex`] reports a holder's death
//!   too. Both are robust futexes: the kernel proves the death.
//! - Semaphores the kernel keeps: [`SemaphoreSet`] (System V, with
//!   `SEM_UNDO`), [`NamedSemaphore`] (POSIX, found by name) and
//!   [`EventFd`] (a counter behind a pollable fd).
//! - [`Key`]: the key of a System V object.
//! - [`Deadline`] and [`retry_eintr`]: every `*_timeout` call in ipc-kit
//!   is measured on the monotonic clock and survives signal interruptions
//!   without waiting longer in total.
//!
//! ```
//! use std::time::Duration;
//! use ipc_sync::{Deadline, retry_eintr};
//!
//! let deadline = Deadline::after(Duration::from_millis(20));
//! // A blocking call is retried after EINTR; the remaining time is
//! // computed afresh on every attempt.
//! let waited = retry_eintr(|| -> std::io::Result<Duration> {
//!     let left = deadline.remaining().unwrap_or(Duration::ZERO);
//!     std::thread::sleep(left);
//!     Ok(left)
//! })?;
//! assert!(deadline.has_expired());
//! assert!(waited <= Duration::from_millis(20));
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(unsafe_code)]

mod condvar;
mod deadline;
mod eintr;
mod error;
mod event;
mod eventfd;
pub mod failpoint;
pub mod futex;
mod key;
pub mod membarrier;
mod mutex;
mod named_sem;
mod owner;
pub mod process;
mod robust;
mod semaphore;
mod shm_safe;
mod spin;
mod sys;
mod sysv_sem;

pub use condvar::{Condvar, TimedWaitResult, WaitTimeoutResult};
pub use deadline::{Deadline, realtime_after};
pub use eintr::{Interrupted, retry_eintr};
pub use error::{Error, ObjectFault, Result};
pub use event::Event;
pub use eventfd::{EVENTFD_MAX, EventFd, EventFdMode};
pub use key::Key;
pub use mutex::{Mutex, MutexGuard, MutexLockResult};
pub use named_sem::NamedSemaphore;
pub use robust::{LockError, RobustLockResult, RobustMutex, RobustMutexGuard};
pub use semaphore::Semaphore;
pub use shm_safe::ShmSafe;
pub use sysv_sem::{SEM_VALUE_MAX, SemOp, SemaphoreSet};

/// Checks the name of a POSIX IPC object (shared memory, semaphore or
/// message queue) before it reaches a system call: a leading '/', at least
/// one more character, no other '/', no NUL, not `.` or `..` after the '/'
/// (glibc opens such names as paths under /dev/shm, and `/..` would be
/// /dev itself), at most `max_len` bytes after the '/'. Returns it as a C
/// string, or the reason it is refused.
///
/// # Errors
///
/// The reason, as a sentence fragment ("it must start with '/'").
///
/// # Examples
///
/// ```
/// assert!(ipc_sync::posix_name("/jobs", 255).is_ok());
/// assert!(ipc_sync::posix_name("jobs", 255).is_err());
/// assert!(ipc_sync::posix_name("/a/b", 255).is_err());
/// assert!(ipc_sync::posix_name("/..", 255).is_err());
/// assert!(ipc_sync::posix_name("/.", 255).is_err());
/// assert!(ipc_sync::posix_name("/...", 255).is_ok());
/// ```
pub fn posix_name(name: &str, max_len: usize) -> std::result::Result<std::ffi::CString, &'static str> {
    if !name.starts_with('/') {
        return Err("it must start with '/'");
    }
    if name.len() < 2 {
        return Err("it needs at least one character after the '/'");
    }
    if name[1..].contains('/') {
        return Err("it may contain no '/' after the first");
    }
    if matches!(&name[1..], "." | "..") {
        return Err("'.' and '..' name directories, not objects");
    }
    if name.len() - 1 > max_len {
        return Err("it is too long");
    }
    std::ffi::CString::new(name).map_err(|_| "it contains a NUL byte")
}

/// Whether process `pid` is alive: it exists and is not a zombie (a
/// process that died and was not yet reaped by its parent). Used to notice
/// a peer that died without cleaning up. A pid of 0 is nobody.
///
/// Pids are reused, so a very old pid may name another process; ipc-kit
/// checks while the peer is expected to be there, where that is unlikely.
///
/// ```
/// assert!(ipc_sync::process_alive(std::process::id()));
/// assert!(!ipc_sync::process_alive(0));
/// ```
pub fn process_alive(pid: u32) -> bool {
    sys::pid_alive(pid)
}

/// Opens a named or keyed IPC object, creating it when there is none: an
/// exclusive `create`; if the object `exists`, `open` it; if it went
/// `missing` in between (removed by someone else), start over. So exactly
/// one of several racing processes creates it, and only that one owns it.
///
/// # Errors
///
/// The first error of `create` or `open` that is neither `exists` nor
/// `missing`.
pub fn open_or_create<T, E>(
    mut create: impl FnMut() -> std::result::Result<T, E>,
    mut open: impl FnMut() -> std::result::Result<T, E>,
    exists: impl Fn(&E) -> bool,
    missing: impl Fn(&E) -> bool,
) -> std::result::Result<T, E> {
    loop {
        match create() {
            Err(e) if exists(&e) => {}
            other => return other,
        }
        match open() {
            Err(e) if missing(&e) => continue,
            other => return other,
        }
    }
}

/// Which process owns a named or keyed object: the one that created it.
/// Only that process removes the object when its handle is dropped; a
/// child that inherited a copy of the handle across `fork` does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owned(u32);

impl Owned {
    /// Owned by the calling process.
    pub fn here() -> Owned {
        Owned(std::process::id())
    }

    /// Owned by nobody (the handle only opened the object, or persists it).
    pub const fn none() -> Owned {
        Owned(0)
    }

    /// Whether the calling process owns the object.
    pub fn is_owner(self) -> bool {
        self.0 != 0 && self.0 == std::process::id()
    }
}
