//! Channels between two processes through shared memory.
//!
//! Two kinds, both single-producer single-consumer and lock-free:
//!
//! - [`channel`] of `T: Pod` messages in fixed slots: [`Sender`] and
//!   [`Receiver`], with batch forms that publish or take many messages with
//!   one index update (per 16 KiB of messages);
//! - [`byte_channel`] of variable-length byte records: [`ByteSender`]
//!   (with zero-copy [`reserve`](ByteSender::reserve)) and [`ByteReceiver`]
//!   (with zero-copy [`recv_with`](ByteReceiver::recv_with)).
//!
//! A channel is made first ([`Channel`], [`ByteChannel`]) in anonymous
//! shared memory (inherited by children forked afterwards), in a memfd
//! handed over with its doorbells ([`Handoff`]: to children across exec,
//! or over a Unix socket), or under a POSIX shared memory name (for
//! unrelated processes); then each process claims the side it uses with
//! `sender()` or `receiver()`, once. Every process holding a named channel
//! keeps a shared `flock` on its object, so a name left behind by processes
//! that were all killed is told from one in use, and taken over with
//! [`Channel::create_or_reclaim`].
//!
//! The waiting side spins briefly and then sleeps on a futex; the other
//! side makes the wake system call only when it is actually asleep, so a
//! steady stream makes almost none. Publishing a message costs no full
//! memory barrier either when both processes could register for
//! `membarrier(2)` (Linux 4.16 and later, unless a seccomp filter refuses
//! it): the side about to sleep forces the barrier on the other instead
//! ([`ipc_sync::membarrier`]); otherwise each publish carries one. A side
//! that is dropped wakes the other, which receives what was sent and then
//! gets [`Error::Disconnected`]. A side whose process dies without dropping
//! it (killed) is noticed by the other within about 20 ms while it waits,
//! and by `try_*` calls that find the ring full or empty, in any PID
//! namespace: the kernel drops a lock that the claiming process held. No
//! pid is ever looked at.
//!
//! # A peer that never comes
//!
//! In a channel made for `fork` ([`channel`], [`byte_channel`],
//! `anonymous`), a process may claim a side through each handle (the
//! [`Channel`] or [`ByteChannel`] value, or a clone of it) that has not
//! claimed one yet, and children forked from it inherit the handles. When
//! every process that could still claim the side a waiting side needs is
//! gone, unclaimed, the wait ends in [`Error::Disconnected`] within about
//! 20 ms. So:
//!
//! - fork first, then claim in the process that uses the side;
//! - to claim both sides in one process, on different threads or at
//!   different times, use one handle per side (clone it): a process whose
//!   every handle has claimed no longer counts as a possible claimer, and a
//!   side it waits on then ends in `Disconnected`. (One handle may still
//!   claim both sides, one after the other, as long as nothing waits in
//!   between.)
//! - A child forked after its parent claimed through its last handle may
//!   not claim the other side ([`Error::SideGivenUp`]): its parent's peer
//!   may already have taken that side for gone.
//!
//! Named and memfd channels have no such rule: any process may still open
//! them, so a side waits for its peer to come for as long as its deadline
//! allows. For them the lock that stands for a claimed side is held
//! through an open file description of the side's own, which a child
//! forked after the claim shares until it exits or execs. It is opened
//! through /proc (a named channel falls back to its name); a memfd
//! channel's side cannot be claimed where /proc is not mounted.
//!
//! Nothing read from shared memory is trusted: indices and lengths are
//! checked against the capacity each side keeps privately, and an
//! impossible value is [`Error::Corrupted`], never an access out of bounds,
//! a panic or a huge allocation.
//!
//! # Waiting on many endpoints
//!
//! Every side is [`Pollable`](ipc_sync::Pollable): a receiver is readable
//! while a message waits, a sender writable while its next message fits
//! (for a byte sender, the record it last found no room for), and either
//! is reported when its peer is gone (the next call says
//! [`Error::Disconnected`]) or the memory says something the next call
//! reports as an error. A poller (`ipc_sync::Poller`, `ipc_kit::Poller`)
//! waits on them with anything else that has a descriptor:
//!
//! - A channel made for `fork` or in a memfd has a doorbell for each side,
//!   an eventfd that every process of the channel holds (inherited, or
//!   handed over with the memfd: [`Handoff`]). A poller about to sleep
//!   arms the side it waits for; the peer rings its doorbell once, at its
//!   next publish, and only then: a stream that no poller sleeps on makes
//!   no more system calls than before. A ring is a write of 0, which
//!   wakes the pollers and never waits, whatever the peer did to the
//!   eventfd it shares.
//! - A named channel has none (its processes share no eventfd):
//!   the first time a side is polled, a thread is started that sleeps on
//!   the side's futex word while a poller waits, and wakes the poller. It
//!   costs a thread per polled side (asleep when nobody polls) and one
//!   more wake-up on the way; it ends when the side and every poller that
//!   registered it let go.
//! - A peer killed without closing rings nothing: a poller looks again
//!   every 20 ms while it waits on a channel, as a sleeping side does, and
//!   reports the side when the kernel says the peer's process is gone.
//!
//! With the `tokio` feature, each side has an async form (`into_async`:
//! [`AsyncSender`], [`AsyncReceiver`], [`AsyncByteSender`],
//! [`AsyncByteReceiver`]) that spins briefly, then waits on the same
//! doorbell or watcher without blocking its thread; cancel-safe.
//!
//! The [crate documentation](crate) has an example across `fork`.

// The files, each one room:
// - layout: the shared memory's layout (header, lines, offsets, the byte
//   ring's records) and the role that picks a side's words in it;
// - conn: the shared object: making, opening, reclaiming, reaching it;
// - side: a side of either kind: claiming, publishing, waiting, noticing a
//   gone peer, closing, checking the peer's index; pace: how its waits are
//   paced (slipping behind a stream, holding out for room);
// - liveness and sys: the kernel objects that say a peer is gone;
// - slots, slot_sender, slot_receiver: Channel, Sender and Receiver;
// - bytes, byte_sender, byte_receiver: ByteChannel, ByteSender (and
//   Reservation) and ByteReceiver;
// - shim and, under loom, model: what the ring synchronizes with, and
//   loom's model of the memory.

#[cfg(doc)]
use crate::Error;

#[cfg(feature = "tokio")]
mod async_sides;
mod bell;
mod byte_receiver;
mod byte_sender;
mod bytes;
mod conn;
mod handoff;
#[doc(hidden)]
pub mod layout;
mod liveness;
#[cfg(loom)]
mod model;
mod pace;
mod shim;
mod side;
mod slot_receiver;
mod slot_sender;
mod slots;
mod sys;

#[cfg(feature = "tokio")]
pub use async_sides::{AsyncByteReceiver, AsyncByteSender, AsyncReceiver, AsyncSender};
pub use bell::RECHECK as LIVENESS_RECHECK;
pub use byte_receiver::ByteReceiver;
pub use byte_sender::{ByteSender, Reservation};
pub use bytes::{ByteChannel, byte_channel};
pub use handoff::Handoff;
pub use pace::WaitPolicy;
pub use side::ChannelStats;
pub use slots::{Channel, Receiver, Sender, channel};
