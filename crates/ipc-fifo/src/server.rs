use std::ffi::OsStr;
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
use crate::outbox::{OpenFailed, Outbox, Sent};

/// A request body: client pid (u32), ticket (u64), reply path length
/// (u16), reply path, payload. With its frame header it fits in one atomic
/// write of at most `PIPE_BUF` bytes, so requests from many clients never
/// interleave.
///
/// The ticket is the client's secret plus the request's number; the reply
/// frame begins with it. A client takes only a reply that carries the
/// ticket of a request it still waits for: a forged request naming its
/// reply FIFO (the frame format is no secret) cannot answer it, and a late
/// reply to a request it gave up on is dropped.
const REQUEST_HEADER: usize = 14;
/// Where the ticket sits in a request body.
const TICKET_AT: usize = 4;
/// A reply frame's body: the ticket, then the reply.
const REPLY_TICKET: usize = 8;

/// A request frame on the well-known FIFO: [`MAGIC`], the body's length
/// (u32), a check (u64, FNV-1a of the length and the body), the body. Any
/// process may write any bytes into the FIFO; the server skips whatever is
/// not a whole frame with a good check, and finds the next one, so garbage
/// or a writer killed mid-write never stops it. An honest frame is one
/// atomic write, so no foreign byte ever lands inside it.
const FRAME_HEADER: usize = 16;
const MAGIC: [u8; 4] = *b"IKfq";
/// The largest request body.
const MAX_BODY: usize = PIPE_BUF - FRAME_HEADER;

/// How often a waiting client checks that the server still lives.
const LIVENESS_EVERY: Duration = Duration::from_millis(50);

/// The largest reply a client accepts.
const MAX_REPLY: usize = 16 << 20;
/// A reply frame at its largest: length, ticket, reply.
pub(crate) const MAX_REPLY_FRAME: usize = 4 + REPLY_TICKET + MAX_REPLY;

/// A request a [`FifoServer`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The pid the client gave.
    pub client_pid: u32,
    /// What the client asked.
    pub payload: Vec<u8>,
    reply_path: PathBuf,
    ticket: u64,
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
        let fds: Vec<_> = requests
            .then(|| (self.requests.as_fd(), true))
            .into_iter()
            .chain(self.outbox.writers().map(|w| (w, false)))
            .collect();
        let timeout = deadline.remaining().map(|left| left.as_millis().saturating_add(1));
        crate::sys::poll_many(&fds, timeout).map_err(|e| Error::Io {
            op: "wait for requests",
            path: self.path().to_owned(),
            source: e,
        })
    }
}

impl fmt::Debug for FifoServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FifoServer").field("path", &self.path()).finish()
    }
}

/// FNV-1a (64 bit) of the frame's length field and body.
fn check(len: &[u8], body: &[u8]) -> u64 {
    len.iter().chain(body).fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Fills in the length and check of a frame laid out as MAGIC, 12 bytes
/// of room, body.
fn seal(frame: &mut [u8]) {
    let body_len = u32::try_from(frame.len() - FRAME_HEADER).unwrap_or(u32::MAX);
    frame[4..8].copy_from_slice(&body_len.to_le_bytes());
    let sum = check(&frame[4..8], &frame[FRAME_HEADER..]);
    frame[8..16].copy_from_slice(&sum.to_le_bytes());
}

/// Takes the first whole, well-checked frame out of `pending` and returns
/// its body, dropping the bytes before it. Without one, drops the bytes
/// that cannot begin one (keeping from the first place a frame may still
/// be arriving) and returns `None`.
///
/// An honest frame is one atomic write, so it lies whole and unbroken in
/// the stream: no garbage before it can hide it, except a forged frame
/// whose check covers the honest bytes, which needs a 64-bit check to
/// come out right. But a read may end inside it, and its payload may hold
/// a frame of its own (a client relaying bytes): so a frame after one
/// still arriving is taken only once the FIFO has been found empty
/// (`drained`), when the one still arriving cannot be an honest frame.
fn take_frame(pending: &mut Vec<u8>, drained: bool) -> Option<Vec<u8>> {
    let mut keep_from = pending.len();
    for at in 0..pending.len() {
        let rest = &pending[at..];
        let head = rest.len().min(MAGIC.len());
        if rest[..head] != MAGIC[..head] {
            continue;
        }
        let Some(header) = rest.get(..FRAME_HEADER) else {
            keep_from = keep_from.min(at); // a header still arriving
            if drained {
                continue;
            }
            break;
        };
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if len > MAX_BODY {
            continue;
        }
        let Some(body) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
            keep_from = keep_from.min(at); // a body still arriving
            if drained {
                continue;
            }
            break;
        };
        let sum = u64::from_le_bytes([
            header[8], header[9], header[10], header[11], header[12], header[13], header[14], header[15],
        ]);
        if sum != check(&header[4..8], body) {
            continue;
        }
        let body = body.to_vec();
        pending.drain(..at + FRAME_HEADER + len);
        return Some(body);
    }
    pending.drain(..keep_from);
    None
}

/// Removes the reply FIFOs of dead clients of the server at `server`
/// (named `NAME.reply.PID.N.RANDOM`, or `NAME.reply.PID.N` as older
/// clients named them), and the temporary FIFOs of servers and clients
/// killed while starting (`NAME.new.PID.N`, `NAME.reply.PID.N.RANDOM.new.PID.N`):
/// those no reader has open (the kernel's
/// `ENXIO`; a live client always holds its reader, and one still
/// starting makes its FIFO again if this one is removed). Failures are
/// left for the next sweep.
fn sweep_dead_replies(server: &Path) {
    let (Some(dir), Some(name)) = (server.parent(), server.file_name()) else { return };
    let name = name.as_bytes();
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let digits = |p: Option<&[u8]>| p.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
    // `PID.N`: two groups of digits.
    let numbered = |s: &[u8]| {
        let mut parts = s.split(|&b| b == b'.');
        digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
    };
    // A reply FIFO's `PID.N.RANDOM` (RANDOM: 16 hex digits), or `PID.N`.
    let client = |s: &[u8]| {
        let mut parts = s.split(|&b| b == b'.');
        let hex = |p: &[u8]| p.len() == 16 && p.iter().all(u8::is_ascii_hexdigit);
        digits(parts.next()) && digits(parts.next()) && parts.next().is_none_or(hex) && parts.next().is_none()
    };
    let temporary = |s: &[u8]| s.strip_prefix(b".new.".as_slice()).is_some_and(numbered);
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.as_bytes().strip_prefix(name) else { continue };
        let ours = if let Some(reply) = rest.strip_prefix(b".reply.".as_slice()) {
            client(reply)
                || reply
                    .windows(5)
                    .position(|w| w == b".new.")
                    .is_some_and(|at| client(&reply[..at]) && temporary(&reply[at..]))
        } else {
            temporary(rest)
        };
        if ours {
            let _ = crate::fifo::remove_if_stale(&dir.join(&file));
        }
    }
}

/// The canonical directory of `path` (its parent, or the working
/// directory for a bare name).
fn canonical_dir(path: &Path) -> Result<PathBuf> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::canonicalize(parent).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => Error::NotFound { path: path.to_owned() },
        Some(libc::EACCES) => Error::PermissionDenied { path: path.to_owned() },
        _ => Error::Io { op: "canonicalize the directory of", path: path.to_owned(), source: e },
    })
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

/// `NAME.reply.`, with the server's file name as it is, byte for byte
/// (not every file name is UTF-8).
fn reply_prefix(server: &Path) -> std::ffi::OsString {
    let mut prefix = server.file_name().unwrap_or_default().to_owned();
    prefix.push(".reply.");
    prefix
}

/// The client side: a private reply FIFO (made next to the server's,
/// removed when the client goes) and a writer on the server's request
/// FIFO. See [`FifoServer`].
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A small xorshift generator: deterministic garbage.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut m = MAGIC.to_vec();
        m.extend_from_slice(&[0; FRAME_HEADER - 4]);
        m.extend_from_slice(body);
        seal(&mut m);
        m
    }

    /// Honest frames between garbage of every kind (random bytes, frame
    /// starts cut short, headers over the limit, bad checks), fed in
    /// pieces of random sizes: every honest frame comes out, in order,
    /// and the pending bytes never grow past two `PIPE_BUF`s.
    #[test]
    fn honest_frames_survive_any_garbage_between_them() {
        for seed in 1..300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut stream = Vec::new();
            let mut honest = Vec::new();
            for i in 0..20u64 {
                let garbage = match rng.below(5) {
                    0 => (0..rng.below(6000)).map(|_| rng.next() as u8).collect(),
                    1 => {
                        let f = frame(&[9; 300]);
                        f[..rng.below(f.len() as u64)].to_vec()
                    }
                    2 => {
                        let mut f = frame(&[1; 40]);
                        f[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
                        f
                    }
                    3 => {
                        let mut f = frame(&[2; 40]);
                        f[20] ^= 0x10;
                        f
                    }
                    _ => Vec::new(),
                };
                stream.extend_from_slice(&garbage);
                let body: Vec<u8> = i
                    .to_le_bytes()
                    .iter()
                    .copied()
                    .chain((0..rng.below(MAX_BODY as u64 - 8)).map(|_| rng.next() as u8))
                    .collect();
                stream.extend_from_slice(&frame(&body));
                honest.push(body);
            }
            let mut pending = Vec::new();
            let mut got = Vec::new();
            let mut at = 0;
            while at < stream.len() {
                let n = (1 + rng.below(PIPE_BUF as u64)).min(stream.len() - at);
                pending.extend_from_slice(&stream[at..at + n]);
                at += n;
                // Drained: the FIFO holds nothing more now, as after the
                // last read, and one time in four in between, as when the
                // writers pause (these honest frames hold no frames of
                // their own, so where a pause falls does not matter).
                let drained = at == stream.len() || rng.below(4) == 0;
                while let Some(body) = take_frame(&mut pending, drained) {
                    got.push(body);
                }
                assert!(pending.len() < PIPE_BUF, "seed {seed}: {} bytes pending", pending.len());
            }
            assert!(got == honest, "seed {seed}: {} of {} frames, or others", got.len(), honest.len());
        }
    }
}
