use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use bytemuck::Pod;
use ipc_sync::ShmSafe;

use crate::error::{Error, Result};
use crate::sys::{self, Fault, Region};

/// Memory shared with other processes, mapped into this one.
///
/// A mapping never hands out `&[u8]` or `&mut [u8]`: another process may
/// write into it at any moment, which such references forbid. Instead it
/// offers bounds-checked copies ([`read_bytes`](Self::read_bytes),
/// [`write_bytes`](Self::write_bytes), [`read`](Self::read),
/// [`write`](Self::write) for `T: Pod`), typed views of types made for
/// sharing ([`shared`](Self::shared) for `T: ShmSafe`, such as ipc-sync's
/// `Mutex` and the atomics), and raw pointers for those who synchronize
/// themselves.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use ipc_shm::Mapping;
///
/// let map = Mapping::anonymous(4096)?;
/// map.write(8, &[1u32, 2, 3])?;
/// assert_eq!(map.read::<[u32; 3]>(8)?, [1, 2, 3]);
/// assert!(map.read::<u64>(4093).is_err(), "out of bounds");
///
/// let counter = map.shared::<AtomicU64>(64)?;
/// counter.fetch_add(1, Ordering::SeqCst);
/// assert_eq!(map.read::<u64>(64)?, 1);
/// # Ok::<(), ipc_shm::Error>(())
/// ```
pub struct Mapping {
    region: Region,
    writable: bool,
    /// For a mapping of a file that peers can shrink (POSIX shm): its fd,
    /// to check the size before each copy.
    size_guard: Option<OwnedFd>,
}

impl Mapping {
    /// Anonymous shared memory (`mmap(MAP_SHARED | MAP_ANONYMOUS)`),
    /// zero-filled, for a parent and the children it forks afterwards: they
    /// all see the same bytes at the same address. Nothing names it, so
    /// nothing is left behind when the last process unmaps it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`] for 0 or more than memory and swap together;
    /// [`Error::Io`] when the memory cannot be mapped.
    ///
    /// # References
    ///
    /// [mmap(2)](https://man7.org/linux/man-pages/man2/mmap.2.html)
    #[doc(alias = "mmap")]
    pub fn anonymous(len: usize) -> Result<Mapping> {
        if len == 0 {
            return Err(Error::InvalidSize { size: 0, reason: "a mapping cannot be empty" });
        }
        check_backable(None, len)?;
        let region = Region::anonymous(len).map_err(|e| Error::Io { op: "mmap", source: e })?;
        Ok(Mapping { region, writable: true, size_guard: None })
    }

    pub(crate) fn from_region(region: Region, writable: bool, size_guard: Option<OwnedFd>) -> Mapping {
        Mapping { region, writable, size_guard }
    }

    #[inline]
    pub(crate) fn region(&self) -> &Region {
        &self.region
    }

    /// Whether writes (and shared views) are allowed.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The mapping's size in bytes.
    pub fn len(&self) -> usize {
        self.region.len()
    }

    /// Always false: mappings are never empty.
    pub fn is_empty(&self) -> bool {
        self.region.len() == 0
    }

    /// The first byte. Reading or writing through it is up to the caller's
    /// own synchronization with the other processes.
    pub fn as_ptr(&self) -> *mut u8 {
        self.region.as_ptr()
    }

    fn check(&self, offset: usize, len: usize) -> Result<()> {
        let end = match offset.checked_add(len) {
            Some(end) if end <= self.len() => end,
            _ => return Err(Error::OutOfBounds { offset, len, size: self.len() }),
        };
        if let Some(fd) = &self.size_guard {
            let size = crate::sys::file_size(fd.as_fd()).map_err(|e| Error::Io { op: "fstat", source: e })?;
            // Pages wholly past the end of the file fault (SIGBUS); bytes
            // past the end on the last page read as zero. Refuse both.
            if (end as u64) > size {
                return Err(Error::Truncated { size, needed: end as u64 });
            }
        }
        Ok(())
    }

    /// The error for a failed access of `len` bytes at `offset`.
    #[cold]
    pub(crate) fn fault_error(&self, fault: Fault, offset: usize, len: usize) -> Error {
        match fault {
            // Only views report misalignment (see `shared`), and they check
            // it first; a copy never does.
            Fault::OutOfBounds | Fault::Misaligned => Error::OutOfBounds { offset, len, size: self.len() },
            Fault::Truncated => {
                let size = match &self.size_guard {
                    Some(fd) => crate::sys::file_size(fd.as_fd()).unwrap_or(0),
                    None => 0,
                };
                Error::Truncated { size, needed: offset.saturating_add(len) as u64 }
            }
        }
    }

    fn check_writable(&self) -> Result<()> {
        if self.writable { Ok(()) } else { Err(Error::ReadOnly) }
    }

    fn check_typed<T>(&self, offset: usize) -> Result<()> {
        self.check(offset, size_of::<T>())?;
        // The mapping starts on a page boundary, so the offset decides.
        if !offset.is_multiple_of(align_of::<T>()) {
            return Err(misaligned::<T>(offset));
        }
        Ok(())
    }

    /// Copies `buf.len()` bytes at `offset` into `buf`. Bytes another
    /// process writes meanwhile may arrive torn.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`]; [`Error::Truncated`] when a peer shrank the
    /// POSIX shared memory object behind the mapping, before the copy or
    /// during it (see [`PosixShm`](crate::PosixShm)).
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len())?;
        self.region.copy_out(offset, buf).map_err(|f| self.fault_error(f, offset, buf.len()))
    }

    /// Copies `data` into the mapping at `offset`.
    ///
    /// # Errors
    ///
    /// [`Error::ReadOnly`]; [`Error::OutOfBounds`]; [`Error::Truncated`].
    pub fn write_bytes(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check_writable()?;
        self.check(offset, data.len())?;
        self.region.copy_in(offset, data).map_err(|f| self.fault_error(f, offset, data.len()))
    }

    /// Reads a `T` at `offset` (a copy).
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`]; [`Error::Misaligned`] when `offset` is not a
    /// multiple of `T`'s alignment; [`Error::Truncated`].
    pub fn read<T: Pod>(&self, offset: usize) -> Result<T> {
        self.check_typed::<T>(offset)?;
        let mut value = T::zeroed();
        self.region
            .copy_out(offset, bytemuck::bytes_of_mut(&mut value))
            .map_err(|f| self.fault_error(f, offset, size_of::<T>()))?;
        Ok(value)
    }

    /// Writes a `T` at `offset`.
    ///
    /// # Errors
    ///
    /// As for [`read`](Self::read).
    pub fn write<T: Pod>(&self, offset: usize, value: &T) -> Result<()> {
        self.check_writable()?;
        self.check_typed::<T>(offset)?;
        self.region.copy_in(offset, bytemuck::bytes_of(value)).map_err(|f| self.fault_error(f, offset, size_of::<T>()))
    }

    /// A view of the `T` at `offset`, which every process mapping the same
    /// memory sees and changes (through atomics) at once.
    ///
    /// A view cannot return an error when a peer shrinks a POSIX shared
    /// memory object under it later: its accesses to the pages cut off
    /// then see zeros in memory of this process's own (the process does
    /// not die of `SIGBUS`), and every copy through the mapping returns
    /// [`Error::Truncated`] from then on. With peers you do not trust,
    /// share a sealed [`Memfd`](crate::Memfd) instead.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] when `T` does not fit; [`Error::Misaligned`];
    /// [`Error::ReadOnly`] on a read-only mapping (the types change
    /// through shared references).
    pub fn shared<T: ShmSafe>(&self, offset: usize) -> Result<Shared<'_, T>> {
        // ShmSafe types change through &T: read-only memory would fault.
        self.check_writable()?;
        self.check_typed::<T>(offset)?;
        let value = self.region.view(offset).map_err(|f| match f {
            Fault::Misaligned => misaligned::<T>(offset),
            other => self.fault_error(other, offset, size_of::<T>()),
        })?;
        Ok(Shared { value, _mapping: PhantomData })
    }
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("addr", &self.as_ptr())
            .field("len", &self.len())
            .field("writable", &self.writable)
            .finish()
    }
}

/// A `T` inside a [`Mapping`], shared with the other processes that map the
/// same memory. Dereferences to `&T`.
pub struct Shared<'m, T: ShmSafe> {
    value: &'m T,
    _mapping: PhantomData<&'m Mapping>,
}

impl<'m, T: ShmSafe> Shared<'m, T> {
    /// The reference, for as long as the mapping lives (not only as long
    /// as this view).
    pub fn get(self) -> &'m T {
        self.value
    }
}

impl<T: ShmSafe> Deref for Shared<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.value
    }
}

impl<T: ShmSafe> Clone for Shared<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: ShmSafe> Copy for Shared<'_, T> {}

impl<T: ShmSafe> fmt::Debug for Shared<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("type", &std::any::type_name::<T>())
            .field("addr", &(self.value as *const T))
            .finish()
    }
}

fn misaligned<T>(offset: usize) -> Error {
    Error::Misaligned { offset, align: align_of::<T>(), type_name: std::any::type_name::<T>() }
}

/// Refuses a size that shared memory could never back: the kernel accepts
/// any size for a tmpfs file (files are sparse), and touching pages past
/// what can be held kills the process (SIGBUS) or strains the system's
/// memory (the OOM killer). The bound is the size of the file system under
/// `fd` (/dev/shm), or memory and swap where there is none or it has no
/// limit (a memfd).
pub(crate) fn check_backable(fd: Option<BorrowedFd<'_>>, size: usize) -> Result<()> {
    let fs = match fd {
        Some(fd) => sys::fs_capacity(fd).map_err(|e| Error::Io { op: "fstatvfs", source: e })?,
        None => 0,
    };
    let memory = sys::memory_capacity().map_err(|e| Error::Io { op: "sysinfo", source: e })?;
    let (limit, reason) = if fs > 0 && fs < memory {
        (fs, "more than the file system (/dev/shm) holds")
    } else {
        (memory, "more than the system's memory and swap")
    };
    if size as u64 > limit {
        return Err(Error::InvalidSize { size, reason });
    }
    Ok(())
}
