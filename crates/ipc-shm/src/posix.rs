use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use ipc_sync::CREATION_GRACE;

use crate::error::{Error, Result};
use crate::mapping::Mapping;
use crate::sys::{self, Region};

const WHAT: &str = "POSIX shared memory object";

/// The longest name after the '/' (`NAME_MAX`).
const MAX_NAME: usize = 255;

/// A POSIX shared memory object (`shm_open`): a file in /dev/shm that
/// unrelated processes open by name and map with [`map`](Self::map).
///
/// The handle that creates it unlinks the name when dropped unless
/// [`persist`](Self::persist) is called; mappings stay valid after that.
/// Handles from [`open`](Self::open) never unlink it.
///
/// Anyone who can open it for writing can also shrink it, and touching a
/// mapped page past the end of the file kills a process with `SIGBUS`.
/// Mappings made here do not let that happen: a copy checks the file's
/// size first, and a peer that shrinks the file during the copy (or under
/// a view from [`Mapping::shared`], or a raw pointer) makes the access
/// meet zeros of this process's own instead of killing it. ipc-shm
/// installs a process-wide `SIGBUS` handler for this the first time it
/// maps such an object; faults anywhere else go on to the handler that
/// was there before, or kill as usual. The copy then returns
/// [`Error::Truncated`], and so does every later copy through that
/// mapping, which no longer shows the object where it was cut: map it
/// again. With peers you do not trust, a sealed [`Memfd`](crate::Memfd)
/// avoids all of this.
///
/// # Examples
///
/// ```
/// use ipc_shm::PosixShm;
///
/// let name = format!("/ipc-shm-doc-{}", std::process::id());
/// let shm = PosixShm::create(&name, 4096, 0o600)?;
/// shm.map()?.write_bytes(0, b"hello")?;
///
/// let peer = PosixShm::open(&name)?; // as another process would
/// let mut buf = [0; 5];
/// peer.map()?.read_bytes(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// # Ok::<(), ipc_shm::Error>(())
/// ```
///
/// # References
///
/// [shm_open(3)](https://man7.org/linux/man-pages/man3/shm_open.3.html)
pub struct PosixShm {
    fd: OwnedFd,
    name: CString,
    writable: bool,
    owner: ipc_sync::Owned,
}

impl PosixShm {
    /// Creates it with `size` bytes (zero-filled) and permissions `mode`
    /// (exclusive).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] (checked before any system call: a leading
    /// '/', no other '/', no NUL, at most 255 bytes after the '/');
    /// [`Error::InvalidSize`] for 0 or more than the file system
    /// (/dev/shm) holds; [`Error::AlreadyExists`];
    /// [`Error::PermissionDenied`].
    #[doc(alias = "shm_open")]
    pub fn create(name: &str, size: usize, mode: u32) -> Result<Self> {
        let c = check_name(name)?;
        if size == 0 {
            return Err(Error::InvalidSize { size, reason: "a shared memory object cannot be empty" });
        }
        let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL;
        let fd = sys::shm_open(&c, flags, (mode & 0o777) as libc::mode_t)
            .map_err(|e| Error::from_os(WHAT, || name.to_owned(), "shm_open", e))?;
        let shm = PosixShm { fd, name: c, writable: true, owner: ipc_sync::Owned::here() };
        ipc_sync::failpoint::hit("posix-shm:opened");
        shm.resize(size)?;
        Ok(shm)
    }

    /// Opens an existing one for reading and writing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`]; [`Error::NotFound`];
    /// [`Error::PermissionDenied`].
    pub fn open(name: &str) -> Result<Self> {
        Self::open_with(name, true)
    }

    /// Opens an existing one for reading only; its mappings are read-only.
    ///
    /// # Errors
    ///
    /// As for [`open`](Self::open).
    pub fn open_read_only(name: &str) -> Result<Self> {
        Self::open_with(name, false)
    }

    fn open_with(name: &str, writable: bool) -> Result<Self> {
        let c = check_name(name)?;
        let flags = if writable { libc::O_RDWR } else { libc::O_RDONLY };
        let fd = sys::shm_open(&c, flags, 0).map_err(|e| Error::from_os(WHAT, || name.to_owned(), "shm_open", e))?;
        Ok(PosixShm { fd, name: c, writable, owner: ipc_sync::Owned::none() })
    }

    /// Opens it, or creates it with `size` and `mode` when there is none.
    /// Only a handle that created it unlinks it.
    ///
    /// Making an object takes two steps (`shm_open`, then `ftruncate`), so
    /// an object found empty is one whose creator is between them: it is
    /// waited for, up to [`CREATION_GRACE`], and then, its creator having
    /// died there, given `size` here.
    ///
    /// # Errors
    ///
    /// As for [`create`](Self::create) and [`open`](Self::open).
    pub fn open_or_create(name: &str, size: usize, mode: u32) -> Result<Self> {
        let shm = ipc_sync::open_or_create(
            || Self::create(name, size, mode),
            || Self::open(name),
            |e| matches!(e, Error::AlreadyExists { .. }),
            |e| matches!(e, Error::NotFound { .. }),
        )?;
        if !shm.is_owner() && shm.wait_sized(CREATION_GRACE)? == 0 {
            shm.resize(size)?;
        }
        Ok(shm)
    }

    /// The object's size once it is not empty, or 0 if it stays empty
    /// for `grace` (its creator died between `shm_open` and `ftruncate`).
    pub(crate) fn wait_sized(&self, grace: Duration) -> Result<u64> {
        let start = Instant::now();
        loop {
            let size = self.size()?;
            if size > 0 || start.elapsed() >= grace {
                return Ok(size);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Maps the whole object, as large as it is now.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`] when it is empty; [`Error::Io`] when it
    /// cannot be mapped.
    pub fn map(&self) -> Result<Mapping> {
        let size = self.size()?;
        self.map_len(usize::try_from(size).unwrap_or(usize::MAX))
    }

    /// Maps the first `len` bytes.
    ///
    /// # Errors
    ///
    /// [`Error::TooSmall`] when the object holds fewer than `len` bytes;
    /// [`Error::InvalidSize`] for 0; [`Error::Io`] when it cannot be
    /// mapped, or when 4096 mappings of POSIX objects are in use in this
    /// process already (the most that are guarded against `SIGBUS`).
    pub fn map_len(&self, len: usize) -> Result<Mapping> {
        if len == 0 {
            return Err(Error::InvalidSize { size: 0, reason: "a mapping cannot be empty" });
        }
        let size = self.size()?;
        if (len as u64) > size {
            return Err(Error::TooSmall { what: WHAT, name: self.name().to_owned(), size, needed: len as u64 });
        }
        let region = Region::map_fd(self.fd.as_fd(), len, self.writable, true)
            .map_err(|e| Error::Io { op: "mmap", source: e })?;
        let guard = self.fd.try_clone().map_err(|e| Error::Io { op: "dup", source: e })?;
        Ok(Mapping::from_region(region, self.writable, Some(guard)))
    }

    /// The object's size now (it can change: anyone who can write it can
    /// resize it).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if `fstat` fails.
    pub fn size(&self) -> Result<u64> {
        sys::file_size(self.fd.as_fd()).map_err(|e| Error::Io { op: "fstat", source: e })
    }

    /// Resizes it (`ftruncate`). Shrinking it under peers' mappings makes
    /// their accesses past the new end fail (or fault, for raw pointers and
    /// views).
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`] when opened read-only; [`Error::InvalidSize`]
    /// for more than the file system (/dev/shm) holds; [`Error::Io`].
    pub fn set_size(&self, size: usize) -> Result<()> {
        if !self.writable {
            return Err(Error::ReadOnly);
        }
        self.resize(size)
    }

    /// `ftruncate`, refusing a size /dev/shm could never back.
    fn resize(&self, size: usize) -> Result<()> {
        crate::mapping::check_backable(Some(self.fd.as_fd()), size)?;
        sys::ftruncate(self.fd.as_fd(), size).map_err(|e| Error::Io { op: "ftruncate", source: e })
    }

    /// The name it was opened with.
    pub fn name(&self) -> &str {
        self.name.to_str().unwrap_or_default()
    }

    /// Whether this handle unlinks the name when dropped.
    pub fn is_owner(&self) -> bool {
        self.owner.is_owner()
    }

    /// Keeps the name after this handle is dropped.
    pub fn persist(&mut self) {
        self.owner = ipc_sync::Owned::none();
    }

    /// Removes the name now (`shm_unlink`); open handles and mappings keep
    /// working.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when it is gone already.
    pub fn unlink(&mut self) -> Result<()> {
        self.owner = ipc_sync::Owned::none();
        sys::shm_unlink(&self.name).map_err(|e| Error::from_os(WHAT, || self.name().to_owned(), "shm_unlink", e))
    }
}

/// What the shared-memory channels need to tell a live named object from a
/// stale one: every process with a channel's object open holds a shared
/// `flock` on it, which the kernel drops when the process dies.
impl PosixShm {
    /// Takes a shared lock on the object, waiting while someone holds it
    /// exclusively.
    pub(crate) fn lock_shared(&self) -> Result<()> {
        sys::flock(self.fd.as_fd(), libc::LOCK_SH).map_err(|e| Error::Io { op: "flock(LOCK_SH)", source: e })
    }

    /// Takes an exclusive lock if nobody holds any; false when someone does.
    pub(crate) fn try_lock_exclusive(&self) -> Result<bool> {
        match sys::flock(self.fd.as_fd(), libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
            Err(e) => Err(Error::Io { op: "flock(LOCK_EX)", source: e }),
        }
    }

    /// Whether the name still leads to this object (it may have been
    /// unlinked, and the name given to another, since it was opened).
    pub(crate) fn is_still_named(&self) -> Result<bool> {
        let ours = sys::file_id(self.fd.as_fd()).map_err(|e| Error::Io { op: "fstat", source: e })?;
        // shm_open(3) on Linux opens the name under /dev/shm.
        let path = std::path::Path::new("/dev/shm").join(self.name().trim_start_matches('/'));
        match std::fs::metadata(path) {
            Ok(meta) => Ok((meta.dev(), meta.ino()) == ours),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::Io { op: "stat", source: e }),
        }
    }
}

fn check_name(name: &str) -> Result<CString> {
    ipc_sync::posix_name(name, MAX_NAME).map_err(|reason| Error::InvalidName { name: name.to_owned(), reason })
}

impl Drop for PosixShm {
    fn drop(&mut self) {
        if self.owner.is_owner() {
            let _ = sys::shm_unlink(&self.name);
        }
    }
}

impl AsFd for PosixShm {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PosixShm {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl fmt::Debug for PosixShm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PosixShm")
            .field("name", &self.name())
            .field("fd", &self.fd.as_raw_fd())
            .field("writable", &self.writable)
            .field("owner", &self.owner)
            .finish()
    }
}
