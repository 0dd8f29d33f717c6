//! The service's end: [`Service`], bound at a name, accepting clients.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ipc_shm::ByteChannel;
use ipc_socket::{BindOptions, Credentials, SeqpacketListener, SeqpacketSocket, SocketName};
use ipc_sync::Deadline;
use ipc_sync::ready::{Interest, Pollable, Readiness, Source};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::memfd::{MFdFlags, memfd_create};

use crate::connection::{Connection, Receiver, Sender};
use crate::error::{Error, Refusal, Result};
use crate::link::{Link, Seat};
use crate::options::ServiceOptions;
use crate::wire;

/// The memfd labels (`/memfd:LABEL` in `/proc/PID/fd`) by which `ipc-kit
/// ls` finds services and their clients: an empty memfd the service holds
/// for its life, and each connection's rings, all followed by a space and
/// the service's name.
pub const LABEL_SERVICE: &str = "ipc-service";
/// See [`LABEL_SERVICE`]: a connection's ring of requests.
pub const LABEL_REQUESTS: &str = "ipc-service-requests";
/// See [`LABEL_SERVICE`]: a connection's ring of replies.
pub const LABEL_REPLIES: &str = "ipc-service-replies";

/// A memfd label: `kind`, a space and the service's name written as
/// `ipc-kit ls` writes names (`ipc_sync::object::escape_name`; an abstract
/// name with its `@`), cut to the 249 bytes a label may have, with `…` at
/// the end when it was cut. `ipc-kit ls` tells services apart by their
/// memfds, not by these names.
pub(crate) fn label(kind: &str, name: &SocketName) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = match name {
        SocketName::Path(p) => p.as_os_str().as_bytes().to_vec(),
        SocketName::Abstract(a) => [b"@".as_slice(), a].concat(),
    };
    let escaped = ipc_sync::object::escape_name(&bytes);
    let room = 249 - kind.len() - 1;
    if escaped.len() <= room {
        return format!("{kind} {escaped}");
    }
    // Cut between whole characters and escapes (`\\`, `\xNN`).
    let budget = room - '…'.len_utf8();
    let (mut end, mut rest) = (0, escaped.as_str());
    while let Some(c) = rest.chars().next() {
        let unit = match (c, rest.as_bytes().get(1)) {
            ('\\', Some(b'x')) => 4,
            ('\\', _) => 2,
            (c, _) => c.len_utf8(),
        };
        if end + unit > budget {
            break;
        }
        end += unit;
        rest = &rest[unit..];
    }
    format!("{kind} {}…", &escaped[..end])
}

/// The epoll token of the listener; a client in its handshake has its
/// own, from 1 on.
const LISTENER: u64 = 0;

/// The clients taken from the listener's backlog at once: the others wait
/// for the next pass, so that a flood of them cannot hold a call past its
/// deadline.
const ACCEPTS_PER_PASS: usize = 16;

/// A client that connected and was let in, whose greeting has not come
/// yet.
#[derive(Debug)]
struct Pending {
    token: u64,
    socket: SeqpacketSocket,
    peer: Credentials,
    until: Instant,
}

/// When the first handshake in progress runs out: a poller looks again
/// then, so that the service drops it.
#[derive(Debug, Default)]
struct Expiry(Mutex<Option<Instant>>);

impl Expiry {
    fn set(&self, at: Option<Instant>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }

    fn get(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Readiness for Expiry {
    fn arm(&self) -> bool {
        self.get().is_some_and(|at| Instant::now() >= at)
    }

    fn recheck(&self) -> Option<Duration> {
        self.get().map(|at| at.saturating_duration_since(Instant::now()))
    }
}

/// A service, found by its name: clients [`connect`](crate::connect) to
/// it, and each one it lets in gets a [`Connection`] of its own, two
/// shared-memory channels in sealed memfds that the service makes and
/// passes over the socket (no name in /dev/shm; no other process can map
/// them).
///
/// A client is judged when it connects, by the credentials the kernel
/// recorded for it ([`Access`](crate::Access)), and counted against
/// [`max_clients`](ServiceOptions::max_clients); one turned away gets a
/// typed [`Refusal`] and no descriptor. One let in then has
/// [`handshake_timeout`](ServiceOptions::handshake_timeout) to greet
/// the service. A service answers greetings while it accepts: handshakes
/// in progress never hold up others, and a client that stalls, sends
/// garbage or descriptors is dropped or refused without the caller seeing
/// it.
///
/// The socket file is removed when the service is dropped; connections
/// made live on.
#[derive(Debug)]
pub struct Service {
    listener: SeqpacketListener,
    options: ServiceOptions,
    own_uid: u32,
    epoll: Epoll,
    pending: Vec<Pending>,
    next_token: u64,
    seats: Arc<AtomicUsize>,
    expiry: Arc<Expiry>,
    /// The empty memfd that says a service is here (see [`LABEL_SERVICE`]).
    _marker: OwnedFd,
}

impl Service {
    /// Binds a service at `name` (a socket file, taken over if it is
    /// stale, or an abstract name).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`] for options out of range (before anything
    /// is bound); [`Error::Socket`] as for `SeqpacketListener::bind_with`
    /// (`InUse` for a live service there).
    pub fn bind(name: &SocketName, options: ServiceOptions) -> Result<Service> {
        options.check().map_err(|reason| Error::InvalidOptions { reason })?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| Error::io("epoll_create1", std::io::Error::from(e)))?;
        let bind = BindOptions { mode: options.mode, ..BindOptions::default() };
        let listener = SeqpacketListener::bind_with(name, &bind)?;
        let marker = memfd_create(label(LABEL_SERVICE, name).as_str(), MFdFlags::MFD_CLOEXEC)
            .map_err(|e| Error::io("memfd_create", e))?;
        epoll
            .add(listener.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))
            .map_err(|e| Error::io("epoll_ctl", std::io::Error::from(e)))?;
        Ok(Service {
            listener,
            options,
            own_uid: nix::unistd::geteuid().as_raw(),
            epoll,
            pending: Vec::new(),
            next_token: LISTENER + 1,
            seats: Arc::new(AtomicUsize::new(0)),
            expiry: Arc::default(),
            _marker: marker,
        })
    }

    /// The name the service is bound at.
    pub fn name(&self) -> &SocketName {
        self.listener.name()
    }

    /// The options it was bound with.
    pub fn options(&self) -> &ServiceOptions {
        &self.options
    }

    /// The clients connected: the service's connections not yet dropped.
    pub fn clients(&self) -> usize {
        self.seats.load(Ordering::Relaxed)
    }

    /// The clients let in whose greeting has not come yet.
    pub fn handshakes(&self) -> usize {
        self.pending.len()
    }

    /// Waits for the next client that completes its handshake.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfDescriptors`] when this process has no room for a new
    /// socket or the connection's descriptors (the client waiting is
    /// refused with [`Refusal::Unavailable`]; call again once there is
    /// room); [`Error::Io`].
    pub fn accept(&mut self) -> Result<Connection> {
        self.accept_until(Some(Deadline::never()))
    }

    /// Takes the next client if one can complete its handshake now.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`], and as for [`accept`](Self::accept).
    pub fn try_accept(&mut self) -> Result<Connection> {
        self.accept_until(None)
    }

    /// As [`accept`](Self::accept), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`accept`](Self::accept).
    pub fn accept_timeout(&mut self, timeout: Duration) -> Result<Connection> {
        self.accept_until(Some(Deadline::after(timeout)))
    }

    /// As [`accept`](Self::accept), waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`accept`](Self::accept).
    pub fn accept_deadline(&mut self, deadline: Instant) -> Result<Connection> {
        self.accept_until(Some(Deadline::at(deadline)))
    }

    fn accept_until(&mut self, deadline: Option<Deadline>) -> Result<Connection> {
        let mut events = [EpollEvent::empty(); 16];
        let mut first = true;
        let mut rounds = 0;
        loop {
            rounds += 1;
            self.drop_expired();
            let ms = match deadline {
                Some(d) if !first => {
                    let mut ms = d.poll_timeout_ms();
                    if let Some(at) = self.expiry.get() {
                        let left = at.saturating_duration_since(Instant::now()).as_millis().max(1);
                        let left = i32::try_from(left).unwrap_or(i32::MAX);
                        ms = if ms < 0 { left } else { ms.min(left) };
                    }
                    ms
                }
                _ => 0,
            };
            first = false;
            let timeout = EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::NONE);
            let woken = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => return Err(Error::io("epoll_wait", std::io::Error::from(e))),
            };
            for event in &events[..woken] {
                let made = if event.data() == LISTENER { self.take_new()? } else { self.greeted(event.data())? };
                if let Some(conn) = made {
                    return Ok(conn);
                }
            }
            // Each event was worked off. A `try_*` call looks once more (a
            // greeting may have come with a client just accepted), no
            // more: a flood of clients that are refused must not hold it.
            // A timed one goes on until its deadline, whatever comes.
            match deadline {
                None if woken == 0 || rounds >= 2 => return Err(Error::WouldBlock),
                Some(d) if d.has_expired() => return Err(Error::Timeout),
                _ => {}
            }
        }
    }

    /// Accepts the clients waiting (up to [`ACCEPTS_PER_PASS`]), judges
    /// each, and keeps those let in until they greet.
    fn take_new(&mut self) -> Result<Option<Connection>> {
        for _ in 0..ACCEPTS_PER_PASS {
            let socket = match self.listener.try_accept() {
                Ok(s) => s,
                Err(ipc_socket::Error::WouldBlock) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let Ok(peer) = socket.peer_credentials() else { continue };
            if !self.options.access.allows(&peer, self.own_uid) {
                refuse(&socket, Refusal::Denied);
                continue;
            }
            if self.clients() + self.pending.len() >= self.options.max_clients {
                refuse(&socket, Refusal::Full);
                continue;
            }
            let token = self.next_token;
            self.next_token += 1;
            if let Err(e) = self.epoll.add(socket.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token)) {
                refuse(&socket, Refusal::Unavailable);
                return Err(Error::io("epoll_ctl", std::io::Error::from(e)));
            }
            let until = Instant::now() + self.options.handshake_timeout;
            self.pending.push(Pending { token, socket, peer, until });
            self.set_expiry();
        }
        Ok(None)
    }

    /// Reads the greeting of the client in its handshake under `token`:
    /// a connection for it, or nothing (it was dropped or refused).
    fn greeted(&mut self, token: u64) -> Result<Option<Connection>> {
        let Some(at) = self.pending.iter().position(|p| p.token == token) else { return Ok(None) };
        let mut buf = [0u8; 64];
        // Room for one descriptor, so that any that came are seen (and
        // closed); with none asked for, the kernel would drop them unseen.
        let got = self.pending[at].socket.try_recv_with_fds(&mut buf, 1);
        if matches!(got, Err(ipc_socket::Error::WouldBlock)) {
            return Ok(None);
        }
        let p = self.forget(at);
        match got {
            Ok((n, fds)) if fds.is_empty() && wire::is_hello(&buf[..n]) => self.welcome(p),
            // Garbage, or descriptors (closed by now, unread).
            Ok(_) | Err(ipc_socket::Error::FdsTruncated { .. } | ipc_socket::Error::Truncated { .. }) => {
                refuse(&p.socket, Refusal::Protocol);
                Ok(None)
            }
            // Gone before it greeted.
            Err(_) => Ok(None),
        }
    }

    /// Makes the connection of a client that greeted, and hands it the
    /// client's ends.
    fn welcome(&mut self, p: Pending) -> Result<Option<Connection>> {
        let Pending { socket, peer, .. } = p;
        let (requests, replies) = (self.options.request_capacity, self.options.reply_capacity);
        let made = make_channels(self.listener.name(), requests, replies);
        let (receiver, sender, fds) = match made {
            Ok(m) => m,
            Err(e) => {
                refuse(&socket, Refusal::Unavailable);
                return Err(e);
            }
        };
        let link = Link::new(socket, Some(Seat::take(&self.seats)));
        let sides =
            Receiver::new(receiver.0, receiver.1, &link).and_then(|r| Ok((r, Sender::new(sender.0, sender.1, &link)?)));
        let (receiver, sender) = match sides {
            Ok(s) => s,
            Err(e) => {
                refuse(link.socket(), Refusal::Unavailable);
                return Err(e);
            }
        };
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
        match link.socket().try_send_with_fds(&wire::answer(None, requests, replies), &borrowed) {
            Ok(()) => Ok(Some(Connection::new(sender, receiver, peer))),
            Err(ipc_socket::Error::OutOfDescriptors { op, .. }) => Err(Error::OutOfDescriptors { op }),
            // The client is gone (or its socket full of its own garbage).
            Err(_) => Ok(None),
        }
    }

    /// Drops the handshakes that ran out of time.
    fn drop_expired(&mut self) {
        let now = Instant::now();
        if self.expiry.get().is_none_or(|at| now < at) {
            return;
        }
        while let Some(at) = self.pending.iter().position(|p| p.until <= now) {
            self.forget(at);
        }
        self.set_expiry();
    }

    /// Takes a handshake out of the list and out of the epoll.
    fn forget(&mut self, at: usize) -> Pending {
        let p = self.pending.swap_remove(at);
        let _ = self.epoll.delete(p.socket.as_fd());
        self.set_expiry();
        p
    }

    fn set_expiry(&self) {
        self.expiry.set(self.pending.iter().map(|p| p.until).min());
    }
}

/// Turns a client away, telling it why (a fresh socket has room for the
/// answer; one that went meanwhile needs none). What the client sent and
/// nobody read is read first and dropped: a socket closed with unread
/// messages makes the peer's next receive fail (`ECONNRESET`) before it
/// reads the answer (clients still look again after such a failure, for
/// a greeting that comes in between).
fn refuse(socket: &SeqpacketSocket, why: Refusal) {
    refuse_with(socket, &wire::answer(Some(why), 0, 0));
}

/// Turns a client away with `answer`, after reading what it sent (so
/// that closing does not reset its socket with its greeting unread).
pub(crate) fn refuse_with(socket: &SeqpacketSocket, answer: &[u8]) {
    let mut junk = [0u8; 64];
    for _ in 0..64 {
        match socket.try_recv_with_fds(&mut junk, 1) {
            Ok(_) | Err(ipc_socket::Error::Truncated { .. } | ipc_socket::Error::FdsTruncated { .. }) => {}
            Err(_) => break,
        }
    }
    let _ = socket.try_send(answer);
}

/// The channel sides a new connection's service keeps, and the
/// descriptors its client gets: requests' memfd and doorbells, then
/// replies'.
type Made = ((ipc_shm::ByteReceiver, usize), (ipc_shm::ByteSender, usize), Vec<OwnedFd>);

fn make_channels(name: &SocketName, requests: usize, replies: usize) -> Result<Made> {
    let req = ByteChannel::new_memfd_labelled(requests, &label(LABEL_REQUESTS, name))?;
    let rep = ByteChannel::new_memfd_labelled(replies, &label(LABEL_REPLIES, name))?;
    for chan in [&req, &rep] {
        // Sealed against shrinking (by `new_memfd`) and growing: the size
        // both ends mapped is the size for good.
        chan.memfd().ok_or_else(|| Error::handshake("a channel without its memfd"))?.seal_grow()?;
    }
    let receiver = req.receiver()?;
    let sender = rep.sender()?;
    let mut fds = Vec::with_capacity(wire::WELCOME_FDS);
    for chan in [&req, &rep] {
        let (memfd, [a, b]) = chan.handoff()?.into_fds();
        fds.extend([memfd, a, b]);
    }
    Ok(((receiver, req.max_record()), (sender, rep.max_record()), fds))
}

/// Readable when a client waits to be accepted or greeted (or a
/// handshake ran out of time): the next [`Service::try_accept`] has work,
/// though it may end with `WouldBlock` (a greeting that was garbage).
impl Pollable for Service {
    fn source(&self, interest: Interest) -> std::io::Result<Option<Source<'_>>> {
        Ok((interest == Interest::Readable).then(|| Source {
            fd: self.epoll.0.as_fd(),
            doorbell: false,
            readiness: Some(Arc::clone(&self.expiry) as Arc<dyn Readiness>),
        }))
    }
}
