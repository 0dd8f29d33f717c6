//! The plumbing of system calls that every crate of ipc-kit shares: one
//! way to turn a C return value into an [`io::Result`], and one `poll`.
//! The calls themselves go through nix where it has them; libc remains for
//! System V IPC, futexes, robust mutexes, `sem_clockwait` and
//! `membarrier`.

use std::io;

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

/// Implements [`AsFd`](std::os::fd::AsFd),
/// [`AsRawFd`](std::os::fd::AsRawFd) and `From<$type> for OwnedFd` for a
/// type that holds its file descriptor in the [`OwnedFd`](std::os::fd::OwnedFd)
/// field `$field`; the attributes given (such as docs) go on `from`.
///
/// ```
/// use std::os::fd::{AsFd, OwnedFd};
///
/// struct End {
///     fd: OwnedFd,
/// }
/// ipc_sync::fd_traits!(End, fd);
///
/// let (r, _w) = std::io::pipe()?;
/// let end = End { fd: r.into() };
/// let _borrowed = end.as_fd();
/// let _owned: OwnedFd = end.into();
/// # Ok::<(), std::io::Error>(())
/// ```
#[macro_export]
macro_rules! fd_traits {
    ($type:ty, $field:ident $(, #[$from:meta])* $(,)?) => {
        impl ::std::os::fd::AsFd for $type {
            fn as_fd(&self) -> ::std::os::fd::BorrowedFd<'_> {
                ::std::os::fd::AsFd::as_fd(&self.$field)
            }
        }

        impl ::std::os::fd::AsRawFd for $type {
            fn as_raw_fd(&self) -> ::std::os::fd::RawFd {
                ::std::os::fd::AsRawFd::as_raw_fd(&self.$field)
            }
        }

        impl ::std::convert::From<$type> for ::std::os::fd::OwnedFd {
            $(#[$from])*
            fn from(value: $type) -> Self {
                value.$field
            }
        }
    };
}
