//! Memory that processes share.
//!
//! - [`Mapping::anonymous`]: for a parent and the children it forks;
//! - [`SysvSegment`]: System V segments, found by a [`Key`];
//! - [`PosixShm`]: POSIX shared memory objects, found by name;
//! - [`Memfd`]: anonymous memory behind an fd, sealed against shrinking,
//!   for children across exec and for peers you do not trust.
//!
//! Shared memory is the fastest way for processes to exchange data: no
//! system call and no copy by the kernel. It is also the least forgiving:
//! the other process can write at any moment, so this crate never lets a
//! mapping be read as an ordinary slice. It offers bounds-checked copies,
//! typed views of types made for sharing ([`ipc_sync::ShmSafe`]: atomics and
//! ipc-sync's primitives), and raw pointers.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use ipc_shm::Mapping;
//! use ipc_sync::Mutex;
//!
//! // Shared with children forked after this point.
//! let map = Mapping::anonymous(4096)?;
//! let counter = map.shared::<Mutex<u64>>(0)?; // zero bytes: ready to use
//! *counter.lock() += 1;
//! assert_eq!(*counter.lock(), 1);
//! # Ok::<(), ipc_shm::Error>(())
//! ```
#![deny(unsafe_code)]

pub mod channel;
mod error;
mod mapping;
mod memfd;
mod posix;
mod segment;
mod sys;

pub use channel::{
    ByteChannel, ByteReceiver, ByteSender, Channel, ChannelStats, Receiver, Reservation, Sender, WaitPolicy,
    byte_channel, channel,
};
pub use error::{Error, Result};
pub use ipc_sync::Key;
pub use mapping::{Mapping, Shared};
pub use memfd::Memfd;
pub use posix::PosixShm;
pub use segment::{SegmentStat, SysvSegment};
