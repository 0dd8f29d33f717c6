//! Publish/subscribe, the blackboard and events in async code on tokio
//! (feature `tokio`): each `try_*` call, attempted briefly, then again
//! each time the endpoint's descriptor (its epoll of its doorbell and
//! socket) says it may succeed.
//!
//! Every method is cancel-safe: a future dropped before it finished has
//! published or taken nothing (each attempt is one `try_*` call, which
//! does all of it or nothing).

use bytemuck::Pod;
use ipc_sync::{AsyncReady, Interest, MAX_SPIN, MAX_YIELDING, Pollable};

use crate::blackboard::BlackboardReader;
use crate::error::{Error, Result};
use crate::events::{Fired, Listener};
use crate::pubsub::Publisher;
use crate::subscriber::Subscriber;

fn ready(endpoint: &(impl Pollable + ?Sized), interest: Interest) -> Result<AsyncReady> {
    let r = AsyncReady::new(endpoint, interest).map_err(|e| Error::io("registering with tokio", e))?;
    Ok(r.with_spin(MAX_SPIN).with_yielding(MAX_YIELDING))
}

fn waited<T>(r: std::io::Result<Result<T>>) -> Result<T> {
    r.map_err(|e| Error::io("waiting in tokio", e))?
}

fn again(e: &Error) -> bool {
    matches!(e, Error::WouldBlock)
}

macro_rules! async_form {
    ($(#[$doc:meta])* $async:ident of $sync:ident, $interest:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $async {
            ready: AsyncReady,
            inner: $sync,
        }

        impl $sync {
            /// This endpoint in async code on tokio.
            ///
            /// # Errors
            ///
            /// [`Error::Io`] when its descriptor cannot be registered.
            ///
            /// # Panics
            ///
            /// Outside a tokio runtime with I/O and time enabled.
            pub fn into_async(self) -> Result<$async> {
                Ok($async { ready: ready(&self, $interest)?, inner: self })
            }
        }

        impl $async {
            /// The endpoint, for its sync calls.
            pub fn get_mut(&mut self) -> &mut $sync {
                &mut self.inner
            }

            /// The endpoint back.
            pub fn into_inner(self) -> $sync {
                self.inner
            }
        }
    };
}

async_form!(
    /// A [`Publisher`] in async code (made by [`Publisher::into_async`]).
    AsyncPublisher of Publisher, Interest::Writable
);
async_form!(
    /// A [`Subscriber`] in async code (made by [`Subscriber::into_async`]).
    AsyncSubscriber of Subscriber, Interest::Readable
);
async_form!(
    /// A [`BlackboardReader`] in async code (made by
    /// [`BlackboardReader::into_async`]).
    AsyncBlackboardReader of BlackboardReader, Interest::Readable
);
async_form!(
    /// A [`Listener`] in async code (made by [`Listener::into_async`]).
    AsyncListener of Listener, Interest::Readable
);

impl AsyncPublisher {
    /// Publishes a copy of `bytes`, waiting for room under `Block`.
    ///
    /// # Errors
    ///
    /// As [`Publisher::publish`].
    pub async fn publish(&mut self, bytes: &[u8]) -> Result<u64> {
        let (ready, inner) = (&self.ready, &mut self.inner);
        waited(ready.retry(|| inner.try_publish(bytes), again).await)
    }

    /// Publishes a `T`'s bytes.
    ///
    /// # Errors
    ///
    /// As [`Publisher::publish_pod`].
    pub async fn publish_pod<T: Pod>(&mut self, value: &T) -> Result<u64> {
        self.publish(bytemuck::bytes_of(value)).await
    }
}

impl AsyncSubscriber {
    /// Waits for the next message and puts it in `buf`; returns its length.
    ///
    /// # Errors
    ///
    /// As [`Subscriber::recv`] ([`Error::Lagged`] included).
    pub async fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        let (ready, inner) = (&self.ready, &mut self.inner);
        waited(ready.retry(|| inner.try_recv(buf), again).await)
    }

    /// Waits for the next message and reads it in place with `f` (called
    /// once per message, as [`Subscriber::recv_with`] calls it).
    ///
    /// # Errors
    ///
    /// As [`Subscriber::recv_with`].
    pub async fn recv_with<R>(&mut self, mut f: impl FnMut(&[u8]) -> R) -> Result<R> {
        let (ready, inner) = (&self.ready, &mut self.inner);
        waited(ready.retry(|| inner.try_recv_with(&mut f), again).await)
    }

    /// Waits for the next message, a `T`.
    ///
    /// # Errors
    ///
    /// As [`Subscriber::recv_pod`].
    pub async fn recv_pod<T: Pod>(&mut self) -> Result<T> {
        let (ready, inner) = (&self.ready, &mut self.inner);
        waited(ready.retry(|| inner.try_recv_pod::<T>(), again).await)
    }
}

impl AsyncBlackboardReader {
    /// Waits for a value newer than the last one read, puts it in `buf`,
    /// and returns its version.
    ///
    /// # Errors
    ///
    /// As [`BlackboardReader::wait_newer`].
    pub async fn wait_newer(&mut self, buf: &mut Vec<u8>) -> Result<u64> {
        let (ready, inner) = (&self.ready, &mut self.inner);
        waited(ready.retry(|| inner.try_newer(buf), again).await)
    }
}

impl AsyncListener {
    /// Waits until some id fired since this listener last looked.
    ///
    /// # Errors
    ///
    /// As [`Listener::wait`].
    pub async fn wait(&mut self) -> Result<Fired> {
        let (ready, inner) = (&self.ready, &mut self.inner);
        waited(ready.retry(|| inner.try_wait(), again).await)
    }
}
