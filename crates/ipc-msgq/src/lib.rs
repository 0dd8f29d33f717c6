//! Message queues: the kernel keeps message boundaries and does the
//! synchronization, at the cost of a copy in and a copy out.
//!
//! - [`SysvQueue`]: System V queues (`msgget`), found through a
//!   [`Key`], with typed messages and the kernel's [`Selector`] rules;
//! - [`PosixQueue`]: POSIX queues (`mq_open`), found by name, with
//!   priorities, and pollable.
//!
//! Both check what they can before the system call (types, sizes, names)
//! and never cut a message silently.
//!
//! ```
//! use ipc_msgq::{Key, Selector, SysvQueue};
//!
//! let q = SysvQueue::create(Key::private(), 0o600)?;
//! q.send_pod(3, &[1u32, 2, 3])?;
//! let (mtype, v): (i64, [u32; 3]) = q.recv_pod(Selector::Any)?;
//! assert_eq!((mtype, v), (3, [1, 2, 3]));
//! # Ok::<(), ipc_msgq::Error>(())
//! ```
#![deny(unsafe_code)]

#[cfg(feature = "tokio")]
mod async_queue;
mod error;
mod limits;
mod posix;
mod selector;
mod stat;
mod sys;
mod sysv;
mod sysv_poll;

#[cfg(feature = "tokio")]
pub use async_queue::{AsyncPosixQueue, AsyncSysvQueue};
pub use error::{Error, Result};
pub use ipc_sync::Key;
pub use limits::sysv_max_message;
pub use posix::{MAX_PRIORITY, PosixQueue, QueueAttr, QueueState};
pub use selector::Selector;
pub use stat::QueueStat;
pub use sysv::SysvQueue;
