//! The system calls and raw memory accesses of ipc-shm: through nix
//! where it has the call, libc for System V shared memory (and `flock`).
//! The crate's `unsafe` blocks are here and in the `SIGBUS` guard
//! (`sigbus`), and under loom in the channel's model of its memory, one
//! operation per block, each with the reason it is sound.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;

use ipc_sync::os::cvt;
use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, FcntlArg};
pub(crate) use nix::fcntl::{OFlag, SealFlag};
use nix::sys::memfd::{self, MFdFlags};
use nix::sys::mman::{self, MapFlags, ProtFlags};
use nix::sys::stat::{self, Mode};
use nix::sys::statvfs;
use nix::unistd;

use crate::sigbus::{self, Guard};

/// A region of memory mapped into this process, unmapped on drop. Its
/// accesses are those of its [`Span`].
#[derive(Debug)]
pub(crate) struct Region {
    span: Span,
    /// Attached with `shmat` (detached with `shmdt`), not `mmap`ed.
    sysv: bool,
}

/// Where a mapped region lies, and every access to it, each checked
/// against its bounds. Reached only by reference, through the [`Region`]
/// that owns the mapping or a [`Pinned`] that keeps that region's owner
/// alive: a `Span` never outlives its mapping.
#[derive(Debug)]
pub(crate) struct Span {
    ptr: NonNull<u8>,
    len: usize,
    /// Its entry in the SIGBUS guard's table, or `UNGUARDED` for memory no
    /// peer can shrink.
    guard: &'static Guard,
}

/// Why an access to a [`Region`] was not made, or not made whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The range is not inside the region (nothing was accessed).
    OutOfBounds,
    /// The offset is not aligned for the type (nothing was accessed).
    Misaligned,
    /// The file behind the region was shrunk under it: the access, or an
    /// earlier one, met pages past its end, which now read as zeros.
    Truncated,
}

// SAFETY: the region is plain memory; all access goes through the bounds-
// checked copies below or through `&T` with T: ShmSafe (Sync, atomics only),
// so sharing the handle between threads is sound.
unsafe impl Send for Span {}
// SAFETY: as above.
unsafe impl Sync for Span {}

impl std::ops::Deref for Region {
    type Target = Span;

    #[inline]
    fn deref(&self) -> &Span {
        &self.span
    }
}

impl Region {
    /// `mmap(MAP_SHARED | MAP_ANONYMOUS)`: zero-filled memory that a child
    /// created by `fork` shares with its parent.
    pub(crate) fn anonymous(len: usize) -> io::Result<Region> {
        let size = NonZeroUsize::new(len).ok_or_else(|| io::Error::from(Errno::EINVAL))?;
        // SAFETY: a new mapping at an address the kernel chooses; no
        // existing memory is affected.
        let p = unsafe { mman::mmap_anonymous(None, size, read_write(true), MapFlags::MAP_SHARED) }?;
        Ok(Region::made(p.cast(), len, false))
    }

    /// `mmap(MAP_SHARED)` of the first `len` bytes of the file behind `fd`.
    /// With `guarded`, for a file that peers can shrink, an access to pages
    /// cut off from the file is survived (see [`sigbus`]) and reported.
    pub(crate) fn map_fd(fd: BorrowedFd<'_>, len: usize, writable: bool, guarded: bool) -> io::Result<Region> {
        let size = NonZeroUsize::new(len).ok_or_else(|| io::Error::from(Errno::EINVAL))?;
        // SAFETY: a new mapping at an address the kernel chooses; no existing
        // memory is affected.
        let p = unsafe { mman::mmap(None, size, read_write(writable), MapFlags::MAP_SHARED, fd, 0) }?;
        // Made a Region at once, so that an error below unmaps it.
        let mut region = Region::made(p.cast(), len, false);
        if guarded {
            region.span.guard = sigbus::guard(region.span.ptr.as_ptr() as usize, len)?;
        }
        Ok(region)
    }

    /// `shmat(2)` of System V segment `id`, `len` bytes long.
    pub(crate) fn shmat(id: libc::c_int, len: usize, writable: bool) -> io::Result<Region> {
        let flags = if writable { 0 } else { libc::SHM_RDONLY };
        // SAFETY: attaches at an address the kernel chooses.
        let p = unsafe { libc::shmat(id, std::ptr::null(), flags) };
        if p as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("shmat returned null"))?;
        Ok(Region::made(ptr, len, true))
    }

    /// The region the kernel just mapped at `ptr` (page-aligned), `len`
    /// bytes long, unguarded.
    fn made(ptr: NonNull<u8>, len: usize, sysv: bool) -> Region {
        Region { span: Span { ptr, len, guard: &sigbus::UNGUARDED }, sysv }
    }
}

impl Span {
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Whether `offset..offset + len` lies inside the region: one compare
    /// and one subtraction, no overflow.
    #[inline]
    fn check(&self, offset: usize, len: usize) -> Result<(), Fault> {
        if offset <= self.len && len <= self.len - offset { Ok(()) } else { Err(Fault::OutOfBounds) }
    }

    /// `Err(Truncated)` when an access to the region met pages cut off
    /// from its file (by this thread, before this call, or by another):
    /// those pages read as zeros now and no longer reach the file. For the
    /// caller to check after accessing a slice or view in place.
    #[inline]
    pub(crate) fn faults(&self) -> Result<(), Fault> {
        if self.guard.faulted() { Err(Fault::Truncated) } else { Ok(()) }
    }

    /// Copies `buf.len()` bytes at `offset` out of the region.
    ///
    /// `OutOfBounds` (nothing copied) when the range is not inside it;
    /// `Truncated` when the region's file was shrunk under it (`buf` then
    /// holds zeros where the lost pages were).
    #[inline]
    pub(crate) fn copy_out(&self, offset: usize, buf: &mut [u8]) -> Result<(), Fault> {
        self.check(offset, buf.len())?;
        // SAFETY: the source range lies inside the mapping (checked above)
        // and does not overlap `buf`, which is ordinary memory. Another
        // process may write the source meanwhile: the bytes may then be
        // torn, which every caller accepts (they are plain bytes or Pod). A
        // page cut off from the file is replaced by zeros (`sigbus`).
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(offset), buf.as_mut_ptr(), buf.len()) };
        self.faults()
    }

    /// Copies `data` into the region at `offset`. The caller has checked
    /// that the mapping is writable.
    ///
    /// `OutOfBounds` (nothing copied) or `Truncated` as for
    /// [`copy_out`](Self::copy_out).
    #[inline]
    pub(crate) fn copy_in(&self, offset: usize, data: &[u8]) -> Result<(), Fault> {
        self.check(offset, data.len())?;
        // SAFETY: the target range lies inside the mapping (checked above),
        // writable (checked by the caller), and does not overlap `data`. No
        // Rust reference to these bytes exists except `&T` with T:
        // ShmSafe, whose contents may change at any time by contract, and
        // the byte channel's slices, which its ring keeps apart from this.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(offset), data.len()) };
        self.faults()
    }

    /// A shared reference to a `T` at `offset`.
    ///
    /// `OutOfBounds` or `Misaligned` (no reference made). A view does not
    /// check for truncation: its accesses come later (see
    /// [`faults`](Self::faults)).
    #[inline]
    pub(crate) fn view<T: ipc_sync::ShmSafe>(&self, offset: usize) -> Result<&T, Fault> {
        self.check(offset, size_of::<T>())?;
        // The region starts on a page boundary: the offset decides.
        if !offset.is_multiple_of(align_of::<T>()) {
            return Err(Fault::Misaligned);
        }
        // SAFETY: in bounds and aligned (checked above); any bytes are a
        // valid T (ShmSafe: valid when zeroed and for every pattern a peer
        // may write); T changes through &T only atomically; the reference
        // lives no longer than the region.
        Ok(unsafe { &*self.ptr.as_ptr().add(offset).cast::<T>() })
    }
}

impl Span {
    /// The bytes at `offset..offset + len` for reading in place.
    ///
    /// The caller's protocol (the channel's ring) keeps the other process
    /// from writing these bytes while the slice lives; a peer that breaks
    /// it can change the bytes under the slice, which may give wrong
    /// values but no access outside the mapping. A peer that shrinks the
    /// file turns lost pages into zeros: check [`faults`](Self::faults)
    /// after using the slice.
    ///
    /// `OutOfBounds` (no slice made).
    #[inline]
    pub(crate) fn slice(&self, offset: usize, len: usize) -> Result<&[u8], Fault> {
        self.check(offset, len)?;
        // SAFETY: in bounds (checked above); u8 has no invalid values; the
        // bytes stay mapped while `self` is borrowed.
        Ok(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) })
    }

    /// The bytes at `offset..offset + len` for writing in place. `&self`
    /// because the memory is shared: the caller's protocol (the channel's
    /// ring, whose producer is a single `&mut` handle) makes this the only
    /// access to these bytes while the slice lives.
    ///
    /// As for [`slice`](Self::slice).
    #[allow(clippy::mut_from_ref)]
    #[inline]
    pub(crate) fn slice_mut(&self, offset: usize, len: usize) -> Result<&mut [u8], Fault> {
        self.check(offset, len)?;
        // SAFETY: in bounds (checked above) of a writable mapping (the
        // channel maps read-write); exclusive by the ring protocol as
        // described; stays mapped while `self` is borrowed.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset), len) })
    }
}

// SAFETY: a repr(C) struct of atomics: zero-valid (zero is "nobody
// connected, index 0"), pointer-free, changed only atomically; every value
// a peer may write is checked by the channel before it is used.
unsafe impl ipc_sync::ShmSafe for crate::channel::layout::Line {}

impl Drop for Region {
    fn drop(&mut self) {
        let span = &self.span;
        // Out of the table before the addresses can be reused.
        sigbus::unguard(span.guard);
        if self.sysv {
            // SAFETY: detaches exactly the attachment this value owns; no
            // reference into it outlives `self` (views borrow it, and a
            // `Pinned` keeps the region's owner alive).
            unsafe { libc::shmdt(span.ptr.as_ptr().cast()) };
        } else {
            // SAFETY: unmaps exactly the mapping this value owns; as above.
            let _ = unsafe { mman::munmap(span.ptr.cast(), span.len) };
        }
    }
}

/// A region's [`Span`] kept beside a shared handle to whatever owns the
/// region (an `Arc` of `O`), for the paths that run for every message: the
/// span is one step away instead of several, and the places of the first
/// `MIN` bytes (checked once, when this is made) are reached with no check
/// at all ([`at`](Self::at)). The `Arc` keeps the region mapped for as
/// long as this lives.
#[derive(Debug)]
pub(crate) struct Pinned<O, const MIN: usize> {
    span: Span,
    owner: Arc<O>,
}

impl<O, const MIN: usize> Pinned<O, MIN> {
    /// Pins the region that `region` finds in `owner`; `None` when it is
    /// shorter than `MIN` bytes.
    ///
    /// `region` returns a reference that lives as long as the borrow of
    /// `owner` it is given: to a region that `owner` holds (or a static
    /// one). Such a region is unmapped only when it is dropped, which
    /// cannot happen while the `Arc` held here keeps `owner` alive and
    /// shared (replacing it would need `&mut` access, which no one has
    /// while the `Arc` is shared).
    pub(crate) fn new(owner: Arc<O>, region: fn(&O) -> &Region) -> Option<Self> {
        let r = &region(&owner).span;
        let span = Span { ptr: r.ptr, len: r.len, guard: r.guard };
        (span.len >= MIN).then_some(Pinned { span, owner })
    }

    /// The region.
    #[inline]
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// The `T` at offset `OFF`, which lies within the first `MIN` bytes and
    /// is aligned for `T` (checked when compiled): no check when it runs.
    #[inline(always)]
    #[cfg_attr(loom, allow(dead_code, reason = "under loom the channel's lines are its model's"))]
    pub(crate) fn at<T: ipc_sync::ShmSafe, const OFF: usize>(&self) -> &T {
        const {
            assert!(OFF + size_of::<T>() <= MIN, "a place past the pinned bytes");
            assert!(OFF.is_multiple_of(align_of::<T>()) && align_of::<T>() <= 4096, "a misaligned place");
        }
        // SAFETY: the region holds at least MIN bytes (checked in `new`), so
        // OFF..OFF + size_of::<T>() lies inside it; it starts on a page
        // boundary (mmap and shmat map whole pages), so OFF aligned for T
        // is aligned; any bytes are a valid T (ShmSafe), changed through &T
        // only atomically; the region stays mapped while `self.owner` lives
        // (see `new`), and the reference borrows `self`.
        unsafe { &*self.span.ptr.as_ptr().add(OFF).cast::<T>() }
    }
}

impl<O, const MIN: usize> Clone for Pinned<O, MIN> {
    fn clone(&self) -> Self {
        let r = &self.span;
        Pinned { span: Span { ptr: r.ptr, len: r.len, guard: r.guard }, owner: Arc::clone(&self.owner) }
    }
}

impl<O, const MIN: usize> std::ops::Deref for Pinned<O, MIN> {
    type Target = O;

    #[inline]
    fn deref(&self) -> &O {
        &self.owner
    }
}

/// `PROT_READ`, with `PROT_WRITE` when `writable`.
fn read_write(writable: bool) -> ProtFlags {
    if writable { ProtFlags::PROT_READ | ProtFlags::PROT_WRITE } else { ProtFlags::PROT_READ }
}

/// `shmget(2)`.
pub(crate) fn shmget(key: libc::key_t, size: usize, flags: libc::c_int) -> io::Result<libc::c_int> {
    // SAFETY: shmget takes plain integers.
    cvt(unsafe { libc::shmget(key, size, flags) })
}

/// `shmctl(IPC_STAT)`.
pub(crate) fn shm_stat(id: libc::c_int) -> io::Result<libc::shmid_ds> {
    // SAFETY: an all-zero shmid_ds is a valid value for the kernel to fill.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one shmid_ds through a valid pointer.
    cvt(unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) })?;
    Ok(ds)
}

/// `shmctl(IPC_RMID)`: marks the segment for removal once the last process
/// detaches.
pub(crate) fn shm_remove(id: libc::c_int) -> io::Result<()> {
    // SAFETY: IPC_RMID ignores the buffer argument.
    cvt(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// `shm_open(3)`, always with `O_CLOEXEC`.
pub(crate) fn shm_open(name: &CStr, flags: OFlag, mode: libc::mode_t) -> io::Result<OwnedFd> {
    Ok(mman::shm_open(name, flags | OFlag::O_CLOEXEC, Mode::from_bits_truncate(mode))?)
}

/// The directory where glibc's `shm_open(3)` keeps POSIX shared memory
/// objects on Linux.
pub(crate) const SHM_DIR: &CStr = c"/dev/shm";

/// `open(2)` of [`SHM_DIR`] with `O_TMPFILE`: a new, unnamed file in the
/// same file system as the objects, with permissions `mode` (less the
/// umask, as `shm_open` gives), close-on-exec.
pub(crate) fn shm_tmpfile(mode: libc::mode_t) -> io::Result<OwnedFd> {
    let flags = OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC;
    Ok(fcntl::open(SHM_DIR, flags, Mode::from_bits_truncate(mode))?)
}

/// `linkat(2)` of the file behind `fd` (through its /proc/self/fd link,
/// which needs no privilege, unlike `AT_EMPTY_PATH`) to `path`. Fails with
/// `EEXIST` if `path` exists: the name is taken atomically or not at all.
pub(crate) fn link_fd(fd: BorrowedFd<'_>, path: &CStr) -> io::Result<()> {
    let from = format!("/proc/self/fd/{}", fd.as_raw_fd());
    Ok(unistd::linkat(fcntl::AT_FDCWD, from.as_str(), fcntl::AT_FDCWD, path, AtFlags::AT_SYMLINK_FOLLOW)?)
}

/// `shm_unlink(3)`.
pub(crate) fn shm_unlink(name: &CStr) -> io::Result<()> {
    Ok(mman::shm_unlink(name)?)
}

/// `memfd_create(2)` with `MFD_CLOEXEC | MFD_ALLOW_SEALING`.
pub(crate) fn memfd_create(name: &CStr) -> io::Result<OwnedFd> {
    Ok(memfd::memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?)
}

/// `ftruncate(2)`.
pub(crate) fn ftruncate(fd: BorrowedFd<'_>, len: usize) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from(Errno::EFBIG))?;
    Ok(unistd::ftruncate(fd, len)?)
}

/// Bytes of memory and swap in the system (`sysinfo`): the most that
/// shared memory without a smaller limit can ever hold.
pub(crate) fn memory_capacity() -> io::Result<u64> {
    let info = nix::sys::sysinfo::sysinfo()?;
    Ok(info.ram_total().saturating_add(info.swap_total()))
}

/// The size in bytes of the file system holding the file (`fstatvfs`); 0
/// for one without a size limit (a memfd's, or tmpfs mounted `size=0`).
pub(crate) fn fs_capacity(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let st = statvfs::fstatvfs(fd)?;
    Ok(st.blocks().saturating_mul(st.fragment_size()))
}

/// The file's size (`fstat`).
pub(crate) fn file_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(u64::try_from(stat::fstat(fd)?.st_size).unwrap_or(0))
}

/// Whether the file is a regular file (`fstat`).
pub(crate) fn is_regular_file(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(stat::fstat(fd)?.st_mode & libc::S_IFMT == libc::S_IFREG)
}

/// The file's device and inode (`fstat`): which file it is.
pub(crate) fn file_id(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let st = stat::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// `flock(2)` with `op` (`LOCK_SH`, `LOCK_EX`, either with `LOCK_NB`, or
/// `LOCK_UN`), retried on `EINTR`. Through libc: nix offers `flock` only
/// as a guard that owns the fd, where these locks are taken and dropped
/// on a borrowed one.
pub(crate) fn flock(fd: BorrowedFd<'_>, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: flock takes an fd and an operation.
        match cvt(unsafe { libc::flock(fd.as_raw_fd(), op) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map(drop),
        }
    }
}

/// `fcntl(F_ADD_SEALS)`.
pub(crate) fn add_seals(fd: BorrowedFd<'_>, seals: SealFlag) -> io::Result<()> {
    fcntl::fcntl(fd, FcntlArg::F_ADD_SEALS(seals))?;
    Ok(())
}

/// `fcntl(F_GET_SEALS)`.
/// Sets `FD_CLOEXEC` on `fd`.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    fcntl::fcntl(fd, FcntlArg::F_SETFD(fcntl::FdFlag::FD_CLOEXEC))?;
    Ok(())
}

pub(crate) fn seals(fd: BorrowedFd<'_>) -> io::Result<SealFlag> {
    Ok(SealFlag::from_bits_truncate(fcntl::fcntl(fd, FcntlArg::F_GET_SEALS)?))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::{Pinned, Region};

    #[test]
    fn a_pinned_region_stays_mapped_while_its_owner_is_shared_and_checks_its_length() {
        let owner = Arc::new(Region::anonymous(4096).unwrap());
        assert!(Pinned::<Region, 8192>::new(Arc::clone(&owner), |r| r).is_none(), "shorter than MIN");
        let pinned = Pinned::<Region, 4096>::new(Arc::clone(&owner), |r| r).unwrap();
        let copy = pinned.clone();
        pinned.at::<AtomicU64, 4088>().store(7, Ordering::Relaxed);
        drop((owner, pinned));
        // The last holder still reaches the memory through the Arc it holds.
        assert_eq!(copy.at::<AtomicU64, 4088>().load(Ordering::Relaxed), 7);
        let mut word = [0u8; 8];
        copy.span().copy_out(4088, &mut word).unwrap();
        assert_eq!(u64::from_le_bytes(word), 7);
        assert!(copy.span().copy_out(4090, &mut word).is_err(), "the span's copies stay checked");
    }
}
