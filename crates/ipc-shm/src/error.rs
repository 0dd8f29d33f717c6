use std::io;

ipc_sync::object_error! {
    /// What can go wrong with shared memory.
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

        /// A write through a mapping made read-only.
        #[error("the mapping is read-only")]
        ReadOnly,

        /// A name refused before any system call.
        #[error("invalid POSIX shared memory name {name:?}: {reason}")]
        InvalidName {
            /// The name given.
            name: String,
            /// Why.
            reason: &'static str,
        },

        /// The object is smaller than the size asked for.
        #[error("the {what} {name} holds {size} bytes, fewer than the {needed} asked for")]
        TooSmall {
            /// What kind of object.
            what: &'static str,
            /// Its name or key.
            name: String,
            /// Its size.
            size: u64,
            /// The size asked for.
            needed: u64,
        },

        /// A key that cannot be used.
        #[error("invalid System V key: {reason}")]
        InvalidKey {
            /// Why.
            reason: &'static str,
        },

        /// The file behind a mapping was shrunk (by a peer) below the bytes an
        /// access needs; the access was not made.
        #[error("the shared memory was shrunk to {size} bytes; the access needs {needed}")]
        Truncated {
            /// The file's size now.
            size: u64,
            /// The end of the access.
            needed: u64,
        },

        /// A memfd without the seal against shrinking, which a peer could then
        /// truncate under us.
        #[error("the memfd is not sealed against shrinking (F_SEAL_SHRINK)")]
        NotSealed,

        /// `try_send` found the channel full.
        #[error("the channel is full")]
        Full,

        /// `try_recv` found the channel empty.
        #[error("the channel is empty")]
        Empty,

        /// The other side closed the channel or died, and everything it sent
        /// has been received.
        #[error("the other side of the channel is gone")]
        Disconnected,

        /// A `*_timeout` or `*_deadline` call reached its deadline.
        #[error("the deadline passed while waiting on the channel")]
        Timeout,

        /// A value read from shared memory (an index, a length) is impossible:
        /// the peer is broken or hostile. Nothing was read out of bounds.
        #[error("the channel's shared memory is corrupted: {what}")]
        Corrupted {
            /// What was found.
            what: String,
        },

        /// The shared memory does not hold a channel of the expected kind and
        /// message type.
        #[error("the shared memory does not hold the channel expected: {reason}")]
        LayoutMismatch {
            /// What differs.
            reason: String,
        },

        /// A record longer than the byte channel can ever hold.
        #[error("record of {len} bytes exceeds the channel's maximum record of {max} bytes")]
        RecordTooLarge {
            /// The record's length.
            len: usize,
            /// The most the channel takes: half its capacity, less an 8-byte header.
            max: usize,
        },

        /// The side asked for is taken by another handle.
        #[error("the channel's {side} is already connected")]
        AlreadyConnected {
            /// "sender" or "receiver".
            side: &'static str,
        },

        /// The side cannot be claimed in this process: it (or the process it
        /// was forked from) claimed the other side of this channel made before
        /// `fork`, and so gave this one up. Claim each side in the process that
        /// uses it, after `fork`; one process may claim both.
        #[error(
            "the channel's {side} cannot be claimed here: this process, or the one it was forked from, claimed the \
             other side first and so gave this one up"
        )]
        SideGivenUp {
            /// "sender" or "receiver".
            side: &'static str,
        },
    }
    kinds {
        Error::OutOfBounds { .. }
        | Error::Misaligned { .. }
        | Error::InvalidSize { .. }
        | Error::InvalidName { .. }
        | Error::InvalidKey { .. }
        | Error::TooSmall { .. }
        | Error::NotSealed
        | Error::RecordTooLarge { .. } => io::ErrorKind::InvalidInput,
        Error::ReadOnly => io::ErrorKind::PermissionDenied,
        Error::Truncated { .. } => io::ErrorKind::UnexpectedEof,
        Error::Full | Error::Empty => io::ErrorKind::WouldBlock,
        Error::Disconnected => io::ErrorKind::BrokenPipe,
        Error::Timeout => io::ErrorKind::TimedOut,
        Error::Corrupted { .. } | Error::LayoutMismatch { .. } => io::ErrorKind::InvalidData,
        Error::AlreadyConnected { .. } => io::ErrorKind::AddrInUse,
        Error::SideGivenUp { .. } => io::ErrorKind::AddrNotAvailable,
    }
}

/// The result type of ipc-shm.
pub type Result<T, E = Error> = std::result::Result<T, E>;
