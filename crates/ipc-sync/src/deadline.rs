use std::time::{Duration, Instant};

/// A point in time by which a blocking operation must finish, or never.
///
/// Deadlines are measured on the monotonic clock (`CLOCK_MONOTONIC`, which is
/// what [`Instant`] reads on Linux), so changing the wall clock neither
/// shortens nor lengthens a wait. A timeout given as a [`Duration`] is turned
/// into a deadline once, when the call starts; every retry after an
/// interruption then waits only for what is left.
///
/// A duration too large to add to the current instant (say
/// [`Duration::MAX`]) gives [`Deadline::never`] rather than an overflow.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ipc_sync::Deadline;
///
/// let d = Deadline::after(Duration::from_secs(5));
/// assert!(!d.has_expired());
/// assert!(d.remaining().unwrap() <= Duration::from_secs(5));
///
/// assert_eq!(Deadline::never().remaining(), None);
/// assert_eq!(Deadline::after(Duration::MAX), Deadline::never());
/// assert_eq!(Deadline::never().poll_timeout_ms(), -1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// A deadline that never expires: the operation blocks until it can
    /// complete.
    pub const fn never() -> Self {
        Deadline(None)
    }

    /// The deadline `timeout` from now; [`Deadline::never`] when that instant
    /// cannot be represented.
    pub fn after(timeout: Duration) -> Self {
        Deadline(Instant::now().checked_add(timeout))
    }

    /// The deadline at `instant`.
    pub const fn at(instant: Instant) -> Self {
        Deadline(Some(instant))
    }

    /// The instant of this deadline, or `None` for [`Deadline::never`].
    pub const fn instant(&self) -> Option<Instant> {
        self.0
    }

    /// Whether this deadline never expires.
    pub const fn is_never(&self) -> bool {
        self.0.is_none()
    }

    /// The time left until the deadline: `None` for a deadline that never
    /// expires, [`Duration::ZERO`] once it has passed.
    #[inline]
    pub fn remaining(&self) -> Option<Duration> {
        self.0.map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Whether the deadline has passed.
    #[inline]
    pub fn has_expired(&self) -> bool {
        self.0.is_some_and(|at| Instant::now() >= at)
    }

    /// The time left as a `poll(2)` timeout in milliseconds: `-1` for never,
    /// otherwise rounded up so that a wait never ends before the deadline,
    /// and capped at `i32::MAX`.
    pub fn poll_timeout_ms(&self) -> i32 {
        match self.remaining() {
            None => -1,
            Some(left) => {
                let ms = left.as_nanos().div_ceil(1_000_000);
                i32::try_from(ms).unwrap_or(i32::MAX)
            }
        }
    }
}

/// The time on the wall clock (`CLOCK_REALTIME`) `after` from now, as the
/// absolute `timespec` that calls such as `mq_timedsend` and
/// `sem_timedwait` take. Wall-clock deadlines move when the clock is set:
/// wait in slices and check a [`Deadline`] between them.
pub fn realtime_after(after: Duration) -> libc::timespec {
    crate::sys::clock_after(libc::CLOCK_REALTIME, after)
}

impl From<Instant> for Deadline {
    fn from(instant: Instant) -> Self {
        Deadline::at(instant)
    }
}

impl From<Option<Duration>> for Deadline {
    /// `Some(timeout)` is the deadline that far from now; `None` is never.
    fn from(timeout: Option<Duration>) -> Self {
        timeout.map_or(Deadline::never(), Deadline::after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_deadline_has_zero_remaining_and_zero_poll_timeout() {
        let d = Deadline::at(Instant::now());
        assert!(d.has_expired());
        assert_eq!(d.remaining(), Some(Duration::ZERO));
        assert_eq!(d.poll_timeout_ms(), 0);
    }

    #[test]
    fn poll_timeout_rounds_up() {
        let d = Deadline::after(Duration::from_micros(1500));
        let ms = d.poll_timeout_ms();
        // 1.5 ms left at most, so 1 or 2 ms; never 0 while time is left.
        assert!((1..=2).contains(&ms), "{ms}");
    }

    #[test]
    fn huge_timeouts_saturate() {
        let d = Deadline::after(Duration::from_secs(u64::MAX / 2));
        assert!(d.is_never() || d.poll_timeout_ms() == i32::MAX);
        assert_eq!(Deadline::from(None::<Duration>), Deadline::never());
        let year = Deadline::after(Duration::from_secs(365 * 86_400));
        assert_eq!(year.poll_timeout_ms(), i32::MAX);
    }
}
