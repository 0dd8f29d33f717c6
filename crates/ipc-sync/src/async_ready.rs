//! Readiness for async code: an endpoint's [`Source`](crate::Source)
//! registered with tokio's reactor (feature `tokio`).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ready::{Interest, Pollable, Readiness};

/// How long a wait may spin on attempts before it parks, at most: a
/// receive that spins never holds its executor thread longer than this
/// (plus one attempt).
pub const MAX_SPIN: Duration = Duration::from_micros(4);

/// How long a wait may go on attempting between yields to the runtime
/// before it parks, at most (see [`AsyncReady::with_yielding`]).
pub const MAX_YIELDING: Duration = Duration::from_micros(100);

/// How long the async forms of endpoints whose attempts are system calls
/// (pipes, FIFOs, message queues) go on attempting between yields before
/// they park: longer than a wake-up's latency (tens of microseconds), so a
/// peer that answers at once is heard without one.
pub const SYSCALL_YIELDING: Duration = Duration::from_micros(30);

/// An endpoint's readiness for async code: what a
/// [`Poller`](crate::Poller) would wait on (a copy of the endpoint's
/// descriptor, or its doorbell), registered with the reactor of each tokio
/// runtime whose tasks park on it, and the endpoint's [`Readiness`] hook.
///
/// An endpoint's own descriptor (a pipe's, a FIFO's, a queue's) is
/// registered only while a task is parked on it, because a pipe or FIFO
/// registered with an epoll set costs each write into it a wake-up call
/// into that set, parked or not (about 15% of a 64-byte writer's rate,
/// measured here): a stream that never parks never pays it. A park costs
/// two `epoll_ctl` calls more, small beside the wake-up that ends it. A
/// doorbell ([`Readiness::edges`]) is rung but never drained, so it is
/// waited on for its edges: it stays registered with each runtime it was
/// waited in, as long as the value lives (it is rung only while armed, so
/// that costs its peer nothing).
///
/// [`until`](Self::until) runs an attempt (a `try_*` call) until it gives
/// a result, parking the task between attempts. It is cancel-safe as long
/// as each attempt is: a future dropped while it waits has taken nothing.
///
/// It needs a tokio runtime with I/O and time enabled
/// (`Runtime::enable_all`): the time for endpoints whose peer's death no
/// descriptor reports, which it looks at again as often as their hook asks
/// ([`Readiness::recheck`]).
pub struct AsyncReady {
    fd: crate::sys::OnDemand,
    /// Wait for the descriptor to be readable (a doorbell, or a receiver)
    /// rather than writable.
    readable: bool,
    readiness: Option<Arc<dyn Readiness>>,
    spin: Duration,
    yielding: Duration,
}

impl AsyncReady {
    /// The readiness of `endpoint` for `interest`, with a copy of its
    /// descriptor (registered with the current tokio runtime's reactor
    /// once, and at once taken away, to find out that it can be). Endpoints
    /// whose attempts cost no system call (the shared-memory channels) may
    /// ask to spin first ([`with_spin`](Self::with_spin)).
    ///
    /// # Errors
    ///
    /// When the endpoint never becomes ready for `interest`
    /// (`InvalidInput`), when the descriptor cannot be copied or
    /// registered, and as `Pollable::source`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as tokio's `AsyncFd::new`).
    pub fn new(endpoint: &(impl Pollable + ?Sized), interest: Interest) -> io::Result<AsyncReady> {
        let source = endpoint.source(interest)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("the endpoint is never {interest:?}"))
        })?;
        let readable = source.doorbell || interest == Interest::Readable;
        let tokio_interest = if readable { tokio::io::Interest::READABLE } else { tokio::io::Interest::WRITABLE };
        // A doorbell is waited on for its edges: registered for good.
        let keep = source.readiness.as_ref().is_some_and(|h| h.edges());
        let fd = crate::sys::OnDemand::new(source.fd.try_clone_to_owned()?, tokio_interest, keep)?;
        Ok(AsyncReady { fd, readable, readiness: source.readiness, spin: Duration::ZERO, yielding: Duration::ZERO })
    }

    /// Spins on attempts for up to `spin` (at most [`MAX_SPIN`]) before
    /// the first park: for endpoints whose attempts cost no system call.
    #[must_use]
    pub fn with_spin(mut self, spin: Duration) -> AsyncReady {
        self.spin = spin.min(MAX_SPIN);
        self
    }

    /// Goes on attempting between yields to the runtime for up to
    /// `yielding` (at most [`MAX_YIELDING`]) after the spin, before it
    /// parks: every other task of the runtime runs between two attempts,
    /// and a peer that answers within that time is heard without a
    /// wake-up, which costs both sides tens of microseconds. The price is
    /// the thread's time for the attempts (one system call each for
    /// endpoints whose attempts are system calls) while nothing comes.
    #[must_use]
    pub fn with_yielding(mut self, yielding: Duration) -> AsyncReady {
        self.yielding = yielding.min(MAX_YIELDING);
        self
    }

    /// Runs `attempt` until it returns `Some`: first for up to the spin
    /// time, then between yields to the runtime for up to the yielding
    /// time, then once each time the endpoint may have become ready. The
    /// spinning holds the thread at most the spin time at once; the
    /// yielding lets every other task of the runtime run in between.
    ///
    /// # Errors
    ///
    /// When waiting on the descriptor fails.
    pub async fn until<R>(&self, mut attempt: impl FnMut() -> Option<R>) -> io::Result<R> {
        // Each call spends some of the task's budget of tokio's cooperative
        // scheduling, as tokio's own I/O does: a loop whose attempts always
        // succeed at once (a full channel) still lets other tasks of the
        // runtime run every so often.
        tokio::task::coop::consume_budget().await;
        if let Some(r) = attempt() {
            return Ok(r);
        }
        if !self.spin.is_zero() {
            let start = Instant::now();
            while start.elapsed() < self.spin {
                std::hint::spin_loop();
                if let Some(r) = attempt() {
                    return Ok(r);
                }
            }
        }
        // Then attempts between yields for a while longer: other tasks run
        // in between, and a peer that just woke (a wake-up takes tens of
        // microseconds) finds this side still looking, so that an exchange
        // that slowed down to wake-ups speeds up again.
        if !self.yielding.is_zero() {
            let start = Instant::now();
            while start.elapsed() < self.yielding {
                tokio::task::yield_now().await;
                if let Some(r) = attempt() {
                    return Ok(r);
                }
            }
        }
        // Looks that the hook said ready for and the attempt found nothing
        // (its readiness is coarser than the attempt: a System V queue
        // that holds messages of other types than the one asked for).
        let mut idle = 0u32;
        loop {
            // Disarmed when dropped: also when this future is, while parked.
            let armed = self.readiness.as_deref().map(Armed::new);
            if armed.as_ref().is_some_and(|a| a.ready) {
                drop(armed);
                if let Some(r) = attempt() {
                    return Ok(r);
                }
                // Let others run, and look again: at once the first time,
                // then after pauses from 20 µs doubling to 1 ms, as the
                // timed forms of such endpoints poll.
                if idle == 0 {
                    tokio::task::yield_now().await;
                } else {
                    let pause = Duration::from_micros(20).saturating_mul(1 << idle.min(6));
                    tokio::time::sleep(pause.min(Duration::from_millis(1))).await;
                }
                idle = idle.saturating_add(1);
                continue;
            }
            let woken = self.park().await;
            drop(armed);
            woken?;
            if let Some(r) = attempt() {
                return Ok(r);
            }
        }
    }

    /// Runs `attempt` (a `try_*` call) until it gives anything but an
    /// error that `again` says means "not now" (full, empty), as
    /// [`until`](Self::until) does.
    ///
    /// # Errors
    ///
    /// The outer error when waiting on the descriptor fails; the inner
    /// one is the attempt's.
    pub async fn retry<T, E>(
        &self,
        mut attempt: impl FnMut() -> Result<T, E>,
        again: impl Fn(&E) -> bool,
    ) -> io::Result<Result<T, E>> {
        self.until(|| match attempt() {
            Err(e) if again(&e) => None,
            other => Some(other),
        })
        .await
    }

    /// Waits until the descriptor is ready (or the hook's recheck time
    /// passed), and forgets that readiness: the attempt that follows finds
    /// out. The descriptor is registered with the reactor while a task is
    /// parked on it; one that became ready before its registration is
    /// reported ready by it, so no wake-up is lost.
    async fn park(&self) -> io::Result<()> {
        let recheck = self.readiness.as_ref().and_then(|h| h.recheck());
        let wait = self.fd.wait(self.readable);
        match recheck {
            Some(every) => tokio::time::timeout(every, wait).await.unwrap_or(Ok(())),
            None => wait.await,
        }
    }
}

impl fmt::Debug for AsyncReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncReady")
            .field("fd", &self.fd.fd())
            .field("readable", &self.readable)
            .field("hook", &self.readiness.is_some())
            .field("spin", &self.spin)
            .field("yielding", &self.yielding)
            .finish()
    }
}

/// A hook armed for one park: disarmed when dropped.
struct Armed<'a> {
    hook: &'a dyn Readiness,
    /// What the arming's look found.
    ready: bool,
}

impl<'a> Armed<'a> {
    fn new(hook: &'a dyn Readiness) -> Armed<'a> {
        Armed { ready: hook.arm(), hook }
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.hook.disarm();
    }
}
