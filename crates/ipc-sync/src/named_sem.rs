use std::ffi::CString;
use std::fmt;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::object::{Guard, Remove};
use crate::sys::{self, NamedSem};
use crate::{Deadline, retry_eintr};

const WHAT: &str = "POSIX named semaphore";

/// The longest name: NAME_MAX (255) less the "sem." that glibc puts in
/// front of it in /dev/shm.
const MAX_NAME: usize = 251;

/// A POSIX named semaphore (`sem_open`): a counting semaphore that
/// unrelated processes find by name (it appears as /dev/shm/sem.NAME).
///
/// The handle that creates it unlinks the name when dropped unless
/// [`persist`](Self::persist) is called; processes that have it open keep
/// using it. Handles from [`open`](Self::open) never unlink it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ipc_sync::NamedSemaphore;
///
/// let name = format!("/ipc-sync-doc-{}", std::process::id());
/// let sem = NamedSemaphore::create(&name, 1, 0o600)?;
/// let other = NamedSemaphore::open(&name)?; // as another process would
/// other.wait()?;
/// assert!(sem.wait_timeout(Duration::from_millis(1)).is_err());
/// sem.post()?;
/// assert_eq!(other.value()?, 1);
/// # Ok::<(), ipc_sync::Error>(())
/// ```
///
/// # References
///
/// [sem_overview(7)](https://man7.org/linux/man-pages/man7/sem_overview.7.html)
pub struct NamedSemaphore {
    /// First, so that the name is unlinked before the handle closes.
    guard: Guard<SemName>,
    sem: NamedSem,
}

/// The name of a named semaphore, removed with `sem_unlink`.
#[derive(Debug)]
struct SemName(CString);

impl Remove for SemName {
    fn remove(&self) -> std::io::Result<()> {
        sys::sem_unlink(&self.0)
    }
}

impl NamedSemaphore {
    /// Creates it with `value` units and permissions `mode` (exclusive).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bad name (checked before any system
    /// call: a leading '/', no other '/', no NUL, at most 251 bytes) or a
    /// value over `SEM_VALUE_MAX`; [`Error::AlreadyExists`];
    /// [`Error::PermissionDenied`].
    #[doc(alias = "sem_open")]
    pub fn create(name: &str, value: u32, mode: u32) -> Result<Self> {
        Self::open_with(name, libc::O_CREAT | libc::O_EXCL, mode, value, true)
    }

    /// Opens an existing one.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bad name; [`Error::NotFound`];
    /// [`Error::PermissionDenied`].
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, 0, 0, 0, false)
    }

    /// Opens it, or creates it with `value` and `mode` when there is none.
    /// Only a handle that created it unlinks it.
    ///
    /// # Errors
    ///
    /// As for [`create`](Self::create) and [`open`](Self::open).
    pub fn open_or_create(name: &str, value: u32, mode: u32) -> Result<Self> {
        crate::object::open_or_create_object(|| Self::create(name, value, mode), || Self::open(name))
    }

    fn open_with(name: &str, flags: libc::c_int, mode: u32, value: u32, owner: bool) -> Result<Self> {
        let c = check_name(name)?;
        if value > i32::MAX as u32 {
            return Err(Error::InvalidArgument {
                what: "semaphore value",
                reason: format!("{value} is over SEM_VALUE_MAX = {}", i32::MAX),
            });
        }
        let sem = NamedSem::open(&c, flags, (mode & 0o777) as libc::mode_t, value)
            .map_err(|e| Error::from_os(WHAT, || name.to_owned(), "sem_open", e))?;
        let guard = if owner { Guard::made(SemName(c)) } else { Guard::opened(SemName(c)) };
        Ok(NamedSemaphore { guard, sem })
    }

    /// Adds a unit.
    ///
    /// # Errors
    ///
    /// [`Error::Overflow`] at `SEM_VALUE_MAX`; [`Error::Io`] if the
    /// semaphore is invalid.
    pub fn post(&self) -> Result<()> {
        self.sem.post().map_err(|e| match e.raw_os_error() {
            Some(libc::EOVERFLOW) => Error::Overflow { what: "named semaphore value", max: i32::MAX as u64 },
            _ => Error::Io { op: "sem_post", source: e },
        })
    }

    /// Takes a unit, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the semaphore is invalid.
    pub fn wait(&self) -> Result<()> {
        retry_eintr(|| self.sem.wait(None)).map_err(|e| Error::Io { op: "sem_wait", source: e })
    }

    /// Takes a unit if there is one.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when the value is 0.
    pub fn try_wait(&self) -> Result<()> {
        retry_eintr(|| self.sem.wait(Some(Duration::ZERO))).map_err(|e| self.wait_err(e))
    }

    /// Takes a unit, waiting at most `timeout` (monotonic clock,
    /// `sem_clockwait`).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<()> {
        self.wait_until(Deadline::after(timeout))
    }

    /// Takes a unit, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`].
    pub fn wait_deadline(&self, deadline: Instant) -> Result<()> {
        self.wait_until(Deadline::at(deadline))
    }

    fn wait_until(&self, deadline: Deadline) -> Result<()> {
        retry_eintr(|| match deadline.remaining() {
            None => self.sem.wait(None),
            Some(left) if left.is_zero() => match self.sem.wait(Some(Duration::ZERO)) {
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    Err(std::io::Error::from_raw_os_error(libc::ETIMEDOUT))
                }
                other => other,
            },
            Some(left) => self.sem.wait(Some(left)),
        })
        .map_err(|e| self.wait_err(e))
    }

    fn wait_err(&self, e: std::io::Error) -> Error {
        match e.raw_os_error() {
            Some(libc::ETIMEDOUT) => Error::Timeout { what: WHAT },
            Some(libc::EAGAIN) => Error::WouldBlock { what: WHAT },
            _ => Error::Io { op: "sem_wait", source: e },
        }
    }

    /// The current value.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the semaphore is invalid.
    pub fn value(&self) -> Result<u32> {
        let v = self.sem.value().map_err(|e| Error::Io { op: "sem_getvalue", source: e })?;
        Ok(u32::try_from(v).unwrap_or(0))
    }

    /// The name it was opened with.
    pub fn name(&self) -> &str {
        self.guard.name().0.to_str().unwrap_or_default()
    }

    /// Whether this handle unlinks the name when dropped.
    pub fn is_owner(&self) -> bool {
        self.guard.is_owner()
    }

    /// Keeps the name after this handle is dropped.
    pub fn persist(&mut self) {
        self.guard.persist();
    }

    /// Removes the name now (`sem_unlink`); open handles keep working.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when it is gone already; [`Error::PermissionDenied`].
    pub fn unlink(&mut self) -> Result<()> {
        let unlinked = self.guard.remove();
        unlinked.map_err(|e| Error::from_os(WHAT, || self.name().to_owned(), "sem_unlink", e))
    }
}

/// Checks a POSIX IPC name (for semaphores: at most 251 bytes).
fn check_name(name: &str) -> Result<CString> {
    crate::posix_name(name, MAX_NAME)
        .map_err(|reason| Error::InvalidArgument { what: "POSIX IPC name", reason: format!("{name:?}: {reason}") })
}

impl fmt::Debug for NamedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamedSemaphore").field("name", &self.name()).field("owner", &self.guard.is_owner()).finish()
    }
}
