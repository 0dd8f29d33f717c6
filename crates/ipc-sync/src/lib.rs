//! Synchronization for processes that talk to each other.
//!
//! This crate is the base of the ipc-kit workspace. It holds what every
//! mechanism crate needs when it blocks:
//!
//! - [`Deadline`]: a point on the monotonic clock (or never) that every
//!   `*_timeout` and `*_deadline` call in ipc-kit is expressed in, so that a
//!   wait that is interrupted and resumed never waits longer in total than the
//!   caller asked for;
//! - [`retry_eintr`]: runs a system call again when a signal handler
//!   interrupted it (`EINTR`), so interruptions never surface as errors.
//!
//! ```
//! use std::time::Duration;
//! use ipc_sync::{Deadline, retry_eintr};
//!
//! let deadline = Deadline::after(Duration::from_millis(20));
//! // A blocking call is retried after EINTR; the remaining time is
//! // computed afresh on every attempt.
//! let waited = retry_eintr(|| -> std::io::Result<Duration> {
//!     let left = deadline.remaining().unwrap_or(Duration::ZERO);
//!     std::thread::sleep(left);
//!     Ok(left)
//! })?;
//! assert!(deadline.has_expired());
//! assert!(waited <= Duration::from_millis(20));
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(unsafe_code)]

mod deadline;
mod eintr;

pub use deadline::Deadline;
pub use eintr::{Interrupted, retry_eintr};
