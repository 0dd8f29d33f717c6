//! Every mechanism in async code, on tokio (feature `tokio`):
//! [`AsyncMessageSender`] and [`AsyncMessageReceiver`], implemented by
//! [`Async`] around any sender or receiver of the sync traits.

use std::future::Future;
use std::time::Duration;

use ipc_sync::{AsyncReady, Interest, MAX_SPIN, MAX_YIELDING, Pollable, SYSCALL_YIELDING};

use crate::traits::{Error, MessageReceiver, MessageSender, Result};

/// The sending side of any mechanism, in async code.
pub trait AsyncMessageSender {
    /// Sends `msg`, waiting (without blocking the thread) for room.
    ///
    /// Cancel-safe: a future dropped before it finished has sent nothing.
    /// (Every attempt is one `try_send`, which sends all of the message or
    /// nothing.)
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`], [`Error::TooLarge`] (for a pipe or FIFO,
    /// any message over the `PipeSender::MAX_TIMED` bytes that one atomic
    /// write takes), [`Error::Other`].
    fn send(&mut self, msg: &[u8]) -> impl Future<Output = Result<()>> + Send;
}

/// The receiving side of any mechanism, in async code.
pub trait AsyncMessageReceiver {
    /// Receives the next message into `buf` (replacing its contents),
    /// waiting (without blocking the thread) for it; returns its length.
    ///
    /// Cancel-safe: a future dropped before it finished has taken nothing,
    /// so the message it was waiting for is there for the next receive.
    /// (Every attempt is one `try_recv`, which takes a whole message or
    /// nothing.)
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`], [`Error::Other`].
    fn recv(&mut self, buf: &mut Vec<u8>) -> impl Future<Output = Result<usize>> + Send;
}

/// A sender or receiver of the sync traits, made async: its `try_*` calls,
/// with the task parked in between on what a `Poller` would wait on (see
/// `ipc_sync::AsyncReady`).
///
/// Before it parks, a wait goes on attempting for a while, so that a peer
/// that answers at once is heard without a wake-up (which costs both sides
/// tens of microseconds):
/// - a side of a shared-memory channel spins on its `try_*` call for up to
///   4 µs (`ipc_sync::MAX_SPIN`), then attempts between yields to the
///   runtime for up to 100 µs (`ipc_sync::MAX_YIELDING`); its attempts
///   cost no system call;
/// - the others (pipes, FIFOs, queues), whose attempts are system calls,
///   attempt between yields for up to 30 µs (`ipc_sync::SYSCALL_YIELDING`).
///
/// No task holds its thread longer than the spin: every other task of the
/// runtime runs between two yielding attempts. What it costs is the
/// thread's time for the attempts while nothing comes;
/// [`with_yielding`](Self::with_yielding) changes the yielding time, and
/// zero parks after the spin.
///
/// Made inside a tokio runtime with I/O and time enabled.
#[derive(Debug)]
pub struct Async<S> {
    // Dropped before `inner`: the registration goes first.
    ready: AsyncReady,
    inner: S,
}

impl<S: Pollable> Async<S> {
    /// `inner` as a sender (`Interest::Writable`) or a receiver
    /// (`Interest::Readable`) of the async traits.
    ///
    /// # Errors
    ///
    /// When `inner` never becomes ready for `interest`, or its readiness
    /// cannot be registered.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn new(inner: S, interest: Interest) -> std::io::Result<Async<S>> {
        let ready = AsyncReady::new(&inner, interest)?;
        let ready = if inner.polls_cheaply() {
            ready.with_spin(MAX_SPIN).with_yielding(MAX_YIELDING)
        } else {
            ready.with_yielding(SYSCALL_YIELDING)
        };
        Ok(Async { ready, inner })
    }

    /// Attempts between yields to the runtime for up to `yielding` (at
    /// most `ipc_sync::MAX_YIELDING`) before each park; zero parks at once
    /// (after a channel's spin).
    #[must_use]
    pub fn with_yielding(self, yielding: Duration) -> Async<S> {
        Async { ready: self.ready.with_yielding(yielding), inner: self.inner }
    }

    /// The sync side.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The sync side, to use directly.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The sync side back.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Errors of the async waits, as the traits' errors.
fn waited<T>(r: std::io::Result<Result<T>>) -> Result<T> {
    r.map_err(|e| Error::Other(Box::new(e)))?
}

impl<S: MessageSender + Send> AsyncMessageSender for Async<S> {
    fn send(&mut self, msg: &[u8]) -> impl Future<Output = Result<()>> + Send {
        let (ready, inner) = (&self.ready, &mut self.inner);
        async move { waited(ready.retry(|| inner.try_send(msg), |e| matches!(e, Error::Full)).await) }
    }
}

impl<S: MessageReceiver + Send> AsyncMessageReceiver for Async<S> {
    fn recv(&mut self, buf: &mut Vec<u8>) -> impl Future<Output = Result<usize>> + Send {
        let (ready, inner) = (&self.ready, &mut self.inner);
        async move { waited(ready.retry(|| inner.try_recv(buf), |e| matches!(e, Error::Empty)).await) }
    }
}
