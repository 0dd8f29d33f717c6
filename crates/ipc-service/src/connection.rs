//! A connection: a pair of shared-memory channels between one client and
//! its service, and the socket that says whether the peer is there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use ipc_shm::{ByteReceiver, ByteSender, WaitPolicy};
use ipc_socket::Credentials;
use ipc_sync::Deadline;
use ipc_sync::ready::{Interest, Pollable, Source};

use crate::error::{Error, Result};
use crate::link::{Link, Waiter};

/// How long a waiting call spins on the channel before it sleeps: about
/// what a channel's own waits spin, so that a peer that answers within it
/// is seen without a system call on either side.
const SPIN: Duration = Duration::from_micros(50);

/// The sending side of a [`Connection`]: the client's requests, or the
/// service's replies.
#[derive(Debug)]
pub struct Sender {
    chan: ByteSender,
    max: usize,
    waiter: Waiter,
    link: Arc<Link>,
}

/// The receiving side of a [`Connection`].
#[derive(Debug)]
pub struct Receiver {
    chan: ByteReceiver,
    max: usize,
    waiter: Waiter,
    link: Arc<Link>,
}

/// One client's connection to a service, at either end: messages of
/// bytes both ways through shared memory that only the two processes
/// map, with no system call per message while both are busy.
///
/// The service's end receives requests and sends replies; the client's
/// end the other way round. Each message is at most
/// [`max_message`](Self::max_message) bytes (half the ring's capacity,
/// less 8).
///
/// **Liveness.** The connection's socket stays open for as long as the
/// connection: when the peer drops its end or dies, at any moment (also
/// before it sent or received anything), a wait of this end wakes at
/// once. (A peer that only shuts down its socket's writing is still
/// there; one that shuts down both ways has left.) A receiver then gets what the peer sent before, and after that
/// [`Error::Disconnected`]; a sender gets `Disconnected` at its next wait
/// for room, or at once when the peer closed its side cleanly. A `try_*`
/// call that finds nothing asks the kernel about the socket at most every
/// 200 µs.
///
/// Every call that can wait has three forms: waiting, `try_*` and timed.
/// [`split`](Self::split) gives the two sides to two threads. Both sides,
/// and the connection, are [`Pollable`].
#[derive(Debug)]
pub struct Connection {
    sender: Sender,
    receiver: Receiver,
    peer: Credentials,
}

/// Takes an error of an attempt: `Ok(None)` for "nothing yet".
fn nothing_yet<T>(r: std::result::Result<T, ipc_shm::Error>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(ipc_shm::Error::Empty | ipc_shm::Error::Full | ipc_shm::Error::Timeout) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The window of spinning for a wait that ends at `deadline`.
pub(crate) fn window(deadline: Deadline) -> Duration {
    deadline.remaining().map_or(SPIN, |left| left.min(SPIN))
}

impl Receiver {
    pub(crate) fn new(mut chan: ByteReceiver, max: usize, link: &Arc<Link>) -> Result<Receiver> {
        chan.set_wait_policy(WaitPolicy::Spin);
        let source = chan.source(Interest::Readable).map_err(|e| Error::io("a receiver's doorbell", e))?;
        let source = source.ok_or_else(|| Error::handshake("a receiver that cannot be polled"))?;
        let waiter = Waiter::new(source, Some(link))?;
        Ok(Receiver { chan, max, waiter, link: Arc::clone(link) })
    }

    /// One look at the ring, calling what is in `f` with a record found.
    #[inline]
    fn attempt<R>(&mut self, f: &mut Option<impl FnOnce(&[u8]) -> R>, spin: Option<Duration>) -> Result<Option<R>> {
        let got = match spin {
            None => self.chan.try_recv_with(|b| f.take().map(|f| f(b))),
            Some(window) => self.chan.recv_with_timeout(window, |b| f.take().map(|f| f(b))),
        };
        // `f` is taken exactly when a record is found.
        Ok(nothing_yet(got)?.flatten())
    }

    /// The waiting loop of every receive: `None` for a `try_*` call.
    fn recv_with_until<R>(&mut self, deadline: Option<Deadline>, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let mut f = Some(f);
        if let Some(r) = self.attempt(&mut f, None)? {
            return Ok(r);
        }
        let Some(deadline) = deadline else {
            if self.link.look_sometimes() {
                return self.attempt(&mut f, None)?.ok_or(Error::Disconnected);
            }
            return Err(Error::WouldBlock);
        };
        loop {
            if let Some(r) = self.attempt(&mut f, Some(window(deadline)))? {
                return Ok(r);
            }
            if self.link.look() {
                // What the peer sent before it went is still received.
                return self.attempt(&mut f, None)?.ok_or(Error::Disconnected);
            }
            if deadline.has_expired() {
                return Err(Error::Timeout);
            }
            self.waiter.park(deadline)?;
        }
    }

    /// Waits for the next message and calls `f` with its bytes, in place
    /// in the shared memory; they are released to the sender when `f`
    /// returns.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when the peer is gone and everything it
    /// sent was received; [`Error::Channel`] with `Corrupted` when the
    /// peer wrote impossible values into the shared memory (nothing is
    /// read out of bounds).
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_with_until(Some(Deadline::never()), f)
    }

    /// Calls `f` with the next message if one is waiting.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`], and as for [`recv_with`](Self::recv_with).
    pub fn try_recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_with_until(None, f)
    }

    /// As [`recv_with`](Self::recv_with), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`recv_with`](Self::recv_with).
    pub fn recv_with_timeout<R>(&mut self, timeout: Duration, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_with_until(Some(Deadline::after(timeout)), f)
    }

    /// As [`recv_with`](Self::recv_with), waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As for [`recv_with_timeout`](Self::recv_with_timeout).
    pub fn recv_with_deadline<R>(&mut self, deadline: Instant, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.recv_with_until(Some(Deadline::at(deadline)), f)
    }

    /// Waits for the next message and puts it in `buf` (replacing what
    /// was there); returns its length.
    ///
    /// # Errors
    ///
    /// As for [`recv_with`](Self::recv_with).
    #[inline]
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        // A message waiting is taken straight from the channel.
        match self.chan.try_recv(buf) {
            Err(ipc_shm::Error::Empty) => self.recv_with(|b| fill(buf, b)),
            got => Ok(got?),
        }
    }

    /// As [`recv`](Self::recv) if a message is waiting.
    ///
    /// # Errors
    ///
    /// As for [`try_recv_with`](Self::try_recv_with).
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.try_recv_with(|b| fill(buf, b))
    }

    /// As [`recv`](Self::recv), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`recv_with_timeout`](Self::recv_with_timeout).
    pub fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        self.recv_with_timeout(timeout, |b| fill(buf, b))
    }

    /// Waits for the next message and reads it as a `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for a message that is not `size_of::<T>()`
    /// bytes long (it is consumed), and as for [`recv_with`](Self::recv_with).
    pub fn recv_pod<T: Pod>(&mut self) -> Result<T> {
        self.recv_with(pod_of::<T>)?
    }

    /// As [`recv_pod`](Self::recv_pod) if a message is waiting.
    ///
    /// # Errors
    ///
    /// As for [`recv_pod`](Self::recv_pod) and [`try_recv_with`](Self::try_recv_with).
    pub fn try_recv_pod<T: Pod>(&mut self) -> Result<T> {
        self.try_recv_with(pod_of::<T>)?
    }

    /// As [`recv_pod`](Self::recv_pod), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`recv_pod`](Self::recv_pod) and [`recv_with_timeout`](Self::recv_with_timeout).
    pub fn recv_pod_timeout<T: Pod>(&mut self, timeout: Duration) -> Result<T> {
        self.recv_with_timeout(timeout, pod_of::<T>)?
    }

    /// The longest message the peer can send.
    pub fn max_message(&self) -> usize {
        self.max
    }
}

/// Copies a message into `buf`.
fn fill(buf: &mut Vec<u8>, bytes: &[u8]) -> usize {
    buf.clear();
    buf.extend_from_slice(bytes);
    bytes.len()
}

/// A message read as a `T`.
fn pod_of<T: Pod>(bytes: &[u8]) -> Result<T> {
    bytemuck::try_pod_read_unaligned(bytes).map_err(|_| Error::Malformed {
        reason: format!("{} bytes, not the {} of a {}", bytes.len(), size_of::<T>(), std::any::type_name::<T>()),
    })
}

impl Sender {
    pub(crate) fn new(mut chan: ByteSender, max: usize, link: &Arc<Link>) -> Result<Sender> {
        chan.set_wait_policy(WaitPolicy::Spin);
        let source = chan.source(Interest::Writable).map_err(|e| Error::io("a sender's doorbell", e))?;
        let source = source.ok_or_else(|| Error::handshake("a sender that cannot be polled"))?;
        let waiter = Waiter::new(source, Some(link))?;
        Ok(Sender { chan, max, waiter, link: Arc::clone(link) })
    }

    /// One attempt to write a message of `len` bytes with `f`.
    #[inline]
    fn attempt(&mut self, len: usize, f: &mut Option<impl FnOnce(&mut [u8])>, spin: Option<Duration>) -> Result<bool> {
        let reserved = match spin {
            None => self.chan.try_reserve(len),
            Some(window) => self.chan.reserve_timeout(len, window),
        };
        match nothing_yet(reserved)? {
            Some(mut r) => {
                if let Some(f) = f.take() {
                    f(r.as_mut_slice());
                }
                r.commit();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The waiting loop of every send: `None` for a `try_*` call.
    fn send_with_until(&mut self, deadline: Option<Deadline>, len: usize, f: impl FnOnce(&mut [u8])) -> Result<()> {
        let max = self.max;
        if len > max {
            return Err(Error::MessageTooLarge { len, max });
        }
        let mut f = Some(f);
        if self.attempt(len, &mut f, None)? {
            return Ok(());
        }
        let Some(deadline) = deadline else {
            return Err(if self.link.look_sometimes() { Error::Disconnected } else { Error::WouldBlock });
        };
        loop {
            if self.attempt(len, &mut f, Some(window(deadline)))? {
                return Ok(());
            }
            if self.link.look() {
                return Err(Error::Disconnected);
            }
            if deadline.has_expired() {
                return Err(Error::Timeout);
            }
            self.waiter.park(deadline)?;
        }
    }

    /// Waits for room for a message of `len` bytes, lets `f` write it in
    /// place in the shared memory (it gets exactly `len` bytes, as they
    /// were left: write all of them), and sends it.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`] over [`max_message`](Self::max_message);
    /// [`Error::Disconnected`] when the peer is gone.
    pub fn send_with(&mut self, len: usize, f: impl FnOnce(&mut [u8])) -> Result<()> {
        self.send_with_until(Some(Deadline::never()), len, f)
    }

    /// As [`send_with`](Self::send_with) if there is room now.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`], and as for [`send_with`](Self::send_with).
    pub fn try_send_with(&mut self, len: usize, f: impl FnOnce(&mut [u8])) -> Result<()> {
        self.send_with_until(None, len, f)
    }

    /// As [`send_with`](Self::send_with), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`send_with`](Self::send_with).
    pub fn send_with_timeout(&mut self, len: usize, timeout: Duration, f: impl FnOnce(&mut [u8])) -> Result<()> {
        self.send_with_until(Some(Deadline::after(timeout)), len, f)
    }

    /// Sends `msg`, waiting for room.
    ///
    /// # Errors
    ///
    /// As for [`send_with`](Self::send_with).
    #[inline]
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        // With room, straight into the channel.
        match self.chan.try_send(msg) {
            Err(ipc_shm::Error::Full) => self.send_with(msg.len(), |b| b.copy_from_slice(msg)),
            sent => Ok(sent?),
        }
    }

    /// Sends `msg` if there is room now.
    ///
    /// # Errors
    ///
    /// As for [`try_send_with`](Self::try_send_with).
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.try_send_with(msg.len(), |b| b.copy_from_slice(msg))
    }

    /// Sends `msg`, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// As for [`send_with_timeout`](Self::send_with_timeout).
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_with_timeout(msg.len(), timeout, |b| b.copy_from_slice(msg))
    }

    /// Sends `msg`, waiting until `deadline` for room.
    ///
    /// # Errors
    ///
    /// As for [`send_with_timeout`](Self::send_with_timeout).
    pub fn send_deadline(&mut self, msg: &[u8], deadline: Instant) -> Result<()> {
        self.send_with_until(Some(Deadline::at(deadline)), msg.len(), |b| b.copy_from_slice(msg))
    }

    /// Sends a `T` as its bytes.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub fn send_pod<T: Pod>(&mut self, value: &T) -> Result<()> {
        self.send(bytemuck::bytes_of(value))
    }

    /// The longest message this side sends.
    pub fn max_message(&self) -> usize {
        self.max
    }
}

impl Pollable for Receiver {
    fn source(&self, interest: Interest) -> std::io::Result<Option<Source<'_>>> {
        Ok((interest == Interest::Readable).then(|| self.waiter.source()))
    }

    fn polls_cheaply(&self) -> bool {
        true
    }
}

impl Pollable for Sender {
    fn source(&self, interest: Interest) -> std::io::Result<Option<Source<'_>>> {
        Ok((interest == Interest::Writable).then(|| self.waiter.source()))
    }

    fn polls_cheaply(&self) -> bool {
        true
    }
}

/// Readable when a message waits (or the peer is gone), writable when
/// there is room (or the peer is gone).
impl Pollable for Connection {
    fn source(&self, interest: Interest) -> std::io::Result<Option<Source<'_>>> {
        match interest {
            Interest::Readable => self.receiver.source(interest),
            Interest::Writable => self.sender.source(interest),
        }
    }

    fn polls_cheaply(&self) -> bool {
        true
    }
}

/// Forwards to a side's method, with its docs.
macro_rules! forward {
    ($side:ident: $ty_:ident; $(fn $name:ident$(<$g:ident $(: $b:path)?>)?(&mut self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(
            #[doc = concat!("See [`", stringify!($ty_), "::", stringify!($name), "`].")]
            ///
            /// # Errors
            ///
            #[doc = concat!("As for [`", stringify!($ty_), "::", stringify!($name), "`].")]
            pub fn $name$(<$g $(: $b)?>)?(&mut self $(, $arg: $ty)*) -> $ret {
                self.$side.$name($($arg),*)
            }
        )*
    };
}

impl Connection {
    pub(crate) fn new(sender: Sender, receiver: Receiver, peer: Credentials) -> Connection {
        Connection { sender, receiver, peer }
    }

    forward! { sender: Sender;
        fn send(&mut self, msg: &[u8]) -> Result<()>;
        fn try_send(&mut self, msg: &[u8]) -> Result<()>;
        fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()>;
        fn send_deadline(&mut self, msg: &[u8], deadline: Instant) -> Result<()>;
        fn send_pod<T: Pod>(&mut self, value: &T) -> Result<()>;
    }

    forward! { receiver: Receiver;
        fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize>;
        fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize>;
        fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize>;
        fn recv_pod<T: Pod>(&mut self) -> Result<T>;
        fn try_recv_pod<T: Pod>(&mut self) -> Result<T>;
        fn recv_pod_timeout<T: Pod>(&mut self, timeout: Duration) -> Result<T>;
    }

    /// See [`Receiver::recv_with`].
    ///
    /// # Errors
    ///
    /// As for [`Receiver::recv_with`].
    pub fn recv_with<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.receiver.recv_with(f)
    }

    /// See [`Sender::send_with`].
    ///
    /// # Errors
    ///
    /// As for [`Sender::send_with`].
    pub fn send_with(&mut self, len: usize, f: impl FnOnce(&mut [u8])) -> Result<()> {
        self.sender.send_with(len, f)
    }

    /// The sending side, for its other forms.
    pub fn sender(&mut self) -> &mut Sender {
        &mut self.sender
    }

    /// The receiving side, for its other forms.
    pub fn receiver(&mut self) -> &mut Receiver {
        &mut self.receiver
    }

    /// The two sides, for two threads. The peer learns that the
    /// connection is gone when both are dropped.
    pub fn split(self) -> (Sender, Receiver) {
        (self.sender, self.receiver)
    }

    /// Who is at the other end, as the kernel recorded it when the
    /// connection was made (`SO_PEERCRED`): a service can tell its
    /// clients apart by it, and a client can check that the service runs
    /// as the user it expects.
    pub fn peer_credentials(&self) -> Credentials {
        self.peer
    }

    /// The longest message this end sends.
    pub fn max_message(&self) -> usize {
        self.sender.max_message()
    }

    /// Whether the peer has gone (its socket hung up), asking the kernel
    /// now. Messages it sent before may still wait to be received.
    pub fn peer_gone(&self) -> bool {
        self.receiver.link.look()
    }
}
