use std::ffi::CString;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};

use ipc_sync::object::{Guard, ObjectError as _, Remove};

use crate::error::{Error, Result};
use crate::mapping::Mapping;
use crate::sys::{self, OFlag, Region};

const WHAT: &str = "POSIX shared memory object";

/// The longest name after the '/' (`NAME_MAX`).
const MAX_NAME: usize = 255;

/// Set once this process has found that it cannot create objects as
/// unnamed files (see [`PosixShm::create`]).
static NO_TMPFILE: AtomicBool = AtomicBool::new(false);

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
    // Before `fd`, so that the name goes before the fd (and the locks the
    // channels hold through it) when the handle is dropped.
    guard: Guard<ShmName>,
    fd: OwnedFd,
    writable: bool,
}

/// An object's name, which `shm_unlink` removes.
#[derive(Debug)]
struct ShmName(CString);

impl Remove for ShmName {
    fn remove(&self) -> std::io::Result<()> {
        sys::shm_unlink(&self.0)
    }
}

impl PosixShm {
    /// Creates it with `size` bytes (zero-filled) and permissions `mode`
    /// (exclusive).
    ///
    /// # Behavior
    ///
    /// The object appears under its name complete, or not at all: it is
    /// made as an unnamed file in /dev/shm (`O_TMPFILE`), sized, and then
    /// given the name in one step (`linkat` through /proc/self/fd, which
    /// fails if the name is taken). So no process ever opens an object of
    /// ours half made, and a creator that dies on the way leaves nothing
    /// behind.
    ///
    /// Where the system cannot do that (a file system without
    /// `O_TMPFILE`, no /proc), it falls back to `shm_open(O_EXCL)` and
    /// sizes the object under an exclusive `flock`, which openers of an
    /// empty object wait for. A creator killed there leaves an empty
    /// object, which [`create`](Self::create) reports as
    /// [`Error::AlreadyExists`] and [`open_or_create`](Self::open_or_create)
    /// as [`Error::TooSmall`]: nothing takes it over on its own, since an
    /// empty object may as well be a slow creator's that does not lock;
    /// [`unlink`](Self::unlink) it to start again.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] (checked before any system call: a leading
    /// '/', no other '/', not `/.` or `/..`, no NUL, at most 255 bytes
    /// after the '/'); [`Error::InvalidSize`] for 0 or more than the file
    /// system (/dev/shm) holds; [`Error::AlreadyExists`];
    /// [`Error::PermissionDenied`].
    #[doc(alias = "shm_open")]
    pub fn create(name: &str, size: usize, mode: u32) -> Result<Self> {
        Self::create_prepared(name, size, mode, |_| Ok(())).map(|(shm, ())| shm)
    }

    /// Creates it as [`create`](Self::create) does, calling `prepare` with
    /// the sized object before it gets its name: a process that opens it
    /// by name finds what `prepare` wrote (a channel's header, say). When
    /// `prepare` fails, nothing is named and its error is returned.
    pub(crate) fn create_prepared<R>(
        name: &str,
        size: usize,
        mode: u32,
        prepare: impl FnOnce(&PosixShm) -> Result<R>,
    ) -> Result<(Self, R)> {
        let c = check_name(name)?;
        if size == 0 {
            return Err(Error::InvalidSize { size, reason: "a shared memory object cannot be empty" });
        }
        let mode = (mode & 0o777) as libc::mode_t;
        match Self::unnamed(name, mode)? {
            Some(fd) => Self::prepare_and_link(fd, c, size, prepare),
            None => Self::create_locked(c, size, mode, prepare),
        }
    }

    /// A new unnamed file in /dev/shm for an object, or `None` when this
    /// system cannot make one or name it later.
    fn unnamed(name: &str, mode: libc::mode_t) -> Result<Option<OwnedFd>> {
        if NO_TMPFILE.load(Ordering::Relaxed) {
            return Ok(None);
        }
        match sys::shm_tmpfile(mode) {
            // Naming it goes through /proc/self/fd.
            Ok(fd) if std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).is_ok() => Ok(Some(fd)),
            Ok(_) => {
                NO_TMPFILE.store(true, Ordering::Relaxed);
                Ok(None)
            }
            // EISDIR: a kernel that takes O_TMPFILE for O_DIRECTORY.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {
                NO_TMPFILE.store(true, Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => Err(Error::from_os(WHAT, || name.to_owned(), "open(/dev/shm, O_TMPFILE)", e)),
        }
    }

    /// Sizes and prepares the unnamed file `fd`, then gives it the name.
    fn prepare_and_link<R>(
        fd: OwnedFd,
        name: CString,
        size: usize,
        prepare: impl FnOnce(&PosixShm) -> Result<R>,
    ) -> Result<(Self, R)> {
        // Not the owner until named: nothing to unlink on an error before.
        let mut shm = PosixShm { guard: Guard::opened(ShmName(name)), fd, writable: true };
        ipc_sync::failpoint::hit("posix-shm:opened");
        shm.resize(size)?;
        let prepared = prepare(&shm)?;
        ipc_sync::failpoint::hit("posix-shm:prepared");
        let path = shm.path()?;
        sys::link_fd(shm.fd.as_fd(), &path).map_err(|e| Error::from_os(WHAT, || shm.name().to_owned(), "linkat", e))?;
        shm.guard.own();
        Ok((shm, prepared))
    }

    /// The fallback: `shm_open(O_EXCL)`, then sizing and preparing under
    /// an exclusive `flock`, which openers of an empty object wait for.
    fn create_locked<R>(
        name: CString,
        size: usize,
        mode: libc::mode_t,
        prepare: impl FnOnce(&PosixShm) -> Result<R>,
    ) -> Result<(Self, R)> {
        let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL;
        let text = || name.to_string_lossy().into_owned();
        let fd = sys::shm_open(&name, flags, mode).map_err(|e| Error::from_os(WHAT, text, "shm_open", e))?;
        let mut shm = PosixShm { guard: Guard::made(ShmName(name.clone())), fd, writable: true };
        sys::flock(shm.fd.as_fd(), libc::LOCK_EX).map_err(|e| Error::Io { op: "flock(LOCK_EX)", source: e })?;
        if !shm.is_still_named()? {
            // Someone unlinked it already (and may have made another).
            shm.persist();
            return Err(Error::AlreadyExists { what: WHAT, name: text() });
        }
        ipc_sync::failpoint::hit("posix-shm:opened");
        shm.resize(size)?;
        let prepared = prepare(&shm)?;
        ipc_sync::failpoint::hit("posix-shm:prepared");
        sys::flock(shm.fd.as_fd(), libc::LOCK_UN).map_err(|e| Error::Io { op: "flock(LOCK_UN)", source: e })?;
        Ok((shm, prepared))
    }

    /// Opens an existing one for reading and writing.
    ///
    /// An object made without `O_TMPFILE` (see [`create`](Self::create))
    /// is named before it is complete: `open` waits while its creator
    /// holds its exclusive `flock` on it, and so returns it once made (or
    /// as its creator left it on dying). Whoever else holds an exclusive
    /// lock on the object's file delays it as long.
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
        let flags = if writable { OFlag::O_RDWR } else { OFlag::O_RDONLY };
        let fd = sys::shm_open(&c, flags, 0).map_err(|e| Error::from_os(WHAT, || name.to_owned(), "shm_open", e))?;
        // Wait out a fallback creator's exclusive lock: the proof that it
        // is still making the object (released when it is done, or by the
        // kernel when it dies). Objects made with O_TMPFILE are complete
        // once named; the shared locks of a channel's holders do not
        // stand in the way.
        sys::flock(fd.as_fd(), libc::LOCK_SH).map_err(|e| Error::Io { op: "flock(LOCK_SH)", source: e })?;
        sys::flock(fd.as_fd(), libc::LOCK_UN).map_err(|e| Error::Io { op: "flock(LOCK_UN)", source: e })?;
        Ok(PosixShm { guard: Guard::opened(ShmName(c)), fd, writable })
    }

    /// Opens it, or creates it with `size` and `mode` when there is none.
    /// Only a handle that created it unlinks it.
    ///
    /// An object found there that holds fewer than `size` bytes, empty
    /// ones included, is left alone and reported: it is never resized or
    /// taken over, whoever made it and however long ago (see
    /// [`create`](Self::create) for the empty object a killed creator can
    /// leave where `O_TMPFILE` is missing).
    ///
    /// # Errors
    ///
    /// [`Error::TooSmall`] for an object smaller than `size`; as for
    /// [`create`](Self::create) and [`open`](Self::open).
    pub fn open_or_create(name: &str, size: usize, mode: u32) -> Result<Self> {
        let shm = ipc_sync::object::open_or_create_object(|| Self::create(name, size, mode), || Self::open(name))?;
        if !shm.is_owner() {
            let have = shm.size()?;
            if have < size as u64 {
                return Err(Error::TooSmall { what: WHAT, name: name.to_owned(), size: have, needed: size as u64 });
            }
        }
        Ok(shm)
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

    /// Removes the name now (`shm_unlink`); open handles and mappings keep
    /// working.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when it is gone already.
    pub fn unlink(&mut self) -> Result<()> {
        self.guard.remove().map_err(|e| Error::from_os(WHAT, || self.name().to_owned(), "shm_unlink", e))
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

    /// The same object opened again by name, through a new open file
    /// description: `None` when the name leads elsewhere now.
    pub(crate) fn open_again(&self) -> Result<Option<PosixShm>> {
        let again = Self::open_with(self.name(), self.writable)?;
        let same = sys::file_id(self.fd.as_fd()).map_err(|e| Error::Io { op: "fstat", source: e })?
            == sys::file_id(again.fd.as_fd()).map_err(|e| Error::Io { op: "fstat", source: e })?;
        Ok(same.then_some(again))
    }

    /// Whether the object is a regular file (not a FIFO or a device that
    /// someone put under /dev/shm).
    pub(crate) fn is_regular_file(&self) -> Result<bool> {
        sys::is_regular_file(self.fd.as_fd()).map_err(|e| Error::Io { op: "fstat", source: e })
    }

    /// Whether the name still leads to this object (it may have been
    /// unlinked, and the name given to another, since it was opened).
    pub(crate) fn is_still_named(&self) -> Result<bool> {
        let ours = sys::file_id(self.fd.as_fd()).map_err(|e| Error::Io { op: "fstat", source: e })?;
        let path = std::path::PathBuf::from(std::ffi::OsString::from_vec(self.path()?.into_bytes()));
        match std::fs::metadata(path) {
            Ok(meta) => Ok((meta.dev(), meta.ino()) == ours),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::Io { op: "stat", source: e }),
        }
    }
}

impl PosixShm {
    /// Where the name leads: shm_open(3) on Linux opens it under /dev/shm.
    fn path(&self) -> Result<CString> {
        let mut path = sys::SHM_DIR.to_bytes().to_vec();
        path.extend_from_slice(self.guard.name().0.as_bytes());
        CString::new(path)
            .map_err(|_| Error::InvalidName { name: self.name().to_owned(), reason: "it contains a NUL byte" })
    }
}

fn check_name(name: &str) -> Result<CString> {
    ipc_sync::posix_name(name, MAX_NAME).map_err(|reason| Error::InvalidName { name: name.to_owned(), reason })
}

ipc_sync::impl_as_fd!(PosixShm => fd);

impl fmt::Debug for PosixShm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PosixShm")
            .field("name", &self.name())
            .field("fd", &self.fd.as_raw_fd())
            .field("writable", &self.writable)
            .field("owner", &self.is_owner())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{PosixShm, check_name};
    use crate::Error;

    /// The fallback for systems without `O_TMPFILE`: an opener that comes
    /// while the creator prepares the object waits for its lock, and so
    /// sees the object only complete; the name stays the creator's.
    #[test]
    fn the_fallback_creates_under_a_lock_that_openers_wait_for() {
        let name = format!("/ipc-shm-unit-fallback-{}", std::process::id());
        let c = check_name(&name).unwrap();
        let (started, go) = std::sync::mpsc::channel();
        let creator = std::thread::spawn(move || {
            PosixShm::create_locked(c, 4096, 0o600, |shm| {
                let map = shm.map()?;
                map.write(0, &7u64)?;
                started.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(200));
                map.write(8, &9u64)
            })
        });
        go.recv().unwrap();
        let opened = PosixShm::open(&name).unwrap();
        assert_eq!(opened.map().unwrap().read::<[u64; 2]>(0).unwrap(), [7, 9], "it waited for the creator");
        let (shm, ()) = creator.join().unwrap().unwrap();
        assert!(shm.is_owner() && !opened.is_owner());
        let again = PosixShm::create_locked(check_name(&name).unwrap(), 4096, 0o600, |_| Ok(()));
        assert!(matches!(again, Err(Error::AlreadyExists { .. })), "{again:?}");
        drop(shm);
        assert!(matches!(PosixShm::open(&name), Err(Error::NotFound { .. })), "the creator unlinked it");
    }

    /// A failed `prepare` names nothing.
    #[test]
    fn a_failed_preparation_leaves_no_name() {
        let name = format!("/ipc-shm-unit-prepare-{}", std::process::id());
        let failed = PosixShm::create_prepared(&name, 4096, 0o600, |_| -> crate::Result<()> { Err(Error::ReadOnly) });
        assert!(matches!(failed, Err(Error::ReadOnly)));
        assert!(matches!(PosixShm::open(&name), Err(Error::NotFound { .. })));
        let (shm, got) = PosixShm::create_prepared(&name, 4096, 0o600, |shm| {
            assert!(matches!(PosixShm::open(&name), Err(Error::NotFound { .. })), "not named while prepared");
            shm.map()?.write(0, &5u32)?;
            Ok(42)
        })
        .unwrap();
        assert_eq!(got, 42);
        assert_eq!(PosixShm::open(&name).unwrap().map().unwrap().read::<u32>(0).unwrap(), 5);
        drop(shm);
    }
}
