//! A peer's credentials.

/// Who is at the other end of a connected socket, as the kernel recorded
/// it when the connection was made (`SO_PEERCRED`): the peer's process,
/// user and group then. A process in another PID namespace that this one
/// cannot see has pid 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// The peer's process id, in this process's PID namespace (0 when it
    /// is not visible here).
    pub pid: u32,
    /// Its effective user id.
    pub uid: u32,
    /// Its effective group id.
    pub gid: u32,
}
