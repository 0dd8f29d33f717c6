use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ipc_pipe::{FrameReader, FrameWriter, PIPE_BUF, PipeReader, PipeWriter};
use ipc_sync::Deadline;

use crate::error::{Error, Result};
use crate::fifo::Fifo;

/// A request frame: client pid (u32), reply path length (u16), reply
/// path, payload. With the 4-byte frame header it fits in one atomic
/// write of at most `PIPE_BUF` bytes, so requests from many clients never
/// interleave.
const REQUEST_HEADER: usize = 6;
const FRAME_HEADER: usize = ipc_pipe::FRAME_HEADER;

/// How often a waiting client checks that the server still lives.
const LIVENESS_EVERY: Duration = Duration::from_millis(50);

/// The largest reply a client accepts.
const MAX_REPLY: usize = 16 << 20;

/// A request a [`FifoServer`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The pid the client gave.
    pub client_pid: u32,
    /// What the client asked.
    pub payload: Vec<u8>,
    reply_path: PathBuf,
}

impl Request {
    /// The client's reply FIFO.
    pub fn reply_path(&self) -> &Path {
        &self.reply_path
    }
}

/// The server side of two-way traffic over named pipes: a well-known
/// request FIFO that any number of [`FifoClient`]s write to, and a private
/// reply FIFO per client.
///
/// Each request is one atomic write (at most `PIPE_BUF` bytes), so
/// requests never interleave. The server keeps a writer of its own on the
/// request FIFO, so it never sees end of file when clients come and go. A
/// client that died before its reply is noticed when replying (its reply
/// FIFO has no reader): the reply FIFO is removed and
/// [`Error::ClientGone`] returned; the server goes on.
///
/// Reply FIFOs must sit in the request FIFO's directory and be named after
/// it (`NAME.reply.…`); requests naming any other path are
/// [`Error::BadRequest`], so a client cannot make the server write into
/// other FIFOs.
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
    requests: FrameReader<PipeReader>,
    _keepalive: PipeWriter,
}

impl FifoServer {
    /// Makes the request FIFO at `path` (exclusive; after a crash, use
    /// [`create_replacing`](Self::create_replacing)) and opens it.
    ///
    /// # Errors
    ///
    /// As for [`Fifo::create`].
    pub fn create(path: impl AsRef<Path>, mode: u32) -> Result<Self> {
        Self::serve(Fifo::create(path, mode)?)
    }

    /// Like [`create`](Self::create), first removing a FIFO a crashed
    /// server left at `path`.
    ///
    /// # Errors
    ///
    /// As for [`Fifo::create_replacing`].
    pub fn create_replacing(path: impl AsRef<Path>, mode: u32) -> Result<Self> {
        Self::serve(Fifo::create_replacing(path, mode)?)
    }

    fn serve(fifo: Fifo) -> Result<Self> {
        let reader = fifo.try_open_reader()?;
        let keepalive = fifo.try_open_writer()?;
        Ok(FifoServer { requests: FrameReader::with_max(reader, PIPE_BUF - FRAME_HEADER), fifo, _keepalive: keepalive })
    }

    /// The request FIFO's path, which clients connect to.
    pub fn path(&self) -> &Path {
        self.fifo.path()
    }

    /// Waits for the next request.
    ///
    /// # Errors
    ///
    /// [`Error::BadRequest`] for a malformed request (it is dropped and the
    /// server can go on); [`Error::Io`].
    pub fn recv(&mut self) -> Result<Request> {
        let mut frame = Vec::new();
        match self.requests.recv(&mut frame) {
            Ok(Some(_)) => self.parse(frame),
            Ok(None) => Err(self.eof()),
            Err(e) => Err(self.frame_err(e)),
        }
    }

    /// Waits at most `timeout` for the next request.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`recv`](Self::recv).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Request> {
        let mut frame = Vec::new();
        match self.requests.recv_timeout(&mut frame, timeout) {
            Ok(Some(_)) => self.parse(frame),
            Ok(None) => Err(self.eof()),
            Err(ipc_pipe::Error::Timeout) => Err(Error::Timeout { path: self.path().to_owned() }),
            Err(e) => Err(self.frame_err(e)),
        }
    }

    fn eof(&self) -> Error {
        // Cannot happen while we hold a writer; say so plainly if it does.
        Error::Io { op: "read request", path: self.path().to_owned(), source: std::io::ErrorKind::UnexpectedEof.into() }
    }

    fn frame_err(&self, e: ipc_pipe::Error) -> Error {
        match e {
            ipc_pipe::Error::FrameTooLarge { len, .. } => {
                Error::BadRequest { reason: format!("a request frame of {len} bytes (more than one atomic write)") }
            }
            other => Error::Io { op: "read request", path: self.path().to_owned(), source: other.into() },
        }
    }

    fn parse(&self, frame: Vec<u8>) -> Result<Request> {
        let bad = |reason: String| Err(Error::BadRequest { reason });
        if frame.len() < REQUEST_HEADER {
            return bad(format!("{} bytes is shorter than the request header", frame.len()));
        }
        let client_pid = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let path_len = usize::from(u16::from_le_bytes([frame[4], frame[5]]));
        let Some(path) = frame.get(REQUEST_HEADER..REQUEST_HEADER + path_len) else {
            return bad(format!("a reply path of {path_len} bytes in a {}-byte request", frame.len()));
        };
        let reply_path = PathBuf::from(OsStr::from_bytes(path));
        if !self.is_reply_path(&reply_path) {
            return bad(format!("reply path {} is not one of this server's", reply_path.display()));
        }
        let payload = frame[REQUEST_HEADER + path_len..].to_vec();
        Ok(Request { client_pid, payload, reply_path })
    }

    fn is_reply_path(&self, reply: &Path) -> bool {
        let prefix = reply_prefix(self.path());
        reply.parent() == self.path().parent()
            && reply.file_name().is_some_and(|n| n.as_bytes().starts_with(prefix.as_bytes()))
            && !reply.as_os_str().as_bytes().contains(&b'\0')
    }

    /// Sends `data` as the reply to `request`.
    ///
    /// # Errors
    ///
    /// [`Error::ClientGone`] when the client's reply FIFO has no reader
    /// (the FIFO is then removed); [`Error::NotAFifo`] when something else
    /// sits at the reply path; [`Error::Io`].
    pub fn reply(&self, request: &Request, data: &[u8]) -> Result<()> {
        let gone = || Error::ClientGone { pid: request.client_pid, path: request.reply_path.clone() };
        let fifo = match Fifo::open(&request.reply_path) {
            Err(Error::NotFound { .. }) => return Err(gone()),
            other => other?,
        };
        let writer = match fifo.try_open_writer() {
            Err(Error::NoReader { .. }) => {
                let _ = std::fs::remove_file(&request.reply_path); // a dead client's leftover
                return Err(gone());
            }
            other => other?,
        };
        let mut tx = FrameWriter::with_max(writer, MAX_REPLY);
        tx.send(data).map_err(|e| match e {
            ipc_pipe::Error::BrokenPipe => gone(),
            other => Error::Io { op: "write reply", path: request.reply_path.clone(), source: other.into() },
        })
    }
}

impl fmt::Debug for FifoServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FifoServer").field("path", &self.path()).finish()
    }
}

fn reply_prefix(server: &Path) -> String {
    format!("{}.reply.", server.file_name().map(|n| n.to_string_lossy()).unwrap_or_default())
}

/// The client side: a private reply FIFO (made next to the server's,
/// removed when the client goes) and a writer on the server's request
/// FIFO. See [`FifoServer`].
pub struct FifoClient {
    server: PathBuf,
    requests: PipeWriter,
    reply: Fifo,
    replies: FrameReader<PipeReader>,
    _keepalive: PipeWriter,
    header: Vec<u8>,
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
        let server = server.as_ref();
        let requests = match Fifo::open(server)?.try_open_writer() {
            Err(Error::NoReader { .. }) => return Err(Error::ServerGone { path: server.to_owned() }),
            other => other?,
        };
        let name = format!("{}{}.{}", reply_prefix(server), std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let reply_path = server.with_file_name(name);
        // The request header carries the reply path: refuse a path that
        // leaves no room for a request in one atomic write, before making
        // anything.
        if FRAME_HEADER + REQUEST_HEADER + reply_path.as_os_str().len() > PIPE_BUF {
            return Err(Error::InvalidPath {
                path: reply_path,
                reason: "the reply path leaves no room for a request in one atomic write (PIPE_BUF, 4096 bytes)",
            });
        }
        let reply = Fifo::create_replacing(&reply_path, 0o600)?;
        let reader = reply.try_open_reader()?;
        let keepalive = reply.try_open_writer()?;
        let path_bytes = reply_path.as_os_str().as_bytes();
        let path_len = u16::try_from(path_bytes.len()).unwrap_or(u16::MAX); // under PIPE_BUF, checked above
        let mut header = Vec::with_capacity(REQUEST_HEADER + path_bytes.len());
        header.extend_from_slice(&std::process::id().to_le_bytes());
        header.extend_from_slice(&path_len.to_le_bytes());
        header.extend_from_slice(path_bytes);
        Ok(FifoClient {
            server: server.to_owned(),
            requests,
            reply,
            replies: FrameReader::with_max(reader, MAX_REPLY),
            _keepalive: keepalive,
            header,
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
    /// the server is still there.
    ///
    /// # Errors
    ///
    /// [`Error::RequestTooLarge`] before anything is sent;
    /// [`Error::ServerGone`] when the server is gone before replying.
    pub fn request(&mut self, payload: &[u8]) -> Result<Vec<u8>> {
        self.send_request(payload)?;
        self.recv_reply_until(Deadline::never())
    }

    /// Like [`request`](Self::request), waiting at most `timeout` for the
    /// reply.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`request`](Self::request). After a
    /// timeout, a late reply to this request arrives before the next one.
    pub fn request_timeout(&mut self, payload: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        let deadline = Deadline::after(timeout);
        self.send_request(payload)?;
        self.recv_reply_until(deadline)
    }

    /// Sends a request without waiting for its reply.
    ///
    /// # Errors
    ///
    /// As for [`request`](Self::request).
    pub fn send_request(&mut self, payload: &[u8]) -> Result<()> {
        let max = self.max_request();
        if payload.len() > max {
            return Err(Error::RequestTooLarge { len: payload.len(), max });
        }
        let len = u32::try_from(self.header.len() + payload.len()).unwrap_or(u32::MAX).to_le_bytes();
        let mut msg = Vec::with_capacity(FRAME_HEADER + self.header.len() + payload.len());
        msg.extend_from_slice(&len);
        msg.extend_from_slice(&self.header);
        msg.extend_from_slice(payload);
        // One atomic write: requests from many clients never interleave.
        self.requests.write_atomic(&msg).map_err(|e| match e {
            ipc_pipe::Error::BrokenPipe => Error::ServerGone { path: self.server.clone() },
            other => Error::Io { op: "write request", path: self.server.clone(), source: other.into() },
        })
    }

    /// Waits for the next reply.
    ///
    /// # Errors
    ///
    /// [`Error::ServerGone`].
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
                Ok(Some(_)) => return Ok(reply),
                Ok(None) => return Err(Error::ServerGone { path: self.server.clone() }),
                Err(ipc_pipe::Error::Timeout) => {}
                Err(e) => {
                    return Err(Error::Io { op: "read reply", path: self.reply.path().to_owned(), source: e.into() });
                }
            }
            // Still no reply: is anyone reading requests?
            if let Err(Error::NoReader { .. } | Error::NotFound { .. }) =
                Fifo::open(&self.server).and_then(|f| f.try_open_writer())
            {
                return Err(Error::ServerGone { path: self.server.clone() });
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
