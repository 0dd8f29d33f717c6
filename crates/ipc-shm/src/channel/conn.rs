//! The shared object behind a channel: making it (anonymous, in a memfd
//! or under a name), opening it and checking its header, and taking over a
//! stale one under a name; then reaching its lines and its ring.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::handoff::Handoff;
use super::layout::{self, DATA, Header, Line, MAGIC, Role, VERSION};
use super::liveness::Candidates;
#[cfg(loom)]
use super::model;
use crate::error::{Error, Result};
use crate::mapping::Mapping;
use crate::sys::{Fault, Pinned, Span};
use crate::{Memfd, PosixShm};
use ipc_sync::EventFd;

/// What identifies a channel's layout, checked when a peer opens it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Spec {
    kind: u32,
    slot_size: u64,
    slot_align: u64,
    type_hash: u64,
    type_name: &'static str,
}

impl Spec {
    pub(super) fn slots<T>() -> Result<Spec> {
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

    pub(super) fn bytes() -> Spec {
        Spec { kind: layout::KIND_BYTES, slot_size: 1, slot_align: 8, type_hash: 0, type_name: "bytes" }
    }

    /// The header of a channel of `capacity` with `data` bytes of ring,
    /// before its magic number is set.
    fn header(self, capacity: usize, data: u64) -> Header {
        Header {
            magic: 0,
            version: VERSION,
            kind: self.kind,
            capacity: capacity as u64,
            slot_size: self.slot_size,
            slot_align: self.slot_align,
            type_hash: self.type_hash,
            data_offset: DATA as u64,
            total_size: DATA as u64 + data,
            flags: 0,
        }
    }
}

/// The memory of a channel and what keeps it alive (and its name owned).
#[derive(Debug)]
pub(super) struct Memory {
    pub(super) map: Mapping,
    pub(super) name: Option<PosixShm>,
    memfd: Option<Memfd>,
    /// The memfd behind a channel made for `fork` (not handed out).
    anon: Option<Memfd>,
    /// Who may still claim each side of a channel made for `fork`.
    pub(super) candidates: Option<Candidates>,
    /// The doorbells of a channel made for `fork`, one per side (by
    /// `Role::ix`), inherited with the memory: the peer rings a side's
    /// doorbell when a poller armed it (`layout::ARMED`).
    pub(super) bells: Option<[Arc<EventFd>; 2]>,
    /// Under loom: the model that stands in for the mapping.
    #[cfg(loom)]
    model: Option<model::Store>,
}

/// A connection point: shared memory with a channel header, from which
/// each process claims its side.
#[derive(Debug, Clone)]
pub(super) struct Conn {
    /// The memory, with its lines reached without checks (see `Pinned`).
    pub(super) mem: Pinned<Memory, DATA>,
    pub(super) header: Header,
}

impl Conn {
    pub(super) fn create(spec: Spec, capacity: usize, backing: Backing<'_>) -> Result<Conn> {
        if capacity == 0 || !capacity.is_power_of_two() {
            return Err(Error::InvalidSize { size: capacity, reason: "the capacity must be a power of two" });
        }
        let data = (capacity as u64)
            .checked_mul(spec.slot_size)
            .filter(|&d| d <= (1 << 40))
            .ok_or(Error::InvalidSize { size: capacity, reason: "the ring would be larger than 1 TiB" })?;
        let mut header = spec.header(capacity, data);
        // A channel in a memfd (also one made for fork) has doorbells,
        // which go with the memfd to every process of the channel.
        let bells = !matches!(backing, Backing::Named(_));
        if bells {
            header.flags |= layout::HEADER_DOORBELLS;
        }
        let total = header.total_size as usize;
        let (map, name, memfd) = match backing {
            Backing::Anonymous | Backing::Memfd(_) => {
                // A memfd also for a channel made for fork: its file carries
                // the sides' liveness locks (see `liveness`).
                let label = if let Backing::Memfd(label) = backing { label } else { "ipc-kit-channel" };
                let m = Memfd::create(label, total)?;
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
        if bells {
            mem.bells = Some(new_bells()?);
        }
        Conn::new(mem, header)
    }

    /// The connection to `mem`, whose mapping holds at least the lines
    /// (checked by every caller before).
    fn new(mem: Memory, header: Header) -> Result<Conn> {
        let mem = Pinned::new(Arc::new(mem), |m| m.map.region())
            .ok_or_else(|| Error::LayoutMismatch { reason: "too small for a channel".into() })?;
        Ok(Conn { mem, header })
    }

    /// Opens the channel in `map`, with `bells` when it was handed over
    /// with its doorbells (which a channel made with them needs).
    fn open(
        spec: Spec,
        map: Mapping,
        name: Option<PosixShm>,
        memfd: Option<Memfd>,
        bells: Option<[Arc<EventFd>; 2]>,
    ) -> Result<Conn> {
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
        match (h.flags & layout::HEADER_DOORBELLS != 0, bells.is_some()) {
            (true, false) => {
                return Err(mismatch(
                    "it was made with doorbells: open it from its handoff (`from_handoff`), with the doorbells its \
                     maker hands over"
                        .into(),
                ));
            }
            (false, true) => {
                return Err(mismatch(
                    "it was made without doorbells, so it is not one handed over with its memfd".into(),
                ));
            }
            _ => {}
        }
        let mut mem = Memory::new(map, name, memfd);
        mem.bells = bells;
        Conn::new(mem, h)
    }

    /// Opens the channel under `name`, holding the shared lock that tells
    /// `create_or_reclaim` it is in use.
    pub(super) fn open_named(spec: Spec, name: &str) -> Result<Conn> {
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
                return Self::open(spec, map, Some(shm), None, None);
            }
        }
        Err(Error::NotFound { what: WHAT_NAMED, name: name.to_owned() })
    }

    /// Creates the channel under `name`, first unlinking a stale one there:
    /// one whose object no process holds (see `Channel::create_or_reclaim`).
    pub(super) fn create_or_reclaim(spec: Spec, capacity: usize, name: &str) -> Result<Conn> {
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

    /// Opens the channel handed over with its doorbells.
    pub(super) fn open_handoff(spec: Spec, handoff: Handoff) -> Result<Conn> {
        let Handoff { memfd, doorbells: [a, b] } = handoff;
        let map = memfd.map()?;
        Self::open(spec, map, None, Some(memfd), Some([Arc::new(a), Arc::new(b)]))
    }

    /// What another process needs to open this channel with its doorbells:
    /// copies of the memfd and of the doorbells.
    pub(super) fn handoff(&self) -> Result<Handoff> {
        let (Some(memfd), Some([a, b])) = (&self.mem.memfd, &self.mem.bells) else {
            return Err(Error::LayoutMismatch {
                reason: "only a channel made in a memfd (`new_memfd`) is handed over".into(),
            });
        };
        let copy =
            |bell: &EventFd| bell.try_clone().map_err(|e| Error::Io { op: "dup of a doorbell", source: e.into() });
        Ok(Handoff { memfd: memfd.try_clone()?, doorbells: [copy(a)?, copy(b)?] })
    }

    #[inline]
    pub(super) fn region(&self) -> &Span {
        self.mem.span()
    }

    /// The line at offset `OFF` (a line's offset below DATA): reached with
    /// no check (see `Pinned::at`), or under loom in the model.
    #[inline(always)]
    fn line_at<const OFF: usize>(&self) -> &Line {
        #[cfg(not(loom))]
        return self.mem.at::<Line, OFF>();
        #[cfg(loom)]
        self.line(OFF)
    }

    /// The sender's index (TAIL).
    #[inline(always)]
    pub(super) fn tail(&self) -> &Line {
        self.line_at::<{ layout::TAIL }>()
    }

    /// The receiver's index (HEAD).
    #[inline(always)]
    pub(super) fn head(&self) -> &Line {
        self.line_at::<{ layout::HEAD }>()
    }

    /// Both sides' states and flags (STATUS).
    #[inline(always)]
    pub(super) fn status(&self) -> &Line {
        self.line_at::<{ layout::STATUS }>()
    }

    /// The line side `role` sleeps on.
    #[inline(always)]
    pub(super) fn sleep_line(&self, role: Role) -> &Line {
        match role {
            Role::Sender => self.line_at::<{ layout::TX_SLEEP }>(),
            Role::Receiver => self.line_at::<{ layout::RX_SLEEP }>(),
        }
    }

    /// Under loom: the line at `offset`, in the model when there is one.
    #[cfg(loom)]
    fn line(&self, offset: usize) -> &Line {
        match &self.mem.model {
            Some(model) => model.line(offset),
            None => self.region().view::<Line>(offset).expect("a channel's mapping holds its lines"),
        }
    }

    /// Where the slots are: the mapping (under loom, the model when there
    /// is one).
    #[cfg(not(loom))]
    #[inline]
    fn ring(&self) -> &Span {
        self.region()
    }

    #[cfg(loom)]
    fn ring(&self) -> model::Ring<'_> {
        match &self.mem.model {
            Some(store) => model::Ring::Model(store),
            None => model::Ring::Mapped(self.region()),
        }
    }

    /// Copies a slot's bytes in at `offset` (from the ring's own checked
    /// indices).
    #[inline]
    pub(super) fn write_slot(&self, offset: usize, bytes: &[u8]) -> Result<()> {
        self.ring().copy_in(offset, bytes).map_err(|f| self.fault(f, offset, bytes.len()))
    }

    /// Copies in the slots that `bytes` holds end to end (`slot` bytes
    /// each), from `offset` on, in pieces of [`piece`] bytes.
    #[inline]
    pub(super) fn write_slots(&self, offset: usize, bytes: &[u8], slot: u64) -> Result<()> {
        let piece = piece(slot);
        bytes.chunks(piece).enumerate().try_for_each(|(i, s)| self.write_slot(offset + i * piece, s))
    }

    /// Copies out the slots from `offset` on into `out`, end to end, as
    /// [`write_slots`](Self::write_slots) copies them in.
    #[inline]
    pub(super) fn read_slots(&self, offset: usize, out: &mut [u8], slot: u64) -> Result<()> {
        let piece = piece(slot);
        out.chunks_mut(piece).enumerate().try_for_each(|(i, s)| self.read_slot(offset + i * piece, s))
    }

    /// Copies a slot's bytes out from `offset`.
    #[inline]
    pub(super) fn read_slot(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        self.ring().copy_out(offset, out).map_err(|f| self.fault(f, offset, out.len()))
    }

    /// The error for an access of `len` bytes at `offset` that failed:
    /// `Truncated` when the object was shrunk under the mapping (the
    /// bytes met were zeros of our own, not the peer's), `Corrupted` for
    /// an offset outside it (which the checked indices never give).
    #[cold]
    pub(super) fn fault(&self, fault: Fault, offset: usize, len: usize) -> Error {
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
    pub(super) fn faults(&self) -> Result<()> {
        self.region().faults().map_err(|f| self.fault(f, DATA, 0))
    }

    /// `e` (an impossible index), or `Truncated` when the index was read
    /// from a page cut off from the shrunk object, which reads as zeros.
    #[cold]
    pub(super) fn explain(&self, e: Error) -> Error {
        match self.region().faults() {
            Err(f) => self.fault(f, DATA, 0),
            Ok(()) => e,
        }
    }

    /// A channel whose memory is loom's model, for model checking.
    #[cfg(loom)]
    pub(super) fn model(spec: Spec, capacity: usize) -> Conn {
        let header = Header { magic: MAGIC, ..spec.header(capacity, capacity as u64 * spec.slot_size) };
        let map = Mapping::anonymous(4096).expect("a page for the model's unused mapping");
        let model = Some(model::Store::new(capacity, spec.slot_size as usize));
        Conn::new(Memory { map, name: None, memfd: None, anon: None, candidates: None, bells: None, model }, header)
            .expect("a page holds a channel's lines")
    }

    pub(super) fn memfd(&self) -> Option<&Memfd> {
        self.mem.memfd.as_ref()
    }
}

impl Memory {
    fn new(map: Mapping, name: Option<PosixShm>, memfd: Option<Memfd>) -> Memory {
        Memory {
            map,
            name,
            memfd,
            anon: None,
            candidates: None,
            bells: None,
            #[cfg(loom)]
            model: None,
        }
    }

    /// The file behind the channel, which carries the liveness locks.
    pub(super) fn file(&self) -> Option<BorrowedFd<'_>> {
        let named = self.name.as_ref().map(AsFd::as_fd);
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
/// A channel's two doorbells, one per side (by `Role::ix`). Each starts at
/// 1 and is never read: see `bell::ring`.
fn new_bells() -> Result<[Arc<EventFd>; 2]> {
    let bell = || {
        EventFd::new(1, ipc_sync::EventFdMode::Counter)
            .map(Arc::new)
            .map_err(|e| Error::Io { op: "eventfd (a channel's doorbell)", source: e.into() })
    };
    Ok([bell()?, bell()?])
}

fn write_header(map: &Mapping, header: &Header) -> Result<()> {
    map.write(0, header)?;
    // Release: the header is complete before a peer sees the magic.
    map.shared::<AtomicU64>(0)?.store(MAGIC, Ordering::Release);
    Ok(())
}

/// What a channel handle ([`Channel`](super::Channel),
/// [`ByteChannel`](super::ByteChannel)) adds to its connection: whether a
/// side was claimed through it. In a channel made for `fork`, a process
/// stands as a possible claimer of the sides while it has a handle through
/// which none was claimed (see `liveness`).
#[derive(Debug)]
pub(super) struct Handle {
    spent: AtomicBool,
}

impl Handle {
    pub(super) fn new(conn: &Conn) -> Handle {
        if let Some(c) = &conn.mem.candidates {
            c.handle_made();
        }
        Handle { spent: AtomicBool::new(false) }
    }

    /// A side was claimed through this handle (see `Side::claim`).
    pub(super) fn spend(&self, conn: &Conn) {
        // Relaxed: only this process's count depends on it, under its lock.
        if !self.spent.swap(true, Ordering::Relaxed)
            && let Some(c) = &conn.mem.candidates
        {
            c.handle_spent();
        }
    }

    /// The handle goes.
    pub(super) fn drop_from(&self, conn: &Conn) {
        if !self.spent.load(Ordering::Relaxed)
            && let Some(c) = &conn.mem.candidates
        {
            c.handle_spent();
        }
    }
}

/// Where a new channel's memory comes from.
#[derive(Clone, Copy)]
pub(super) enum Backing<'a> {
    Anonymous,
    /// A memfd, under this label (seen in `/proc/PID/fd`).
    Memfd(&'a str),
    Named(&'a str),
}

/// How the errors about a named channel's object name it.
const WHAT_NAMED: &str = "shared memory channel";

/// The bytes of slots of `slot` bytes that the batch forms copy at once:
/// 256 bytes of whole slots when they are smaller than that; a whole run
/// (see `slots::RUN`) when larger; under loom one slot (its model holds
/// each slot apart). Measured here: batches of 64-byte messages copied
/// 4 KiB at a time ran at 0.93–0.95× of a ring that copies each message on
/// its own, and at 1.00–1.05× in 256-byte copies (the C library's `memcpy`
/// takes another path for large copies, which moves lines the other CPU
/// holds more slowly); batches of 4 KiB messages ran at 0.83× in 256-byte
/// copies, 0.94× one message at a time, and 1.00–1.07× a run at a time.
#[inline]
fn piece(slot: u64) -> usize {
    let slot = slot as usize;
    if cfg!(loom) {
        slot
    } else if slot < 256 {
        256 / slot * slot
    } else {
        usize::MAX
    }
}

/// How many times a named open or create tries again when another process
/// reclaims the name under it; each retry means that process made progress.
const NAME_RACES: usize = 8;
