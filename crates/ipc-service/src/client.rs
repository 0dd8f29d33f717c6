//! The client's end: [`connect`] to a service by its name.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use ipc_shm::ByteChannel;
use ipc_shm::channel::Handoff;
use ipc_socket::{SeqpacketSocket, SocketName};
use ipc_sync::Deadline;

use crate::connection::{Connection, Receiver, Sender};
use crate::error::{Error, Result};
use crate::link::Link;
use crate::wire::{self, Answer};

/// Connects to the service bound at `name` and waits for its answer:
/// the client's end of a new [`Connection`], sending requests and
/// receiving replies.
///
/// # Errors
///
/// - [`Error::Refused`] when the service turned this client away (access,
///   a full service, …): no descriptor was received;
/// - [`Error::Socket`] when no service is there (`NotFound`, `Refused`
///   for a stale socket file, `PermissionDenied` by the file's mode);
/// - [`Error::Disconnected`] when the service went before it answered;
/// - [`Error::Handshake`] when what came back is not a service's answer
///   with a sealed channel of the announced size;
/// - [`Error::OutOfDescriptors`] when this process has no room for the
///   connection's descriptors (nothing is left open).
pub fn connect(name: &SocketName) -> Result<Connection> {
    connect_until(name, Deadline::never())
}

/// As [`connect`], giving up after `timeout` (also when the service does
/// not accept or answer in time).
///
/// # Errors
///
/// [`Error::Timeout`], and as for [`connect`].
pub fn connect_timeout(name: &SocketName, timeout: Duration) -> Result<Connection> {
    connect_until(name, Deadline::after(timeout))
}

/// As [`connect`], giving up at `deadline`.
///
/// # Errors
///
/// [`Error::Timeout`], and as for [`connect`].
pub fn connect_deadline(name: &SocketName, deadline: Instant) -> Result<Connection> {
    connect_until(name, Deadline::at(deadline))
}

fn connect_until(name: &SocketName, deadline: Deadline) -> Result<Connection> {
    let socket = match deadline.instant() {
        None => SeqpacketSocket::connect(name)?,
        Some(at) => SeqpacketSocket::connect_deadline(name, at)?,
    };
    // A fresh socket has room for the greeting. A service that turned
    // this client away as it connected has answered and closed already:
    // the greeting then finds no one, and the answer is read all the same.
    match socket.try_send(&wire::hello()) {
        Ok(()) | Err(ipc_socket::Error::Disconnected) => {}
        Err(e) => return Err(e.into()),
    }
    let mut buf = [0u8; wire::ANSWER_LEN + 1];
    let mut got = match deadline.remaining() {
        None => socket.recv_with_fds(&mut buf, wire::WELCOME_FDS),
        Some(left) => socket.recv_with_fds_timeout(&mut buf, wire::WELCOME_FDS, left),
    };
    if matches!(got, Err(ipc_socket::Error::Disconnected)) {
        // A service that closed with our greeting unread makes the first
        // receive fail (`ECONNRESET`), its answer still queued behind.
        got = socket.try_recv_with_fds(&mut buf, wire::WELCOME_FDS).map_err(|e| match e {
            ipc_socket::Error::WouldBlock => ipc_socket::Error::Disconnected,
            e => e,
        });
    }
    let (n, fds) = match got {
        Ok(got) => got,
        Err(e @ (ipc_socket::Error::FdsTruncated { .. } | ipc_socket::Error::Truncated { .. })) => {
            return Err(Error::handshake(format!("the service's answer: {e}")));
        }
        Err(e) => return Err(e.into()),
    };
    match wire::read_answer(&buf[..n])? {
        Answer::Refused(reason) => Err(Error::Refused { name: name.to_string(), reason }),
        Answer::Welcome { requests, replies } => {
            let (sender, receiver) = open(fds, requests, replies)?;
            let peer = socket.peer_credentials()?;
            let link = Link::new(socket, None);
            Ok(Connection::new(
                Sender::new(sender.0, sender.1, &link)?,
                Receiver::new(receiver.0, receiver.1, &link)?,
                peer,
            ))
        }
    }
}

/// Opens the two channels a welcome carried, checking each, and claims
/// the client's sides.
type Sides = ((ipc_shm::ByteSender, usize), (ipc_shm::ByteReceiver, usize));

fn open(fds: Vec<OwnedFd>, requests: u64, replies: u64) -> Result<Sides> {
    if fds.len() != wire::WELCOME_FDS {
        return Err(Error::handshake(format!(
            "the welcome carried {} descriptors, not {}",
            fds.len(),
            wire::WELCOME_FDS
        )));
    }
    let mut fds = fds.into_iter();
    let mut channel = |capacity: u64, what: &str| -> Result<ByteChannel> {
        let (Some(memfd), Some(a), Some(b)) = (fds.next(), fds.next(), fds.next()) else {
            return Err(Error::handshake("too few descriptors"));
        };
        let refused = |e: ipc_shm::Error| match Error::from(e) {
            e @ Error::OutOfDescriptors { .. } => e,
            e => Error::handshake(format!("the {what} channel: {e}")),
        };
        let chan = ByteChannel::from_handoff(Handoff::from_fds(memfd, [a, b]).map_err(refused)?).map_err(refused)?;
        if chan.capacity() as u64 != capacity {
            return Err(Error::handshake(format!(
                "the {what} channel holds {} bytes, not the {capacity} announced",
                chan.capacity()
            )));
        }
        Ok(chan)
    };
    let requests = channel(requests, "request")?;
    let replies = channel(replies, "reply")?;
    // One ring handed for both ways would bring a client its own requests.
    let file =
        |chan: &ByteChannel| chan.memfd().and_then(|m| nix::sys::stat::fstat(m).ok()).map(|st| (st.st_dev, st.st_ino));
    if file(&requests).is_none() || file(&requests) == file(&replies) {
        return Err(Error::handshake("the request and reply rings are not two memfds"));
    }
    let claim = |e: ipc_shm::Error| match Error::from(e) {
        e @ Error::OutOfDescriptors { .. } => e,
        e => Error::handshake(format!("claiming a side: {e}")),
    };
    Ok((
        (requests.sender().map_err(claim)?, requests.max_record()),
        (replies.receiver().map_err(claim)?, replies.max_record()),
    ))
}
