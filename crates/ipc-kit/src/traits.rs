//! One interface over every mechanism: [`MessageSender`] and
//! [`MessageReceiver`], and `Mechanism` (in the crate root) to make a
//! connected pair.

use std::time::Duration;

use ipc_sync::Pollable;

/// What a send or receive through the mechanism-neutral traits can give.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The other side is gone (end of file, a removed queue, a closed
    /// channel), and everything it sent has been received.
    ///
    /// Pipes, FIFOs and channels report it when the other side's process
    /// is gone, killed or not. Message queues report it only when the queue
    /// is removed: a queue outlives its processes and records no peer, so a
    /// receiver whose sender died keeps waiting, and a sender whose
    /// receiver died fills the queue. Use the timed forms with queues
    /// where a peer may die.
    #[error("the other side is gone")]
    Disconnected,
    /// A `try_send` found no room.
    #[error("no room for the message now")]
    Full,
    /// A `try_recv` found no message.
    #[error("no message now")]
    Empty,
    /// A timed call reached its deadline.
    #[error("the deadline passed")]
    Timeout,
    /// A message longer than the mechanism carries.
    #[error("message of {len} bytes exceeds the mechanism's {max}")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The most the mechanism carries.
        max: usize,
    },
    /// A received message that is not the value asked for (feature
    /// `serde`): it does not decode as the type, or bytes follow the
    /// value. The message was taken; the next is received as usual.
    #[error("a message of {len} bytes is not the value asked for: {reason}")]
    Malformed {
        /// The message's length.
        len: usize,
        /// What the decoder said.
        reason: String,
    },
    /// Anything else, from the mechanism's own error type.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

/// The result of the traits' methods.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The sending side of any mechanism: whole messages of bytes.
///
/// Every sender is [`Pollable`]: writable when a send would not wait.
pub trait MessageSender: Pollable {
    /// Sends `msg`, waiting for room.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`], [`Error::TooLarge`], [`Error::Other`].
    fn send(&mut self, msg: &[u8]) -> Result<()>;

    /// Sends `msg` if there is room now; never blocks. A mechanism may
    /// carry less in this form and in [`send_timeout`](Self::send_timeout)
    /// than in [`send`](Self::send) (a pipe or FIFO: `PIPE_BUF` less the
    /// frame header, what one atomic write carries); longer messages are
    /// [`Error::TooLarge`] before anything is sent.
    ///
    /// # Errors
    ///
    /// [`Error::Full`], and as for [`send`](Self::send).
    fn try_send(&mut self, msg: &[u8]) -> Result<()>;

    /// Sends `msg`, waiting at most `timeout` for room; a zero or past
    /// timeout tries once. The most it carries is as for
    /// [`try_send`](Self::try_send).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`send`](Self::send).
    fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()>;
}

/// The receiving side of any mechanism: whole messages into a reusable
/// buffer.
///
/// Every receiver is [`Pollable`]: readable when a receive would not wait.
pub trait MessageReceiver: Pollable {
    /// Receives the next message into `buf` (replacing its contents),
    /// waiting for it; returns its length.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`], [`Error::Other`].
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize>;

    /// Receives a message if one is there now.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`], and as for [`recv`](Self::recv).
    fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize>;

    /// Receives, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`recv`](Self::recv).
    fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize>;
}

#[cfg_attr(not(any(feature = "pipe", feature = "msgq", feature = "shm")), allow(dead_code))]
pub(crate) fn other(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Other(Box::new(e))
}

impl<S: MessageSender + ?Sized> MessageSender for Box<S> {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        (**self).send(msg)
    }

    fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        (**self).try_send(msg)
    }

    fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        (**self).send_timeout(msg, timeout)
    }
}

impl<R: MessageReceiver + ?Sized> MessageReceiver for Box<R> {
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        (**self).recv(buf)
    }

    fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        (**self).try_recv(buf)
    }

    fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        (**self).recv_timeout(buf, timeout)
    }
}
