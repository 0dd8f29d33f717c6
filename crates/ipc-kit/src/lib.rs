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
#![deny(unsafe_code)]

mod impls;
#[cfg(all(feature = "pipe", feature = "fifo", feature = "msgq", feature = "shm"))]
mod mechanism;
pub mod traits;

#[cfg(feature = "pipe")]
pub use impls::PipeSender;
#[cfg(feature = "shm")]
pub use impls::{ChannelReceiver, ChannelSender};
#[cfg(all(feature = "pipe", feature = "fifo", feature = "msgq", feature = "shm"))]
pub use mechanism::{Mechanism, Pair};
pub use traits::{MessageReceiver, MessageSender};

#[cfg(feature = "fifo")]
#[doc(inline)]
pub use ipc_fifo as fifo;
#[cfg(feature = "msgq")]
#[doc(inline)]
pub use ipc_msgq as msgq;
#[cfg(feature = "pipe")]
#[doc(inline)]
pub use ipc_pipe as pipe;
#[cfg(feature = "shm")]
#[doc(inline)]
pub use ipc_shm as shm;
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
    #[cfg(feature = "shm")]
    pub use ipc_shm::{Mapping, Shared};
    #[cfg(feature = "shm")]
    pub use ipc_shm::{Memfd, PosixShm, SysvSegment};
    #[cfg(feature = "sync")]
    pub use ipc_sync::{
        Condvar, Deadline, Event, EventFd, Key, LockError, Mutex, NamedSemaphore, RobustMutex, SemOp, Semaphore,
        SemaphoreSet, ShmSafe,
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
        *m.lock() = 5;
        assert_eq!(map.read::<u32>(4).unwrap(), 5);
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
