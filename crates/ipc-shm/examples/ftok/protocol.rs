//! What `ftok_writer` and `ftok_reader` agree on: the key, the semaphores
//! and where things are in the segment.
//!
//! Both programs turn the same path into the same key with `ftok`
//! ([`Key::from_path`]); the segment and the semaphore set both live under
//! it. The reader makes and removes both; see the examples' headers.

use std::time::Duration;

use ipc_sync::Key;

/// The project id given to `ftok` with the path.
pub(crate) const PROJECT: u8 = b'F';

/// How long either side waits for the other at each step before it gives
/// up: for the peer to come, for a message, for the lock.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

// The semaphores of the set.

/// The lock on the segment: 1 free, 0 held. Every take has `SEM_UNDO`, so
/// a process killed holding it gives it back. Made at 0, held by the
/// reader until it has claimed `READER`.
pub(crate) const LOCK: u16 = 0;
/// Units the reader may take: one per message written, one when the writer
/// closes, or one the kernel adds when the writer dies (see `WRITER_ARMED`
/// in `ftok_writer`).
pub(crate) const READY: u16 = 1;
/// 1 while the reader lives: taken with `SEM_UNDO`, so its death gives it
/// back to 0.
pub(crate) const READER: u16 = 2;
/// 1 while a writer lives, taken as `READER` is: one writer at a time.
pub(crate) const WRITER: u16 = 3;

// The segment: a header, then fixed-size slots of messages, written once
// each, in order.

/// The segment's size in bytes.
pub(crate) const SIZE: usize = 4096;
/// `u32` at 0: how many slots hold a whole message.
pub(crate) const COUNT: usize = 0;
/// `u32` at 4: 1 once the writer has written its last message.
pub(crate) const CLOSED: usize = 4;
/// Where the slots begin.
pub(crate) const SLOTS: usize = 64;
/// The size of a slot: a `u32` length, then the message.
pub(crate) const SLOT: usize = 64;
/// The longest message, in bytes.
pub(crate) const MAX_MESSAGE: usize = SLOT - 4;
/// How many slots there are: the most messages one writer sends.
pub(crate) const CAPACITY: usize = (SIZE - SLOTS) / SLOT;

/// The key both programs use for the segment and the set.
pub(crate) fn key(path: &str) -> Result<Key, ipc_sync::Error> {
    Key::from_path(path, PROJECT)
}

/// The offset of slot `index`.
pub(crate) fn slot(index: usize) -> usize {
    SLOTS + index * SLOT
}
