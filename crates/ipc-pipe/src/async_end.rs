//! Pipe ends for async code on tokio (feature `tokio`): tokio's
//! `AsyncRead` and `AsyncWrite` over the ends of this crate.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{Error, Result};
use crate::pipe::{PipeReader, PipeWriter};
use crate::sys;

/// The reading end of a pipe or FIFO in async code: tokio's [`AsyncRead`].
/// End of file when every writer closed (also when its process died).
///
/// Made by [`PipeReader::into_async`] inside a tokio runtime with I/O
/// enabled. It never waits in a read: it holds the end
/// [reopened](PipeReader::reopen) on a description of its own in
/// nonblocking mode, or, where that cannot be done, the end as it was,
/// read with `preadv2(RWF_NOWAIT)`. Either way the mode of the
/// description that other processes share is left alone, and nothing they
/// do to it can make this end block.
#[derive(Debug)]
pub struct AsyncPipeReader(AsyncFd<PipeReader>);

/// The writing end of a pipe or FIFO in async code: tokio's
/// [`AsyncWrite`]. A write to a pipe whose readers all closed fails with
/// `BrokenPipe` (never `SIGPIPE`).
///
/// Made by [`PipeWriter::into_async`]; as [`AsyncPipeReader`] for the
/// rest.
#[derive(Debug)]
pub struct AsyncPipeWriter(AsyncFd<PipeWriter>);

impl PipeReader {
    /// This end for async code (see [`AsyncPipeReader`]).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the fd cannot be registered.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn into_async(self) -> Result<AsyncPipeReader> {
        let end = self.reopen().unwrap_or(self);
        sys::async_fd(end, tokio::io::Interest::READABLE)
            .map(AsyncPipeReader)
            .map_err(|e| Error::from_io("registering a pipe end with tokio", e))
    }
}

impl PipeWriter {
    /// This end for async code (see [`AsyncPipeWriter`]).
    ///
    /// # Errors
    ///
    /// As [`PipeReader::into_async`].
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn into_async(self) -> Result<AsyncPipeWriter> {
        let end = self.reopen().unwrap_or(self);
        sys::async_fd(end, tokio::io::Interest::WRITABLE)
            .map(AsyncPipeWriter)
            .map_err(|e| Error::from_io("registering a pipe end with tokio", e))
    }
}

impl AsyncPipeReader {
    /// The end back; its blocking calls wait, as on any end.
    pub fn into_inner(self) -> PipeReader {
        self.0.into_inner()
    }

    /// The end.
    pub fn get_ref(&self) -> &PipeReader {
        self.0.get_ref()
    }
}

impl AsyncPipeWriter {
    /// The end back; its blocking calls wait, as on any end.
    pub fn into_inner(self) -> PipeWriter {
        self.0.into_inner()
    }

    /// The end.
    pub fn get_ref(&self) -> &PipeWriter {
        self.0.get_ref()
    }
}

impl AsyncRead for AsyncPipeReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|end| end.get_ref().try_read(unfilled).map_err(io::Error::from)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for AsyncPipeWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            match guard.try_io(|end| end.get_ref().try_write(data).map_err(io::Error::from)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
