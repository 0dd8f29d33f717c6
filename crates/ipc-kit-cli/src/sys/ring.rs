//! The raw references of the shared-memory channels, written the way a
//! careful C programmer writes them: single-producer single-consumer rings
//! in anonymous shared memory with a power-of-two mask, each side keeping
//! its own index and a cached copy of the other's (read again only when the
//! cached one says full or empty), one Release store per message, no trait
//! objects and no checks on the accesses. And the physical limit of a
//! round trip: one cache line that carries a sequence word and the
//! payload, handed back and forth.
//!
//! They trust the peer completely: they are references to measure against,
//! not something to connect to an untrusted process.
#![allow(unsafe_code)]

use std::hint::spin_loop;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::raw::Region;

/// Offsets in a ring's memory: the receiver's index, the sender's index
/// (each alone on a pair of cache lines), then the data.
const HEAD: usize = 0;
const TAIL: usize = 128;
const DATA: usize = 256;

/// One side of a ring: its own index, its last view of the other's, and
/// where the two indices and the data are. Both sides are made before
/// `fork`, and each process uses one.
struct Ends {
    /// Keeps the mapping for as long as a side lives.
    _mem: Rc<Region>,
    head: *const AtomicU64,
    tail: *const AtomicU64,
    data: *mut u8,
    mine: u64,
    theirs: u64,
}

impl Ends {
    fn new(mem: &Rc<Region>) -> Ends {
        let base = mem.as_ptr();
        // SAFETY: the region is at least DATA bytes long (see `pair`), so
        // all three offsets lie inside it.
        let (head, tail, data) = unsafe { (base.add(HEAD), base.add(TAIL), base.add(DATA)) };
        Ends { _mem: Rc::clone(mem), head: head.cast(), tail: tail.cast(), data, mine: 0, theirs: 0 }
    }

    /// The receiver's index.
    #[inline(always)]
    fn head(&self) -> &AtomicU64 {
        // SAFETY: 8-aligned (the mapping is page-aligned) inside the
        // mapping, which `_mem` keeps; only ever accessed atomically.
        unsafe { &*self.head }
    }

    /// The sender's index.
    #[inline(always)]
    fn tail(&self) -> &AtomicU64 {
        // SAFETY: as for `head`.
        unsafe { &*self.tail }
    }

    /// The sender's wait: spins until `need` more (slots or bytes) fit
    /// in a ring of `size`, reading the receiver's index only when the
    /// cached one says they do not.
    #[inline(always)]
    fn wait_for_room(&mut self, need: u64, size: u64) {
        if self.mine + need - self.theirs > size {
            loop {
                self.theirs = self.head().load(Ordering::Acquire);
                if self.mine + need - self.theirs <= size {
                    break;
                }
                spin_loop();
            }
        }
    }

    /// The receiver's wait: spins until the sender has published something
    /// past the receiver, reading its index only when the cached one says
    /// it has not.
    #[inline(always)]
    fn wait_for_data(&mut self) {
        if self.mine == self.theirs {
            loop {
                self.theirs = self.tail().load(Ordering::Acquire);
                if self.mine != self.theirs {
                    break;
                }
                spin_loop();
            }
        }
    }
}

/// Both sides of a ring of `bytes` bytes of data.
fn pair(bytes: usize) -> io::Result<(Ends, Ends, Rc<Region>)> {
    let mem = Rc::new(Region::new(DATA + bytes)?);
    Ok((Ends::new(&mem), Ends::new(&mem), mem))
}

/// A ring of `slots` slots of `N` bytes: the sender copies into slot
/// `tail & mask` and stores `tail + 1`; the receiver copies out and stores
/// `head + 1`.
pub(crate) struct SlotRing<const N: usize> {
    ends: Ends,
    mask: u64,
}

impl<const N: usize> SlotRing<N> {
    /// The sending and the receiving side of a new ring, and its memory.
    /// `slots` is a power of two.
    pub(crate) fn pair(slots: usize) -> io::Result<(SlotRing<N>, SlotRing<N>, Rc<Region>)> {
        if !slots.is_power_of_two() {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let (a, b, mem) = pair(slots * N)?;
        let mask = slots as u64 - 1;
        Ok((SlotRing { ends: a, mask }, SlotRing { ends: b, mask }, mem))
    }

    #[inline(always)]
    fn slot(&self, index: u64) -> *mut u8 {
        // SAFETY: `index & mask` is below the slot count, and the data
        // holds that many slots of N bytes.
        unsafe { self.ends.data.add((index & self.mask) as usize * N) }
    }

    /// Sends `msg`, spinning while the ring is full.
    #[inline]
    pub(crate) fn send(&mut self, msg: &[u8; N]) {
        self.ends.wait_for_room(1, self.mask + 1);
        let slot = self.slot(self.ends.mine);
        // SAFETY: the slot is inside the data (see `slot`) and is ours
        // until we publish it: the receiver has released it (checked
        // above). `msg` is ordinary memory, apart from the mapping.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), slot, N) };
        let e = &mut self.ends;
        e.mine += 1;
        e.tail().store(e.mine, Ordering::Release);
    }

    /// Receives the next message into `out`, spinning while there is none.
    #[inline]
    pub(crate) fn recv(&mut self, out: &mut [u8; N]) {
        self.ends.wait_for_data();
        let slot = self.slot(self.ends.mine);
        // SAFETY: the slot is inside the data and published to us (checked
        // above); the sender leaves it alone until we release it.
        unsafe { std::ptr::copy_nonoverlapping(slot, out.as_mut_ptr(), N) };
        let e = &mut self.ends;
        e.mine += 1;
        e.head().store(e.mine, Ordering::Release);
    }

    /// Sends all of `msgs`, as many at a time as there is room for, each
    /// run published with one store.
    pub(crate) fn send_many(&mut self, mut msgs: &[[u8; N]]) {
        let size = self.mask + 1;
        while !msgs.is_empty() {
            let e = &mut self.ends;
            if size - (e.mine - e.theirs) < msgs.len() as u64 {
                e.theirs = e.head().load(Ordering::Acquire);
                while e.mine - e.theirs == size {
                    spin_loop();
                    e.theirs = e.head().load(Ordering::Acquire);
                }
            }
            let n = msgs.len().min((size - (e.mine - e.theirs)) as usize);
            for (i, m) in msgs[..n].iter().enumerate() {
                let slot = self.slot(self.ends.mine + i as u64);
                // SAFETY: as in `send`, for each of the `n` free slots.
                unsafe { std::ptr::copy_nonoverlapping(m.as_ptr(), slot, N) };
            }
            let e = &mut self.ends;
            e.mine += n as u64;
            e.tail().store(e.mine, Ordering::Release);
            msgs = &msgs[n..];
        }
    }

    /// Receives up to `out.len()` messages, at least one, spinning while
    /// there is none; releases them with one store. Returns how many.
    pub(crate) fn recv_many(&mut self, out: &mut [[u8; N]]) -> usize {
        let e = &mut self.ends;
        if e.theirs - e.mine < out.len() as u64 {
            e.theirs = e.tail().load(Ordering::Acquire);
            while e.mine == e.theirs {
                spin_loop();
                e.theirs = e.tail().load(Ordering::Acquire);
            }
        }
        let n = out.len().min((e.theirs - e.mine) as usize);
        for (i, m) in out[..n].iter_mut().enumerate() {
            let slot = self.slot(self.ends.mine + i as u64);
            // SAFETY: as in `recv`, for each of the `n` published slots.
            unsafe { std::ptr::copy_nonoverlapping(slot, m.as_mut_ptr(), N) };
        }
        let e = &mut self.ends;
        e.mine += n as u64;
        e.head().store(e.mine, Ordering::Release);
        n
    }
}

/// A ring of variable-length records in `bytes` bytes (a power of two):
/// each record is its length as a u64 and the bytes, padded to 8; a record
/// that would run past the end starts again at the front, after a skip
/// mark. Indices count bytes.
pub(crate) struct ByteRing {
    ends: Ends,
    mask: u64,
}

const SKIP: u64 = u64::MAX;

impl ByteRing {
    /// The sending and the receiving side of a new ring, and its memory.
    pub(crate) fn pair(bytes: usize) -> io::Result<(ByteRing, ByteRing, Rc<Region>)> {
        if !bytes.is_power_of_two() || bytes < 64 {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let (a, b, mem) = pair(bytes)?;
        let mask = bytes as u64 - 1;
        Ok((ByteRing { ends: a, mask }, ByteRing { ends: b, mask }, mem))
    }

    /// The longest record.
    pub(crate) fn max_record(&self) -> usize {
        ((self.mask >> 1) + 1) as usize - 8
    }

    #[inline(always)]
    fn at(&self, index: u64) -> *mut u8 {
        // SAFETY: `index & mask` is inside the data.
        unsafe { self.ends.data.add((index & self.mask) as usize) }
    }

    /// Sends `msg` (at most [`max_record`](Self::max_record) bytes, else
    /// `InvalidInput`), spinning while there is no room.
    #[inline]
    pub(crate) fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        if msg.len() > self.max_record() {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let need = 8 + (msg.len() as u64).next_multiple_of(8);
        let size = self.mask + 1;
        let left = size - (self.ends.mine & self.mask);
        let skip = if left < need { left } else { 0 };
        self.ends.wait_for_room(skip + need, size);
        if skip > 0 {
            let at = self.at(self.ends.mine);
            // SAFETY: at least 8 bytes are left before the end of the data
            // (indices are multiples of 8), free (checked above).
            unsafe { at.cast::<u64>().write(SKIP) };
            self.ends.mine += skip;
        }
        let at = self.at(self.ends.mine);
        // SAFETY: the record fits before the end of the data (after any
        // skip) in free bytes (checked above); 8-aligned.
        unsafe {
            at.cast::<u64>().write(msg.len() as u64);
            std::ptr::copy_nonoverlapping(msg.as_ptr(), at.add(8), msg.len());
        }
        let e = &mut self.ends;
        e.mine += need;
        e.tail().store(e.mine, Ordering::Release);
        Ok(())
    }

    /// Receives the next record into `buf`, grown as needed (the record
    /// is `buf[..n]`), spinning while there is none; returns its length.
    #[inline]
    pub(crate) fn recv(&mut self, buf: &mut Vec<u8>) -> usize {
        loop {
            self.ends.wait_for_data();
            let at = self.at(self.ends.mine);
            // SAFETY: a published record (or skip mark) starts here, 8-aligned.
            let len = unsafe { at.cast::<u64>().read() };
            if len == SKIP {
                self.ends.mine += self.mask + 1 - (self.ends.mine & self.mask);
                continue;
            }
            let n = len as usize;
            if buf.len() < n {
                buf.resize(n, 0);
            }
            // SAFETY: the sender wrote `n` bytes after the length, before
            // the end of the data, and leaves them alone until we release
            // them; `buf` holds at least `n` bytes.
            unsafe { std::ptr::copy_nonoverlapping(at.add(8), buf.as_mut_ptr(), n) };
            let e = &mut self.ends;
            e.mine += 8 + (n as u64).next_multiple_of(8);
            e.head().store(e.mine, Ordering::Release);
            return n;
        }
    }
}

/// The limit of a round trip through shared memory: a 64-byte line
/// holding a sequence word and 56 bytes of payload. A message of up to 64
/// bytes travels as its first 8 bytes (its number, which the benchmark
/// stamps there) folded into the sequence word, and the rest beside it:
/// one line crosses between the CPUs each way.
///
/// Both ways share one line ([`Ways::Shared`]), or each has its own
/// ([`Ways::Apart`]): the limit of any two one-way links, such as a
/// channel each way, which cannot hand the line that brought a request
/// back with its answer.
pub(crate) struct Line {
    _mem: Rc<Region>,
    word: *const AtomicU64,
    payload: *mut u8,
    /// 1 for the way out, 2 for the way back.
    way: u64,
    /// The size of the messages.
    size: usize,
    /// The number of the next message expected (when receiving).
    next: u64,
}

/// The payload bytes beside the sequence word.
pub(crate) const LINE_PAYLOAD: usize = 56;

/// Where the two ways of a [`Line`] pair are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Ways {
    /// In one line, handed back and forth.
    Shared,
    /// In a line each, 2 KiB apart (so that no prefetcher pulls one in
    /// with the other).
    Apart,
}

impl Line {
    /// The two ways for messages of `size` bytes (8 to 64): (out, back).
    /// Each process sends on one and receives on the other.
    pub(crate) fn pair(size: usize, ways: Ways) -> io::Result<(Line, Line, Rc<Region>)> {
        if !(8..=8 + LINE_PAYLOAD).contains(&size) {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let mem = Rc::new(Region::new(4096)?);
        let line = |at: usize| {
            // SAFETY: `at` is 0 or 2048: a 64-byte line inside the page.
            let word = unsafe { mem.as_ptr().add(at) };
            // SAFETY: the payload follows the word inside the same line.
            (word, unsafe { word.add(8) })
        };
        let way = |way, (word, payload): (*mut u8, *mut u8)| Line {
            _mem: Rc::clone(&mem),
            word: word.cast(),
            payload,
            way,
            size,
            next: 0,
        };
        let back = line(if ways == Ways::Apart { 2048 } else { 0 });
        Ok((way(1, line(0)), way(2, back), mem))
    }

    /// Another handle to the same way of the same line, for the process
    /// at its other end (each keeps one after `fork`).
    pub(crate) fn again(&self) -> Line {
        Line { _mem: Rc::clone(&self._mem), ..*self }
    }

    #[inline(always)]
    fn word(&self) -> &AtomicU64 {
        // SAFETY: the line's first 8 bytes, page-aligned, inside the
        // mapping `_mem` keeps; only accessed atomically.
        unsafe { &*self.word }
    }

    /// Sends `msg` (of the pair's size; its first 8 bytes are its number).
    #[inline]
    pub(crate) fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let (Some(number), Some(rest)) = (msg.first_chunk::<8>(), msg.get(8..)) else {
            return Err(io::ErrorKind::InvalidInput.into());
        };
        if msg.len() != self.size {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        // SAFETY: at most 56 bytes after the word, inside the line; the
        // peer reads them only after it sees the word stored below, and
        // writes them only after we read them (the ping-pong's turns).
        unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr(), self.payload, rest.len()) };
        let seq = u64::from_le_bytes(*number).wrapping_mul(2).wrapping_add(self.way);
        self.word().store(seq, Ordering::Release);
        Ok(())
    }

    /// Receives the next message into `buf` (grown as needed; the
    /// message is `buf[..n]`), spinning; returns its length `n`.
    #[inline]
    pub(crate) fn recv(&mut self, buf: &mut Vec<u8>) -> usize {
        let want = self.next.wrapping_mul(2).wrapping_add(self.way);
        while self.word().load(Ordering::Acquire) != want {
            spin_loop();
        }
        let size = self.size;
        if buf.len() < size {
            buf.resize(size, 0);
        }
        buf[..8].copy_from_slice(&self.next.to_le_bytes());
        // SAFETY: the payload bytes inside the line, ours to read until we
        // answer; `buf` holds `size` bytes.
        unsafe { std::ptr::copy_nonoverlapping(self.payload, buf[8..].as_mut_ptr(), size - 8) };
        self.next += 1;
        size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_ring_carries_messages_in_order_across_its_end() {
        let (mut tx, mut rx, _mem) = SlotRing::<16>::pair(4).unwrap();
        let mut out = [0u8; 16];
        for i in 0..10u8 {
            tx.send(&[i; 16]);
            tx.send(&[i + 100; 16]);
            rx.recv(&mut out);
            assert_eq!(out, [i; 16]);
            rx.recv(&mut out);
            assert_eq!(out, [i + 100; 16]);
        }
        // Batches, also across the end of the ring.
        let batch: Vec<[u8; 16]> = (0..3u8).map(|i| [i; 16]).collect();
        let mut got = [[0u8; 16]; 4];
        for _ in 0..5 {
            tx.send_many(&batch);
            let mut n = 0;
            while n < 3 {
                n += rx.recv_many(&mut got[n..3]);
            }
            assert_eq!(&got[..3], &batch[..]);
        }
        assert!(SlotRing::<16>::pair(3).is_err(), "a slot count that is not a power of two");
    }

    #[test]
    fn a_byte_ring_skips_to_its_start_and_refuses_what_cannot_fit() {
        let (mut tx, mut rx, _mem) = ByteRing::pair(256).unwrap();
        assert_eq!(tx.max_record(), 120);
        let mut buf = Vec::new();
        // 40-byte records (48 in the ring): the sixth starts past the end.
        for i in 0..20u8 {
            tx.send(&[i; 40]).unwrap();
            assert_eq!(rx.recv(&mut buf), 40);
            assert_eq!(buf[..40], [i; 40]);
        }
        assert!(tx.send(&[0; 121]).is_err());
        tx.send(&[]).unwrap();
        assert_eq!(rx.recv(&mut buf), 0);
    }

    #[test]
    fn a_line_folds_the_number_into_its_word_each_way() {
        for ways in [Ways::Shared, Ways::Apart] {
            let (mut out, mut back, mem) = Line::pair(64, ways).unwrap();
            let (mut out_rx, mut back_rx) = (out.again(), back.again());
            let mut buf = Vec::new();
            for i in 0..5u64 {
                let mut msg = vec![0xA5; 64];
                msg[..8].copy_from_slice(&i.to_le_bytes());
                out.send(&msg).unwrap();
                assert_eq!(out_rx.recv(&mut buf), 64);
                assert_eq!(buf[..64], msg[..]);
                // The way back keeps its word where `ways` puts it.
                let word = |at: usize| {
                    // SAFETY: within the page, written by the sends above.
                    unsafe { mem.as_ptr().add(at).cast::<u64>().read() }
                };
                back.send(&buf[..64]).unwrap();
                assert_eq!(word(if ways == Ways::Apart { 2048 } else { 0 }), 2 * i + 2, "{ways:?}");
                assert_eq!(back_rx.recv(&mut buf), 64);
                assert_eq!(buf[..64], msg[..]);
            }
            assert!(out.send(&[0; 32]).is_err(), "another size");
            assert!(Line::pair(65, ways).is_err() && Line::pair(7, ways).is_err());
        }
    }
}
