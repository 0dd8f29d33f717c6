//! A service and its connections in async code on tokio (feature
//! `tokio`): each `try_*` call, attempted briefly, then again each time
//! the endpoint's descriptor (the service's epoll, a side's epoll of its
//! doorbell and socket) says it may succeed.
//!
//! Every method is cancel-safe: a future dropped before it finished has
//! accepted, sent or taken nothing (each attempt is one `try_*` call,
//! which does all of it or nothing; a client whose handshake was under way
//! stays in the service's hands for the next call).

use ipc_sync::{AsyncReady, Interest, MAX_SPIN, MAX_YIELDING, Pollable};

use crate::connection::{Connection, Receiver, Sender};
use crate::error::{Error, Result};
use crate::service::Service;

/// The readiness of `endpoint` for `interest`; `cheap` endpoints (the
/// shared-memory sides) spin and yield on attempts first.
fn ready(endpoint: &(impl Pollable + ?Sized), interest: Interest, cheap: bool) -> Result<AsyncReady> {
    let r = AsyncReady::new(endpoint, interest).map_err(|e| Error::io("registering with tokio", e))?;
    Ok(if cheap { r.with_spin(MAX_SPIN).with_yielding(MAX_YIELDING) } else { r })
}

/// Errors of the waits, as the calls'.
fn waited<T>(r: std::io::Result<Result<T>>) -> Result<T> {
    r.map_err(|e| Error::io("waiting in tokio", e))?
}

fn again(e: &Error) -> bool {
    matches!(e, Error::WouldBlock)
}

/// A [`Service`] in async code (made by [`Service::into_async`]).
#[derive(Debug)]
pub struct AsyncService {
    ready: AsyncReady,
    inner: Service,
}

/// A [`Sender`] in async code (made by [`Sender::into_async`]).
#[derive(Debug)]
pub struct AsyncSender {
    ready: AsyncReady,
    inner: Sender,
}

/// A [`Receiver`] in async code (made by [`Receiver::into_async`]).
#[derive(Debug)]
pub struct AsyncReceiver {
    ready: AsyncReady,
    inner: Receiver,
}

/// A [`Connection`] in async code (made by [`Connection::into_async`]):
/// its two sides, each usable from its own task after
/// [`split`](Self::split).
#[derive(Debug)]
pub struct AsyncConnection {
    sender: AsyncSender,
    receiver: AsyncReceiver,
}

impl Service {
    /// This service in async code on tokio.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when its descriptor cannot be registered.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O and time enabled.
    pub fn into_async(self) -> Result<AsyncService> {
        Ok(AsyncService { ready: ready(&self, Interest::Readable, false)?, inner: self })
    }
}

impl AsyncService {
    /// Waits for the next client that completes its handshake.
    ///
    /// # Errors
    ///
    /// As [`Service::accept`].
    pub async fn accept(&mut self) -> Result<Connection> {
        let (ready, inner) = (&self.ready, &mut self.inner);
        waited(ready.retry(|| inner.try_accept(), again).await)
    }

    /// The service, for its sync calls.
    pub fn get_mut(&mut self) -> &mut Service {
        &mut self.inner
    }

    /// The service back.
    pub fn into_inner(self) -> Service {
        self.inner
    }
}

impl Sender {
    /// This side in async code on tokio.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when its descriptor cannot be registered.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O and time enabled.
    pub fn into_async(self) -> Result<AsyncSender> {
        Ok(AsyncSender { ready: ready(&self, Interest::Writable, true)?, inner: self })
    }
}

impl Receiver {
    /// This side in async code on tokio.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when its descriptor cannot be registered.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O and time enabled.
    pub fn into_async(self) -> Result<AsyncReceiver> {
        Ok(AsyncReceiver { ready: ready(&self, Interest::Readable, true)?, inner: self })
    }
}

impl Connection {
    /// This connection in async code on tokio.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when a descriptor cannot be registered.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O and time enabled.
    pub fn into_async(self) -> Result<AsyncConnection> {
        let (sender, receiver) = self.split();
        Ok(AsyncConnection { sender: sender.into_async()?, receiver: receiver.into_async()? })
    }
}

impl AsyncSender {
    /// Sends `msg`, waiting for room.
    ///
    /// # Errors
    ///
    /// As [`Sender::send`].
    pub async fn send(&mut self, msg: &[u8]) -> Result<()> {
        let (ready, inner) = (&self.ready, &mut self.inner);
        waited(ready.retry(|| inner.try_send(msg), again).await)
    }

    /// The side, for its sync calls.
    pub fn get_mut(&mut self) -> &mut Sender {
        &mut self.inner
    }

    /// The side back.
    pub fn into_inner(self) -> Sender {
        self.inner
    }
}

impl AsyncReceiver {
    /// Waits for the next message and puts it in `buf`; returns its length.
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    pub async fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        let (ready, inner) = (&self.ready, &mut self.inner);
        waited(ready.retry(|| inner.try_recv(buf), again).await)
    }

    /// The side, for its sync calls.
    pub fn get_mut(&mut self) -> &mut Receiver {
        &mut self.inner
    }

    /// The side back.
    pub fn into_inner(self) -> Receiver {
        self.inner
    }
}

impl AsyncConnection {
    /// Sends `msg`, waiting for room.
    ///
    /// # Errors
    ///
    /// As [`Sender::send`].
    pub async fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.sender.send(msg).await
    }

    /// Waits for the next message and puts it in `buf`; returns its length.
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`].
    pub async fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.receiver.recv(buf).await
    }

    /// The two sides, for two tasks.
    pub fn split(self) -> (AsyncSender, AsyncReceiver) {
        (self.sender, self.receiver)
    }
}
