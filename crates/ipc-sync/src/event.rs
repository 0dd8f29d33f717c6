use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::spin::wait_for;
use crate::{Deadline, futex};

const UNSET: u32 = 0;
const SET: u32 = 1;

/// A flag that one process sets and others wait for, in shared memory.
///
/// All zero bytes are an event that is not set. Both kinds of waiting work
/// on the same event:
///
/// - manual reset: [`wait`](Self::wait) returns once the event is set and
///   leaves it set (every waiter passes) until [`reset`](Self::reset);
/// - auto reset: [`wait_reset`](Self::wait_reset) returns once the event is
///   set and clears it, so each [`set`](Self::set) lets exactly one such
///   waiter through.
///
/// Waiting spins briefly and then sleeps on a futex; `set` makes a wake
/// system call only when someone sleeps.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ipc_sync::Event;
///
/// let e = Event::new();
/// assert!(e.wait_timeout(Duration::from_millis(1)).is_err());
/// e.set();
/// e.wait(); // stays set
/// e.wait_reset(); // clears it
/// assert!(!e.is_set());
/// ```
#[repr(C)]
#[derive(Default)]
pub struct Event {
    /// UNSET or SET; any other value counts as set.
    state: AtomicU32,
    waiters: AtomicU32,
}

impl Event {
    /// An event that is not set.
    pub const fn new() -> Self {
        Event { state: AtomicU32::new(UNSET), waiters: AtomicU32::new(0) }
    }

    /// Sets the event and wakes the waiters.
    pub fn set(&self) {
        // SeqCst: pairs with the waiter's SeqCst raise of `waiters` and
        // read of `state` (see spin::wait_for); Release for the setter's
        // earlier writes is implied.
        let was = self.state.swap(SET, Ordering::SeqCst);
        if was == UNSET && self.waiters.load(Ordering::SeqCst) > 0 {
            futex::wake_all(&self.state);
        }
    }

    /// Clears the event.
    pub fn reset(&self) {
        self.state.store(UNSET, Ordering::Release);
    }

    /// Whether the event is set.
    pub fn is_set(&self) -> bool {
        self.state.load(Ordering::Acquire) != UNSET
    }

    /// Waits until the event is set (manual reset: it stays set).
    pub fn wait(&self) {
        let _ = self.wait_until(Deadline::never(), false);
    }

    /// Returns at once: `Ok` if the event is set.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when it is not set.
    pub fn try_wait(&self) -> Result<()> {
        if self.is_set() { Ok(()) } else { Err(Error::WouldBlock { what: "event" }) }
    }

    /// Waits at most `timeout` for the event to be set.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when it was not set in time.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_until(Deadline::after(timeout), false)
    }

    /// Waits until `deadline` at the latest for the event to be set.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when it was not set in time.
    pub fn wait_deadline(&self, deadline: Instant) -> Result<()> {
        self.wait_until(Deadline::at(deadline), false)
    }

    /// Waits until the event is set and clears it (auto reset): of several
    /// such waiters, one passes per `set`.
    pub fn wait_reset(&self) {
        let _ = self.wait_until(Deadline::never(), true);
    }

    /// Clears the event if it is set.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when it is not set.
    pub fn try_wait_reset(&self) -> Result<()> {
        if self.take() { Ok(()) } else { Err(Error::WouldBlock { what: "event" }) }
    }

    /// [`wait_reset`](Self::wait_reset), at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when it was not set in time.
    pub fn wait_reset_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_until(Deadline::after(timeout), true)
    }

    /// [`wait_reset`](Self::wait_reset), until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when it was not set in time.
    pub fn wait_reset_deadline(&self, deadline: Instant) -> Result<()> {
        self.wait_until(Deadline::at(deadline), true)
    }

    fn take(&self) -> bool {
        // Read first: spinning waiters must not write the cache line the
        // setter is about to write. SeqCst: see set.
        self.state.load(Ordering::Relaxed) != UNSET && self.state.swap(UNSET, Ordering::SeqCst) != UNSET
    }

    fn wait_until(&self, deadline: Deadline, reset: bool) -> Result<()> {
        let ready = || if reset { self.take() } else { self.state.load(Ordering::SeqCst) != UNSET };
        if ready() || wait_for(&self.state, UNSET, &self.waiters, deadline, ready) {
            Ok(())
        } else {
            Err(Error::Timeout { what: "event" })
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("set", &self.is_set()).finish()
    }
}
