//! The plumbing of system calls that every crate of ipc-kit shares: one
//! way to turn a C return value into an [`io::Result`], and one `poll`.
//! The calls themselves go through nix where it has them; libc remains for
//! System V IPC, futexes, robust mutexes, `sem_clockwait` and
//! `membarrier`.

use std::io;
use std::os::fd::BorrowedFd;

use crate::Deadline;

pub use nix::poll::{PollFd, PollFlags};

/// A C return value whose -1 means failure with `errno` set.
pub trait MinusOne: Copy + PartialEq {
    /// The failure value.
    const MINUS_ONE: Self;
}

impl MinusOne for i32 {
    const MINUS_ONE: Self = -1;
}

impl MinusOne for i64 {
    const MINUS_ONE: Self = -1;
}

impl MinusOne for isize {
    const MINUS_ONE: Self = -1;
}

/// `r`, or the `errno` of the call that returned -1 as an [`io::Error`].
/// Read it right after the call: `errno` is per thread, and the next call
/// may change it.
///
/// ```
/// use ipc_sync::os::cvt;
/// assert_eq!(cvt(3).unwrap(), 3);
/// assert!(cvt(-1isize).is_err());
/// ```
///
/// # Errors
///
/// The OS error when `r` is -1.
pub fn cvt<T: MinusOne>(r: T) -> io::Result<T> {
    if r == T::MINUS_ONE { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// `poll(2)`: waits until one of `fds` has an event it asks for
/// (`POLLHUP` and `POLLERR` always count), at most `timeout_ms` (-1: no
/// limit; 0: does not wait). Returns how many are ready; each one's
/// `revents` says what it has. `EINTR` is returned to the caller, who
/// knows whether to try again.
///
/// ```
/// use std::os::fd::AsFd;
/// use ipc_sync::os::{PollFd, PollFlags, poll};
///
/// let (r, w) = std::io::pipe()?;
/// let mut fds = [PollFd::new(r.as_fd(), PollFlags::POLLIN), PollFd::new(w.as_fd(), PollFlags::POLLOUT)];
/// assert_eq!(poll(&mut fds, 0)?, 1);
/// assert!(fds[1].revents().unwrap().contains(PollFlags::POLLOUT));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// The error of the call (`EINTR` among them).
pub fn poll(fds: &mut [PollFd<'_>], timeout_ms: i32) -> io::Result<usize> {
    let timeout = nix::poll::PollTimeout::try_from(timeout_ms.max(-1)).unwrap_or(nix::poll::PollTimeout::NONE);
    let n = nix::poll::poll(fds, timeout)?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// [`poll`] of one fd for `events`, without waiting: what it has now
/// (empty when nothing; `POLLHUP`, `POLLERR` and `POLLNVAL` may be there
/// unasked). `EINTR` is tried again.
///
/// ```
/// use std::os::fd::AsFd;
/// use ipc_sync::os::{PollFlags, poll_now};
///
/// let (r, w) = std::io::pipe()?;
/// assert!(poll_now(r.as_fd(), PollFlags::POLLIN)?.is_empty());
/// drop(w);
/// assert!(poll_now(r.as_fd(), PollFlags::POLLIN)?.contains(PollFlags::POLLHUP));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// The error of the call, other than `EINTR`.
pub fn poll_now(fd: BorrowedFd<'_>, events: PollFlags) -> io::Result<PollFlags> {
    let mut fds = [PollFd::new(fd, events)];
    loop {
        match poll(&mut fds, 0) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
            Ok(_) => return Ok(fds[0].revents().unwrap_or(PollFlags::empty())),
        }
    }
}

/// [`poll`] of one fd for `events` until `deadline`: whether it became
/// ready (`POLLHUP` and `POLLERR` count: the next call on the fd reports
/// them). It polls once before it looks at the clock, so a deadline that
/// has passed still finds what is there; `EINTR` is tried again with the
/// time that remains.
///
/// ```
/// use std::os::fd::AsFd;
/// use std::time::Duration;
/// use ipc_sync::Deadline;
/// use ipc_sync::os::{PollFlags, poll_until};
///
/// let (r, _w) = std::io::pipe()?;
/// assert!(!poll_until(r.as_fd(), PollFlags::POLLIN, Deadline::after(Duration::from_millis(5)))?);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// The error of the call, other than `EINTR`.
pub fn poll_until(fd: BorrowedFd<'_>, events: PollFlags, deadline: Deadline) -> io::Result<bool> {
    loop {
        match poll(&mut [PollFd::new(fd, events)], deadline.poll_timeout_ms()) {
            Ok(0) => {}
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if deadline.has_expired() {
            return Ok(false);
        }
    }
}

/// How long a call may wait: not at all (a `try_*` form), or until a
/// deadline (the timed forms; [`Wait::FOREVER`] for the waiting ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Not at all.
    No,
    /// Until the deadline.
    Until(Deadline),
}

impl Wait {
    /// A wait without end.
    pub const FOREVER: Wait = Wait::Until(Deadline::never());

    /// Until `timeout` from now.
    pub fn after(timeout: std::time::Duration) -> Wait {
        Wait::Until(Deadline::after(timeout))
    }

    /// Until `deadline`.
    pub fn at(deadline: std::time::Instant) -> Wait {
        Wait::Until(Deadline::at(deadline))
    }
}

/// Why [`wait_ready`] ended without the descriptor being ready.
#[derive(Debug)]
pub enum NotReady {
    /// The wait was [`Wait::No`].
    WouldBlock,
    /// The deadline passed.
    Timeout,
    /// `poll` failed.
    Os(io::Error),
}

/// Waits for `events` on `fd` as `wait` allows (see [`poll_until`]): `Ok`
/// when it may be ready.
///
/// ```
/// use std::os::fd::AsFd;
/// use std::time::Duration;
/// use ipc_sync::os::{NotReady, PollFlags, Wait, wait_ready};
///
/// let (r, _w) = std::io::pipe()?;
/// assert!(matches!(wait_ready(r.as_fd(), PollFlags::POLLIN, Wait::No), Err(NotReady::WouldBlock)));
/// let waited = wait_ready(r.as_fd(), PollFlags::POLLIN, Wait::after(Duration::from_millis(5)));
/// assert!(matches!(waited, Err(NotReady::Timeout)));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// As [`NotReady`] says.
pub fn wait_ready(fd: BorrowedFd<'_>, events: PollFlags, wait: Wait) -> Result<(), NotReady> {
    let deadline = match wait {
        Wait::No => return Err(NotReady::WouldBlock),
        Wait::Until(d) => d,
    };
    if deadline.has_expired() {
        return Err(NotReady::Timeout);
    }
    match poll_until(fd, events, deadline) {
        Ok(true) => Ok(()),
        Ok(false) => Err(NotReady::Timeout),
        Err(e) => Err(NotReady::Os(e)),
    }
}

/// Implements [`AsFd`](std::os::fd::AsFd) and
/// [`AsRawFd`](std::os::fd::AsRawFd) for handle types through the field
/// that holds their fd: `impl_as_fd!(Type => field, ...)`.
///
/// ```
/// use std::os::fd::{AsFd, AsRawFd, OwnedFd};
///
/// struct Reader {
///     fd: OwnedFd,
/// }
/// ipc_sync::impl_as_fd!(Reader => fd);
///
/// let (r, _w) = std::io::pipe()?;
/// let reader = Reader { fd: r.into() };
/// assert_eq!(reader.as_fd().as_raw_fd(), reader.as_raw_fd());
/// assert_eq!(reader.as_raw_fd(), reader.fd.as_raw_fd());
/// # Ok::<(), std::io::Error>(())
/// ```
#[macro_export]
macro_rules! impl_as_fd {
    ($($ty:ty => $field:ident),+ $(,)?) => {$(
        impl ::std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> ::std::os::fd::BorrowedFd<'_> {
                ::std::os::fd::AsFd::as_fd(&self.$field)
            }
        }

        impl ::std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> ::std::os::fd::RawFd {
                ::std::os::fd::AsRawFd::as_raw_fd(&self.$field)
            }
        }
    )+};
}
