//! How a service is bound and whom it lets in.

use std::time::Duration;

use ipc_socket::Credentials;

/// Whom a service lets in, judged from the credentials the kernel
/// recorded for the client's socket when it connected (`SO_PEERCRED`):
/// its effective user and group then. A client that is turned away gets
/// [`Refusal::Denied`](crate::Refusal::Denied) and no descriptor.
///
/// A service bound at a path is also guarded by its socket file's mode
/// ([`ServiceOptions::mode`]): a client needs write permission on it to
/// connect at all. An abstract name has no file, so this policy is all
/// that guards it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Access {
    /// Clients whose effective user is the service's own, and root
    /// (the default).
    #[default]
    SameUser,
    /// Clients whose effective user is one of `uids` or whose effective
    /// group is one of `gids` (root only if listed).
    Only {
        /// User ids let in.
        uids: Vec<u32>,
        /// Group ids let in.
        gids: Vec<u32>,
    },
    /// Every client that can reach the socket.
    Anyone,
}

impl Access {
    /// Whether a client with these credentials is let in by a service
    /// whose effective user is `own_uid`.
    pub fn allows(&self, peer: &Credentials, own_uid: u32) -> bool {
        match self {
            Access::SameUser => peer.uid == own_uid || peer.uid == 0,
            Access::Only { uids, gids } => uids.contains(&peer.uid) || gids.contains(&peer.gid),
            Access::Anyone => true,
        }
    }
}

/// How a service is bound, whom it lets in, and the size of each
/// connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceOptions {
    /// Whom the service lets in. Default [`Access::SameUser`].
    pub access: Access,
    /// The most clients connected at once, counting those still in their
    /// handshake: one more is refused with
    /// [`Refusal::Full`](crate::Refusal::Full). A client counts until the
    /// service drops its [`Connection`](crate::Connection). Default 64;
    /// at least 1.
    pub max_clients: usize,
    /// The ring of each connection's requests (client to service), in
    /// bytes: a power of two, at least 4096. The longest message is half
    /// of it less 8 bytes. Default 64 KiB.
    pub request_capacity: usize,
    /// The ring of each connection's replies (service to client), as
    /// [`request_capacity`](Self::request_capacity). Default 64 KiB.
    pub reply_capacity: usize,
    /// How long a client may take, once connected, to greet the service;
    /// one that takes longer is dropped. Default 2 s.
    pub handshake_timeout: Duration,
    /// The socket file's mode (write permission lets a process connect).
    /// Default `0o600`; `0o666` for a service that lets other users in
    /// (with [`Access::Only`] or [`Access::Anyone`]).
    pub mode: u32,
}

/// The smallest ring of a connection.
pub const MIN_CAPACITY: usize = 4096;

/// The largest ring of a connection (1 GiB).
pub const MAX_CAPACITY: usize = 1 << 30;

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            access: Access::SameUser,
            max_clients: 64,
            request_capacity: 64 * 1024,
            reply_capacity: 64 * 1024,
            handshake_timeout: Duration::from_secs(2),
            mode: 0o600,
        }
    }
}

impl ServiceOptions {
    /// Checks the options, before anything is bound.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (what, cap) in [("request_capacity", self.request_capacity), ("reply_capacity", self.reply_capacity)] {
            if !cap.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&cap) {
                return Err(format!("{what} {cap} is not a power of two from {MIN_CAPACITY} to {MAX_CAPACITY}"));
            }
        }
        if self.max_clients == 0 {
            return Err("max_clients must be at least 1".into());
        }
        if self.mode & !0o777 != 0 {
            return Err(format!("mode {:o} has bits beyond 0o777", self.mode));
        }
        Ok(())
    }
}
