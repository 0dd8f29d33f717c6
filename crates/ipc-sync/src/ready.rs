//! Readiness: what lets one thread wait on many endpoints at once.
//!
//! An endpoint that a poller can wait on is [`Pollable`]: for an
//! [`Interest`] (readable, writable) it names a file descriptor that
//! becomes ready when the endpoint may be, and, where the descriptor alone
//! does not tell, a [`Readiness`] hook that the poller calls around each
//! sleep.
//!
//! - Pipes, FIFOs, POSIX queues and eventfds are descriptors already: the
//!   poller waits on them directly, level-triggered. An end whose peer is
//!   gone becomes ready too (a pipe's reader at end of file, a writer whose
//!   reader closed), and the next call on it says so.
//! - An endpoint that keeps data of its own (a frame reader that read a
//!   frame ahead) adds a hook that says it is ready while that data lasts,
//!   whatever its descriptor says.
//! - An endpoint with no descriptor at all (a System V queue, a channel
//!   whose processes share no eventfd) is watched by a thread of the
//!   polling process, a [`Watcher`], which rings an eventfd of its own.
//!
//! [`Poller`](crate::Poller) (also `ipc_kit::Poller`) waits on any mix of them with epoll.

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use crate::EventFd;
pub use crate::watcher::{Watch, Watcher, backoff};

/// What a poller waits for on an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interest {
    /// A message or bytes to receive, or the end of the stream (the peer
    /// is gone): the next receive does not block.
    Readable,
    /// Room to send, or a peer that is gone: the next send does not block.
    Writable,
}

/// An endpoint's part in a poller's wait, for one [`Interest`]: the
/// descriptor to wait on, and the hook to call around each sleep, if the
/// endpoint has one.
#[derive(Debug)]
pub struct Source<'a> {
    /// Ready (for the interest, or with an error or hang-up) whenever the
    /// endpoint may be.
    pub fd: BorrowedFd<'a>,
    /// Whether `fd` is a doorbell: it becomes readable when the endpoint
    /// may be ready, whatever the interest (a sender's doorbell rings for
    /// room). Otherwise it is ready for the interest itself.
    pub doorbell: bool,
    /// Called before and after each sleep; `None` when `fd` tells all.
    pub readiness: Option<Arc<dyn Readiness>>,
}

impl<'a> Source<'a> {
    /// A source whose descriptor tells all.
    pub fn fd(fd: BorrowedFd<'a>) -> Source<'a> {
        Source { fd, doorbell: false, readiness: None }
    }

    /// A doorbell (readable when the endpoint may be ready) and the hook
    /// that arms it.
    pub fn doorbell(fd: BorrowedFd<'a>, readiness: Arc<dyn Readiness>) -> Source<'a> {
        Source { fd, doorbell: true, readiness: Some(readiness) }
    }
}

/// What a poller asks an endpoint whose descriptor does not tell all.
///
/// A poller calls [`arm`](Self::arm) on every such source before it
/// sleeps, sleeps only if none said it is ready, and calls
/// [`disarm`](Self::disarm) after it woke. So readiness is
/// level-triggered: an endpoint that is still ready is reported at the
/// next wait again.
pub trait Readiness: Send + Sync + fmt::Debug {
    /// Asks that the source's descriptor becomes ready when the endpoint
    /// does, from now on; returns whether the endpoint is ready already (a
    /// poller then reports it without sleeping).
    fn arm(&self) -> bool;

    /// Stops asking, after the poller woke; the endpoint is left as it
    /// would be had it never been armed.
    fn disarm(&self) {}

    /// Whether the descriptor is a doorbell that is rung, never drained:
    /// each ring makes it readable anew (a write to an eventfd), and a poller
    /// waits for those edges (`EPOLLET`), not for it to be readable.
    /// Several pollers can then wait on one endpoint without taking each
    /// other's rings.
    fn edges(&self) -> bool {
        false
    }

    /// How long a poller may sleep before it must call `arm` again: for
    /// an endpoint whose peer's death no descriptor reports, so that the
    /// poller notices it within about this time. `None`: no limit.
    fn recheck(&self) -> Option<Duration> {
        None
    }
}

/// An endpoint that a poller can wait on (see the [module docs](self)).
pub trait Pollable {
    /// What to wait on for `interest`: `Ok(None)` when the endpoint never
    /// becomes ready that way (a receiver is never writable).
    ///
    /// # Errors
    ///
    /// What setting the wait up took and could not get (a descriptor, a
    /// thread).
    fn source(&self, interest: Interest) -> io::Result<Option<Source<'_>>>;

    /// Whether an attempt on the endpoint (a `try_*` call) costs no system
    /// call, as on a shared-memory channel: an async wait may then spin on
    /// attempts briefly before it parks. `false` unless said.
    fn polls_cheaply(&self) -> bool {
        false
    }
}

impl<P: Pollable + ?Sized> Pollable for &P {
    fn source(&self, interest: Interest) -> io::Result<Option<Source<'_>>> {
        (**self).source(interest)
    }

    fn polls_cheaply(&self) -> bool {
        (**self).polls_cheaply()
    }
}

impl<P: Pollable + ?Sized> Pollable for &mut P {
    fn source(&self, interest: Interest) -> io::Result<Option<Source<'_>>> {
        (**self).source(interest)
    }

    fn polls_cheaply(&self) -> bool {
        (**self).polls_cheaply()
    }
}

impl<P: Pollable + ?Sized> Pollable for Box<P> {
    fn source(&self, interest: Interest) -> io::Result<Option<Source<'_>>> {
        (**self).source(interest)
    }

    fn polls_cheaply(&self) -> bool {
        (**self).polls_cheaply()
    }
}

/// Readable while its counter is not zero; writable while 1 more fits.
impl Pollable for EventFd {
    fn source(&self, _interest: Interest) -> io::Result<Option<Source<'_>>> {
        Ok(Some(Source::fd(std::os::fd::AsFd::as_fd(self))))
    }
}
