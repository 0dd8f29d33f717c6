use std::io;
use std::path::{Path, PathBuf};

use ipc_sync::object::{ObjectError, ObjectFault};

/// What can go wrong with a named pipe.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `create` found something at the path already.
    #[error("{} already exists", .path.display())]
    AlreadyExists {
        /// The path.
        path: PathBuf,
    },

    /// Nothing is at the path, or a directory on the way is missing.
    #[error("{} does not exist", .path.display())]
    NotFound {
        /// The path.
        path: PathBuf,
    },

    /// Something other than a FIFO is at the path; it was not used.
    #[error("{} is a {found}, not a FIFO", .path.display())]
    NotAFifo {
        /// The path.
        path: PathBuf,
        /// What is there: "regular file", "directory", "symbolic link", …
        found: &'static str,
    },

    /// The FIFO's permissions do not let this process in.
    #[error("permission denied for the FIFO {}", .path.display())]
    PermissionDenied {
        /// The path.
        path: PathBuf,
    },

    /// A FIFO to be replaced is in use: a reader has it open (a live
    /// server, say). It was left alone.
    #[error("the FIFO {} is in use by a reader; it was not replaced", .path.display())]
    InUse {
        /// The path.
        path: PathBuf,
    },

    /// A nonblocking writer's open found no reader (`ENXIO`).
    #[error("the FIFO {} has no reader", .path.display())]
    NoReader {
        /// The path.
        path: PathBuf,
    },

    /// A timed open reached its deadline.
    #[error("the deadline passed while opening the FIFO {}", .path.display())]
    Timeout {
        /// The path.
        path: PathBuf,
    },

    /// The server's request FIFO has no reader: the server is gone.
    #[error("the FIFO server at {} is gone", .path.display())]
    ServerGone {
        /// The server's request FIFO.
        path: PathBuf,
    },

    /// A client's reply FIFO has no reader: the client is gone (its reply
    /// FIFO was removed).
    #[error("client {pid} is gone; its reply FIFO {} was removed", .path.display())]
    ClientGone {
        /// The client's pid, as it said.
        pid: u32,
        /// Its reply FIFO.
        path: PathBuf,
    },

    /// A client did not read its replies: more were queued for it than
    /// the server keeps (see `FifoServer::reply`). It was cut off: its
    /// reply FIFO was removed, since the replies it lost would have it take
    /// later replies for earlier requests. The client gets this error
    /// itself when it next waits for a reply, and connects again.
    #[error("client {pid} did not read its replies; it was cut off and its reply FIFO {} removed", .path.display())]
    ClientStalled {
        /// The client's pid, as it said.
        pid: u32,
        /// Its reply FIFO.
        path: PathBuf,
    },

    /// A request longer than one atomic write can carry.
    #[error("request of {len} bytes exceeds the {max} bytes one atomic FIFO write carries with this reply path")]
    RequestTooLarge {
        /// The payload's length.
        len: usize,
        /// The most this client can send.
        max: usize,
    },

    /// A request that does not follow the protocol (from a broken or
    /// hostile client); it was dropped.
    #[error("malformed request: {reason}")]
    BadRequest {
        /// What was wrong.
        reason: String,
    },

    /// A path that cannot name a FIFO (a NUL byte).
    #[error("invalid FIFO path {}: {reason}", .path.display())]
    InvalidPath {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },

    /// Any other failure of a system call.
    #[error("{op} on {} failed: {source}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The [`io::ErrorKind`] this error converts to.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
            Error::NotFound { .. } => io::ErrorKind::NotFound,
            Error::NotAFifo { .. } | Error::InvalidPath { .. } => io::ErrorKind::InvalidInput,
            Error::PermissionDenied { .. } => io::ErrorKind::PermissionDenied,
            Error::NoReader { .. } => io::ErrorKind::NotConnected,
            Error::InUse { .. } => io::ErrorKind::AddrInUse,
            Error::Timeout { .. } | Error::ClientStalled { .. } => io::ErrorKind::TimedOut,
            Error::ServerGone { .. } | Error::ClientGone { .. } => io::ErrorKind::BrokenPipe,
            Error::RequestTooLarge { .. } => io::ErrorKind::InvalidInput,
            Error::BadRequest { .. } => io::ErrorKind::InvalidData,
            Error::Io { source, .. } => source.kind(),
        }
    }
}

/// The foundation's view of the error. A FIFO is named by its path, so [`ObjectError::object`] takes
/// the name as the path (a FIFO removed while in use is not found), and
/// [`ObjectError::io`] has no path to give: ipc-fifo itself builds its
/// errors with the path.
impl ObjectError for Error {
    fn object(fault: ObjectFault, _what: &'static str, name: String) -> Self {
        let path = PathBuf::from(name);
        match fault {
            ObjectFault::Exists => Error::AlreadyExists { path },
            ObjectFault::Missing | ObjectFault::Removed => Error::NotFound { path },
            ObjectFault::Denied => Error::PermissionDenied { path },
        }
    }

    fn io(op: &'static str, source: io::Error) -> Self {
        Error::Io { op, path: PathBuf::new(), source }
    }

    fn fault(&self) -> Option<ObjectFault> {
        match self {
            Error::AlreadyExists { .. } => Some(ObjectFault::Exists),
            Error::NotFound { .. } => Some(ObjectFault::Missing),
            Error::PermissionDenied { .. } => Some(ObjectFault::Denied),
            _ => None,
        }
    }
}

ipc_sync::io_error_conversion!(Error);

/// The typed error for an OS error `e` of `op` on `path`: what it says
/// about the object (through [`ObjectFault`]), or what it says about a
/// FIFO: no reader (`ENXIO`), a symbolic link or directory where the FIFO
/// should be, a name too long.
pub(crate) fn os_err(path: &Path, op: &'static str, e: io::Error) -> Error {
    let path = path.to_owned();
    match (ObjectFault::of(&e), e.raw_os_error()) {
        (Some(ObjectFault::Exists), _) => Error::AlreadyExists { path },
        (Some(ObjectFault::Missing), _) | (_, Some(libc::ENOTDIR)) => Error::NotFound { path },
        (Some(ObjectFault::Denied), _) => Error::PermissionDenied { path },
        (_, Some(libc::ENXIO)) => Error::NoReader { path },
        // O_NOFOLLOW met a symbolic link.
        (_, Some(libc::ELOOP)) => Error::NotAFifo { path, found: "symbolic link" },
        (_, Some(libc::EISDIR)) => Error::NotAFifo { path, found: "directory" },
        (_, Some(libc::ENAMETOOLONG)) => {
            Error::InvalidPath { path, reason: "a name in it is over NAME_MAX (255) bytes" }
        }
        _ => Error::Io { op, path, source: e },
    }
}

/// The result type of ipc-fifo.
pub type Result<T, E = Error> = std::result::Result<T, E>;
