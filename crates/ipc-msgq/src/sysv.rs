use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use ipc_sync::object::{Guard, ObjectError, Remove};
use ipc_sync::{Deadline, Key};

use crate::error::{Error, Result};
use crate::limits::{MAX_ROOM, msgmax_seen, proc_limit, sysv_max_message};
use crate::selector::Selector;
use crate::stat::QueueStat;
use crate::sys;
use crate::sysv_poll::Polls;

const WHAT: &str = "System V message queue";

/// A System V message queue (`msgget`): typed messages, kept by the
/// kernel with their boundaries, found by unrelated processes through a
/// [`Key`].
///
/// The handle that creates a queue removes it (`IPC_RMID`) when dropped
/// unless [`persist`](Self::persist) is called; handles from
/// [`open`](Self::open) never remove it. A process blocked on a queue
/// that is removed gets [`Error::Removed`].
///
/// Receiving takes a [`Selector`] (the kernel's type rules). A message
/// longer than the receive buffer is an error and stays in the queue; only
/// [`recv_truncating`](Self::recv_truncating) cuts it (`MSG_NOERROR`).
///
/// System V has no timed receive or send. The `*_timeout` forms poll with
/// `IPC_NOWAIT`, sleeping between attempts from 20 µs up to 1 ms: a
/// timeout ends at most about 1 ms late, a message waiting for a timed
/// receiver is taken at most 1 ms late, and an idle timed wait makes
/// about a thousand system calls a second. The blocking forms sleep in the
/// kernel and cost nothing while idle.
///
/// # Examples
///
/// ```
/// use ipc_msgq::{Key, Selector, SysvQueue};
///
/// let q = SysvQueue::create(Key::private(), 0o600)?;
/// q.send(2, b"second kind")?;
/// q.send(1, b"first kind")?;
/// let mut buf = [0; 64];
/// // The lowest type up to 5 comes first, whatever the order sent.
/// let (mtype, n) = q.recv(Selector::AtMost(5), &mut buf)?;
/// assert_eq!((mtype, &buf[..n]), (1, &b"first kind"[..]));
/// assert!(q.try_recv(Selector::Exactly(7), &mut buf).is_err());
/// # Ok::<(), ipc_msgq::Error>(())
/// ```
///
/// # References
///
/// [msgget(2)](https://man7.org/linux/man-pages/man2/msgget.2.html),
/// [msgop(2)](https://man7.org/linux/man-pages/man2/msgop.2.html)
pub struct SysvQueue {
    id: Guard<QueueId>,
    key: Key,
    /// Its watchers for pollers (see [`Pollable`](ipc_sync::Pollable)).
    polls: Polls,
}

/// A System V queue's id, which `IPC_RMID` removes.
#[derive(Debug)]
struct QueueId(i32);

impl Remove for QueueId {
    fn remove(&self) -> io::Result<()> {
        sys::msg_remove(self.0)
    }
}

impl SysvQueue {
    /// Creates a queue under `key` (exclusive) with permissions `mode`
    /// (such as 0o600).
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`]; [`Error::PermissionDenied`];
    /// [`Error::LimitExceeded`] when the system's number of queues
    /// (/proc/sys/kernel/msgmni) is reached.
    #[doc(alias = "msgget")]
    pub fn create(key: Key, mode: u32) -> Result<Self> {
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as libc::c_int;
        let id = sys::msgget(key.raw(), flags).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSPC) => Error::LimitExceeded {
                what: "System V message queues",
                requested: 1,
                limit: proc_limit("/proc/sys/kernel/msgmni").unwrap_or(0),
                source_of_limit: "/proc/sys/kernel/msgmni",
            },
            _ => Error::from_os(WHAT, || key.to_string(), "msgget", e),
        })?;
        Ok(SysvQueue { id: Guard::made(QueueId(id)), key, polls: Polls::default() })
    }

    /// Opens the existing queue under `key`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; [`Error::PermissionDenied`];
    /// [`Error::InvalidKey`] for [`Key::private`].
    pub fn open(key: Key) -> Result<Self> {
        if key.is_private() {
            return Err(Error::InvalidKey { reason: "IPC_PRIVATE names no existing queue; open by key or id" });
        }
        // Asking for read and write (0o666) makes msgget check them: with
        // 0 it would hand out the id to anyone.
        let id = sys::msgget(key.raw(), 0o666).map_err(|e| Error::from_os(WHAT, || key.to_string(), "msgget", e))?;
        Ok(SysvQueue { id: Guard::opened(QueueId(id)), key, polls: Polls::default() })
    }

    /// Opens the queue with this id (as `ipcs -q` shows it).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when no queue has that id (also one removed
    /// before); [`Error::PermissionDenied`].
    pub fn open_id(id: i32) -> Result<Self> {
        let q = SysvQueue { id: Guard::opened(QueueId(id)), key: Key::private(), polls: Polls::default() };
        match q.stat() {
            Ok(_) => Ok(q),
            Err(Error::Removed { what, name }) => Err(Error::NotFound { what, name }),
            Err(e) => Err(e),
        }
    }

    /// Opens the queue under `key`, or creates it with `mode` when there is
    /// none. Only a handle that created it removes it.
    ///
    /// # Errors
    ///
    /// As for [`create`](Self::create) and [`open`](Self::open).
    pub fn open_or_create(key: Key, mode: u32) -> Result<Self> {
        ipc_sync::object::open_or_create_object(|| Self::create(key, mode), || Self::open(key))
    }

    fn name(&self) -> String {
        self.key.describe(self.id())
    }

    fn err(&self, op: &'static str, e: io::Error) -> Error {
        match e.raw_os_error() {
            // An id that no longer names a queue: every other cause of
            // EINVAL (a negative size, a type below 1 for msgsnd) is ruled
            // out before the call, and msgsnd's oversize case goes through
            // `send_err`.
            Some(libc::EINVAL) => Error::Removed { what: WHAT, name: self.name() },
            _ => Error::from_os(WHAT, || self.name(), op, e),
        }
    }

    #[inline]
    fn check_send(mtype: i64, data: &[u8]) -> Result<()> {
        if mtype < 1 {
            return Err(Error::InvalidType { mtype });
        }
        if data.len() > msgmax_seen() {
            // It may have been raised since it was read.
            let max = sysv_max_message();
            if data.len() > max {
                return Err(Error::MessageTooLarge { len: data.len(), max, limit: "/proc/sys/kernel/msgmax" });
            }
        }
        Ok(())
    }

    /// After a send found no room: a message longer than the queue's
    /// capacity could never fit (the kernel would wait for good), so it is
    /// [`Error::MessageTooLarge`]; otherwise `full`. A sender that may
    /// write but not read the queue cannot read its capacity (`IPC_STAT`
    /// needs read permission): for it the queue is just `full`.
    #[cold]
    fn no_room(&self, len: usize, full: Error) -> Error {
        match self.stat() {
            Ok(st) if len as u64 > st.capacity => Error::MessageTooLarge {
                len,
                max: usize::try_from(st.capacity).unwrap_or(usize::MAX),
                limit: "the queue's capacity (msg_qbytes)",
            },
            Ok(_) | Err(Error::PermissionDenied { .. }) => {
                self.polls.wants(len);
                full
            }
            Err(e) => e,
        }
    }

    /// Sends `data` with type `mtype`, waiting while the queue is full.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidType`] for a type below 1 and
    /// [`Error::MessageTooLarge`] over msgmax, both before any system call;
    /// [`Error::MessageTooLarge`] over the queue's capacity (`msg_qbytes`),
    /// checked when the queue has no room, before waiting and before
    /// anything is sent (when this process may read the queue's state:
    /// a sender with write permission only cannot, and waits as for a
    /// full queue); [`Error::Removed`]; [`Error::PermissionDenied`].
    ///
    /// A send already waiting in the kernel when another process lowers
    /// the capacity below its message goes on waiting, until the capacity
    /// is raised again or the queue is removed: the kernel compares a
    /// message with the capacity only before it waits, and wakes no
    /// waiting sender to say it no longer fits. The timed forms check
    /// again at each attempt and return [`Error::MessageTooLarge`]; use
    /// them where others may lower the capacity.
    #[doc(alias = "msgsnd")]
    #[inline]
    pub fn send(&self, mtype: i64, data: &[u8]) -> Result<()> {
        Self::check_send(mtype, data)?;
        // Try first: only a queue without room needs its capacity read.
        match self.try_send_once(mtype, data) {
            Err(Error::Full) => {}
            other => return other,
        }
        loop {
            match sys::msgsnd(self.id(), mtype as libc::c_long, data, 0) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other.map_err(|e| self.send_err(e, data.len())),
            }
        }
    }

    /// Sends if the queue has room now.
    ///
    /// # Errors
    ///
    /// [`Error::Full`], and as for [`send`](Self::send).
    pub fn try_send(&self, mtype: i64, data: &[u8]) -> Result<()> {
        Self::check_send(mtype, data)?;
        self.try_send_once(mtype, data)
    }

    fn try_send_once(&self, mtype: i64, data: &[u8]) -> Result<()> {
        loop {
            match sys::msgsnd(self.id(), mtype as libc::c_long, data, libc::IPC_NOWAIT) {
                Ok(()) => {
                    self.polls.sent();
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Err(self.no_room(data.len(), Error::Full)),
                other => return other.map_err(|e| self.send_err(e, data.len())),
            }
        }
    }

    /// Sends, waiting at most `timeout` for room (see the type's docs for
    /// how).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`send`](Self::send).
    pub fn send_timeout(&self, mtype: i64, data: &[u8], timeout: Duration) -> Result<()> {
        self.send_deadline_at(mtype, data, Deadline::after(timeout))
    }

    /// Sends, waiting until `deadline` at the latest for room.
    ///
    /// # Errors
    ///
    /// As for [`send_timeout`](Self::send_timeout).
    pub fn send_deadline(&self, mtype: i64, data: &[u8], deadline: Instant) -> Result<()> {
        self.send_deadline_at(mtype, data, Deadline::at(deadline))
    }

    fn send_deadline_at(&self, mtype: i64, data: &[u8], deadline: Deadline) -> Result<()> {
        Self::check_send(mtype, data)?;
        poll_until(deadline, || match self.try_send_once(mtype, data) {
            Err(Error::Full) => None,
            other => Some(other),
        })
    }

    fn send_err(&self, e: io::Error, len: usize) -> Error {
        match e.raw_os_error() {
            // A removed queue, or msgmax lowered since it was read. (A
            // queue this process may not read, but write, is still there.)
            Some(libc::EINVAL) => match self.stat() {
                Ok(_) | Err(Error::PermissionDenied { .. }) => {
                    let max = sysv_max_message();
                    if len > max {
                        Error::MessageTooLarge { len, max, limit: "/proc/sys/kernel/msgmax" }
                    } else {
                        Error::Io { op: "msgsnd", source: e }
                    }
                }
                Err(other) => other,
            },
            _ => self.err("msgsnd", e),
        }
    }

    /// Receives the first message `selector` picks into `buf`, waiting for
    /// one. Returns its type and length.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] when the message is longer than `buf` (it
    /// stays in the queue); [`Error::InvalidType`] for a selector type
    /// below 1; [`Error::Removed`] when the queue is removed meanwhile.
    #[doc(alias = "msgrcv")]
    pub fn recv(&self, selector: Selector, buf: &mut [u8]) -> Result<(i64, usize)> {
        let (t, flags) = selector.raw()?;
        self.recv_raw(t, flags, buf)
    }

    /// Like [`recv`](Self::recv), but a message longer than `buf` is cut to
    /// fit (`MSG_NOERROR`); the rest is lost.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv), without `BufferTooSmall`.
    pub fn recv_truncating(&self, selector: Selector, buf: &mut [u8]) -> Result<(i64, usize)> {
        let (t, flags) = selector.raw()?;
        self.recv_raw(t, flags | libc::MSG_NOERROR, buf)
    }

    fn recv_raw(&self, t: libc::c_long, flags: libc::c_int, buf: &mut [u8]) -> Result<(i64, usize)> {
        let room = buf.len();
        self.recv_to(t, flags, room, |text| buf[..text.len()].copy_from_slice(text))
    }

    /// `msgrcv` of a message of at most `room` bytes, handed to `out`.
    #[inline]
    fn recv_to(
        &self,
        t: libc::c_long,
        flags: libc::c_int,
        room: usize,
        mut out: impl FnMut(&[u8]),
    ) -> Result<(i64, usize)> {
        loop {
            match sys::msgrcv_with(self.id(), room, t, flags, &mut out) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::E2BIG) => {
                    return Err(Error::BufferTooSmall { len: room, needed: None });
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOMSG) => return Err(Error::Empty),
                other => return other.map_err(|e| self.err("msgrcv", e)),
            }
        }
    }

    /// Receives if a matching message is there now.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`], and as for [`recv`](Self::recv).
    pub fn try_recv(&self, selector: Selector, buf: &mut [u8]) -> Result<(i64, usize)> {
        let (t, flags) = selector.raw()?;
        self.recv_raw(t, flags | libc::IPC_NOWAIT, buf)
    }

    /// Receives, waiting at most `timeout` (see the type's docs for how).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`recv`](Self::recv).
    pub fn recv_timeout(&self, selector: Selector, buf: &mut [u8], timeout: Duration) -> Result<(i64, usize)> {
        self.recv_deadline_at(selector, buf, Deadline::after(timeout))
    }

    /// Receives, waiting until `deadline` at the latest.
    ///
    /// # Errors
    ///
    /// As for [`recv_timeout`](Self::recv_timeout).
    pub fn recv_deadline(&self, selector: Selector, buf: &mut [u8], deadline: Instant) -> Result<(i64, usize)> {
        self.recv_deadline_at(selector, buf, Deadline::at(deadline))
    }

    fn recv_deadline_at(&self, selector: Selector, buf: &mut [u8], deadline: Deadline) -> Result<(i64, usize)> {
        let (t, flags) = selector.raw()?;
        poll_until(deadline, || match self.recv_raw(t, flags | libc::IPC_NOWAIT, buf) {
            Err(Error::Empty) => None,
            other => Some(other),
        })
    }

    /// Receives the first message `selector` picks into `buf`, replacing
    /// its contents, waiting for one; returns its type. `buf` grows to the
    /// message's length (at most msgmax) and keeps its capacity, so a loop
    /// that reuses it allocates only at first.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv), without `BufferTooSmall`.
    #[inline]
    pub fn recv_vec(&self, selector: Selector, buf: &mut Vec<u8>) -> Result<i64> {
        let (t, flags) = selector.raw()?;
        self.recv_vec_raw(t, flags, buf)
    }

    /// Like [`recv_vec`](Self::recv_vec) if a matching message is there now.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`], and as for [`recv_vec`](Self::recv_vec).
    pub fn try_recv_vec(&self, selector: Selector, buf: &mut Vec<u8>) -> Result<i64> {
        let (t, flags) = selector.raw()?;
        self.recv_vec_raw(t, flags | libc::IPC_NOWAIT, buf)
    }

    /// Like [`recv_vec`](Self::recv_vec), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`recv_vec`](Self::recv_vec).
    pub fn recv_vec_timeout(&self, selector: Selector, buf: &mut Vec<u8>, timeout: Duration) -> Result<i64> {
        let (t, flags) = selector.raw()?;
        poll_until(Deadline::after(timeout), || match self.recv_vec_raw(t, flags | libc::IPC_NOWAIT, buf) {
            Err(Error::Empty) => None,
            other => Some(other),
        })
    }

    /// Receives into `buf` with room for msgmax; a longer message (msgmax
    /// was raised, or lowered after it was sent) stays queued and is asked
    /// for again with more room, msgmax read anew.
    #[inline]
    fn recv_vec_raw(&self, t: libc::c_long, flags: libc::c_int, buf: &mut Vec<u8>) -> Result<i64> {
        let mut room = msgmax_seen();
        loop {
            match self.recv_to(t, flags, room, |text| {
                buf.clear();
                buf.extend_from_slice(text);
            }) {
                Err(Error::BufferTooSmall { .. }) if room < MAX_ROOM => {
                    room = sysv_max_message().max(room.saturating_mul(2)).min(MAX_ROOM);
                }
                other => return other.map(|(mtype, _)| mtype),
            }
        }
    }

    /// Sends a `T` as the message text.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub fn send_pod<T: Pod>(&self, mtype: i64, value: &T) -> Result<()> {
        self.send(mtype, bytemuck::bytes_of(value))
    }

    /// Receives a message that must be exactly a `T`.
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooSmall`] for a longer message (it stays queued);
    /// [`Error::WrongSize`] for a shorter one (it was taken);
    /// as for [`recv`](Self::recv).
    pub fn recv_pod<T: Pod>(&self, selector: Selector) -> Result<(i64, T)> {
        let mut value = T::zeroed();
        let (mtype, n) = self.recv(selector, bytemuck::bytes_of_mut(&mut value))?;
        if n != size_of::<T>() {
            return Err(crate::error::not_a::<T>(n));
        }
        Ok((mtype, value))
    }

    /// The queue's state (`IPC_STAT`).
    ///
    /// # Errors
    ///
    /// [`Error::Removed`]; [`Error::PermissionDenied`].
    pub fn stat(&self) -> Result<QueueStat> {
        let ds = sys::msg_stat(self.id()).map_err(|e| self.err("msgctl(IPC_STAT)", e))?;
        Ok(QueueStat::from_ds(&ds))
    }

    /// Sets the most bytes the queue holds (`msg_qbytes`). Raising it above
    /// /proc/sys/kernel/msgmnb needs `CAP_SYS_RESOURCE`. A blocking
    /// [`send`](Self::send) already waiting with a message longer than the
    /// new capacity goes on waiting (see there).
    ///
    /// # Errors
    ///
    /// [`Error::LimitExceeded`] naming msgmnb when refused for that;
    /// [`Error::PermissionDenied`] when this process may not change the
    /// queue.
    pub fn set_capacity(&self, bytes: u64) -> Result<()> {
        let mut ds = sys::msg_stat(self.id()).map_err(|e| self.err("msgctl(IPC_STAT)", e))?;
        ds.msg_qbytes = bytes;
        sys::msg_set(self.id(), &ds).map_err(|e| {
            let limit = proc_limit("/proc/sys/kernel/msgmnb").unwrap_or(0);
            if e.raw_os_error() == Some(libc::EPERM) && bytes > limit {
                Error::LimitExceeded {
                    what: "System V queue capacity",
                    requested: bytes,
                    limit,
                    source_of_limit: "/proc/sys/kernel/msgmnb (raising it needs CAP_SYS_RESOURCE)",
                }
            } else {
                self.err("msgctl(IPC_SET)", e)
            }
        })
    }

    /// Sets the permission bits.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`] when this process is not the owner or
    /// creator.
    pub fn set_mode(&self, mode: u32) -> Result<()> {
        let mut ds = sys::msg_stat(self.id()).map_err(|e| self.err("msgctl(IPC_STAT)", e))?;
        ds.msg_perm.mode = (mode & 0o777) as _;
        sys::msg_set(self.id(), &ds).map_err(|e| self.err("msgctl(IPC_SET)", e))
    }

    /// The queue's id.
    pub fn id(&self) -> i32 {
        self.id.name().0
    }

    /// The key it was created or opened with.
    pub fn key(&self) -> Key {
        self.key
    }

    /// Whether this handle removes the queue when dropped.
    pub fn is_owner(&self) -> bool {
        self.id.is_owner()
    }

    /// Keeps the queue after this handle is dropped.
    pub fn persist(&mut self) {
        self.id.persist();
    }

    /// Removes the queue now; blocked processes get [`Error::Removed`].
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`]; [`Error::Removed`].
    #[doc(alias = "IPC_RMID")]
    pub fn remove(mut self) -> Result<()> {
        self.id.remove().map_err(|e| self.err("msgctl(IPC_RMID)", e))
    }
}

/// Retries `attempt` (which returns `None` for "not yet") with sleeps from
/// 20 µs doubling up to 1 ms, until it returns something or `deadline`
/// passes.
fn poll_until<T>(deadline: Deadline, mut attempt: impl FnMut() -> Option<Result<T>>) -> Result<T> {
    let mut pause = Duration::from_micros(20);
    loop {
        if let Some(r) = attempt() {
            return r;
        }
        let Some(left) = deadline.remaining() else {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
            continue;
        };
        if left.is_zero() {
            return Err(Error::Timeout);
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

/// Pollable through a thread of this process that watches the queue's
/// state (`IPC_STAT`) while a poller waits: a System V queue has no
/// descriptor. Readable while the queue holds a message of any type;
/// writable while the message last found no room for (or an empty one)
/// fits; either when the queue is removed. The thread polls from every
/// 20 µs, backing off to every millisecond (about a thousand system calls
/// a second while a poller waits, none between waits), so a poller learns
/// of a message at most about 1 ms late. Polling takes read permission on
/// the queue (`IPC_STAT`).
impl ipc_sync::Pollable for SysvQueue {
    fn source(&self, interest: ipc_sync::Interest) -> io::Result<Option<ipc_sync::Source<'_>>> {
        self.polls.source(self.id(), interest).map(Some)
    }
}

impl fmt::Debug for SysvQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SysvQueue")
            .field("id", &self.id())
            .field("key", &self.key)
            .field("owner", &self.is_owner())
            .finish()
    }
}
