//! The robust mutex. `unsafe` here: the `Sync` promise and the guard's
//! access to the protected value.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::error::Error;
use crate::sys::{RawRobustMutex, RobustLock};

/// A mutex between processes that survives the death of its holder: the
/// next locker learns of it and can repair the protected state.
///
/// It is a process-shared, robust pthread mutex (`PTHREAD_MUTEX_ROBUST`).
/// When the process (or thread) holding it dies, the kernel releases it,
/// and the next lock returns [`LockError::OwnerDied`] with the lock held:
/// the data may be half-updated, so repair it and call
/// [`RobustMutexGuard::make_consistent`]. A guard dropped without that
/// leaves the mutex unusable: every later lock returns
/// [`LockError::NotRecoverable`].
///
/// All zero bytes are a valid mutex: it initializes itself on first use
/// (the first locker does it; one that dies half-way is taken over), so a
/// fresh shared mapping needs no set-up step. Use it in place, through a
/// reference into shared memory: it must not move while in use.
///
/// # References
///
/// [pthread_mutexattr_setrobust(3)](https://man7.org/linux/man-pages/man3/pthread_mutexattr_setrobust.3.html),
/// [pthread_mutex_consistent(3)](https://man7.org/linux/man-pages/man3/pthread_mutex_consistent.3.html)
#[repr(C)]
pub struct RobustMutex<T> {
    raw: RawRobustMutex,
    data: UnsafeCell<T>,
}

// SAFETY: access to `data` is exclusive under the lock; T: Pod is Send.
unsafe impl<T: Pod> Sync for RobustMutex<T> {}

/// Why a [`RobustMutex`] lock did not simply succeed.
pub enum LockError<'a, T: Pod> {
    /// The previous holder died holding the lock. The lock is now held by
    /// this guard; repair the data and call
    /// [`make_consistent`](RobustMutexGuard::make_consistent).
    OwnerDied(RobustMutexGuard<'a, T>),
    /// An earlier holder after an owner's death released the lock without
    /// making it consistent: it can never be locked again.
    NotRecoverable,
    /// A `try_lock` found it held.
    WouldBlock,
    /// A timed lock reached its deadline.
    Timeout,
    /// This thread holds it already.
    WouldDeadlock,
    /// Any other failure.
    Other(Error),
}

/// Holds a [`RobustMutex`] locked; unlocks when dropped.
#[must_use = "the mutex unlocks as soon as the guard is dropped"]
pub struct RobustMutexGuard<'a, T: Pod> {
    mutex: &'a RobustMutex<T>,
    consistent: bool,
}

impl<T: Pod> RobustMutex<T> {
    /// Locks, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] (with the lock held),
    /// [`LockError::NotRecoverable`], [`LockError::WouldDeadlock`].
    pub fn lock(&self) -> Result<RobustMutexGuard<'_, T>, LockError<'_, T>> {
        self.lock_with(None)
    }

    /// Locks if nobody holds it.
    ///
    /// # Errors
    ///
    /// [`LockError::WouldBlock`] when held, and as for [`lock`](Self::lock).
    pub fn try_lock(&self) -> Result<RobustMutexGuard<'_, T>, LockError<'_, T>> {
        self.lock_with(Some(Duration::ZERO))
    }

    /// Locks, waiting at most `timeout` (monotonic clock).
    ///
    /// # Errors
    ///
    /// [`LockError::Timeout`], and as for [`lock`](Self::lock).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<RobustMutexGuard<'_, T>, LockError<'_, T>> {
        // A zero timeout would mean try_lock; the smallest real wait will do.
        self.lock_with(Some(timeout.max(Duration::from_nanos(1))))
    }

    /// Locks, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As for [`lock_timeout`](Self::lock_timeout).
    pub fn lock_deadline(&self, deadline: Instant) -> Result<RobustMutexGuard<'_, T>, LockError<'_, T>> {
        self.lock_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    fn lock_with(&self, timeout: Option<Duration>) -> Result<RobustMutexGuard<'_, T>, LockError<'_, T>> {
        let guard = |consistent| RobustMutexGuard { mutex: self, consistent };
        match self.raw.lock(timeout) {
            RobustLock::Locked => Ok(guard(true)),
            RobustLock::OwnerDied => Err(LockError::OwnerDied(guard(false))),
            RobustLock::NotRecoverable => Err(LockError::NotRecoverable),
            RobustLock::Busy => Err(LockError::WouldBlock),
            RobustLock::TimedOut => Err(LockError::Timeout),
            RobustLock::Deadlock => Err(LockError::WouldDeadlock),
            RobustLock::Failed(e) => Err(LockError::Other(Error::Io {
                op: "pthread_mutex_lock",
                source: std::io::Error::from_raw_os_error(e),
            })),
        }
    }
}

impl<T: Pod> RobustMutexGuard<'_, T> {
    /// Declares the protected data repaired after its owner died, so the
    /// mutex can go on being used. Does nothing on a guard from an ordinary
    /// lock.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the mutex refuses (it should not).
    pub fn make_consistent(&mut self) -> Result<(), Error> {
        if !self.consistent {
            self.mutex.raw.make_consistent().map_err(|e| Error::Io { op: "pthread_mutex_consistent", source: e })?;
            self.consistent = true;
        }
        Ok(())
    }

    /// False until [`make_consistent`](Self::make_consistent) on a guard
    /// from [`LockError::OwnerDied`].
    pub fn is_consistent(&self) -> bool {
        self.consistent
    }
}

impl<T: Pod> Deref for RobustMutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock; every process follows the lock
        // protocol, so no one else accesses the data.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: Pod> DerefMut for RobustMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in deref; the guard is borrowed mutably.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: Pod> Drop for RobustMutexGuard<'_, T> {
    fn drop(&mut self) {
        // Unlocking an inconsistent robust mutex makes it not recoverable.
        if !self.consistent {
            self.mutex.raw.mark_lost();
        }
        self.mutex.raw.unlock();
    }
}

impl<T: Pod> fmt::Debug for RobustMutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RobustMutex").finish_non_exhaustive()
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RobustMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RobustMutexGuard").field("data", &**self).field("consistent", &self.consistent).finish()
    }
}

impl<T: Pod> fmt::Debug for LockError<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::NotRecoverable => f.write_str("NotRecoverable"),
            LockError::WouldBlock => f.write_str("WouldBlock"),
            LockError::Timeout => f.write_str("Timeout"),
            LockError::WouldDeadlock => f.write_str("WouldDeadlock"),
            LockError::Other(e) => f.debug_tuple("Other").field(e).finish(),
        }
    }
}

impl<T: Pod> fmt::Display for LockError<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => {
                f.write_str("the robust mutex's previous owner died holding it: repair the data and make it consistent")
            }
            LockError::NotRecoverable => {
                f.write_str("the robust mutex is not recoverable: it was released without being made consistent")
            }
            LockError::WouldBlock => f.write_str("the robust mutex is held: the operation would block"),
            LockError::Timeout => f.write_str("the deadline passed while waiting for the robust mutex"),
            LockError::WouldDeadlock => f.write_str("this thread already holds the robust mutex"),
            LockError::Other(e) => write!(f, "{e}"),
        }
    }
}

impl<T: Pod> std::error::Error for LockError<'_, T> {}
