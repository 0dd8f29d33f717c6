//! `ipc-kit-fuzz`: what a hostile peer can hand the parsers, for a bounded
//! time.
//!
//! Targets, each fed random and half-valid inputs until its time is up:
//!
//! - `frames`: the pipe frame decoder (`FrameReader`) over byte streams
//!   mixing valid frames, lengths up to 4 GiB, garbage and cuts, read in
//!   random chunk sizes;
//! - `byte-records`: the byte channel's record parser, with a peer that
//!   writes records, wrap markers, lengths and indices of its choosing
//!   into the channel's memory;
//! - `slot-indices`: the slot channel with indices of the peer's choosing;
//! - `header`: opening a channel from a memfd whose header (magic,
//!   version, kind, capacity, sizes) the peer wrote;
//! - `pre-connect`: a channel of either kind whose header, indices, sleep
//!   words and side states a peer overwrote before any side connected,
//!   then opened, both sides claimed in either order, and used;
//! - `fifo-requests`: the FIFO server's request parser, through its public
//!   API: a writer of its own on the server's request FIFO writes garbage,
//!   frame starts cut anywhere, lengths at and past the limit, frames cut
//!   short or with a bit flipped, and frames with a good check around
//!   malformed or forged requests, beside honest clients' requests; every
//!   honest request must come out once, whole and in order, and its reply
//!   reach it.
//!
//! Every case must end without a panic (the program is built with
//! overflow checks and debug assertions, so arithmetic overflow and the
//! mapping's bounds assertions count), give only lengths within the
//! limits, and never allocate more than the input justifies: a counting
//! allocator records the largest allocation. A case that runs for more
//! than 20 s ends the program with its seed.
//!
//! `ipc-kit-fuzz [--seconds S] [--seed N] [--only TARGET]` (S per target;
//! default 30). A failing case prints its seed; `--only TARGET --case SEED`
//! runs that one case again.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use ipc_kit::fifo::{Error as FifoError, Fifo, FifoClient, FifoServer};
use ipc_kit::pipe::{DEFAULT_MAX_FRAME, Error as PipeError, FrameReader, FrameWriter, PIPE_BUF, PipeWriter};
use ipc_kit::shm::{ByteChannel, Channel, Error as ShmError, Memfd};
use ipc_kit_tests::{Rng, ScratchDir, with_doorbells};

/// The system allocator, recording the largest single request.
struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; the
// counter is only observed.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The largest allocation since the last call.
fn take_largest() -> usize {
    LARGEST.swap(0, Ordering::Relaxed)
}

/// The largest allocation in this case so far.
fn largest_yet() -> usize {
    LARGEST.load(Ordering::Relaxed)
}

// A channel's layout, as ipc-shm defines it: the header's magic number,
// version and kinds; the offsets of the sender's index, the receiver's, the
// sleep lines, the status line and the ring.
use ipc_kit::shm::channel::layout::{
    DATA, HEAD, KIND_BYTES, KIND_SLOTS, MAGIC, RX_SLEEP, STATUS, TAIL, TX_SLEEP, VERSION,
};

/// A number that is often at an edge: 0, the type's maximum, a power of
/// two and its neighbours, u32's maximum, a small one, or anything.
fn edgy(rng: &mut Rng) -> u64 {
    match rng.below(6) {
        0 => 0,
        1 => u64::MAX - rng.below(3),
        2 => (1u64 << rng.below(64)).wrapping_add(rng.below(3)).wrapping_sub(1),
        3 => u64::from(u32::MAX) - rng.below(3),
        4 => rng.below(256),
        _ => rng.next_u64(),
    }
}

/// Why a case failed.
type Verdict = Result<(), String>;

/// A reader that hands out its bytes in the chunk sizes it is given.
struct Chunked<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    turn: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.sizes[self.turn % self.sizes.len()].max(1);
        self.turn += 1;
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// The frame decoder on a stream of valid frames, with damage after some
/// point: frames before the damage come out as sent; after it, anything
/// but a panic, an over-long frame or a large allocation.
fn frames(rng: &mut Rng) -> Verdict {
    let max = match rng.below(3) {
        0 => DEFAULT_MAX_FRAME,
        1 => rng.below(1 << 20) as usize,
        _ => rng.below(300) as usize,
    };
    let mut w = FrameWriter::with_max(Vec::new(), usize::MAX);
    let count = rng.below(12) as usize;
    let mut sent = Vec::new();
    for _ in 0..count {
        let len = if rng.chance(8) { rng.below(200_000) } else { rng.below(400) } as usize;
        let f = rng.bytes(len);
        w.send(&f).map_err(|e| format!("encode: {e}"))?;
        sent.push(f);
    }
    let mut stream = w.into_inner();
    // Damage: a bogus length, random bytes, a flipped byte, or a cut.
    let intact_upto = match rng.below(5) {
        0 => {
            let at = stream.len();
            stream.extend_from_slice(&(edgy(rng) as u32).to_le_bytes());
            let n = rng.below(64) as usize;
            stream.extend(rng.bytes(n));
            at
        }
        1 => {
            let at = stream.len();
            let n = rng.below(4096) as usize;
            stream.extend(rng.bytes(n));
            at
        }
        2 if !stream.is_empty() => {
            let at = rng.below(stream.len() as u64) as usize;
            stream[at] ^= 1 << rng.below(8);
            at
        }
        3 => {
            let cut = rng.below(stream.len() as u64 + 1) as usize;
            stream.truncate(cut);
            cut
        }
        _ => stream.len(),
    };
    let sizes: Vec<usize> = (0..1 + rng.below(4)).map(|_| 1 + rng.below(70_000) as usize).collect();
    let mut r = FrameReader::with_max(Chunked { data: &stream, sizes, turn: 0 }, max);
    let limit = r.max_frame_len();
    let mut buf = Vec::new();
    let mut at = 0;
    for i in 0.. {
        match r.recv(&mut buf) {
            Ok(Some(n)) => {
                if n != buf.len() || n > limit {
                    return Err(format!("frame {i}: {n} bytes reported, {} held, limit {limit}", buf.len()));
                }
                let end = at + 4 + n;
                if end <= intact_upto && sent.get(i) != Some(&buf) {
                    return Err(format!("frame {i} came out different"));
                }
                at = end;
            }
            Ok(None) => break,
            Err(PipeError::FrameTooLarge { .. } | PipeError::TruncatedFrame { .. }) => break,
            Err(e) => return Err(format!("unexpected error: {e}")),
        }
        if i > 100_000 {
            return Err("the decoder never ends".into());
        }
    }
    // Memory: the buffers, the largest body that arrived and the 1 MiB a
    // body may grow by ahead of its bytes, with growth doubling it.
    let largest = largest_yet();
    let allowed = 2 * (stream.len() + (1 << 20)) + (128 << 10);
    if largest > allowed {
        return Err(format!("an allocation of {largest} bytes for a {}-byte stream", stream.len()));
    }
    Ok(())
}

/// The byte channel's receiver against a peer that writes the ring and
/// the sender's index as it likes: sometimes real records, sometimes
/// records with damage, sometimes garbage.
fn byte_records(rng: &mut Rng) -> Verdict {
    let capacity = 64usize << rng.below(11);
    let chan = ByteChannel::anonymous(capacity).map_err(|e| format!("channel: {e}"))?;
    let map = chan.mapping();
    let max = chan.max_record();
    let mut rx = chan.receiver().map_err(|e| format!("receiver: {e}"))?;
    let mut buf = Vec::new();
    // Some honest traffic first, so that indices are not at 0. The sender
    // stays claimed until the end, so that the receiver sees a connected
    // peer rather than a closed one.
    let mut _tx = None;
    if rng.chance(2) {
        let tx = _tx.insert(chan.sender().map_err(|e| format!("sender: {e}"))?);
        for _ in 0..rng.below(50) {
            let len = rng.below(max as u64 + 1) as usize;
            if tx.try_send(&rng.bytes(len)).is_err() {
                break;
            }
            if rng.chance(2) {
                let _ = rx.try_recv(&mut buf);
            }
        }
    }
    for _ in 0..1 + rng.below(20) {
        match rng.below(4) {
            // A header with a chosen length somewhere in the ring.
            0 => {
                let at = DATA + (rng.below(capacity as u64 / 8) * 8) as usize;
                let len = edgy(rng) as u32;
                map.write_bytes(at, &u64::from(len).to_le_bytes()).map_err(|e| format!("write: {e}"))?;
            }
            // Random bytes in the ring.
            1 => {
                let at = DATA + rng.below(capacity as u64) as usize;
                let n = (rng.below(64) as usize).min(DATA + capacity - at);
                map.write_bytes(at, &rng.bytes(n)).map_err(|e| format!("write: {e}"))?;
            }
            // The sender's index: anything, or a little ahead.
            2 => {
                let cur: u64 = map.read(TAIL).map_err(|e| format!("read: {e}"))?;
                let v = if rng.chance(2) { edgy(rng) } else { cur.wrapping_add(rng.below(2 * capacity as u64)) };
                map.write(TAIL, &v).map_err(|e| format!("write: {e}"))?;
            }
            // The receiver's own index, as a peer could scribble it.
            _ => map.write(HEAD, &edgy(rng)).map_err(|e| format!("write: {e}"))?,
        }
        for _ in 0..4 {
            match rx.try_recv(&mut buf) {
                Ok(n) if n > max || n != buf.len() => return Err(format!("a record of {n} bytes (max {max})")),
                Ok(_) | Err(ShmError::Empty | ShmError::Corrupted { .. } | ShmError::Disconnected) => {}
                Err(e) => return Err(format!("unexpected error: {e}")),
            }
        }
    }
    let largest = largest_yet();
    if largest > 2 * capacity + (64 << 10) {
        return Err(format!("an allocation of {largest} bytes for a {capacity}-byte ring"));
    }
    Ok(())
}

/// The slot channel's receiver and sender against indices of the peer's
/// choosing.
fn slot_indices(rng: &mut Rng) -> Verdict {
    let capacity = 1usize << rng.below(10);
    let chan = Channel::<[u8; 24]>::anonymous(capacity).map_err(|e| format!("channel: {e}"))?;
    let map = chan.mapping();
    let (mut tx, mut rx) =
        (chan.sender().map_err(|e| format!("sender: {e}"))?, chan.receiver().map_err(|e| format!("receiver: {e}"))?);
    for _ in 0..1 + rng.below(20) {
        let at = if rng.chance(2) { TAIL } else { HEAD };
        let cur: u64 = map.read(at).map_err(|e| format!("read: {e}"))?;
        let v = if rng.chance(2) { edgy(rng) } else { cur.wrapping_add(rng.below(4 * capacity as u64)) };
        map.write(at, &v).map_err(|e| format!("write: {e}"))?;
        for _ in 0..4 {
            match tx.try_send([7; 24]) {
                Ok(()) | Err(ShmError::Full | ShmError::Corrupted { .. } | ShmError::Disconnected) => {}
                Err(e) => return Err(format!("send: unexpected error: {e}")),
            }
            match rx.try_recv() {
                Ok(_) | Err(ShmError::Empty | ShmError::Corrupted { .. } | ShmError::Disconnected) => {}
                Err(e) => return Err(format!("receive: unexpected error: {e}")),
            }
        }
    }
    Ok(())
}

/// A channel's header as its creator writes it, with fields a peer chose:
/// opening must refuse what does not add up, and a channel it accepts must
/// then work within its memory.
fn header(rng: &mut Rng, wrong_magic_left: &mut u32) -> Verdict {
    let bytes_kind = rng.chance(2);
    let capacity = if rng.chance(3) { edgy(rng) } else { 1u64 << rng.below(12) };
    let slot: u64 = if bytes_kind { 1 } else { 16 };
    let mut fields: [u64; 9] = [
        MAGIC,
        u64::from(VERSION) | u64::from(if bytes_kind { KIND_BYTES } else { KIND_SLOTS }) << 32,
        capacity,
        slot,
        if bytes_kind { 8 } else { 1 }, // alignment: records, [u8; 16]
        0,                              // type hash, set below
        DATA as u64,
        (DATA as u64).wrapping_add(capacity.wrapping_mul(slot)),
        0,
    ];
    if !bytes_kind {
        // FNV-1a of the type name, as the library computes it.
        let name = std::any::type_name::<[u8; 16]>();
        fields[5] = name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    }
    // Damage some fields (not the magic, unless allowed: a wrong one makes
    // the opener wait a second for the creator).
    for _ in 0..rng.below(4) {
        let i = 1 + rng.below(7) as usize;
        fields[i] = if rng.chance(2) { edgy(rng) } else { fields[i] ^ (1 << rng.below(64)) };
    }
    if *wrong_magic_left > 0 && rng.chance(50) {
        *wrong_magic_left -= 1;
        fields[0] ^= 1 << rng.below(64);
    }
    let len = match rng.below(4) {
        0 => 1 + rng.below(DATA as u64) as usize,
        _ => (DATA as u64 + capacity.min(1 << 16) * slot + rng.below(4096)) as usize,
    };
    let memfd = Memfd::create("fuzz-header", len).map_err(|e| format!("memfd: {e}"))?;
    let map = memfd.map().map_err(|e| format!("map: {e}"))?;
    let header: Vec<u8> = fields.iter().flat_map(|f| f.to_le_bytes()).collect();
    let n = header.len().min(len);
    map.write_bytes(0, &header[..n]).map_err(|e| format!("write: {e}"))?;
    if rng.chance(4) {
        let at = rng.below(len as u64) as usize;
        let junk = rng.bytes(8.min(len - at));
        map.write_bytes(at, &junk).map_err(|e| format!("write: {e}"))?;
    }
    drop(map);
    // Opening refuses a header that does not add up; claiming a side
    // refuses impossible indices or a side taken; receiving may find
    // garbage (or a peer marked closed). All typed, nothing else.
    let refused = |e: &ShmError| matches!(e, ShmError::LayoutMismatch { .. } | ShmError::Corrupted { .. });
    let unclaimable = |e: &ShmError| matches!(e, ShmError::Corrupted { .. } | ShmError::AlreadyConnected { .. });
    let received = |e: &ShmError| matches!(e, ShmError::Empty | ShmError::Corrupted { .. } | ShmError::Disconnected);
    if bytes_kind {
        let chan = match ByteChannel::from_handoff(with_doorbells(memfd)) {
            Ok(chan) => chan,
            Err(e) if refused(&e) => return Ok(()),
            Err(e) => return Err(format!("open: unexpected error: {e}")),
        };
        // An accepted channel's limits add up.
        let (cap, max) = (chan.capacity(), chan.max_record());
        if max + 8 > cap / 2 {
            return Err(format!("a longest record of {max} bytes in a {cap}-byte ring"));
        }
        // A peer publishes a record of its chosen length.
        let map = chan.mapping();
        let _ = map.write(DATA, &(edgy(rng) & 0xFFFF_FFFF));
        let _ = map.write(TAIL, &(8 * rng.below(cap as u64 / 4 + 2)));
        let mut rx = match chan.receiver() {
            Ok(rx) => rx,
            Err(e) if unclaimable(&e) => return Ok(()),
            Err(e) => return Err(format!("receiver: unexpected error: {e}")),
        };
        let mut buf = Vec::new();
        match rx.try_recv(&mut buf) {
            Ok(n) if n > chan.max_record() => Err(format!("a record of {n} bytes")),
            Ok(_) => Ok(()),
            Err(e) if received(&e) => Ok(()),
            Err(e) => Err(format!("receive: unexpected error: {e}")),
        }
    } else {
        let chan = match Channel::<[u8; 16]>::from_handoff(with_doorbells(memfd)) {
            Ok(chan) => chan,
            Err(e) if refused(&e) => return Ok(()),
            Err(e) => return Err(format!("open: unexpected error: {e}")),
        };
        let mut rx = match chan.receiver() {
            Ok(rx) => rx,
            Err(e) if unclaimable(&e) => return Ok(()),
            Err(e) => return Err(format!("receiver: unexpected error: {e}")),
        };
        match rx.try_recv() {
            Ok(_) => Ok(()),
            Err(e) if received(&e) => Ok(()),
            Err(e) => Err(format!("receive: unexpected error: {e}")),
        }
    }
}

/// A value for a 32-bit word of the status or sleep lines: a real state
/// (0 unclaimed, 1 connected, 2 closed, 3 connected and locked) or any.
fn edgy_word(rng: &mut Rng) -> u32 {
    if rng.chance(2) { rng.below(5) as u32 } else { edgy(rng) as u32 }
}

/// A channel that a peer prepared before anyone connected: random header
/// fields, indices (often equal, often off a record boundary), sleep words
/// and side states. Opening, claiming and using it must give only typed
/// errors and stay inside the mapping.
fn pre_connect(rng: &mut Rng) -> Verdict {
    let bytes_kind = rng.chance(2);
    let capacity = 1usize << (6 + rng.below(7));
    let memfd = if bytes_kind {
        ByteChannel::new_memfd(capacity).map(|c| c.memfd().map(Memfd::try_clone_fd))
    } else {
        Channel::<[u8; 24]>::new_memfd(capacity).map(|c| c.memfd().map(Memfd::try_clone_fd))
    };
    let fd = match memfd {
        Ok(Some(Ok(fd))) => fd,
        other => return Err(format!("make the channel: {other:?}")),
    };
    let memfd = Memfd::from_fd(fd).map_err(|e| format!("memfd: {e}"))?;
    let map = memfd.map().map_err(|e| format!("map: {e}"))?;
    // The header: a field or two changed, now and then (not the magic
    // number, which the `header` target covers).
    for _ in 0..rng.below(3) {
        let at = 8 * (1 + rng.below(8)) as usize;
        map.write(at, &edgy(rng)).map_err(|e| format!("write: {e}"))?;
    }
    // The indices: equal, close, far apart or anything.
    let base = match rng.below(4) {
        0 => capacity as u64 - rng.below(9),
        1 => 8 * rng.below(1 << 20) + rng.below(8),
        2 => 0,
        _ => edgy(rng),
    };
    let (tail, head) = match rng.below(4) {
        0 => (base, base),
        1 => (base.wrapping_add(rng.below(2 * capacity as u64)), base),
        2 => (base, base.wrapping_add(rng.below(16))),
        _ => (edgy(rng), edgy(rng)),
    };
    map.write(TAIL, &tail).map_err(|e| format!("write: {e}"))?;
    map.write(HEAD, &head).map_err(|e| format!("write: {e}"))?;
    // Sleep lines (signal, waiting) and the status line (pids, states,
    // flags): 32-bit words from byte 8 of each line.
    for _ in 0..rng.below(6) {
        let at = [RX_SLEEP, TX_SLEEP, STATUS][rng.below(3) as usize] + 8 + 4 * rng.below(6) as usize;
        map.write(at, &edgy_word(rng)).map_err(|e| format!("write: {e}"))?;
    }
    drop(map);
    let refused = |e: &ShmError| matches!(e, ShmError::LayoutMismatch { .. } | ShmError::Corrupted { .. });
    let typed = |e: &ShmError| {
        matches!(
            e,
            ShmError::Empty
                | ShmError::Full
                | ShmError::Timeout
                | ShmError::Corrupted { .. }
                | ShmError::Disconnected
                | ShmError::RecordTooLarge { .. }
        )
    };
    let check = |what: &str, r: Result<(), ShmError>| match r {
        Ok(()) => Ok(()),
        Err(e) if typed(&e) => Ok(()),
        Err(e) => Err(format!("{what}: unexpected error: {e}")),
    };
    let wait = Duration::from_micros(rng.below(500));
    let sender_first = rng.chance(2);
    if bytes_kind {
        let chan = match ByteChannel::from_handoff(with_doorbells(memfd)) {
            Ok(c) => c,
            Err(e) if refused(&e) => return Ok(()),
            Err(e) => return Err(format!("open: unexpected error: {e}")),
        };
        let (mut tx, mut rx) = claim_both(sender_first, || chan.sender(), || chan.receiver())?;
        let max = chan.max_record();
        let mut buf = Vec::new();
        for _ in 0..rng.below(6) {
            let len = [0, 1, 7, 8, 9, max / 2, max, max + 1][rng.below(8) as usize];
            if let Some(tx) = &mut tx {
                check("send", tx.try_send(&vec![0xA5; len]))?;
                check("send", tx.send_timeout(&vec![0x5A; len], wait))?;
            }
            if let Some(rx) = &mut rx {
                match rx.recv_timeout(&mut buf, wait) {
                    Ok(n) if n > max => return Err(format!("a record of {n} bytes, max {max}")),
                    other => check("receive", other.map(drop))?,
                }
            }
        }
    } else {
        let chan = match Channel::<[u8; 24]>::from_handoff(with_doorbells(memfd)) {
            Ok(c) => c,
            Err(e) if refused(&e) => return Ok(()),
            Err(e) => return Err(format!("open: unexpected error: {e}")),
        };
        let (mut tx, mut rx) = claim_both(sender_first, || chan.sender(), || chan.receiver())?;
        for _ in 0..rng.below(6) {
            if let Some(tx) = &mut tx {
                check("send", tx.try_send([1; 24]))?;
                check("send", tx.send_timeout([2; 24], wait))?;
                check("send", tx.try_send_many(&[[3; 24]; 5]).map(drop))?;
            }
            if let Some(rx) = &mut rx {
                check("receive", rx.recv_timeout(wait).map(drop))?;
                check("receive", rx.try_recv_many(&mut [[0; 24]; 7]).map(drop))?;
            }
        }
    }
    Ok(())
}

/// Claims both sides of a channel a peer prepared, in the order given;
/// a side refused for its impossible state (or taken) is `None`.
fn claim_both<S, R>(
    sender_first: bool,
    sender: impl Fn() -> Result<S, ShmError>,
    receiver: impl Fn() -> Result<R, ShmError>,
) -> Result<(Option<S>, Option<R>), String> {
    fn refused<T>(e: ShmError) -> Result<Option<T>, String> {
        match e {
            ShmError::Corrupted { .. } | ShmError::AlreadyConnected { .. } => Ok(None),
            e => Err(format!("claim: unexpected error: {e}")),
        }
    }
    let (mut tx, mut rx) = (None, None);
    for tx_now in [sender_first, !sender_first] {
        if tx_now {
            tx = sender().map(Some).or_else(refused)?;
        } else {
            rx = receiver().map(Some).or_else(refused)?;
        }
    }
    Ok((tx, rx))
}

/// The request frame of ipc-fifo's server, as its documentation lays it
/// out: magic, body length (u32), check (u64: FNV-1a of the length field
/// and the body), body = client pid (u32), reply path length (u16), reply
/// path, payload. A frame is at most one atomic write.
const FIFO_MAGIC: [u8; 4] = *b"IKfq";
const FIFO_FRAME_HEADER: usize = 16;
const FIFO_MAX_BODY: usize = PIPE_BUF - FIFO_FRAME_HEADER;

/// The largest allocation a `fifo-requests` case may make: the server
/// holds at most a partial frame and one read (two `PIPE_BUF`s), whatever
/// the volume of garbage.
const FIFO_ALLOCATION_BOUND: usize = 4 * PIPE_BUF;

/// FNV-1a (64 bit) of a frame's length field and body.
fn fifo_check(len: [u8; 4], body: &[u8]) -> u64 {
    len.iter().chain(body).fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// A frame around `body` whose length field says `len`, with a right
/// check (over that field and the body) or a wrong one.
fn fifo_frame(len: u32, body: &[u8], good_check: bool) -> Vec<u8> {
    let mut sum = fifo_check(len.to_le_bytes(), body);
    if !good_check {
        sum ^= 1 | sum.rotate_left(17);
    }
    let mut f = Vec::with_capacity(FIFO_FRAME_HEADER + body.len());
    f.extend_from_slice(&FIFO_MAGIC);
    f.extend_from_slice(&len.to_le_bytes());
    f.extend_from_slice(&sum.to_le_bytes());
    f.extend_from_slice(body);
    f
}

/// A request body: `pid`, a ticket, the length of `path` as the frame
/// says it (`path_len`), the path, the payload.
fn fifo_body(pid: u32, path_len: u16, path: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(14 + path.len() + payload.len());
    b.extend_from_slice(&pid.to_le_bytes());
    b.extend_from_slice(&u64::from(pid).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    b.extend_from_slice(&path_len.to_le_bytes());
    b.extend_from_slice(path);
    b.extend_from_slice(payload);
    b
}

/// The `fifo-requests` target's standing rig, made once per run: a FIFO
/// server in a private directory, two clients of it, and a writer of our
/// own on its request FIFO. Every case leaves the server with nothing
/// read and not taken, so that a case runs the same after any other.
struct FifoRig {
    server: FifoServer,
    clients: Vec<FifoClient>,
    raw: PipeWriter,
    /// The server's directory (canonical) and its request FIFO's name.
    dir: PathBuf,
    name: String,
    /// How many writes of up to `PIPE_BUF` bytes fit in the empty
    /// request FIFO: each takes at most one page of it.
    slots: usize,
    /// Last, so that it is removed after everything in it is closed.
    _scratch: ScratchDir,
}

impl FifoRig {
    fn new() -> Result<FifoRig, String> {
        let scratch = ScratchDir::new();
        if let Ok(mut dir) = SCRATCH.lock() {
            *dir = Some(scratch.path().to_owned());
        }
        let dir = std::fs::canonicalize(scratch.path()).map_err(|e| format!("canonicalize: {e}"))?;
        let name = "service".to_owned();
        let server = FifoServer::create(dir.join(&name), 0o600).map_err(|e| format!("server: {e}"))?;
        // What a forged request may name in the directory: a regular file,
        // a FIFO that nobody reads, and a link back to the directory.
        std::fs::write(dir.join(format!("{name}.reply.file")), b"not a FIFO").map_err(|e| format!("file: {e}"))?;
        Fifo::create(dir.join(format!("{name}.reply.stale")), 0o600)
            .map(|mut f| f.persist())
            .map_err(|e| format!("stale FIFO: {e}"))?;
        std::os::unix::fs::symlink(&dir, dir.join("link")).map_err(|e| format!("symlink: {e}"))?;
        let clients = (0..2)
            .map(|_| FifoClient::connect(server.path()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("client: {e}"))?;
        let raw = Fifo::open(server.path()).and_then(|f| f.try_open_writer()).map_err(|e| format!("writer: {e}"))?;
        let slots = raw.capacity().map_err(|e| format!("capacity: {e}"))? / PIPE_BUF;
        Ok(FifoRig { server, clients, raw, dir, name, slots: slots.max(1), _scratch: scratch })
    }

    /// A path that names something in the server's directory.
    fn in_dir(&self, rest: &[u8]) -> Vec<u8> {
        let mut p = self.dir.as_os_str().as_bytes().to_vec();
        p.push(b'/');
        p.extend_from_slice(rest);
        p
    }

    /// `NAME.reply.` followed by `suffix`: a reply FIFO's name.
    fn reply_name(&self, suffix: &[u8]) -> Vec<u8> {
        let mut n = format!("{}.reply.", self.name).into_bytes();
        n.extend_from_slice(suffix);
        n
    }
}

/// What a case's writes must bring out of the server, in order.
enum Expect {
    /// An honest client's request, and the reply it is to get.
    Honest { client: usize, payload: Vec<u8>, reply: Vec<u8> },
    /// A forged frame holding a well-formed request: the server takes it
    /// (it cannot know better), naming `name` in its directory, where no
    /// client reads: replying finds the client gone, or (`not_a_fifo`) a
    /// regular file.
    Forged { pid: u32, payload: Vec<u8>, name: Vec<u8>, not_a_fifo: bool },
    /// A frame with a good check and a malformed request in it.
    Bad,
}

impl Expect {
    fn describe(due: Option<&Expect>) -> String {
        match due {
            Some(Expect::Honest { client, payload, .. }) => {
                format!("client {client}'s request of {} bytes", payload.len())
            }
            Some(Expect::Forged { name, .. }) => {
                format!("a forged request naming {}", String::from_utf8_lossy(name))
            }
            Some(Expect::Bad) => "BadRequest".into(),
            None => "nothing".into(),
        }
    }
}

/// One thing to write into the request FIFO.
enum Item {
    /// An honest request, through a client.
    Honest { client: usize, payload: Vec<u8>, reply: Vec<u8> },
    /// A client's request one byte over its limit: refused, nothing sent.
    TooLarge { client: usize },
    /// Bytes a hostile writer writes, in one write or split at `split`
    /// (and in pieces of at most `PIPE_BUF` bytes, so that each write is
    /// atomic, as any writer's is), and what they must bring out.
    Raw { bytes: Vec<u8>, split: Option<usize>, expect: Option<Expect> },
}

impl Item {
    /// How many writes it takes: each at most `PIPE_BUF` bytes, so at
    /// most one page of the FIFO.
    fn writes(&self) -> usize {
        match self {
            Item::Raw { bytes, split, .. } => {
                let (a, b) = bytes.split_at(split.unwrap_or(0).min(bytes.len()));
                a.len().div_ceil(PIPE_BUF) + b.len().div_ceil(PIPE_BUF)
            }
            Item::Honest { .. } => 1,
            Item::TooLarge { .. } => 0,
        }
    }
}

/// A request naming a reply FIFO the server accepts (named after it; the
/// server takes only the file name and looks in its own directory, however
/// the directory is spelled, even one elsewhere) but where no client
/// reads: the body, and what the server must make of it.
fn fifo_forged_valid(rig: &FifoRig, rng: &mut Rng) -> (Vec<u8>, Expect) {
    let k = rng.below(1000).to_string().into_bytes();
    let (name, not_a_fifo) = match rng.below(8) {
        0 => (rig.reply_name(b"file"), true),
        1 => (rig.reply_name(b"stale"), false),
        2 => (rig.reply_name(&[0xff, 0xfe, b'x']), false),
        3 => (rig.reply_name(b""), false),
        _ => (rig.reply_name(&[b"forged.", &k[..]].concat()), false),
    };
    let path = match rng.below(11) {
        0 => rig.in_dir(&[b"/", &name[..]].concat()),
        1 => rig.in_dir(&[b"./", &name[..]].concat()),
        2 => {
            let base = rig.dir.file_name().map_or(&[][..], |n| n.as_bytes());
            rig.in_dir(&[b"../", base, b"/", &name[..]].concat())
        }
        3 => rig.in_dir(&[b"link/", &name[..]].concat()),
        // Another directory: the parent, the root, a subdirectory.
        4 => {
            let parent = rig.dir.parent().map_or(&b"/"[..], |p| p.as_os_str().as_bytes());
            [parent, b"/", &name[..]].concat()
        }
        5 => [b"/", &name[..]].concat(),
        6 => rig.in_dir(&[b"sub/", &name[..]].concat()),
        // Relative, and a NUL byte in the directory part.
        7 => name.clone(),
        8 => [b"./", &name[..]].concat(),
        9 => [rig.dir.as_os_str().as_bytes(), b"\0/", &name[..]].concat(),
        _ => rig.in_dir(&name),
    };
    let pid = edgy(rng) as u32;
    let room = FIFO_MAX_BODY - 14 - path.len();
    let len = if rng.chance(4) { room } else { rng.below(room as u64 + 1) as usize };
    let payload = rng.bytes(len);
    let body = fifo_body(pid, path.len() as u16, &path, &payload);
    (body, Expect::Forged { pid, payload, name, not_a_fifo })
}

/// A request body the server must refuse as `BadRequest`.
fn fifo_forged_bad(rig: &FifoRig, rng: &mut Rng) -> Vec<u8> {
    let name = rig.reply_name(b"1.2");
    let path: Vec<u8> = match [0, 1, 7, 9, 10, 11][rng.below(6) as usize] {
        // Shorter than the request header.
        0 => {
            let n = rng.below(14) as usize;
            return rng.bytes(n);
        }
        // A path longer than the body.
        1 => {
            let path = rig.in_dir(&name);
            let claimed = path.len() + 1 + rng.below(u64::from(u16::MAX) - path.len() as u64) as usize;
            let cut = rng.below(path.len() as u64) as usize;
            return fifo_body(edgy(rng) as u32, claimed as u16, &path[..cut], &[]);
        }
        // A NUL byte in the name.
        7 => rig.in_dir(&[&name[..], b"\0x"].concat()),
        // Not named after the server: its own FIFO, a wrong prefix,
        // nothing after the directory, a name that is `..`.
        9 => match rng.below(4) {
            0 => rig.in_dir(rig.name.as_bytes()),
            1 => rig.in_dir(format!("{}.reply", rig.name).as_bytes()),
            2 => rig.in_dir(format!("x{}.reply.1.2", rig.name).as_bytes()),
            _ => rig.in_dir(format!("{}.replies.1", rig.name).as_bytes()),
        },
        10 => rig.in_dir(b""),
        _ => rig.in_dir(&[&name[..], b"/.."].concat()),
    };
    let n = rng.below(64) as usize;
    let payload = rng.bytes(n);
    fifo_body(edgy(rng) as u32, path.len() as u16, &path, &payload)
}

/// A random thing to write: an honest request, or what a hostile writer
/// might write.
fn fifo_item(rig: &FifoRig, rng: &mut Rng) -> Item {
    let raw = |bytes: Vec<u8>, rng: &mut Rng, expect| {
        let split = rng.chance(4).then(|| 1 + rng.below(bytes.len().max(1) as u64) as usize);
        Item::Raw { bytes, split, expect }
    };
    match rng.below(12) {
        0..=2 => {
            let client = rng.below(2) as usize;
            let max = rig.clients[client].max_request();
            if rng.chance(20) {
                return Item::TooLarge { client };
            }
            let len = match rng.below(5) {
                0 => 0,
                1 => max,
                2 => rng.below(64) as usize,
                _ => rng.below(max as u64 + 1) as usize,
            };
            let reply_len = if rng.chance(2) { rng.below(64) } else { rng.below(PIPE_BUF as u64 + 1) };
            let mut payload = rng.bytes(len);
            // Now and then the payload carries a request frame of its own
            // (a client relaying bytes): it is payload, never a request.
            if rng.chance(4) {
                let (body, _) = fifo_forged_valid(rig, rng);
                let inner = fifo_frame(body.len() as u32, &body, true);
                let n = inner.len().min(payload.len());
                let at = rng.below((payload.len() - n) as u64 + 1) as usize;
                payload[at..at + n].copy_from_slice(&inner[..n]);
            }
            Item::Honest { client, payload, reply: rng.bytes(reply_len as usize) }
        }
        // Garbage, with the magic number or a part of it here and there.
        3 => {
            let n = 1 + rng.below(PIPE_BUF as u64) as usize;
            let mut g = rng.bytes(n);
            if rng.chance(2) {
                for _ in 0..rng.below(8) {
                    let at = rng.below(g.len() as u64) as usize;
                    let n = (1 + rng.below(4) as usize).min(g.len() - at);
                    g[at..at + n].copy_from_slice(&FIFO_MAGIC[..n]);
                }
            }
            raw(g, rng, None)
        }
        // A frame's start, cut anywhere in its header.
        4 => {
            let (body, _) = fifo_forged_valid(rig, rng);
            let mut f = fifo_frame(body.len() as u32, &body, true);
            f.truncate(1 + rng.below(FIFO_FRAME_HEADER as u64 - 1) as usize);
            raw(f, rng, None)
        }
        // A header with a length at or past the limit, or a wrong check,
        // and some bytes after it.
        5 => {
            let len = match rng.below(6) {
                0 => FIFO_MAX_BODY as u32 + 1 + rng.below(3) as u32,
                1 => u32::MAX - rng.below(3) as u32,
                2 => 1 << (16 + rng.below(16)),
                3 => u16::MAX.into(),
                4 => edgy(rng) as u32,
                _ => rng.below(FIFO_MAX_BODY as u64 + 1) as u32,
            };
            let n = rng.below((PIPE_BUF - FIFO_FRAME_HEADER) as u64) as usize;
            let body = rng.bytes(n);
            raw(fifo_frame(len, &body, false), rng, None)
        }
        // A whole frame with a good check, one byte over the limit: skipped.
        6 => {
            let (mut body, _) = fifo_forged_valid(rig, rng);
            body.resize(FIFO_MAX_BODY + 1, b'x');
            raw(fifo_frame(body.len() as u32, &body, true), rng, None)
        }
        // A frame cut short (its writer killed mid-write). At least 9
        // bytes short: what follows cannot complete it but by a 2^-72
        // chance (cut closer to its end, a random byte after it would
        // complete it, rightly, one time in 256).
        7 => {
            let body = if rng.chance(2) { fifo_forged_valid(rig, rng).0 } else { fifo_forged_bad(rig, rng) };
            let mut f = fifo_frame(body.len() as u32, &body, true);
            f.truncate(1 + rng.below(f.len() as u64 - 9) as usize);
            raw(f, rng, None)
        }
        // A frame with one bit flipped anywhere.
        8 => {
            let body = if rng.chance(2) { fifo_forged_valid(rig, rng).0 } else { fifo_forged_bad(rig, rng) };
            let mut f = fifo_frame(body.len() as u32, &body, true);
            let at = rng.below(f.len() as u64) as usize;
            f[at] ^= 1 << rng.below(8);
            raw(f, rng, None)
        }
        // A good frame with a malformed request.
        9 | 10 => {
            let body = fifo_forged_bad(rig, rng);
            raw(fifo_frame(body.len() as u32, &body, true), rng, Some(Expect::Bad))
        }
        // A good frame with a request naming a reply FIFO nobody reads.
        _ => {
            let (body, expect) = fifo_forged_valid(rig, rng);
            raw(fifo_frame(body.len() as u32, &body, true), rng, Some(expect))
        }
    }
}

/// Takes everything the server has (`recv_timeout` with a zero timeout,
/// until `Timeout`) and checks it against `expected`, replying to each
/// request; `loose`: whatever comes is fine if it is a request or
/// `BadRequest` (a flush may complete a cut frame), and gets no reply.
fn fifo_drain(rig: &mut FifoRig, expected: &mut VecDeque<Expect>, loose: bool) -> Verdict {
    let pid = std::process::id();
    for i in 0.. {
        if i > 10_000 {
            return Err("the server never runs dry".into());
        }
        let got = rig.server.recv_timeout(Duration::ZERO);
        if matches!(got, Err(FifoError::Timeout { .. })) {
            break;
        }
        if loose {
            match got {
                Ok(_) | Err(FifoError::BadRequest { .. }) => continue,
                Err(e) => return Err(format!("flushing: unexpected error: {e}")),
            }
        }
        let due = expected.pop_front();
        let wrong = |what: String, due: &Option<Expect>| {
            Err(format!("{what} where {} was due", Expect::describe(due.as_ref())))
        };
        match (got, due) {
            (Ok(req), Some(Expect::Honest { client, payload, reply })) => {
                let c = &mut rig.clients[client];
                if req.client_pid != pid || req.reply_path() != c.reply_path() || req.payload != payload {
                    return Err(format!(
                        "a request of {} bytes from {} for {} where client {client}'s of {} bytes was due",
                        req.payload.len(),
                        req.client_pid,
                        req.reply_path().display(),
                        payload.len()
                    ));
                }
                rig.server.reply(&req, &reply).map_err(|e| format!("reply to client {client}: {e}"))?;
                match c.recv_reply() {
                    Ok(got) if got == reply => {}
                    Ok(got) => {
                        return Err(format!(
                            "client {client} got a reply of {} bytes, not its {}",
                            got.len(),
                            reply.len()
                        ));
                    }
                    Err(e) => return Err(format!("client {client}'s reply: {e}")),
                }
            }
            (Ok(req), Some(Expect::Forged { pid: p, payload, name, not_a_fifo })) => {
                let path = rig.dir.join(OsStr::from_bytes(&name));
                if req.client_pid != p || req.reply_path() != path || req.payload != payload {
                    return Err(format!(
                        "a request of {} bytes from {} for {} where a forged one of {} bytes for {} was due",
                        req.payload.len(),
                        req.client_pid,
                        req.reply_path().display(),
                        payload.len(),
                        path.display()
                    ));
                }
                match rig.server.reply(&req, b"to nobody") {
                    Err(FifoError::NotAFifo { .. }) if not_a_fifo => {}
                    Err(FifoError::ClientGone { .. }) if !not_a_fifo => {}
                    other => return Err(format!("replying to a forged request for {}: {other:?}", path.display())),
                }
            }
            (Err(FifoError::BadRequest { .. }), Some(Expect::Bad)) => {}
            (Ok(req), due) => {
                return wrong(
                    format!("a request of {} bytes for {}", req.payload.len(), req.reply_path().display()),
                    &due,
                );
            }
            (Err(FifoError::BadRequest { reason }), due) => return wrong(format!("BadRequest ({reason})"), &due),
            (Err(e), _) => return Err(format!("unexpected error: {e}")),
        }
    }
    match expected.front() {
        Some(due) => Err(format!("{} missing, the first {}", expected.len(), Expect::describe(Some(due)))),
        None => Ok(()),
    }
}

/// The FIFO server's request parser against a writer of any bytes beside
/// honest clients: rounds of honest requests, garbage, cut frames, edgy
/// lengths and forged frames (well-formed or not) written into the
/// request FIFO, each round no more than the FIFO holds, then taken out.
/// Every honest request must come out once, whole and in order, and its
/// reply reach its client; a forged frame with a malformed request gives
/// `BadRequest` and nothing else; nothing else comes out.
fn fifo_requests(rng: &mut Rng, rig: &mut Option<FifoRig>) -> Verdict {
    let rig = match rig {
        Some(rig) => rig,
        None => {
            let made = rig.insert(FifoRig::new()?);
            // The rig's own memory (a client's 64 KiB read-ahead buffer
            // among it) is no case's.
            take_largest();
            made
        }
    };
    let mut expected = VecDeque::new();
    for _ in 0..1 + rng.below(3) {
        let mut used = 0;
        for _ in 0..1 + rng.below(30) {
            let item = fifo_item(rig, rng);
            let writes = item.writes();
            if used + writes > rig.slots {
                break;
            }
            used += writes;
            match item {
                Item::Honest { client, payload, reply } => {
                    rig.clients[client].send_request(&payload).map_err(|e| format!("send a request: {e}"))?;
                    expected.push_back(Expect::Honest { client, payload, reply });
                }
                Item::TooLarge { client } => {
                    let max = rig.clients[client].max_request();
                    match rig.clients[client].send_request(&vec![7; max + 1]) {
                        Err(FifoError::RequestTooLarge { len, max: m }) if len == max + 1 && m == max => {}
                        other => return Err(format!("a request over the limit of {max} bytes: {other:?}")),
                    }
                }
                Item::Raw { bytes, split, expect } => {
                    let (a, b) = bytes.split_at(split.unwrap_or(0).min(bytes.len()));
                    for piece in a.chunks(PIPE_BUF).chain(b.chunks(PIPE_BUF)) {
                        rig.raw.try_write_atomic(piece).map_err(|e| format!("write {} bytes: {e}", piece.len()))?;
                    }
                    expected.extend(expect);
                }
            }
        }
        fifo_drain(rig, &mut expected, false)?;
    }
    // Whatever a cut frame left waiting in the server is resolved by two
    // `PIPE_BUF`s of zeros (no frame begins in them): the next case starts
    // with nothing pending.
    for _ in 0..2 {
        rig.raw.try_write_atomic(&[0; PIPE_BUF]).map_err(|e| format!("flush: {e}"))?;
        fifo_drain(rig, &mut expected, true)?;
    }
    let largest = largest_yet();
    if largest > FIFO_ALLOCATION_BOUND {
        return Err(format!("an allocation of {largest} bytes"));
    }
    Ok(())
}

/// What the targets keep from case to case.
struct Standing {
    /// A wrong magic number makes the opener wait a second: so few.
    wrong_magic_left: u32,
    fifo: Option<FifoRig>,
}

/// The case running now (its target's place in [`TARGETS`], its seed, and when it began, in milliseconds
/// since the program started; 0 when none runs), and the scratch
/// directory to remove should it hang.
static RUNNING_TARGET: AtomicUsize = AtomicUsize::new(0);
static RUNNING_SEED: AtomicU64 = AtomicU64::new(0);
static RUNNING_SINCE: AtomicU64 = AtomicU64::new(0);
static SCRATCH: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Ends the program, with the seed of the case, when a case runs for more
/// than 20 s: a hang (a blocking call that never returns) is a failure too.
fn watchdog(start: Instant) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let since = RUNNING_SINCE.load(Ordering::Acquire);
            let now = start.elapsed().as_millis() as u64;
            if since != 0 && now.saturating_sub(since) > 20_000 {
                let target = TARGETS.get(RUNNING_TARGET.load(Ordering::Acquire)).copied().unwrap_or("?");
                println!("  {target}: case seed {}: hung for 20 s", RUNNING_SEED.load(Ordering::Acquire));
                if let Ok(Some(dir)) = SCRATCH.lock().as_deref() {
                    let _ = std::fs::remove_dir_all(dir);
                }
                std::process::exit(1);
            }
        }
    });
}

/// One case of `target` from its seed; a panic is a failure.
fn run_case(target: &str, seed: u64, standing: &mut Standing, start: Instant) -> Verdict {
    let mut case = Rng::new(seed);
    RUNNING_TARGET.store(TARGETS.iter().position(|t| *t == target).unwrap_or(usize::MAX), Ordering::Release);
    RUNNING_SEED.store(seed, Ordering::Release);
    RUNNING_SINCE.store(start.elapsed().as_millis() as u64 + 1, Ordering::Release);
    let verdict = catch_unwind(AssertUnwindSafe(|| match target {
        "frames" => frames(&mut case),
        "byte-records" => byte_records(&mut case),
        "slot-indices" => slot_indices(&mut case),
        "pre-connect" => pre_connect(&mut case),
        "fifo-requests" => fifo_requests(&mut case, &mut standing.fifo),
        _ => header(&mut case, &mut standing.wrong_magic_left),
    }));
    RUNNING_SINCE.store(0, Ordering::Release);
    let verdict = verdict.unwrap_or_else(|_| Err("panicked (message above)".to_owned()));
    if verdict.is_err() {
        // A failed case may leave the server or a client mid-way: the
        // next one gets a fresh rig.
        standing.fifo = None;
    }
    verdict
}

const TARGETS: [&str; 6] = ["frames", "byte-records", "slot-indices", "header", "pre-connect", "fifo-requests"];

/// The fuzz targets, each run for a time with cases from one seed.
#[derive(Debug, Parser)]
#[command(name = "ipc-kit-fuzz", args_override_self = true)]
struct Args {
    /// Seconds per target.
    #[arg(long, value_name = "S", default_value_t = 30)]
    seconds: u64,
    /// The seed of the cases (default: from the clock).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Only this target.
    #[arg(long, value_name = "TARGET", value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    only: Option<String>,
    /// With --only: run the one case of this seed again.
    #[arg(long = "case", value_name = "SEED")]
    case_seed: Option<u64>,
}

fn main() -> ExitCode {
    let Args { seconds, seed, only, case_seed } = Args::parse();
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let start = Instant::now();
    watchdog(start);
    if let (Some(target), Some(case)) = (only.as_deref(), case_seed) {
        let verdict = run_case(target, case, &mut Standing { wrong_magic_left: 3, fifo: None }, start);
        println!("{target}: case seed {case}: {}", verdict.as_ref().err().map_or("passed", String::as_str));
        return if verdict.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    println!("seed {seed}, {seconds} s per target");
    let mut failed = false;
    for target in TARGETS {
        if only.as_deref().is_some_and(|o| o != target) {
            continue;
        }
        let mut rng = Rng::new(seed);
        // One case with a wrong magic number per target.
        let mut standing = Standing { wrong_magic_left: 1, fifo: None };
        let began = Instant::now();
        let (mut cases, mut failures) = (0u64, 0u64);
        let mut largest = 0;
        while began.elapsed() < Duration::from_secs(seconds) {
            let case_seed = rng.next_u64() | 1;
            take_largest();
            let verdict = run_case(target, case_seed, &mut standing, start);
            largest = largest.max(take_largest());
            cases += 1;
            let Err(why) = verdict else { continue };
            failures += 1;
            if failures <= 5 {
                println!("  {target}: case seed {case_seed}: {why}");
            }
        }
        println!("{target:<13} {cases:>8} cases, {failures} failed, largest allocation {} KiB", largest.div_ceil(1024));
        failed |= failures > 0;
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
