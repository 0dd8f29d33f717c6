//! The layout of a channel's shared memory.
//!
//! ```text
//! offset    0  Header (plain data, written once by the creator; magic last)
//!         128  Line: tail (the sender's index)            written by the sender
//!         256  Line: head (the receiver's index)          written by the receiver
//!         384  Line: the receiver's sleep word and flag   written when it sleeps / is woken
//!         512  Line: the sender's sleep word and flag     likewise
//!         640  Line: both sides' state, flags (and pid)   written on connect and close
//!         768  the ring: `capacity` slots, or `capacity` bytes of records
//! ```
//!
//! Each line is 128 bytes, so what one side writes often never shares a
//! cache line (or an adjacent-line prefetch pair) with what the other side
//! writes. Indices are u64 and only grow; a position in the ring is the
//! index modulo the capacity (a power of two).
//!
//! A byte channel's ring holds records, each on a multiple of 8 bytes: a
//! header (the length as a little-endian u32, then 4 zero bytes), then the
//! bytes, padded to 8. A record that would cross the end of the ring
//! starts at its beginning instead, after a length of `u32::MAX` (`WRAP`)
//! where it would have been.

use super::shim::{AtomicU32, AtomicU64};

use bytemuck::{Pod, Zeroable};

/// "ipckitch" as a little-endian u64.
#[doc(hidden)]
pub const MAGIC: u64 = u64::from_le_bytes(*b"ipckitch");
/// 4: the header's `flags` ([`HEADER_DOORBELLS`]); 3: a sleep line's
/// `waiting` holds bits ([`ASLEEP`], [`ARMED`], [`WATCHED`]); 2: every
/// claimed side holds a liveness lock (see `channel::liveness`).
#[doc(hidden)]
pub const VERSION: u32 = 4;

/// A header flag: the channel has a doorbell per side (an eventfd), which
/// every process of the channel holds (inherited across fork, or handed
/// over with its memfd) and rings for the peer's pollers. A channel
/// without it has none, and its pollers use a watching thread.
pub(crate) const HEADER_DOORBELLS: u64 = 1;

/// The header's `kind` of a slot channel.
#[doc(hidden)]
pub const KIND_SLOTS: u32 = 1;
/// The header's `kind` of a byte channel.
#[doc(hidden)]
pub const KIND_BYTES: u32 = 2;

/// The size of a line, and the alignment of every line.
#[doc(hidden)]
pub const LINE: usize = 128;
/// The sender's index (the TAIL line).
#[doc(hidden)]
pub const TAIL: usize = LINE;
/// The receiver's index (the HEAD line).
#[doc(hidden)]
pub const HEAD: usize = 2 * LINE;
/// The receiver's sleep line.
#[doc(hidden)]
pub const RX_SLEEP: usize = 3 * LINE;
/// The sender's sleep line.
#[doc(hidden)]
pub const TX_SLEEP: usize = 4 * LINE;
/// The status line: both sides' states and flags.
#[doc(hidden)]
pub const STATUS: usize = 5 * LINE;
/// The ring.
#[doc(hidden)]
pub const DATA: usize = 6 * LINE;

/// Every record of a byte channel starts and ends on a multiple of this.
pub(crate) const RECORD_ALIGN: u64 = 8;

/// A record's header: its length (u32, little-endian), then 4 zero bytes.
pub(crate) const RECORD_HEADER: u64 = 8;

/// A length that means "nothing more before the end of the ring: go on at
/// its start".
pub(crate) const WRAP: u32 = u32::MAX;

/// The bytes a record of `len` bytes takes in the ring, header included.
#[inline]
pub(crate) fn padded(len: usize) -> u64 {
    RECORD_HEADER + (len as u64).div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

/// Where byte `index` of the stream sits in a ring of `cap` bytes, a power
/// of two (checked when the channel is made or opened).
#[inline]
pub(crate) fn ring_pos(index: u64, cap: u64) -> u64 {
    index & (cap - 1)
}

/// The longest record in a ring of `capacity` bytes.
#[inline]
pub(crate) fn max_record(capacity: u64) -> usize {
    // Half the ring, and what a u32 length (below the wrap marker) can say.
    (capacity / 2 - RECORD_HEADER).min(u64::from(u32::MAX) - 16) as usize
}

/// A sleep line's `waiting` bit: the side sleeps (or is about to) on its
/// futex word, `signal`; the peer bumps it and wakes one sleeper.
pub(crate) const ASLEEP: u32 = 1;

/// A sleep line's `waiting` bit: a poller waits for the side through its
/// doorbell, the eventfd that a channel made for fork has for each side;
/// the peer clears the bit and rings the doorbell once.
pub(crate) const ARMED: u32 = 2;

/// A sleep line's `waiting` bit: a poller waits for the side through a
/// thread of its own that sleeps on the futex word (a channel without
/// doorbells); the peer bumps the word and wakes every sleeper.
pub(crate) const WATCHED: u32 = 4;

/// A side's state in the status line.
pub(crate) const UNCLAIMED: u32 = 0;
pub(crate) const CONNECTED: u32 = 1;
pub(crate) const CLOSED: u32 = 2;
/// Connected, and the claiming process holds the side's liveness lock (see
/// `channel::liveness`): what a claim sets. The lock is taken before, so a
/// peer that finds the lock free takes the side for dead; CONNECTED, which
/// no claim sets any more, is read the same way.
pub(crate) const LOCKED: u32 = 3;

/// A side's flag: its process receives the barriers of
/// `ipc_sync::membarrier`, and the side issues one each time before it
/// sleeps. When both sides say so, neither needs a full barrier when it
/// publishes its index (see `Side::publish`). A peer that leaves the flag
/// clear (0, as an older layout did) gets the full barriers.
pub(crate) const FLAG_BARRIER: u32 = 1;

/// What the creator writes at offset 0. Read once by each side when it
/// connects and copied: nothing here is read from shared memory again, so
/// a peer that scribbles on it later changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct Header {
    /// MAGIC once the header is complete (stored last, with Release).
    pub(crate) magic: u64,
    pub(crate) version: u32,
    pub(crate) kind: u32,
    /// Slots (slot channel) or bytes (byte channel); a power of two.
    pub(crate) capacity: u64,
    pub(crate) slot_size: u64,
    pub(crate) slot_align: u64,
    /// Hash of the message type's name (0 for byte channels).
    pub(crate) type_hash: u64,
    pub(crate) data_offset: u64,
    pub(crate) total_size: u64,
    /// `HEADER_*` flags.
    pub(crate) flags: u64,
}

/// One 128-byte line of atomics. Which fields mean what depends on the
/// line (see the module docs); unused ones stay zero.
#[derive(Debug)]
#[repr(C, align(128))]
pub(crate) struct Line {
    /// TAIL/HEAD lines: the index.
    pub(crate) index: AtomicU64,
    /// Sleep lines: the futex word the side sleeps on, bumped to wake it.
    pub(crate) signal: AtomicU32,
    /// Sleep lines: what wakes the side: nonzero while it, or something
    /// waiting for it, is (about to be) asleep ([`ASLEEP`], [`ARMED`],
    /// [`WATCHED`]; a peer treats any other bit as `ASLEEP`).
    pub(crate) waiting: AtomicU32,
    /// STATUS line: each side's pid and state, the sender's first.
    sides: [SideStatus; 2],
    /// STATUS line: each side's flags (`FLAG_*`), the sender's first.
    flags: [AtomicU32; 2],
}

/// A side's words in the STATUS line.
#[derive(Debug)]
#[repr(C)]
struct SideStatus {
    /// The side's pid, for people reading the memory (`ipc-kit ls`); no
    /// code relies on it.
    pid: AtomicU32,
    /// `UNCLAIMED`, `CONNECTED`, `CLOSED` or `LOCKED`.
    state: AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<Line>() == LINE);

impl Line {
    /// A line of zeroes (what a fresh mapping holds), for the loom model.
    #[cfg(loom)]
    pub(crate) fn new() -> Line {
        let side = || SideStatus { pid: AtomicU32::new(0), state: AtomicU32::new(0) };
        Line {
            index: AtomicU64::new(0),
            signal: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            sides: [side(), side()],
            flags: [AtomicU32::new(0), AtomicU32::new(0)],
        }
    }

    /// STATUS line: the state of side `role`.
    #[inline]
    pub(crate) fn state(&self, role: Role) -> &AtomicU32 {
        &self.sides[role.ix()].state
    }

    /// STATUS line: the pid of side `role`.
    pub(crate) fn pid(&self, role: Role) -> &AtomicU32 {
        &self.sides[role.ix()].pid
    }

    /// STATUS line: the flags of side `role`.
    pub(crate) fn flags(&self, role: Role) -> &AtomicU32 {
        &self.flags[role.ix()]
    }
}

/// Which side of a channel: the one that sends or the one that receives.
///
/// The values are those of the `tx: bool` the role stands for (the sender
/// 1), so that picking a side's words compiles to the same instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Role {
    Receiver = 0,
    Sender = 1,
}

impl Role {
    /// The other side.
    #[inline]
    pub(crate) fn peer(self) -> Role {
        match self {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        }
    }

    /// 0 for the sender, 1 for the receiver: where its words and lock are.
    #[inline]
    pub(crate) fn ix(self) -> usize {
        match self {
            Role::Sender => 0,
            Role::Receiver => 1,
        }
    }

    /// "sender" or "receiver", for errors.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
        }
    }
}

const _: () = assert!(size_of::<Header>() <= LINE);

/// A stable 64-bit hash (FNV-1a) of a type's name, for the header's
/// fingerprint.
pub(crate) fn type_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// The bytes of a run of slots that the batch forms copy and then publish
/// (or free) with one index update: a batch of small messages in one, and
/// large ones a few at a time, so that the peer can work on the first
/// while the rest are copied (a peer kept waiting long enough goes to
/// sleep, and must then be woken). At least one slot.
pub(crate) const RUN: u64 = 16 << 10;

/// The slots in a run of slots of `slot` bytes.
#[inline]
pub(crate) fn run_len(slot: u64) -> usize {
    (RUN / slot).max(1) as usize
}

#[inline]
pub(crate) fn slot_offset(index: u64, capacity: u64, slot: u64) -> usize {
    DATA + ((index & (capacity - 1)) * slot) as usize
}
