//! The consumers' tallies of the messages they get.

use ipc_kit_tests::record::decode;

/// System V message types: data, and the end marker behind it.
pub(crate) const DATA_TYPE: i64 = 1;
pub(crate) const END_TYPE: i64 = 2;

/// What one consumer saw, and (merged) what all of them saw.
#[derive(Debug)]
pub(crate) struct Tally {
    per: u64,
    pub(crate) received: u64,
    pub(crate) corrupted: u64,
    pub(crate) reordered: u64,
    pub(crate) duplicated: u64,
    /// The last sequence number seen from each producer.
    last: Vec<Option<u64>>,
    /// For each producer, a bit per sequence number received.
    seen: Vec<Vec<u64>>,
}

impl Tally {
    pub(crate) fn new(producers: usize, per: u64) -> Tally {
        Tally {
            per,
            received: 0,
            corrupted: 0,
            reordered: 0,
            duplicated: 0,
            last: vec![None; producers],
            seen: vec![vec![0; per.div_ceil(64) as usize]; producers],
        }
    }

    /// Counts one received message.
    pub(crate) fn take(&mut self, msg: &[u8]) {
        self.received += 1;
        let Some((p, seq)) = decode(msg).filter(|&(p, seq)| (p as usize) < self.seen.len() && seq < self.per) else {
            self.corrupted += 1;
            return;
        };
        let p = p as usize;
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen[p][word] & bit != 0 {
            self.duplicated += 1;
            return;
        }
        self.seen[p][word] |= bit;
        if self.last[p].is_some_and(|last| seq < last) {
            self.reordered += 1;
        }
        self.last[p] = Some(seq);
    }

    /// The tally as bytes for the parent, with the consumer's error (empty
    /// for none).
    pub(crate) fn report(&self, error: &str) -> Vec<u8> {
        let mut words = vec![self.received, self.corrupted, self.reordered, self.duplicated, error.len() as u64];
        for map in &self.seen {
            words.extend_from_slice(map);
        }
        let mut bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        bytes.extend_from_slice(error.as_bytes());
        bytes
    }

    /// Adds a consumer's report; a message seen by two consumers counts as
    /// duplicated. Returns the consumer's error, if it had one.
    pub(crate) fn merge(&mut self, report: &[u8]) -> Result<Option<String>, String> {
        let maps: usize = self.seen.iter().map(Vec::len).sum();
        let words = 5 + maps;
        let Some((head, error)) = report.split_at_checked(words * 8) else {
            return Err(format!("{} bytes, expected at least {}", report.len(), words * 8));
        };
        let mut w = head.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()));
        let mut next = || w.next().unwrap_or(0);
        self.received += next();
        self.corrupted += next();
        self.reordered += next();
        self.duplicated += next();
        if next() != error.len() as u64 {
            return Err("error length does not match".into());
        }
        for map in &mut self.seen {
            for word in map.iter_mut() {
                let theirs = next();
                self.duplicated += u64::from((*word & theirs).count_ones());
                *word |= theirs;
            }
        }
        Ok((!error.is_empty()).then(|| String::from_utf8_lossy(error).into_owned()))
    }

    /// Messages no consumer received.
    pub(crate) fn lost(&self) -> u64 {
        let got: u64 = self.seen.iter().flatten().map(|w| u64::from(w.count_ones())).sum();
        self.per * self.seen.len() as u64 - got
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_kit_tests::record::encode;

    #[test]
    fn tallies_count_loss_duplicates_and_reordering() {
        let mut m = Vec::new();
        let (mut a, mut b) = (Tally::new(2, 10), Tally::new(2, 10));
        for seq in [0, 1, 3, 2, 2] {
            encode(0, seq, false, &mut m);
            a.take(&m);
        }
        for seq in 0..10 {
            encode(1, seq, true, &mut m);
            b.take(&m);
        }
        encode(0, 3, false, &mut m);
        b.take(&m);
        b.take(b"junk");
        let mut all = Tally::new(2, 10);
        assert_eq!(all.merge(&a.report("")), Ok(None));
        assert_eq!(all.merge(&b.report("stuck")), Ok(Some("stuck".into())));
        assert_eq!(all.received, 17);
        assert_eq!(all.corrupted, 1);
        assert_eq!(all.reordered, 1, "2 after 3");
        assert_eq!(all.duplicated, 2, "2 twice in one consumer, 3 in both");
        assert_eq!(all.lost(), 6, "producer 0's 4 to 9");
    }

    #[test]
    fn intact_messages_decode_and_damaged_ones_do_not() {
        let mut m = Vec::new();
        for (p, seq, fixed) in [(0, 0, false), (3, 12_345, false), (1, 7, true)] {
            encode(p, seq, fixed, &mut m);
            assert_eq!(decode(&m), Some((p, seq)));
            for at in [0, 5, 9, 17, m.len() - 1] {
                let mut bad = m.clone();
                bad[at] ^= 0x40;
                assert_eq!(decode(&bad), None, "flip at {at}");
            }
            assert_eq!(decode(&m[..m.len() - 1]), None);
        }
    }
}
