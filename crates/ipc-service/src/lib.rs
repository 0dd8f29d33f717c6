//! Services found by name, for many unrelated clients: each client that
//! connects gets a private pair of shared-memory channels.
//!
//! A [`Service`] listens on a seqpacket socket ([`SocketName`]: a path
//! or an abstract name). A client that [`connect`]s and is let in gets a
//! [`Connection`]: one channel of requests and one of replies, made by
//! the service in sealed memfds and passed over the socket, so that no
//! name in /dev/shm exists and only the two processes map them. Messages
//! then go through shared memory, without a system call while both sides
//! are busy.
//!
//! - **Whom it lets in**: [`Access`], judged from the credentials the
//!   kernel gives for the client's socket; a cap on clients
//!   ([`ServiceOptions::max_clients`]). A client turned away gets a typed
//!   [`Refusal`] and no descriptor.
//! - **Liveness**: the connection's socket stays open beside the
//!   channels. The death of either process, at any moment, wakes the
//!   other's waits at once with [`Error::Disconnected`].
//! - **Waiting**: every call that can wait has three forms; the service
//!   and both sides of a connection are [`Pollable`](ipc_sync::Pollable)
//!   (`ipc_sync::Poller`, `ipc_kit::Poller`); with the `tokio` feature,
//!   `into_async` gives their async forms.
//! - **Request and response**: [`Requester`] and [`Responder`] tag each
//!   request with a correlation id that its reply carries back.
//!
//! One owner and many members, on the same machinery (a name, access by
//! credentials, a cap, liveness by the socket), the owner's memory sealed
//! so that members can only read it:
//!
//! - **Publish/subscribe**: a [`Publisher`] and its [`Subscriber`]s, each
//!   with a cursor of its own; [`Policy::Block`] waits for the slowest,
//!   [`Policy::Overwrite`] never waits and tells a subscriber that fell
//!   behind how many messages it lost ([`Error::Lagged`]).
//! - **The latest value**: a [`Blackboard`] and its
//!   [`BlackboardReader`]s, which never see a torn value nor hold the
//!   writer up.
//! - **Named events**: a [`Notifier`] and its [`Listener`]s, which learn
//!   which ids fired since they last looked, and how many times.
//!
//! Each owner runs a thread of its own (named `ipc-service hub`), which
//! takes members in while the owner goes on with its work. Bind an owner
//! in the process that uses it, after any `fork`: a child forked later has
//! no such thread.
//!
//! A member in another language speaks this on the owner's seqpacket
//! socket (little-endian):
//!
//! 1. **Greeting**: 16 bytes, `ipc-hub` and a NUL, the version 1 (`u32`)
//!    and the kind (`u32`: 1 publish/subscribe, 2 blackboard, 3 events).
//!    The owner may answer (and close) before it read the greeting, so a
//!    member reads the answer even when sending failed.
//! 2. **Answer**: 32 bytes, the same 8 bytes, the version, a status
//!    (`u32`, 0 for welcome, else the refusal: 1 denied, 2 full, 3 not
//!    understood, which is also the answer to another kind or version, 4
//!    unavailable), the owner's kind, flags (`u32`: for publish/subscribe
//!    the policy, 0 `Block`, 1 `Overwrite`) and the member's number
//!    (`u64`). A welcome carries four descriptors: the shared memory (its
//!    layout is in `ipc_shm::broadcast`, `ipc_shm::board` and
//!    `ipc_shm::events`), the member's cell, its doorbell and the owner's
//!    (eventfds).
//! 3. **The cell**, a page: its cursor (`u64` at 0); whether it sleeps
//!    (`u32` at 64); where it starts (`u64` at 128); how many times it went
//!    to sleep (`u64` at 192). The start is all ones until the owner sets
//!    it, which a publisher does when it next publishes after the member
//!    counted; until then the member leaves its cursor alone (the owner
//!    takes it as at the start), has nothing to read, and is rung only
//!    once its start is set: it sleeps as for a message. Blackboards and
//!    events do not use it. Every write to the cell is followed by a full
//!    (sequentially consistent) barrier before the member looks at the
//!    shared memory again.
//! 4. **Joining**: once it mapped the memory (a listener also takes its
//!    baseline then: the generation and every count), the member sends
//!    `joined` and two NULs, and counts from then on.
//! 5. **Sleeping**: each time it goes to sleep it writes its place as its
//!    cursor (the next message it reads, the last version it read, the
//!    last generation it saw), adds one to its count of naps, sets its
//!    sleep word, sends one byte, `z`, and looks once more before it
//!    waits on its doorbell: the owner rings it (adds to the eventfd) when
//!    it has news. One that waits level-triggered (`poll`, `select`) reads
//!    the doorbell empty before it looks once more. It clears its sleep
//!    word once awake. One `z` per nap: a member that sends hundreds at
//!    once is heard no more (but for its hang-up), and may then sleep
//!    until its own recheck.
//! 6. **Under `Block`**, a subscriber also writes its cursor after it
//!    copied each message (the publisher reuses a slot only once every
//!    cursor passed it), and adds one to the owner's doorbell when it
//!    passes the cursor at 136 of the ring (the one a waiting publisher
//!    waits for).
//! 7. **The end**: the owner's death hangs its socket up; the word that
//!    says the owner is gone is written only by one that ends cleanly, so
//!    a member watches its socket (for the hang-up) as well as its
//!    doorbell. It keeps the socket open for as long as it is a member.
//! 8. **Being listed**: `ipc-kit ls` lists a member that holds an empty
//!    memfd labelled with its kind's member label ([`LABEL_SUBSCRIBER`],
//!    [`LABEL_BLACKBOARD_READER`], [`LABEL_LISTENER`]), a space, the inode
//!    of the owner's shared memory, a space and the socket's name (an
//!    abstract one with its `@`, written as `ipc_sync::object::escape_name`
//!    writes it; a label over 249 bytes is cut), made before it says
//!    `joined`.
//!
//! ```
//! use ipc_service::{Service, ServiceOptions, SocketName, connect};
//!
//! let dir = std::env::temp_dir().join(format!("ipc-service-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let name = SocketName::path(dir.join("echo.sock"))?;
//! let mut service = Service::bind(&name, ServiceOptions::default())?;
//! let client = std::thread::spawn({
//!     let name = name.clone();
//!     move || -> ipc_service::Result<Vec<u8>> {
//!         let mut conn = connect(&name)?;
//!         conn.send(b"ping")?;
//!         let mut reply = Vec::new();
//!         conn.recv(&mut reply)?;
//!         Ok(reply)
//!     }
//! });
//! let mut conn = service.accept()?;
//! let mut request = Vec::new();
//! conn.recv(&mut request)?;
//! conn.send(&request)?;
//! assert_eq!(client.join().unwrap()?, b"ping");
//! drop(service); // the socket file goes with it
//! std::fs::remove_dir(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]

#[cfg(feature = "tokio")]
mod async_hub;
#[cfg(feature = "tokio")]
mod async_sides;
mod blackboard;
mod client;
mod connection;
mod error;
mod events;
mod hub;
mod link;
mod member;
mod options;
mod pubsub;
mod request;
mod service;
mod subscriber;
mod wire;

#[cfg(feature = "tokio")]
pub use async_hub::{AsyncBlackboardReader, AsyncListener, AsyncPublisher, AsyncSubscriber};
#[cfg(feature = "tokio")]
pub use async_sides::{AsyncConnection, AsyncReceiver, AsyncSender, AsyncService};
pub use blackboard::{Blackboard, BlackboardOptions, BlackboardReader, READ_TRIES};
pub use client::{connect, connect_deadline, connect_timeout};
pub use connection::{Connection, Receiver, Sender};
pub use error::{Error, Refusal, Result};
pub use events::{EventOptions, Fired, Listener, Notifier};
pub use hub::MAX_MEMBERS;
pub use ipc_socket::{Credentials, SocketName};
pub use options::{Access, MAX_CAPACITY, MIN_CAPACITY, ServiceOptions};
pub use pubsub::{Loan, Policy, PubSubOptions, Publisher};
pub use request::{RequestId, Requester, Responder};
pub use service::{LABEL_REPLIES, LABEL_REQUESTS, LABEL_SERVICE, Service};
pub use subscriber::Subscriber;

/// The memfd label (see [`LABEL_SERVICE`]) of a publisher's ring.
pub const LABEL_PUBSUB: &str = "ipc-pubsub";
/// The memfd label of the empty marker a subscriber holds for as long as
/// it is one, by which `ipc-kit ls` finds it (see the crate docs).
pub const LABEL_SUBSCRIBER: &str = "ipc-pubsub-subscriber";
/// The memfd label of a blackboard's memory.
pub const LABEL_BLACKBOARD: &str = "ipc-blackboard";
/// The memfd label of the empty marker a blackboard reader holds (see
/// [`LABEL_SUBSCRIBER`]).
pub const LABEL_BLACKBOARD_READER: &str = "ipc-blackboard-reader";
/// The memfd label of a notifier's table of events.
pub const LABEL_EVENTS: &str = "ipc-events";
/// The memfd label of the empty marker a listener holds (see
/// [`LABEL_SUBSCRIBER`]).
pub const LABEL_LISTENER: &str = "ipc-events-listener";
