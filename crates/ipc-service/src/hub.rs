//! A hub: one process that owns a shared object (a broadcast ring, a
//! blackboard, a table of events) and any number of members that join it
//! by name. Publish/subscribe, the blackboard and named events are hubs.
//!
//! The owner binds a seqpacket socket and a thread of its own takes
//! members in: it judges each by its credentials and the cap on members,
//! reads its greeting (never blocking on a member that stalls) and answers
//! with four descriptors: the shared object, which members can map only
//! for reading; a cell of the member's own (a page both map: its cursor,
//! whether it sleeps); a doorbell that the owner rings to wake the member;
//! and the owner's doorbell, which members ring to wake the owner. The
//! member's socket then stays open as its liveness: the thread sees it
//! hang up at once when the member leaves or dies, marks it gone and rings
//! the owner. The owner's side learns of joins and departures through a
//! counter of changes it compares on each call ([`Hub::changes`]).

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipc_shm::Memfd;
use ipc_shm::broadcast::{CursorCell, NOT_STARTED, Position};
use ipc_socket::{BindOptions, Credentials, SeqpacketListener, SeqpacketSocket, SocketName};
use ipc_sync::{EventFd, EventFdMode};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::error::{Error, Refusal, Result};
use crate::options::Access;
use crate::service::{label, refuse_with};
use crate::wire;

/// What a hub is: members greet a hub of the kind they expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    PubSub = 1,
    Blackboard = 2,
    Events = 3,
}

impl Kind {
    /// The memfd labels of the shared object and of the members' cells,
    /// by which `ipc-kit ls` finds hubs and their members.
    pub(crate) fn labels(self) -> (&'static str, &'static str) {
        match self {
            Kind::PubSub => (crate::LABEL_PUBSUB, crate::LABEL_SUBSCRIBER),
            Kind::Blackboard => (crate::LABEL_BLACKBOARD, crate::LABEL_BLACKBOARD_READER),
            Kind::Events => (crate::LABEL_EVENTS, crate::LABEL_LISTENER),
        }
    }
}

/// Whom a hub lets in, and how it is bound.
#[derive(Clone, Debug)]
pub(crate) struct HubOptions {
    pub(crate) access: Access,
    pub(crate) max_members: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) mode: u32,
}

impl HubOptions {
    pub(crate) fn check(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidOptions { reason });
        if self.max_members == 0 || self.max_members > MAX_MEMBERS {
            return bad(format!("{} members: from 1 to {MAX_MEMBERS}", self.max_members));
        }
        if self.mode & !0o777 != 0 {
            return bad(format!("mode {:o} has bits beyond 0o777", self.mode));
        }
        if self.handshake_timeout.is_zero() {
            return bad("a handshake_timeout of zero lets no one in".into());
        }
        Ok(())
    }
}

/// The most members a hub takes (each costs its owner a page and three
/// descriptors).
pub const MAX_MEMBERS: usize = 4096;

/// A member, as its owner sees it.
#[derive(Debug)]
pub(crate) struct Member {
    /// The page it shares with the owner; every value there is untrusted.
    pub(crate) cell: CursorCell,
    /// Its doorbell.
    bell: EventFd,
    /// Cleared when its socket hung up.
    alive: AtomicBool,
    /// It said on its socket that it goes to sleep, and the owner has
    /// not seen it awake since (set by the hub's thread, cleared by the
    /// owner).
    announced: AtomicBool,
    /// Its credentials when it connected.
    pub(crate) peer: Credentials,
    /// The owner's bookkeeping: where it started (`u64::MAX` before), and
    /// its count of naps when it was last woken.
    pub(crate) start: AtomicU64,
    pub(crate) woken_at: AtomicU64,
}

impl Member {
    pub(crate) fn alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Rings its doorbell (a full counter means it is rung already).
    pub(crate) fn ring(&self) {
        let _ = self.bell.try_add(1);
    }

    /// Where it is as the owner takes it: at least where it started,
    /// whatever its cursor says; `None` before the owner gave it a start.
    pub(crate) fn place(&self) -> Option<u64> {
        let start = self.start.load(Ordering::Relaxed);
        (start != NOT_STARTED).then(|| self.cell.cursor().max(start))
    }

    /// Marks it as one that said it sleeps (counted in `announced`).
    fn announce(&self, announced: &AtomicU64) {
        if !self.announced.swap(true, Ordering::SeqCst) {
            announced.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Clears its mark; whether it was marked.
    fn unannounce(&self, announced: &AtomicU64) -> bool {
        let was = self.announced.swap(false, Ordering::SeqCst);
        if was {
            announced.fetch_sub(1, Ordering::SeqCst);
        }
        was
    }
}

/// The owner's own list of its members, taken from the hub when members
/// joined or left (one compare per call otherwise), and the wake-ups of
/// those that sleep.
#[derive(Debug)]
pub(crate) struct Roster {
    seen: u64,
    members: Vec<Arc<Member>>,
}

impl Roster {
    pub(crate) fn new() -> Roster {
        Roster { seen: u64::MAX, members: Vec::new() }
    }

    /// Takes in the members that joined or left since last looked; a new
    /// one is given `start` (in its cell, where it waits for it).
    #[inline]
    pub(crate) fn sync(&mut self, hub: &Hub, start: impl Fn() -> u64) {
        let changes = hub.changes();
        if changes == self.seen {
            return;
        }
        self.seen = changes;
        self.members = hub.members();
        for m in &self.members {
            if m.start.load(Ordering::Relaxed) == NOT_STARTED {
                let at = start();
                m.start.store(at, Ordering::Relaxed);
                m.cell.set_start(at);
            }
        }
    }

    pub(crate) fn members(&self) -> &[Arc<Member>] {
        &self.members
    }

    /// Wakes the members that sleep, once each time each went to sleep
    /// (so that one that keeps saying it sleeps costs one ring per time it
    /// counts a nap, as a member that reads would): after the shared
    /// object changed. Only members that said on their socket that they
    /// sleep are looked at: with none, a change costs one load.
    #[inline]
    pub(crate) fn wake(&self, hub: &Hub) {
        // Ordered with the hub's thread, which marks a member announced
        // before it compares the owner's position with its place.
        fence(Ordering::SeqCst);
        if hub.shared.announced.load(Ordering::SeqCst) == 0 {
            return;
        }
        for m in &self.members {
            if !m.announced.load(Ordering::Relaxed) {
                continue;
            }
            if m.cell.asleep() {
                let nap = m.cell.naps();
                if m.woken_at.swap(nap, Ordering::Relaxed) != nap {
                    m.ring();
                }
            } else if m.unannounce(&hub.shared.announced) {
                // Awake since: looked at again when it next says it sleeps.
                // Unless it went to sleep again between the two looks, and
                // the hub's thread took its word while it was still
                // marked: then nobody would look at it again. Seen asleep
                // now, it stays marked; not seen, the hub's thread marks
                // it once it reads its word, which comes after.
                fence(Ordering::SeqCst);
                if m.cell.asleep() {
                    m.announce(&hub.shared.announced);
                }
            }
        }
    }
}

/// What the owner and the hub's thread share.
#[derive(Debug)]
pub(crate) struct Shared {
    members: Mutex<Vec<Arc<Member>>>,
    changes: AtomicU64,
    /// How many members are `announced`: the owner looks at its members'
    /// cells only while some are, so that a change costs it the same
    /// whatever the number of members that are busy reading.
    announced: AtomicU64,
    /// The owner's doorbell.
    bell: EventFd,
}

impl Shared {
    /// The owner's doorbell.
    pub(crate) fn bell(&self) -> &EventFd {
        &self.bell
    }

    /// The members now.
    pub(crate) fn members(&self) -> Vec<Arc<Member>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The owner's handle on its hub; dropping it stops the thread, closes
/// every member's socket and removes the socket file.
#[derive(Debug)]
pub(crate) struct Hub {
    shared: Arc<Shared>,
    name: SocketName,
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl Hub {
    /// Binds `name` and starts taking members of `kind` in, each welcomed
    /// with `flags` and a copy of `object`.
    pub(crate) fn bind(
        name: &SocketName,
        kind: Kind,
        flags: u32,
        options: HubOptions,
        object: Memfd,
        position: Position,
    ) -> Result<Hub> {
        options.check()?;
        let bind = BindOptions { mode: options.mode, ..BindOptions::default() };
        let listener = SeqpacketListener::bind_with(name, &bind)?;
        let eventfd = || EventFd::new(0, EventFdMode::Counter).map_err(|e| Error::io("eventfd", e));
        let shared = Arc::new(Shared {
            members: Mutex::default(),
            changes: AtomicU64::new(0),
            announced: AtomicU64::new(0),
            bell: eventfd()?,
        });
        let stop = eventfd()?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| Error::io("epoll_create1", std::io::Error::from(e)))?;
        let add = |fd: BorrowedFd<'_>, token: u64| {
            epoll
                .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token))
                .map_err(|e| Error::io("epoll_ctl", std::io::Error::from(e)))
        };
        add(listener.as_fd(), LISTENER)?;
        add(stop.as_fd(), STOP)?;
        let worker = Worker {
            listener,
            epoll,
            kind,
            flags,
            cell_label: label(&format!("{}-cell", kind.labels().1), name),
            object,
            position,
            options,
            own_uid: nix::unistd::geteuid().as_raw(),
            pending: HashMap::new(),
            live: HashMap::new(),
            next_token: FIRST_TOKEN,
            next_id: 0,
            shared: Arc::clone(&shared),
        };
        let thread = std::thread::Builder::new()
            .name("ipc-service hub".into())
            .spawn(move || worker.run())
            .map_err(|e| Error::io("spawning the hub's thread", e))?;
        Ok(Hub { shared, name: name.clone(), stop, thread: Some(thread) })
    }

    pub(crate) fn name(&self) -> &SocketName {
        &self.name
    }

    /// The owner's doorbell: rung when a member joins or leaves, and by
    /// members for the owner.
    pub(crate) fn bell(&self) -> &EventFd {
        &self.shared.bell
    }

    /// A count that changes whenever a member joins or leaves.
    #[inline]
    pub(crate) fn changes(&self) -> u64 {
        self.shared.changes.load(Ordering::Acquire)
    }

    /// The members now.
    pub(crate) fn members(&self) -> Vec<Arc<Member>> {
        self.shared.members()
    }

    /// What the hub shares with its thread, for a poller's hook.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// How many members there are.
    pub(crate) fn count(&self) -> usize {
        self.shared.members.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.stop.try_add(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const LISTENER: u64 = 0;
const STOP: u64 = 1;
const FIRST_TOKEN: u64 = 2;
/// Members taken from the backlog on one pass.
const ACCEPTS_PER_PASS: usize = 16;
/// Clients in their handshake, at most: one more drops the one that
/// waited longest. Those whose greeting has not come hold no seat, so
/// that clients that connect and say nothing keep no one out.
const MAX_PENDING: usize = 64;

/// A client that connected and was let in: its greeting has not come
/// yet (`member` is `None`), or it was welcomed and has not yet said that
/// it took its place (made its first look at the shared object).
#[derive(Debug)]
struct Pending {
    socket: SeqpacketSocket,
    peer: Credentials,
    until: Instant,
    member: Option<Arc<Member>>,
}

/// The hub's thread.
struct Worker {
    listener: SeqpacketListener,
    epoll: Epoll,
    kind: Kind,
    flags: u32,
    cell_label: String,
    object: Memfd,
    position: Position,
    options: HubOptions,
    own_uid: u32,
    pending: HashMap<u64, Pending>,
    live: HashMap<u64, (SeqpacketSocket, Arc<Member>)>,
    next_token: u64,
    next_id: u64,
    shared: Arc<Shared>,
}

impl Worker {
    fn run(mut self) {
        let mut events = [EpollEvent::empty(); 32];
        loop {
            let now = Instant::now();
            let first = self.pending.values().map(|p| p.until).min();
            let ms = first
                .map_or(-1, |at| i32::try_from(at.saturating_duration_since(now).as_millis() + 1).unwrap_or(i32::MAX));
            let timeout = EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::NONE);
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                // Nothing to wait with: the hub takes no one from now on.
                Err(_) => return,
            };
            for event in &events[..n] {
                match event.data() {
                    STOP => return,
                    LISTENER => self.take_new(),
                    token if self.live.contains_key(&token) => {
                        if event.events().intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
                            self.gone(token);
                        } else {
                            self.naps(token);
                        }
                    }
                    token => self.heard(token),
                }
            }
            // After the events, so that what came in time is read first.
            let now = Instant::now();
            let late: Vec<u64> = self.pending.iter().filter(|(_, p)| p.until <= now).map(|(t, _)| *t).collect();
            for token in late {
                self.forget(token);
            }
        }
    }

    fn take_new(&mut self) {
        for _ in 0..ACCEPTS_PER_PASS {
            let Ok(socket) = self.listener.try_accept() else { return };
            let Ok(peer) = socket.peer_credentials() else { continue };
            if !self.options.access.allows(&peer, self.own_uid) {
                self.refuse(&socket, Refusal::Denied);
                continue;
            }
            if self.pending.len() >= MAX_PENDING {
                let oldest = self.pending.iter().min_by_key(|(_, p)| p.until).map(|(t, _)| *t);
                if let Some(token) = oldest {
                    self.forget(token);
                }
            }
            let token = self.next_token;
            self.next_token += 1;
            if self.epoll.add(socket.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token)).is_err() {
                self.refuse(&socket, Refusal::Unavailable);
                continue;
            }
            // A timeout too long to add is as good as for ever.
            let now = Instant::now();
            let until = now.checked_add(self.options.handshake_timeout).unwrap_or(now + FOR_EVER);
            self.pending.insert(token, Pending { socket, peer, until, member: None });
        }
    }

    fn refuse(&self, socket: &SeqpacketSocket, why: Refusal) {
        refuse_with(socket, &wire::hub_answer(Some(why), self.kind as u32, 0, 0));
    }

    fn forget(&mut self, token: u64) -> Option<Pending> {
        let p = self.pending.remove(&token)?;
        let _ = self.epoll.delete(p.socket.as_fd());
        Some(p)
    }

    /// A client in its handshake said something (or hung up): its
    /// greeting, or, once welcomed, that it took its place.
    fn heard(&mut self, token: u64) {
        let Some(p) = self.pending.get(&token) else { return };
        let mut buf = [0u8; 64];
        // Room for one descriptor, so that any that came are seen (and
        // closed); with none asked for, the kernel would drop them unseen.
        let got = p.socket.try_recv_with_fds(&mut buf, 1);
        if matches!(got, Err(ipc_socket::Error::WouldBlock)) {
            return;
        }
        let Some(p) = self.forget(token) else { return };
        let said = match got {
            Ok((n, fds)) if fds.is_empty() => Some(&buf[..n]),
            Ok(_) | Err(ipc_socket::Error::FdsTruncated { .. } | ipc_socket::Error::Truncated { .. }) => None,
            // Gone.
            Err(_) => return,
        };
        match (p.member.is_some(), said) {
            (false, Some(msg)) if wire::is_hub_hello(msg, self.kind as u32) => self.welcome(token, p),
            (true, Some(msg)) if msg == wire::HUB_JOINED => self.seat(p),
            (false, _) => self.refuse(&p.socket, Refusal::Protocol),
            // A welcomed client that said anything else: its socket
            // closes, and it is no member.
            (true, _) => {}
        }
    }

    fn welcome(&mut self, token: u64, mut p: Pending) {
        let seated = self.live.len() + self.pending.values().filter(|p| p.member.is_some()).count();
        if seated >= self.options.max_members {
            return self.refuse(&p.socket, Refusal::Full);
        }
        let made = CursorCell::create(&self.cell_label)
            .ok()
            .and_then(|(cell, memfd)| Some((cell, memfd, EventFd::new(0, EventFdMode::Counter).ok()?)));
        let Some((cell, cell_fd, bell)) = made else {
            return self.refuse(&p.socket, Refusal::Unavailable);
        };
        let id = self.next_id;
        let fds = [self.object.as_fd(), cell_fd.as_fd(), bell.as_fd(), self.shared.bell.as_fd()];
        let answer = wire::hub_answer(None, self.kind as u32, self.flags, id);
        if p.socket.try_send_with_fds(&answer, &fds).is_err() {
            return;
        }
        if self.epoll.add(p.socket.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token)).is_err() {
            return;
        }
        self.next_id += 1;
        p.member = Some(Arc::new(Member {
            cell,
            bell,
            alive: AtomicBool::new(true),
            announced: AtomicBool::new(false),
            peer: p.peer,
            start: AtomicU64::new(NOT_STARTED),
            woken_at: AtomicU64::new(u64::MAX),
        }));
        self.pending.insert(token, p);
    }

    /// A welcomed client took its place: a member from now on, watched
    /// for its hang-up and for what it says when it goes to sleep.
    fn seat(&mut self, p: Pending) {
        let Some(member) = p.member else { return };
        let token = self.next_token;
        self.next_token += 1;
        let interest = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
        if self.epoll.add(p.socket.as_fd(), EpollEvent::new(interest, token)).is_err() {
            return;
        }
        self.shared.members.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::clone(&member));
        self.live.insert(token, (p.socket, member));
        self.changed();
    }

    /// A member said it goes to sleep (one message, [`wire::HUB_NAP`],
    /// each time): the owner looks at its cell from now on, and it is
    /// rung at once if the owner moved past its place meanwhile (so that
    /// one of the two always sees the other).
    fn naps(&mut self, token: u64) {
        let Some((socket, member)) = self.live.get(&token) else { return };
        let mut buf = [0u8; 16];
        let mut napped = false;
        // Read until nothing is left (edge-triggered), or for a member
        // that never stops talking, a while: then it is heard no more.
        for reads in 0.. {
            match socket.try_recv_with_fds(&mut buf, 1) {
                Ok((n, _)) if n > 0 => napped |= buf[..n] == wire::HUB_NAP,
                Err(ipc_socket::Error::WouldBlock) => break,
                Err(ipc_socket::Error::Truncated { .. } | ipc_socket::Error::FdsTruncated { .. }) if reads < 256 => {}
                // The end of what it says (it shut its writing down, or
                // sends empty messages), or too much: its hang-up only.
                _ => {
                    let _ = self.epoll.modify(socket.as_fd(), &mut EpollEvent::new(EpollFlags::empty(), token));
                    break;
                }
            }
            if reads >= 256 {
                let _ = self.epoll.modify(socket.as_fd(), &mut EpollEvent::new(EpollFlags::empty(), token));
                break;
            }
        }
        if !napped {
            return;
        }
        member.announce(&self.shared.announced);
        fence(Ordering::SeqCst);
        // Not started yet (a subscriber the publisher has not taken in):
        // nothing to read, and the owner wakes it once it sets its start.
        if member.place().is_some_and(|at| self.position.load() > at) {
            member.ring();
        }
    }

    fn gone(&mut self, token: u64) {
        let Some((socket, member)) = self.live.remove(&token) else { return };
        let _ = self.epoll.delete(socket.as_fd());
        member.alive.store(false, Ordering::Release);
        member.unannounce(&self.shared.announced);
        self.shared.members.lock().unwrap_or_else(PoisonError::into_inner).retain(|m| !Arc::ptr_eq(m, &member));
        self.changed();
    }

    fn changed(&self) {
        self.shared.changes.fetch_add(1, Ordering::AcqRel);
        let _ = self.shared.bell.try_add(1);
    }
}

/// A deadline past any that matters.
const FOR_EVER: Duration = Duration::from_secs(100 * 365 * 86_400);
