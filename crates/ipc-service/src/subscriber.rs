//! The subscribing end of publish/subscribe.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;
use ipc_shm::broadcast::{BroadcastReader, CursorCell, NOT_STARTED, Read};
use ipc_socket::{Credentials, SocketName};
use ipc_sync::Deadline;
use ipc_sync::ready::{Interest, Pollable, Source};

use crate::error::{Error, Result};
use crate::hub::Kind;
use crate::member::{self, Joined, MemberWait, News};
use crate::pubsub::Policy;

/// A subscriber's news: a message at its cursor, its first place given,
/// or the ring closed.
#[derive(Debug)]
struct Ready {
    reader: Arc<BroadcastReader>,
    cell: CursorCell,
    cursor: Arc<AtomicU64>,
}

impl News for Ready {
    fn place(&self) -> u64 {
        self.cursor.load(Ordering::Relaxed)
    }

    fn ready(&self) -> bool {
        let at = self.cursor.load(Ordering::Relaxed);
        if at == NOT_STARTED {
            return self.cell.start() != NOT_STARTED || self.reader.closed();
        }
        self.reader.head() > at || self.reader.closed()
    }
}

/// A subscriber of a [`Publisher`](crate::Publisher), joined by name: it
/// receives every message published from when it joined on (the first
/// call that finds the publisher has taken it in), in order; under
/// [`Policy::Overwrite`] it may fall behind and lose some, which it is
/// told ([`Error::Lagged`]).
///
/// When the publisher is gone (dropped, or its process died), what it
/// published is received first, then every call says
/// [`Error::Disconnected`].
#[derive(Debug)]
pub struct Subscriber {
    reader: Arc<BroadcastReader>,
    /// The next message to read, or `NOT_STARTED`.
    cursor: Arc<AtomicU64>,
    policy: Policy,
    /// Lost under `Overwrite`, in all.
    lagged: u64,
    wait: Arc<MemberWait>,
    joined: Joined,
}

impl Subscriber {
    /// Joins the publisher bound at `name`.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`] (not let in, or too many subscribers);
    /// [`Error::Socket`] (no one at the name); [`Error::Handshake`] (not a
    /// publisher, or one that sent what no publisher sends);
    /// [`Error::OutOfDescriptors`].
    pub fn connect(name: &SocketName) -> Result<Subscriber> {
        Self::connect_until(name, Deadline::never())
    }

    /// As [`connect`](Self::connect), waiting at most `timeout` for the
    /// publisher (its socket's backlog, its answer).
    ///
    /// # Errors
    ///
    /// As above, and [`Error::Timeout`] or the socket's timeout.
    pub fn connect_timeout(name: &SocketName, timeout: Duration) -> Result<Subscriber> {
        Self::connect_until(name, Deadline::after(timeout))
    }

    /// As [`connect`](Self::connect), waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn connect_deadline(name: &SocketName, deadline: Instant) -> Result<Subscriber> {
        Self::connect_until(name, Deadline::at(deadline))
    }

    fn connect_until(name: &SocketName, deadline: Deadline) -> Result<Subscriber> {
        let (mut joined, object) = member::join(name, Kind::PubSub, deadline)?;
        let policy = Policy::from_code(joined.flags)
            .ok_or_else(|| Error::handshake(format!("a publisher with the unknown policy {}", joined.flags)))?;
        let reader = Arc::new(BroadcastReader::open(&object).map_err(|e| match Error::from(e) {
            e @ Error::OutOfDescriptors { .. } => e,
            e => Error::handshake(format!("the publisher's ring: {e}")),
        })?);
        let cursor = Arc::new(AtomicU64::new(NOT_STARTED));
        let ready = Ready { reader: Arc::clone(&reader), cell: joined.cell.clone(), cursor: Arc::clone(&cursor) };
        let wait = MemberWait::new(&joined, ready)?;
        joined.take_place()?;
        Ok(Subscriber { reader, cursor, policy, lagged: 0, wait, joined })
    }

    /// The publisher's policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The longest message the publisher sends.
    pub fn max_message(&self) -> usize {
        self.reader.max_message()
    }

    /// The ring's slots.
    pub fn capacity(&self) -> usize {
        self.reader.capacity() as usize
    }

    /// The publisher's credentials, as the kernel gave them when this
    /// subscriber connected.
    pub fn publisher_credentials(&self) -> Credentials {
        self.joined.owner
    }

    /// Its number among the publisher's subscribers (from 0, in the order
    /// they joined).
    pub fn id(&self) -> u64 {
        self.joined.id
    }

    /// How many messages it lost in all (under `Overwrite`): the sum of
    /// the [`Error::Lagged`] counts it was given.
    pub fn lagged(&self) -> u64 {
        self.lagged
    }

    /// How many messages wait for it: those published since its cursor
    /// (more than the ring holds when it fell behind).
    pub fn pending(&self) -> u64 {
        let at = self.cursor.load(Ordering::Relaxed);
        if at == NOT_STARTED { 0 } else { self.reader.head().saturating_sub(at) }
    }

    /// Receives the next message into `buf` (cleared first); returns its
    /// length.
    ///
    /// # Errors
    ///
    /// [`Error::Lagged`] (the messages it lost; the next call goes on);
    /// [`Error::Disconnected`] once the publisher is gone and all it
    /// published was received; [`Error::Channel`] for a ring that says
    /// what no publisher says.
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.recv_with(|b| copy_into(buf, b))
    }

    /// As [`recv`](Self::recv), or [`Error::WouldBlock`] at once.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.try_recv_with(|b| copy_into(buf, b))
    }

    /// As [`recv`](Self::recv), waiting at most `timeout`
    /// ([`Error::Timeout`]).
    ///
    /// # Errors
    ///
    /// As above.
    pub fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        self.recv_with_timeout(timeout, |b| copy_into(buf, b))
    }

    /// As [`recv`](Self::recv), waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn recv_deadline(&mut self, buf: &mut Vec<u8>, deadline: Instant) -> Result<usize> {
        self.recv_until(Some(Deadline::at(deadline)), |b| copy_into(buf, b))
    }

    /// Receives the next message in place: `f` reads it where the
    /// publisher wrote it, and its result is returned.
    ///
    /// Under [`Policy::Overwrite`] the publisher may overwrite the message
    /// while `f` reads it: `f`'s result is then dropped and the call
    /// returns [`Error::Lagged`] (so `f` must not act on what it saw
    /// before it returns; a copy, a parse, a checksum are fine). Under
    /// `Block` the message stays put until `f` returns.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_until(Some(Deadline::never()), f)
    }

    /// As [`recv_with`](Self::recv_with), or [`Error::WouldBlock`].
    ///
    /// # Errors
    ///
    /// As above.
    pub fn try_recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_until(None, f)
    }

    /// As [`recv_with`](Self::recv_with), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn recv_with_timeout<R>(&mut self, timeout: Duration, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_until(Some(Deadline::after(timeout)), f)
    }

    /// Receives a `T` (a message of exactly its size).
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for a message of another size (it is taken);
    /// as for [`recv`](Self::recv).
    pub fn recv_pod<T: Pod>(&mut self) -> Result<T> {
        self.recv_with(read_pod::<T>)?
    }

    /// As [`recv_pod`](Self::recv_pod), or [`Error::WouldBlock`].
    ///
    /// # Errors
    ///
    /// As above.
    pub fn try_recv_pod<T: Pod>(&mut self) -> Result<T> {
        self.try_recv_with(read_pod::<T>)?
    }

    /// As [`recv_pod`](Self::recv_pod), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn recv_pod_timeout<T: Pod>(&mut self, timeout: Duration) -> Result<T> {
        self.recv_with_timeout(timeout, read_pod::<T>)?
    }

    fn recv_until<R>(&mut self, deadline: Option<Deadline>, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let mut f = Some(f);
        let wait = Arc::clone(&self.wait);
        wait.until(deadline, || self.attempt(&mut f))
    }

    /// One look: the message at the cursor (through `f`, taken), nothing,
    /// or an error.
    fn attempt<R>(&mut self, f: &mut Option<impl FnOnce(&[u8]) -> R>) -> Result<Option<R>> {
        for _ in 0..2 {
            let mut at = self.cursor.load(Ordering::Relaxed);
            if at == NOT_STARTED {
                at = self.joined.cell.start();
                if at == NOT_STARTED {
                    self.nothing()?;
                    return Ok(None);
                }
                self.moved(at);
            }
            match self.reader.read_with(at, |bytes| f.take().map(|f| f(bytes)))? {
                Read::Message(r) => {
                    self.moved(at + 1);
                    return Ok(r);
                }
                Read::Lagged { next } => {
                    let missed = next - at;
                    self.lagged = self.lagged.saturating_add(missed);
                    self.moved(next);
                    return Err(Error::Lagged { missed });
                }
                // Looked at once more when the publisher went meanwhile.
                Read::Empty if self.nothing()? => {}
                Read::Empty => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Moves the cursor; under `Block`, says so to the publisher, and
    /// rings it if it waits for the cursor to pass where it just passed.
    #[inline]
    fn moved(&self, to: u64) {
        let from = self.cursor.swap(to, Ordering::Relaxed);
        if self.policy == Policy::Block {
            self.joined.cell.set_cursor(to);
            if let Some(until) = self.reader.writer_waiting_for()
                && (from == NOT_STARTED || from < until)
                && to >= until
            {
                let _ = self.joined.owner_bell.try_add(1);
            }
        }
    }

    /// Nothing at the cursor: `Disconnected` once the publisher is gone
    /// and what it published was read; `Ok(true)` when it is gone with
    /// messages still to read (published before it went), `Ok(false)`
    /// while it is there.
    fn nothing(&self) -> Result<bool> {
        let gone = self.reader.closed() || self.joined.link.look_sometimes();
        if !gone {
            return Ok(false);
        }
        let at = self.cursor.load(Ordering::Relaxed);
        if at != NOT_STARTED && self.reader.head() > at {
            return Ok(true);
        }
        Err(Error::Disconnected)
    }
}

impl Pollable for Subscriber {
    /// Readable while a message (or a loss, or the publisher's end) waits.
    fn source(&self, interest: Interest) -> std::io::Result<Option<Source<'_>>> {
        Ok((interest == Interest::Readable).then(|| self.wait.source()))
    }

    fn polls_cheaply(&self) -> bool {
        true
    }
}

fn copy_into(buf: &mut Vec<u8>, bytes: &[u8]) -> usize {
    buf.clear();
    buf.extend_from_slice(bytes);
    bytes.len()
}

pub(crate) fn read_pod<T: Pod>(bytes: &[u8]) -> Result<T> {
    if bytes.len() != size_of::<T>() {
        return Err(Error::Malformed {
            reason: format!("a message of {} bytes for a value of {}", bytes.len(), size_of::<T>()),
        });
    }
    Ok(bytemuck::pod_read_unaligned(bytes))
}
