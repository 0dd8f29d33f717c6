use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::mutex::{MutexGuard, MutexLockResult};
use crate::{Deadline, LockError, futex};

/// What a timed wait gives: the guard again and whether the deadline
/// passed, or the same inside [`LockError::OwnerDied`].
pub type TimedWaitResult<'a, T> =
    Result<(MutexGuard<'a, T>, WaitTimeoutResult), LockError<(MutexGuard<'a, T>, WaitTimeoutResult)>>;

/// A condition variable for [`Mutex`](crate::Mutex), between processes
/// when both live in shared memory.
///
/// All zero bytes are a ready condition variable. As with any condition
/// variable, a wait may end without a notification (spuriously): wait in a
/// loop on the condition, or use [`wait_while`](Self::wait_while).
/// Notifying makes a system call only when someone waits.
///
/// A wait also ends, spuriously, after at most 100 ms asleep: the waiter
/// then looks at its condition again. So no value a peer writes into the
/// condition variable (zero into its count of waiters, or its sequence
/// number put back after a notification) can keep a waiter asleep after
/// the condition came true and was notified; the loop around the wait
/// sleeps again when it did not.
///
/// # Examples
///
/// ```
/// use ipc_sync::{Condvar, Mutex};
///
/// let ready = Mutex::new(0u32);
/// let cv = Condvar::new();
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         *ready.lock().unwrap() = 1;
///         cv.notify_all();
///     });
///     let guard = cv.wait_while(ready.lock().unwrap(), |r| *r == 0).unwrap();
///     assert_eq!(*guard, 1);
/// });
/// ```
#[repr(C)]
#[derive(Default)]
pub struct Condvar {
    /// Bumped by every notification; waiters sleep on it.
    seq: AtomicU32,
    /// How many wait; notifications skip the wake call when zero. A hint
    /// only: waiters end their sleep on their own (see `spin::RECHECK`).
    waiters: AtomicU32,
}

/// Whether a timed wait ended at its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True when the wait ended because the deadline passed.
    pub fn timed_out(self) -> bool {
        self.0
    }
}

impl Condvar {
    /// A condition variable nobody waits on.
    pub const fn new() -> Self {
        Condvar { seq: AtomicU32::new(0), waiters: AtomicU32::new(0) }
    }

    /// Unlocks the mutex, waits for a notification, and locks it again.
    ///
    /// # Errors
    ///
    /// [`LockError::OwnerDied`] with the lock held again, when a holder of
    /// the mutex died holding it while this thread waited (as std's
    /// poisoning tells a waiter).
    pub fn wait<'a, T: Pod>(&self, guard: MutexGuard<'a, T>) -> MutexLockResult<'a, T> {
        self.wait_until(guard, Deadline::never()).map(|(g, _)| g).map_err(|e| e.map(|(g, _)| g))
    }

    /// Waits while `condition` holds for the protected value.
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait); the waiting stops there.
    pub fn wait_while<'a, T: Pod>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> MutexLockResult<'a, T> {
        while condition(&mut guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Like [`wait`](Self::wait), giving up after `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait).
    pub fn wait_timeout<'a, T: Pod>(&self, guard: MutexGuard<'a, T>, timeout: Duration) -> TimedWaitResult<'a, T> {
        self.wait_until(guard, Deadline::after(timeout))
    }

    /// Like [`wait`](Self::wait), giving up at `deadline` (monotonic
    /// clock).
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait).
    pub fn wait_deadline<'a, T: Pod>(&self, guard: MutexGuard<'a, T>, deadline: Instant) -> TimedWaitResult<'a, T> {
        self.wait_until(guard, Deadline::at(deadline))
    }

    /// Waits while `condition` holds, at most `timeout` in all; the result
    /// says whether it still held at the deadline.
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait); the waiting stops there.
    pub fn wait_timeout_while<'a, T: Pod>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> TimedWaitResult<'a, T> {
        let deadline = Deadline::after(timeout);
        while condition(&mut guard) {
            let (g, r) = self.wait_until(guard, deadline)?;
            guard = g;
            if r.timed_out() {
                let still = condition(&mut guard);
                return Ok((guard, WaitTimeoutResult(still)));
            }
        }
        Ok((guard, WaitTimeoutResult(false)))
    }

    fn wait_until<'a, T: Pod>(&self, guard: MutexGuard<'a, T>, deadline: Deadline) -> TimedWaitResult<'a, T> {
        let mutex = guard.mutex();
        // SeqCst: pairs with the notifier's SeqCst bump of `seq` and read
        // of `waiters`: either it sees us waiting, or we see its bump.
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let seq = self.seq.load(Ordering::SeqCst);
        drop(guard);
        // At most one slice: the caller's loop looks at its condition
        // again after it (see the type's docs).
        futex::wait_until(&self.seq, seq, crate::spin::slice_of(deadline));
        let in_time = !deadline.has_expired();
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        // Others may sleep on the mutex too: take it marked contended so
        // its unlock wakes them. With no deadline it always succeeds.
        let owner_died = loop {
            if let Some(died) = mutex.lock_contended(Deadline::never()) {
                break died;
            }
        };
        let got = (crate::mutex::relock(mutex), WaitTimeoutResult(!in_time));
        if owner_died { Err(LockError::OwnerDied(got)) } else { Ok(got) }
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            futex::wake(&self.seq, 1);
        }
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            futex::wake_all(&self.seq);
        }
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar").field("waiters", &self.waiters.load(Ordering::Relaxed)).finish()
    }
}
