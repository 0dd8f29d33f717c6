//! The wire format between [`FifoClient`](crate::FifoClient)s and a
//! [`FifoServer`](crate::FifoServer): request frames on the well-known
//! FIFO, which a server finds among any bytes written there, and reply
//! frames on each client's reply FIFO.

use ipc_pipe::PIPE_BUF;

/// A request body: client pid (u32), ticket (u64), reply path length
/// (u16), reply path, payload. With its frame header it fits in one atomic
/// write of at most `PIPE_BUF` bytes, so requests from many clients never
/// interleave.
///
/// The ticket is the client's secret plus the request's number; the reply
/// frame begins with it. A client takes only a reply that carries the
/// ticket of a request it still waits for: a forged request naming its
/// reply FIFO (the frame format is no secret) cannot answer it, and a late
/// reply to a request it gave up on is dropped.
pub(crate) const REQUEST_HEADER: usize = 14;
/// Where the ticket sits in a request body.
pub(crate) const TICKET_AT: usize = 4;
/// A reply frame's body: the ticket, then the reply.
pub(crate) const REPLY_TICKET: usize = 8;

/// A request frame on the well-known FIFO: [`MAGIC`], the body's length
/// (u32), a check (u64, FNV-1a of the length and the body), the body. Any
/// process may write any bytes into the FIFO; the server skips whatever is
/// not a whole frame with a good check, and finds the next one, so garbage
/// or a writer killed mid-write never stops it. An honest frame is one
/// atomic write, so no foreign byte ever lands inside it.
pub(crate) const FRAME_HEADER: usize = 16;
pub(crate) const MAGIC: [u8; 4] = *b"IKfq";
/// The largest request body.
pub(crate) const MAX_BODY: usize = PIPE_BUF - FRAME_HEADER;

/// The largest reply a client accepts.
pub(crate) const MAX_REPLY: usize = 16 << 20;
/// A reply frame at its largest: length, ticket, reply.
pub(crate) const MAX_REPLY_FRAME: usize = 4 + REPLY_TICKET + MAX_REPLY;

/// FNV-1a (64 bit) of the frame's length field and body.
pub(crate) fn check(len: &[u8], body: &[u8]) -> u64 {
    len.iter().chain(body).fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Fills in the length and check of a frame laid out as MAGIC, 12 bytes
/// of room, body.
pub(crate) fn seal(frame: &mut [u8]) {
    let body_len = u32::try_from(frame.len() - FRAME_HEADER).unwrap_or(u32::MAX);
    frame[4..8].copy_from_slice(&body_len.to_le_bytes());
    let sum = check(&frame[4..8], &frame[FRAME_HEADER..]);
    frame[8..16].copy_from_slice(&sum.to_le_bytes());
}

/// Takes the first whole, well-checked frame out of `pending` and returns
/// its body, dropping the bytes before it. Without one, drops the bytes
/// that cannot begin one (keeping from the first place a frame may still
/// be arriving) and returns `None`.
///
/// An honest frame is one atomic write, so it lies whole and unbroken in
/// the stream: no garbage before it can hide it, except a forged frame
/// whose check covers the honest bytes, which needs a 64-bit check to
/// come out right. But a read may end inside it, and its payload may hold
/// a frame of its own (a client relaying bytes): so a frame after one
/// still arriving is taken only once the FIFO has been found empty
/// (`drained`), when the one still arriving cannot be an honest frame.
pub(crate) fn take_frame(pending: &mut Vec<u8>, drained: bool) -> Option<Vec<u8>> {
    let mut keep_from = pending.len();
    for at in 0..pending.len() {
        let rest = &pending[at..];
        let head = rest.len().min(MAGIC.len());
        if rest[..head] != MAGIC[..head] {
            continue;
        }
        let Some(header) = rest.get(..FRAME_HEADER) else {
            keep_from = keep_from.min(at); // a header still arriving
            if drained {
                continue;
            }
            break;
        };
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if len > MAX_BODY {
            continue;
        }
        let Some(body) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
            keep_from = keep_from.min(at); // a body still arriving
            if drained {
                continue;
            }
            break;
        };
        let sum = u64::from_le_bytes([
            header[8], header[9], header[10], header[11], header[12], header[13], header[14], header[15],
        ]);
        if sum != check(&header[4..8], body) {
            continue;
        }
        let body = body.to_vec();
        pending.drain(..at + FRAME_HEADER + len);
        return Some(body);
    }
    pending.drain(..keep_from);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small xorshift generator: deterministic garbage.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut m = MAGIC.to_vec();
        m.extend_from_slice(&[0; FRAME_HEADER - 4]);
        m.extend_from_slice(body);
        seal(&mut m);
        m
    }

    /// Honest frames between garbage of every kind (random bytes, frame
    /// starts cut short, headers over the limit, bad checks), fed in
    /// pieces of random sizes: every honest frame comes out, in order,
    /// and the pending bytes never grow past two `PIPE_BUF`s.
    #[test]
    fn honest_frames_survive_any_garbage_between_them() {
        for seed in 1..300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut stream = Vec::new();
            let mut honest = Vec::new();
            for i in 0..20u64 {
                let garbage = match rng.below(5) {
                    0 => (0..rng.below(6000)).map(|_| rng.next() as u8).collect(),
                    1 => {
                        let f = frame(&[9; 300]);
                        f[..rng.below(f.len() as u64)].to_vec()
                    }
                    2 => {
                        let mut f = frame(&[1; 40]);
                        f[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
                        f
                    }
                    3 => {
                        let mut f = frame(&[2; 40]);
                        f[20] ^= 0x10;
                        f
                    }
                    _ => Vec::new(),
                };
                stream.extend_from_slice(&garbage);
                let body: Vec<u8> = i
                    .to_le_bytes()
                    .iter()
                    .copied()
                    .chain((0..rng.below(MAX_BODY as u64 - 8)).map(|_| rng.next() as u8))
                    .collect();
                stream.extend_from_slice(&frame(&body));
                honest.push(body);
            }
            let mut pending = Vec::new();
            let mut got = Vec::new();
            let mut at = 0;
            while at < stream.len() {
                let n = (1 + rng.below(PIPE_BUF as u64)).min(stream.len() - at);
                pending.extend_from_slice(&stream[at..at + n]);
                at += n;
                // Drained: the FIFO holds nothing more now, as after the
                // last read, and one time in four in between, as when the
                // writers pause (these honest frames hold no frames of
                // their own, so where a pause falls does not matter).
                let drained = at == stream.len() || rng.below(4) == 0;
                while let Some(body) = take_frame(&mut pending, drained) {
                    got.push(body);
                }
                assert!(pending.len() < PIPE_BUF, "seed {seed}: {} bytes pending", pending.len());
            }
            assert!(got == honest, "seed {seed}: {} of {} frames, or others", got.len(), honest.len());
        }
    }
}
