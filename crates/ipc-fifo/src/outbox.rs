//! Replies a [`FifoServer`](crate::FifoServer) could not write yet: each
//! client's bytes wait here, in order, until its reply FIFO has room, so
//! that a client that does not read costs the server memory (within
//! bounds) and never time.
//!
//! When the bounds on all clients together (bytes, clients, or the
//! process's file descriptors) would be passed, the queue that has gone
//! longest without the client reading any of it is cut off first: a
//! client that reads keeps its place ahead of clients that do not.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ipc_pipe::PipeWriter;

/// The most bytes queued for one client: two of the largest replies.
pub(crate) const PER_CLIENT: usize = 2 * (crate::wire::MAX_REPLY_FRAME);
/// The most bytes queued for all clients together.
pub(crate) const TOTAL: usize = 128 << 20;
/// The most clients with bytes queued (each holds a writer open).
pub(crate) const CLIENTS: usize = 64;

/// One client's bytes still to write.
struct Queued {
    path: PathBuf,
    writer: PipeWriter,
    data: Vec<u8>,
    /// How much of `data` is written.
    at: usize,
    /// When the client last made room (or the queue began).
    progress: Instant,
}

impl Queued {
    fn left(&self) -> usize {
        self.data.len() - self.at
    }
}

/// How a reply FIFO could not be opened, for [`Outbox::send`].
pub(crate) enum OpenFailed {
    /// The client is gone.
    Gone,
    /// Out of file descriptors: worth a try after freeing one.
    NoFd,
    /// Anything else (the caller keeps the error).
    Other,
}

/// What became of a reply handed to [`Outbox::send`].
pub(crate) enum Sent {
    /// Written whole, or queued behind what the client has not read yet.
    Done,
    /// The client is gone (its reply FIFO has no reader).
    Gone,
    /// It would pass a bound: the client was cut off (its reply FIFO
    /// removed when still the one written to).
    Stalled,
}

/// Every client's queued bytes.
#[derive(Default)]
pub(crate) struct Outbox {
    queued: Vec<Queued>,
    bytes: usize,
}

impl Outbox {
    /// Writes `frame` to the client whose reply FIFO is at `path` (opened
    /// by `open` when nothing is queued for it; `None`: gone): at once as
    /// far as it fits, the rest queued after anything already queued for
    /// that client.
    pub(crate) fn send(
        &mut self,
        path: &Path,
        mut open: impl FnMut() -> Result<PipeWriter, OpenFailed>,
        frame: &[u8],
    ) -> Sent {
        self.pump();
        if let Some(i) = self.queued.iter().position(|q| q.path == path) {
            if self.queued[i].left() + frame.len() > PER_CLIENT {
                self.cut(i);
                return Sent::Stalled;
            }
            let Some(i) = self.make_room(frame.len(), false, Some(i)) else { return Sent::Stalled };
            // The bytes written are dropped first: what is held for a
            // client is what it has not read, not all it was ever sent.
            let q = &mut self.queued[i];
            q.data.drain(..q.at);
            q.at = 0;
            q.data.extend_from_slice(frame);
            self.bytes += frame.len();
            self.pump();
            return Sent::Done;
        }
        let writer = loop {
            match open() {
                Ok(writer) => break writer,
                // Out of fds: a queue that waits longest goes first.
                Err(OpenFailed::NoFd) if !self.queued.is_empty() => {
                    let i = self.stalest(None).unwrap_or(0);
                    self.cut(i);
                }
                Err(_) => return Sent::Gone,
            }
        };
        let mut at = 0;
        while at < frame.len() {
            match writer.try_write(&frame[at..]) {
                Ok(n) => at += n,
                Err(ipc_pipe::Error::WouldBlock) => break,
                Err(_) => {
                    let _ = crate::fifo::remove_if_stale(path);
                    return Sent::Gone;
                }
            }
        }
        let left = frame.len() - at;
        if left == 0 {
            return Sent::Done;
        }
        if left > PER_CLIENT || self.make_room(left, true, None).is_none() {
            // Dropping it, or leaving part of it, would have the client
            // take a later reply for this one: it is cut off instead.
            crate::fifo::remove_if_same(path, &writer);
            return Sent::Stalled;
        }
        self.bytes += left;
        let progress = Instant::now();
        self.queued.push(Queued { path: path.to_owned(), writer, data: frame.to_vec(), at, progress });
        Sent::Done
    }

    /// Cuts off the queues that went longest without their client reading
    /// until `bytes` more (and, when `new_client`, one more client) fit
    /// the bounds, sparing queue `keep`. Returns where `keep` is now
    /// (`Some(0)` when there is none to keep), or `None` when even cutting
    /// every other queue would not make room.
    fn make_room(&mut self, bytes: usize, new_client: bool, mut keep: Option<usize>) -> Option<usize> {
        loop {
            let clients = self.queued.len() + usize::from(new_client);
            if self.bytes + bytes <= TOTAL && clients <= CLIENTS {
                return Some(keep.unwrap_or(0));
            }
            let i = self.stalest(keep)?;
            self.cut(i);
            // `cut` swaps the last queue into place `i`.
            if keep == Some(self.queued.len()) {
                keep = Some(i);
            }
        }
    }

    /// The queue, other than `keep`, that has gone longest without its
    /// client reading.
    fn stalest(&self, keep: Option<usize>) -> Option<usize> {
        (0..self.queued.len()).filter(|&i| Some(i) != keep).min_by_key(|&i| self.queued[i].progress)
    }

    /// Writes what the clients have made room for, without waiting; drops
    /// the queues of clients that are gone.
    pub(crate) fn pump(&mut self) {
        let mut i = 0;
        while i < self.queued.len() {
            let q = &mut self.queued[i];
            let mut gone = false;
            while q.at < q.data.len() {
                match q.writer.try_write(&q.data[q.at..]) {
                    Ok(n) => {
                        q.at += n;
                        self.bytes -= n;
                        q.progress = Instant::now();
                    }
                    Err(ipc_pipe::Error::WouldBlock) => break,
                    Err(_) => {
                        gone = true;
                        break;
                    }
                }
            }
            if gone {
                let q = self.queued.swap_remove(i);
                self.bytes -= q.left();
                let _ = crate::fifo::remove_if_stale(&q.path);
            } else if q.at == q.data.len() {
                self.queued.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Drops client `i`'s queue and removes its reply FIFO (still the one
    /// written to): what it holds can no longer be read as replies.
    fn cut(&mut self, i: usize) {
        let q = self.queued.swap_remove(i);
        self.bytes -= q.left();
        crate::fifo::remove_if_same(&q.path, &q.writer);
    }

    /// The writers with bytes waiting, to be polled for room.
    pub(crate) fn writers(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.queued.iter().map(|q| q.writer.as_fd())
    }

    /// The bytes waiting.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}
