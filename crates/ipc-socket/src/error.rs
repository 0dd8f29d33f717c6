use std::io;
use std::os::unix::fs::FileTypeExt;

use ipc_sync::object::{ObjectError, ObjectFault};

/// What can go wrong with a Unix socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name that cannot name a socket (empty, a NUL byte in a path, too
    /// long).
    #[error("invalid socket name {name}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why.
        reason: String,
    },

    /// A live socket has the name: a process is bound there (listening, for
    /// a stream or seqpacket socket). It was left alone.
    #[error("the socket name {name} is in use")]
    InUse {
        /// The name.
        name: String,
    },

    /// Something other than a socket is at the path; it was not touched.
    #[error("{name} is a {found}, not a socket")]
    NotASocket {
        /// The path.
        name: String,
        /// What is there: "regular file", "directory", "symbolic link", …
        found: &'static str,
    },

    /// Nothing is at the path (or a directory on the way is missing), or
    /// nobody is bound to the abstract name.
    #[error("no socket is at {name}")]
    NotFound {
        /// The name.
        name: String,
    },

    /// The socket file's or a directory's permissions keep this process
    /// out.
    #[error("permission denied for the socket {name}")]
    PermissionDenied {
        /// The name.
        name: String,
    },

    /// A socket file is there but nobody listens on it (a stale file), or
    /// the listener's backlog refused the connection.
    #[error("nobody accepts connections at {name}")]
    Refused {
        /// The name.
        name: String,
    },

    /// The socket at the name is of another type (a stream client at a
    /// datagram socket, say).
    #[error("the socket at {name} is not a {wanted} socket")]
    WrongType {
        /// The name.
        name: String,
        /// The type this side is.
        wanted: &'static str,
    },

    /// The peer is gone: it closed its end or died (`EPIPE`,
    /// `ECONNRESET`), or a datagram's receiver is no longer there.
    #[error("the peer is gone")]
    Disconnected,

    /// A `try_*` call found nothing to take, or no room.
    #[error("the call would block")]
    WouldBlock,

    /// A timed call reached its deadline.
    #[error("the deadline passed")]
    Timeout,

    /// A message over what the socket carries in one piece.
    #[error("a message of {len} bytes is over the {max} bytes the socket carries")]
    MessageTooLarge {
        /// Its length.
        len: usize,
        /// The most the socket carries: its send buffer less the
        /// kernel's 32 bytes, and at most 4 MiB (the longest message the
        /// kernel allocates in one piece).
        max: usize,
    },

    /// A message longer than the buffer given: the first `buf.len()` bytes
    /// were copied, the rest is lost (the socket keeps message
    /// boundaries).
    #[error("a message of {len} bytes did not fit the {capacity} bytes given; its rest is lost")]
    Truncated {
        /// The message's length.
        len: usize,
        /// The buffer's.
        capacity: usize,
    },

    /// More descriptors than one message carries.
    #[error("{count} descriptors are over the {max} one message carries")]
    TooManyFds {
        /// How many were given.
        count: usize,
        /// The most one message carries ([`MAX_FDS`](crate::MAX_FDS)).
        max: usize,
    },

    /// A message came with more descriptors than the receiver takes: the
    /// kernel dropped those that did not fit, and those that did were
    /// closed. The message's bytes were received.
    #[error("a message came with more descriptors than {max}; all of them were closed ({len} bytes of data received)")]
    FdsTruncated {
        /// The most the receiver takes.
        max: usize,
        /// The bytes of data received with them.
        len: usize,
    },

    /// A stream message sent with descriptors must carry at least one
    /// byte (the kernel attaches descriptors to data).
    #[error("descriptors need at least one byte of data to travel with")]
    FdsWithoutData,

    /// A process has no room for another descriptor (`EMFILE`, `ENFILE`),
    /// or the kernel's limit on descriptors in flight was reached
    /// (`ETOOMANYREFS`).
    #[error("{op}: out of descriptors ({source})")]
    OutOfDescriptors {
        /// What was being done.
        op: &'static str,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },

    /// Any other failure of a system call.
    #[error("{op} failed: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The [`io::ErrorKind`] this error converts to.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::InvalidName { .. }
            | Error::NotASocket { .. }
            | Error::TooManyFds { .. }
            | Error::FdsWithoutData
            | Error::WrongType { .. } => io::ErrorKind::InvalidInput,
            Error::InUse { .. } => io::ErrorKind::AddrInUse,
            Error::NotFound { .. } => io::ErrorKind::NotFound,
            Error::PermissionDenied { .. } => io::ErrorKind::PermissionDenied,
            Error::Refused { .. } => io::ErrorKind::ConnectionRefused,
            Error::Disconnected => io::ErrorKind::BrokenPipe,
            Error::WouldBlock => io::ErrorKind::WouldBlock,
            Error::Timeout => io::ErrorKind::TimedOut,
            Error::MessageTooLarge { .. } => io::ErrorKind::InvalidInput,
            Error::Truncated { .. } | Error::FdsTruncated { .. } => io::ErrorKind::InvalidData,
            Error::OutOfDescriptors { .. } => io::ErrorKind::Other,
            Error::Io { source, .. } => source.kind(),
        }
    }

    /// The error of the system call `op` that failed with `e` on a
    /// connected socket: the peer's going, a full or empty socket, or
    /// any other failure.
    pub(crate) fn of_call(op: &'static str, e: io::Error) -> Error {
        match e.raw_os_error() {
            Some(libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN | libc::ECONNREFUSED) => Error::Disconnected,
            Some(libc::EAGAIN) => Error::WouldBlock,
            Some(libc::EMFILE | libc::ENFILE | libc::ETOOMANYREFS) => Error::OutOfDescriptors { op, source: e },
            _ => Error::Io { op, source: e },
        }
    }

    /// The error of the system call `op` that failed with `e` on the
    /// socket named `name` (binding, connecting, sending to it).
    pub(crate) fn of_name(socket: &crate::SocketName, op: &'static str, e: io::Error) -> Error {
        let name = socket.to_string();
        match e.raw_os_error() {
            Some(libc::EADDRINUSE) => Error::InUse { name },
            Some(libc::ENOENT | libc::ENOTDIR) => Error::NotFound { name },
            Some(libc::EACCES | libc::EPERM) => Error::PermissionDenied { name },
            Some(libc::ECONNREFUSED) => match not_a_socket(socket) {
                Some(found) => Error::NotASocket { name, found },
                None => Error::Refused { name },
            },
            Some(libc::ENAMETOOLONG) => {
                Error::InvalidName { name, reason: "a name in its path is over NAME_MAX (255) bytes".into() }
            }
            _ => Error::of_call(op, e),
        }
    }
}

/// What is at the path `name` when it is something other than a socket
/// (the kernel refuses a connection to a regular file or a directory as
/// it does one to a stale socket file).
fn not_a_socket(name: &crate::SocketName) -> Option<&'static str> {
    let meta = std::fs::symlink_metadata(name.as_path()?).ok()?;
    (!meta.file_type().is_socket()).then(|| kind_name(&meta))
}

/// What a file is, for errors: "regular file", "directory", …
pub(crate) fn kind_name(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "symbolic link"
    } else if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "regular file"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "device"
    } else {
        "file"
    }
}

/// The foundation's view of the error: a socket is named by its path or
/// abstract name.
impl ObjectError for Error {
    fn object(fault: ObjectFault, _what: &'static str, name: String) -> Self {
        match fault {
            ObjectFault::Exists => Error::InUse { name },
            ObjectFault::Missing | ObjectFault::Removed => Error::NotFound { name },
            ObjectFault::Denied => Error::PermissionDenied { name },
        }
    }

    fn io(op: &'static str, source: io::Error) -> Self {
        Error::Io { op, source }
    }

    fn fault(&self) -> Option<ObjectFault> {
        match self {
            Error::InUse { .. } => Some(ObjectFault::Exists),
            Error::NotFound { .. } => Some(ObjectFault::Missing),
            Error::PermissionDenied { .. } => Some(ObjectFault::Denied),
            _ => None,
        }
    }
}

ipc_sync::io_error_conversion!(Error);

/// The result type of ipc-socket.
pub type Result<T, E = Error> = std::result::Result<T, E>;
