use std::io;

/// What can go wrong with shared memory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An access outside the mapping.
    #[error("access of {len} bytes at offset {offset} is outside the {size}-byte mapping")]
    OutOfBounds {
        /// Where the access starts.
        offset: usize,
        /// How many bytes it covers.
        len: usize,
        /// The mapping's size.
        size: usize,
    },

    /// A typed access at an offset the type's alignment does not allow.
    #[error("offset {offset} is not aligned for a {type_name} (alignment {align})")]
    Misaligned {
        /// The offset.
        offset: usize,
        /// The alignment the type needs.
        align: usize,
        /// The type.
        type_name: &'static str,
    },

    /// A size that cannot be mapped.
    #[error("invalid shared memory size {size}: {reason}")]
    InvalidSize {
        /// The size asked for.
        size: usize,
        /// Why.
        reason: &'static str,
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
            Error::OutOfBounds { .. } | Error::Misaligned { .. } | Error::InvalidSize { .. } => {
                io::ErrorKind::InvalidInput
            }
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

/// The result type of ipc-shm.
pub type Result<T, E = Error> = std::result::Result<T, E>;
