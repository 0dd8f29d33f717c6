//! Requests and their replies over a connection, matched by a
//! correlation id: [`Requester`] at the client, [`Responder`] at the
//! service.
//!
//! Each message starts with the request's id, 8 bytes little-endian,
//! and its reply carries the same id back. A client may have many
//! requests outstanding and the service may answer them in any order.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use ipc_sync::Deadline;
use ipc_sync::ready::{Interest, Pollable, Source};

use crate::connection::Connection;
use crate::error::{Error, Result};

/// The bytes of the id before each request and reply.
const ID_LEN: usize = 8;

/// The correlation id of a request, which its reply carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// A message split into its id and payload.
fn split(msg: &[u8]) -> Result<(RequestId, &[u8])> {
    match msg.split_first_chunk::<ID_LEN>() {
        Some((id, payload)) => Ok((RequestId(u64::from_le_bytes(*id)), payload)),
        None => Err(Error::Malformed { reason: format!("{} bytes, shorter than a request id", msg.len()) }),
    }
}

/// Sends `payload` tagged with `id`.
fn send_tagged(conn: &mut Connection, deadline: Option<Deadline>, id: RequestId, payload: &[u8]) -> Result<()> {
    let max = conn.max_message().saturating_sub(ID_LEN);
    if payload.len() > max {
        return Err(Error::MessageTooLarge { len: payload.len(), max });
    }
    let write = |b: &mut [u8]| {
        b[..ID_LEN].copy_from_slice(&id.0.to_le_bytes());
        b[ID_LEN..].copy_from_slice(payload);
    };
    let len = ID_LEN + payload.len();
    let sender = conn.sender();
    match deadline {
        None => sender.try_send_with(len, write),
        Some(d) => match d.remaining() {
            None => sender.send_with(len, write),
            Some(left) => sender.send_with_timeout(len, left, write),
        },
    }
}

/// Receives the next message with `f`, waiting as `deadline` says
/// (`None`: not at all).
fn recv_tagged<R>(
    conn: &mut Connection,
    deadline: Option<Deadline>,
    f: impl FnOnce(RequestId, &[u8]) -> R,
) -> Result<R> {
    let take = |msg: &[u8]| split(msg).map(|(id, payload)| f(id, payload));
    let receiver = conn.receiver();
    match deadline {
        None => receiver.try_recv_with(take)?,
        Some(d) => match d.remaining() {
            None => receiver.recv_with(take)?,
            Some(left) => receiver.recv_with_timeout(left, take)?,
        },
    }
}

/// The client's end of a connection used for requests and replies.
///
/// [`call`](Self::call) sends a request and waits for its reply; or
/// [`send_request`](Self::send_request) several and
/// [`recv_reply`](Self::recv_reply) each by its id, in any order. A reply
/// that comes for another outstanding request is kept until asked for.
#[derive(Debug)]
pub struct Requester {
    conn: Connection,
    next: u64,
    outstanding: HashSet<u64>,
    early: HashMap<u64, Vec<u8>>,
}

impl Requester {
    /// Requests and replies over `conn`, a client's connection.
    pub fn new(conn: Connection) -> Requester {
        Requester { conn, next: 1, outstanding: HashSet::new(), early: HashMap::new() }
    }

    /// Sends a request, waiting for room; returns its id.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`] over the connection's longest message
    /// less the 8 bytes of the id; as for [`Sender::send`](crate::Sender::send).
    pub fn send_request(&mut self, request: &[u8]) -> Result<RequestId> {
        let id = RequestId(self.next);
        send_tagged(&mut self.conn, Some(Deadline::never()), id, request)?;
        self.next += 1;
        self.outstanding.insert(id.0);
        Ok(id)
    }

    /// Waits for the reply to the request `id` and puts it in `reply`;
    /// returns its length.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for an `id` that is not outstanding, and for
    /// a message from the service that is not a reply to an outstanding
    /// request (it is dropped); as for [`Receiver::recv`](crate::Receiver::recv).
    pub fn recv_reply(&mut self, id: RequestId, reply: &mut Vec<u8>) -> Result<usize> {
        self.reply_until(id, Some(Deadline::never()), reply)
    }

    /// As [`recv_reply`](Self::recv_reply) if the reply is here.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`], and as for [`recv_reply`](Self::recv_reply).
    pub fn try_recv_reply(&mut self, id: RequestId, reply: &mut Vec<u8>) -> Result<usize> {
        self.reply_until(id, None, reply)
    }

    /// As [`recv_reply`](Self::recv_reply), waiting at most `timeout`.
    /// The request stays outstanding after a timeout.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`recv_reply`](Self::recv_reply).
    pub fn recv_reply_timeout(&mut self, id: RequestId, reply: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        self.reply_until(id, Some(Deadline::after(timeout)), reply)
    }

    /// Sends `request` and waits for its reply.
    ///
    /// # Errors
    ///
    /// As for [`send_request`](Self::send_request) and [`recv_reply`](Self::recv_reply).
    pub fn call(&mut self, request: &[u8], reply: &mut Vec<u8>) -> Result<usize> {
        let id = self.send_request(request)?;
        self.recv_reply(id, reply)
    }

    /// As [`call`](Self::call), within `timeout` in all.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] (the request may have been sent, and stays
    /// outstanding), and as for [`call`](Self::call).
    pub fn call_timeout(&mut self, request: &[u8], reply: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        let deadline = Deadline::after(timeout);
        let id = RequestId(self.next);
        send_tagged(&mut self.conn, Some(deadline), id, request)?;
        self.next += 1;
        self.outstanding.insert(id.0);
        self.reply_until(id, Some(deadline), reply)
    }

    fn reply_until(&mut self, id: RequestId, deadline: Option<Deadline>, reply: &mut Vec<u8>) -> Result<usize> {
        if !self.outstanding.contains(&id.0) {
            return Err(Error::Malformed { reason: format!("request {} is not outstanding", id.0) });
        }
        if let Some(early) = self.early.remove(&id.0) {
            self.outstanding.remove(&id.0);
            *reply = early;
            return Ok(reply.len());
        }
        loop {
            let (outstanding, early) = (&self.outstanding, &mut self.early);
            let got = recv_tagged(&mut self.conn, deadline, |got, payload| {
                if got == id {
                    reply.clear();
                    reply.extend_from_slice(payload);
                    Ok(true)
                } else if outstanding.contains(&got.0) && !early.contains_key(&got.0) {
                    early.insert(got.0, payload.to_vec());
                    Ok(false)
                } else {
                    Err(Error::Malformed { reason: format!("a reply to request {}, which is not outstanding", got.0) })
                }
            })??;
            if got {
                self.outstanding.remove(&id.0);
                return Ok(reply.len());
            }
        }
    }

    /// The requests sent whose replies have not been taken.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// The connection under it.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The connection back.
    pub fn into_inner(self) -> Connection {
        self.conn
    }
}

/// The service's end of a connection used for requests and replies: it
/// receives each request with its id and replies under that id.
#[derive(Debug)]
pub struct Responder {
    conn: Connection,
}

impl Responder {
    /// Requests and replies over `conn`, a service's connection.
    pub fn new(conn: Connection) -> Responder {
        Responder { conn }
    }

    /// Waits for the next request and calls `f` with its id and bytes, in
    /// place in the shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for a message shorter than an id (it is
    /// dropped); as for [`Receiver::recv_with`](crate::Receiver::recv_with).
    pub fn recv_request_with<R>(&mut self, f: impl FnOnce(RequestId, &[u8]) -> R) -> Result<R> {
        recv_tagged(&mut self.conn, Some(Deadline::never()), f)
    }

    /// Waits for the next request and puts its bytes in `buf`; returns
    /// its id.
    ///
    /// # Errors
    ///
    /// As for [`recv_request_with`](Self::recv_request_with).
    pub fn recv_request(&mut self, buf: &mut Vec<u8>) -> Result<RequestId> {
        recv_tagged(&mut self.conn, Some(Deadline::never()), |id, b| copy(buf, id, b))
    }

    /// As [`recv_request`](Self::recv_request) if a request is waiting.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`], and as for [`recv_request`](Self::recv_request).
    pub fn try_recv_request(&mut self, buf: &mut Vec<u8>) -> Result<RequestId> {
        recv_tagged(&mut self.conn, None, |id, b| copy(buf, id, b))
    }

    /// As [`recv_request`](Self::recv_request), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`recv_request`](Self::recv_request).
    pub fn recv_request_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<RequestId> {
        recv_tagged(&mut self.conn, Some(Deadline::after(timeout)), |id, b| copy(buf, id, b))
    }

    /// Sends the reply to the request `id`, waiting for room.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`] over the longest message less 8 bytes;
    /// as for [`Sender::send`](crate::Sender::send).
    pub fn reply(&mut self, id: RequestId, reply: &[u8]) -> Result<()> {
        send_tagged(&mut self.conn, Some(Deadline::never()), id, reply)
    }

    /// As [`reply`](Self::reply) if there is room now.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`], and as for [`reply`](Self::reply).
    pub fn try_reply(&mut self, id: RequestId, reply: &[u8]) -> Result<()> {
        send_tagged(&mut self.conn, None, id, reply)
    }

    /// As [`reply`](Self::reply), waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`reply`](Self::reply).
    pub fn reply_timeout(&mut self, id: RequestId, reply: &[u8], timeout: Duration) -> Result<()> {
        send_tagged(&mut self.conn, Some(Deadline::after(timeout)), id, reply)
    }

    /// The connection under it.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The connection back.
    pub fn into_inner(self) -> Connection {
        self.conn
    }
}

fn copy(buf: &mut Vec<u8>, id: RequestId, bytes: &[u8]) -> RequestId {
    buf.clear();
    buf.extend_from_slice(bytes);
    id
}

/// Readable when a reply (or the peer's going) may be there.
impl Pollable for Requester {
    fn source(&self, interest: Interest) -> std::io::Result<Option<Source<'_>>> {
        self.conn.source(interest)
    }

    fn polls_cheaply(&self) -> bool {
        true
    }
}

/// Readable when a request (or the peer's going) may be there.
impl Pollable for Responder {
    fn source(&self, interest: Interest) -> std::io::Result<Option<Source<'_>>> {
        self.conn.source(interest)
    }

    fn polls_cheaply(&self) -> bool {
        true
    }
}
