use std::io;
use std::path::PathBuf;

crate::object_error! {
    /// What can go wrong in ipc-sync.
    ///
    /// Each variant reads as a sentence naming the object and the limit, and
    /// converts into [`std::io::Error`].
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

        /// An argument that cannot be right, rejected before any system call.
        #[error("invalid {what}: {reason}")]
        InvalidArgument {
            /// What was wrong.
            what: &'static str,
            /// Why.
            reason: String,
        },
    }
    kinds {
        Error::WouldBlock { .. } => io::ErrorKind::WouldBlock,
        Error::Timeout { .. } => io::ErrorKind::TimedOut,
        Error::KeyPath { source, .. } => source.kind(),
        Error::InvalidKey { .. } | Error::Overflow { .. } | Error::InvalidArgument { .. } => io::ErrorKind::InvalidInput,
    }
}

impl Error {
    /// Turns an OS error about the object `what` named `name` into the
    /// matching typed error; `EAGAIN` is [`Error::WouldBlock`].
    pub(crate) fn from_os(what: &'static str, name: impl FnOnce() -> String, op: &'static str, e: io::Error) -> Self {
        if e.raw_os_error() == Some(libc::EAGAIN) {
            return Error::WouldBlock { what };
        }
        <Error as crate::object::ObjectError>::from_os(what, name, op, e)
    }
}

/// The result type of ipc-sync.
pub type Result<T, E = Error> = std::result::Result<T, E>;
