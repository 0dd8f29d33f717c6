//! A connection's liveness (its socket) and how a side of it waits: on
//! the channel's doorbell and the socket at once, so that the peer's
//! death wakes it as a message would.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ipc_socket::SeqpacketSocket;
use ipc_sync::Deadline;
use ipc_sync::os::{PollFlags, poll_now};
use ipc_sync::ready::{Readiness, Source};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::error::{Error, Result};

/// How often a `try_*` call that found nothing asks the kernel whether
/// the socket hung up, at most (a waiting call asks before it sleeps,
/// and its sleep ends when it does).
const LOOK_EVERY: Duration = Duration::from_micros(200);

/// How often a sleeping side looks at the ring again, whatever woke it or
/// not: for a peer that writes into it without ringing the doorbell.
const LOOK_AGAIN: Duration = Duration::from_millis(100);

/// A connection's socket, which says whether the peer is still there: it
/// hangs up when the peer closes it or dies, in any state, also before
/// the peer has touched the shared memory. Shared by both sides of the
/// connection.
#[derive(Debug)]
pub(crate) struct Link {
    socket: SeqpacketSocket,
    gone: AtomicBool,
    born: Instant,
    /// When `look_sometimes` last asked, in ns since `born`.
    asked: AtomicU64,
    /// The service's count of clients, for a connection made by a service.
    _seat: Option<Seat>,
}

impl Link {
    pub(crate) fn new(socket: SeqpacketSocket, seat: Option<Seat>) -> Arc<Link> {
        Arc::new(Link {
            socket,
            gone: AtomicBool::new(false),
            born: Instant::now(),
            asked: AtomicU64::new(0),
            _seat: seat,
        })
    }

    pub(crate) fn socket(&self) -> &SeqpacketSocket {
        &self.socket
    }

    /// Whether the peer is gone, asking the kernel.
    pub(crate) fn look(&self) -> bool {
        if self.gone.load(Ordering::Relaxed) {
            return true;
        }
        // Only both directions shut (the peer closed its socket, or died,
        // or shut it down whole) count: a peer that shut down its writing
        // alone is still there, and its messages go through the memory.
        let hung = PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
        // A failed poll of our own socket cannot be told from a hang-up
        // either: take it for one rather than wait on a socket that
        // cannot say.
        let gone = poll_now(self.socket.as_fd(), PollFlags::empty()).map_or(true, |got| got.intersects(hung));
        if gone {
            self.gone.store(true, Ordering::Relaxed);
        }
        gone
    }

    /// As [`look`](Self::look), asking the kernel at most every
    /// [`LOOK_EVERY`].
    pub(crate) fn look_sometimes(&self) -> bool {
        if self.gone.load(Ordering::Relaxed) {
            return true;
        }
        let now = (self.born.elapsed().as_nanos() as u64).max(1);
        let last = self.asked.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < LOOK_EVERY.as_nanos() as u64 {
            return false;
        }
        self.asked.store(now, Ordering::Relaxed);
        self.look()
    }
}

/// A place among a service's clients, held by the service's end of a
/// connection: the count of clients goes down when it goes.
#[derive(Debug)]
pub(crate) struct Seat(Arc<AtomicUsize>);

impl Seat {
    pub(crate) fn take(count: &Arc<AtomicUsize>) -> Seat {
        count.fetch_add(1, Ordering::Relaxed);
        Seat(Arc::clone(count))
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The readiness of a side of a connection for a poller: the channel
/// side's, or the socket's hang-up.
#[derive(Debug)]
struct SideReady {
    side: Arc<dyn Readiness>,
    link: Option<Arc<Link>>,
}

impl Readiness for SideReady {
    fn arm(&self) -> bool {
        // Always armed, so that every disarm has its arm.
        let ready = self.side.arm();
        ready || self.link.as_ref().is_some_and(|l| l.look())
    }

    fn disarm(&self) {
        self.side.disarm();
    }

    fn edges(&self) -> bool {
        // The descriptor is the waiter's epoll, which becomes readable
        // anew with each ring of the doorbell it holds (and once when the
        // socket hangs up); what is ready is asked of `arm`.
        true
    }

    fn recheck(&self) -> Option<Duration> {
        // The channel looks at its peer every 20 ms for a peer whose death
        // nothing reports; here the socket does, in the same epoll. What
        // is left is a peer that writes without ringing (scribbles, or
        // handed doorbells that are not the channel's): looked for every
        // `LOOK_AGAIN`, which costs an idle side a few wake-ups a second.
        // A shorter recheck (a refused barrier) stays.
        Some(match self.side.recheck() {
            Some(every) if every < ipc_shm::channel::LIVENESS_RECHECK => every,
            _ => LOOK_AGAIN,
        })
    }
}

/// How a side of a connection sleeps: an epoll of its own holding the
/// channel side's doorbell (edge-triggered: it is rung, never drained)
/// and the connection's socket (for its hang-up). A poller waits on this
/// epoll too.
#[derive(Debug)]
pub(crate) struct Waiter {
    epoll: Epoll,
    ready: Arc<SideReady>,
}

impl Waiter {
    /// A waiter for a channel side whose poller source is `source`.
    pub(crate) fn new(source: Source<'_>, link: Option<&Arc<Link>>) -> Result<Waiter> {
        let side = source.readiness.ok_or_else(|| Error::handshake("a channel side without a doorbell"))?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| Error::io("epoll_create1", std::io::Error::from(e)))?;
        let mut bell = EpollFlags::EPOLLIN;
        if side.edges() {
            bell |= EpollFlags::EPOLLET;
        }
        let add = |fd: BorrowedFd<'_>, flags: EpollFlags, token: u64| {
            epoll.add(fd, EpollEvent::new(flags, token)).map_err(|e| Error::io("epoll_ctl", std::io::Error::from(e)))
        };
        add(source.fd, bell, 0)?;
        // No interest: epoll reports the hang-up (and an error) anyway, and
        // nothing else of the socket's (what a peer sends on it, or its
        // shutting down its writing alone, which would keep the socket
        // ready for good).
        if let Some(link) = link {
            add(link.socket().as_fd(), EpollFlags::empty(), 1)?;
        }
        Ok(Waiter { epoll, ready: Arc::new(SideReady { side, link: link.cloned() }) })
    }

    /// Sleeps until the doorbell rings, the socket hangs up, the side is
    /// ready when armed, or the deadline (or the side's recheck time)
    /// passes. The caller then looks again.
    pub(crate) fn park(&self, deadline: Deadline) -> Result<()> {
        let ready = self.ready.arm();
        if !ready {
            let mut ms = deadline.poll_timeout_ms();
            if let Some(every) = self.ready.recheck() {
                let every = i32::try_from(every.as_millis().max(1)).unwrap_or(i32::MAX);
                ms = if ms < 0 { every } else { ms.min(every) };
            }
            let mut events = [EpollEvent::empty(); 2];
            let timeout = EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::NONE);
            match self.epoll.wait(&mut events, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    self.ready.disarm();
                    return Err(Error::io("epoll_wait", std::io::Error::from(e)));
                }
            }
        }
        self.ready.disarm();
        Ok(())
    }

    /// What a poller waits on for this side.
    pub(crate) fn source(&self) -> Source<'_> {
        Source::doorbell(self.epoll.0.as_fd(), Arc::clone(&self.ready) as Arc<dyn Readiness>)
    }
}
