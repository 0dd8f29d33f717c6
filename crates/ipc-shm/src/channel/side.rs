//! A side of a channel, whichever its kind: claiming it, publishing its
//! index and waking the peer, waiting for the peer (with the wait policy
//! and the pacing), noticing that the peer is gone, closing it, its
//! counts of system calls, and the checks of the indices the peer writes.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ipc_sync::Deadline;
use ipc_sync::ready::{Interest, Source};

use super::bell::{self, Bell};
use super::conn::{Conn, Handle};
use super::layout::{self, ARMED, ASLEEP, CLOSED, CONNECTED, FLAG_BARRIER, LOCKED, Line, Role, UNCLAIMED};
use super::liveness::{self, Claim};
use super::pace::{Pace, SLIP_SPINS, WaitPolicy};
use super::shim::{self, fence};
use crate::error::{Error, Result};

/// Counts of the system calls a side made, for measuring how few a steady
/// stream needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Wake-ups of the other side: futex wake calls, and its doorbell
    /// rung for a poller that waits for it.
    pub wakes: u64,
    /// Times this side went to sleep on its futex.
    pub sleeps: u64,
    /// Barriers this side forced on the other (`membarrier`) as it was
    /// about to sleep, so that the other publishes without one of its own:
    /// one per sleep, and one per time it found, just before, that it need
    /// not sleep.
    pub barriers: u64,
    /// Waits that began with a short pause, letting a streaming peer get
    /// a few messages ahead before this side looked (no system call).
    pub slips: u64,
}

/// How often a waiting side asks the kernel whether its peer is gone.
const LIVENESS_EVERY: Duration = Duration::from_millis(10);

/// The longest a side sleeps before it checks on its peer again.
const SLEEP_SLICE: Duration = Duration::from_millis(20);

/// The sleep slice when the barrier promised to the peer failed: its index
/// may then reach us only after we read it, so we look again soon.
const UNBARRIERED_SLICE: Duration = Duration::from_millis(1);

/// Checks of the peer's index while spinning, one pause apart.
const SPINS: u32 = 2000;

/// The checks made in the caller's code before [`SPINS`] more (few under
/// loom, where each is a scheduling point).
const QUICK_SPINS: u32 = if cfg!(loom) { 1 } else { 64 };

/// Indices stay far below this (2^62 bytes or messages take centuries),
/// so sums of checked indices and capacities never overflow.
const INDEX_LIMIT: u64 = 1 << 62;

/// What both ends of both kinds of channel share: the connection, which
/// side this is, and the waiting and waking.
#[derive(Debug)]
pub(super) struct Side {
    pub(super) conn: Conn,
    role: Role,
    /// The claiming process: only it closes the side on drop (a forked
    /// child's copy of the handle must not, whatever its pid).
    owner: liveness::Process,
    pub(super) policy: WaitPolicy,
    last_check: Instant,
    pub(super) stats: ChannelStats,
    /// This process receives membarrier barriers and this side issues one
    /// before it sleeps (our FLAG_BARRIER).
    barrier: bool,
    /// Both sides issue barriers (ours, and the peer's FLAG_BARRIER once
    /// seen; it is never cleared): this side publishes without one.
    light: bool,
    /// The peer was found gone for good: every later check says so.
    peer_dead: bool,
    /// This side's liveness lock, if it could take one (see `liveness`).
    live: Option<liveness::Lock>,
    /// How this side paces its waits.
    pace: Pace,
    /// Its readiness for pollers, made when it is first polled.
    bell: OnceLock<Arc<Bell>>,
    /// A byte sender's last record found no room for (see `wants`), for
    /// a bell made later.
    want: usize,
}

impl Side {
    /// Claims side `role` of `conn` for this process, through `handle`.
    pub(super) fn claim(conn: &Conn, handle: &Handle, role: Role) -> Result<Side> {
        let side = Side::take(conn, role)?;
        handle.spend(conn);
        Ok(side)
    }

    /// Claims the sending or receiving side for this process.
    ///
    /// The side's liveness lock is taken first (it also decides a race of
    /// two claimers), then the state is set: LOCKED when we hold the lock.
    fn take(conn: &Conn, role: Role) -> Result<Side> {
        let side_name = role.name();
        let status = conn.status();
        let (state, pid) = (status.state(role), status.pid(role));
        // Relaxed: a first look only; the compare-and-swap below decides.
        if state.load(Ordering::Relaxed) != UNCLAIMED {
            return Err(Error::AlreadyConnected { side: side_name });
        }
        if let Some(c) = &conn.mem.candidates
            && !c.may_claim(role)
        {
            return Err(Error::SideGivenUp { side: side_name });
        }
        let for_fork = conn.mem.candidates.is_some();
        let live = match conn.mem.file() {
            Some(file) => match liveness::take_lock(file, role, for_fork, conn.mem.name.as_ref()) {
                Ok(Claim::Locked(lock)) => Some(lock),
                Ok(Claim::Taken) => return Err(Error::AlreadyConnected { side: side_name }),
                Ok(Claim::Unlocked(e)) => {
                    return Err(Error::Io { op: "open /proc/self/fd/N (a claimed side's liveness lock)", source: e });
                }
                Err(e) => return Err(Error::Io { op: "fcntl(F_OFD_SETLK) (channel liveness)", source: e }),
            },
            None => None,
        };
        let connected = if live.is_some() { LOCKED } else { CONNECTED };
        // Acquire: a side that claimed and closed before us happens-before.
        // Release: the lock was taken before a peer that sees LOCKED asks
        // the kernel about it.
        if state.compare_exchange(UNCLAIMED, connected, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Err(Error::AlreadyConnected { side: side_name });
        }
        // For people reading the memory (`ipc-kit ls`); nothing relies on it.
        pid.store(std::process::id(), Ordering::Relaxed);
        if let Some(c) = &conn.mem.candidates {
            c.claimed(role);
        }
        let barrier = shim::register_barriers();
        if barrier {
            // Relaxed: a peer that does not see the flag yet only keeps its
            // full barriers.
            status.flags(role).store(FLAG_BARRIER, Ordering::Relaxed);
        }
        Ok(Side {
            conn: conn.clone(),
            role,
            owner: liveness::this_process(),
            policy: WaitPolicy::Adaptive,
            last_check: Instant::now(),
            stats: ChannelStats::default(),
            barrier,
            light: false,
            peer_dead: false,
            live,
            pace: Pace::default(),
            bell: OnceLock::new(),
            want: 0,
        })
    }

    /// What a poller waits on for this side (see `bell`): readable for a
    /// receiver, writable for a sender, with the channel's doorbell.
    /// `head` and `tail` are the side's private view; its own index is one
    /// of them.
    pub(super) fn source(&self, interest: Interest, head: u64, tail: u64) -> std::io::Result<Option<Source<'_>>> {
        let mine = match self.role {
            Role::Receiver => Interest::Readable,
            Role::Sender => Interest::Writable,
        };
        if interest != mine {
            return Ok(None);
        }
        let bell = match self.bell.get() {
            Some(bell) => bell,
            None => {
                let own = if self.role == Role::Receiver { head } else { tail };
                let made = Bell::new(self.conn.clone(), self.role, self.barrier, own)?;
                made.wants(self.want);
                self.bell.get_or_init(|| Arc::new(made))
            }
        };
        Ok(Some(Source::doorbell(bell.fd(), Arc::clone(bell) as Arc<dyn ipc_sync::ready::Readiness>)))
    }

    /// A sender found no room for a byte record of `len` bytes: a poller
    /// reports it writable when there is.
    pub(super) fn wants(&mut self, len: usize) {
        self.want = len;
        if let Some(bell) = self.bell.get() {
            bell.wants(len);
        }
    }

    /// A byte sender published a record: what it wanted is done with.
    #[inline(always)]
    pub(super) fn sent(&mut self) {
        if self.want != 0 {
            self.wants(0);
        }
    }

    #[inline]
    pub(super) fn capacity(&self) -> u64 {
        self.conn.header.capacity
    }

    /// The sender's and receiver's indices as found when this side
    /// connects, checked: the receiver's at most a ring behind, neither
    /// absurdly large, both on a record boundary of a byte channel (a
    /// multiple of 8, which every later index then keeps). A side that
    /// finds them broken refuses to connect.
    pub(super) fn initial_indices(&self) -> Result<(u64, u64)> {
        let step = if self.conn.header.kind == layout::KIND_BYTES { layout::RECORD_ALIGN } else { 1 };
        // Acquire: see what a previous user of the channel left.
        let tail = self.conn.tail().index.load(Ordering::Acquire);
        let head = self.conn.head().index.load(Ordering::Acquire);
        if head > tail
            || tail - head > self.capacity()
            || tail >= INDEX_LIMIT
            || !head.is_multiple_of(step)
            || !tail.is_multiple_of(step)
        {
            // The claim stays taken: the channel is broken anyway.
            return Err(Error::Corrupted { what: format!("indices {head} (receiver) and {tail} (sender) on connect") });
        }
        Ok((tail, head))
    }

    fn my_sleep(&self) -> &Line {
        self.conn.sleep_line(self.role)
    }

    #[inline]
    fn peer_sleep(&self) -> &Line {
        self.conn.sleep_line(self.role.peer())
    }

    /// Whether the peer has closed its side or was found gone (one load and
    /// a flag, for the fast path of every send).
    #[inline]
    pub(super) fn peer_closed(&self) -> bool {
        let state = self.conn.status().state(self.role.peer());
        // Relaxed: only the flag is read; nothing the peer wrote before it
        // is read on this path.
        self.peer_dead || !matches!(state.load(Ordering::Relaxed), UNCLAIMED | CONNECTED | LOCKED)
    }

    /// Whether the peer has closed its side or is gone for good (see
    /// [`peer_gone_now`](Self::peer_gone_now)), for a side that found no
    /// message or no room. The kernel is asked at most every 10 ms unless
    /// `now`; a closed state is seen at once.
    ///
    /// `Truncated` first when the object was shrunk under the mapping: its
    /// lost pages read as zeros, a ring that looks empty (or full) for
    /// ever, beside a peer that looks unclaimed.
    pub(super) fn peer_gone(&mut self, now: bool) -> Result<bool> {
        self.conn.faults()?;
        if self.peer_closed() {
            return Ok(true);
        }
        if self.bell.get().is_some_and(|b| b.peer_gone()) {
            // A poller found it gone, and reported the side ready for it.
            self.peer_dead = true;
            return Ok(true);
        }
        if !now && self.last_check.elapsed() < LIVENESS_EVERY {
            return Ok(false);
        }
        self.last_check = Instant::now();
        self.peer_dead = bell::peer_gone_now(&self.conn, self.role);
        Ok(self.peer_dead)
    }

    /// Publishes the sender's index (TAIL) and wakes the receiver if it
    /// sleeps or is about to: for the sending side.
    ///
    /// Inlined into every send: it writes nothing but the index (see
    /// `Sender::send_fast` for why stores count), and its lines are
    /// constants, not picked by the side's role.
    #[inline(always)]
    pub(super) fn publish_tail(&mut self, index: u64) {
        debug_assert!(self.role == Role::Sender);
        self.publish(index, |conn| (conn.tail(), conn.sleep_line(Role::Receiver)));
    }

    /// Publishes the receiver's index (HEAD) and wakes the sender if it
    /// sleeps or is about to: for the receiving side, as
    /// [`publish_tail`](Self::publish_tail) is for the sending one.
    #[inline(always)]
    pub(super) fn publish_head(&mut self, index: u64) {
        debug_assert!(self.role == Role::Receiver);
        self.publish(index, |conn| (conn.head(), conn.sleep_line(Role::Sender)));
    }

    /// Publishes `index` in the first line `lines` gives, and wakes the
    /// peer if the second (its sleep line) says it sleeps.
    #[inline(always)]
    fn publish(&mut self, index: u64, lines: fn(&Conn) -> (&Line, &Line)) {
        // A side that issues no barriers of its own never publishes without one:
        // it does not look for the peer's flag.
        let light = self.light || (self.barrier && self.see_light());
        let (mine, peer) = lines(&self.conn);
        if let Some(bell) = self.bell.get() {
            // Before the index goes out: a poller that the peer's answer
            // wakes looks at this one.
            bell.published(index);
        }
        // See `shim::publish` for why no side of a sleep and a wake-up can
        // miss the other; Release in it: what we wrote (or finished
        // reading) happens before the peer sees the index.
        if shim::publish(&mine.index, index, &peer.waiting, light) {
            self.wake_peer();
        }
    }

    /// Whether this side's waits start with a pause (see `Pace`): a
    /// receiver that ran out of messages then does not look at the
    /// sender's index before it waits.
    #[inline(always)]
    pub(super) fn slipping(&self) -> bool {
        self.pace.slipping
    }

    /// Whether both sides issue barriers: ours, and the peer's FLAG_BARRIER
    /// read again until it is set.
    #[cold]
    #[inline(never)]
    fn see_light(&mut self) -> bool {
        let flags = self.conn.status().flags(self.role.peer());
        // Relaxed: the flag is set before the peer can sleep, and seeing it
        // late only costs full barriers meanwhile.
        self.light = self.barrier && flags.load(Ordering::Relaxed) & FLAG_BARRIER != 0;
        self.light
    }

    /// Wakes the peer, which sleeps or is about to, or a poller armed for
    /// it: rings its doorbell for `ARMED`, wakes its futex for the rest
    /// (every sleeper if a watching thread may be among them).
    #[cold]
    fn wake_peer(&mut self) {
        let peer = self.role.peer();
        let line = self.peer_sleep();
        // Relaxed: `shim::publish` ordered our index against the bits.
        let waiting = line.waiting.load(Ordering::Relaxed);
        if waiting & ARMED != 0 && bell::ring(&self.conn, peer) {
            self.stats.wakes += 1;
        }
        if waiting & !ARMED != 0 {
            let line = self.peer_sleep();
            // Release: pairs with the sleeper's Acquire read of `signal`.
            line.signal.fetch_add(1, Ordering::Release);
            // A watching thread (or a bit nobody sets) may sleep beside
            // the side itself: wake them all.
            shim::futex_wake(&line.signal, if waiting & !(ASLEEP | ARMED) != 0 { u32::MAX } else { 1 });
            self.stats.wakes += 1;
        }
    }

    /// Waits until `ready` finds messages (or room) waiting, the peer is
    /// gone (`Disconnected`) or the deadline passes (`Timeout`). `ready`
    /// reads the peer's index (and returns `Corrupted` for an impossible
    /// one) and says how much it found: 0 for nothing yet, 1 for a single
    /// message (or slot), 2 for more.
    pub(super) fn wait(&mut self, deadline: Deadline, mut ready: impl FnMut(&mut Self) -> Result<u64>) -> Result<()> {
        if self.policy != WaitPolicy::Block {
            if self.pace.slipping {
                self.stats.slips += 1;
                for _ in 0..SLIP_SPINS {
                    shim::spin();
                }
            }
            for look in 1..=QUICK_SPINS {
                let found = ready(self)?;
                if found > 0 {
                    self.pace.end(look, found);
                    return Ok(());
                }
                shim::spin();
            }
            self.pace.end(0, 0);
        }
        self.wait_long(deadline, |side| ready(side).map(|found| found > 0))
    }

    /// [`wait`](Self::wait) after its first checks.
    #[inline(never)]
    fn wait_long(&mut self, deadline: Deadline, mut ready: impl FnMut(&mut Self) -> Result<bool>) -> Result<()> {
        if matches!(self.policy, WaitPolicy::Adaptive | WaitPolicy::Spin) {
            let rounds = if self.policy == WaitPolicy::Spin { u32::MAX } else { SPINS };
            for i in 0..rounds {
                if ready(self)? {
                    return Ok(());
                }
                if i % 256 == 255 {
                    if self.peer_gone(false)? {
                        return self.gone(&mut ready);
                    }
                    if deadline.has_expired() {
                        return Err(Error::Timeout);
                    }
                }
                shim::spin();
            }
        }
        loop {
            if ready(self)? {
                return Ok(());
            }
            if self.peer_gone(true)? {
                return self.gone(&mut ready);
            }
            if deadline.has_expired() {
                return Err(Error::Timeout);
            }
            let line = self.my_sleep();
            // Acquire: pairs with the waker's Release bump.
            let seen = line.signal.load(Ordering::Acquire);
            // Relaxed: ordered by the fence that follows. A bit, not the
            // word: a poller may arm the side meanwhile.
            line.waiting.fetch_or(ASLEEP, Ordering::Relaxed);
            // SeqCst fence: see `shim::publish`.
            fence(Ordering::SeqCst);
            let mut slice = SLEEP_SLICE;
            if self.barrier {
                // We promised the peer (FLAG_BARRIER) to force a barrier on
                // it here, so that it may publish without one. Should the
                // kernel refuse, its index may reach us late: sleep briefly.
                self.stats.barriers += 1;
                if !shim::barrier() {
                    slice = UNBARRIERED_SLICE;
                }
            }
            let ready_now = ready(self);
            let line = self.my_sleep();
            if !matches!(ready_now, Ok(false)) {
                line.waiting.fetch_and(!ASLEEP, Ordering::Relaxed);
                return ready_now.map(drop);
            }
            let slice = Deadline::after(slice);
            let until = match deadline.instant() {
                Some(d) if Some(d) < slice.instant() => deadline,
                _ => slice,
            };
            shim::futex_wait_until(&line.signal, seen, until);
            line.waiting.fetch_and(!ASLEEP, Ordering::Relaxed);
            self.stats.sleeps += 1;
        }
    }

    /// The peer is gone. A receiver still gets what was published before
    /// (it drains first); a sender has no one to send to.
    fn gone(&mut self, ready: &mut impl FnMut(&mut Self) -> Result<bool>) -> Result<()> {
        if self.role == Role::Receiver && ready(self)? { Ok(()) } else { Err(Error::Disconnected) }
    }

    /// Closes this side (on drop by the claiming process) and wakes the
    /// peer so that it notices at once.
    pub(super) fn close(&mut self) {
        if self.owner != liveness::this_process() {
            return; // a forked child's copy: not ours to close
        }
        // Release: our last index update happens before CLOSED.
        self.conn.status().state(self.role).store(CLOSED, Ordering::Release);
        if let (Some(lock), Some(file)) = (&self.live, self.conn.mem.file()) {
            liveness::release(file, self.role, lock);
        }
        let line = self.peer_sleep();
        line.signal.fetch_add(1, Ordering::Release);
        shim::futex_wake(&line.signal, u32::MAX);
        let _ = bell::ring(&self.conn, self.role.peer());
    }
}

/// Checks the receiver's index as the sender reads it (from `conn`):
/// never behind what the sender saw before (`seen`), never past what it
/// sent (`tail`).
#[inline]
pub(super) fn check_head(conn: &Conn, head: u64, seen: u64, tail: u64) -> Result<()> {
    if head < seen || head > tail {
        return Err(conn.explain(bad_head(head, seen, tail)));
    }
    Ok(())
}

#[cold]
fn bad_head(head: u64, seen: u64, tail: u64) -> Error {
    Error::Corrupted { what: format!("receiver index {head} outside {seen}..={tail}") }
}

/// Checks the sender's index as the receiver reads it: never behind what
/// the receiver saw before (`seen`) or its own index, at most a ring
/// (`capacity`) ahead of it, and a multiple of `step` (8 for the byte
/// channel, whose records are 8-aligned; 1 for slots).
#[inline]
pub(super) fn check_tail(conn: &Conn, tail: u64, head: u64, seen: u64, capacity: u64, step: u64) -> Result<()> {
    if tail < seen || tail < head || tail - head > capacity || !tail.is_multiple_of(step) {
        return Err(conn.explain(bad_tail(tail, head, seen, capacity, step)));
    }
    Ok(())
}

#[cold]
fn bad_tail(tail: u64, head: u64, seen: u64, capacity: u64, step: u64) -> Error {
    let mut what = format!("sender index {tail} outside {}..={}", seen.max(head), head.saturating_add(capacity));
    if step > 1 {
        what += &format!(" or not a multiple of {step}");
    }
    Error::Corrupted { what }
}

/// What every sending and receiving type has over its `side: Side`
/// field: choosing how to wait (for `$what`), its counts of system calls,
/// and closing the side when it is dropped.
macro_rules! side_methods {
    ($ty:ident $(<$t:ident>)?, $what:literal) => {
        impl$(<$t>)? $ty$(<$t>)? {
            #[doc = concat!("Chooses how to wait for ", $what, ".")]
            pub fn set_wait_policy(&mut self, policy: $crate::channel::WaitPolicy) {
                self.side.policy = policy;
            }

            /// The system calls this side has made.
            pub fn stats(&self) -> $crate::channel::ChannelStats {
                self.side.stats
            }
        }

        /// Pollable through the channel's doorbell (see the
        /// [module docs](mod@crate::channel#waiting-on-many-endpoints)).
        impl$(<$t>)? ipc_sync::ready::Pollable for $ty$(<$t>)? {
            fn source(
                &self,
                interest: ipc_sync::ready::Interest,
            ) -> std::io::Result<Option<ipc_sync::ready::Source<'_>>> {
                self.side.source(interest, self.head, self.tail)
            }

            fn polls_cheaply(&self) -> bool {
                true
            }
        }

        impl$(<$t>)? Drop for $ty$(<$t>)? {
            fn drop(&mut self) {
                self.side.close();
            }
        }
    };
}
pub(super) use side_methods;
