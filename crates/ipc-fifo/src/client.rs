use std::fmt;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ipc_pipe::{FrameReader, PIPE_BUF, PipeReader, PipeWriter};
use ipc_sync::Deadline;

use crate::error::{Error, Result};
use crate::fifo::Fifo;
use crate::names::{canonical_dir, reply_prefix, sweep_dead_replies};
use crate::wire::{FRAME_HEADER, MAGIC, MAX_REPLY, REPLY_TICKET, REQUEST_HEADER, TICKET_AT, seal};

/// How often a waiting client checks that the server still lives.
const LIVENESS_EVERY: Duration = Duration::from_millis(50);

/// The client side: a private reply FIFO (made next to the server's,
/// removed when the client goes) and a writer on the server's request
/// FIFO. See [`FifoServer`](crate::FifoServer).
///
/// A client killed before it could remove its reply FIFO leaves it
/// behind; the next client to connect, or the next server to start,
/// removes it, once the kernel shows that no reader has it open.
pub struct FifoClient {
    server: PathBuf,
    requests: PipeWriter,
    reply: Fifo,
    replies: FrameReader<PipeReader>,
    _keepalive: PipeWriter,
    /// The request body's header: pid, room for the ticket, the reply
    /// path.
    header: Vec<u8>,
    /// Tickets are `secret` plus a request's number.
    secret: u64,
    /// The number of requests sent.
    sent: u64,
    /// Requests up to this number were given up: their replies are
    /// dropped.
    abandoned: u64,
}

impl FifoClient {
    /// Connects to the server whose request FIFO is at `server`.
    ///
    /// # Errors
    ///
    /// [`Error::ServerGone`] when no server reads the FIFO;
    /// [`Error::NotFound`]; [`Error::NotAFifo`]; [`Error::PermissionDenied`]
    /// (the client needs write access to the FIFO and its directory);
    /// [`Error::InvalidPath`] when the reply path, made from the server's
    /// path, is too long to fit a request in one atomic write.
    pub fn connect(server: impl AsRef<Path>) -> Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let given = server.as_ref();
        // However the caller spells it (relative, `..`, symbolic links on
        // the way), the client works with the canonical path; the server
        // takes only the reply FIFO's file name.
        let Some(file_name) = given.file_name() else {
            return Err(Error::InvalidPath { path: given.to_owned(), reason: "it does not end in a file name" });
        };
        let server = &canonical_dir(given)?.join(file_name);
        let requests = match Fifo::open(server)?.try_open_writer() {
            Err(Error::NoReader { .. }) => return Err(Error::ServerGone { path: server.to_owned() }),
            other => other?,
        };
        let mut attempt = 0;
        let (reply_path, reply) = loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            // PID.N names it uniquely among live processes; RANDOM, also
            // against a dead client whose pid came back (a reply still on
            // its way to the dead one must not reach this client).
            let mut reply_name = reply_prefix(server);
            reply_name.push(format!("{}.{n}.{:016x}", std::process::id(), random_u64()));
            let reply_path = server.with_file_name(reply_name);
            // The request header carries the reply path: refuse a path that
            // leaves no room for a request in one atomic write, before
            // making anything.
            if FRAME_HEADER + REQUEST_HEADER + reply_path.as_os_str().len() > PIPE_BUF {
                return Err(Error::InvalidPath {
                    path: reply_path,
                    reason: "the reply path leaves no room for a request in one atomic write (PIPE_BUF, 4096 bytes)",
                });
            }
            // A live FIFO of that name (a process with our pid in another
            // PID namespace) is left alone: take the next name.
            // The reply FIFO appears with its reader open, so no one
            // sweeping dead clients' FIFOs takes it for one.
            let opened = Fifo::create_published(&reply_path, 0o600, true, |f| {
                let reader = f.try_open_reader()?;
                let keepalive = f.try_open_writer()?;
                Ok((reader, keepalive))
            });
            match opened {
                Err(Error::InUse { .. }) if attempt < 100 => attempt += 1,
                other => break (reply_path, other?),
            }
        };
        let (reply, (reader, keepalive)) = reply;
        sweep_dead_replies(server);
        let path_bytes = reply_path.as_os_str().as_bytes();
        let path_len = u16::try_from(path_bytes.len()).unwrap_or(u16::MAX); // under PIPE_BUF, checked above
        let mut header = Vec::with_capacity(REQUEST_HEADER + path_bytes.len());
        header.extend_from_slice(&std::process::id().to_le_bytes());
        header.extend_from_slice(&[0; 8]); // the ticket, per request
        header.extend_from_slice(&path_len.to_le_bytes());
        header.extend_from_slice(path_bytes);
        Ok(FifoClient {
            server: server.to_owned(),
            requests,
            reply,
            replies: FrameReader::with_max(reader, REPLY_TICKET + MAX_REPLY),
            _keepalive: keepalive,
            header,
            secret: random_u64(),
            sent: 0,
            abandoned: 0,
        })
    }

    /// The most payload one request carries: `PIPE_BUF` less the headers
    /// and this client's reply path (possibly 0, never more than
    /// `PIPE_BUF`; [`connect`](Self::connect) refuses a reply path that
    /// leaves no room at all).
    pub fn max_request(&self) -> usize {
        PIPE_BUF.saturating_sub(FRAME_HEADER + self.header.len())
    }

    /// Sends a request and waits for the reply, checking every 50 ms that
    /// the server is still there: that the FIFO this client writes to
    /// still has a reader (the server it connected to, not one that took
    /// its path since).
    ///
    /// # Errors
    ///
    /// [`Error::RequestTooLarge`] before anything is sent;
    /// [`Error::ServerGone`] when the server is gone before replying.
    pub fn request(&mut self, payload: &[u8]) -> Result<Vec<u8>> {
        self.send_request(payload)?;
        self.recv_reply_until(Deadline::never())
    }

    /// Like [`request`](Self::request), waiting at most `timeout` in all:
    /// for room in the request FIFO (while the server is busy and the FIFO
    /// full) and for the reply.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] (nothing was sent when the FIFO stayed full),
    /// and as for [`request`](Self::request). After a timeout waiting for
    /// the reply, the request is given up: a late reply to it is dropped,
    /// and the next request gets its own.
    pub fn request_timeout(&mut self, payload: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        let deadline = Deadline::after(timeout);
        self.send_request_until(payload, deadline)?;
        let reply = self.recv_reply_until(deadline);
        if let Err(Error::Timeout { .. }) = reply {
            self.abandoned = self.sent;
        }
        reply
    }

    /// Sends a request without waiting for its reply. While the request
    /// FIFO is full (a busy server), it waits for room.
    ///
    /// # Errors
    ///
    /// As for [`request`](Self::request).
    pub fn send_request(&mut self, payload: &[u8]) -> Result<()> {
        self.send_request_until(payload, Deadline::never())
    }

    /// Sends a request, waiting until `deadline` at the latest for room in
    /// the request FIFO (trying once when it has passed).
    fn send_request_until(&mut self, payload: &[u8], deadline: Deadline) -> Result<()> {
        let max = self.max_request();
        if payload.len() > max {
            return Err(Error::RequestTooLarge { len: payload.len(), max });
        }
        let number = self.sent + 1;
        let mut msg = Vec::with_capacity(FRAME_HEADER + self.header.len() + payload.len());
        msg.extend_from_slice(&MAGIC);
        msg.extend_from_slice(&[0; FRAME_HEADER - MAGIC.len()]);
        msg.extend_from_slice(&self.header);
        let at = FRAME_HEADER + TICKET_AT;
        msg[at..at + 8].copy_from_slice(&self.secret.wrapping_add(number).to_le_bytes());
        msg.extend_from_slice(payload);
        seal(&mut msg);
        // One atomic write: requests from many clients never interleave.
        let written = match deadline.remaining() {
            None => self.requests.write_atomic(&msg),
            Some(left) => self.requests.write_atomic_timeout(&msg, left),
        };
        written.map_err(|e| match e {
            ipc_pipe::Error::BrokenPipe => Error::ServerGone { path: self.server.clone() },
            ipc_pipe::Error::Timeout => Error::Timeout { path: self.server.clone() },
            other => Error::Io { op: "write request", path: self.server.clone(), source: other.into() },
        })?;
        self.sent = number;
        Ok(())
    }

    /// Waits for the next reply to a request sent with
    /// [`send_request`](Self::send_request). Only a reply to a request of
    /// this client's that it still waits for is taken; anything else in
    /// its reply FIFO is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::ServerGone`]; [`Error::ClientStalled`] when the server
    /// gave up on a reply this client did not read in time and removed its
    /// reply FIFO (connect again).
    pub fn recv_reply(&mut self) -> Result<Vec<u8>> {
        self.recv_reply_until(Deadline::never())
    }

    fn recv_reply_until(&mut self, deadline: Deadline) -> Result<Vec<u8>> {
        let mut reply = Vec::new();
        loop {
            let slice = match deadline.remaining() {
                Some(left) => left.min(LIVENESS_EVERY),
                None => LIVENESS_EVERY,
            };
            match self.replies.recv_timeout(&mut reply, slice) {
                Ok(Some(_)) => {
                    if let Some(ticket) = reply.get(..REPLY_TICKET) {
                        let mut t = [0u8; REPLY_TICKET];
                        t.copy_from_slice(ticket);
                        let number = u64::from_le_bytes(t).wrapping_sub(self.secret);
                        if number > self.abandoned && number <= self.sent {
                            reply.drain(..REPLY_TICKET);
                            return Ok(reply);
                        }
                    }
                    // Forged, or late: not for a request still waiting.
                    // Dropped; the checks below still run, so a flood of
                    // such frames holds no wait past its deadline.
                }
                Ok(None) => return Err(Error::ServerGone { path: self.server.clone() }),
                Err(ipc_pipe::Error::Timeout) => {}
                Err(e) => {
                    return Err(Error::Io { op: "read reply", path: self.reply.path().to_owned(), source: e.into() });
                }
            }
            // Still no reply: does the FIFO this client wrote to still
            // have its reader (a server that took its path since, after a
            // crash, never saw the request), and is anyone reading
            // requests at the path?
            if crate::sys::readers_gone(self.requests.as_fd()).unwrap_or(false) {
                return Err(Error::ServerGone { path: self.server.clone() });
            }
            if let Err(Error::NoReader { .. } | Error::NotFound { .. }) =
                Fifo::open(&self.server).and_then(|f| f.try_open_writer())
            {
                return Err(Error::ServerGone { path: self.server.clone() });
            }
            // Is the reply FIFO still this client's (the server removes it
            // when it cuts a client off)?
            if self.reply.made_is_there() == Some(false) {
                return Err(Error::ClientStalled { pid: std::process::id(), path: self.reply.path().to_owned() });
            }
            if deadline.has_expired() {
                return Err(Error::Timeout { path: self.server.clone() });
            }
        }
    }

    /// This client's reply FIFO.
    pub fn reply_path(&self) -> &Path {
        self.reply.path()
    }
}

impl fmt::Debug for FifoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FifoClient").field("server", &self.server).field("reply", &self.reply.path()).finish()
    }
}

/// 64 bits from the kernel's random source, read anew in each process
/// (std's `RandomState` keys are drawn once per thread, and a forked
/// child would draw what its parent's other children drew). Without
/// /dev/urandom, the clock's nanoseconds and std's keys.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_ok() {
        return u64::from_le_bytes(bytes);
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    h.finish()
}
