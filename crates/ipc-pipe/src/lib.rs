//! Anonymous pipes between a parent process and its children.
//!
//! A pipe is a one-way byte stream held by the kernel: what one process
//! writes into the writing end, another reads from the reading end, in
//! order. Pipes have no name, so they connect processes that inherit them:
//! a parent and the children it forks, or the programs it execs with an
//! end as a standard stream or at a chosen fd number.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::process::Command;
//!
//! // Parent to an exec'd child and back: `tr` reads its stdin from one
//! // pipe and writes its stdout into another.
//! let (child_in, mut to_child) = ipc_pipe::pipe()?;
//! let (mut from_child, child_out) = ipc_pipe::pipe()?;
//! let mut cmd = Command::new("tr");
//! cmd.args(["a-z", "A-Z"]).stdin(child_in).stdout(child_out);
//! let mut child = cmd.spawn()?;
//! drop(cmd); // the parent's copies of the child's ends close here
//!
//! to_child.write_all(b"shout")?;
//! drop(to_child); // end of file for tr
//! let mut answer = String::new();
//! from_child.read_to_string(&mut answer)?;
//! child.wait()?;
//! assert_eq!(answer, "SHOUT");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What the crate offers:
//!
//! - [`pipe`] (reader first, close-on-exec) and [`duplex`] for two-way
//!   parent/child traffic;
//! - blocking [`Read`](std::io::Read)/[`Write`](std::io::Write),
//!   `try_*` forms that never block and `*_timeout`/`*_deadline` forms, none
//!   of which needs the fd in nonblocking mode;
//! - [`PipeWriter::write_atomic`] for messages of at most [`PIPE_BUF`]
//!   bytes from many writers, and [`FrameWriter`]/[`FrameReader`] for
//!   length-prefixed messages with a maximum the peer cannot exceed;
//! - [`ChildFds`] to give an exec'd child an end at fd 3 or any number;
//! - capacity control, and [`splice`], [`tee`] and
//!   [`PipeWriter::vmsplice`] for bulk moves without copies;
//! - [`PipeWriter::reopen`] (and [`PipeReader::reopen`]): the end on an
//!   open file description of its own, whose calls that must not wait cost
//!   a plain `write(2)` or `read(2)` and which no other holder of the pipe
//!   can switch to blocking; the async ends and the umbrella's pipe and
//!   FIFO pairs use it.
//!
//! A write to a pipe without readers returns [`Error::BrokenPipe`] (or
//! [`std::io::ErrorKind::BrokenPipe`]) and never kills the process with
//! `SIGPIPE`: ipc-pipe blocks `SIGPIPE` in the writing thread for the
//! duration of the write and discards the one the kernel raised. A
//! [`SigpipeGuard`] does that once for a whole loop of small writes.
//!
//! # References
//!
//! [pipe(7)](https://man7.org/linux/man-pages/man7/pipe.7.html)
#![deny(unsafe_code)]

#[cfg(feature = "tokio")]
mod async_end;
mod child;
mod duplex;
mod error;
mod frame;
mod own;
mod pipe;
mod sigpipe;
mod splice;
mod sys;
mod writer;

#[cfg(feature = "tokio")]
pub use async_end::{AsyncPipeReader, AsyncPipeWriter};
pub use child::ChildFds;
pub use duplex::{Duplex, duplex};
pub use error::{Error, Result};
pub use frame::{DEFAULT_MAX_FRAME, FRAME_HEADER, FrameReader, FrameWriter};
pub use pipe::{PIPE_BUF, PipeReader, PipeWriter, pipe, pipe_max_size};
pub use sigpipe::SigpipeGuard;
pub use splice::{splice, splice_all, tee};
