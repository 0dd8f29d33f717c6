use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::os::{PollFlags, poll_until};
use crate::{Deadline, sys};

const WHAT: &str = "eventfd";

/// How reads of an [`EventFd`] take from its counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventFdMode {
    /// A read takes the whole counter (and returns it).
    Counter,
    /// A read takes 1 (`EFD_SEMAPHORE`) and returns 1.
    Semaphore,
}

/// A kernel counter behind a file descriptor (`eventfd(2)`): writes add to
/// it, reads wait until it is nonzero and take from it. It wakes a process
/// that sleeps in `poll`/`epoll` along with its other fds, and it is
/// inherited across `fork` (the copies share the counter).
///
/// The fd is close-on-exec and in nonblocking mode; waiting is done with
/// `poll`, so the blocking, `try_*` and `*_timeout` forms all work on it.
/// Every wait sleeps: a read sleeps until the counter is not 0; an add of
/// `n` that does not fit sleeps until a reader takes from the counter
/// (`POLLOUT` would only say there is room for 1) and then tries again. A
/// zero timeout tries once.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ipc_sync::{EventFd, EventFdMode};
///
/// let efd = EventFd::new(0, EventFdMode::Counter)?;
/// efd.add(2)?;
/// efd.add(3)?;
/// assert_eq!(efd.read()?, 5);
/// assert!(efd.read_timeout(Duration::from_millis(1)).is_err());
/// # Ok::<(), ipc_sync::Error>(())
/// ```
///
/// # References
///
/// [eventfd(2)](https://man7.org/linux/man-pages/man2/eventfd.2.html)
pub struct EventFd {
    fd: OwnedFd,
    mode: EventFdMode,
}

/// The largest value the counter holds.
pub const EVENTFD_MAX: u64 = u64::MAX - 1;

impl EventFd {
    /// A new counter starting at `initial`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when out of file descriptors.
    #[doc(alias = "eventfd")]
    pub fn new(initial: u32, mode: EventFdMode) -> Result<Self> {
        let flags = match mode {
            EventFdMode::Counter => 0,
            EventFdMode::Semaphore => libc::EFD_SEMAPHORE,
        };
        let fd = sys::eventfd(initial, flags).map_err(|e| Error::Io { op: "eventfd", source: e })?;
        Ok(EventFd { fd, mode })
    }

    /// Takes `fd`, received from another process (inherited across exec,
    /// or over a Unix socket), after checking that it is an eventfd, and
    /// sets it close-on-exec and its description nonblocking, as
    /// [`new`](Self::new) makes them; `mode` says what reads take, which
    /// the fd itself does not tell. The description stays shared with the
    /// process that handed it over, which can clear `O_NONBLOCK` again:
    /// then the `try_*` forms may wait.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `fd` is not an eventfd (or `/proc`
    /// cannot tell: this process's `/proc/self/fd` is read); [`Error::Io`]
    /// when its flags cannot be set.
    pub fn from_fd(fd: OwnedFd, mode: EventFdMode) -> Result<Self> {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        match link {
            Ok(target) if target.as_os_str() == "anon_inode:[eventfd]" => {
                sys::cloexec_nonblocking(fd.as_fd()).map_err(|e| Error::Io { op: "fcntl on an eventfd", source: e })?;
                Ok(EventFd { fd, mode })
            }
            Ok(target) => Err(Error::InvalidArgument {
                what: "eventfd",
                reason: format!("fd {} is {}, not an eventfd", fd.as_raw_fd(), target.display()),
            }),
            Err(e) => Err(Error::InvalidArgument {
                what: "eventfd",
                reason: format!("fd {}: /proc/self/fd cannot say what it is ({e})", fd.as_raw_fd()),
            }),
        }
    }

    /// A second handle to the same counter (its fd duplicated,
    /// close-on-exec), in the same mode.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when out of file descriptors.
    pub fn try_clone(&self) -> Result<Self> {
        let fd = self.fd.try_clone().map_err(|e| Error::Io { op: "dup of an eventfd", source: e })?;
        Ok(EventFd { fd, mode: self.mode })
    }

    /// The read mode it was made with.
    pub fn mode(&self) -> EventFdMode {
        self.mode
    }

    /// Adds `n` to the counter (waking readers), waiting while that would
    /// pass [`EVENTFD_MAX`]: it sleeps until readers have made room for `n`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for `n` over [`EVENTFD_MAX`].
    pub fn add(&self, n: u64) -> Result<()> {
        self.add_until(n, Some(Deadline::never()))
    }

    /// Adds `n` if it fits now.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when it would pass the maximum.
    pub fn try_add(&self, n: u64) -> Result<()> {
        self.add_until(n, None)
    }

    /// Adds `n`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`].
    pub fn add_timeout(&self, n: u64, timeout: Duration) -> Result<()> {
        self.add_until(n, Some(Deadline::after(timeout)))
    }

    /// Adds `n`, waiting until `deadline` at the latest for room.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`].
    pub fn add_deadline(&self, n: u64, deadline: Instant) -> Result<()> {
        self.add_until(n, Some(Deadline::at(deadline)))
    }

    /// Takes from the counter (all of it, or 1 in semaphore mode), waiting
    /// while it is 0. Returns what was taken.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] on a failure of the fd.
    pub fn read(&self) -> Result<u64> {
        self.read_until(Some(Deadline::never()))
    }

    /// Takes from the counter if it is not 0.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when it is 0.
    pub fn try_read(&self) -> Result<u64> {
        self.read_until(None)
    }

    /// Takes from the counter, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`].
    pub fn read_timeout(&self, timeout: Duration) -> Result<u64> {
        self.read_until(Some(Deadline::after(timeout)))
    }

    /// Takes from the counter, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`].
    pub fn read_deadline(&self, deadline: Instant) -> Result<u64> {
        self.read_until(Some(Deadline::at(deadline)))
    }

    fn read_until(&self, wait: Option<Deadline>) -> Result<u64> {
        loop {
            match sys::eventfd_read(self.fd.as_fd()) {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // POLLIN means the counter is not 0: what a read needs.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_readable(wait)?,
                Err(e) => return Err(Error::Io { op: "read from eventfd", source: e }),
            }
        }
    }

    fn add_until(&self, n: u64, wait: Option<Deadline>) -> Result<()> {
        if n > EVENTFD_MAX {
            return Err(Error::InvalidArgument {
                what: "eventfd increment",
                reason: format!("{n} is over {EVENTFD_MAX}"),
            });
        }
        if self.write(n)? {
            return Ok(());
        }
        let Some(deadline) = wait else { return Err(Error::WouldBlock { what: WHAT }) };
        if deadline.has_expired() {
            return Err(Error::Timeout { what: WHAT });
        }
        // POLLOUT means room for 1, not for n: sleep until the next read
        // takes from the counter, and try again.
        let edges =
            sys::ReadEdges::new(self.fd.as_fd()).map_err(|e| Error::Io { op: "epoll on eventfd", source: e })?;
        loop {
            match edges.wait(deadline.poll_timeout_ms()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io { op: "epoll_wait on eventfd", source: e }),
            }
            if self.write(n)? {
                return Ok(());
            }
            if deadline.has_expired() {
                return Err(Error::Timeout { what: WHAT });
            }
        }
    }

    /// One try at adding `n`: whether it fitted.
    fn write(&self, n: u64) -> Result<bool> {
        loop {
            match sys::eventfd_write(self.fd.as_fd(), n) {
                Ok(()) => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(Error::Io { op: "write to eventfd", source: e }),
            }
        }
    }

    fn wait_readable(&self, wait: Option<Deadline>) -> Result<()> {
        let Some(deadline) = wait else { return Err(Error::WouldBlock { what: WHAT }) };
        if deadline.has_expired() {
            return Err(Error::Timeout { what: WHAT });
        }
        match poll_until(self.fd.as_fd(), PollFlags::POLLIN, deadline) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Timeout { what: WHAT }),
            Err(e) => Err(Error::Io { op: "poll on eventfd", source: e }),
        }
    }
}

crate::impl_as_fd!(EventFd => fd);

impl From<EventFd> for OwnedFd {
    /// The fd, in nonblocking mode.
    fn from(e: EventFd) -> OwnedFd {
        e.fd
    }
}

impl fmt::Debug for EventFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventFd").field("fd", &self.fd.as_raw_fd()).field("mode", &self.mode).finish()
    }
}
