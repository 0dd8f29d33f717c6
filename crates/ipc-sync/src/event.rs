use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::spin::wait_for;
use crate::{Deadline, futex};

/// The four forms of one kind of wait on an [`Event`] (blocking, `try_*`,
/// `*_timeout`, `*_deadline`), with the docs given: `reset` says whether
/// a wait takes a pass (auto reset), `ready` names the method a `try_*`
/// form asks (`is_set` or `take`).
macro_rules! wait_forms {
    (
        reset: $reset:expr, ready: $ready:ident;
        $(#[$w:meta])* $wait:ident;
        $(#[$t:meta])* $try_wait:ident;
        $(#[$to:meta])* $wait_timeout:ident;
        $(#[$d:meta])* $wait_deadline:ident;
    ) => {
        $(#[$w])*
        pub fn $wait(&self) {
            let _ = self.wait_until(Deadline::never(), $reset);
        }

        $(#[$t])*
        pub fn $try_wait(&self) -> Result<()> {
            if self.$ready() { Ok(()) } else { Err(Error::WouldBlock { what: "event" }) }
        }

        $(#[$to])*
        pub fn $wait_timeout(&self, timeout: Duration) -> Result<()> {
            self.wait_until(Deadline::after(timeout), $reset)
        }

        $(#[$d])*
        pub fn $wait_deadline(&self, deadline: Instant) -> Result<()> {
            self.wait_until(Deadline::at(deadline), $reset)
        }
    };
}

/// A flag that one process sets and others wait for, in shared memory.
///
/// All zero bytes are an event that is not set. Both kinds of waiting work
/// on the same event:
///
/// - manual reset: [`wait`](Self::wait) returns once the event is set and
///   leaves it set (every waiter passes) until [`reset`](Self::reset);
/// - auto reset: [`wait_reset`](Self::wait_reset) returns once the event is
///   set and takes one [`set`](Self::set) back, so each `set` lets exactly
///   one such waiter through.
///
/// The event counts its sets: it holds one pass per `set` not yet taken
/// by an auto-reset waiter (up to `u32::MAX`; sets beyond that are not
/// counted), is set while it holds any, and [`reset`](Self::reset) drops
/// them all. Forty sets let forty auto-reset waiters through, whether they
/// come while the waiters sleep, before any waits, or faster than the
/// waiters can run.
///
/// Waiting spins briefly and then sleeps on a futex; `set` makes a wake
/// system call only when someone sleeps. A sleeping waiter looks at the
/// event again at least every 100 ms even when nobody wakes it, so that no
/// value a peer writes into the event (such as zero into its count of
/// sleepers) can keep an untimed wait asleep after a `set`.
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
/// e.wait_reset(); // takes the one set
/// assert!(!e.is_set());
/// e.set();
/// e.set();
/// e.wait_reset();
/// e.wait_reset(); // two sets, two passes
/// assert!(e.try_wait_reset().is_err());
/// ```
#[repr(C)]
#[derive(Default)]
pub struct Event {
    /// The sets not yet taken by auto-reset waiters; set while nonzero.
    /// Any value a peer writes is a number of passes.
    passes: AtomicU32,
    /// How many sleep; `set` skips the wake call when zero. A hint only:
    /// sleepers look again on their own (see `spin::RECHECK`).
    waiters: AtomicU32,
}

impl Event {
    /// An event that is not set.
    pub const fn new() -> Self {
        Event { passes: AtomicU32::new(0), waiters: AtomicU32::new(0) }
    }

    /// Sets the event: adds one pass (for one auto-reset waiter), and wakes
    /// the waiters.
    pub fn set(&self) {
        // SeqCst: pairs with the waiter's SeqCst raise of `waiters` and
        // read of `passes` (see spin::wait_for); Release for the setter's
        // earlier writes is implied.
        let _ = self.passes.fetch_update(Ordering::SeqCst, Ordering::Relaxed, |n| n.checked_add(1));
        if self.waiters.load(Ordering::SeqCst) > 0 {
            // All of them: manual-reset waiters all pass, and a woken
            // auto-reset waiter that finds the pass taken sleeps again.
            futex::wake_all(&self.passes);
        }
    }

    /// Clears the event, dropping every pass not yet taken.
    pub fn reset(&self) {
        self.passes.store(0, Ordering::Release);
    }

    /// Whether the event is set (holds a pass).
    pub fn is_set(&self) -> bool {
        self.passes.load(Ordering::Acquire) != 0
    }

    wait_forms! {
        reset: false, ready: is_set;
        /// Waits until the event is set (manual reset: it stays set).
        wait;
        /// Returns at once: `Ok` if the event is set.
        ///
        /// # Errors
        ///
        /// [`Error::WouldBlock`] when it is not set.
        try_wait;
        /// Waits at most `timeout` for the event to be set; a zero timeout
        /// looks once.
        ///
        /// # Errors
        ///
        /// [`Error::Timeout`] when it was not set in time.
        wait_timeout;
        /// Waits until `deadline` at the latest for the event to be set.
        ///
        /// # Errors
        ///
        /// [`Error::Timeout`] when it was not set in time.
        wait_deadline;
    }

    wait_forms! {
        reset: true, ready: take;
        /// Waits until the event is set and takes one pass (auto reset): of
        /// several such waiters, one passes per `set`.
        wait_reset;
        /// Takes one pass if the event is set.
        ///
        /// # Errors
        ///
        /// [`Error::WouldBlock`] when it is not set.
        try_wait_reset;
        /// [`wait_reset`](Self::wait_reset), at most `timeout`; a zero timeout
        /// tries once.
        ///
        /// # Errors
        ///
        /// [`Error::Timeout`] when it was not set in time.
        wait_reset_timeout;
        /// [`wait_reset`](Self::wait_reset), until `deadline` at the latest.
        ///
        /// # Errors
        ///
        /// [`Error::Timeout`] when it was not set in time.
        wait_reset_deadline;
    }

    /// Takes one pass, if there is one.
    fn take(&self) -> bool {
        // Read first: spinning waiters must not write the cache line the
        // setter is about to write. SeqCst: see set.
        self.passes.load(Ordering::Relaxed) != 0
            && self.passes.fetch_update(Ordering::SeqCst, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
    }

    fn wait_until(&self, deadline: Deadline, reset: bool) -> Result<()> {
        let ready = || if reset { self.take() } else { self.passes.load(Ordering::SeqCst) != 0 };
        if ready() || wait_for(&self.passes, 0, &self.waiters, deadline, ready) {
            Ok(())
        } else {
            Err(Error::Timeout { what: "event" })
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("passes", &self.passes.load(Ordering::Relaxed)).finish()
    }
}
