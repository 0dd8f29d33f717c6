//! Typed messages through any sender and receiver (feature `serde`): a
//! value of any type that serde can serialize goes as one message, encoded
//! with [postcard](https://docs.rs/postcard) (compact, no schema in the
//! message), beside the bytes and `Pod` paths.
//!
//! ```
//! # #[cfg(all(feature = "pipe", feature = "fifo", feature = "msgq", feature = "shm", feature = "socket"))] {
//! use ipc_kit::typed::{RecvValue, SendValue};
//! use ipc_kit::Mechanism;
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! enum Job {
//!     Resize { path: String, width: u32 },
//!     Stop,
//! }
//!
//! let mut pair = Mechanism::UnixSocket.pair()?;
//! pair.sender.send_value(&Job::Resize { path: "a.png".into(), width: 640 })?;
//! pair.sender.send_value(&Job::Stop)?;
//! let mut buf = Vec::new();
//! let first: Job = pair.receiver.recv_value(&mut buf)?;
//! assert_eq!(first, Job::Resize { path: "a.png".into(), width: 640 });
//! assert_eq!(pair.receiver.recv_value::<Job>(&mut buf)?, Job::Stop);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What a peer can send
//!
//! A received message is data from another process: one that does not
//! decode as the type asked for, or has bytes after the value, is
//! [`Error::Malformed`], and the next message is received as usual.
//! Decoding allocates only as the message's bytes allow (a length in the
//! message reserves at most what serde's cautious size hint allows, and
//! grows as elements actually decode). Two kinds of type are the
//! receiver's to bound before it takes them from a peer it does not trust:
//! - a type that nests without bound (a recursive enum, a `Box<Self>`)
//!   recurses once per level the message spells out, and a message can
//!   spell out as many levels as it has bytes: deep enough, the thread
//!   overflows its stack, which aborts the process;
//! - a sequence or map of a zero-sized type (`Vec<()>`, a set of unit
//!   structs) decodes each element from no bytes at all, so a message of
//!   ten bytes can claim 2^64 of them, and decoding takes as long as the
//!   claim.
//!
//! A value whose encoding is empty (`()`, a unit struct) goes as one zero
//! byte, so that it is a message every mechanism carries.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::traits::{Error, MessageReceiver, MessageSender, Result};

/// Sends values of any serializable type: one message each.
pub trait SendValue: MessageSender {
    /// Encodes `value` and sends it as one message, waiting for room.
    ///
    /// # Errors
    ///
    /// [`Error::Other`] when `value` cannot be encoded (a serializer
    /// error of its type); as [`MessageSender::send`] (a value whose
    /// encoding is longer than the mechanism carries is
    /// [`Error::TooLarge`]).
    fn send_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let bytes = encode(value)?;
        self.send(&bytes)
    }

    /// Encodes `value` and sends it if there is room now.
    ///
    /// # Errors
    ///
    /// As [`send_value`](Self::send_value) and
    /// [`MessageSender::try_send`].
    fn try_send_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let bytes = encode(value)?;
        self.try_send(&bytes)
    }

    /// Encodes `value` and sends it, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`send_value`](Self::send_value) and
    /// [`MessageSender::send_timeout`].
    fn send_value_timeout<T: Serialize + ?Sized>(&mut self, value: &T, timeout: Duration) -> Result<()> {
        let bytes = encode(value)?;
        self.send_timeout(&bytes, timeout)
    }
}

impl<S: MessageSender + ?Sized> SendValue for S {}

/// Receives values of any deserializable type: one message each, into
/// `buf` (a reusable buffer for the message's bytes).
pub trait RecvValue: MessageReceiver {
    /// Receives the next message and decodes it, waiting for one.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] when it is not a `T`; as
    /// [`MessageReceiver::recv`].
    fn recv_value<T: DeserializeOwned>(&mut self, buf: &mut Vec<u8>) -> Result<T> {
        let n = self.recv(buf)?;
        decode(&buf[..n.min(buf.len())])
    }

    /// Receives and decodes a message that has come.
    ///
    /// # Errors
    ///
    /// As [`recv_value`](Self::recv_value) and
    /// [`MessageReceiver::try_recv`].
    fn try_recv_value<T: DeserializeOwned>(&mut self, buf: &mut Vec<u8>) -> Result<T> {
        let n = self.try_recv(buf)?;
        decode(&buf[..n.min(buf.len())])
    }

    /// Receives and decodes the next message, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As [`recv_value`](Self::recv_value) and
    /// [`MessageReceiver::recv_timeout`].
    fn recv_value_timeout<T: DeserializeOwned>(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<T> {
        let n = self.recv_timeout(buf, timeout)?;
        decode(&buf[..n.min(buf.len())])
    }
}

impl<R: MessageReceiver + ?Sized> RecvValue for R {}

/// `value`'s postcard encoding; one zero byte for a value whose encoding
/// is empty (`()`, a unit struct), so that every value is a message of at
/// least one byte, which every mechanism carries.
fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut bytes = postcard::to_allocvec(value).map_err(|e| Error::Other(Box::new(e)))?;
    if bytes.is_empty() {
        bytes.push(0);
    }
    Ok(bytes)
}

/// The `T` that `bytes` encode, all of them (or none of them, when they
/// are the one zero byte that stands for an empty encoding).
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let malformed = |reason: String| Error::Malformed { len: bytes.len(), reason };
    let (value, rest) = postcard::take_from_bytes::<T>(bytes).map_err(|e| malformed(e.to_string()))?;
    let empty_encoding = bytes == [0] && rest.len() == 1;
    if !rest.is_empty() && !empty_encoding {
        return Err(malformed(format!("{} bytes follow the value", rest.len())));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
    enum Msg {
        Text(String),
        Numbers(Vec<u64>),
        Pair { a: i32, b: Option<bool> },
        Nothing,
    }

    fn msg() -> impl Strategy<Value = Msg> {
        prop_oneof![
            ".{0,40}".prop_map(Msg::Text),
            proptest::collection::vec(any::<u64>(), 0..20).prop_map(Msg::Numbers),
            (any::<i32>(), any::<Option<bool>>()).prop_map(|(a, b)| Msg::Pair { a, b }),
            Just(Msg::Nothing),
        ]
    }

    proptest! {
        #[test]
        fn every_value_comes_back(m in msg()) {
            let bytes = encode(&m).unwrap();
            prop_assert_eq!(decode::<Msg>(&bytes).unwrap(), m);
        }

        /// Any bytes decode to a value or `Malformed`, never a panic.
        #[test]
        fn any_bytes_are_a_value_or_malformed(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            match decode::<Msg>(&bytes) {
                Ok(_) | Err(Error::Malformed { .. }) => {}
                Err(e) => prop_assert!(false, "{e:?}"),
            }
        }

        /// A value with bytes after it is `Malformed`; cut short too.
        #[test]
        fn trailing_or_missing_bytes_are_malformed(m in msg(), extra in 1usize..8) {
            let mut bytes = encode(&m).unwrap();
            let whole = bytes.len();
            bytes.extend(std::iter::repeat_n(0u8, extra));
            let is_malformed = matches!(decode::<Msg>(&bytes), Err(Error::Malformed { .. }));
            prop_assert!(is_malformed);
            if whole > 1 {
                let is_malformed = matches!(decode::<Msg>(&bytes[..whole - 1]), Err(Error::Malformed { .. }));
                prop_assert!(is_malformed);
            }
        }
    }

    #[test]
    fn a_value_with_an_empty_encoding_is_one_zero_byte() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Ping;
        assert_eq!(encode(&Ping).unwrap(), [0]);
        assert_eq!(decode::<Ping>(&[0]).unwrap(), Ping);
        assert_eq!(decode::<()>(&[0]).unwrap(), ());
        assert!(matches!(decode::<Ping>(&[0, 0]), Err(Error::Malformed { .. })));
        assert!(matches!(decode::<Ping>(&[1]), Err(Error::Malformed { .. })));
        // A value that is one zero byte stays itself.
        assert_eq!(decode::<u8>(&encode(&0u8).unwrap()).unwrap(), 0);
        assert_eq!(decode::<Option<u8>>(&encode(&None::<u8>).unwrap()).unwrap(), None);
    }

    #[test]
    fn a_huge_length_allocates_only_what_comes() {
        // A Vec<u64> claiming u32::MAX elements, with three behind it.
        let mut bytes = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
        bytes.extend([1, 2, 3]);
        assert!(matches!(decode::<Vec<u64>>(&bytes), Err(Error::Malformed { .. })));
    }
}
