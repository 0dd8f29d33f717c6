use std::io;
use std::path::PathBuf;

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

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io { source, .. } => source,
            other => io::Error::new(other.kind(), other),
        }
    }
}

/// The result type of ipc-fifo.
pub type Result<T, E = Error> = std::result::Result<T, E>;
