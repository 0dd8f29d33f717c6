use std::io;

/// What can go wrong with a pipe.
///
/// Every variant reads as a sentence that names the limit involved, and
/// converts into [`std::io::Error`] with a fitting [`io::ErrorKind`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `try_*` call found the pipe not ready: nothing to read, or no room
    /// to write.
    #[error("the pipe is not ready: the operation would block")]
    WouldBlock,

    /// A `*_timeout` or `*_deadline` call reached its deadline before the
    /// pipe became ready.
    #[error("the deadline passed before the pipe became ready")]
    Timeout,

    /// Every read end of the pipe is closed, so nothing written can be read.
    /// (The process is not killed by `SIGPIPE`; this error is returned
    /// instead.)
    #[error("the pipe has no reader left (broken pipe)")]
    BrokenPipe,

    /// The kernel refused to make the pipe this large.
    #[error(
        "pipe capacity of {requested} bytes refused: processes without CAP_SYS_RESOURCE may set \
         at most /proc/sys/fs/pipe-max-size = {}, and the per-user pipe page limits apply",
        match .max { Some(m) => format!("{m} bytes"), None => "(unreadable)".to_owned() }
    )]
    CapacityRefused {
        /// The capacity asked for.
        requested: usize,
        /// The value of /proc/sys/fs/pipe-max-size, if it could be read.
        max: Option<usize>,
    },

    /// The pipe holds more data than the smaller capacity asked for.
    #[error("pipe capacity of {requested} bytes refused: the pipe holds more data than that")]
    CapacityBelowContents {
        /// The capacity asked for.
        requested: usize,
    },

    /// A message for [`write_atomic`](crate::PipeWriter::write_atomic) is
    /// longer than `PIPE_BUF`, so the kernel could split it; nothing was
    /// written.
    #[error("message of {len} bytes exceeds PIPE_BUF = {max} bytes, the most a pipe writes atomically")]
    MessageTooLarge {
        /// The message length.
        len: usize,
        /// `PIPE_BUF`.
        max: usize,
    },

    /// A frame is longer than the maximum the frame reader or writer was
    /// configured with. When reading, the length came from the peer and
    /// nothing of that size was allocated.
    #[error("frame of {len} bytes exceeds the maximum frame length of {max} bytes")]
    FrameTooLarge {
        /// The frame length (as announced by the peer, when reading).
        len: u64,
        /// The configured maximum.
        max: usize,
    },

    /// The writer closed the pipe in the middle of a frame.
    #[error("the pipe closed in the middle of a frame: {got} of {expected} bytes arrived")]
    TruncatedFrame {
        /// The bytes the frame (its header, or its body) should have had.
        expected: u64,
        /// The bytes that arrived before end of file.
        got: u64,
    },

    /// A child fd number for [`ChildFds`](crate::ChildFds) that cannot be
    /// used.
    #[error("fd number {fd} cannot be given to a child: {reason}")]
    InvalidChildFd {
        /// The fd number asked for.
        fd: i32,
        /// Why not.
        reason: &'static str,
    },

    /// Any other failure of a system call.
    #[error("{op} failed: {source}")]
    Io {
        /// What was being done, such as "pipe2" or "read from pipe".
        op: &'static str,
        /// The error from the operating system (the error's source).
        source: io::Error,
    },
}

impl Error {
    /// Turns an OS error from `op` into the matching typed error.
    pub(crate) fn from_io(op: &'static str, e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock => Error::WouldBlock,
            io::ErrorKind::BrokenPipe => Error::BrokenPipe,
            _ => Error::Io { op, source: e },
        }
    }

    /// The [`io::ErrorKind`] this error converts to.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::WouldBlock => io::ErrorKind::WouldBlock,
            Error::Timeout => io::ErrorKind::TimedOut,
            Error::BrokenPipe => io::ErrorKind::BrokenPipe,
            Error::CapacityRefused { .. } => io::ErrorKind::PermissionDenied,
            Error::CapacityBelowContents { .. } => io::ErrorKind::ResourceBusy,
            Error::MessageTooLarge { .. } | Error::InvalidChildFd { .. } => io::ErrorKind::InvalidInput,
            Error::FrameTooLarge { .. } => io::ErrorKind::InvalidData,
            Error::TruncatedFrame { .. } => io::ErrorKind::UnexpectedEof,
            Error::Io { source, .. } => source.kind(),
        }
    }
}

ipc_sync::io_error_conversion!(Error);

/// The result type of ipc-pipe.
pub type Result<T, E = Error> = std::result::Result<T, E>;
