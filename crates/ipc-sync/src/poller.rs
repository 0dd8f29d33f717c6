//! One thread waiting on many endpoints: [`Poller`], over epoll.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::Deadline;
use crate::ready::{Interest, Pollable, Readiness};
use crate::sys;

/// What [`Poller`] refuses, and what fails under it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PollError {
    /// The token is registered already.
    #[error("token {token} is registered already")]
    TokenInUse {
        /// The token.
        token: u64,
    },
    /// No endpoint is registered with this token.
    #[error("no endpoint is registered with token {token}")]
    UnknownToken {
        /// The token.
        token: u64,
    },
    /// The endpoint never becomes ready for this interest (a receiver is
    /// never writable, a sender never readable).
    #[error("the endpoint is never {}", match interest { Interest::Readable => "readable", Interest::Writable => "writable" })]
    NotPollable {
        /// The interest asked for.
        interest: Interest,
    },
    /// The endpoint's descriptor is registered for this interest already,
    /// under another token.
    #[error("the endpoint is registered for this interest already, under token {token}")]
    AlreadyRegistered {
        /// The token it is registered under.
        token: u64,
    },
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// What it returned.
        #[source]
        source: io::Error,
    },
}

impl From<PollError> for io::Error {
    fn from(e: PollError) -> io::Error {
        let kind = match &e {
            PollError::TokenInUse { .. } | PollError::AlreadyRegistered { .. } => io::ErrorKind::AlreadyExists,
            PollError::UnknownToken { .. } => io::ErrorKind::NotFound,
            PollError::NotPollable { .. } => io::ErrorKind::InvalidInput,
            PollError::Io { source, .. } => source.kind(),
        };
        io::Error::new(kind, e)
    }
}

/// One registration: a token, its interest and its hook.
#[derive(Debug)]
struct Entry {
    token: u64,
    /// The epoll event that reports it: its interest's, or `EPOLLIN` for
    /// a doorbell.
    event: EpollFlags,
    /// A doorbell's ring asks for a look (the next arming), and is no
    /// report by itself.
    doorbell: bool,
    readiness: Option<Arc<dyn Readiness>>,
}

/// A registered descriptor and what it is registered for: at most one
/// token per interest.
#[derive(Debug)]
struct Registered {
    fd: RawFd,
    readable: Option<Entry>,
    writable: Option<Entry>,
}

impl Registered {
    fn slot(&mut self, interest: Interest) -> &mut Option<Entry> {
        match interest {
            Interest::Readable => &mut self.readable,
            Interest::Writable => &mut self.writable,
        }
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.readable.iter().chain(self.writable.iter())
    }

    /// The epoll events it waits for (hang-ups and errors always count).
    fn flags(&self) -> EpollFlags {
        self.entries().fold(EpollFlags::empty(), |f, e| f | e.event)
    }
}

/// How many epoll events one wait takes at most (more stay for the next).
const EVENTS: usize = 256;

/// Waits on any mix of endpoints of every mechanism at once, with epoll.
///
/// Register each endpoint with a token of your choosing and an
/// [`Interest`]; [`wait`](Self::wait) (and its `try_`, `_timeout` and
/// `_deadline` forms) returns the tokens of those that are ready.
///
/// - **Level-triggered:** an endpoint is reported at every wait while it
///   is ready: a receiver while a message (or its peer's departure) waits
///   to be received, a sender while it has room (or its peer is gone). So
///   receive with `try_recv` until it finds nothing, or come back to it
///   at the next wait: nothing is lost either way. A report is a promise
///   that the next call does not block for long, not that it succeeds: it
///   may find the peer gone (`Disconnected`, end of file, a broken pipe),
///   or, where another process took the message first (a queue with many
///   readers), nothing.
/// - **What wakes it:** data for a receiver, room for a sender, and the
///   end of the peer: a pipe or FIFO whose other end closed (also when its
///   process died), an endpoint whose peer's death its own descriptor
///   does not report is looked at again at least as often as it asks (see
///   [`Readiness::recheck`]).
/// - **Registration is by descriptor:** an endpoint must stay open while it
///   is registered; [`remove`](Self::remove) it before you drop it. The
///   `Poller` closes nothing and holds no descriptor of the endpoint's
///   (a pipe end dropped while registered still closes), but it holds an
///   endpoint's readiness hook, if it has one, until removed: a channel's
///   memory (and its name) stays until then. One descriptor may be
///   registered once per interest (a POSIX queue as readable under one
///   token and writable under another); several pollers may wait on one
///   endpoint at once.
/// - **A descriptor closed before it was removed** is forgotten when it is
///   removed, or when a wait hears from it: the `Poller` then makes its
///   epoll afresh with what is registered (epoll itself keeps a closed
///   descriptor's registration while another process holds its file).
///
/// ```
/// use std::time::Duration;
/// use ipc_sync::{EventFd, EventFdMode, Interest, Poller};
///
/// let (a, b) = (EventFd::new(0, EventFdMode::Counter)?, EventFd::new(0, EventFdMode::Counter)?);
/// let mut poller = Poller::new()?;
/// poller.add(&a, Interest::Readable, 1)?;
/// poller.add(&b, Interest::Readable, 2)?;
/// assert!(poller.wait_timeout(Duration::from_millis(1))?.is_empty());
/// b.add(1)?;
/// assert_eq!(poller.wait()?, [2]);
/// // Level-triggered: still ready until the counter is read.
/// assert_eq!(poller.try_wait()?, [2]);
/// b.read()?;
/// assert!(poller.try_wait()?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Poller {
    epoll: Epoll,
    registered: Vec<Registered>,
    events: Vec<EpollEvent>,
    ready: Vec<u64>,
}

impl Poller {
    /// A poller with nothing registered.
    ///
    /// # Errors
    ///
    /// [`PollError::Io`] when `epoll_create1` fails (out of descriptors).
    pub fn new() -> Result<Poller, PollError> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| io_err("epoll_create1", e))?;
        Ok(Poller { epoll, registered: Vec::new(), events: vec![EpollEvent::empty(); EVENTS], ready: Vec::new() })
    }

    /// Registers `endpoint` for `interest` under `token`.
    ///
    /// # Errors
    ///
    /// - [`PollError::TokenInUse`] when `token` is registered already;
    /// - [`PollError::NotPollable`] when the endpoint never becomes ready
    ///   for `interest`;
    /// - [`PollError::AlreadyRegistered`] when its descriptor is registered
    ///   for `interest` under another token;
    /// - [`PollError::Io`] when `epoll_ctl` fails.
    pub fn add(
        &mut self,
        endpoint: &(impl Pollable + ?Sized),
        interest: Interest,
        token: u64,
    ) -> Result<(), PollError> {
        if self.find(token).is_some() {
            return Err(PollError::TokenInUse { token });
        }
        let source = endpoint
            .source(interest)
            .map_err(|source| PollError::Io { op: "setting up the endpoint's readiness", source })?
            .ok_or(PollError::NotPollable { interest })?;
        let mut event = if source.doorbell { flag(Interest::Readable) } else { flag(interest) };
        if source.readiness.as_ref().is_some_and(|r| r.edges()) {
            event |= EpollFlags::EPOLLET;
        }
        let entry = Entry { token, event, doorbell: source.doorbell, readiness: source.readiness };
        let fd = source.fd;
        let number = fd.as_raw_fd();
        if let Some(at) = self.registered.iter().position(|r| r.fd == number) {
            let reg = &mut self.registered[at];
            let mut event = EpollEvent::new(reg.flags() | entry.event, number as u64);
            if let Some(other) = reg.slot(interest) {
                // Registered: unless the number belonged to a descriptor
                // closed since, which epoll forgot (it knows this one not).
                let token = other.token;
                match self.epoll.modify(fd, &mut event) {
                    Err(Errno::ENOENT) => {}
                    _ => return Err(PollError::AlreadyRegistered { token }),
                }
            }
            match self.epoll.modify(fd, &mut event) {
                Ok(()) => {
                    *reg.slot(interest) = Some(entry);
                    return Ok(());
                }
                // The descriptor registered before was closed (and its
                // number reused): what was registered under it is gone,
                // and epoll may still hold it (if the file lives on in
                // another descriptor): start epoll afresh without it.
                Err(Errno::ENOENT) => {
                    self.registered.remove(at);
                    self.rebuild()?;
                }
                Err(e) => return Err(io_err("epoll_ctl(EPOLL_CTL_MOD)", e)),
            }
        }
        let mut one = Registered { fd: number, readable: None, writable: None };
        *one.slot(interest) = Some(entry);
        self.epoll
            .add(fd, EpollEvent::new(one.flags(), number as u64))
            .map_err(|e| io_err("epoll_ctl(EPOLL_CTL_ADD)", e))?;
        self.registered.push(one);
        Ok(())
    }

    /// Unregisters what was registered under `token`.
    ///
    /// # Errors
    ///
    /// [`PollError::UnknownToken`] when nothing is; [`PollError::Io`] when
    /// `epoll_ctl` fails, or, for a descriptor closed meanwhile, when a new
    /// epoll cannot be made (see the type's docs).
    pub fn remove(&mut self, token: u64) -> Result<(), PollError> {
        let (at, interest) = self.find(token).ok_or(PollError::UnknownToken { token })?;
        let reg = &mut self.registered[at];
        reg.slot(interest).take();
        let fd = reg.fd;
        // The descriptor may be closed by now: by its number.
        let r = if reg.readable.is_none() && reg.writable.is_none() {
            self.registered.remove(at);
            sys::epoll_ctl_number(&self.epoll, fd, None)
        } else {
            sys::epoll_ctl_number(&self.epoll, fd, Some(EpollEvent::new(reg.flags(), fd as u64)))
        };
        match r {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            // Closed: epoll forgets it only when its file closes, which
            // another descriptor (a forked child's) may keep open.
            Err(Errno::EBADF) => self.rebuild(),
            Err(e) => Err(io_err("epoll_ctl", e)),
        }
    }

    /// A new epoll with what is registered, every descriptor by its
    /// number: forgets whatever the old one held for numbers that were
    /// closed (and drops the registrations of those still closed).
    fn rebuild(&mut self) -> Result<(), PollError> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| io_err("epoll_create1", e))?;
        let mut kept = Vec::with_capacity(self.registered.len());
        for reg in self.registered.drain(..) {
            match sys::epoll_add_number(&epoll, reg.fd, EpollEvent::new(reg.flags(), reg.fd as u64)) {
                Ok(()) => kept.push(reg),
                Err(Errno::EBADF) => {}
                Err(e) => return Err(io_err("epoll_ctl(EPOLL_CTL_ADD)", e)),
            }
        }
        self.registered = kept;
        self.epoll = epoll;
        Ok(())
    }

    /// How many registrations there are.
    pub fn len(&self) -> usize {
        self.registered.iter().map(|r| r.entries().count()).sum()
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.registered.is_empty()
    }

    /// Waits until at least one registered endpoint is ready, and returns
    /// the tokens of those that are (each once). With nothing registered,
    /// waits for ever.
    ///
    /// # Errors
    ///
    /// [`PollError::Io`] when `epoll_wait` fails (not on `EINTR`, which is
    /// waited through).
    pub fn wait(&mut self) -> Result<&[u64], PollError> {
        self.wait_until(Deadline::never())
    }

    /// The tokens of the endpoints ready now, without waiting (perhaps
    /// none).
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait).
    pub fn try_wait(&mut self) -> Result<&[u64], PollError> {
        self.wait_until(Deadline::after(Duration::ZERO))
    }

    /// Waits at most `timeout` for an endpoint to be ready; the tokens of
    /// those that are, none if the time ran out.
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<&[u64], PollError> {
        self.wait_until(Deadline::after(timeout))
    }

    /// Waits until `deadline` (on the monotonic clock) at most; as
    /// [`wait_timeout`](Self::wait_timeout).
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait).
    pub fn wait_deadline(&mut self, deadline: Instant) -> Result<&[u64], PollError> {
        self.wait_until(Deadline::at(deadline))
    }

    fn wait_until(&mut self, deadline: Deadline) -> Result<&[u64], PollError> {
        self.ready.clear();
        loop {
            let mut recheck: Option<Duration> = None;
            for entry in self.registered.iter().flat_map(Registered::entries) {
                if let Some(r) = &entry.readiness {
                    if r.arm() {
                        self.ready.push(entry.token);
                    }
                    recheck = match (recheck, r.recheck()) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
            let mut timeout_ms = if self.ready.is_empty() { deadline.poll_timeout_ms() } else { 0 };
            if let Some(every) = recheck {
                let every = i32::try_from(every.as_millis().max(1)).unwrap_or(i32::MAX);
                timeout_ms = if timeout_ms < 0 { every } else { timeout_ms.min(every) };
            }
            let timeout = EpollTimeout::try_from(timeout_ms).unwrap_or(EpollTimeout::NONE);
            let woken = match self.epoll.wait(&mut self.events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => {
                    self.disarm();
                    return Err(io_err("epoll_wait", e));
                }
            };
            let mut stale = false;
            for event in &self.events[..woken] {
                let flags = event.events();
                let Some(reg) = self.registered.iter().find(|r| r.fd as u64 == event.data()) else {
                    stale = true;
                    continue;
                };
                let gone = flags.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR);
                for e in reg.entries().filter(|e| !e.doorbell && (gone || flags.intersects(e.event))) {
                    self.ready.push(e.token);
                }
            }
            self.disarm();
            if stale {
                // Something closed without being removed, kept open
                // elsewhere: it would wake us again and again.
                self.rebuild()?;
            }
            if !self.ready.is_empty() {
                break;
            }
            if deadline.has_expired() {
                // A last look, for what a doorbell rang for at the end.
                self.ready.extend(self.registered.iter().flat_map(Registered::entries).filter_map(|e| {
                    let look = e.readiness.as_ref().is_some_and(|r| {
                        let ready = r.arm();
                        r.disarm();
                        ready
                    });
                    look.then_some(e.token)
                }));
                break;
            }
        }
        self.ready.sort_unstable();
        self.ready.dedup();
        Ok(&self.ready)
    }

    fn disarm(&self) {
        for r in self.registered.iter().flat_map(Registered::entries).filter_map(|e| e.readiness.as_ref()) {
            r.disarm();
        }
    }

    fn find(&self, token: u64) -> Option<(usize, Interest)> {
        self.registered.iter().enumerate().find_map(|(at, r)| {
            if r.readable.as_ref().is_some_and(|e| e.token == token) {
                Some((at, Interest::Readable))
            } else if r.writable.as_ref().is_some_and(|e| e.token == token) {
                Some((at, Interest::Writable))
            } else {
                None
            }
        })
    }
}

/// The epoll event of an interest.
fn flag(interest: Interest) -> EpollFlags {
    match interest {
        Interest::Readable => EpollFlags::EPOLLIN,
        Interest::Writable => EpollFlags::EPOLLOUT,
    }
}

fn io_err(op: &'static str, e: Errno) -> PollError {
    PollError::Io { op, source: io::Error::from(e) }
}
