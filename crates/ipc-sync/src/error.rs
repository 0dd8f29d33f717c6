use std::io;
use std::path::PathBuf;

/// What can go wrong in ipc-sync.
///
/// Each variant reads as a sentence naming the object and the limit, and
/// converts into [`std::io::Error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `try_*` call found the primitive not available.
    #[error("the {what} is not available now: the operation would block")]
    WouldBlock {
        /// What was tried, such as "mutex" or "semaphore".
        what: &'static str,
    },

    /// A `*_timeout` or `*_deadline` call reached its deadline.
    #[error("the deadline passed while waiting for the {what}")]
    Timeout {
        /// What was waited for.
        what: &'static str,
    },

    /// A System V key that cannot be used.
    #[error("invalid System V key {key}: {reason}")]
    InvalidKey {
        /// The key.
        key: i32,
        /// Why.
        reason: &'static str,
    },

    /// `ftok` could not make a key from a path.
    #[error("cannot make a System V key from {}: {source}", path.display())]
    KeyPath {
        /// The path given.
        path: PathBuf,
        /// Why (usually: it does not exist).
        #[source]
        source: io::Error,
    },

    /// A counter would go past its maximum.
    #[error("the {what} would exceed its maximum of {max}")]
    Overflow {
        /// What overflowed.
        what: &'static str,
        /// The maximum.
        max: u64,
    },

    /// `create` found the object there already.
    #[error("the {what} {name} already exists")]
    AlreadyExists {
        /// What kind of object.
        what: &'static str,
        /// Its name or key.
        name: String,
    },

    /// `open` found no such object.
    #[error("no {what} {name} exists")]
    NotFound {
        /// What kind of object.
        what: &'static str,
        /// Its name or key.
        name: String,
    },

    /// The object's permissions do not let this process in.
    #[error("permission denied for the {what} {name}")]
    PermissionDenied {
        /// What kind of object.
        what: &'static str,
        /// Its name or key.
        name: String,
    },

    /// The object was removed while in use (`EIDRM`).
    #[error("the {what} {name} was removed")]
    Removed {
        /// What kind of object.
        what: &'static str,
        /// Its name, key or id.
        name: String,
    },

    /// An argument that cannot be right, rejected before any system call.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// What was wrong.
        what: &'static str,
        /// Why.
        reason: String,
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
            Error::WouldBlock { .. } => io::ErrorKind::WouldBlock,
            Error::Timeout { .. } => io::ErrorKind::TimedOut,
            Error::InvalidKey { .. } => io::ErrorKind::InvalidInput,
            Error::KeyPath { source, .. } | Error::Io { source, .. } => source.kind(),
            Error::Overflow { .. } | Error::InvalidArgument { .. } => io::ErrorKind::InvalidInput,
            Error::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
            Error::NotFound { .. } | Error::Removed { .. } => io::ErrorKind::NotFound,
            Error::PermissionDenied { .. } => io::ErrorKind::PermissionDenied,
        }
    }
}

/// What an errno from creating, opening or using a named or keyed IPC
/// object (a queue, segment, semaphore, FIFO) says about the object: the
/// errno knowledge every crate's typed error shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectFault {
    /// It exists already (`EEXIST`).
    Exists,
    /// It does not exist (`ENOENT`).
    Missing,
    /// Its permissions keep this process out (`EACCES`, `EPERM`).
    Denied,
    /// It was removed while in use (`EIDRM`).
    Removed,
}

impl ObjectFault {
    /// The fault `e` reports, if it is one of these.
    pub fn of(e: &io::Error) -> Option<ObjectFault> {
        match e.raw_os_error()? {
            libc::EEXIST => Some(ObjectFault::Exists),
            libc::ENOENT => Some(ObjectFault::Missing),
            libc::EACCES | libc::EPERM => Some(ObjectFault::Denied),
            libc::EIDRM => Some(ObjectFault::Removed),
            _ => None,
        }
    }
}

impl Error {
    /// Turns an OS error about the object `what` named `name` into the
    /// matching typed error.
    pub(crate) fn from_os(what: &'static str, name: impl FnOnce() -> String, op: &'static str, e: io::Error) -> Self {
        match ObjectFault::of(&e) {
            Some(ObjectFault::Exists) => Error::AlreadyExists { what, name: name() },
            Some(ObjectFault::Missing) => Error::NotFound { what, name: name() },
            Some(ObjectFault::Denied) => Error::PermissionDenied { what, name: name() },
            Some(ObjectFault::Removed) => Error::Removed { what, name: name() },
            None if e.raw_os_error() == Some(libc::EAGAIN) => Error::WouldBlock { what },
            None => Error::Io { op, source: e },
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

/// The result type of ipc-sync.
pub type Result<T, E = Error> = std::result::Result<T, E>;
