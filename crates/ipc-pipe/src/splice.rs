use std::os::fd::AsFd;

use ipc_sync::retry_eintr;

use crate::error::{Error, Result};
use crate::own::waiting_between;
use crate::pipe::{PipeReader, PipeWriter};
use crate::sys;

/// Moves up to `len` bytes from `from` to `to` inside the kernel, without
/// copying them through user memory (`splice(2)`); at least one of the two
/// must be a pipe. Returns the bytes moved, waiting for data or room as a
/// read or write would; `Ok(0)` means end of file on `from`.
///
/// Between a pipe and a file or socket this avoids the copy out and back in
/// that `read` plus `write` make.
///
/// # Errors
///
/// [`Error::BrokenPipe`] when `to` is a pipe without readers;
/// [`Error::Io`] with `EINVAL` when neither is a pipe or an fd does not
/// support splicing.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
///
/// let (r1, mut w1) = ipc_pipe::pipe()?;
/// let (mut r2, w2) = ipc_pipe::pipe()?;
/// w1.write_all(b"moved by the kernel")?;
/// let n = ipc_pipe::splice(&r1, &w2, 1 << 16)?;
/// assert_eq!(n, 19);
/// let mut buf = [0; 19];
/// r2.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"moved by the kernel");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # References
///
/// [splice(2)](https://man7.org/linux/man-pages/man2/splice.2.html)
pub fn splice(from: impl AsFd, to: impl AsFd, len: usize) -> Result<usize> {
    let (from, to) = (from.as_fd(), to.as_fd());
    sys::without_sigpipe(|| {
        waiting_between(from, to, || retry_eintr(|| sys::splice(from, to, len, libc::SPLICE_F_MOVE)))
    })
    .map_err(|e| Error::from_io("splice", e))
}

/// [`splice`] until exactly `len` bytes have moved or `from` reaches end of
/// file; returns the bytes moved.
///
/// # Errors
///
/// As for [`splice`].
pub fn splice_all(from: impl AsFd, to: impl AsFd, len: u64) -> Result<u64> {
    let (from, to) = (from.as_fd(), to.as_fd());
    let mut moved = 0u64;
    // SIGPIPE is held off once for the whole loop, not per call.
    sys::without_sigpipe(|| {
        while moved < len {
            let chunk = usize::try_from(len - moved).unwrap_or(usize::MAX).min(1 << 30);
            match waiting_between(from, to, || retry_eintr(|| sys::splice(from, to, chunk, libc::SPLICE_F_MOVE)))? {
                0 => break,
                n => moved += n as u64,
            }
        }
        Ok(moved)
    })
    .map_err(|e| Error::from_io("splice", e))
}

/// Copies up to `len` bytes from one pipe into another without consuming
/// them from the first (`tee(2)`): the data can still be read or spliced
/// from `from` afterwards. Returns the bytes copied. When `from` is empty
/// it waits for data; `Ok(0)` when it is empty and has no writers left.
///
/// # Errors
///
/// [`Error::BrokenPipe`] when `to` has no readers.
///
/// # References
///
/// [tee(2)](https://man7.org/linux/man-pages/man2/tee.2.html)
pub fn tee(from: &PipeReader, to: &PipeWriter, len: usize) -> Result<usize> {
    let (from, to) = (from.as_fd(), to.as_fd());
    sys::without_sigpipe(|| waiting_between(from, to, || retry_eintr(|| sys::tee(from, to, len, 0))))
        .map_err(|e| Error::from_io("tee", e))
}
