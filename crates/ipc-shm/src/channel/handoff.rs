//! A channel in a memfd handed to another process with its doorbells.

use std::os::fd::OwnedFd;

use ipc_sync::{EventFd, EventFdMode};

use crate::Memfd;
use crate::error::{Error, Result};

/// What a process needs to open a channel made in a memfd
/// ([`Channel::new_memfd`](super::Channel::new_memfd),
/// [`ByteChannel::new_memfd`](super::ByteChannel::new_memfd)) with its
/// doorbells: the memfd, and the channel's two eventfds, one per side,
/// which a poller of a side sleeps on and the peer rings (as a channel made
/// for `fork` has them, inherited).
///
/// The maker gets one with `handoff()` and hands its three descriptors
/// over ([`into_fds`](Self::into_fds)): to an exec'd program at chosen fd
/// numbers (ipc-pipe's `ChildFds`), or over a Unix socket. The program
/// puts them together again with [`from_fds`](Self::from_fds) and opens
/// the channel with `from_handoff`. Its pollers then sleep on the doorbell
/// and need no thread; a channel opened from its memfd alone could not be
/// rung for.
#[derive(Debug)]
pub struct Handoff {
    /// The channel's memory.
    pub memfd: Memfd,
    /// The doorbells: the sender's, then the receiver's.
    pub doorbells: [EventFd; 2],
}

impl Handoff {
    /// Puts a handoff together from descriptors received from the
    /// channel's maker, in the order of [`into_fds`](Self::into_fds),
    /// checking what each is. Whether they belong together is checked when
    /// the channel is opened, as far as it can be: a doorbell that is some
    /// other eventfd only keeps the pollers it is meant for from waking
    /// (they still look again every 20 ms), and no descriptor handed over
    /// can make this process wait in a call or fail other than with an
    /// error.
    ///
    /// # Errors
    ///
    /// As [`Memfd::from_fd`] for the memfd; [`Error::Io`] with
    /// `InvalidInput` when a doorbell is not an eventfd, or when
    /// `/proc/self/fd` cannot say (a channel in a memfd needs /proc to be
    /// claimed in any case).
    pub fn from_fds(memfd: OwnedFd, doorbells: [OwnedFd; 2]) -> Result<Handoff> {
        let memfd = Memfd::from_fd(memfd)?;
        let [a, b] = doorbells;
        let bell = |fd| {
            EventFd::from_fd(fd, EventFdMode::Counter).map_err(|e| Error::Io {
                op: "taking a channel's doorbell",
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()),
            })
        };
        Ok(Handoff { memfd, doorbells: [bell(a)?, bell(b)?] })
    }

    /// The three descriptors to hand over: the memfd, then the doorbells.
    pub fn into_fds(self) -> (OwnedFd, [OwnedFd; 2]) {
        let [a, b] = self.doorbells;
        (self.memfd.into(), [a.into(), b.into()])
    }
}
