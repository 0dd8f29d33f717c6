//! Unix domain sockets: stream, seqpacket and datagram sockets between
//! processes on one machine, found by a path or an abstract name, with the
//! peer's credentials and descriptors passed alongside messages.
//!
//! - [`StreamListener`] and [`StreamSocket`]: bytes in order, both ways.
//! - [`SeqpacketListener`] and [`SeqpacketSocket`]: whole messages in
//!   order, reliable, connection-oriented.
//! - [`DatagramSocket`]: whole messages without connections.
//!
//! Names are [`SocketName`]s: a socket file (`bind` makes it under a
//! temporary name, sets its mode, and links it into place only once it
//! listens; a stale file there, one nobody is bound to, is taken over, a
//! live one never) or an abstract name (no file). Every socket is
//! close-on-exec. Every call that can wait has three forms: waiting,
//! `try_*` and timed. Descriptors received ([`SCM_RIGHTS`]) are owned
//! (`OwnedFd`) and close-on-exec, so none leaks, also when more came
//! than asked for.
//!
//! ```
//! use std::io::{Read, Write};
//! use ipc_socket::{SocketName, StreamListener, StreamSocket};
//!
//! let dir = std::env::temp_dir().join(format!("ipc-socket-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let name = SocketName::path(dir.join("app.sock"))?;
//! let listener = StreamListener::bind(&name)?;
//! let mut client = StreamSocket::connect(&name)?;
//! let mut server = listener.accept()?;
//! client.write_all(b"hello")?;
//! let mut got = [0u8; 5];
//! server.read_exact(&mut got)?;
//! assert_eq!(&got, b"hello");
//! // Who is there, as the kernel says.
//! assert_eq!(server.peer_credentials()?.pid, std::process::id());
//! drop(listener); // the socket file goes with it
//! assert!(!dir.join("app.sock").exists());
//! std::fs::remove_dir(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # References
//!
//! [unix(7)](https://man7.org/linux/man-pages/man7/unix.7.html),
//! [socket(2)](https://man7.org/linux/man-pages/man2/socket.2.html),
//! [cmsg(3)](https://man7.org/linux/man-pages/man3/cmsg.3.html).
//!
//! [`SCM_RIGHTS`]: StreamSocket::send_with_fds
#![deny(unsafe_code)]

mod bind;
mod call;
mod connected;
mod cred;
mod datagram;
mod error;
mod listener;
mod name;
mod poll;
mod seqpacket;
mod socket;
mod stream;
mod sys;

pub use bind::BindOptions;
pub use call::MAX_FDS;
pub use cred::Credentials;
pub use datagram::DatagramSocket;
pub use error::{Error, Result};
pub use listener::{Accepted, Listener, SeqpacketListener, StreamListener};
pub use name::{MAX_ABSTRACT, MAX_PATH, SocketName};
pub use seqpacket::SeqpacketSocket;
pub use stream::StreamSocket;
