//! The system calls and raw memory accesses of ipc-shm. Every `unsafe`
//! block of the crate is here, one operation per block, each with the
//! reason it is sound.
#![allow(unsafe_code)]

use std::io;
use std::ptr::NonNull;

/// A region of memory mapped into this process, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is plain memory; all access goes through the bounds-
// checked copies below or through `&T` with T: ShmSafe (Sync, atomics only),
// so sharing the handle between threads is sound.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    /// `mmap(MAP_SHARED | MAP_ANONYMOUS)`: zero-filled memory that a child
    /// created by `fork` shares with its parent.
    pub(crate) fn anonymous(len: usize) -> io::Result<Region> {
        // SAFETY: a new mapping at an address the kernel chooses; no
        // existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Region { ptr, len })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Copies `buf.len()` bytes at `offset` out of the region. The caller
    /// has checked that `offset + buf.len() <= len`.
    pub(crate) fn copy_out(&self, offset: usize, buf: &mut [u8]) {
        debug_assert!(offset + buf.len() <= self.len);
        // SAFETY: the source range lies inside the mapping (checked by the
        // caller) and does not overlap `buf`, which is ordinary memory.
        // Another process may write the source meanwhile: the bytes may then
        // be torn, which every caller accepts (they are plain bytes or Pod).
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(offset), buf.as_mut_ptr(), buf.len()) };
    }

    /// Copies `data` into the region at `offset`. The caller has checked
    /// that `offset + data.len() <= len` and that the mapping is writable.
    pub(crate) fn copy_in(&self, offset: usize, data: &[u8]) {
        debug_assert!(offset + data.len() <= self.len);
        // SAFETY: the target range lies inside a writable mapping (checked
        // by the caller) and does not overlap `data`. No Rust reference to
        // these bytes exists except `&T` with T: ShmSafe, whose contents may
        // change at any time by contract.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(offset), data.len()) };
    }

    /// A shared reference to a `T` at `offset`. The caller has checked
    /// bounds and alignment.
    pub(crate) fn view<T: ipc_sync::ShmSafe>(&self, offset: usize) -> &T {
        debug_assert!(offset + size_of::<T>() <= self.len);
        // SAFETY: in bounds and aligned (checked by the caller); any bytes
        // are a valid T (ShmSafe: valid when zeroed and for every pattern a
        // peer may write); T changes through &T only atomically; the
        // reference lives no longer than the region.
        unsafe { &*self.ptr.as_ptr().add(offset).cast::<T>() }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping this value owns; no reference
        // into it outlives `self` (views borrow it).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
