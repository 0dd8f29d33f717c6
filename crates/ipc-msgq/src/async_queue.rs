//! The queues in async code on tokio (feature `tokio`): each `try_*` call,
//! attempted again each time the queue may have changed, without blocking
//! the thread. A wait goes on attempting between yields to the runtime for
//! `ipc_sync::SYSCALL_YIELDING` (30 µs) before it parks, so that a peer
//! that answers at once is heard without a wake-up; each of those attempts
//! is a system call.
//!
//! A POSIX queue waits on its descriptor. A System V queue has none: a
//! thread of this process watches its state while a task waits (see
//! `SysvQueue`'s `Pollable`), so a message is seen at most about 1 ms
//! late. A receive that asks for one type while messages of others wait
//! looks again after pauses from 20 µs to 1 ms until one of its type
//! comes.
//!
//! Every method is cancel-safe: a future dropped before it finished has
//! sent or taken nothing.

use ipc_sync::object::ObjectError;
use ipc_sync::{AsyncReady, Interest, SYSCALL_YIELDING};

use crate::error::{Error, Result};
use crate::{PosixQueue, Selector, SysvQueue};

/// The readiness of `queue` for `interest`, attempted between yields for
/// a while before each park.
fn ready(queue: &(impl ipc_sync::Pollable + ?Sized), interest: Interest, name: String) -> Result<AsyncReady> {
    AsyncReady::new(queue, interest)
        .map(|r| r.with_yielding(SYSCALL_YIELDING))
        .map_err(|e| Error::from_os("message queue", || name, "registering with tokio", e))
}

/// Errors of the waits, as the queue's.
fn waited<T>(r: std::io::Result<Result<T>>, name: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|e| Error::from_os("message queue", name, "waiting with tokio", e))?
}

/// A [`PosixQueue`] in async code (made by [`PosixQueue::into_async`]).
#[derive(Debug)]
pub struct AsyncPosixQueue {
    readable: AsyncReady,
    writable: AsyncReady,
    queue: PosixQueue,
}

/// A [`SysvQueue`] in async code (made by [`SysvQueue::into_async`]).
#[derive(Debug)]
pub struct AsyncSysvQueue {
    readable: AsyncReady,
    writable: AsyncReady,
    queue: SysvQueue,
}

impl PosixQueue {
    /// This queue in async code on tokio (see [`AsyncPosixQueue`]).
    ///
    /// # Errors
    ///
    /// When its descriptor cannot be registered with tokio.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O and time enabled.
    pub fn into_async(self) -> Result<AsyncPosixQueue> {
        let name = || self.name().to_owned();
        let readable = ready(&self, Interest::Readable, name())?;
        let writable = ready(&self, Interest::Writable, name())?;
        Ok(AsyncPosixQueue { readable, writable, queue: self })
    }
}

impl SysvQueue {
    /// This queue in async code on tokio (see [`AsyncSysvQueue`]): two
    /// watching threads, one per direction, while it lives.
    ///
    /// # Errors
    ///
    /// When its state cannot be read (`IPC_STAT` takes read permission),
    /// or no thread or eventfd can be had.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O and time enabled.
    pub fn into_async(self) -> Result<AsyncSysvQueue> {
        let name = || format!("id {}", self.id());
        let readable = ready(&self, Interest::Readable, name())?;
        let writable = ready(&self, Interest::Writable, name())?;
        Ok(AsyncSysvQueue { readable, writable, queue: self })
    }
}

impl AsyncPosixQueue {
    /// Sends `data` with `priority`, waiting for room.
    ///
    /// # Errors
    ///
    /// As [`PosixQueue::send`].
    pub async fn send(&self, data: &[u8], priority: u32) -> Result<()> {
        let q = &self.queue;
        let r = self.writable.retry(|| q.try_send(data, priority), |e| matches!(e, Error::Full)).await;
        waited(r, || q.name().to_owned())
    }

    /// Receives the next message (highest priority first) into `buf`,
    /// waiting for one; returns its length and priority.
    ///
    /// # Errors
    ///
    /// As [`PosixQueue::recv`].
    pub async fn recv(&self, buf: &mut [u8]) -> Result<(usize, u32)> {
        let q = &self.queue;
        let r = self.readable.retry(|| q.try_recv(buf), |e| matches!(e, Error::Empty)).await;
        waited(r, || q.name().to_owned())
    }

    /// The queue, for its sync calls.
    pub fn get_ref(&self) -> &PosixQueue {
        &self.queue
    }

    /// The queue back.
    pub fn into_inner(self) -> PosixQueue {
        self.queue
    }
}

impl AsyncSysvQueue {
    /// Sends `data` with type `mtype`, waiting for room.
    ///
    /// # Errors
    ///
    /// As [`SysvQueue::send`].
    pub async fn send(&self, mtype: i64, data: &[u8]) -> Result<()> {
        let q = &self.queue;
        let r = self.writable.retry(|| q.try_send(mtype, data), |e| matches!(e, Error::Full)).await;
        waited(r, || format!("id {}", q.id()))
    }

    /// Receives the next message that `selector` takes into `buf`, waiting
    /// for one; returns its type and length.
    ///
    /// # Errors
    ///
    /// As [`SysvQueue::recv`].
    pub async fn recv(&self, selector: Selector, buf: &mut [u8]) -> Result<(i64, usize)> {
        let q = &self.queue;
        let r = self.readable.retry(|| q.try_recv(selector, buf), |e| matches!(e, Error::Empty)).await;
        waited(r, || format!("id {}", q.id()))
    }

    /// The queue, for its sync calls.
    pub fn get_ref(&self) -> &SysvQueue {
        &self.queue
    }

    /// The queue back.
    pub fn into_inner(self) -> SysvQueue {
        self.queue
    }
}
