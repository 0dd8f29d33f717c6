use std::io;

/// What can go wrong with a message queue.
///
/// Each variant reads as a sentence naming the queue and the limit, and
/// converts into [`std::io::Error`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `try_send` found the queue full.
    #[error("the message queue is full")]
    Full,

    /// A `try_recv` found no message to take.
    #[error("the message queue holds no matching message")]
    Empty,

    /// A `*_timeout` or `*_deadline` call reached its deadline.
    #[error("the deadline passed while waiting on the message queue")]
    Timeout,

    /// A message longer than the queue takes.
    #[error("message of {len} bytes exceeds the limit of {max} bytes ({limit})")]
    MessageTooLarge {
        /// The message's length.
        len: usize,
        /// The most the queue takes.
        max: usize,
        /// Where the limit comes from.
        limit: &'static str,
    },

    /// The receive buffer cannot hold the message (System V: the message
    /// stays in the queue) or is smaller than the queue's message size
    /// (POSIX: refused before the system call).
    #[error(
        "receive buffer of {len} bytes is too small{}",
        match .needed { Some(n) => format!(": {n} bytes are needed"), None => " for the message, which stays in the queue".to_owned() }
    )]
    BufferTooSmall {
        /// The buffer's length.
        len: usize,
        /// The length needed, when known (System V does not tell).
        needed: Option<usize>,
    },

    /// A message received as a `T` (`recv_pod`) had another length; it was
    /// taken from the queue.
    #[error("a message of {len} bytes is not a {type_name} of {expected} bytes (it was taken from the queue)")]
    WrongSize {
        /// The message's length.
        len: usize,
        /// The size of `T`.
        expected: usize,
        /// `T`'s name.
        type_name: &'static str,
    },

    /// A System V message type below 1.

    #[error("invalid message type {mtype}: System V message types are 1 or more")]
    InvalidType {
        /// The type given.
        mtype: i64,
    },

    /// `create` found the queue there already.
    #[error("the {what} {name} already exists")]
    AlreadyExists {
        /// Which kind of queue.
        what: &'static str,
        /// Its name or key.
        name: String,
    },

    /// `open` found no such queue.
    #[error("no {what} {name} exists")]
    NotFound {
        /// Which kind of queue.
        what: &'static str,
        /// Its name or key.
        name: String,
    },

    /// The queue's permissions do not let this process in.
    #[error("permission denied for the {what} {name}")]
    PermissionDenied {
        /// Which kind of queue.
        what: &'static str,
        /// Its name or key.
        name: String,
    },

    /// The queue was removed while in use (`EIDRM`).
    #[error("the {what} {name} was removed")]
    Removed {
        /// Which kind of queue.
        what: &'static str,
        /// Its name, key or id.
        name: String,
    },

    /// A POSIX queue name refused before any system call.
    #[error("invalid POSIX message queue name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why.
        reason: &'static str,
    },

    /// A System V key that cannot be used.
    #[error("invalid System V key: {reason}")]
    InvalidKey {
        /// Why.
        reason: &'static str,
    },

    /// A system limit stood in the way.
    #[error("{what}: {requested} asked for, the limit is {limit} ({source_of_limit})")]
    LimitExceeded {
        /// What was limited.
        what: &'static str,
        /// What was asked for.
        requested: u64,
        /// The limit.
        limit: u64,
        /// Where the limit is set, such as /proc/sys/fs/mqueue/msg_max.
        source_of_limit: &'static str,
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
            Error::Full | Error::Empty => io::ErrorKind::WouldBlock,
            Error::Timeout => io::ErrorKind::TimedOut,
            Error::MessageTooLarge { .. }
            | Error::BufferTooSmall { .. }
            | Error::InvalidType { .. }
            | Error::InvalidName { .. }
            | Error::InvalidKey { .. }
            | Error::LimitExceeded { .. } => io::ErrorKind::InvalidInput,
            Error::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
            Error::NotFound { .. } | Error::Removed { .. } => io::ErrorKind::NotFound,
            Error::WrongSize { .. } => io::ErrorKind::InvalidData,
            Error::PermissionDenied { .. } => io::ErrorKind::PermissionDenied,
            Error::Io { source, .. } => source.kind(),
        }
    }

    /// Turns an OS error about the queue `what` named `name` into the
    /// matching typed error.
    pub(crate) fn from_os(what: &'static str, name: impl FnOnce() -> String, op: &'static str, e: io::Error) -> Self {
        use ipc_sync::ObjectFault;
        match ObjectFault::of(&e) {
            Some(ObjectFault::Exists) => Error::AlreadyExists { what, name: name() },
            Some(ObjectFault::Missing) => Error::NotFound { what, name: name() },
            Some(ObjectFault::Denied) => Error::PermissionDenied { what, name: name() },
            Some(ObjectFault::Removed) => Error::Removed { what, name: name() },
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

/// The result type of ipc-msgq.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads a number from a file under /proc (a system limit).
pub(crate) fn proc_limit(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A received message whose length is not that of the `T` asked for.
pub(crate) fn not_a<T>(len: usize) -> Error {
    Error::WrongSize { len, expected: size_of::<T>(), type_name: std::any::type_name::<T>() }
}
