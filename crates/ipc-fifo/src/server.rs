use std::ffi::OsStr;
use std::fmt;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipc_pipe::{PIPE_BUF, PipeReader, PipeWriter};
use ipc_sync::Deadline;
use ipc_sync::os::{PollFd, PollFlags};

use crate::error::{Error, Result};
use crate::fifo::Fifo;
use crate::names::{canonical_dir, reply_prefix, sweep_dead_replies};
use crate::outbox::{OpenFailed, Outbox, Sent};
use crate::wire::{MAX_REPLY, REPLY_TICKET, REQUEST_HEADER, TICKET_AT, take_frame};

/// A request a [`FifoServer`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The pid the client gave.
    pub client_pid: u32,
    /// What the client asked.
    pub payload: Vec<u8>,
    pub(crate) reply_path: PathBuf,
    pub(crate) ticket: u64,
}

impl Request {
    /// The client's reply FIFO.
    pub fn reply_path(&self) -> &Path {
        &self.reply_path
    }
}

/// The server side of two-way traffic over named pipes: a well-known
/// request FIFO that any number of [`FifoClient`](crate::FifoClient)s write to, and a private
/// reply FIFO per client.
///
/// Each request is one atomic write (at most `PIPE_BUF` bytes), so
/// requests never interleave. The server keeps a writer of its own on the
/// request FIFO, so it never sees end of file when clients come and go. A
/// client that died before its reply is noticed when replying (its reply
/// FIFO has no reader): the reply FIFO is removed and
/// [`Error::ClientGone`] returned; the server goes on. A client that does
/// not read never holds the server either: a reply that does not fit in
/// its reply FIFO waits in the server (see [`reply`](Self::reply)).
///
/// Any process may write any bytes into the request FIFO: what is not a
/// whole, checked request frame is skipped, and the server goes on with
/// the next one, so garbage, or a writer killed mid-write, never stops
/// service for honest clients. A payload may hold any bytes, request
/// frames among them: they stay payload.
///
/// Reply FIFOs sit in the request FIFO's directory and are named after it
/// (`NAME.reply.…`). A request names its reply FIFO; the server takes
/// only the file name, which must be one of those (else the request is
/// [`Error::BadRequest`]), and opens it in its own directory, never
/// elsewhere. So a client cannot make the server write into other FIFOs,
/// and a client that reaches the directory by another path (relative,
/// through `..` or symbolic links, or through a bind mount in another
/// mount namespace) is answered all the same.
///
/// # Examples
///
/// ```
/// use ipc_fifo::{FifoClient, FifoServer};
///
/// let path = std::env::temp_dir().join(format!("ipc-fifo-server-doc-{}", std::process::id()));
/// let mut server = FifoServer::create(&path, 0o600)?;
/// let mut client = FifoClient::connect(&path)?;
/// // In one process for the example: send, serve, then read the reply.
/// client.send_request(b"2 + 2")?;
/// let req = server.recv()?;
/// server.reply(&req, b"4")?;
/// assert_eq!(client.recv_reply()?, b"4");
/// # Ok::<(), ipc_fifo::Error>(())
/// ```
pub struct FifoServer {
    fifo: Fifo,
    /// The request FIFO's directory, canonical: where reply FIFOs live.
    dir: PathBuf,
    requests: PipeReader,
    /// Bytes read and not yet taken: at most one partial frame (under
    /// `PIPE_BUF`) between calls.
    pending: Vec<u8>,
    _keepalive: PipeWriter,
    /// Replies not written yet.
    outbox: Outbox,
}

impl FifoServer {
    /// The most bytes of replies queued for one client that has not read
    /// them (see [`reply`](Self::reply)): two of the largest replies.
    pub const QUEUE_PER_CLIENT: usize = crate::outbox::PER_CLIENT;
    /// The most bytes of replies queued for all clients together.
    pub const QUEUE_TOTAL: usize = crate::outbox::TOTAL;
    /// The most clients with replies queued for them at once.
    pub const QUEUE_CLIENTS: usize = crate::outbox::CLIENTS;

    /// Makes the request FIFO at `path` (exclusive; after a crash, use
    /// [`create_replacing`](Self::create_replacing)) and opens it. The
    /// FIFO appears at `path` only with the server's reader open, so
    /// [`create_replacing`](Self::create_replacing) elsewhere never takes
    /// a starting server for a stale one.
    ///
    /// # Errors
    ///
    /// As for [`Fifo::create`].
    pub fn create(path: impl AsRef<Path>, mode: u32) -> Result<Self> {
        Self::serve(path.as_ref(), mode, false)
    }

    /// Like [`create`](Self::create), first removing a FIFO a crashed
    /// server left at `path`: only one no reader has open. A live server's
    /// FIFO is left alone.
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] when a server (any reader) has the FIFO at `path`
    /// open; as for [`Fifo::create_replacing`].
    pub fn create_replacing(path: impl AsRef<Path>, mode: u32) -> Result<Self> {
        Self::serve(path.as_ref(), mode, true)
    }

    fn serve(path: &Path, mode: u32, replace: bool) -> Result<Self> {
        let dir = canonical_dir(path)?;
        let (fifo, (reader, keepalive)) = Fifo::create_published(path, mode, replace, |fifo| {
            let reader = fifo.try_open_reader()?;
            let keepalive = fifo.try_open_writer()?;
            Ok((reader, keepalive))
        })?;
        sweep_dead_replies(&dir.join(fifo.path().file_name().unwrap_or_default()));
        Ok(FifoServer {
            dir,
            requests: reader,
            pending: Vec::with_capacity(2 * PIPE_BUF),
            fifo,
            _keepalive: keepalive,
            outbox: Outbox::default(),
        })
    }

    /// The request FIFO's path, which clients connect to.
    pub fn path(&self) -> &Path {
        self.fifo.path()
    }

    /// Waits for the next request.
    ///
    /// Bytes in the request FIFO that are not a well-formed request frame
    /// (from a broken or hostile writer, or one killed mid-write) are
    /// skipped; the server goes on with the next frame.
    ///
    /// # Errors
    ///
    /// [`Error::BadRequest`] for a well-formed frame with a malformed
    /// request in it (it is dropped and the server can go on);
    /// [`Error::Io`].
    pub fn recv(&mut self) -> Result<Request> {
        self.recv_until(Deadline::never())
    }

    /// Waits at most `timeout` for the next request; a zero timeout takes
    /// one that is already there, however much garbage was written before
    /// it. Garbage that keeps flowing does not hold it past its deadline
    /// by more than reading what was in the FIFO when it began.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`recv`](Self::recv).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Request> {
        self.recv_until(Deadline::after(timeout))
    }

    fn recv_until(&mut self, deadline: Deadline) -> Result<Request> {
        let mut chunk = [0u8; PIPE_BUF];
        // Whether the FIFO was found empty since the last bytes were read:
        // then every frame begun in `pending` that is still short is not
        // an honest one (its write was atomic, so its rest would be here),
        // and frames inside its span may be taken.
        let mut drained = false;
        // Writers that never stop pouring garbage in must not keep a timed
        // receive reading past its deadline; but what was in the FIFO when
        // it began is always looked at (a zero timeout takes any request
        // that was there).
        let mut budget = self.requests.available().unwrap_or(0) + PIPE_BUF;
        loop {
            self.outbox.pump();
            if let Some(body) = take_frame(&mut self.pending, drained) {
                return self.parse(body);
            }
            if budget == 0 && deadline.has_expired() {
                return Err(Error::Timeout { path: self.path().to_owned() });
            }
            let n = match self.requests.try_read(&mut chunk) {
                Err(ipc_pipe::Error::WouldBlock) if !drained => {
                    drained = true;
                    continue;
                }
                Err(ipc_pipe::Error::WouldBlock) => {
                    if deadline.has_expired() {
                        return Err(Error::Timeout { path: self.path().to_owned() });
                    }
                    // For a request, or room for queued replies.
                    self.wait(true, deadline)?;
                    continue;
                }
                Ok(n) => n,
                Err(e) => return Err(Error::Io { op: "read request", path: self.path().to_owned(), source: e.into() }),
            };
            budget = budget.saturating_sub(n);
            if n == 0 {
                return Err(self.eof());
            }
            drained = false;
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }

    fn eof(&self) -> Error {
        // Cannot happen while we hold a writer; say so plainly if it does.
        Error::Io { op: "read request", path: self.path().to_owned(), source: std::io::ErrorKind::UnexpectedEof.into() }
    }

    fn parse(&self, frame: Vec<u8>) -> Result<Request> {
        let bad = |reason: String| Err(Error::BadRequest { reason });
        if frame.len() < REQUEST_HEADER {
            return bad(format!("{} bytes is shorter than the request header", frame.len()));
        }
        let client_pid = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let mut ticket = [0u8; 8];
        ticket.copy_from_slice(&frame[TICKET_AT..TICKET_AT + 8]);
        let ticket = u64::from_le_bytes(ticket);
        let path_len = usize::from(u16::from_le_bytes([frame[12], frame[13]]));
        let Some(path) = frame.get(REQUEST_HEADER..REQUEST_HEADER + path_len) else {
            return bad(format!("a reply path of {path_len} bytes in a {}-byte request", frame.len()));
        };
        let given = Path::new(OsStr::from_bytes(path));
        let Some(reply_path) = self.own_reply_path(given) else {
            return bad(format!("reply path {} is not named after this server's FIFO", given.display()));
        };
        let payload = frame[REQUEST_HEADER + path_len..].to_vec();
        Ok(Request { client_pid, payload, reply_path, ticket })
    }

    /// The reply FIFO `reply` names, as a path in this server's
    /// directory: its file name, when that is named after the request
    /// FIFO. The directory the client gave is not used: the server's own
    /// spelling of its directory cannot lead elsewhere, and a client that
    /// sees the directory under another path (another mount namespace)
    /// still names the same FIFO.
    fn own_reply_path(&self, reply: &Path) -> Option<PathBuf> {
        let name = reply.file_name()?;
        let prefix = reply_prefix(self.path());
        let named = name.as_bytes().starts_with(prefix.as_bytes());
        (named && !name.as_bytes().contains(&b'\0')).then(|| self.dir.join(name))
    }

    /// Sends `data` as the reply to `request`. It never waits for the
    /// client: what does not fit in its reply FIFO now is queued and
    /// written as the client reads, while this server waits in
    /// [`recv`](Self::recv), [`recv_timeout`](Self::recv_timeout) or
    /// [`flush_timeout`](Self::flush_timeout). So a client that does not
    /// read its replies costs the server memory, never time: at most
    /// [`QUEUE_PER_CLIENT`](Self::QUEUE_PER_CLIENT) bytes for one client.
    /// A reply that would pass that bound cuts the client off: its reply
    /// FIFO is removed, and the client learns it ([`Error::ClientStalled`])
    /// and may connect again. Across clients, at most
    /// [`QUEUE_TOTAL`](Self::QUEUE_TOTAL) bytes and
    /// [`QUEUE_CLIENTS`](Self::QUEUE_CLIENTS) clients wait, and a reply
    /// FIFO that cannot be opened for want of file descriptors is retried:
    /// to make room, the queues that went longest without their client
    /// reading are cut off first, so clients that read keep being served
    /// beside any number that do not. Replies to one client reach it in
    /// the order they are sent.
    ///
    /// Any process that may write requests, and can list the directory,
    /// can send requests naming an idle client's reply FIFO and so get it
    /// cut off: where requesters are not trusted, give the directory mode
    /// 1733 (others may make FIFOs in it but not list it); reply FIFO names
    /// carry 64 random bits.
    ///
    /// # Errors
    ///
    /// [`Error::ClientGone`] when the client's reply FIFO has no reader
    /// (the FIFO is then removed); [`Error::ClientStalled`] when the client
    /// was cut off; [`Error::NotAFifo`] when something else sits at the
    /// reply path; [`Error::RequestTooLarge`] for a reply over 16 MiB;
    /// [`Error::Io`].
    pub fn reply(&mut self, request: &Request, data: &[u8]) -> Result<()> {
        let gone = || Error::ClientGone { pid: request.client_pid, path: request.reply_path.clone() };
        if data.len() > MAX_REPLY {
            return Err(Error::RequestTooLarge { len: data.len(), max: MAX_REPLY });
        }
        // One frame, in the format of `FrameWriter`: length, then the
        // ticket and the reply.
        let body_len = u32::try_from(REPLY_TICKET + data.len()).unwrap_or(u32::MAX); // under MAX_REPLY + 8
        let mut frame = Vec::with_capacity(4 + REPLY_TICKET + data.len());
        frame.extend_from_slice(&body_len.to_le_bytes());
        frame.extend_from_slice(&request.ticket.to_le_bytes());
        frame.extend_from_slice(data);
        let mut failed = None;
        let open = || {
            let opened = Fifo::open(&request.reply_path).and_then(|fifo| fifo.try_open_writer());
            match opened {
                Ok(writer) => Ok(writer),
                Err(Error::NotFound { .. }) => Err(OpenFailed::Gone),
                Err(Error::NoReader { .. }) => {
                    // A dead client's leftover: removed if still stale (no
                    // reader has it open, and it is the same FIFO).
                    let _ = crate::fifo::remove_if_stale(&request.reply_path);
                    Err(OpenFailed::Gone)
                }
                Err(Error::Io { source, .. }) if matches!(source.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    Err(OpenFailed::NoFd)
                }
                Err(e) => {
                    failed = Some(e);
                    Err(OpenFailed::Other)
                }
            }
        };
        match self.outbox.send(&request.reply_path, open, &frame) {
            Sent::Done => Ok(()),
            Sent::Gone => Err(failed.unwrap_or_else(gone)),
            Sent::Stalled => Err(Error::ClientStalled { pid: request.client_pid, path: request.reply_path.clone() }),
        }
    }

    /// Waits at most `timeout` until every queued reply is written (see
    /// [`reply`](Self::reply)), taking no requests meanwhile; a zero
    /// timeout writes what fits now.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] with replies still queued; [`Error::Io`].
    pub fn flush_timeout(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Deadline::after(timeout);
        loop {
            self.outbox.pump();
            if self.outbox.bytes() == 0 {
                return Ok(());
            }
            if deadline.has_expired() {
                return Err(Error::Timeout { path: self.path().to_owned() });
            }
            self.wait(false, deadline)?;
        }
    }

    /// The bytes of replies queued for clients that have not read them
    /// yet.
    pub fn queued(&self) -> usize {
        self.outbox.bytes()
    }

    /// Waits until `deadline` for a request to read (when `requests`) or
    /// room in a reply FIFO with bytes queued for it; returns early on a
    /// signal.
    fn wait(&self, requests: bool, deadline: Deadline) -> Result<()> {
        let mut fds: Vec<_> = requests
            .then(|| PollFd::new(self.requests.as_fd(), PollFlags::POLLIN))
            .into_iter()
            .chain(self.outbox.writers().map(|w| PollFd::new(w, PollFlags::POLLOUT)))
            .collect();
        // Longer waits are cut into spans the call takes.
        let timeout = deadline
            .remaining()
            .map_or(-1, |left| i32::try_from(left.as_millis().saturating_add(1)).unwrap_or(i32::MAX));
        match ipc_sync::os::poll(&mut fds, timeout) {
            Err(e) if e.kind() != std::io::ErrorKind::Interrupted => {
                Err(Error::Io { op: "wait for requests", path: self.path().to_owned(), source: e })
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for FifoServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FifoServer").field("path", &self.path()).finish()
    }
}
