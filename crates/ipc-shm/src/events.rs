//! The memory of named events: one notifier counts notifications by id,
//! any number of listeners find which ids fired since they last looked.
//!
//! An [`EventWriter`] makes a table in a memfd that it maps for writing
//! and then seals against any other write access (as a broadcast ring):
//! a count per id, a stamp per group of 64 ids (the generation of the
//! group's last notification) and the generation, which each
//! notification moves on. An [`EventReader`] keeps what it saw, and on
//! each look reads only the groups stamped after it last looked.
//!
//! The layout, for programs in other languages (little-endian, naturally
//! aligned): at 0 the magic `ipcevent`, at 8 the number of ids (`u64`); at
//! 64 the generation (`u64`, 0 before the first notification); at 128 a
//! `u32` that is 1 once the notifier is gone; from 256 one `u64` stamp per
//! group of 64 ids, then one `u64` count per id.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::memfd::Memfd;
pub use crate::sealed::Position;
use crate::sealed::{self, Header, mismatch};
use crate::sys::{Pinned, Region};

const MAGIC: u64 = u64::from_le_bytes(*b"ipcevent");
const OFF_MAGIC: usize = 0;
const OFF_IDS: usize = 8;
const OFF_GENERATION: usize = 64;
const OFF_CLOSED: usize = 128;
const GROUPS: usize = 256;

/// The most ids a table may have.
pub const MAX_IDS: usize = 1 << 16;

fn groups(ids: usize) -> usize {
    ids.div_ceil(64)
}

fn bytes(ids: usize) -> usize {
    GROUPS + 8 * groups(ids) + 8 * ids
}

fn group_at(g: usize) -> usize {
    GROUPS + 8 * g
}

fn count_at(ids: usize, id: usize) -> usize {
    GROUPS + 8 * groups(ids) + 8 * id
}

/// The notifier's side (see the [module](self)).
pub struct EventWriter {
    pinned: Pinned<Region, GROUPS>,
    memfd: Memfd,
    ids: usize,
    generation: u64,
}

impl EventWriter {
    /// A table of `ids` ids (1 to 65536) in a new memfd labelled `label`,
    /// which only this writer can write.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSize`]; [`Error::Io`].
    pub fn create(label: &str, ids: usize) -> Result<EventWriter> {
        if !(1..=MAX_IDS).contains(&ids) {
            return Err(Error::InvalidSize { size: ids, reason: "ids: 1 to 65536" });
        }
        let len = bytes(ids);
        let (memfd, pinned) = sealed::create(label, len, &[(OFF_MAGIC, MAGIC), (OFF_IDS, ids as u64)])?;
        Ok(EventWriter { pinned, memfd, ids, generation: 0 })
    }

    /// Where it is (for a hub's thread that compares it with a reader's
    /// place).
    pub fn position(&self) -> Position {
        Position::new::<OFF_GENERATION>(&self.pinned)
    }

    /// The memfd, to hand to readers.
    pub fn memfd(&self) -> &Memfd {
        &self.memfd
    }

    /// How many ids.
    pub fn ids(&self) -> usize {
        self.ids
    }

    /// Counts a notification of `id` (below [`ids`](Self::ids)); returns
    /// the new generation.
    ///
    /// # Errors
    ///
    /// [`Error::OutOfBounds`] for an id out of range.
    pub fn notify(&mut self, id: usize) -> Result<u64> {
        if id >= self.ids {
            return Err(Error::OutOfBounds { offset: id, len: 1, size: self.ids });
        }
        let span = self.pinned.span();
        let (Ok(count), Ok(group)) =
            (span.view::<AtomicU64>(count_at(self.ids, id)), span.view::<AtomicU64>(group_at(id / 64)))
        else {
            return Err(Error::OutOfBounds { offset: id, len: 1, size: self.ids });
        };
        let g = self.generation + 1;
        count.store(count.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        group.store(g, Ordering::Release);
        self.pinned.at::<AtomicU64, OFF_GENERATION>().store(g, Ordering::Release);
        self.generation = g;
        Ok(g)
    }

    /// Marks the table closed: no notification follows.
    pub fn close(&self) {
        self.pinned.at::<AtomicU32, OFF_CLOSED>().store(1, Ordering::Release);
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventWriter").field("ids", &self.ids).field("generation", &self.generation).finish()
    }
}

/// A listener's view of the table, mapped read-only, with what it saw.
pub struct EventReader {
    pinned: Pinned<Region, GROUPS>,
    ids: usize,
    /// The generation when it last looked.
    seen: u64,
    /// Each id's count when it last looked.
    counts: Vec<u64>,
}

impl EventReader {
    /// Maps a table received from its writer (read-only), checks its
    /// header, and takes what it holds now as seen.
    ///
    /// # Errors
    ///
    /// [`Error::LayoutMismatch`]; [`Error::Io`].
    pub fn open(memfd: &Memfd) -> Result<EventReader> {
        let header = Header::read::<GROUPS>(memfd, MAGIC, "event table")?;
        let ids = header.word(OFF_IDS);
        let ids = usize::try_from(ids).ok().filter(|n| (1..=MAX_IDS).contains(n) && bytes(*n) <= memfd.len());
        let ids = ids.ok_or_else(|| mismatch(format!("{} ids in {} bytes", header.word(OFF_IDS), memfd.len())))?;
        let pinned = sealed::open(memfd, bytes(ids))?;
        let mut reader = EventReader { pinned, ids, seen: 0, counts: vec![0; ids] };
        reader.seen = reader.generation();
        for id in 0..ids {
            reader.counts[id] = reader.count(id);
        }
        Ok(reader)
    }

    /// How many ids.
    pub fn ids(&self) -> usize {
        self.ids
    }

    /// The generation, as the writer says.
    pub fn generation(&self) -> u64 {
        self.pinned.at::<AtomicU64, OFF_GENERATION>().load(Ordering::Acquire)
    }

    /// Whether something may have fired since it last looked.
    pub fn changed(&self) -> bool {
        self.generation() != self.seen
    }

    /// Whether the writer marked the table closed.
    pub fn closed(&self) -> bool {
        self.pinned.at::<AtomicU32, OFF_CLOSED>().load(Ordering::Acquire) != 0
    }

    fn count(&self, id: usize) -> u64 {
        self.pinned.span().view::<AtomicU64>(count_at(self.ids, id)).map_or(0, |c| c.load(Ordering::Acquire))
    }

    /// The ids that fired since it last looked, each with how many times
    /// (appended to `out`), and takes them as seen.
    pub fn take(&mut self, out: &mut Vec<(u32, u64)>) {
        let now = self.generation();
        if now == self.seen {
            return;
        }
        for g in 0..groups(self.ids) {
            let stamp = self.pinned.span().view::<AtomicU64>(group_at(g)).map_or(0, |s| s.load(Ordering::Acquire));
            // A group stamped no later than last time has nothing new (a
            // generation that went back, which no writer does, looks at all).
            if stamp <= self.seen && self.seen <= now {
                continue;
            }
            for id in g * 64..((g + 1) * 64).min(self.ids) {
                let c = self.count(id);
                let fired = c.wrapping_sub(self.counts[id]);
                if fired != 0 {
                    out.push((id as u32, fired));
                    self.counts[id] = c;
                }
            }
        }
        self.seen = now;
    }
}

impl fmt::Debug for EventReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventReader").field("ids", &self.ids).field("seen", &self.seen).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_see_which_ids_fired_and_how_often() {
        let mut w = EventWriter::create("test-events", 200).unwrap();
        w.notify(3).unwrap();
        let m = Memfd::from_fd(w.memfd().try_clone_fd().unwrap()).unwrap();
        assert!(m.map().is_err(), "a writable mapping of a sealed table");
        let mut r = EventReader::open(&m).unwrap();
        let mut out = Vec::new();
        r.take(&mut out);
        assert!(out.is_empty(), "what fired before it opened is not news");
        for id in [5, 199, 5, 70] {
            w.notify(id).unwrap();
        }
        assert!(w.notify(200).is_err());
        assert!(r.changed());
        r.take(&mut out);
        out.sort_unstable();
        assert_eq!(out, [(5, 2), (70, 1), (199, 1)]);
        assert!(!r.changed());
        out.clear();
        r.take(&mut out);
        assert!(out.is_empty());
        drop(w);
        assert!(r.closed());
    }
}
