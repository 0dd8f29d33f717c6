//! The futex mutex. `unsafe` here: the `Sync` promise of the type and the
//! guard's access to the protected value.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use bytemuck::Pod;

use crate::Deadline;
use crate::owner::{Acquired, RawLock, Wait};
use crate::robust::LockError;

/// A mutual-exclusion lock that works between processes when it lives in
/// shared memory, protecting a `T: Pod`.
///
/// All zero bytes are an unlocked mutex holding a zeroed `T`, so a mutex
/// in a fresh shared mapping is ready as it is: no initialization step, and
/// so no race between a creator initializing it and a peer using it.
/// Locking spins briefly and then sleeps on a futex; unlocking makes a wake
/// system call only when someone sleeps. An uncontended lock is one atomic
/// operation.
///
/// # When a holder dies
///
/// The holder's thread id is the lock word, and the lock is entered in the
/// holding thread's kernel robust-futex list. When the holder dies (killed,
/// or exiting with the guard leaked), the kernel marks the word and wakes a
/// waiter, which gets [`LockError::OwnerDied`] with the lock held: the
/// protected data may be half-updated, as with `std`'s poisoning. The
/// report goes to that one locker; once its guard is dropped the mutex is
/// as good as new. Use [`RobustMutex`](crate::RobustMutex) when every later
/// locker must be kept out until the data is repaired.
///
/// The guard is not `Send`: the lock belongs to the thread that took it.
/// See [`LockError`] for the other ways a lock can fail, all of them
/// about the calling thread (it holds the lock already, or holds too many,
/// or a glibc robust mutex sits in front of ours in its robust list).
///
/// Nothing in the mutex is a pointer this process follows. Locking writes
/// the mutex's robust-list link, which points into the locking thread's
/// private memory and is read only by the kernel, when the holder dies;
/// unlocking writes only the lock word. No lock or unlock writes into any
/// other mutex: locks may be released in any order, and a mutex's memory
/// may be freed as soon as it is unlocked. A thread may hold at most 64 of
/// these locks (robust or not) at once; a lock released, in whatever
/// order, no longer counts.
///
/// # Beside glibc's robust mutexes
///
/// A thread's robust list is shared with glibc's robust pthread mutexes
/// (`PTHREAD_MUTEX_ROBUST`). Locking one of those while holding ours and
/// unlocking it first works. Locking ours while the thread holds one of
/// those locked after its last lock of ours fails with
/// [`LockError::RobustListBusy`]. Unlocking ours, in any order, works
/// also while a pthread robust mutex locked after it is held; glibc never
/// writes into our mutexes.
///
/// # Leaked guards
///
/// A guard leaked with `mem::forget` leaves the mutex locked, and entered
/// in the thread's robust list, until the thread ends; then the kernel
/// marks it as above, and the next locker gets [`LockError::OwnerDied`].
/// Keep the mutex's memory in place that long. If it is freed or unmapped
/// first, this crate still never writes there, but the kernel, when the
/// thread ends, reads whatever took the mutex's place as a robust-list
/// link and follows it, for at most 2048 steps: it may then miss the
/// thread's older locks (their waiters are not told of the death; timed
/// waits end at their deadline), and it sets the owner-died bit in (and
/// clears the id from) any 32-bit word on its way that holds the thread's
/// id. A new mutex that this thread locks at the address of such a leaked
/// one takes the leaked one's place in the list.
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
///         s.spawn(|| for _ in 0..1000 { *m.lock().unwrap() += 1 });
///     }
/// });
/// assert_eq!(*m.lock().unwrap(), 4000);
/// ```
///
/// A guard stays on the thread that locked:
///
/// ```compile_fail
/// let m = ipc_sync::Mutex::new(0u32);
/// let g = m.lock().unwrap();
/// std::thread::scope(|s| {
///     s.spawn(move || drop(g));
/// });
/// ```
///
/// # References
///
/// [futex(2)](https://man7.org/linux/man-pages/man2/futex.2.html),
/// [get_robust_list(2)](https://man7.org/linux/man-pages/man2/get_robust_list.2.html)
#[repr(C)]
pub struct Mutex<T> {
    raw: RawLock,
    data: UnsafeCell<T>,
}

// SAFETY: access to `data` is exclusive under the lock; T: Pod is Send.
unsafe impl<T: Pod> Sync for Mutex<T> {}

/// Holds a [`Mutex`] locked; unlocks when dropped. Not `Send`: the lock is
/// in the locking thread's robust list.
#[must_use = "the mutex unlocks as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: Pod> {
    mutex: &'a Mutex<T>,
    _not_send: PhantomData<*const ()>,
}

/// What a [`Mutex`] lock gives: the guard, or why not.
pub type MutexLockResult<'a, T> = Result<MutexGuard<'a, T>, LockError<MutexGuard<'a, T>>>;

impl<T: Pod> Mutex<T> {
    crate::mutex_forms::lock_forms! {
        MutexLockResult<'_, T>, robust: false, guard: |mutex, _clean| relock(mutex);
        /// [`LockError::OwnerDied`] (with the lock held) when the last holder
        /// died holding it; [`LockError::WouldDeadlock`] when this thread holds
        /// it; [`LockError::RobustListBusy`], [`LockError::TooManyHeld`],
        /// [`LockError::Other`] as explained there.
    }

    /// The value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }

    /// Locks again after a condition-variable wait, until `deadline`:
    /// whether the last holder died holding it, or `None` when the
    /// deadline passed first.
    pub(crate) fn lock_contended(&self, deadline: Deadline) -> Option<bool> {
        loop {
            match self.raw.lock(Wait::Until(deadline), false) {
                Ok(Acquired::Clean) => return Some(false),
                Ok(Acquired::OwnerDied) => return Some(true),
                Err(crate::owner::Fail::Timeout | crate::owner::Fail::WouldBlock) => return None,
                // Only this thread's own state (a glibc robust mutex in
                // front of ours) fails this way: poll, without spinning.
                Err(_) if deadline.has_expired() => return None,
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
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
        let state = if self.raw.peek() == 0 { "unlocked" } else { "locked" };
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
    MutexGuard { mutex, _not_send: PhantomData }
}

crate::mutex_forms::guard_deref!(MutexGuard);

impl<T: Pod> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.raw.unlock(0);
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MutexGuard").field(&**self).finish()
    }
}
