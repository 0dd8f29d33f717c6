//! Memory that processes share.
//!
//! - [`Mapping::anonymous`]: for a parent and the children it forks;
//! - [`SysvSegment`]: System V segments, found by a [`Key`];
//! - [`PosixShm`]: POSIX shared memory objects, found by name;
//! - [`Memfd`]: anonymous memory behind an fd, sealed against shrinking,
//!   for children across exec and for peers you do not trust;
//! - [`channel()`] and [`byte_channel`]: message channels through any of
//!   these, as fast as a hand-written ring, sleeping when idle, noticing a
//!   dead peer, and sound against a peer that writes garbage.
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
//! // Err(OwnerDied(guard)) would say a holder died mid-update.
//! *counter.lock().expect("no holder died") += 1;
//! assert_eq!(*counter.lock().expect("no holder died"), 1);
//! # Ok::<(), ipc_shm::Error>(())
//! ```
//! # A channel across fork
//!
//! A parent and the child it forks pass 1,000 messages through a
//! [`channel()`]:
//!
//! ```
//! use ipc_shm::{Error, channel};
//!
//! #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
//! #[repr(C)]
//! struct Reading {
//!     sensor: u32,
//!     value: f32,
//! }
//!
//! let chan = channel::<Reading>(256)?;
//! // SAFETY: this process is single-threaded here; the child only uses
//! // the channel and then leaves with _exit.
//! match unsafe { libc::fork() } {
//!     0 => {
//!         let mut tx = chan.sender()?;
//!         for i in 0..1000 {
//!             tx.send(Reading { sensor: i, value: i as f32 / 2.0 })?;
//!         }
//!         drop(tx); // the receiver gets Disconnected after the last one
//!         // SAFETY: ends the child without running the parent's cleanup.
//!         unsafe { libc::_exit(0) };
//!     }
//!     -1 => panic!("fork failed"),
//!     child => {
//!         let mut rx = chan.receiver()?;
//!         let mut n = 0;
//!         loop {
//!             match rx.recv() {
//!                 Ok(r) => {
//!                     assert_eq!(r, Reading { sensor: n, value: n as f32 / 2.0 });
//!                     n += 1;
//!                 }
//!                 Err(Error::Disconnected) => break,
//!                 Err(e) => return Err(e),
//!             }
//!         }
//!         assert_eq!(n, 1000);
//!         nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None).expect("our child");
//!     }
//! }
//! # Ok::<(), ipc_shm::Error>(())
//! ```
#![deny(unsafe_code)]

pub mod board;
pub mod broadcast;
pub mod channel;
mod error;
pub mod events;
mod mapping;
mod memfd;
mod posix;
mod sealed;
mod segment;
mod sigbus;
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
