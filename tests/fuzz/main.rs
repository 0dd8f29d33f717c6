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
//!   then opened, both sides claimed in either order, and used.
//!
//! Every case must end without a panic (the program is built with
//! overflow checks and debug assertions, so arithmetic overflow and the
//! mapping's bounds assertions count), give only lengths within the
//! limits, and never allocate more than the input justifies: a counting
//! allocator records the largest allocation.
//!
//! `ipc-kit-fuzz [--seconds S] [--seed N] [--only TARGET]` (S per target;
//! default 30). A failing case prints its seed; `--only TARGET --case SEED`
//! runs that one case again.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ipc_kit::pipe::{DEFAULT_MAX_FRAME, Error as PipeError, FrameReader, FrameWriter};
use ipc_kit::shm::{ByteChannel, Channel, Error as ShmError, Memfd};
use ipc_kit_tests::Rng;

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

/// Offsets in a channel's memory (see ipc-shm's channel layout): the
/// sender's index, the receiver's, the ring.
const TAIL: usize = 128;
const HEAD: usize = 256;
const DATA: usize = 768;

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
        u64::from_le_bytes(*b"ipckitch"),
        2 | (if bytes_kind { 2u64 } else { 1 }) << 32, // version, kind
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
        let chan = match ByteChannel::from_memfd(memfd) {
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
        let chan = match Channel::<[u8; 16]>::from_memfd(memfd) {
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
    // flags): 32-bit words at 384 + 8.., 512 + 8.., 640 + 8...
    for _ in 0..rng.below(6) {
        let at = [384, 512, 640][rng.below(3) as usize] + 8 + 4 * rng.below(6) as usize;
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
        let chan = match ByteChannel::from_memfd(memfd) {
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
        let chan = match Channel::<[u8; 24]>::from_memfd(memfd) {
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

/// One case of `target` from its seed; a panic is a failure.
fn run_case(target: &str, seed: u64, wrong_magic_left: &mut u32) -> Verdict {
    let mut case = Rng::new(seed);
    let verdict = catch_unwind(AssertUnwindSafe(|| match target {
        "frames" => frames(&mut case),
        "byte-records" => byte_records(&mut case),
        "slot-indices" => slot_indices(&mut case),
        "pre-connect" => pre_connect(&mut case),
        _ => header(&mut case, wrong_magic_left),
    }));
    verdict.unwrap_or_else(|_| Err("panicked (message above)".to_owned()))
}

const TARGETS: [&str; 5] = ["frames", "byte-records", "slot-indices", "header", "pre-connect"];

fn main() -> ExitCode {
    let mut seconds = 30u64;
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let mut only = None;
    let mut case_seed = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let parsed = value.as_deref().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), parsed) {
            ("--seconds", Some(v)) => seconds = v,
            ("--seed", Some(v)) => seed = v,
            ("--case", Some(v)) => case_seed = Some(v),
            ("--only", _) if value.as_deref().is_some_and(|v| TARGETS.contains(&v)) => only = value,
            _ => {
                eprintln!("usage: ipc-kit-fuzz [--seconds S] [--seed N] [--only {} [--case SEED]]", TARGETS.join("|"));
                return ExitCode::from(2);
            }
        }
    }
    if let (Some(target), Some(case)) = (only.as_deref(), case_seed) {
        let verdict = run_case(target, case, &mut 3);
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
        // A wrong magic number makes the opener wait a second: one such case.
        let mut wrong_magic_left = 1;
        let start = Instant::now();
        let (mut cases, mut failures) = (0u64, 0u64);
        let mut largest = 0;
        while start.elapsed() < Duration::from_secs(seconds) {
            let case_seed = rng.next_u64() | 1;
            take_largest();
            let verdict = run_case(target, case_seed, &mut wrong_magic_left);
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
