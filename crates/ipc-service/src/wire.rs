//! The handshake on the service's socket (seqpacket, so each message
//! arrives whole or not at all).
//!
//! 1. The client, once connected, sends a greeting: [`MAGIC`], the
//!    protocol version and flags (zero), 16 bytes, no descriptors.
//! 2. The service answers with [`MAGIC`], the version, a status (0 for
//!    welcome, else a [`Refusal`] code) and the capacities of the two
//!    rings, 32 bytes. A welcome carries six descriptors: each ring's
//!    memfd and its two doorbells, requests first.
//!
//! After that nothing more is said on the socket: it stays open as the
//! connection's liveness signal.

use crate::error::{Error, Refusal, Result};

/// The first bytes of every handshake message.
pub(crate) const MAGIC: [u8; 8] = *b"ipc-svc\0";

/// The protocol version.
pub(crate) const VERSION: u32 = 1;

/// The greeting's length.
pub(crate) const HELLO_LEN: usize = 16;

/// The answer's length.
pub(crate) const ANSWER_LEN: usize = 32;

/// The descriptors a welcome carries.
pub(crate) const WELCOME_FDS: usize = 6;

/// The greeting a client sends.
pub(crate) fn hello() -> [u8; HELLO_LEN] {
    let mut m = [0u8; HELLO_LEN];
    m[..8].copy_from_slice(&MAGIC);
    m[8..12].copy_from_slice(&VERSION.to_le_bytes());
    m
}

/// Whether `msg` is a greeting this service speaks.
pub(crate) fn is_hello(msg: &[u8]) -> bool {
    msg.len() == HELLO_LEN && msg[..8] == MAGIC && msg[8..12] == VERSION.to_le_bytes() && msg[12..16] == [0; 4]
}

/// The service's answer: a welcome (`None`) with the two capacities, or
/// a refusal.
pub(crate) fn answer(refusal: Option<Refusal>, requests: usize, replies: usize) -> [u8; ANSWER_LEN] {
    let mut m = [0u8; ANSWER_LEN];
    m[..8].copy_from_slice(&MAGIC);
    m[8..12].copy_from_slice(&VERSION.to_le_bytes());
    m[12..16].copy_from_slice(&refusal.map_or(0, Refusal::code).to_le_bytes());
    m[16..24].copy_from_slice(&(requests as u64).to_le_bytes());
    m[24..32].copy_from_slice(&(replies as u64).to_le_bytes());
    m
}

/// What an answer said.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Welcome, with the capacities of the request and reply rings.
    Welcome { requests: u64, replies: u64 },
    /// Turned away.
    Refused(Refusal),
}

/// Reads an answer, checking every field.
pub(crate) fn read_answer(msg: &[u8]) -> Result<Answer> {
    if msg.len() != ANSWER_LEN || msg[..8] != MAGIC {
        return Err(Error::handshake(format!("the service's answer is not one ({} bytes)", msg.len())));
    }
    let word = |at: usize| u32::from_le_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]]);
    let long = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&msg[at..at + 8]);
        u64::from_le_bytes(b)
    };
    if word(8) != VERSION {
        return Err(Error::handshake(format!("the service speaks version {}, not {VERSION}", word(8))));
    }
    match word(12) {
        0 => Ok(Answer::Welcome { requests: long(16), replies: long(24) }),
        code => Refusal::from_code(code)
            .map(Answer::Refused)
            .ok_or_else(|| Error::handshake(format!("the service answered with the unknown status {code}"))),
    }
}

/// The first bytes of a hub's handshake messages (publish/subscribe, the
/// blackboard, events): the greeting names the kind of hub the member
/// expects; the answer carries the hub's flags and the member's number.
pub(crate) const HUB_MAGIC: [u8; 8] = *b"ipc-hub\0";

/// The descriptors a hub's welcome carries: the shared object (read-only
/// to members), the member's cell, the member's doorbell and the owner's.
pub(crate) const HUB_FDS: usize = 4;

/// What a welcomed member says once it took its place: only then is it
/// counted among the members (so that what the owner does after it
/// counted a member reaches it).
pub(crate) const HUB_JOINED: [u8; 8] = *b"joined\0\0";

/// What a member says each time it goes to sleep: only then does the
/// owner look at its cell to wake it.
pub(crate) const HUB_NAP: [u8; 1] = [b'z'];

/// A member's greeting to a hub of `kind`.
pub(crate) fn hub_hello(kind: u32) -> [u8; HELLO_LEN] {
    let mut m = [0u8; HELLO_LEN];
    m[..8].copy_from_slice(&HUB_MAGIC);
    m[8..12].copy_from_slice(&VERSION.to_le_bytes());
    m[12..16].copy_from_slice(&kind.to_le_bytes());
    m
}

/// Whether `msg` greets a hub of `kind`.
pub(crate) fn is_hub_hello(msg: &[u8], kind: u32) -> bool {
    msg == hub_hello(kind)
}

/// A hub's answer: a welcome (`None`) with the hub's flags and the
/// member's number, or a refusal.
pub(crate) fn hub_answer(refusal: Option<Refusal>, kind: u32, flags: u32, id: u64) -> [u8; ANSWER_LEN] {
    let mut m = [0u8; ANSWER_LEN];
    m[..8].copy_from_slice(&HUB_MAGIC);
    m[8..12].copy_from_slice(&VERSION.to_le_bytes());
    m[12..16].copy_from_slice(&refusal.map_or(0, Refusal::code).to_le_bytes());
    m[16..20].copy_from_slice(&kind.to_le_bytes());
    m[20..24].copy_from_slice(&flags.to_le_bytes());
    m[24..32].copy_from_slice(&id.to_le_bytes());
    m
}

/// What a hub's answer said: its flags and the member's number, or a
/// refusal.
pub(crate) fn read_hub_answer(msg: &[u8], kind: u32) -> Result<std::result::Result<(u32, u64), Refusal>> {
    if msg.len() != ANSWER_LEN || msg[..8] != HUB_MAGIC {
        return Err(Error::handshake(format!("the answer is not a hub's ({} bytes)", msg.len())));
    }
    let word = |at: usize| u32::from_le_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]]);
    if word(8) != VERSION {
        return Err(Error::handshake(format!("the hub speaks version {}, not {VERSION}", word(8))));
    }
    if let code @ 1.. = word(12) {
        return Refusal::from_code(code)
            .map(Err)
            .ok_or_else(|| Error::handshake(format!("the hub answered with the unknown status {code}")));
    }
    if word(16) != kind {
        return Err(Error::handshake(format!("a hub of kind {}, not {kind}", word(16))));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&msg[24..32]);
    Ok(Ok((word(20), u64::from_le_bytes(id))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_greeting_is_recognized_and_nothing_else() {
        assert!(is_hello(&hello()));
        let mut wrong = hello();
        wrong[15] = 1;
        assert!(!is_hello(&wrong));
        assert!(!is_hello(&hello()[..15]));
        assert!(!is_hello(b""));
    }

    #[test]
    fn answers_read_back() {
        assert_eq!(read_answer(&answer(None, 4096, 8192)).unwrap(), Answer::Welcome { requests: 4096, replies: 8192 });
        for r in [Refusal::Denied, Refusal::Full, Refusal::Protocol, Refusal::Unavailable] {
            assert_eq!(read_answer(&answer(Some(r), 0, 0)).unwrap(), Answer::Refused(r));
        }
        let mut bad = answer(None, 1, 1);
        bad[12] = 99;
        assert!(matches!(read_answer(&bad), Err(Error::Handshake { .. })));
        assert!(matches!(read_answer(&bad[..31]), Err(Error::Handshake { .. })));
    }

    #[test]
    fn hub_messages_read_back_and_kinds_are_told_apart() {
        assert!(is_hub_hello(&hub_hello(2), 2));
        assert!(!is_hub_hello(&hub_hello(2), 3));
        assert!(!is_hub_hello(&hello(), 0));
        assert_eq!(read_hub_answer(&hub_answer(None, 1, 7, 42), 1).unwrap(), Ok((7, 42)));
        assert_eq!(read_hub_answer(&hub_answer(Some(Refusal::Full), 1, 0, 0), 1).unwrap(), Err(Refusal::Full));
        assert!(read_hub_answer(&hub_answer(None, 2, 0, 0), 1).is_err());
        assert!(read_hub_answer(&answer(None, 1, 1), 1).is_err());
    }
}
