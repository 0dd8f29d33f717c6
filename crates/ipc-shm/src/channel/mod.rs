//! Channels between two processes through shared memory.
//!
//! Two kinds, both single-producer single-consumer and lock-free:
//!
//! - [`channel`] of `T: Pod` messages in fixed slots: [`Sender`] and
//!   [`Receiver`], with batch forms that publish or take many messages with
//!   one index update;
//! - [`byte_channel`] of variable-length byte records: [`ByteSender`]
//!   (with zero-copy [`reserve`](ByteSender::reserve)) and [`ByteReceiver`]
//!   (with zero-copy [`recv_with`](ByteReceiver::recv_with)).
//!
//! A channel is made first ([`Channel`], [`ByteChannel`]) in anonymous
//! shared memory (inherited by children forked afterwards), in a memfd
//! (for children across exec), or under a POSIX shared memory name (for
//! unrelated processes); then each process claims the side it uses with
//! `sender()` or `receiver()`, once. Every process holding a named channel
//! keeps a shared `flock` on its object, so a name left behind by processes
//! that were all killed is told from one in use, and taken over with
//! [`Channel::create_or_reclaim`].
//!
//! The waiting side spins briefly and then sleeps on a futex; the other
//! side makes the wake system call only when it is actually asleep, so a
//! steady stream makes almost none. Publishing a message costs no full
//! memory barrier either when both processes could register for
//! `membarrier(2)` (Linux 4.16 and later, unless a seccomp filter refuses
//! it): the side about to sleep forces the barrier on the other instead
//! ([`ipc_sync::membarrier`]); otherwise each publish carries one. A side
//! that is dropped wakes the other, which receives what was sent and then
//! gets [`Error::Disconnected`]. A side whose process dies without dropping
//! it (killed) is noticed by the other within about 20 ms while it waits,
//! and by `try_*` calls that find the ring full or empty, in any PID
//! namespace: the kernel drops a lock that the claiming process held. No
//! pid is ever looked at.
//!
//! # A peer that never comes
//!
//! In a channel made for `fork` ([`channel`], [`byte_channel`],
//! `anonymous`), a process may claim a side through each handle (the
//! [`Channel`] or [`ByteChannel`] value, or a clone of it) that has not
//! claimed one yet, and children forked from it inherit the handles. When
//! every process that could still claim the side a waiting side needs is
//! gone, unclaimed, the wait ends in [`Error::Disconnected`] within about
//! 20 ms. So:
//!
//! - fork first, then claim in the process that uses the side;
//! - to claim both sides in one process, on different threads or at
//!   different times, use one handle per side (clone it): a process whose
//!   every handle has claimed no longer counts as a possible claimer, and a
//!   side it waits on then ends in `Disconnected`. (One handle may still
//!   claim both sides, one after the other, as long as nothing waits in
//!   between.)
//! - A child forked after its parent claimed through its last handle may
//!   not claim the other side ([`Error::SideGivenUp`]): its parent's peer
//!   may already have taken that side for gone.
//!
//! Named and memfd channels have no such rule: any process may still open
//! them, so a side waits for its peer to come for as long as its deadline
//! allows. For them the lock that stands for a claimed side is held
//! through an open file description of the side's own, which a child
//! forked after the claim shares until it exits or execs. It is opened
//! through /proc (a named channel falls back to its name); a memfd
//! channel's side cannot be claimed where /proc is not mounted.
//!
//! Nothing read from shared memory is trusted: indices and lengths are
//! checked against the capacity each side keeps privately, and an
//! impossible value is [`Error::Corrupted`], never an access out of bounds,
//! a panic or a huge allocation.
//!
//! The [crate documentation](crate) has an example across `fork`.

mod bytes;
pub(crate) mod layout;
mod liveness;
mod shim;
mod slots;
mod sys;

use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;
use ipc_sync::Deadline;
use shim::fence;

pub use bytes::{ByteChannel, ByteReceiver, ByteSender, Reservation, byte_channel};
pub use slots::{Receiver, Sender, channel};

use crate::error::{Error, Result};
use crate::mapping::Mapping;
use crate::sys::{Fault, Region};
use crate::{Memfd, PosixShm};
use layout::{CLOSED, CONNECTED, DATA, FLAG_BARRIER, Header, LOCKED, Line, MAGIC, STATUS, UNCLAIMED, VERSION};
use liveness::{Candidates, Claim};

/// How a side waits for the other.
///
/// Under `Spin` and `Adaptive`, a side that finds its peer streaming (its
/// waits end at once, again and again) starts each wait with 8 spin-loop
/// pauses (about 0.2 µs on an AMD EPYC; a pause lasts longer or shorter
/// on other CPUs), so that it takes messages in batches instead of one by
/// one on the cache lines the peer is writing; it stops as soon as the
/// traffic looks like requests and answers. [`ChannelStats::slips`] counts
/// these pauses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WaitPolicy {
    /// Busy-wait without sleeping: the lowest latency, a CPU kept busy.
    Spin,
    /// Spin some microseconds, then sleep on a futex.
    #[default]
    Adaptive,
    /// Sleep on a futex at once.
    Block,
}

/// Counts of the system calls a side made, for measuring how few a steady
/// stream needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Futex wake calls made to wake the other side.
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

/// What identifies a channel's layout, checked when a peer opens it.
#[derive(Clone, Copy, Debug)]
struct Spec {
    kind: u32,
    slot_size: u64,
    slot_align: u64,
    type_hash: u64,
    type_name: &'static str,
}

impl Spec {
    fn slots<T>() -> Result<Spec> {
        if size_of::<T>() == 0 {
            return Err(Error::InvalidSize { size: 0, reason: "a channel cannot carry zero-sized messages" });
        }
        if align_of::<T>() > layout::LINE {
            return Err(Error::InvalidSize {
                size: align_of::<T>(),
                reason: "a message type may be aligned to at most 128 bytes",
            });
        }
        let type_name = std::any::type_name::<T>();
        Ok(Spec {
            kind: layout::KIND_SLOTS,
            slot_size: size_of::<T>() as u64,
            slot_align: align_of::<T>() as u64,
            type_hash: layout::type_hash(type_name),
            type_name,
        })
    }

    fn bytes() -> Spec {
        Spec { kind: layout::KIND_BYTES, slot_size: 1, slot_align: 8, type_hash: 0, type_name: "bytes" }
    }
}

/// The memory of a channel and what keeps it alive (and its name owned).
#[derive(Debug)]
struct Memory {
    map: Mapping,
    _name: Option<PosixShm>,
    memfd: Option<Memfd>,
    /// The memfd behind a channel made for `fork` (not handed out).
    anon: Option<Memfd>,
    /// Who may still claim each side of a channel made for `fork`.
    candidates: Option<Candidates>,
    /// Under loom: the model that stands in for the mapping.
    #[cfg(loom)]
    model: Option<shim::model::Store>,
}

/// A connection point: shared memory with a channel header, from which
/// each process claims its side.
#[derive(Debug, Clone)]
struct Conn {
    mem: Arc<Memory>,
    header: Header,
}

impl Conn {
    fn create(spec: Spec, capacity: usize, backing: Backing<'_>) -> Result<Conn> {
        if capacity == 0 || !capacity.is_power_of_two() {
            return Err(Error::InvalidSize { size: capacity, reason: "the capacity must be a power of two" });
        }
        let data = (capacity as u64)
            .checked_mul(spec.slot_size)
            .filter(|&d| d <= (1 << 40))
            .ok_or(Error::InvalidSize { size: capacity, reason: "the ring would be larger than 1 TiB" })?;
        let total = DATA + data as usize;
        let header = Header {
            magic: 0,
            version: VERSION,
            kind: spec.kind,
            capacity: capacity as u64,
            slot_size: spec.slot_size,
            slot_align: spec.slot_align,
            type_hash: spec.type_hash,
            data_offset: DATA as u64,
            total_size: total as u64,
        };
        let (map, name, memfd) = match backing {
            Backing::Anonymous | Backing::Memfd => {
                // A memfd also for a channel made for fork: its file carries
                // the sides' liveness locks (see `liveness`).
                let m = Memfd::create("ipc-kit-channel", total)?;
                let map = m.map()?;
                write_header(&map, &header)?;
                (map, None, Some(m))
            }
            Backing::Named(n) => {
                // The object gets its name only with its header written: no
                // process ever finds it half made, and a creator killed
                // before leaves nothing.
                let (mut shm, map) = PosixShm::create_prepared(n, total, 0o600, |shm| {
                    let map = shm.map_len(total)?;
                    ipc_sync::failpoint::hit("channel:mapped");
                    write_header(&map, &header)?;
                    Ok(map)
                })?;
                // Held from now on (a lock taken while preparing would be
                // let go where creation, lacking O_TMPFILE, locks the object
                // itself). A create_or_reclaim elsewhere may have found it
                // unlocked in the instant before, and taken the name.
                shm.lock_shared()?;
                if !shm.is_still_named()? {
                    shm.persist();
                    return Err(Error::AlreadyExists { what: WHAT_NAMED, name: n.to_owned() });
                }
                (map, Some(shm), None)
            }
        };
        let header = Header { magic: MAGIC, ..header };
        let mut mem = Memory::new(map, name, None);
        match backing {
            Backing::Anonymous => {
                mem.anon = memfd;
                mem.candidates =
                    Some(Candidates::new().map_err(|e| Error::Io { op: "pipe2 (channel liveness)", source: e })?);
            }
            _ => mem.memfd = memfd,
        }
        Ok(Conn { mem: Arc::new(mem), header })
    }

    fn open(spec: Spec, map: Mapping, name: Option<PosixShm>, memfd: Option<Memfd>) -> Result<Conn> {
        let mismatch = |reason: String| Error::LayoutMismatch { reason };
        if map.len() < DATA {
            return Err(mismatch(format!("{} bytes is too small for a channel", map.len())));
        }
        // Every channel is complete before any process can open it (a named
        // one gets its name only then): no magic number, no channel.
        // Acquire: pairs with the creator's Release store of the magic.
        if map.shared::<AtomicU64>(0)?.get().load(Ordering::Acquire) != MAGIC {
            return Err(mismatch("no channel header (wrong magic number)".into()));
        }
        let h: Header = map.read(0)?;
        if h.version != VERSION {
            return Err(mismatch(format!("layout version {} (this library speaks {VERSION})", h.version)));
        }
        if h.kind != spec.kind {
            let kind = |k| if k == layout::KIND_SLOTS { "a slot channel" } else { "a byte channel" };
            return Err(mismatch(format!("it is {}, not {}", kind(h.kind), kind(spec.kind))));
        }
        if (h.slot_size, h.slot_align, h.type_hash) != (spec.slot_size, spec.slot_align, spec.type_hash) {
            return Err(mismatch(format!(
                "its messages are {} bytes aligned to {} (type hash {:#x}); {} is {} bytes aligned to {} \
                 (type hash {:#x})",
                h.slot_size, h.slot_align, h.type_hash, spec.type_name, spec.slot_size, spec.slot_align, spec.type_hash
            )));
        }
        let expected = h.capacity.checked_mul(h.slot_size).and_then(|d| d.checked_add(DATA as u64));
        // A byte channel's ring holds at least 64 bytes (its longest record
        // is half the ring less an 8-byte header).
        let least = if h.kind == layout::KIND_BYTES { 64 } else { 1 };
        if h.capacity < least
            || !h.capacity.is_power_of_two()
            || h.data_offset != DATA as u64
            || expected != Some(h.total_size)
            || h.total_size > map.len() as u64
        {
            return Err(mismatch(format!(
                "inconsistent sizes: capacity {}, data at {}, total {} in a {}-byte mapping",
                h.capacity,
                h.data_offset,
                h.total_size,
                map.len()
            )));
        }
        Ok(Conn { mem: Arc::new(Memory::new(map, name, memfd)), header: h })
    }

    /// Opens the channel under `name`, holding the shared lock that tells
    /// `create_or_reclaim` it is in use.
    fn open_named(spec: Spec, name: &str) -> Result<Conn> {
        for _ in 0..NAME_RACES {
            let shm = PosixShm::open(name)?;
            shm.lock_shared()?;
            // Reclaimed (unlinked) between the open and the lock: try the
            // name again.
            if shm.is_still_named()? {
                // Complete once named (see `create`): what is too small for
                // a header is not a channel.
                let size = shm.size()?;
                if size < DATA as u64 {
                    return Err(Error::LayoutMismatch { reason: format!("{size} bytes is too small for a channel") });
                }
                let map = shm.map()?;
                return Self::open(spec, map, Some(shm), None);
            }
        }
        Err(Error::NotFound { what: WHAT_NAMED, name: name.to_owned() })
    }

    /// Creates the channel under `name`, first unlinking a stale one there:
    /// one whose object no process holds (see `Channel::create_or_reclaim`).
    fn create_or_reclaim(spec: Spec, capacity: usize, name: &str) -> Result<Conn> {
        for _ in 0..NAME_RACES {
            match Conn::create(spec, capacity, Backing::Named(name)) {
                Err(Error::AlreadyExists { .. }) => {}
                other => return other,
            }
            let mut old = match PosixShm::open(name) {
                Err(Error::NotFound { .. }) => continue,
                other => other?,
            };
            if !old.try_lock_exclusive()? {
                return Err(Error::AlreadyExists {
                    what: "shared memory channel (held by a live process)",
                    name: name.to_owned(),
                });
            }
            if !old.is_still_named()? {
                continue;
            }
            // Only a channel is taken over: a regular file holding a
            // channel's header. A creation never leaves a half-made one
            // under the name, so anything else (another program's object,
            // an empty one, a FIFO) is left alone.
            if !holds_a_channel(&old)? {
                return Err(Error::LayoutMismatch {
                    reason: format!("{name} holds something other than a channel; it is left alone"),
                });
            }
            match old.unlink() {
                Err(Error::NotFound { .. }) | Ok(()) => {}
                Err(e) => return Err(e),
            }
        }
        Err(Error::AlreadyExists { what: WHAT_NAMED, name: name.to_owned() })
    }

    fn open_memfd(spec: Spec, memfd: Memfd) -> Result<Conn> {
        let map = memfd.map()?;
        Self::open(spec, map, None, Some(memfd))
    }

    #[inline]
    fn region(&self) -> &Region {
        self.mem.map.region()
    }

    #[inline]
    fn line(&self, offset: usize) -> &Line {
        #[cfg(loom)]
        if let Some(model) = &self.mem.model {
            return model.line(offset);
        }
        // Offsets are constants below DATA, and the mapping holds at least
        // DATA bytes (checked on create and open): the view is always made.
        match self.region().view::<Line>(offset) {
            Ok(line) => line,
            Err(_) => spare_line(),
        }
    }

    /// Copies a slot's bytes in at `offset` (from the ring's own checked
    /// indices).
    #[inline]
    fn write_slot(&self, offset: usize, bytes: &[u8]) -> Result<()> {
        #[cfg(loom)]
        if let Some(model) = &self.mem.model {
            model.write(offset, bytes);
            return Ok(());
        }
        self.region().copy_in(offset, bytes).map_err(|f| self.fault(f, offset, bytes.len()))
    }

    /// Copies a slot's bytes out from `offset`.
    #[inline]
    fn read_slot(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        #[cfg(loom)]
        if let Some(model) = &self.mem.model {
            model.read(offset, out);
            return Ok(());
        }
        self.region().copy_out(offset, out).map_err(|f| self.fault(f, offset, out.len()))
    }

    /// The error for an access of `len` bytes at `offset` that failed:
    /// `Truncated` when the object was shrunk under the mapping (the
    /// bytes met were zeros of our own, not the peer's), `Corrupted` for
    /// an offset outside it (which the checked indices never give).
    #[cold]
    fn fault(&self, fault: Fault, offset: usize, len: usize) -> Error {
        match fault {
            Fault::Truncated => self.mem.map.fault_error(fault, offset, len),
            Fault::OutOfBounds | Fault::Misaligned => Error::Corrupted {
                what: format!(
                    "an access of {len} bytes at offset {offset} outside the {}-byte mapping",
                    self.mem.map.len()
                ),
            },
        }
    }

    /// Whether an access met pages cut off from the object, for checks
    /// after in-place access (the byte channel's slices).
    #[inline]
    fn faults(&self) -> Result<()> {
        self.region().faults().map_err(|f| self.fault(f, DATA, 0))
    }

    /// `e` (an impossible index), or `Truncated` when the index was read
    /// from a page cut off from the shrunk object, which reads as zeros.
    #[cold]
    fn explain(&self, e: Error) -> Error {
        match self.region().faults() {
            Err(f) => self.fault(f, DATA, 0),
            Ok(()) => e,
        }
    }

    /// A channel whose memory is loom's model, for model checking.
    #[cfg(loom)]
    fn model(spec: Spec, capacity: usize) -> Conn {
        let header = Header {
            magic: MAGIC,
            version: VERSION,
            kind: spec.kind,
            capacity: capacity as u64,
            slot_size: spec.slot_size,
            slot_align: spec.slot_align,
            type_hash: spec.type_hash,
            data_offset: DATA as u64,
            total_size: (DATA + capacity * spec.slot_size as usize) as u64,
        };
        let map = Mapping::anonymous(4096).expect("a page for the model's unused mapping");
        let model = Some(shim::model::Store::new(capacity, spec.slot_size as usize));
        Conn { mem: Arc::new(Memory { map, _name: None, memfd: None, anon: None, candidates: None, model }), header }
    }

    /// Claims the sending or receiving side for this process.
    ///
    /// The side's liveness lock is taken first (it also decides a race of
    /// two claimers), then the state is set: LOCKED when we hold the lock.
    fn claim(&self, tx: bool) -> Result<Side> {
        let side_name = if tx { "sender" } else { "receiver" };
        let status = self.line(STATUS);
        let (state, pid) = if tx { (&status.tx_state, &status.tx_pid) } else { (&status.rx_state, &status.rx_pid) };
        // Relaxed: a first look only; the compare-and-swap below decides.
        if state.load(Ordering::Relaxed) != UNCLAIMED {
            return Err(Error::AlreadyConnected { side: side_name });
        }
        if let Some(c) = &self.mem.candidates
            && !c.may_claim(tx)
        {
            return Err(Error::SideGivenUp { side: side_name });
        }
        let for_fork = self.mem.candidates.is_some();
        let live = match self.mem.file() {
            Some(file) => match liveness::take_lock(file, tx, for_fork, self.mem._name.as_ref()) {
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
        if let Some(c) = &self.mem.candidates {
            c.claimed(tx);
        }
        let barrier = shim::register_barriers();
        if barrier {
            let flags = if tx { &status.tx_flags } else { &status.rx_flags };
            // Relaxed: a peer that does not see the flag yet only keeps its
            // full barriers.
            flags.store(FLAG_BARRIER, Ordering::Relaxed);
        }
        Ok(Side {
            conn: self.clone(),
            tx,
            owner: liveness::this_process(),
            policy: WaitPolicy::Adaptive,
            last_check: Instant::now(),
            stats: ChannelStats::default(),
            barrier,
            peer_barrier: false,
            peer_dead: false,
            live,
            pace: Pace::default(),
        })
    }

    /// Whether the peer of side `tx` is gone for good: it closed, its
    /// claiming process died (its lock is free), or it was never claimed
    /// and no process that could claim it is left. Asks the kernel (one or
    /// two system calls).
    fn peer_gone_now(&self, tx: bool) -> bool {
        let peer = !tx;
        let status = self.line(STATUS);
        let state = if peer { &status.tx_state } else { &status.rx_state };
        // Acquire: the peer's last index update happens before its CLOSED,
        // and its lock before its LOCKED.
        if state.load(Ordering::Acquire) == UNCLAIMED {
            let Some(c) = &self.mem.candidates else { return false };
            if !c.none_left(peer) {
                return false;
            }
            // The last possible claimer may have claimed just before it went.
            if state.load(Ordering::Acquire) == UNCLAIMED {
                return true;
            }
        }
        match state.load(Ordering::Acquire) {
            // Every claimed side holds its lock: the kernel decides, whatever
            // of the two a peer wrote.
            LOCKED | CONNECTED => self.mem.file().is_some_and(|file| !liveness::lock_held(file, peer)),
            UNCLAIMED => false,
            _ => true, // CLOSED, or garbage from a broken peer
        }
    }

    fn memfd(&self) -> Option<&Memfd> {
        self.mem.memfd.as_ref()
    }
}

impl Memory {
    fn new(map: Mapping, name: Option<PosixShm>, memfd: Option<Memfd>) -> Memory {
        Memory {
            map,
            _name: name,
            memfd,
            anon: None,
            candidates: None,
            #[cfg(loom)]
            model: None,
        }
    }

    /// The file behind the channel, which carries the liveness locks.
    fn file(&self) -> Option<BorrowedFd<'_>> {
        let named = self._name.as_ref().map(AsFd::as_fd);
        named.or_else(|| self.memfd.as_ref().or(self.anon.as_ref()).map(AsFd::as_fd))
    }
}

/// Whether the object is a regular file holding a channel's header (its
/// magic number): what `create_or_reclaim` may take over.
fn holds_a_channel(shm: &PosixShm) -> Result<bool> {
    if !shm.is_regular_file()? || shm.size()? < DATA as u64 {
        return Ok(false);
    }
    let magic: u64 = shm.map_len(8)?.read(0)?;
    Ok(magic == MAGIC)
}

/// Writes a new channel's header, the magic number last.
fn write_header(map: &Mapping, header: &Header) -> Result<()> {
    map.write(0, header)?;
    // Release: the header is complete before a peer sees the magic.
    map.shared::<AtomicU64>(0)?.store(MAGIC, Ordering::Release);
    Ok(())
}

/// What a channel handle ([`Channel`], [`ByteChannel`]) adds to its
/// connection: whether a side was claimed through it. In a channel made
/// for `fork`, a process stands as a possible claimer of the sides while
/// it has a handle through which none was claimed (see `liveness`).
#[derive(Debug)]
struct Handle {
    spent: std::sync::atomic::AtomicBool,
}

impl Handle {
    fn new(conn: &Conn) -> Handle {
        if let Some(c) = &conn.mem.candidates {
            c.handle_made();
        }
        Handle { spent: std::sync::atomic::AtomicBool::new(false) }
    }

    /// Claims side `tx` through this handle.
    fn claim(&self, conn: &Conn, tx: bool) -> Result<Side> {
        let side = conn.claim(tx)?;
        // Relaxed: only this process's count depends on it, under its lock.
        if !self.spent.swap(true, Ordering::Relaxed)
            && let Some(c) = &conn.mem.candidates
        {
            c.handle_spent();
        }
        Ok(side)
    }

    /// The handle goes.
    fn drop_from(&self, conn: &Conn) {
        if !self.spent.load(Ordering::Relaxed)
            && let Some(c) = &conn.mem.candidates
        {
            c.handle_spent();
        }
    }
}

/// Where a new channel's memory comes from.
#[derive(Clone, Copy)]
enum Backing<'a> {
    Anonymous,
    Memfd,
    Named(&'a str),
}

/// How the errors about a named channel's object name it.
const WHAT_NAMED: &str = "shared memory channel";

/// How many times a named open or create tries again when another process
/// reclaims the name under it; each retry means that process made progress.
const NAME_RACES: usize = 8;

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

/// The pauses a slipping side makes before it first looks (see [`Pace`]):
/// about 0.2 µs on the machine the bench ran on (25 ns a pause), time for
/// a streaming peer to write a few messages.
const SLIP_SPINS: u32 = if cfg!(loom) { 1 } else { 8 };

/// Short waits in a row after which a side starts slipping.
const SLIP_AFTER: u32 = 4;

/// What both ends of both kinds of channel share: the connection, which
/// side this is, and the waiting and waking.
#[derive(Debug)]
struct Side {
    conn: Conn,
    tx: bool,
    /// The claiming process: only it closes the side on drop (a forked
    /// child's copy of the handle must not, whatever its pid).
    owner: liveness::Process,
    policy: WaitPolicy,
    last_check: Instant,
    stats: ChannelStats,
    /// This process receives membarrier barriers and this side issues one
    /// before it sleeps (our FLAG_BARRIER).
    barrier: bool,
    /// The peer's FLAG_BARRIER, once seen (it is never cleared).
    peer_barrier: bool,
    /// The peer was found gone for good: every later check says so.
    peer_dead: bool,
    /// This side's liveness lock, if it could take one (see `liveness`).
    live: Option<liveness::Lock>,
    /// How this side paces its waits.
    pace: Pace,
}

/// How a side paces its waits for a streaming peer ("temporal slipping",
/// after FastForward, Giacomoni et al., PPoPP 2008).
///
/// A receiver that keeps up with a fast sender waits a moment for nearly
/// every message, and takes each one while the sender writes the next
/// beside it: the index line and the record lines then travel between the
/// two CPUs for every message, and both sides slow down. So once a side's
/// waits end at once several times in a row, it starts its later waits
/// with a short pause before the first look, letting the peer get a few
/// messages ahead; it takes them as a batch, on lines the peer has left.
/// As soon as a slipped wait brings a single message (not a stream but a
/// request and its answer), or a wait is long, the side stops slipping.
/// The sender, waiting on a full ring, paces itself the same way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Pace {
    /// Indices published (messages handled) since the last wait.
    handled: u32,
    /// Waits in a row that ended at the first or second look.
    short: u32,
    /// Whether waits start with [`SLIP_SPINS`] pauses.
    slipping: bool,
}

impl Pace {
    /// At the start of a wait: whether to slip first.
    #[inline]
    fn start(&mut self) -> bool {
        let handled = std::mem::take(&mut self.handled);
        if self.slipping && handled < 2 {
            // The last slip brought one message: not a stream.
            self.slipping = false;
        }
        self.slipping
    }

    /// A wait ended after `looks` looks at the peer's index (1: the first
    /// found it ready; 0: it never did).
    #[inline]
    fn end(&mut self, looks: u32) {
        if !(1..=2).contains(&looks) {
            *self = Pace::default();
        } else if !self.slipping {
            self.short += 1;
            if self.short >= SLIP_AFTER {
                *self = Pace { handled: 0, short: 0, slipping: true };
            }
        }
    }
}

/// Indices stay far below this (2^62 bytes or messages take centuries),
/// so sums of checked indices and capacities never overflow.
const INDEX_LIMIT: u64 = 1 << 62;

impl Side {
    #[inline]
    fn capacity(&self) -> u64 {
        self.conn.header.capacity
    }

    /// The sender's and receiver's indices as found when this side
    /// connects, checked: the receiver's at most a ring behind, neither
    /// absurdly large, both on a record boundary of a byte channel (a
    /// multiple of 8, which every later index then keeps). A side that
    /// finds them broken refuses to connect.
    fn initial_indices(&self) -> Result<(u64, u64)> {
        let step = if self.conn.header.kind == layout::KIND_BYTES { bytes::RECORD_ALIGN } else { 1 };
        // Acquire: see what a previous user of the channel left.
        let tail = self.conn.line(layout::TAIL).index.load(Ordering::Acquire);
        let head = self.conn.line(layout::HEAD).index.load(Ordering::Acquire);
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
        self.conn.line(if self.tx { layout::TX_SLEEP } else { layout::RX_SLEEP })
    }

    #[inline]
    fn peer_sleep(&self) -> &Line {
        self.conn.line(if self.tx { layout::RX_SLEEP } else { layout::TX_SLEEP })
    }

    /// Whether the peer has closed its side or was found gone (one load and
    /// a flag, for the fast path of every send).
    #[inline]
    fn peer_closed(&self) -> bool {
        let status = self.conn.line(STATUS);
        let state = if self.tx { &status.rx_state } else { &status.tx_state };
        // Relaxed: only the flag is read; nothing the peer wrote before it
        // is read on this path.
        self.peer_dead || !matches!(state.load(Ordering::Relaxed), UNCLAIMED | CONNECTED | LOCKED)
    }

    /// Whether the peer has closed its side or is gone for good (see
    /// [`Conn::peer_gone_now`]). The kernel is asked at most every 10 ms
    /// unless `now`; a closed state is seen at once.
    fn peer_gone(&mut self, now: bool) -> bool {
        if self.peer_closed() {
            return true;
        }
        if !now && self.last_check.elapsed() < LIVENESS_EVERY {
            return false;
        }
        self.last_check = Instant::now();
        self.peer_dead = self.conn.peer_gone_now(self.tx);
        self.peer_dead
    }

    /// Publishes our index (the TAIL line's for the sender, HEAD's for the
    /// receiver) and wakes the peer if it sleeps or is about to.
    #[inline]
    fn publish(&mut self, index: u64) {
        self.pace.handled = self.pace.handled.saturating_add(1);
        let light = self.barrier && (self.peer_barrier || self.see_peer_barrier());
        let mine = self.conn.line(if self.tx { layout::TAIL } else { layout::HEAD });
        let line = self.peer_sleep();
        // See `shim::publish` for why no side of a sleep and a wake-up can
        // miss the other; Release in it: what we wrote (or finished
        // reading) happens before the peer sees the index.
        if shim::publish(&mine.index, index, &line.waiting, light) {
            self.wake_peer();
        }
    }

    /// Reads the peer's FLAG_BARRIER, until it is set.
    #[cold]
    fn see_peer_barrier(&mut self) -> bool {
        let status = self.conn.line(STATUS);
        let flags = if self.tx { &status.rx_flags } else { &status.tx_flags };
        // Relaxed: the flag is set before the peer can sleep, and seeing it
        // late only costs full barriers meanwhile.
        self.peer_barrier = flags.load(Ordering::Relaxed) & FLAG_BARRIER != 0;
        self.peer_barrier
    }

    /// Wakes the sleeping peer.
    #[cold]
    fn wake_peer(&mut self) {
        let line = self.peer_sleep();
        // Release: pairs with the sleeper's Acquire read of `signal`.
        line.signal.fetch_add(1, Ordering::Release);
        shim::futex_wake(&line.signal, 1);
        self.stats.wakes += 1;
    }

    /// Waits until `ready` holds, the peer is gone (`Disconnected`) or the
    /// deadline passes (`Timeout`). `ready` reads the peer's index (and
    /// returns `Corrupted` for an impossible one).
    ///
    /// The first few checks are inlined into the caller, so that a reader
    /// that keeps up with a stream, and so waits for nearly every message,
    /// picks each up without a call.
    #[inline]
    fn wait(&mut self, deadline: Deadline, mut ready: impl FnMut(&mut Self) -> Result<bool>) -> Result<()> {
        if self.policy != WaitPolicy::Block {
            if self.pace.start() {
                self.stats.slips += 1;
                for _ in 0..SLIP_SPINS {
                    shim::spin();
                }
            }
            for look in 1..=QUICK_SPINS {
                if ready(self)? {
                    self.pace.end(look);
                    return Ok(());
                }
                shim::spin();
            }
            self.pace.end(0);
        }
        self.wait_long(deadline, ready)
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
                    if self.peer_gone(false) {
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
            if self.peer_gone(true) {
                return self.gone(&mut ready);
            }
            if deadline.has_expired() {
                return Err(Error::Timeout);
            }
            let line = self.my_sleep();
            // Acquire: pairs with the waker's Release bump.
            let seen = line.signal.load(Ordering::Acquire);
            // Relaxed: ordered by the fence that follows.
            line.waiting.store(1, Ordering::Relaxed);
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
                line.waiting.store(0, Ordering::Relaxed);
                return ready_now.map(drop);
            }
            let slice = Deadline::after(slice);
            let until = match deadline.instant() {
                Some(d) if Some(d) < slice.instant() => deadline,
                _ => slice,
            };
            shim::futex_wait_until(&line.signal, seen, until);
            line.waiting.store(0, Ordering::Relaxed);
            self.stats.sleeps += 1;
        }
    }

    /// The peer is gone. A receiver still gets what was published before
    /// (it drains first); a sender has no one to send to.
    fn gone(&mut self, ready: &mut impl FnMut(&mut Self) -> Result<bool>) -> Result<()> {
        if !self.tx && ready(self)? { Ok(()) } else { Err(Error::Disconnected) }
    }

    /// Closes this side (on drop by the claiming process) and wakes the
    /// peer so that it notices at once.
    fn close(&mut self) {
        if self.owner != liveness::this_process() {
            return; // a forked child's copy: not ours to close
        }
        let status = self.conn.line(STATUS);
        let state = if self.tx { &status.tx_state } else { &status.rx_state };
        // Release: our last index update happens before CLOSED.
        state.store(CLOSED, Ordering::Release);
        if let (Some(lock), Some(file)) = (&self.live, self.conn.mem.file()) {
            liveness::release(file, self.tx, lock);
        }
        let line = self.peer_sleep();
        line.signal.fetch_add(1, Ordering::Release);
        shim::futex_wake(&line.signal, u32::MAX);
    }
}

/// Checks the receiver's index as the sender reads it (from `conn`):
/// never behind what the sender saw before (`seen`), never past what it
/// sent (`tail`).
#[inline]
fn check_head(conn: &Conn, head: u64, seen: u64, tail: u64) -> Result<()> {
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
fn check_tail(conn: &Conn, tail: u64, head: u64, seen: u64, capacity: u64, step: u64) -> Result<()> {
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

/// What [`Conn::line`] gives should a view of a line ever fail (the
/// mapping holds the whole header: checked on create and open): a line
/// apart from every mapping, so that no access leaves one.
#[cold]
fn spare_line() -> &'static Line {
    #[cfg(not(loom))]
    {
        static SPARE: std::sync::LazyLock<Line> = std::sync::LazyLock::new(Line::new);
        &SPARE
    }
    #[cfg(loom)]
    Box::leak(Box::new(Line::new()))
}

/// A channel of `T` messages in shared memory, before its sides are
/// claimed. See [`channel`].
pub struct Channel<T> {
    conn: Conn,
    /// Whether a side was claimed through this handle (see [`Handle`]).
    handle: Handle,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> Channel<T> {
    fn with(conn: Conn) -> Self {
        let handle = Handle::new(&conn);
        Channel { conn, handle, _t: PhantomData }
    }

    /// A channel of `capacity` slots (a power of two) in anonymous shared
    /// memory, for this process and the children it forks afterwards.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`] for a capacity that is not a power of two, or
    /// a zero-sized `T`.
    pub fn anonymous(capacity: usize) -> Result<Self> {
        Conn::create(Spec::slots::<T>()?, capacity, Backing::Anonymous).map(Self::with)
    }

    /// A channel in a new memfd, whose fd ([`memfd`](Self::memfd)) can be
    /// handed to an exec'd child, which opens it with
    /// [`from_memfd`](Self::from_memfd).
    ///
    /// # Errors
    ///
    /// As for [`anonymous`](Self::anonymous).
    pub fn new_memfd(capacity: usize) -> Result<Self> {
        Conn::create(Spec::slots::<T>()?, capacity, Backing::Memfd).map(Self::with)
    }

    /// A channel under a new POSIX shared memory name (mode 0600); this
    /// process owns the name and unlinks it when its last handle to the
    /// channel goes. Peers [`open`](Self::open) it by name.
    ///
    /// # Errors
    ///
    /// As for [`anonymous`](Self::anonymous), and as for
    /// [`PosixShm::create`].
    pub fn create(name: &str, capacity: usize) -> Result<Self> {
        Conn::create(Spec::slots::<T>()?, capacity, Backing::Named(name)).map(Self::with)
    }

    /// As [`create`](Self::create), but when the name holds a stale channel
    /// (one no process holds any more: its processes were killed before
    /// they could unlink it, or its creation was interrupted) that one is
    /// unlinked and a new one made. Every process that creates or opens a
    /// named channel holds a shared `flock` on its object for as long as it
    /// has a handle, side or child made with `fork` using it; the kernel
    /// drops the lock when the process dies, so a name no one holds is
    /// safe to take over.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`] when a live process holds the channel there;
    /// [`Error::LayoutMismatch`] when the name holds something other than a
    /// channel (left alone); as for [`create`](Self::create).
    pub fn create_or_reclaim(name: &str, capacity: usize) -> Result<Self> {
        Conn::create_or_reclaim(Spec::slots::<T>()?, capacity, name).map(Self::with)
    }

    /// Opens the channel another process created under `name`.
    ///
    /// # Errors
    ///
    /// [`Error::LayoutMismatch`] when it is not a channel of `T` (another
    /// message type, a byte channel, foreign data); as for
    /// [`PosixShm::open`].
    pub fn open(name: &str) -> Result<Self> {
        Conn::open_named(Spec::slots::<T>()?, name).map(Self::with)
    }

    /// Opens the channel in a memfd received from another process.
    ///
    /// # Errors
    ///
    /// As for [`open`](Self::open).
    pub fn from_memfd(memfd: Memfd) -> Result<Self> {
        Conn::open_memfd(Spec::slots::<T>()?, memfd).map(Self::with)
    }

    /// The memfd behind the channel, when made with
    /// [`new_memfd`](Self::new_memfd) or [`from_memfd`](Self::from_memfd).
    pub fn memfd(&self) -> Option<&Memfd> {
        self.conn.memfd()
    }

    /// Claims the sending side for this process.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyConnected`] when it was claimed before;
    /// [`Error::SideGivenUp`] in a child forked after its parent claimed
    /// the receiver; [`Error::Corrupted`] for impossible indices.
    pub fn sender(&self) -> Result<Sender<T>> {
        self.handle.claim(&self.conn, true).and_then(Sender::new)
    }

    /// Claims the receiving side for this process.
    ///
    /// # Errors
    ///
    /// As for [`sender`](Self::sender), with the sides swapped.
    pub fn receiver(&self) -> Result<Receiver<T>> {
        self.handle.claim(&self.conn, false).and_then(Receiver::new)
    }

    /// The capacity in messages.
    pub fn capacity(&self) -> usize {
        self.conn.header.capacity as usize
    }

    /// A channel in loom's model of shared memory, for `cargo xtask loom`.
    ///
    /// # Panics
    ///
    /// For a zero-sized `T`.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn model(capacity: usize) -> Self {
        Self::with(Conn::model(Spec::slots::<T>().expect("a sized message type"), capacity))
    }

    /// The shared memory under the channel (header, indices and ring), for
    /// inspection. Writing into it breaks the channel: the sides then
    /// report [`Error::Corrupted`] or carry wrong bytes.
    pub fn mapping(&self) -> &Mapping {
        &self.conn.mem.map
    }
}

impl<T: Pod> Clone for Channel<T> {
    /// Another handle to the same channel, through which a side can be
    /// claimed (in this process, or in a child forked later).
    fn clone(&self) -> Self {
        Channel::with(self.conn.clone())
    }
}

impl<T> Drop for Channel<T> {
    fn drop(&mut self) {
        self.handle.drop_from(&self.conn);
    }
}

impl<T> std::fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("type", &std::any::type_name::<T>())
            .field("capacity", &self.conn.header.capacity)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{Pace, SLIP_AFTER};

    /// A wait of `looks` looks after `handled` messages; whether it slipped.
    fn wait(pace: &mut Pace, handled: u32, looks: u32) -> bool {
        pace.handled = handled;
        let slipped = pace.start();
        pace.end(looks);
        slipped
    }

    #[test]
    fn a_peer_that_streams_is_given_a_lead() {
        let mut pace = Pace::default();
        for _ in 0..SLIP_AFTER {
            assert!(!wait(&mut pace, 1, 1), "no slip before the streak is complete");
        }
        // Each slip brings a batch: the side keeps slipping.
        for _ in 0..10 {
            assert!(wait(&mut pace, 5, 1));
        }
    }

    #[test]
    fn a_slip_that_brings_one_message_ends_the_slipping() {
        let mut pace = Pace::default();
        for _ in 0..SLIP_AFTER {
            wait(&mut pace, 1, 2);
        }
        assert!(wait(&mut pace, 3, 1));
        // Requests and answers: one message between waits.
        assert!(!wait(&mut pace, 1, 1));
        assert!(!wait(&mut pace, 1, 1), "a new streak is needed");
    }

    #[test]
    fn long_waits_never_slip_and_break_a_streak() {
        let mut pace = Pace::default();
        for _ in 0..100 {
            assert!(!wait(&mut pace, 1, 9));
        }
        for _ in 0..SLIP_AFTER - 1 {
            wait(&mut pace, 1, 1);
        }
        wait(&mut pace, 1, 0); // went on to spin longer, or sleep
        assert!(!wait(&mut pace, 1, 1));
        // A long wait while slipping stops it too.
        pace = Pace::default();
        for _ in 0..SLIP_AFTER {
            wait(&mut pace, 1, 1);
        }
        assert!(wait(&mut pace, 4, 30));
        assert!(!wait(&mut pace, 4, 1));
    }
}
