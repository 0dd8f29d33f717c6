//! Every mechanism in async code, on tokio (feature `tokio`):
//! [`AsyncMessageSender`] and [`AsyncMessageReceiver`], implemented by
//! [`Async`] around any sender or receiver of the sync traits.

use std::future::Future;
use std::time::Duration;

use ipc_sync::{AsyncReady, Interest, MAX_SPIN, Pollable};

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
/// A side of a shared-memory channel spins on its `try_*` call for up to
/// 4 µs before it parks (the others, whose calls are system calls, park at
/// once): a reply that comes within a round trip is taken without a
/// system call, and no task holds its thread longer than that.
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
        let spin = if inner.polls_cheaply() { MAX_SPIN } else { Duration::ZERO };
        Ok(Async { ready: ready.with_spin(spin), inner })
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
