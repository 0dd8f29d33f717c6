use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::error::{Error, Result};
use crate::mapping::Mapping;
use crate::sys::{self, Region, SealFlag};

/// Anonymous shared memory behind a file descriptor (`memfd_create`),
/// sealed so that no one can shrink it.
///
/// It has no name to clean up: it lives while an fd or a mapping refers to
/// it. Processes share it by inheriting the fd (across `fork`, or across
/// exec as a chosen fd number, say with ipc-pipe's `ChildFds`) or by
/// receiving it over a Unix socket.
///
/// The seal against shrinking (`F_SEAL_SHRINK`) is what makes it safe to
/// share with a peer you do not trust: with a POSIX shared memory object,
/// a peer could truncate the file and make every access to the lost pages
/// kill the process with `SIGBUS`. [`Memfd::from_fd`] refuses a memfd
/// without that seal.
///
/// # Examples
///
/// ```
/// use ipc_shm::Memfd;
///
/// let mem = Memfd::create("frames", 1 << 20)?;
/// mem.map()?.write(0, &7u32)?;
/// // What a child that inherited the fd would do:
/// let other = Memfd::from_fd(mem.try_clone_fd()?)?;
/// assert_eq!(other.map()?.read::<u32>(0)?, 7);
/// # Ok::<(), ipc_shm::Error>(())
/// ```
///
/// # References
///
/// [memfd_create(2)](https://man7.org/linux/man-pages/man2/memfd_create.2.html)
pub struct Memfd {
    fd: OwnedFd,
    len: usize,
}

impl Memfd {
    /// Creates one of `len` bytes (zero-filled), close-on-exec, sealed
    /// against shrinking. `name` only labels it in /proc/PID/fd.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`] for 0 or more than memory and swap together;
    /// [`Error::InvalidName`] for a name with a NUL or over 249 bytes;
    /// [`Error::Io`].
    #[doc(alias = "memfd_create")]
    pub fn create(name: &str, len: usize) -> Result<Self> {
        if len == 0 {
            return Err(Error::InvalidSize { size: 0, reason: "a memfd mapping cannot be empty" });
        }
        if name.len() > 249 {
            return Err(Error::InvalidName { name: name.to_owned(), reason: "a memfd name is at most 249 bytes" });
        }
        let c = CString::new(name)
            .map_err(|_| Error::InvalidName { name: name.to_owned(), reason: "it contains a NUL byte" })?;
        let fd = sys::memfd_create(&c).map_err(|e| Error::Io { op: "memfd_create", source: e })?;
        crate::mapping::check_backable(Some(fd.as_fd()), len)?;
        sys::ftruncate(fd.as_fd(), len).map_err(|e| Error::Io { op: "ftruncate", source: e })?;
        sys::add_seals(fd.as_fd(), SealFlag::F_SEAL_SHRINK).map_err(|e| Error::Io { op: "F_ADD_SEALS", source: e })?;
        Ok(Memfd { fd, len })
    }

    /// Takes a memfd received from another process (inherited or passed),
    /// after checking that it is sealed against shrinking; sets it
    /// close-on-exec, as [`create`](Self::create) makes it.
    ///
    /// # Errors
    ///
    /// [`Error::NotSealed`] when it lacks `F_SEAL_SHRINK` (or is not a
    /// memfd at all); [`Error::InvalidSize`] when it is empty.
    pub fn from_fd(fd: OwnedFd) -> Result<Self> {
        match sys::seals(fd.as_fd()) {
            Ok(seals) if seals.contains(SealFlag::F_SEAL_SHRINK) => {}
            _ => return Err(Error::NotSealed),
        }
        let len = sys::file_size(fd.as_fd()).map_err(|e| Error::Io { op: "fstat", source: e })?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len == 0 {
            return Err(Error::InvalidSize { size: 0, reason: "the memfd is empty" });
        }
        // As `create` makes it: not passed on to programs this one runs.
        sys::set_cloexec(fd.as_fd()).map_err(|e| Error::Io { op: "F_SETFD", source: e })?;
        Ok(Memfd { fd, len })
    }

    /// Adds the seal against growing too (`F_SEAL_GROW`): its size is then
    /// fixed for good.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] (`EPERM` when sealing itself was sealed).
    pub fn seal_grow(&self) -> Result<()> {
        sys::add_seals(self.fd.as_fd(), SealFlag::F_SEAL_GROW).map_err(|e| Error::Io { op: "F_ADD_SEALS", source: e })
    }

    /// Maps all of it for reading and writing.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when it cannot be mapped.
    pub fn map(&self) -> Result<Mapping> {
        let region =
            Region::map_fd(self.fd.as_fd(), self.len, true, false).map_err(|e| Error::Io { op: "mmap", source: e })?;
        // Sealed against shrinking: no size check is needed.
        Ok(Mapping::from_region(region, true, None))
    }

    /// Its size in bytes (when it was created or received; it may grow, but
    /// never shrink).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: memfds made or accepted here are never empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A new fd for the same memory (close-on-exec), to hand to another
    /// process.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when out of file descriptors.
    pub fn try_clone_fd(&self) -> Result<OwnedFd> {
        self.fd.try_clone().map_err(|e| Error::Io { op: "dup", source: e })
    }

    /// A second handle to the same memory (its fd duplicated, close-on-exec).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when out of file descriptors.
    pub fn try_clone(&self) -> Result<Memfd> {
        Ok(Memfd { fd: self.try_clone_fd()?, len: self.len })
    }
}

impl fmt::Debug for Memfd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memfd").field("fd", &self.fd.as_raw_fd()).field("len", &self.len).finish()
    }
}

ipc_sync::impl_as_fd!(Memfd => fd);

impl From<Memfd> for OwnedFd {
    fn from(m: Memfd) -> Self {
        m.fd
    }
}
