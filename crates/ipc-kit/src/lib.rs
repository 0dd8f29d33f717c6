//! Every classic way for Linux processes to talk, behind one crate.
//!
//! Each mechanism lives in a crate of its own, which this crate re-exports
//! as a module behind a feature of the same name (all on by default), so a
//! program can depend on `ipc-kit` or on one mechanism crate alone.
//!
//! | module | crate | feature | what it is |
//! |---|---|---|---|
//! | [`sync`] | `ipc-sync` | `sync` | mutex, condvar, semaphore and event in shared memory; robust mutex; System V and POSIX semaphores; eventfd; futex; keys; deadlines |
//! | [`shm`] | `ipc-shm` | `shm` | System V segments, POSIX shared memory, sealed memfds, mappings for fork; bounds-checked and typed views |
//! | [`msgq`] | `ipc-msgq` | `msgq` | System V and POSIX message queues |
//! | [`fifo`] | `ipc-fifo` | `fifo` | named pipes, opened safely |
//! | [`pipe`] | `ipc-pipe` | `pipe` | anonymous pipes for parent and child, across fork and exec |
//! | [`socket`] | `ipc-socket` | `socket` | Unix stream, seqpacket and datagram sockets: names, peer credentials, descriptor passing |
//! | [`service`] | `ipc-service` | `service` | services found by name: each client gets a private pair of shared-memory channels, with access by credentials, liveness and request/response; publish/subscribe, the latest value and named events |
//! | `typed` | (postcard) | `serde`, off by default | any serde type as one message through every sender and receiver (`SendValue`, `RecvValue`) |
//!
//! ```
//! # #[cfg(feature = "pipe")] {
//! use std::io::{Read, Write};
//! use ipc_kit::prelude::*;
//!
//! let (mut reader, mut writer) = pipe()?;
//! writer.write_all(b"hi")?;
//! drop(writer);
//! let mut s = String::new();
//! reader.read_to_string(&mut s)?;
//! assert_eq!(s, "hi");
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Which mechanism
//!
//! | mechanism | message boundaries | direction | between | copies | lives until |
//! |---|---|---|---|---|---|
//! | pipe ([`pipe`]) | no: a byte stream; [`FrameWriter`](pipe::FrameWriter) adds them, and writes up to `PIPE_BUF` are atomic | one way (two pipes, or [`duplex`](pipe::duplex), for both) | related processes: the ends pass by fork or exec | two kernel copies (none with `vmsplice`/`splice`) | the last end closes |
//! | named pipe ([`fifo`]) | as a pipe | one way per FIFO | any processes that can open the path | as a pipe | unlinked (the data: the last end closes) |
//! | System V queue ([`msgq::SysvQueue`]) | yes, with a type that receivers select on | any to any | any process with the key or id and permission | two kernel copies | removed (`IPC_RMID`), or reboot |
//! | POSIX queue ([`msgq::PosixQueue`]) | yes, with a priority; pollable | any to any | any process with the name | two kernel copies | unlinked, or reboot |
//! | shared-memory channel ([`shm::channel()`], [`shm::byte_channel()`]) | yes (fixed-size slots, or byte records) | one way, one sender and one receiver | by name, memfd or fork | one copy in, one out; none with `reserve`/`recv_with` | named: unlinked; else the last mapping goes |
//! | Unix socket ([`socket`]) | stream: no; seqpacket and datagram: yes | both ways (datagram: any to any) | any processes that can reach the name (a file's mode, or credentials checked) | two kernel copies | the last socket closes (its file: unlinked) |
//! | service ([`service`]) | yes (byte records, or Pods; requests and replies by correlation id) | both ways, one connection per client | one service and the clients it lets in by name and credentials | as a shared-memory channel | a connection: either process closes it or dies; the name: the service is dropped |
//! | publish/subscribe ([`service::Publisher`], [`service::Subscriber`]) | yes (byte messages, or Pods) | one publisher to every subscriber | one publisher and the subscribers it lets in by name and credentials | one copy in (none with `loan`), one out per subscriber (none with `recv_with`) | the publisher is dropped or dies (subscribers read what is left) |
//! | latest value ([`service::Blackboard`]), events ([`service::Notifier`]) | one value, replaced; or counts by event id | one writer to every reader | as publish/subscribe | a copy in, a copy out per read | the owner is dropped or dies (a reader keeps the last value) |
//! | shared memory ([`shm`]) with [`sync`] | none: shared bytes, you add the protocol | any | by key, name, memfd or fork | none | System V and POSIX: removed or unlinked; memfd and anonymous: the last mapping goes |
//!
//! How to choose:
//! - **Lowest latency, most messages per second**: a shared-memory channel.
//!   A round trip takes about a cross-core cache-line transfer (well under
//!   a microsecond when the peer is spinning), against tens of microseconds
//!   for anything that makes the kernel wake the other process. It costs a
//!   CPU spinning briefly before it sleeps, and both sides must be
//!   cooperating programs.
//! - **Parent and child, or a program you exec**: a pipe. Nothing to name
//!   or clean up, end of file when the other side exits, and it is what
//!   shells and other languages speak.
//! - **Unrelated processes, streaming**: a named pipe, or a named channel
//!   if both sides are yours and speed matters.
//! - **One server, many unrelated clients**: a [`service`]. Clients find it
//!   by name, are let in by their credentials, and each gets private
//!   shared memory (no /dev/shm name) with the speed of a channel; the
//!   death of either end is seen at once.
//! - **One source, many readers**: a [`service::Publisher`] when each
//!   reader needs every message (`Block`) or can lose some when it falls
//!   behind (`Overwrite`); a [`service::Blackboard`] when readers only
//!   want the latest value; a [`service::Notifier`] when they only need to
//!   know that something happened.
//! - **Many senders and receivers, whole messages, kernel-held**: a
//!   message queue. System V queues let receivers pick messages by type;
//!   POSIX queues have priorities and can be polled with other fds. Both
//!   outlive their processes until removed, and both cap message sizes
//!   (8 KiB by default).
//! - **A large shared data structure**: shared memory with the
//!   process-shared locks of [`sync`].
//!
//! `ipc-kit bench` measures all of them on your machine, each beside a
//! plain libc implementation of the same work.
//!
//! # Waiting on many at once
//!
//! One thread can wait on any mix of endpoints with a [`Poller`]
//! (epoll underneath): register each [`Pollable`] endpoint with a token
//! and an [`Interest`], and [`wait`](Poller::wait) returns the tokens of
//! those that are ready, level-triggered. Every [`MessageSender`] and
//! [`MessageReceiver`] is pollable (the sides of a [`Pair`] too), and so
//! are pipe ends, FIFO ends, frame readers and writers, the channels'
//! sides, both kinds of queue and eventfds.
//!
//! - pipes, FIFOs, POSIX queues, eventfds: their own descriptors;
//! - shared-memory channels: a doorbell eventfd per side (channels made
//!   for fork), or a watching thread (named and memfd channels); see
//!   [`shm::channel`](mod@ipc_shm::channel#waiting-on-many-endpoints);
//! - System V queues, which have no descriptor: a watching thread that
//!   polls the queue's state, from every 20 µs backing off to every 1 ms
//!   while a poller waits (a message is seen at most about 1 ms late).
//!
//! ```
//! # #[cfg(all(feature = "pipe", feature = "fifo", feature = "msgq", feature = "shm", feature = "socket"))] {
//! use std::time::Duration;
//! use ipc_kit::{Interest, Mechanism, Poller};
//!
//! let mut poller = Poller::new()?;
//! let mut pairs = Vec::new();
//! for (token, &m) in Mechanism::ALL.iter().enumerate() {
//!     let pair = m.pair()?;
//!     poller.add(&pair.receiver, Interest::Readable, token as u64)?;
//!     pairs.push(pair);
//! }
//! pairs[3].sender.send(b"to the fourth")?;
//! assert_eq!(poller.wait_timeout(Duration::from_secs(5))?, [3]);
//! let mut buf = Vec::new();
//! assert_eq!(pairs[3].receiver.try_recv(&mut buf)?, 13);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]

#[cfg(feature = "tokio")]
mod async_io;
mod impls;
#[cfg(all(feature = "pipe", feature = "fifo", feature = "msgq", feature = "shm", feature = "socket"))]
mod mechanism;
pub mod traits;
#[cfg(feature = "serde")]
pub mod typed;

#[cfg(feature = "pipe")]
pub use impls::PipeSender;
#[cfg(feature = "shm")]
pub use impls::{ChannelReceiver, ChannelSender};
#[cfg(all(feature = "pipe", feature = "fifo", feature = "msgq", feature = "shm", feature = "socket"))]
pub use mechanism::{Mechanism, Pair};
pub use traits::{MessageReceiver, MessageSender};

#[cfg(feature = "tokio")]
pub use async_io::{Async, AsyncMessageReceiver, AsyncMessageSender};

/// Waiting on many endpoints at once: [`Poller`] (epoll) over anything
/// [`Pollable`], from ipc-sync.
pub use ipc_sync::{Interest, PollError, Pollable, Poller};

#[cfg(feature = "fifo")]
#[doc(inline)]
pub use ipc_fifo as fifo;
#[cfg(feature = "msgq")]
#[doc(inline)]
pub use ipc_msgq as msgq;
#[cfg(feature = "pipe")]
#[doc(inline)]
pub use ipc_pipe as pipe;
#[cfg(feature = "service")]
#[doc(inline)]
pub use ipc_service as service;
#[cfg(feature = "shm")]
#[doc(inline)]
pub use ipc_shm as shm;
#[cfg(feature = "socket")]
#[doc(inline)]
pub use ipc_socket as socket;
#[cfg(feature = "sync")]
#[doc(inline)]
pub use ipc_sync as sync;

/// The names most programs use, for a glob import.
pub mod prelude {
    pub use crate::traits::{MessageReceiver, MessageSender};
    #[cfg(feature = "fifo")]
    pub use ipc_fifo::Fifo;
    #[cfg(feature = "msgq")]
    pub use ipc_msgq::{PosixQueue, QueueAttr, Selector, SysvQueue};
    #[cfg(feature = "pipe")]
    pub use ipc_pipe::{ChildFds, Duplex, FrameReader, FrameWriter, PipeReader, PipeWriter, duplex, pipe};
    #[cfg(feature = "service")]
    pub use ipc_service::{Blackboard, BlackboardReader, Listener, Notifier, Publisher, Service, Subscriber};
    #[cfg(feature = "shm")]
    pub use ipc_shm::{Mapping, Shared};
    #[cfg(feature = "shm")]
    pub use ipc_shm::{Memfd, PosixShm, SysvSegment};
    #[cfg(feature = "sync")]
    pub use ipc_sync::{
        Condvar, Deadline, Event, EventFd, Interest, Key, LockError, Mutex, NamedSemaphore, Pollable, Poller,
        RobustMutex, SemOp, Semaphore, SemaphoreSet, ShmSafe,
    };
}

#[cfg(test)]
mod tests {
    //! The re-exports exist under their module names.

    #[cfg(feature = "sync")]
    #[test]
    fn sync_is_reexported() {
        let d = crate::sync::Deadline::never();
        assert!(d.is_never());
        let r: Result<u8, std::io::Error> = crate::sync::retry_eintr(|| Ok(7));
        assert_eq!(r.unwrap(), 7);
        let _: crate::prelude::Deadline = d;
    }

    #[cfg(feature = "socket")]
    #[test]
    fn socket_is_reexported() {
        let (a, b) = crate::socket::SeqpacketSocket::pair().unwrap();
        a.send(b"x").unwrap();
        let mut buf = [0u8; 2];
        assert_eq!(b.recv(&mut buf).unwrap(), 1);
        let _: crate::socket::SocketName = "@ipc-kit-reexport".parse().unwrap();
    }

    #[cfg(feature = "service")]
    #[test]
    fn service_is_reexported() {
        let options = crate::service::ServiceOptions { max_clients: 0, ..Default::default() };
        let name: crate::service::SocketName = "@ipc-kit-reexport-service".parse().unwrap();
        assert!(matches!(
            crate::service::Service::bind(&name, options),
            Err(crate::service::Error::InvalidOptions { .. })
        ));
    }

    #[cfg(feature = "service")]
    #[test]
    fn pubsub_blackboard_and_events_are_reexported() {
        use crate::prelude::{Blackboard, BlackboardReader, Listener, Notifier, Publisher, Subscriber};
        let name: crate::service::SocketName = format!("@ipc-kit-reexport-hub-{}", std::process::id()).parse().unwrap();
        let mut publisher = Publisher::bind(&name, crate::service::PubSubOptions::default()).unwrap();
        let mut sub = Subscriber::connect(&name).unwrap();
        while publisher.subscribers() == 0 {
            std::thread::yield_now();
        }
        publisher.publish(b"x").unwrap();
        assert_eq!(sub.recv_with(<[u8]>::to_vec).unwrap(), b"x");
        drop((sub, publisher));
        let mut board = Blackboard::bind(&name, crate::service::BlackboardOptions::default()).unwrap();
        board.write(b"v").unwrap();
        assert_eq!(
            BlackboardReader::connect(&name).unwrap().read_with(<[u8]>::to_vec).unwrap(),
            Some((1, b"v".to_vec()))
        );
        drop(board);
        let mut notifier = Notifier::bind(&name, crate::service::EventOptions::default()).unwrap();
        let mut listener = Listener::connect(&name).unwrap();
        while notifier.listeners() == 0 {
            std::thread::yield_now();
        }
        notifier.notify(5).unwrap();
        assert_eq!(listener.wait().unwrap().count(5), 1);
    }

    #[cfg(feature = "fifo")]
    #[test]
    fn fifo_is_reexported() {
        let path = std::env::temp_dir().join(format!("ipc-kit-reexport-{}", std::process::id()));
        let f: crate::prelude::Fifo = crate::fifo::Fifo::create(&path, 0o600).unwrap();
        assert!(matches!(f.try_open_writer(), Err(crate::fifo::Error::NoReader { .. })));
    }

    #[cfg(feature = "msgq")]
    #[test]
    fn msgq_is_reexported() {
        let q = crate::msgq::SysvQueue::create(crate::msgq::Key::private(), 0o600).unwrap();
        q.send(1, b"x").unwrap();
        let mut b = [0u8; 1];
        assert_eq!(q.recv(crate::prelude::Selector::Any, &mut b).unwrap(), (1, 1));
    }

    #[cfg(feature = "shm")]
    #[test]
    fn shm_is_reexported() {
        let map: crate::shm::Mapping = crate::shm::Mapping::anonymous(64).unwrap();
        let m = map.shared::<crate::prelude::Mutex<u32>>(0).unwrap();
        *m.lock().unwrap() = 5;
        // The value follows the 40-byte lock (word and robust-list link).
        assert_eq!(map.read::<u32>(40).unwrap(), 5);
        let _: crate::shm::Key = crate::sync::Key::private();
    }

    #[cfg(feature = "pipe")]
    #[test]
    fn pipe_is_reexported() {
        use std::io::{Read, Write};
        let (mut r, mut w): (crate::pipe::PipeReader, crate::pipe::PipeWriter) = crate::pipe::pipe().unwrap();
        w.write_all(b"x").unwrap();
        let mut b = [0];
        r.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
        assert_eq!(crate::pipe::PIPE_BUF, 4096);
        let (_a, _b) = crate::prelude::duplex().unwrap();
    }
}

/// The README's Rust snippets, compiled and run as doctests.
#[cfg(all(
    doctest,
    feature = "pipe",
    feature = "fifo",
    feature = "msgq",
    feature = "shm",
    feature = "socket",
    feature = "sync"
))]
#[doc = include_str!("../../../README.md")]
struct ReadmeSnippets;
