//! The messages of the stress and fault programs.
//!
//! A message is a 24-byte header — producer (u32), length (u32), sequence
//! number (u64), checksum (u64), little-endian — then a payload that
//! depends on the producer and the sequence number. The checksum covers
//! every byte but its own, so a torn, mixed or altered message fails it.

/// The size of records where they must all have one size.
pub const FIXED: usize = 64;

/// The header's size.
const HEADER: usize = 24;

/// The length of message `seq` of producer `p`: 24 to 200 bytes, or
/// [`FIXED`].
fn length(p: u32, seq: u64, fixed: bool) -> usize {
    if fixed { FIXED } else { HEADER + ((seq * 37 + u64::from(p) * 11) % 177) as usize }
}

/// Writes message `seq` of producer `p` into `out`.
pub fn encode(p: u32, seq: u64, fixed: bool, out: &mut Vec<u8>) {
    encode_len(p, seq, length(p, seq, fixed), out);
}

/// Writes message `seq` of producer `p` into `out`, `len` bytes long (at
/// least the 24-byte header; below 4 GiB).
pub fn encode_len(p: u32, seq: u64, len: usize, out: &mut Vec<u8>) {
    let len = len.max(HEADER);
    out.clear();
    out.extend_from_slice(&p.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(p) | 1;
    out.extend((HEADER..len).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    let sum = sum_of(out);
    out[16..24].copy_from_slice(&sum.to_le_bytes());
}

/// The checksum of a message of at least [`HEADER`] bytes: FNV-1a of its
/// bytes with the checksum field taken as zeroes.
fn sum_of(msg: &[u8]) -> u64 {
    let step = |h: u64, b: &u8| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    msg[..16].iter().chain(&[0; 8]).chain(&msg[HEADER..]).fold(0xcbf2_9ce4_8422_2325, step)
}

/// The producer and sequence number of an intact message.
pub fn decode(msg: &[u8]) -> Option<(u32, u64)> {
    let word = |at: usize| Some(u64::from_le_bytes(msg.get(at..at + 8)?.try_into().ok()?));
    let (first, seq, sum) = (word(0)?, word(8)?, word(16)?);
    let (p, len) = (first as u32, (first >> 32) as usize);
    (len == msg.len() && sum == sum_of(msg)).then_some((p, seq))
}
