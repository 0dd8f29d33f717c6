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

use super::shim::{AtomicU32, AtomicU64};

use bytemuck::{Pod, Zeroable};

/// "ipckitch" as a little-endian u64.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"ipckitch");
/// 2: every claimed side holds a liveness lock (see `channel::liveness`).
pub(crate) const VERSION: u32 = 2;

pub(crate) const KIND_SLOTS: u32 = 1;
pub(crate) const KIND_BYTES: u32 = 2;

pub(crate) const LINE: usize = 128;
pub(crate) const TAIL: usize = LINE;
pub(crate) const HEAD: usize = 2 * LINE;
pub(crate) const RX_SLEEP: usize = 3 * LINE;
pub(crate) const TX_SLEEP: usize = 4 * LINE;
pub(crate) const STATUS: usize = 5 * LINE;
pub(crate) const DATA: usize = 6 * LINE;

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
    /// Sleep lines: nonzero while the side is (about to be) asleep.
    pub(crate) waiting: AtomicU32,
    /// STATUS line: the sender's pid (for people reading the memory; no
    /// code relies on it) and state, then the receiver's.
    pub(crate) tx_pid: AtomicU32,
    pub(crate) tx_state: AtomicU32,
    pub(crate) rx_pid: AtomicU32,
    pub(crate) rx_state: AtomicU32,
    /// STATUS line: the sender's flags (`FLAG_*`), then the receiver's.
    pub(crate) tx_flags: AtomicU32,
    pub(crate) rx_flags: AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<Line>() == LINE);

impl Line {
    /// A line of zeroes (what a fresh mapping holds), for the loom model
    /// and the spare line of `Conn::line`.
    pub(crate) fn new() -> Line {
        Line {
            index: AtomicU64::new(0),
            signal: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            tx_pid: AtomicU32::new(0),
            tx_state: AtomicU32::new(0),
            rx_pid: AtomicU32::new(0),
            rx_state: AtomicU32::new(0),
            tx_flags: AtomicU32::new(0),
            rx_flags: AtomicU32::new(0),
        }
    }
}
const _: () = assert!(size_of::<Header>() <= LINE);

/// A stable 64-bit hash (FNV-1a) of a type's name, for the header's
/// fingerprint.
pub(crate) fn type_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}
