//! Either shared-memory channel (64-byte records in slots, or a byte ring),
//! made anonymous or by name, with its sides as the umbrella's
//! [`MessageSender`] and [`MessageReceiver`], so that the channel
//! scenarios are written once for both.

use std::time::Duration;

use ipc_kit::shm::{ByteChannel, ByteReceiver, ByteSender, Channel, Receiver, Sender};
use ipc_kit::traits::{Error, Result};
use ipc_kit::{MessageReceiver, MessageSender};
use ipc_kit_tests::Rng;
use ipc_kit_tests::record::FIXED;

/// Which of the two channels.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ring {
    /// `Channel<[u8; 64]>`: 16 slots of one record each.
    Slots,
    /// `ByteChannel`: a 4 KiB ring of records of any length.
    Bytes,
}

impl Ring {
    /// Either, at even odds.
    pub(crate) fn pick(rng: &mut Rng) -> Ring {
        if rng.below(2) == 0 { Ring::Bytes } else { Ring::Slots }
    }
}

/// How a victim or survivor comes to a named channel.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Make {
    /// `create`: the name must be free.
    Create,
    /// `create_or_reclaim`: takes over what a dead creator left.
    Reclaim,
    /// `open`: made by the other process.
    Open,
}

/// Either shared-memory channel.
pub(crate) enum AnyChannel {
    Slots(Channel<[u8; FIXED]>),
    Bytes(ByteChannel),
}

impl AnyChannel {
    /// The channel under `name`, made or opened as `make` says.
    pub(crate) fn named(ring: Ring, name: &str, make: Make) -> Result<AnyChannel, String> {
        let made = match (make, ring) {
            (Make::Create, Ring::Slots) => Channel::create(name, 16).map(AnyChannel::Slots),
            (Make::Create, Ring::Bytes) => ByteChannel::create(name, 4096).map(AnyChannel::Bytes),
            (Make::Reclaim, Ring::Slots) => Channel::create_or_reclaim(name, 16).map(AnyChannel::Slots),
            (Make::Reclaim, Ring::Bytes) => ByteChannel::create_or_reclaim(name, 4096).map(AnyChannel::Bytes),
            (Make::Open, Ring::Slots) => Channel::open(name).map(AnyChannel::Slots),
            (Make::Open, Ring::Bytes) => ByteChannel::open(name).map(AnyChannel::Bytes),
        };
        made.map_err(|e| format!("named channel {name}: {e}"))
    }

    /// A channel in anonymous shared memory (inherited across `fork`).
    pub(crate) fn new(ring: Ring) -> Result<AnyChannel, String> {
        match ring {
            Ring::Bytes => {
                ByteChannel::anonymous(4096).map(AnyChannel::Bytes).map_err(|e| format!("byte channel: {e}"))
            }
            Ring::Slots => Channel::anonymous(16).map(AnyChannel::Slots).map_err(|e| format!("channel: {e}")),
        }
    }

    /// Claims the sending side.
    pub(crate) fn sender(&self) -> Result<Box<dyn MessageSender>, String> {
        match self {
            AnyChannel::Slots(c) => c.sender().map(|s| Box::new(SlotSender(s)) as Box<dyn MessageSender>),
            AnyChannel::Bytes(c) => c.sender().map(|s| Box::new(BytesSender(s)) as Box<dyn MessageSender>),
        }
        .map_err(|e| format!("claim the sender: {e}"))
    }

    /// Claims the receiving side.
    pub(crate) fn receiver(&self) -> Result<Box<dyn MessageReceiver>, String> {
        match self {
            AnyChannel::Slots(c) => c.receiver().map(|r| Box::new(SlotReceiver(r)) as Box<dyn MessageReceiver>),
            AnyChannel::Bytes(c) => c.receiver().map(|r| Box::new(BytesReceiver(r)) as Box<dyn MessageReceiver>),
        }
        .map_err(|e| format!("claim the receiver: {e}"))
    }
}

/// The channel's errors as the traits name them.
fn shm_err(e: ipc_kit::shm::Error) -> Error {
    match e {
        ipc_kit::shm::Error::Disconnected => Error::Disconnected,
        ipc_kit::shm::Error::Timeout => Error::Timeout,
        ipc_kit::shm::Error::Full => Error::Full,
        ipc_kit::shm::Error::Empty => Error::Empty,
        other => Error::Other(Box::new(other)),
    }
}

/// A message as one slot's record.
fn record(msg: &[u8]) -> Result<[u8; FIXED]> {
    msg.try_into().map_err(|_| Error::TooLarge { len: msg.len(), max: FIXED })
}

struct SlotSender(Sender<[u8; FIXED]>);
struct SlotReceiver(Receiver<[u8; FIXED]>);
struct BytesSender(ByteSender);
struct BytesReceiver(ByteReceiver);

/// Each side is pollable as the channel's side it wraps.
macro_rules! pollable_as_inner {
    ($($ty:ty),*) => {$(
        impl ipc_kit::Pollable for $ty {
            fn source(&self, interest: ipc_kit::Interest) -> std::io::Result<Option<ipc_kit::sync::Source<'_>>> {
                self.0.source(interest)
            }
        }
    )*};
}
pollable_as_inner!(SlotSender, SlotReceiver, BytesSender, BytesReceiver);

impl MessageSender for SlotSender {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.0.send(record(msg)?).map_err(shm_err)
    }

    fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.0.try_send(record(msg)?).map_err(shm_err)
    }

    fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.0.send_timeout(record(msg)?, timeout).map_err(shm_err)
    }
}

/// Copies a slot's record into the caller's buffer.
fn into_buf(rec: ipc_kit::shm::Result<[u8; FIXED]>, buf: &mut Vec<u8>) -> Result<usize> {
    let rec = rec.map_err(shm_err)?;
    buf.clear();
    buf.extend_from_slice(&rec);
    Ok(FIXED)
}

impl MessageReceiver for SlotReceiver {
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        into_buf(self.0.recv(), buf)
    }

    fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        into_buf(self.0.try_recv(), buf)
    }

    fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        into_buf(self.0.recv_timeout(timeout), buf)
    }
}

impl MessageSender for BytesSender {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.0.send(msg).map_err(shm_err)
    }

    fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.0.try_send(msg).map_err(shm_err)
    }

    fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.0.send_timeout(msg, timeout).map_err(shm_err)
    }
}

impl MessageReceiver for BytesReceiver {
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.0.recv(buf).map_err(shm_err)
    }

    fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        self.0.try_recv(buf).map_err(shm_err)
    }

    fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        self.0.recv_timeout(buf, timeout).map_err(shm_err)
    }
}
