//! The robust mutex. `unsafe` here: the `Sync` promise and the guard's
//! access to the protected value.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;

use bytemuck::Pod;

use crate::error::Error;
use crate::owner::{Fail, MAX_HELD, NOT_RECOVERABLE, RawLock};

/// A mutex between processes that survives the death of its holder: the
/// next locker learns of it and can repair the protected state.
///
/// When the thread holding it dies (its process killed, say), the kernel
/// releases it, and the next lock returns [`LockError::OwnerDied`] with the
/// lock held: the data may be half-updated, so repair it and call
/// [`RobustMutexGuard::make_consistent`]. A guard dropped without that
/// leaves the mutex unusable: every later lock returns
/// [`LockError::NotRecoverable`].
///
/// It is a robust futex: the lock word holds the holder's thread id and the
/// lock is entered in the holding thread's kernel robust list, so the
/// kernel itself marks the word when the holder dies, also when the holder
/// is in another PID namespace. Nothing in the mutex is ever used as a
/// pointer by this process: locking writes its robust-list link, for the
/// kernel, and no lock or unlock writes into any other mutex, so locks may
/// be released in any order and a mutex freed as soon as it is unlocked.
/// The same core serves [`Mutex`](crate::Mutex); see there, and
/// [`LockError`], for how it shares the list with glibc's robust mutexes
/// and what a leaked guard means.
///
/// All zero bytes are an unlocked mutex: a fresh shared mapping needs no
/// set-up step. Use it in place, through a reference into shared memory:
/// it must not move while locked.
///
/// # Examples
///
/// ```
/// use ipc_sync::{LockError, RobustMutex};
///
/// let m = RobustMutex::new([0u64; 2]);
/// let mut g = match m.lock() {
///     Ok(g) => g,
///     Err(LockError::OwnerDied(mut g)) => {
///         g[1] = g[0]; // repair
///         g.make_consistent()?;
///         g
///     }
///     Err(e) => return Err(e.to_string().into()),
/// };
/// g[0] += 1;
/// g[1] += 1;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The guard cannot leave its thread (unlocking elsewhere would leave the
/// lock in the first thread's robust list):
///
/// ```compile_fail
/// let m = ipc_sync::RobustMutex::new(0u32);
/// let g = m.lock().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(g));
/// });
/// ```
///
/// # References
///
/// [get_robust_list(2)](https://man7.org/linux/man-pages/man2/get_robust_list.2.html),
/// the kernel's Documentation/locking/robust-futex-ABI.rst,
/// [pthread_mutex_consistent(3)](https://man7.org/linux/man-pages/man3/pthread_mutex_consistent.3.html)
#[repr(C)]
pub struct RobustMutex<T> {
    raw: RawLock,
    data: UnsafeCell<T>,
}

// SAFETY: access to `data` is exclusive under the lock; T: Pod is Send.
unsafe impl<T: Pod> Sync for RobustMutex<T> {}

/// Why a lock of a [`Mutex`](crate::Mutex) or [`RobustMutex`] did not
/// simply succeed. `G` is the guard type.
#[non_exhaustive]
pub enum LockError<G> {
    /// The previous holder died holding the lock. The lock is now held by
    /// this guard; the data may be half-updated. A [`RobustMutex`] guard
    /// must be [made consistent](RobustMutexGuard::make_consistent).
    OwnerDied(G),
    /// A [`RobustMutex`] whose owner died was released without being made
    /// consistent: it can never be locked again.
    NotRecoverable,
    /// A `try_lock` found it held.
    WouldBlock,
    /// A timed lock reached its deadline.
    Timeout,
    /// This thread holds it already.
    WouldDeadlock,
    /// This thread holds a glibc robust pthread mutex that it locked after
    /// its last ipc-sync lock: the lock cannot be entered in the thread's
    /// robust list in front of glibc's entry. Unlock that one first.
    RobustListBusy,
    /// This thread holds as many ipc-sync locks as it may at once.
    TooManyHeld {
        /// The limit.
        max: usize,
    },
    /// Any other failure (a thread without a robust list this crate can
    /// share).
    Other(Error),
}

impl<G> LockError<G> {
    pub(crate) fn from_fail(fail: Fail) -> LockError<G> {
        match fail {
            Fail::WouldBlock => LockError::WouldBlock,
            Fail::Timeout => LockError::Timeout,
            Fail::NotRecoverable => LockError::NotRecoverable,
            Fail::WouldDeadlock => LockError::WouldDeadlock,
            Fail::ListBusy => LockError::RobustListBusy,
            Fail::TooMany => LockError::TooManyHeld { max: MAX_HELD },
            Fail::Unsupported => LockError::Other(Error::Io {
                op: "get_robust_list",
                source: std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "the thread has no robust-futex list in glibc's x86-64 layout",
                ),
            }),
        }
    }

    /// The same error with the guard of [`LockError::OwnerDied`] mapped by
    /// `f`: `e.map(drop)` gives a `LockError<()>`, which can leave the
    /// thread (a guard cannot).
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(g) => LockError::OwnerDied(f(g)),
            LockError::NotRecoverable => LockError::NotRecoverable,
            LockError::WouldBlock => LockError::WouldBlock,
            LockError::Timeout => LockError::Timeout,
            LockError::WouldDeadlock => LockError::WouldDeadlock,
            LockError::RobustListBusy => LockError::RobustListBusy,
            LockError::TooManyHeld { max } => LockError::TooManyHeld { max },
            LockError::Other(e) => LockError::Other(e),
        }
    }

    /// The guard of [`LockError::OwnerDied`], if that is what this is.
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }
}

/// Holds a [`RobustMutex`] locked; unlocks when dropped. Not `Send`.
#[must_use = "the mutex unlocks as soon as the guard is dropped"]
pub struct RobustMutexGuard<'a, T: Pod> {
    mutex: &'a RobustMutex<T>,
    consistent: bool,
    _not_send: PhantomData<*const ()>,
}

/// What a [`RobustMutex`] lock gives: the guard, or why not.
pub type RobustLockResult<'a, T> = Result<RobustMutexGuard<'a, T>, LockError<RobustMutexGuard<'a, T>>>;

impl<T: Pod> RobustMutex<T> {
    crate::mutex_forms::lock_forms! {
        RobustLockResult<'_, T>,
        robust: true,
        guard: |mutex, clean| RobustMutexGuard { mutex, consistent: clean, _not_send: PhantomData };
        /// [`LockError::OwnerDied`] (with the lock held),
        /// [`LockError::NotRecoverable`], [`LockError::WouldDeadlock`],
        /// [`LockError::RobustListBusy`], [`LockError::TooManyHeld`],
        /// [`LockError::Other`].
    }
}

impl<T: Pod> RobustMutexGuard<'_, T> {
    /// Declares the protected data repaired after its owner died, so the
    /// mutex can go on being used. Does nothing on a guard from an ordinary
    /// lock.
    ///
    /// # Errors
    ///
    /// None: the state is this guard's to change. The `Result` is kept so
    /// that callers handle a repair that could be refused.
    pub fn make_consistent(&mut self) -> Result<(), Error> {
        self.consistent = true;
        Ok(())
    }

    /// False until [`make_consistent`](Self::make_consistent) on a guard
    /// from [`LockError::OwnerDied`].
    pub fn is_consistent(&self) -> bool {
        self.consistent
    }
}

crate::mutex_forms::guard_deref!(RobustMutexGuard);

impl<T: Pod> Drop for RobustMutexGuard<'_, T> {
    fn drop(&mut self) {
        // Unlocking an inconsistent robust mutex makes it not recoverable.
        self.mutex.raw.unlock(if self.consistent { 0 } else { NOT_RECOVERABLE });
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

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::NotRecoverable => f.write_str("NotRecoverable"),
            LockError::WouldBlock => f.write_str("WouldBlock"),
            LockError::Timeout => f.write_str("Timeout"),
            LockError::WouldDeadlock => f.write_str("WouldDeadlock"),
            LockError::RobustListBusy => f.write_str("RobustListBusy"),
            LockError::TooManyHeld { max } => f.debug_struct("TooManyHeld").field("max", max).finish(),
            LockError::Other(e) => f.debug_tuple("Other").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => {
                f.write_str("the mutex's previous owner died holding it: the data may be half-updated")
            }
            LockError::NotRecoverable => {
                f.write_str("the robust mutex is not recoverable: it was released without being made consistent")
            }
            LockError::WouldBlock => f.write_str("the mutex is held: the operation would block"),
            LockError::Timeout => f.write_str("the deadline passed while waiting for the mutex"),
            LockError::WouldDeadlock => f.write_str("this thread already holds the mutex"),
            LockError::RobustListBusy => f.write_str(
                "this thread holds a glibc robust mutex locked after its last ipc-sync lock: \
                 the mutex cannot enter the thread's robust list before that one is unlocked",
            ),
            LockError::TooManyHeld { max } => write!(f, "this thread holds {max} ipc-sync locks, the most it may"),
            LockError::Other(e) => write!(f, "{e}"),
        }
    }
}

impl<G> std::error::Error for LockError<G> {}
