//! The two sides of a one-way link, as every run of the comparison sees
//! them (ipc-kit's and the raw references alike), and what a run does with
//! its links.

use std::any::Any;
use std::io;

/// The sending side.
pub(crate) trait Tx {
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;

    /// Sends the messages of `size` bytes that `msgs` holds one after the
    /// other: one by one, unless the mechanism has a batched form.
    fn send_batch(&mut self, msgs: &[u8], size: usize) -> io::Result<()> {
        msgs.chunks(size).try_for_each(|m| self.send(m))
    }
}

/// The receiving side.
pub(crate) trait Rx {
    /// Receives the next message into `buf` (which may be grown or
    /// shortened; the message is `buf[..n]`); returns its length `n`.
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize>;

    /// Receives at least one and at most `buf.len() / size` messages of
    /// `size` bytes into `buf`, one after the other; returns how many. One
    /// at a time, unless the mechanism has a batched form.
    fn recv_batch(&mut self, buf: &mut [u8], size: usize) -> io::Result<usize> {
        let mut one = Vec::with_capacity(size);
        let n = self.recv(&mut one)?;
        match (buf.get_mut(..size), n == size) {
            (Some(dst), true) => dst.copy_from_slice(&one[..size]),
            _ => return Err(io::Error::other(format!("a {n}-byte message where {size} were expected"))),
        }
        Ok(1)
    }
}

impl<T: Tx + ?Sized> Tx for Box<T> {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        (**self).send(msg)
    }
}

impl<R: Rx + ?Sized> Rx for Box<R> {
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        (**self).recv(buf)
    }
}

/// A one-way link: its two sides, and what must live as long as it (the
/// objects, removed when the process that made them drops this).
pub(crate) struct Link<T, R> {
    pub(crate) tx: T,
    pub(crate) rx: R,
    pub(crate) _keep: Box<dyn Any>,
}

/// A link whose sides are reached through trait objects.
pub(crate) type DynLink = Link<Box<dyn Tx>, Box<dyn Rx>>;

/// What a run does with its links, whatever their types: one link for a
/// stream, or two (the way out and the way back) for round trips.
pub(crate) trait Runner {
    type Out;
    fn run<T: Tx + 'static, R: Rx + 'static>(
        self,
        first: Link<T, R>,
        back: Option<Link<T, R>>,
    ) -> io::Result<Self::Out>;
}

/// The message size of the POSIX queues on both sides (that of
/// `Mechanism::PosixQueue`'s pair).
pub(crate) const POSIX_MSGSIZE: usize = 8192;
