//! The futex mutex. `unsafe` here: the `Sync` promise of the type and the
//! guard's access to the protected value.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::spin::spin_until;
use crate::{Deadline, futex};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and someone may be asleep waiting: unlock must wake.
const CONTENDED: u32 = 2;

/// A mutual-exclusion lock that works between processes when it lives in
/// shared memory, protecting a `T: Pod`.
///
/// All zero bytes are an unlocked mutex holding a zeroed `T`, so a mutex
/// in a fresh shared mapping is ready as it is: no initialization step, and
/// so no race between a creator initializing it and a peer using it.
/// Locking spins briefly and then sleeps on a futex; unlocking makes a wake
/// system call only when someone sleeps.
///
/// This mutex is not robust: if a process dies while holding it, it stays
/// locked and the others wait (use the `*_timeout` forms to notice). Use
/// [`RobustMutex`](crate::RobustMutex) when holders may die.
///
/// The guard gives `&mut T` on the assumption that every process uses the
/// data only under the lock; `T: Pod` makes any bytes a peer leaves there a
/// valid `T`.
///
/// # Examples
///
/// ```
/// use ipc_sync::Mutex;
///
/// // In shared memory it would be reached through ipc-shm's Shared<T>;
/// // here, between threads.
/// let m = Mutex::new(0u64);
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| for _ in 0..1000 { *m.lock() += 1 });
///     }
/// });
/// assert_eq!(*m.lock(), 4000);
/// ```
#[repr(C)]
pub struct Mutex<T> {
    /// UNLOCKED, LOCKED or CONTENDED; any other value a peer writes counts
    /// as locked.
    state: AtomicU32,
    data: UnsafeCell<T>,
}

// SAFETY: access to `data` is exclusive under the lock; T: Pod is Send.
unsafe impl<T: Pod> Sync for Mutex<T> {}

/// Holds a [`Mutex`] locked; unlocks when dropped.
#[must_use = "the mutex unlocks as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: Pod> {
    mutex: &'a Mutex<T>,
}

impl<T: Pod> Mutex<T> {
    /// An unlocked mutex holding `value`.
    pub const fn new(value: T) -> Self {
        Mutex { state: AtomicU32::new(UNLOCKED), data: UnsafeCell::new(value) }
    }

    /// Locks, waiting as long as it takes.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        if !self.try_acquire() {
            self.lock_slow(Deadline::never());
        }
        MutexGuard { mutex: self }
    }

    /// Locks if nobody holds the lock.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when it is held.
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>> {
        if self.try_acquire() { Ok(MutexGuard { mutex: self }) } else { Err(Error::WouldBlock { what: "mutex" }) }
    }

    /// Locks, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the lock stayed held.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard<'_, T>> {
        self.lock_until(Deadline::after(timeout))
    }

    /// Locks, waiting until `deadline` (monotonic clock) at the latest.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the lock stayed held.
    pub fn lock_deadline(&self, deadline: Instant) -> Result<MutexGuard<'_, T>> {
        self.lock_until(Deadline::at(deadline))
    }

    fn lock_until(&self, deadline: Deadline) -> Result<MutexGuard<'_, T>> {
        if self.try_acquire() || self.lock_slow(deadline) {
            Ok(MutexGuard { mutex: self })
        } else {
            Err(Error::Timeout { what: "mutex" })
        }
    }

    /// The value, through exclusive access to the mutex itself.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// The value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }

    fn try_acquire(&self) -> bool {
        // Acquire: the holder's writes to `data` happen before ours.
        self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    /// Spins, then sleeps until it holds the lock; `false` at the deadline.
    fn lock_slow(&self, deadline: Deadline) -> bool {
        if spin_until(|| self.state.load(Ordering::Relaxed) == UNLOCKED && self.try_acquire()) {
            return true;
        }
        self.lock_contended(deadline)
    }

    /// Takes the lock marking it contended, so that the unlock wakes the
    /// next sleeper. Used after sleeping, when others may sleep too.
    pub(crate) fn lock_contended(&self, deadline: Deadline) -> bool {
        loop {
            // Acquire: as in try_acquire.
            if self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                return true;
            }
            if !futex::wait_until(&self.state, CONTENDED, deadline) {
                // One more try: the holder may have let go just now.
                return self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED;
            }
        }
    }

    fn unlock(&self) {
        // Release: our writes to `data` happen before the next holder's
        // reads.
        if self.state.swap(UNLOCKED, Ordering::Release) != LOCKED {
            futex::wake(&self.state, 1);
        }
    }
}

impl<T: Pod> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::zeroed())
    }
}

impl<T: Pod> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state.load(Ordering::Relaxed) {
            UNLOCKED => "unlocked",
            LOCKED => "locked",
            _ => "locked, contended",
        };
        f.debug_struct("Mutex").field("state", &state).finish_non_exhaustive()
    }
}

impl<'a, T: Pod> MutexGuard<'a, T> {
    pub(crate) fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }
}

/// A guard for a mutex the caller has just locked (by `lock_contended`).
pub(crate) fn relock<T: Pod>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    MutexGuard { mutex }
}

impl<T: Pod> Deref for MutexGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no one else accesses `data`
        // (every process follows the lock protocol).
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: Pod> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in deref; the guard is borrowed mutably, so this is the
        // only reference made through it.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: Pod> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MutexGuard").field(&**self).finish()
    }
}
