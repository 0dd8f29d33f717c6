use std::io;

ipc_sync::object_error! {
    /// What can go wrong with a message queue.
    ///
    /// Each variant reads as a sentence naming the queue and the limit, and
    /// converts into [`std::io::Error`].
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
    }
    kinds {
        Error::Full | Error::Empty => io::ErrorKind::WouldBlock,
        Error::Timeout => io::ErrorKind::TimedOut,
        Error::MessageTooLarge { .. }
        | Error::BufferTooSmall { .. }
        | Error::InvalidType { .. }
        | Error::InvalidName { .. }
        | Error::InvalidKey { .. }
        | Error::LimitExceeded { .. } => io::ErrorKind::InvalidInput,
        Error::WrongSize { .. } => io::ErrorKind::InvalidData,
    }
    invalid_name: "POSIX message queue";
    invalid_key: "System V";
}

/// The result type of ipc-msgq.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A received message whose length is not that of the `T` asked for.
pub(crate) fn not_a<T>(len: usize) -> Error {
    Error::WrongSize { len, expected: size_of::<T>(), type_name: std::any::type_name::<T>() }
}
