//! Named pipes (FIFOs): pipes with a name in the file system, so that
//! processes that are not parent and child can meet at them.
//!
//! [`Fifo`] makes or finds one and opens its ends safely (no symbolic
//! links followed, the opened fd checked to be a FIFO) in blocking,
//! nonblocking and timed forms. The ends are ipc-pipe's
//! [`PipeReader`](ipc_pipe::PipeReader) and
//! [`PipeWriter`](ipc_pipe::PipeWriter). [`FifoServer`] and
//! [`FifoClient`] carry two-way traffic: a well-known request FIFO and a
//! private reply FIFO per client.
//!
//! ```
//! use ipc_fifo::{Error, Fifo};
//!
//! let path = std::env::temp_dir().join(format!("ipc-fifo-lib-{}", std::process::id()));
//! let fifo = Fifo::create(&path, 0o600)?;
//! // Nobody reads yet: a writer that must not wait is told so.
//! assert!(matches!(fifo.try_open_writer(), Err(Error::NoReader { .. })));
//! drop(fifo); // the creator removes it
//! assert!(!path.exists());
//! # Ok::<(), ipc_fifo::Error>(())
//! ```
#![deny(unsafe_code)]

mod client;
mod error;
mod fifo;
mod names;
mod outbox;
mod server;
mod sys;
mod wire;

pub use client::FifoClient;
pub use error::{Error, Result};
pub use fifo::Fifo;
pub use server::{FifoServer, Request};
