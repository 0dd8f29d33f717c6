use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipc_sync::Key;
use ipc_sync::object::{Guard, ObjectError as _, Remove};

use crate::error::{Error, Result};
use crate::mapping::Mapping;
use crate::sys::{self, Region};

const WHAT: &str = "System V shared memory segment";

/// A System V shared memory segment (`shmget`): found by unrelated
/// processes through a [`Key`], attached with [`attach`](Self::attach).
///
/// The handle that creates a segment removes it (`IPC_RMID`) when dropped
/// unless [`persist`](Self::persist) is called; handles from
/// [`open`](Self::open) never remove it. A segment marked for removal
/// stays usable by every process attached to it and disappears when the
/// last one detaches; its key no longer finds it (Linux still lets a
/// process that knows its id attach it).
///
/// # Examples
///
/// ```
/// use ipc_shm::{Key, SysvSegment};
///
/// let seg = SysvSegment::create(Key::private(), 4096, 0o600)?;
/// let map = seg.attach()?;
/// map.write(0, &42u64)?;
/// assert_eq!(seg.stat()?.attach_count, 1);
/// let again = seg.attach_read_only()?;
/// assert_eq!(again.read::<u64>(0)?, 42);
/// assert!(again.write(0, &1u64).is_err(), "read-only");
/// # Ok::<(), ipc_shm::Error>(())
/// ```
///
/// # References
///
/// [shmget(2)](https://man7.org/linux/man-pages/man2/shmget.2.html),
/// [shmop(2)](https://man7.org/linux/man-pages/man2/shmop.2.html)
pub struct SysvSegment {
    guard: Guard<SegmentId>,
    key: Key,
    size: usize,
}

/// A segment's id, which `IPC_RMID` removes.
#[derive(Debug)]
struct SegmentId(i32);

impl Remove for SegmentId {
    fn remove(&self) -> std::io::Result<()> {
        sys::shm_remove(self.0)
    }
}

/// What `IPC_STAT` tells about a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentStat {
    /// Size in bytes.
    pub size: u64,
    /// How many attachments exist, in all processes.
    pub attach_count: u64,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
    /// Permission bits.
    pub mode: u32,
    /// The process that created it.
    pub creator_pid: i32,
    /// The process that last attached or detached.
    pub last_pid: i32,
    /// When it was last attached, if ever.
    pub attached_at: Option<SystemTime>,
    /// When it was last detached, if ever.
    pub detached_at: Option<SystemTime>,
    /// When it was last changed by `shmctl`.
    pub changed_at: Option<SystemTime>,
    /// Whether it is marked for removal (`SHM_DEST`).
    pub marked_for_removal: bool,
}

impl SysvSegment {
    /// Creates a segment of `size` bytes (zero-filled) under `key`
    /// (exclusive), with permissions `mode` (such as 0o600).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`] for 0, above `SHMMAX` or more than memory
    /// allows (`EINVAL`, `ENOMEM`); [`Error::AlreadyExists`];
    /// [`Error::PermissionDenied`]; [`Error::Io`] (such as `ENOSPC` at the
    /// system's limits on segments).
    #[doc(alias = "shmget")]
    pub fn create(key: Key, size: usize, mode: u32) -> Result<Self> {
        if size == 0 {
            return Err(Error::InvalidSize { size, reason: "a segment cannot be empty" });
        }
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as libc::c_int;
        let id = sys::shmget(key.raw(), size, flags).map_err(|e| match e.raw_os_error() {
            Some(libc::EINVAL | libc::ENOMEM) => {
                Error::InvalidSize { size, reason: "over kernel.shmmax, or more memory than the system can give" }
            }
            _ => Error::from_os(WHAT, || key.to_string(), "shmget", e),
        })?;
        Ok(SysvSegment { guard: Guard::made(SegmentId(id)), key, size })
    }

    /// Opens the existing segment under `key`, which must hold at least
    /// `min_size` bytes.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; [`Error::PermissionDenied`];
    /// [`Error::TooSmall`] when it holds fewer than `min_size` bytes;
    /// [`Error::InvalidKey`] for [`Key::private`].
    pub fn open(key: Key, min_size: usize) -> Result<Self> {
        if key.is_private() {
            return Err(Error::InvalidKey { reason: "IPC_PRIVATE names no existing segment; open by key or id" });
        }
        let id = sys::shmget(key.raw(), 0, 0).map_err(|e| Error::from_os(WHAT, || key.to_string(), "shmget", e))?;
        Self::opened(id, key, min_size)
    }

    /// Opens the segment with this id (as `ipcs -m` shows it).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when no segment has that id (also one removed
    /// before); as for [`open`](Self::open) otherwise.
    pub fn open_id(id: i32, min_size: usize) -> Result<Self> {
        Self::opened(id, Key::private(), min_size).map_err(|e| match e {
            Error::Removed { what, name } => Error::NotFound { what, name },
            other => other,
        })
    }

    fn opened(id: i32, key: Key, min_size: usize) -> Result<Self> {
        let mut seg = SysvSegment { guard: Guard::opened(SegmentId(id)), key, size: 0 };
        let size = usize::try_from(seg.stat()?.size).unwrap_or(usize::MAX);
        if size < min_size {
            return Err(Error::TooSmall { what: WHAT, name: seg.name(), size: size as u64, needed: min_size as u64 });
        }
        seg.size = size;
        Ok(seg)
    }

    /// Opens the segment under `key`, or creates it with `size` and `mode`
    /// when there is none. Only a handle that created it removes it.
    ///
    /// # Errors
    ///
    /// As for [`create`](Self::create) and [`open`](Self::open) (an
    /// existing segment smaller than `size` is [`Error::TooSmall`]).
    pub fn open_or_create(key: Key, size: usize, mode: u32) -> Result<Self> {
        ipc_sync::object::open_or_create_object(|| Self::create(key, size, mode), || Self::open(key, size))
    }

    /// Attaches the segment for reading and writing (`shmat`).
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`]; [`Error::Removed`] when it was removed.
    #[doc(alias = "shmat")]
    pub fn attach(&self) -> Result<Mapping> {
        self.attach_with(true)
    }

    /// Attaches the segment read-only (`SHM_RDONLY`).
    ///
    /// # Errors
    ///
    /// As for [`attach`](Self::attach).
    pub fn attach_read_only(&self) -> Result<Mapping> {
        self.attach_with(false)
    }

    fn attach_with(&self, writable: bool) -> Result<Mapping> {
        let region = Region::shmat(self.id(), self.size, writable).map_err(|e| self.err("shmat", e))?;
        Ok(Mapping::from_region(region, writable, None))
    }

    /// The segment's state (`IPC_STAT`).
    ///
    /// # Errors
    ///
    /// [`Error::Removed`] when it is gone; [`Error::PermissionDenied`].
    pub fn stat(&self) -> Result<SegmentStat> {
        let ds = sys::shm_stat(self.id()).map_err(|e| self.err("shmctl(IPC_STAT)", e))?;
        let time = |t: libc::time_t| (t > 0).then(|| UNIX_EPOCH + Duration::from_secs(t as u64));
        Ok(SegmentStat {
            size: ds.shm_segsz as u64,
            attach_count: ds.shm_nattch,
            uid: ds.shm_perm.uid,
            gid: ds.shm_perm.gid,
            mode: u32::from(ds.shm_perm.mode) & 0o777,
            creator_pid: ds.shm_cpid,
            last_pid: ds.shm_lpid,
            attached_at: time(ds.shm_atime),
            detached_at: time(ds.shm_dtime),
            changed_at: time(ds.shm_ctime),
            marked_for_removal: u32::from(ds.shm_perm.mode) & 0o1000 != 0,
        })
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.size
    }

    /// Always false: segments are never empty.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The segment's id.
    pub fn id(&self) -> i32 {
        self.guard.name().0
    }

    /// The key it was created or opened with ([`Key::private`] when opened
    /// by id).
    pub fn key(&self) -> Key {
        self.key
    }

    /// Whether this handle removes the segment when dropped.
    pub fn is_owner(&self) -> bool {
        self.guard.is_owner()
    }

    /// Keeps the segment after this handle is dropped.
    pub fn persist(&mut self) {
        self.guard.persist();
    }

    /// Marks the segment for removal now (`IPC_RMID`): it goes when the
    /// last attachment is detached; meanwhile its key finds it no more.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`]; [`Error::Removed`].
    #[doc(alias = "IPC_RMID")]
    pub fn remove(mut self) -> Result<()> {
        self.guard.remove().map_err(|e| self.err("shmctl(IPC_RMID)", e))
    }

    fn name(&self) -> String {
        self.key.describe(self.id())
    }

    fn err(&self, op: &'static str, e: std::io::Error) -> Error {
        match e.raw_os_error() {
            // An id that no longer names a segment.
            Some(libc::EINVAL) => Error::Removed { what: WHAT, name: self.name() },
            _ => Error::from_os(WHAT, || self.name(), op, e),
        }
    }
}

impl fmt::Debug for SysvSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SysvSegment")
            .field("id", &self.id())
            .field("key", &self.key)
            .field("size", &self.size)
            .field("owner", &self.is_owner())
            .finish()
    }
}
