//! The calls every kind of socket makes, in the three forms: sending and
//! receiving (with descriptors, and with an address for datagrams),
//! waiting for readiness until a deadline.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use ipc_sync::os::{NotReady, PollFlags};
use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, recvmsg, sendmsg};

use crate::error::{Error, Result};
use crate::sys;

/// The most descriptors one message carries (the kernel's `SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

pub(crate) use ipc_sync::os::Wait;

/// The flag of a call made under `wait`: `MSG_DONTWAIT`, but none for a
/// wait without end, whose call blocks in the kernel (one system call
/// rather than a try, a poll and another try; a description that another
/// holder made nonblocking still answers `EAGAIN`, and the call polls
/// then).
pub(crate) fn flag(wait: Wait) -> MsgFlags {
    match wait {
        Wait::Until(d) if d.is_never() => MsgFlags::empty(),
        _ => MsgFlags::MSG_DONTWAIT,
    }
}

/// Waits for `events` on `fd` as `wait` allows: `Ok` when it may be
/// ready, `WouldBlock` or `Timeout` when not.
fn ready(fd: BorrowedFd<'_>, events: PollFlags, wait: Wait) -> Result<()> {
    ipc_sync::os::wait_ready(fd, events, wait).map_err(|e| match e {
        NotReady::WouldBlock => Error::WouldBlock,
        NotReady::Timeout => Error::Timeout,
        NotReady::Os(e) => Error::Io { op: "poll on a socket", source: e },
    })
}

/// A wait with nothing to poll: pauses from 50 µs doubling to 10 ms,
/// within the deadline.
#[derive(Debug)]
pub(crate) struct Backoff(std::time::Duration);

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff(std::time::Duration::from_micros(50))
    }

    /// Sleeps the next pause as `wait` allows: `WouldBlock` for no wait,
    /// `Timeout` once the deadline has passed.
    pub(crate) fn pause(&mut self, wait: Wait) -> Result<()> {
        let deadline = match wait {
            Wait::No => return Err(Error::WouldBlock),
            Wait::Until(d) => d,
        };
        if deadline.has_expired() {
            return Err(Error::Timeout);
        }
        std::thread::sleep(deadline.remaining().map_or(self.0, |left| left.min(self.0)));
        self.0 = (self.0 * 2).min(std::time::Duration::from_millis(10));
        Ok(())
    }
}

/// Repeats `op` (a call made with [`flag`]) until it does not
/// `EAGAIN`, waiting for `events` in between as `wait` allows; `EINTR` is
/// tried again.
pub(crate) fn again<T>(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    wait: Wait,
    op: impl FnMut() -> nix::Result<T>,
) -> Result<T, CallError> {
    again_as(fd, Some(events), wait, op)
}

/// [`again`], waiting for `events` in between, or with `None` (when the
/// descriptor's readiness does not tell: an unconnected datagram socket is
/// always writable, whatever its receiver's queue holds) after pauses
/// from 50 µs doubling to 10 ms.
fn again_as<T>(
    fd: BorrowedFd<'_>,
    events: Option<PollFlags>,
    wait: Wait,
    mut op: impl FnMut() -> nix::Result<T>,
) -> Result<T, CallError> {
    let mut backoff = Backoff::new();
    loop {
        match op() {
            Ok(v) => return Ok(v),
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => match events {
                Some(events) => ready(fd, events, wait).map_err(CallError::Wait)?,
                None => backoff.pause(wait).map_err(CallError::Wait)?,
            },
            Err(e) => return Err(CallError::Os(std::io::Error::from(e))),
        }
    }
}

/// How a call failed: its wait ended, or the OS refused it.
#[derive(Debug)]
pub(crate) enum CallError {
    Wait(Error),
    Os(std::io::Error),
}

impl CallError {
    /// As the crate's error, an OS error read by `os`.
    pub(crate) fn or_os(self, os: impl FnOnce(std::io::Error) -> Error) -> Error {
        match self {
            CallError::Wait(e) => e,
            CallError::Os(e) => os(e),
        }
    }
}

/// Sends `data` with `fds` (to `to`, for an unconnected datagram socket),
/// as `wait` allows: how many bytes went (all of them, for a message).
/// `SIGPIPE` is never raised (`MSG_NOSIGNAL`).
pub(crate) fn send(
    fd: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
    to: Option<&UnixAddr>,
    wait: Wait,
) -> Result<usize, CallError> {
    if fds.len() > MAX_FDS {
        return Err(CallError::Wait(Error::TooManyFds { count: fds.len(), max: MAX_FDS }));
    }
    let flags = flag(wait) | MsgFlags::MSG_NOSIGNAL;
    // A send to an address waits on its receiver's queue, which the
    // descriptor's readiness does not show.
    let events = if to.is_some() { None } else { Some(PollFlags::POLLOUT) };
    if fds.is_empty() {
        // The plain calls: the kernel's shorter path (no msghdr to copy in).
        return again_as(fd, events, wait, || match to {
            Some(addr) => nix::sys::socket::sendto(fd.as_raw_fd(), data, addr, flags),
            None => nix::sys::socket::send(fd.as_raw_fd(), data, flags),
        });
    }
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let cmsgs = [ControlMessage::ScmRights(&raw)];
    let iov = [IoSlice::new(data)];
    again_as(fd, events, wait, || sendmsg(fd.as_raw_fd(), &iov, &cmsgs, flags, to))
}

/// One plain `send` of `data` under `wait`'s flag: whether it all went.
/// Anything else (no room, an interruption, an error) is for
/// [`send`] to try again and tell.
#[inline]
pub(crate) fn send_once(fd: BorrowedFd<'_>, data: &[u8], wait: Wait) -> bool {
    nix::sys::socket::send(fd.as_raw_fd(), data, flag(wait) | MsgFlags::MSG_NOSIGNAL).is_ok_and(|n| n == data.len())
}

/// What a receive took.
#[derive(Debug)]
pub(crate) struct Received {
    /// Bytes copied into the buffer.
    pub(crate) len: usize,
    /// The message's whole length (over `len` when it was truncated; for
    /// a message socket only).
    pub(crate) whole: usize,
    /// Descriptors that came with it.
    pub(crate) fds: Vec<OwnedFd>,
    /// Whether descriptors were lost (`MSG_CTRUNC`), and why: more came
    /// than asked for, or this process had no room for them.
    pub(crate) cut: Option<Cut>,
    /// The sender's name (datagrams), when it has one.
    pub(crate) from: Option<crate::SocketName>,
}

/// Why a message's descriptors were lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    /// More came than the receiver asked for.
    TooMany,
    /// The process had no room to install them (its descriptor limit).
    NoRoom,
}

impl Cut {
    /// The error for a receive that asked for `max_fds` and took `len`
    /// bytes (none when it asked for none: a plain receive drops them).
    pub(crate) fn error(cut: Option<Cut>, max_fds: usize, len: usize) -> Option<Error> {
        match cut? {
            _ if max_fds == 0 => None,
            Cut::TooMany => Some(Error::FdsTruncated { max: max_fds, len }),
            Cut::NoRoom => Some(Error::OutOfDescriptors {
                op: "recvmsg (the message was taken; its descriptors were closed)",
                source: std::io::Error::from_raw_os_error(libc::EMFILE),
            }),
        }
    }
}

/// `SCM_PIDFD` (Linux 6.5), which libc does not name yet: a pidfd of the
/// sender, on a socket with `SO_PASSPIDFD`.
const SCM_PIDFD: i32 = 4;

/// Room beside the descriptors for what else the kernel may put in the
/// control buffer of a socket another holder set up (`SO_PASSCRED`,
/// `SO_PASSPIDFD`, `SO_PASSSEC`): so that it never takes the descriptors'
/// room.
const OTHER_CONTROL: usize = 512;

/// Receives into `buf`, with up to `max_fds` descriptors, as `wait`
/// allows. `message`: the socket keeps message boundaries (its whole
/// length is asked for). Descriptors arrive close-on-exec; those that do
/// not fit are dropped by the kernel.
pub(crate) fn recv(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
    message: bool,
    wait: Wait,
) -> Result<Received, CallError> {
    let max_fds = max_fds.min(MAX_FDS);
    let mut space = if max_fds > 0 { vec![0u8; cmsg_space(max_fds) + OTHER_CONTROL] } else { Vec::new() };
    let mut flags = flag(wait) | MsgFlags::MSG_CMSG_CLOEXEC;
    if message {
        flags |= MsgFlags::MSG_TRUNC;
    }
    let capacity = buf.len();
    let mut iov = [IoSliceMut::new(buf)];
    again(fd, PollFlags::POLLIN, wait, || {
        space.fill(0);
        let cmsg = if max_fds > 0 { Some(space.as_mut_slice()) } else { None };
        let msg = recvmsg::<UnixAddr>(fd.as_raw_fd(), &mut iov, cmsg, flags)?;
        let (whole, msg_flags, address) = (msg.bytes, msg.flags, msg.address);
        // Owned at once, before anything else can fail. Read from the
        // buffer itself: when some did not fit (`MSG_CTRUNC`), nix will not
        // iterate, but those that fit were installed all the same. A
        // sender's pidfd (`SO_PASSPIDFD`) is closed at once.
        let (rights, pidfds) = descriptors_in(&space);
        drop(sys::own_received(pidfds));
        let fds = sys::own_received(rights);
        // The buffer has room for `max_fds` and more: more arrived than
        // asked for, or it was cut with fewer (the kernel could not
        // install them).
        let cut = if fds.len() > max_fds {
            Some(Cut::TooMany)
        } else if msg_flags.contains(MsgFlags::MSG_CTRUNC) {
            Some(if fds.len() == max_fds { Cut::TooMany } else { Cut::NoRoom })
        } else {
            None
        };
        Ok(Received { len: whole.min(capacity), whole, fds, cut, from: address.as_ref().and_then(sender_name) })
    })
}

/// The name in an address the kernel filled in (`None` for an unnamed
/// sender, and for none at all: a connected socket's receive leaves the
/// length 0). Read from the raw `sockaddr_un` by its length, since nix's
/// own accessors assume a length of at least the family's.
fn sender_name(addr: &UnixAddr) -> Option<crate::SocketName> {
    let family = std::mem::size_of::<libc::sa_family_t>();
    let sun: &libc::sockaddr_un = addr.as_ref();
    let len = usize::from(u8::try_from(nix::sys::socket::SockaddrLike::len(addr)).unwrap_or(u8::MAX));
    let path_len = len.checked_sub(family)?.min(sun.sun_path.len());
    let bytes: Vec<u8> = sun.sun_path[..path_len].iter().map(|&c| c as u8).collect();
    match bytes.split_first() {
        None => None,
        Some((0, name)) => Some(crate::SocketName::Abstract(name.to_vec())),
        Some(_) => {
            let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
            let path = std::ffi::OsStr::from_bytes(&bytes[..end]);
            Some(crate::SocketName::Path(path.into()))
        }
    }
}

/// The descriptors of every `SCM_RIGHTS` message, and of every
/// `SCM_PIDFD` one, in a control buffer the kernel filled (zeroed before,
/// so a zero length ends it).
fn descriptors_in(control: &[u8]) -> (Vec<RawFd>, Vec<RawFd>) {
    let word = std::mem::size_of::<usize>();
    let header = std::mem::size_of::<libc::cmsghdr>().div_ceil(word) * word;
    let int = std::mem::size_of::<RawFd>();
    let (mut fds, mut pidfds) = (Vec::new(), Vec::new());
    let mut at = 0;
    while let Some(h) = control.get(at..at + header) {
        let len = usize::from_ne_bytes(h[..word].try_into().unwrap_or([0; 8]));
        if len < header {
            break;
        }
        let level = i32::from_ne_bytes(h[word..word + 4].try_into().unwrap_or([0; 4]));
        let kind = i32::from_ne_bytes(h[word + 4..word + 8].try_into().unwrap_or([0; 4]));
        let data = control.get(at + header..(at + len).min(control.len())).unwrap_or(&[]);
        let ints = data.chunks_exact(int).map(|c| RawFd::from_ne_bytes(c.try_into().unwrap_or([0xff; 4])));
        match (level, kind) {
            (libc::SOL_SOCKET, libc::SCM_RIGHTS) => fds.extend(ints),
            (libc::SOL_SOCKET, SCM_PIDFD) => pidfds.extend(ints),
            _ => {}
        }
        at += len.div_ceil(word) * word;
    }
    (fds, pidfds)
}

/// Room for `n` descriptors in a control message.
fn cmsg_space(n: usize) -> usize {
    // CMSG_SPACE of n ints: header and data each aligned to a word.
    let data = n * std::mem::size_of::<RawFd>();
    let align = std::mem::size_of::<usize>();
    let header = std::mem::size_of::<libc::cmsghdr>();
    header.div_ceil(align) * align + data.div_ceil(align) * align
}

/// Whether the peer of a connected socket has shut its side and nothing
/// it sent is left but empty messages: after a receive of zero bytes on a
/// message socket, which is either an empty message or the end (empty
/// messages sent just before the peer went, with nothing after them, are
/// taken for the end).
pub(crate) fn peer_gone(fd: BorrowedFd<'_>) -> bool {
    sys::read_hung_up(fd) && !message_waits(fd)
}

/// Whether a message of at least one byte waits to be received (a peek of
/// its length, which copies nothing).
fn message_waits(fd: BorrowedFd<'_>) -> bool {
    let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC;
    nix::sys::socket::recv(fd.as_raw_fd(), &mut [], flags).is_ok_and(|n| n > 0)
}

/// The credentials of a connected socket's peer (`SO_PEERCRED`).
pub(crate) fn peer_credentials(fd: &impl AsFd) -> Result<crate::Credentials> {
    let c = nix::sys::socket::getsockopt(fd, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| Error::Io { op: "getsockopt(SO_PEERCRED)", source: e.into() })?;
    Ok(crate::Credentials { pid: u32::try_from(c.pid()).unwrap_or(0), uid: c.uid(), gid: c.gid() })
}

/// `shutdown(2)`.
pub(crate) fn shutdown(fd: BorrowedFd<'_>, how: std::net::Shutdown) -> Result<()> {
    use nix::sys::socket::Shutdown;
    let how = match how {
        std::net::Shutdown::Read => Shutdown::Read,
        std::net::Shutdown::Write => Shutdown::Write,
        std::net::Shutdown::Both => Shutdown::Both,
    };
    match nix::sys::socket::shutdown(fd.as_raw_fd(), how) {
        Ok(()) | Err(nix::errno::Errno::ENOTCONN) => Ok(()),
        Err(e) => Err(Error::Io { op: "shutdown", source: e.into() }),
    }
}

/// The longest message the kernel allocates in one piece, whatever the
/// send buffer: 4 MiB of linear buffer (its kmalloc limit) and 17 page
/// fragments; a longer one is refused with `ENOBUFS`. 4 MiB is the bound
/// this crate promises.
const KERNEL_MESSAGE_MAX: usize = 4 << 20;

/// The most a message socket carries in one message: its send buffer less
/// the kernel's 32 bytes (a send of more is refused with `EMSGSIZE`), and
/// no more than [`KERNEL_MESSAGE_MAX`].
pub(crate) fn max_message(fd: BorrowedFd<'_>) -> usize {
    let sndbuf = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::SndBuf).unwrap_or(0);
    sndbuf.saturating_sub(32).min(KERNEL_MESSAGE_MAX)
}

/// The error of a send of `len` bytes on a message socket that failed
/// with `e`: `MessageTooLarge` for one over what the socket carries
/// (`EMSGSIZE`, or `ENOBUFS` for one too long for the kernel to allocate),
/// else as `Error::of_call`.
pub(crate) fn message_send_error(fd: BorrowedFd<'_>, len: usize, e: std::io::Error) -> Error {
    let max = max_message(fd);
    match e.raw_os_error() {
        Some(libc::EMSGSIZE) => Error::MessageTooLarge { len, max },
        Some(libc::ENOBUFS) if len > max => Error::MessageTooLarge { len, max },
        _ => Error::of_call("send", e),
    }
}

/// The longest message a peer can send on a seqpacket or datagram socket
/// with the largest send buffer it may set unprivileged: twice
/// `net.core.wmem_max` (the kernel doubles what `SO_SNDBUF` asks), at
/// least 256 KiB, and no more than the longest the kernel allocates in one
/// piece ([`KERNEL_MESSAGE_MAX`] and its page fragments); read once.
pub(crate) fn largest_message() -> usize {
    static LARGEST: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LARGEST.get_or_init(|| {
        let max = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(0);
        // The kernel allocates no longer message, whatever the buffer.
        max.saturating_mul(2).clamp(256 << 10, KERNEL_MESSAGE_MAX + (128 << 10))
    })
}
