use std::fmt;
use std::marker::PhantomData;

use crate::sys;

/// Holds `SIGPIPE` off in the current thread for a stretch of many pipe
/// writes, so that each write skips doing it itself.
///
/// When `SIGPIPE` is not ignored (a program that set it back to its
/// default, as many C programs expect), every write through ipc-pipe blocks
/// `SIGPIPE` in its thread around the system call and discards the signal
/// that a write to a pipe without readers raises: that is how a broken pipe
/// becomes [`Error::BrokenPipe`](crate::Error::BrokenPipe) instead of a
/// dead process. It costs two `rt_sigprocmask` calls per write, which shows
/// with small writes. While a guard is alive in a thread, ipc-pipe's writes
/// in that thread skip them. (When `SIGPIPE` is ignored, as Rust programs
/// start, writes need neither; see [`PipeWriter`](crate::PipeWriter).)
///
/// While the guard lives, *any* write in this thread to a broken pipe or
/// socket fails with `EPIPE` instead of raising `SIGPIPE`; when it is
/// dropped, a `SIGPIPE` left pending by such writes is discarded and the
/// thread's signal mask is restored. Guards nest and may be dropped in any
/// order: they are counted per thread, and only the last one to go unblocks
/// `SIGPIPE` (and discards a pending one), unless the thread had blocked it
/// itself before the first. A guard cannot leave its thread (it is not
/// `Send`).
///
/// # Examples
///
/// ```
/// use std::io::Write;
///
/// let (reader, mut writer) = ipc_pipe::pipe()?;
/// let reading = std::thread::spawn(move || std::io::copy(&mut &reader, &mut std::io::sink()));
/// {
///     let _guard = ipc_pipe::SigpipeGuard::new();
///     for _ in 0..1000 {
///         writer.write_all(&[7; 4096])?;
///     }
/// }
/// drop(writer);
/// assert_eq!(reading.join().unwrap()?, 4096 * 1000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SigpipeGuard {
    _block: sys::SigpipeBlock,
    _not_send: PhantomData<*const ()>,
}

impl SigpipeGuard {
    /// Blocks `SIGPIPE` in this thread until the guard is dropped.
    #[must_use = "SIGPIPE is held off only while the guard lives"]
    pub fn new() -> Self {
        SigpipeGuard { _block: sys::SigpipeBlock::new(true), _not_send: PhantomData }
    }
}

impl Default for SigpipeGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SigpipeGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigpipeGuard").finish_non_exhaustive()
    }
}
