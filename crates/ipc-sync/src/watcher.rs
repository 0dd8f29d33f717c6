//! A thread that watches an endpoint without a descriptor of its own for
//! a poller, and rings an eventfd when it is ready.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::ready::Readiness;
use crate::{Deadline, EventFd, EventFdMode, futex};

/// What a [`Watcher`]'s thread does with an endpoint: looks whether it is
/// ready, and sleeps until it may be.
pub trait Watch: Send + Sync + 'static {
    /// Whether the endpoint is ready now.
    fn ready(&self) -> bool;

    /// Sleeps until the endpoint may have become ready, [`nudge`] is
    /// called, or a while has passed (a look follows every sleep). `round`
    /// counts the sleeps since the watch began, from 0, for a watch that
    /// polls and backs off. `watching` says whether the watch still goes
    /// on: a sleep that notes what a nudge changes (a futex word) and then
    /// finds it does not, returns at once.
    ///
    /// [`nudge`]: Watch::nudge
    fn sleep(&self, round: u32, watching: &dyn Fn() -> bool);

    /// Ends a [`sleep`](Watch::sleep) in another thread early.
    fn nudge(&self);
}

/// A watcher's states: its thread's futex word.
const RESTING: u32 = 0;
const WATCHING: u32 = 1;
const STOPPING: u32 = 2;

/// A thread that watches an endpoint while a poller waits for it (between
/// the poller's [`arm`](Readiness::arm) and
/// [`disarm`](Readiness::disarm)), and rings an eventfd, the descriptor
/// the poller sleeps on, once the endpoint is ready. It is the
/// [`Readiness`] of such an endpoint, and its eventfd the descriptor of
/// its [`Source`](crate::Source).
///
/// Between waits the thread rests on a futex and costs nothing; it ends
/// when the watcher is dropped.
pub struct Watcher {
    state: Arc<AtomicU32>,
    bell: Arc<EventFd>,
    watch: Arc<dyn Watch>,
    /// Pollers armed now: the thread watches while any is.
    armed: Mutex<u32>,
    /// The thread and the process it runs in. Joined when the watcher
    /// goes, so that what the watch holds goes with it, not later on the
    /// thread; started again in a process forked from that one (a fork
    /// copies no thread), the first time it is armed there.
    thread: Mutex<Option<(u32, JoinHandle<()>)>>,
    name: String,
}

impl Watcher {
    /// Starts the thread, named `name`, that watches with `watch`.
    ///
    /// # Errors
    ///
    /// When no eventfd or thread can be had.
    pub fn start(name: &str, watch: Arc<dyn Watch>) -> io::Result<Watcher> {
        let bell = Arc::new(EventFd::new(0, EventFdMode::Counter).map_err(io::Error::from)?);
        let state = Arc::new(AtomicU32::new(RESTING));
        let watcher =
            Watcher { state, bell, watch, armed: Mutex::new(0), thread: Mutex::new(None), name: name.to_owned() };
        watcher.ensure_thread()?;
        Ok(watcher)
    }

    /// Starts the thread in this process if it does not run here (the
    /// watcher was made before a fork).
    fn ensure_thread(&self) -> io::Result<()> {
        let mut thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner);
        let me = std::process::id();
        if thread.as_ref().is_some_and(|(pid, _)| *pid == me) {
            return Ok(());
        }
        let (st, b, w) = (Arc::clone(&self.state), Arc::clone(&self.bell), Arc::clone(&self.watch));
        let handle = std::thread::Builder::new().name(self.name.clone()).spawn(move || run(&*w, &st, &b))?;
        // The handle of another process's thread: not ours to join.
        if let Some(old) = thread.replace((me, handle)) {
            std::mem::forget(old);
        }
        Ok(())
    }

    /// The eventfd the thread rings: readable once the endpoint is ready.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }
}

/// Several pollers may wait at once: the thread watches while any is
/// armed. Its eventfd is never drained: pollers wait for its edges (each
/// ring is one), so that none takes another's.
impl Readiness for Watcher {
    fn arm(&self) -> bool {
        if self.ensure_thread().is_err() {
            // No thread to be had in this process: report ready, and the
            // caller's attempt finds out (and its wait backs off).
            return true;
        }
        let mut armed = self.armed.lock().unwrap_or_else(PoisonError::into_inner);
        *armed += 1;
        // Every arming: the thread rests after each ring until armed again.
        if self.state.swap(WATCHING, Ordering::SeqCst) != WATCHING {
            futex::wake_all(&self.state);
        }
        drop(armed);
        self.watch.ready()
    }

    fn disarm(&self) {
        let mut armed = self.armed.lock().unwrap_or_else(PoisonError::into_inner);
        *armed = armed.saturating_sub(1);
        if *armed == 0 && self.state.compare_exchange(WATCHING, RESTING, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
            self.watch.nudge();
        }
    }

    fn edges(&self) -> bool {
        true
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.state.store(STOPPING, Ordering::SeqCst);
        futex::wake_all(&self.state);
        self.watch.nudge();
        let thread = self.thread.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        match thread {
            Some((pid, handle)) if pid == std::process::id() => {
                let _ = handle.join();
            }
            // Started in the process this one was forked from.
            Some(other) => std::mem::forget(other),
            None => {}
        }
    }
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("name", &self.name)
            .field("state", &self.state.load(Ordering::Relaxed))
            .field("bell", &self.bell)
            .finish()
    }
}

/// The thread: rests until a poller arms the watcher, then looks and
/// sleeps by turns until the endpoint is ready, rings, and rests again.
fn run(watch: &dyn Watch, state: &AtomicU32, bell: &EventFd) {
    let mut round = 0;
    loop {
        match state.load(Ordering::SeqCst) {
            STOPPING => return,
            RESTING => {
                futex::wait_until(state, RESTING, Deadline::never());
                round = 0;
                continue;
            }
            _ => {}
        }
        let watching = || state.load(Ordering::SeqCst) == WATCHING;
        let ready = watch.ready() || {
            watch.sleep(round, &watching);
            round = round.saturating_add(1);
            watch.ready()
        };
        if ready && state.compare_exchange(WATCHING, RESTING, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
            // A full counter has a poller to wake already.
            let _ = bell.try_add(1);
        }
    }
}

/// Sleeps for `20 µs × 2^round`, at most 1 ms, or until `word` changes
/// from `seen` (a [`Watch::nudge`] that bumps it): the sleep of a watch
/// that has to poll its endpoint.
pub fn backoff(word: &AtomicU32, seen: u32, round: u32) {
    let pause = Duration::from_micros(20).saturating_mul(1 << round.min(6)).min(Duration::from_millis(1));
    futex::wait_until(word, seen, Deadline::after(pause));
}
