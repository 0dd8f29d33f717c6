//! The errors of services and their connections.

use std::io;

/// Why a service turned a client away (sent to the client in place of
/// its connection; the client gets no descriptor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The client's credentials are not among those the service's
    /// [`Access`](crate::Access) lets in.
    Denied,
    /// The service has as many clients as it takes
    /// ([`ServiceOptions::max_clients`](crate::ServiceOptions::max_clients)).
    Full,
    /// The client's greeting was not one this service speaks: garbage,
    /// another version, or descriptors attached.
    Protocol,
    /// The service could not make the connection's memory (out of
    /// descriptors or memory on its side).
    Unavailable,
}

impl Refusal {
    pub(crate) fn code(self) -> u32 {
        match self {
            Refusal::Denied => 1,
            Refusal::Full => 2,
            Refusal::Protocol => 3,
            Refusal::Unavailable => 4,
        }
    }

    pub(crate) fn from_code(code: u32) -> Option<Refusal> {
        Some(match code {
            1 => Refusal::Denied,
            2 => Refusal::Full,
            3 => Refusal::Protocol,
            4 => Refusal::Unavailable,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Denied => "access denied",
            Refusal::Full => "the service has as many clients as it takes",
            Refusal::Protocol => "the greeting was not understood",
            Refusal::Unavailable => "the service could not make the connection",
        })
    }
}

/// An error of a service or a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The service refused this client, for `reason`.
    #[error("the service {name} refused the connection: {reason}")]
    Refused {
        /// The service's name.
        name: String,
        /// Why.
        reason: Refusal,
    },

    /// Service options out of range; nothing was bound.
    #[error("invalid service options: {reason}")]
    InvalidOptions {
        /// What is out of range.
        reason: String,
    },

    /// The peer at the other end did not speak the protocol: a greeting
    /// that is garbage, the wrong descriptors, memory that is not a
    /// sealed channel of the size announced.
    #[error("the handshake failed: {reason}")]
    Handshake {
        /// What was wrong.
        reason: String,
    },

    /// The peer closed the connection or died, and everything it sent
    /// has been received.
    #[error("the peer is gone")]
    Disconnected,

    /// A subscriber fell behind a publisher that overwrites
    /// ([`Policy::Overwrite`](crate::Policy::Overwrite)): `missed`
    /// messages were overwritten before it read them. It goes on with the
    /// oldest message it can still read.
    #[error("fell behind: {missed} messages were overwritten unread")]
    Lagged {
        /// How many messages it lost.
        missed: u64,
    },

    /// A blackboard's value kept changing under every read of it, `tries`
    /// times (its writer rewrites it faster than it can be copied, or the
    /// memory is scribbled on).
    #[error("the value kept changing while it was read ({tries} tries)")]
    Unsettled {
        /// How many reads were tried.
        tries: u32,
    },

    /// An event id beyond those the notifier has.
    #[error("event {id} is beyond the {ids} ids of the events")]
    UnknownEvent {
        /// The id.
        id: u32,
        /// How many ids there are.
        ids: u32,
    },

    /// A `try_*` call found nothing to receive, or no room to send.
    #[error("the call would block")]
    WouldBlock,

    /// A timed call reached its deadline.
    #[error("the deadline passed")]
    Timeout,

    /// A message longer than the connection carries.
    #[error("a message of {len} bytes is over the {max} bytes the connection carries")]
    MessageTooLarge {
        /// The message's length.
        len: usize,
        /// The longest message.
        max: usize,
    },

    /// A message that is not what the call expects: a Pod of another size,
    /// a request or reply without its correlation id.
    #[error("malformed message: {reason}")]
    Malformed {
        /// What is wrong with it.
        reason: String,
    },

    /// The process ran out of descriptors (`RLIMIT_NOFILE`) while making
    /// or taking a connection; nothing is left open.
    #[error("{op}: out of descriptors")]
    OutOfDescriptors {
        /// What needed them.
        op: &'static str,
    },

    /// The socket under the service failed (binding, connecting).
    #[error(transparent)]
    Socket(ipc_socket::Error),

    /// The shared memory under the connection failed or was corrupted by
    /// the peer (`Corrupted`, `Truncated`, …).
    #[error(transparent)]
    Channel(ipc_shm::Error),

    /// A system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
}

impl Error {
    /// The [`io::ErrorKind`] this error converts to.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::Refused { reason: Refusal::Denied, .. } => io::ErrorKind::PermissionDenied,
            Error::Refused { .. } => io::ErrorKind::ConnectionRefused,
            Error::Handshake { .. } | Error::Malformed { .. } => io::ErrorKind::InvalidData,
            Error::InvalidOptions { .. } => io::ErrorKind::InvalidInput,
            Error::Disconnected => io::ErrorKind::BrokenPipe,
            Error::WouldBlock => io::ErrorKind::WouldBlock,
            Error::Lagged { .. } => io::ErrorKind::Other,
            Error::Unsettled { .. } => io::ErrorKind::InvalidData,
            Error::UnknownEvent { .. } => io::ErrorKind::InvalidInput,
            Error::Timeout => io::ErrorKind::TimedOut,
            Error::MessageTooLarge { .. } => io::ErrorKind::InvalidInput,
            Error::OutOfDescriptors { .. } => io::ErrorKind::Other,
            Error::Socket(e) => e.kind(),
            Error::Channel(e) => e.kind(),
            Error::Io { source, .. } => source.kind(),
        }
    }

    pub(crate) fn io(op: &'static str, source: impl Into<io::Error>) -> Error {
        let source = source.into();
        match source.raw_os_error() {
            Some(nix::libc::EMFILE | nix::libc::ENFILE) => Error::OutOfDescriptors { op },
            _ => Error::Io { op, source },
        }
    }

    pub(crate) fn handshake(reason: impl Into<String>) -> Error {
        Error::Handshake { reason: reason.into() }
    }
}

impl From<ipc_socket::Error> for Error {
    fn from(e: ipc_socket::Error) -> Self {
        match e {
            ipc_socket::Error::Disconnected => Error::Disconnected,
            ipc_socket::Error::WouldBlock => Error::WouldBlock,
            ipc_socket::Error::Timeout => Error::Timeout,
            ipc_socket::Error::OutOfDescriptors { op, .. } => Error::OutOfDescriptors { op },
            e => Error::Socket(e),
        }
    }
}

impl From<ipc_shm::Error> for Error {
    fn from(e: ipc_shm::Error) -> Self {
        match e {
            ipc_shm::Error::Disconnected => Error::Disconnected,
            ipc_shm::Error::Full | ipc_shm::Error::Empty => Error::WouldBlock,
            ipc_shm::Error::Timeout => Error::Timeout,
            ipc_shm::Error::RecordTooLarge { len, max } => Error::MessageTooLarge { len, max },
            ipc_shm::Error::Io { op, source }
                if matches!(source.raw_os_error(), Some(nix::libc::EMFILE | nix::libc::ENFILE)) =>
            {
                Error::OutOfDescriptors { op }
            }
            e => Error::Channel(e),
        }
    }
}

ipc_sync::io_error_conversion!(Error);

/// The result type of ipc-service.
pub type Result<T, E = Error> = std::result::Result<T, E>;
