use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use bytemuck::Pod;
use ipc_sync::Deadline;
use ipc_sync::object::{Guard, ObjectError, Remove};
use nix::mqueue::MQ_OFlag;

use crate::error::{Error, Result};
use crate::limits::proc_limit;
use crate::sys;

const WHAT: &str = "POSIX message queue";

/// The longest wait handed to the kernel at once: `mq_timed*` take a
/// wall-clock deadline, so a timed call waits in slices of at most this,
/// measured on the monotonic clock, and a wall-clock jump can stretch a
/// wait by at most one slice.
const SLICE: Duration = Duration::from_millis(100);

/// The highest message priority Linux accepts (`MQ_PRIO_MAX - 1`).
pub const MAX_PRIORITY: u32 = 32767;

/// Sizes of a new POSIX queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueAttr {
    /// The most messages it holds (`mq_maxmsg`).
    pub max_messages: usize,
    /// The largest message (`mq_msgsize`).
    pub message_size: usize,
}

impl Default for QueueAttr {
    /// 10 messages of 8192 bytes: the limits for processes without
    /// `CAP_SYS_RESOURCE` by default.
    fn default() -> Self {
        QueueAttr { max_messages: 10, message_size: 8192 }
    }
}

/// What `mq_getattr` tells about a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueState {
    /// The most messages it holds.
    pub max_messages: usize,
    /// The largest message.
    pub message_size: usize,
    /// Messages in it now.
    pub messages: usize,
}

/// A POSIX message queue (`mq_open`): messages with priorities, found by
/// name, received highest priority first (and in order within one
/// priority).
///
/// The handle that creates a queue unlinks the name when dropped unless
/// [`persist`](Self::persist) is called; open handles keep working.
/// Handles from [`open`](Self::open) never unlink it. The descriptor is
/// close-on-exec and can be polled ([`AsFd`]): readable when a message is
/// there, writable when there is room.
///
/// Timed calls take a deadline on the monotonic clock and wait in slices
/// on the kernel's wall-clock deadline, retrying after signals with the
/// time that is left.
///
/// # Examples
///
/// ```
/// use ipc_msgq::{PosixQueue, QueueAttr};
///
/// let name = format!("/ipc-msgq-doc-{}", std::process::id());
/// let q = PosixQueue::create(&name, QueueAttr { max_messages: 4, message_size: 64 }, 0o600)?;
/// q.send(b"low", 1)?;
/// q.send(b"high", 9)?;
/// let mut buf = [0; 64];
/// assert_eq!(q.recv(&mut buf)?, (4, 9)); // highest priority first
/// assert_eq!(&buf[..4], b"high");
/// # Ok::<(), ipc_msgq::Error>(())
/// ```
///
/// # References
///
/// [mq_overview(7)](https://man7.org/linux/man-pages/man7/mq_overview.7.html)
pub struct PosixQueue {
    mq: sys::Mq,
    name: Guard<QueueName>,
    message_size: usize,
}

/// A POSIX queue's name, which `mq_unlink` removes.
#[derive(Debug)]
struct QueueName(CString);

impl Remove for QueueName {
    fn remove(&self) -> io::Result<()> {
        sys::mq_unlink(&self.0)
    }
}

impl PosixQueue {
    /// Creates a queue with these sizes and permissions `mode`
    /// (exclusive).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] (before any system call); sizes of 0 (before
    /// any system call), and sizes the kernel refuses, are
    /// [`Error::LimitExceeded`] naming the limit: over
    /// /proc/sys/fs/mqueue/msg_max or msgsize_max, or for a caller with
    /// `CAP_SYS_RESOURCE` (who may go past those) over the kernel's fixed
    /// maxima of 65536 messages and 16 MiB; [`Error::AlreadyExists`];
    /// [`Error::PermissionDenied`]; [`Error::LimitExceeded`] naming
    /// queues_max or `RLIMIT_MSGQUEUE` when too many queues exist.
    #[doc(alias = "mq_open")]
    pub fn create(name: &str, attr: QueueAttr, mode: u32) -> Result<Self> {
        let c = check_name(name)?;
        check_attr(attr)?;
        let flags = MQ_OFlag::O_RDWR | MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL;
        let raw = (attr.max_messages as i64, attr.message_size as i64);
        let mq = sys::mq_open(&c, flags, mode, Some(raw)).map_err(|e| open_err(name, attr, e))?;
        Ok(PosixQueue { mq, name: Guard::made(QueueName(c)), message_size: attr.message_size })
    }

    /// Opens an existing queue for sending and receiving.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`]; [`Error::NotFound`];
    /// [`Error::PermissionDenied`].
    pub fn open(name: &str) -> Result<Self> {
        let c = check_name(name)?;
        let mq = sys::mq_open(&c, MQ_OFlag::O_RDWR, 0, None).map_err(|e| open_err(name, NOT_CREATING, e))?;
        let (_, size, _) = sys::mq_getattr(&mq).map_err(|e| Error::Io { op: "mq_getattr", source: e })?;
        let message_size = usize::try_from(size).unwrap_or(0);
        Ok(PosixQueue { mq, name: Guard::opened(QueueName(c)), message_size })
    }

    /// Opens the queue, or creates it with `attr` and `mode` when there is
    /// none. Only a handle that created it unlinks it.
    ///
    /// # Errors
    ///
    /// As for [`create`](Self::create) and [`open`](Self::open).
    pub fn open_or_create(name: &str, attr: QueueAttr, mode: u32) -> Result<Self> {
        ipc_sync::object::open_or_create_object(|| Self::create(name, attr, mode), || Self::open(name))
    }

    /// Sends `data` with `priority` (0 is lowest; at most [`MAX_PRIORITY`]), waiting
    /// while the queue is full.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`] over the queue's message size, before any
    /// system call; [`Error::LimitExceeded`] for a priority over
    /// [`MAX_PRIORITY`] (`MQ_PRIO_MAX - 1`).
    #[doc(alias = "mq_send")]
    #[inline]
    pub fn send(&self, data: &[u8], priority: u32) -> Result<()> {
        self.send_until(data, priority, Some(Deadline::never()))
    }

    /// Sends if there is room now.
    ///
    /// # Errors
    ///
    /// [`Error::Full`], and as for [`send`](Self::send).
    pub fn try_send(&self, data: &[u8], priority: u32) -> Result<()> {
        self.send_until(data, priority, None)
    }

    /// Sends, waiting at most `timeout` for room.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`send`](Self::send).
    pub fn send_timeout(&self, data: &[u8], priority: u32, timeout: Duration) -> Result<()> {
        self.send_until(data, priority, Some(Deadline::after(timeout)))
    }

    /// Sends, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As for [`send_timeout`](Self::send_timeout).
    pub fn send_deadline(&self, data: &[u8], priority: u32, deadline: Instant) -> Result<()> {
        self.send_until(data, priority, Some(Deadline::at(deadline)))
    }

    #[inline]
    fn send_until(&self, data: &[u8], priority: u32, wait: Option<Deadline>) -> Result<()> {
        if priority > MAX_PRIORITY {
            return Err(Error::LimitExceeded {
                what: "message priority",
                requested: u64::from(priority),
                limit: u64::from(MAX_PRIORITY),
                source_of_limit: "MQ_PRIO_MAX - 1 on Linux",
            });
        }
        if data.len() > self.message_size {
            return Err(Error::MessageTooLarge {
                len: data.len(),
                max: self.message_size,
                limit: "the queue's message size (mq_msgsize)",
            });
        }
        timed(wait, |at| sys::mq_send(&self.mq, data, priority, at), || Error::Full)
            .map_err(|e| self.op_err("mq_timedsend", e))
    }

    /// Receives the oldest message of the highest priority into `buf`
    /// (which must hold the queue's message size), waiting for one.
    /// Returns its length and priority.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] for a buffer smaller than the queue's
    /// message size, before any system call.
    #[doc(alias = "mq_receive")]
    pub fn recv(&self, buf: &mut [u8]) -> Result<(usize, u32)> {
        self.recv_until(buf, Some(Deadline::never()))
    }

    /// Receives if a message is there now.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`], and as for [`recv`](Self::recv).
    pub fn try_recv(&self, buf: &mut [u8]) -> Result<(usize, u32)> {
        self.recv_until(buf, None)
    }

    /// Receives, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`recv`](Self::recv).
    pub fn recv_timeout(&self, buf: &mut [u8], timeout: Duration) -> Result<(usize, u32)> {
        self.recv_until(buf, Some(Deadline::after(timeout)))
    }

    /// Receives, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As for [`recv_timeout`](Self::recv_timeout).
    pub fn recv_deadline(&self, buf: &mut [u8], deadline: Instant) -> Result<(usize, u32)> {
        self.recv_until(buf, Some(Deadline::at(deadline)))
    }

    fn recv_until(&self, buf: &mut [u8], wait: Option<Deadline>) -> Result<(usize, u32)> {
        if buf.len() < self.message_size {
            return Err(Error::BufferTooSmall { len: buf.len(), needed: Some(self.message_size) });
        }
        let mut got = (0, 0);
        timed(
            wait,
            |at| {
                got = sys::mq_recv(&self.mq, buf, at)?;
                Ok(())
            },
            || Error::Empty,
        )
        .map_err(|e| self.op_err("mq_timedreceive", e))?;
        Ok(got)
    }

    /// Receives the oldest message of the highest priority into `buf`,
    /// replacing its contents, waiting for one; returns its priority. `buf`
    /// keeps its capacity (at least the message size), so a loop that
    /// reuses it allocates only at first.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv), without `BufferTooSmall`.
    #[inline]
    pub fn recv_vec(&self, buf: &mut Vec<u8>) -> Result<u32> {
        self.recv_vec_prio(buf, Some(Deadline::never()))
    }

    /// Like [`recv_vec`](Self::recv_vec) if a message is there now.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`], and as for [`recv_vec`](Self::recv_vec).
    pub fn try_recv_vec(&self, buf: &mut Vec<u8>) -> Result<u32> {
        self.recv_vec_prio(buf, None)
    }

    /// Like [`recv_vec`](Self::recv_vec), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`recv_vec`](Self::recv_vec).
    pub fn recv_vec_timeout(&self, buf: &mut Vec<u8>, timeout: Duration) -> Result<u32> {
        self.recv_vec_prio(buf, Some(Deadline::after(timeout)))
    }

    /// Receives the oldest message of the highest priority into `buf`,
    /// replacing its contents, waiting for one, for a caller that has no
    /// use for the priority; returns its length. The kernel is then not
    /// asked for the priority, which spares it a write to user memory per
    /// message (about 3% of a stream of 64-byte messages, measured with
    /// `ipc-kit bench`). `buf` keeps its capacity as with
    /// [`recv_vec`](Self::recv_vec).
    ///
    /// # Errors
    ///
    /// As for [`recv_vec`](Self::recv_vec).
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_msgq::{PosixQueue, QueueAttr};
    ///
    /// let name = format!("/ipc-msgq-doc-np-{}", std::process::id());
    /// let q = PosixQueue::create(&name, QueueAttr::default(), 0o600)?; // unlinked when dropped
    /// q.send(b"routine", 1)?;
    /// q.send(b"urgent", 7)?;
    /// let mut buf = Vec::new();
    /// // Still the highest priority first; only the number is not reported.
    /// assert_eq!(q.recv_vec_no_priority(&mut buf)?, 6);
    /// assert_eq!(buf, b"urgent");
    /// # Ok::<(), ipc_msgq::Error>(())
    /// ```
    #[inline]
    pub fn recv_vec_no_priority(&self, buf: &mut Vec<u8>) -> Result<usize> {
        self.recv_vec_until(buf, None, Some(Deadline::never())).map(|()| buf.len())
    }

    /// Like [`recv_vec_no_priority`](Self::recv_vec_no_priority) if a
    /// message is there now.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`], and as for [`recv_vec`](Self::recv_vec).
    pub fn try_recv_vec_no_priority(&self, buf: &mut Vec<u8>) -> Result<usize> {
        self.recv_vec_until(buf, None, None).map(|()| buf.len())
    }

    /// Like [`recv_vec_no_priority`](Self::recv_vec_no_priority), waiting
    /// at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`recv_vec`](Self::recv_vec).
    pub fn recv_vec_timeout_no_priority(&self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        self.recv_vec_until(buf, None, Some(Deadline::after(timeout))).map(|()| buf.len())
    }

    /// Receives into `buf`, storing the priority in `prio` when given.
    #[inline]
    fn recv_vec_until(&self, buf: &mut Vec<u8>, mut prio: Option<&mut u32>, wait: Option<Deadline>) -> Result<()> {
        timed(wait, |at| sys::mq_recv_vec(&self.mq, buf, self.message_size, prio.as_deref_mut(), at), || Error::Empty)
            .map_err(|e| self.op_err("mq_timedreceive", e))
    }

    /// [`recv_vec_until`](Self::recv_vec_until), returning the priority.
    #[inline]
    fn recv_vec_prio(&self, buf: &mut Vec<u8>, wait: Option<Deadline>) -> Result<u32> {
        let mut prio = 0;
        self.recv_vec_until(buf, Some(&mut prio), wait)?;
        Ok(prio)
    }

    /// Sends a `T` as the message.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub fn send_pod<T: Pod>(&self, value: &T, priority: u32) -> Result<()> {
        self.send(bytemuck::bytes_of(value), priority)
    }

    /// Receives a message that must be exactly a `T`; returns it and its
    /// priority.
    ///
    /// # Errors
    ///
    /// [`Error::WrongSize`] for a message of another length (it was
    /// taken); as for [`recv`](Self::recv).
    pub fn recv_pod<T: Pod>(&self) -> Result<(T, u32)> {
        let mut buf = vec![0u8; self.message_size.max(size_of::<T>())];
        let (n, prio) = self.recv(&mut buf)?;
        if n != size_of::<T>() {
            return Err(crate::error::not_a::<T>(n));
        }
        Ok((bytemuck::pod_read_unaligned(&buf[..n]), prio))
    }

    /// The queue's sizes and how many messages it holds now.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if `mq_getattr` fails.
    pub fn state(&self) -> Result<QueueState> {
        let (max, size, cur) = sys::mq_getattr(&self.mq).map_err(|e| Error::Io { op: "mq_getattr", source: e })?;
        let n = |v: i64| usize::try_from(v).unwrap_or(0);
        Ok(QueueState { max_messages: n(max), message_size: n(size), messages: n(cur) })
    }

    /// The largest message.
    pub fn message_size(&self) -> usize {
        self.message_size
    }

    /// The name it was opened with.
    pub fn name(&self) -> &str {
        self.name.name().0.to_str().unwrap_or_default()
    }

    /// Whether this handle unlinks the name when dropped.
    pub fn is_owner(&self) -> bool {
        self.name.is_owner()
    }

    /// Keeps the name after this handle is dropped.
    pub fn persist(&mut self) {
        self.name.persist();
    }

    /// Removes the name now (`mq_unlink`); open handles keep working.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when it is gone already.
    pub fn unlink(&mut self) -> Result<()> {
        self.name.remove().map_err(|e| Error::from_os(WHAT, || self.name().to_owned(), "mq_unlink", e))
    }

    fn op_err(&self, op: &'static str, e: Error) -> Error {
        match e {
            Error::Io { source, .. } => Error::from_os(WHAT, || self.name().to_owned(), op, source),
            other => other,
        }
    }
}

/// Runs a `mq_timed*` call: once with a deadline already passed (`wait`
/// None: `would_block()` when it would wait), or in slices until `wait`'s
/// deadline, retrying after `EINTR` with the time left. A zero or past
/// `wait` tries once too, and gives [`Error::Timeout`] when it would wait.
///
/// `would_block` is a function, not an `Error`, so that a call that
/// succeeds neither builds nor drops an error value.
#[inline]
fn timed(
    wait: Option<Deadline>,
    mut call: impl FnMut(Option<&libc::timespec>) -> io::Result<()>,
    would_block: fn() -> Error,
) -> Result<()> {
    let past = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    loop {
        let r = match wait {
            None => call(Some(&past)),
            Some(d) => match d.remaining() {
                None => call(None),
                // A deadline that has passed still tries once: an absolute
                // time already past makes the kernel try without waiting.
                Some(left) if left.is_zero() => call(Some(&past)),
                Some(left) => call(Some(&ipc_sync::realtime_after(left.min(SLICE)))),
            },
        };
        match r {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) => match wait {
                None => return Err(would_block()),
                Some(d) if d.has_expired() => return Err(Error::Timeout),
                Some(_) => continue, // a slice ended, or the wall clock jumped
            },
            Err(e) => return Err(Error::Io { op: "mq_timed*", source: e }),
        }
    }
}

fn check_name(name: &str) -> Result<CString> {
    ipc_sync::posix_name(name, 255).map_err(|reason| Error::InvalidName { name: name.to_owned(), reason })
}

/// Where the kernel's limits on a queue's sizes are set. A caller with
/// `CAP_SYS_RESOURCE` may go past them, up to the kernel's fixed maxima.
const MSG_MAX: &str = "/proc/sys/fs/mqueue/msg_max (beyond it needs CAP_SYS_RESOURCE, up to 65536)";
const MSGSIZE_MAX: &str = "/proc/sys/fs/mqueue/msgsize_max (beyond it needs CAP_SYS_RESOURCE, up to 16 MiB)";

/// The sizes no queue can have: zero, or more than `mq_attr` holds. The
/// limits set in /proc are the kernel's to apply, since a privileged
/// caller may exceed them.
fn check_attr(attr: QueueAttr) -> Result<()> {
    let bad = |what, requested: usize, file| {
        (requested == 0 || i64::try_from(requested).is_err()).then(|| Error::LimitExceeded {
            what,
            requested: requested as u64,
            limit: proc_limit(file_of(file)).unwrap_or(0),
            source_of_limit: file,
        })
    };
    if let Some(e) = bad("POSIX queue length", attr.max_messages, MSG_MAX) {
        return Err(e);
    }
    if let Some(e) = bad("POSIX queue message size", attr.message_size, MSGSIZE_MAX) {
        return Err(e);
    }
    Ok(())
}

/// The file named at the start of a limit's description.
fn file_of(source: &str) -> &str {
    source.split(' ').next().unwrap_or(source)
}

/// Which size the kernel refused (`EINVAL` from a creating `mq_open`):
/// the one over its /proc limit, else the one over the fixed maximum.
fn size_refused(attr: QueueAttr) -> Option<Error> {
    let over = |what, requested: usize, file, hard: u64| {
        let limit = proc_limit(file_of(file)).unwrap_or(0);
        if requested as u64 > limit {
            Some(Error::LimitExceeded { what, requested: requested as u64, limit, source_of_limit: file })
        } else if requested as u64 > hard {
            Some(Error::LimitExceeded {
                what,
                requested: requested as u64,
                limit: hard,
                source_of_limit: "the kernel's fixed maximum (HARD_MSGMAX, HARD_MSGSIZEMAX)",
            })
        } else {
            None
        }
    };
    over("POSIX queue length", attr.max_messages, MSG_MAX, 65536)
        .or_else(|| over("POSIX queue message size", attr.message_size, MSGSIZE_MAX, 16 << 20))
}

/// What [`open_err`] is given for an `mq_open` that does not create.
const NOT_CREATING: QueueAttr = QueueAttr { max_messages: 0, message_size: 0 };

fn open_err(name: &str, attr: QueueAttr, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => Error::LimitExceeded {
            what: "POSIX message queues",
            requested: 1,
            limit: proc_limit("/proc/sys/fs/mqueue/queues_max").unwrap_or(0),
            source_of_limit: "/proc/sys/fs/mqueue/queues_max",
        },
        Some(libc::EMFILE) if attr.max_messages > 0 => Error::LimitExceeded {
            what: "bytes of POSIX queues for this user",
            requested: attr.max_messages.saturating_mul(attr.message_size) as u64,
            limit: 0,
            source_of_limit: "RLIMIT_MSGQUEUE (or the process's open file limit)",
        },
        Some(libc::EINVAL) if attr.max_messages > 0 => {
            size_refused(attr).unwrap_or_else(|| Error::from_os(WHAT, || name.to_owned(), "mq_open", e))
        }
        _ => Error::from_os(WHAT, || name.to_owned(), "mq_open", e),
    }
}

impl AsFd for PosixQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.mq.as_fd()
    }
}

/// The queue's fd, for both interests: readable while a message waits,
/// writable while one more fits. A queue has no peer to lose: a process
/// that holds it open keeps it, even after its name is removed.
impl ipc_sync::ready::Pollable for PosixQueue {
    fn source(&self, _interest: ipc_sync::ready::Interest) -> std::io::Result<Option<ipc_sync::ready::Source<'_>>> {
        Ok(Some(ipc_sync::ready::Source::fd(self.mq.as_fd())))
    }
}

impl AsRawFd for PosixQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.mq.as_fd().as_raw_fd()
    }
}

impl fmt::Debug for PosixQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PosixQueue")
            .field("name", &self.name())
            .field("fd", &self.as_raw_fd())
            .field("message_size", &self.message_size)
            .field("owner", &self.is_owner())
            .finish()
    }
}
