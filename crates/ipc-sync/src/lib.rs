//! Synchronization for processes that share memory, and the pieces every
//! blocking call in ipc-kit is built on.
//!
//! A process writing into shared memory cannot otherwise tell another that
//! data is there: that is what this crate is for.
//!
//! - Primitives that live inside shared memory and are ready when
//!   zero-filled (a fresh mapping is), so there is no initialization race:
//!   [`Mutex`] (protecting a `T: Pod`), [`Condvar`], [`Semaphore`] and
//!   [`Event`], built on [`futex`] waits that spin briefly before sleeping.
//!   [`ShmSafe`] marks what may live in shared memory.
//! - [`RobustMutex`]: a mutex whose next locker is told when its holder
//!   died, and must repair the data; [`Mutex`] reports a holder's death
//!   too. Both are robust futexes: the kernel proves the death.
//! - Semaphores the kernel keeps: [`SemaphoreSet`] (System V, with
//!   `SEM_UNDO`), [`NamedSemaphore`] (POSIX, found by name) and
//!   [`EventFd`] (a counter behind a pollable fd).
//! - [`Poller`]: one thread waiting on many endpoints of every mechanism
//!   ([`Pollable`]) at once (see [`ready`]).
//! - [`Key`]: the key of a System V object.
//! - [`Deadline`] and [`retry_eintr`]: every `*_timeout` call in ipc-kit
//!   is measured on the monotonic clock and survives signal interruptions
//!   without waiting longer in total.
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

#[cfg(feature = "tokio")]
mod async_ready;
mod condvar;
mod deadline;
mod eintr;
mod error;
mod event;
mod eventfd;
pub mod failpoint;
pub mod futex;
mod key;
pub mod membarrier;
mod mutex;
mod mutex_forms;
mod named_sem;
pub mod object;
pub mod os;
mod owner;
mod poller;
pub mod process;
pub mod ready;
mod robust;
mod semaphore;
mod shm_safe;
mod spin;
mod sys;
mod sysv_sem;
mod watcher;

#[cfg(feature = "tokio")]
pub use async_ready::{AsyncReady, MAX_SPIN, MAX_YIELDING, SYSCALL_YIELDING};
pub use condvar::{Condvar, TimedWaitResult, WaitTimeoutResult};
pub use deadline::{Deadline, realtime_after};
pub use eintr::{Interrupted, retry_eintr};
pub use error::{Error, Result};
pub use event::Event;
pub use eventfd::{EVENTFD_MAX, EventFd, EventFdMode};
pub use key::Key;
pub use mutex::{Mutex, MutexGuard, MutexLockResult};
pub use named_sem::NamedSemaphore;
pub use object::{ObjectFault, Owned, open_or_create, posix_name, process_alive};
pub use poller::{PollError, Poller};
pub use ready::{Interest, Pollable, Readiness, Source};
pub use robust::{LockError, RobustLockResult, RobustMutex, RobustMutexGuard};
pub use semaphore::Semaphore;
pub use shm_safe::ShmSafe;
pub use sysv_sem::{SEM_VALUE_MAX, SemOp, SemaphoreSet};
pub use watcher::{Watch, Watcher};
