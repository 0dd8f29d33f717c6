//! The channels' sides in async code on tokio (feature `tokio`): each
//! side's `try_*` call, spun on briefly, then attempted again each time
//! its doorbell (or its watcher) says it may succeed.
//!
//! Every method is cancel-safe: a future dropped before it finished has
//! sent or taken nothing (each attempt is one `try_*` call, which sends or
//! takes a whole message or nothing).

use bytemuck::Pod;
use ipc_sync::{AsyncReady, Interest, MAX_SPIN, MAX_YIELDING};

use super::{ByteReceiver, ByteSender, Receiver, Sender};
use crate::error::{Error, Result};

/// The readiness of `side` for `interest`, spinning first (a channel's
/// attempts cost no system call).
fn ready(side: &(impl ipc_sync::Pollable + ?Sized), interest: Interest) -> Result<AsyncReady> {
    AsyncReady::new(side, interest)
        .map(|r| r.with_spin(MAX_SPIN).with_yielding(MAX_YIELDING))
        .map_err(|source| Error::Io { op: "registering the channel's doorbell with tokio", source })
}

/// Errors of the waits, as the channel's.
fn waited<T>(r: std::io::Result<Result<T>>) -> Result<T> {
    r.map_err(|source| Error::Io { op: "waiting on the channel's doorbell", source })?
}

/// A [`Sender`] in async code (made by [`Sender::into_async`]).
#[derive(Debug)]
pub struct AsyncSender<T> {
    ready: AsyncReady,
    inner: Sender<T>,
}

/// A [`Receiver`] in async code (made by [`Receiver::into_async`]).
#[derive(Debug)]
pub struct AsyncReceiver<T> {
    ready: AsyncReady,
    inner: Receiver<T>,
}

/// A [`ByteSender`] in async code (made by [`ByteSender::into_async`]).
#[derive(Debug)]
pub struct AsyncByteSender {
    ready: AsyncReady,
    inner: ByteSender,
}

/// A [`ByteReceiver`] in async code (made by
/// [`ByteReceiver::into_async`]).
#[derive(Debug)]
pub struct AsyncByteReceiver {
    ready: AsyncReady,
    inner: ByteReceiver,
}

/// `into_async` for a side, and `get_mut`/`into_inner` for its async form.
macro_rules! async_form {
    ($side:ident $(<$t:ident>)?, $async:ident, $interest:ident) => {
        impl$(<$t: Pod>)? $side$(<$t>)? {
            #[doc = concat!("This side in async code on tokio (see [`", stringify!($async), "`]).")]
            ///
            /// # Errors
            ///
            /// [`Error::Io`] when its doorbell (or a watching thread, for
            /// a channel without doorbells) cannot be set up.
            ///
            /// # Panics
            ///
            /// Outside a tokio runtime with I/O and time enabled.
            pub fn into_async(self) -> Result<$async$(<$t>)?> {
                Ok($async { ready: ready(&self, Interest::$interest)?, inner: self })
            }
        }

        impl$(<$t: Pod>)? $async$(<$t>)? {
            /// The side, for its sync calls.
            pub fn get_mut(&mut self) -> &mut $side$(<$t>)? {
                &mut self.inner
            }

            /// The side back.
            pub fn into_inner(self) -> $side$(<$t>)? {
                self.inner
            }
        }
    };
}

async_form!(Sender<T>, AsyncSender, Writable);
async_form!(Receiver<T>, AsyncReceiver, Readable);
async_form!(ByteSender, AsyncByteSender, Writable);
async_form!(ByteReceiver, AsyncByteReceiver, Readable);

impl<T: Pod + Send> AsyncSender<T> {
    /// Sends `value`, waiting for room.
    ///
    /// # Errors
    ///
    /// As [`Sender::send`].
    pub async fn send(&mut self, value: T) -> Result<()> {
        self.send_ref(&value).await
    }

    /// Sends `*value`, waiting for room.
    ///
    /// # Errors
    ///
    /// As [`Sender::send_ref`].
    pub async fn send_ref(&mut self, value: &T) -> Result<()> {
        let (ready, inner) = (&self.ready, &mut self.inner);
        waited(ready.retry(|| inner.try_send(*value), |e| matches!(e, Error::Full)).await)
    }
}

impl<T: Pod + Send> AsyncReceiver<T> {
    /// Receives a message, waiting for one.
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    pub async fn recv(&mut self) -> Result<T> {
        let (ready, inner) = (&self.ready, &mut self.inner);
        waited(ready.retry(|| inner.try_recv(), |e| matches!(e, Error::Empty)).await)
    }
}

impl AsyncByteSender {
    /// Sends a copy of `record`, waiting for room.
    ///
    /// # Errors
    ///
    /// As [`ByteSender::send`].
    pub async fn send(&mut self, record: &[u8]) -> Result<()> {
        let (ready, inner) = (&self.ready, &mut self.inner);
        waited(ready.retry(|| inner.try_send(record), |e| matches!(e, Error::Full)).await)
    }
}

impl AsyncByteReceiver {
    /// Receives a copy of the next record into `buf` (replacing its
    /// contents), waiting for it; returns its length.
    ///
    /// # Errors
    ///
    /// As [`ByteReceiver::recv`].
    pub async fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        let (ready, inner) = (&self.ready, &mut self.inner);
        waited(ready.retry(|| inner.try_recv(buf), |e| matches!(e, Error::Empty)).await)
    }

    /// Calls `f` with the next record in place, waiting for it.
    ///
    /// # Errors
    ///
    /// As [`ByteReceiver::recv_with`].
    pub async fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let (ready, inner) = (&self.ready, &mut self.inner);
        let mut f = Some(f);
        let got = ready
            .retry(|| inner.try_recv_with(|record| f.take().map(|f| f(record))), |e| matches!(e, Error::Empty))
            .await;
        waited(got)?.ok_or(Error::Disconnected)
    }
}
