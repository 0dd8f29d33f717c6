use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::spin::wait_for;
use crate::{Deadline, futex};

/// A counting semaphore that works between processes when it lives in
/// shared memory.
///
/// All zero bytes are a semaphore with count 0. [`post`](Self::post) adds
/// one; [`wait`](Self::wait) takes one, waiting while the count is zero
/// (spinning briefly, then sleeping on a futex). Posting makes a wake
/// system call only when someone sleeps. A sleeping waiter looks at the
/// count again at least every 100 ms even when nobody wakes it, so that no
/// value a peer writes (such as zero into the count of sleepers) can keep
/// an untimed wait asleep after a post.
///
/// A process that dies after taking a unit does not give it back; use a
/// System V [`SemaphoreSet`](crate::SemaphoreSet) (with `SEM_UNDO`) when
/// that must be undone.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ipc_sync::Semaphore;
///
/// let s = Semaphore::new(1);
/// s.wait();
/// assert!(s.try_wait().is_err());
/// assert!(s.wait_timeout(Duration::from_millis(1)).is_err());
/// s.post()?;
/// assert_eq!(s.value(), 1);
/// # Ok::<(), ipc_sync::Error>(())
/// ```
#[repr(C)]
#[derive(Default)]
pub struct Semaphore {
    count: AtomicU32,
    /// How many sleep; `post` skips the wake call when zero. A hint only:
    /// sleepers look again on their own (see `spin::RECHECK`).
    waiters: AtomicU32,
}

impl Semaphore {
    /// A semaphore holding `count` units.
    pub const fn new(count: u32) -> Self {
        Semaphore { count: AtomicU32::new(count), waiters: AtomicU32::new(0) }
    }

    /// Adds a unit and wakes a waiter.
    ///
    /// # Errors
    ///
    /// [`Error::Overflow`] when the count is already `u32::MAX`.
    pub fn post(&self) -> Result<()> {
        // SeqCst: pairs with the waiter's SeqCst raise of `waiters` and
        // read of `count` (see spin::wait_for).
        self.count
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |c| c.checked_add(1))
            .map_err(|_| Error::Overflow { what: "semaphore count", max: u64::from(u32::MAX) })?;
        if self.waiters.load(Ordering::SeqCst) > 0 {
            futex::wake(&self.count, 1);
        }
        Ok(())
    }

    /// Takes a unit, waiting as long as it takes.
    pub fn wait(&self) {
        let _ = self.wait_until(Deadline::never());
    }

    /// Takes a unit if there is one.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when the count is zero.
    pub fn try_wait(&self) -> Result<()> {
        if self.try_take() { Ok(()) } else { Err(Error::WouldBlock { what: "semaphore" }) }
    }

    /// Takes a unit, waiting at most `timeout`; a zero timeout tries once.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when none came.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_until(Deadline::after(timeout))
    }

    /// Takes a unit, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when none came.
    pub fn wait_deadline(&self, deadline: Instant) -> Result<()> {
        self.wait_until(Deadline::at(deadline))
    }

    /// The current count.
    pub fn value(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    fn wait_until(&self, deadline: Deadline) -> Result<()> {
        if self.try_take() || wait_for(&self.count, 0, &self.waiters, deadline, || self.try_take()) {
            Ok(())
        } else {
            Err(Error::Timeout { what: "semaphore" })
        }
    }

    fn try_take(&self) -> bool {
        // SeqCst: see post. (It also orders the poster's earlier writes
        // before our later reads, as Acquire would.)
        self.count.fetch_update(Ordering::SeqCst, Ordering::Relaxed, |c| c.checked_sub(1)).is_ok()
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore").field("count", &self.value()).finish()
    }
}
