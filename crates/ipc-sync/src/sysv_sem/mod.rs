use std::fmt;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::object::{Guard, Remove};
use crate::{Deadline, Key, sys};

mod making;

const WHAT: &str = "System V semaphore set";

/// The most semaphores one set may hold on Linux (`SEMMSL` is 32000), less
/// the guard that every set made here carries.
const MAX_SEMS: usize = 32_000 - 1;

/// The largest value of one semaphore (`SEMVMX`).
pub const SEM_VALUE_MAX: u16 = 32_767;

/// One operation on one semaphore of a [`SemaphoreSet`], for
/// [`SemaphoreSet::apply`]: add `delta` (waiting while that would make the
/// value negative), or with delta 0 wait until the value is 0.
///
/// Operations undo themselves when the process exits (`SEM_UNDO`) unless
/// made with [`no_undo`](Self::no_undo): a process killed while holding a
/// semaphore gives it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SemOp {
    index: u16,
    delta: i16,
    undo: bool,
}

impl SemOp {
    /// Takes one unit of semaphore `index` (waits while it is 0).
    pub const fn wait(index: u16) -> Self {
        SemOp { index, delta: -1, undo: true }
    }

    /// Gives one unit back to semaphore `index`.
    pub const fn post(index: u16) -> Self {
        SemOp { index, delta: 1, undo: true }
    }

    /// Adds `delta` to semaphore `index`: negative takes (waiting for
    /// enough), positive gives, zero waits for the value to be 0.
    pub const fn add(index: u16, delta: i16) -> Self {
        SemOp { index, delta, undo: true }
    }

    /// Without `SEM_UNDO`: the change stays when the process exits (say, a
    /// producer's post that a consumer will take).
    pub const fn no_undo(mut self) -> Self {
        self.undo = false;
        self
    }
}

/// A set of System V semaphores (`semget`), changed several at a time in
/// one atomic operation (`semop`), with `SEM_UNDO` so that a process that
/// dies holding semaphores gives them back.
///
/// The handle that creates the set removes it (`IPC_RMID`) when dropped,
/// unless [`persist`](Self::persist) is called; handles from
/// [`open`](Self::open) never remove it. A waiter whose set is removed gets
/// [`Error::Removed`].
///
/// # Making a set
///
/// `semget` makes a set with every value 0; setting the values takes more
/// system calls, and the process doing it may be slow or die between them.
/// So every set made here carries one more semaphore than asked for, at
/// its end, out of reach of the index-taking methods: its guard. Its value
/// says how far the making got, and the kernel keeps the proof that the
/// process making it lives:
///
/// 1. The creator makes the set with `semget` (guard 0: not begun).
/// 2. It claims the making with one `semop` that succeeds only while the
///    guard is 0 and leaves 1 there, with a `SEM_UNDO` adjustment that
///    the kernel adds back if the process dies: its death turns the guard
///    to 2 (abandoned).
/// 3. It sets the values (`SETVAL`), then marks the set made (guard 3)
///    and gives up the adjustment, in one `semop`.
///
/// [`open`](Self::open) returns a made set, and waits while a live process
/// is making one, however slow it is: it never takes a set over on time
/// alone. It finds no finished set ([`Error::NotFound`]) when nobody has
/// begun making it, or when the process that was making it died.
/// [`open_or_create`](Self::open_or_create) finishes such a set itself
/// (claiming it as in step 2, so exactly one process makes a set) and
/// then owns it; a creator stalled between steps 1 and 2 then finds its
/// claim refused and gets [`Error::AlreadyExists`], as if the other process
/// had created the set first, and never removes it.
///
/// Sets made by other programs carry no guard; open them only with
/// programs that use this type.
///
/// # Examples
///
/// ```
/// use ipc_sync::{Key, SemOp, SemaphoreSet};
///
/// // Two semaphores: a lock (1) and a count of items (0).
/// let set = SemaphoreSet::create(Key::private(), &[1, 0], 0o600)?;
/// set.apply(&[SemOp::wait(0), SemOp::post(1).no_undo()])?; // both, atomically
/// assert_eq!((set.value(0)?, set.value(1)?), (0, 1));
/// assert!(set.try_apply(&[SemOp::wait(0)]).is_err(), "the lock is taken");
/// set.post(0)?;
/// # Ok::<(), ipc_sync::Error>(())
/// ```
///
/// # References
///
/// [semget(2)](https://man7.org/linux/man-pages/man2/semget.2.html),
/// [semop(2)](https://man7.org/linux/man-pages/man2/semop.2.html)
pub struct SemaphoreSet {
    guard: Guard<SemId>,
    key: Key,
    len: usize,
}

/// The id of a set, removed with `IPC_RMID`.
#[derive(Debug)]
struct SemId(i32);

impl Remove for SemId {
    fn remove(&self) -> std::io::Result<()> {
        sys::sem_remove(self.0)
    }
}

impl SemaphoreSet {
    /// Opens the existing set under `key`. While another process is making
    /// it (see "Making a set" above), waits until it has: as long as that
    /// process lives, however slow it is.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is no set, or no finished one (nobody
    /// has begun making it, or the process making it died;
    /// [`open_or_create`](Self::open_or_create) finishes such a set);
    /// [`Error::PermissionDenied`]; [`Error::InvalidKey`] for
    /// [`Key::private`]; [`Error::InvalidArgument`] for a set that carries
    /// no guard (made by another program).
    pub fn open(key: Key) -> Result<Self> {
        Self::open_with(key, None, Deadline::never())
    }

    /// [`open`](Self::open), waiting at most `timeout` for a process that
    /// is making the set; a zero timeout looks once.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the set is still being made at the
    /// deadline, and as for [`open`](Self::open).
    pub fn open_timeout(key: Key, timeout: Duration) -> Result<Self> {
        Self::open_with(key, None, Deadline::after(timeout))
    }

    /// Opens the set under `key`, or creates it with `values` and `mode`
    /// when there is none. A set whose making nobody has begun, or whose
    /// maker died, is made here with `values`; a set another process is
    /// making is waited for, as long as that process lives. The handle of
    /// the process that made the set (exactly one) removes it when dropped.
    ///
    /// # Errors
    ///
    /// As for [`create`](Self::create) and [`open`](Self::open), without
    /// their `AlreadyExists` and `NotFound`; [`Error::InvalidArgument`] when
    /// a set to make here holds another number of semaphores. (A made set
    /// is opened whatever its size.)
    pub fn open_or_create(key: Key, values: &[u16], mode: u32) -> Result<Self> {
        Self::open_or_create_deadline(key, values, mode, Deadline::never())
    }

    /// [`open_or_create`](Self::open_or_create), waiting at most `timeout`
    /// for a process that is making the set.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when another process is still making the set at
    /// the deadline, and as for [`open_or_create`](Self::open_or_create).
    pub fn open_or_create_timeout(key: Key, values: &[u16], mode: u32, timeout: Duration) -> Result<Self> {
        Self::open_or_create_deadline(key, values, mode, Deadline::after(timeout))
    }

    fn open_or_create_deadline(key: Key, values: &[u16], mode: u32, deadline: Deadline) -> Result<Self> {
        check_values(values)?;
        crate::object::open_or_create_object(
            || Self::create(key, values, mode),
            || Self::open_with(key, Some(values), deadline),
        )
    }

    /// Applies all `ops` at once, atomically, waiting as long as it takes
    /// for all of them to be possible.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an index out of range or no
    /// operations; [`Error::Removed`] when the set is removed meanwhile;
    /// [`Error::Overflow`] when a value would pass [`SEM_VALUE_MAX`] or its
    /// undo adjustment would leave ±[`SEM_VALUE_MAX`] (`ERANGE`).
    #[doc(alias = "semop")]
    pub fn apply(&self, ops: &[SemOp]) -> Result<()> {
        self.run(ops, Some(Deadline::never()))
    }

    /// Applies `ops` if they are all possible now.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when one would have to wait, and as for
    /// [`apply`](Self::apply).
    pub fn try_apply(&self, ops: &[SemOp]) -> Result<()> {
        self.run(ops, None)
    }

    /// Applies `ops`, waiting at most `timeout` (`semtimedop`); a zero
    /// timeout tries once, as [`try_apply`](Self::try_apply) does.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`apply`](Self::apply).
    #[doc(alias = "semtimedop")]
    pub fn apply_timeout(&self, ops: &[SemOp], timeout: Duration) -> Result<()> {
        self.run(ops, Some(Deadline::after(timeout)))
    }

    /// Applies `ops`, waiting until `deadline` at the latest; a deadline
    /// that has passed tries once.
    ///
    /// # Errors
    ///
    /// As for [`apply_timeout`](Self::apply_timeout).
    pub fn apply_deadline(&self, ops: &[SemOp], deadline: Instant) -> Result<()> {
        self.run(ops, Some(Deadline::at(deadline)))
    }

    /// Takes one unit of semaphore `index` (with `SEM_UNDO`).
    ///
    /// # Errors
    ///
    /// As for [`apply`](Self::apply).
    pub fn wait(&self, index: u16) -> Result<()> {
        self.apply(&[SemOp::wait(index)])
    }

    /// Takes one unit of semaphore `index` if there is one.
    ///
    /// # Errors
    ///
    /// As for [`try_apply`](Self::try_apply).
    pub fn try_wait(&self, index: u16) -> Result<()> {
        self.try_apply(&[SemOp::wait(index)])
    }

    /// Takes one unit of semaphore `index`, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`apply_timeout`](Self::apply_timeout).
    pub fn wait_timeout(&self, index: u16, timeout: Duration) -> Result<()> {
        self.apply_timeout(&[SemOp::wait(index)], timeout)
    }

    /// Gives one unit to semaphore `index` (with `SEM_UNDO`, so it pairs
    /// with a [`wait`](Self::wait) by the same process).
    ///
    /// # Errors
    ///
    /// As for [`apply`](Self::apply).
    pub fn post(&self, index: u16) -> Result<()> {
        self.apply(&[SemOp::post(index)])
    }

    fn run(&self, ops: &[SemOp], wait: Option<Deadline>) -> Result<()> {
        if ops.is_empty() || ops.len() > 500 {
            return Err(Error::InvalidArgument {
                what: "semaphore operations",
                reason: format!("{} operations given; semop takes 1 to 500 (SEMOPM)", ops.len()),
            });
        }
        let mut bufs = Vec::with_capacity(ops.len());
        for op in ops {
            self.check_index(op.index)?;
            bufs.push(sembuf(op.index, op.delta, op.undo, wait.is_none()));
        }
        match semop(self.id(), &mut bufs, wait) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && wait.is_some() => Err(Error::Timeout { what: WHAT }),
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => {
                Err(Error::Overflow { what: "semaphore value (or its undo adjustment)", max: u64::from(SEM_VALUE_MAX) })
            }
            Err(e) => Err(self.err("semop", e)),
        }
    }

    fn check_index(&self, index: u16) -> Result<()> {
        if usize::from(index) >= self.len {
            return Err(Error::InvalidArgument {
                what: "semaphore index",
                reason: format!("index {index}, but the set has {} semaphores", self.len),
            });
        }
        Ok(())
    }

    /// The value of semaphore `index`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an index out of range;
    /// [`Error::Removed`].
    pub fn value(&self, index: u16) -> Result<u16> {
        self.check_index(index)?;
        let v = sys::sem_getval(self.id(), libc::c_int::from(index)).map_err(|e| self.err("semctl(GETVAL)", e))?;
        Ok(u16::try_from(v).unwrap_or(0))
    }

    /// Sets semaphore `index` to `value` (clearing every process's undo
    /// record for it, as the kernel does).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an index out of range or a value over
    /// [`SEM_VALUE_MAX`].
    pub fn set_value(&self, index: u16, value: u16) -> Result<()> {
        self.check_index(index)?;
        check_values(&[value])?;
        sys::sem_setval(self.id(), libc::c_int::from(index), libc::c_int::from(value))
            .map_err(|e| self.err("semctl(SETVAL)", e))
    }

    /// How many semaphores the set holds (not counting its guard).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a set has at least one semaphore.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The set's id (as `ipcs -s` shows it).
    pub fn id(&self) -> i32 {
        self.guard.name().0
    }

    /// The key it was created or opened with.
    pub fn key(&self) -> Key {
        self.key
    }

    /// Whether this handle removes the set when dropped.
    pub fn is_owner(&self) -> bool {
        self.guard.is_owner()
    }

    /// Keeps the set after this handle is dropped.
    pub fn persist(&mut self) {
        self.guard.persist();
    }

    /// Removes the set now (`IPC_RMID`); processes waiting on it get
    /// [`Error::Removed`]. Any handle may remove it, given permission.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`]; [`Error::Removed`] when it is gone
    /// already.
    #[doc(alias = "IPC_RMID")]
    pub fn remove(mut self) -> Result<()> {
        let removed = self.guard.remove();
        removed.map_err(|e| self.err("semctl(IPC_RMID)", e))
    }

    /// Removes the set with this id (as `ipcs -s` shows it), for tools
    /// that clean up sets they did not open.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`]; [`Error::Removed`] when no set has that
    /// id.
    pub fn remove_id(id: i32) -> Result<()> {
        SemaphoreSet { guard: Guard::opened(SemId(id)), key: Key::private(), len: 0 }.remove()
    }

    fn err(&self, op: &'static str, e: std::io::Error) -> Error {
        let (key, id) = (self.key, self.id());
        let e = Error::from_os(WHAT, || key.describe(id), op, e);
        // EINVAL from an operation on a set that was there means it was
        // removed (the kernel says EINVAL or EIDRM depending on timing).
        match e {
            Error::Io { source, .. } if source.raw_os_error() == Some(libc::EINVAL) && op != "semget" => {
                Error::Removed { what: WHAT, name: key.describe(id) }
            }
            other => other,
        }
    }
}

fn check_values(values: &[u16]) -> Result<()> {
    if values.is_empty() || values.len() > MAX_SEMS {
        return Err(Error::InvalidArgument {
            what: "semaphore set size",
            reason: format!(
                "{} semaphores; a set holds 1 to {MAX_SEMS} (and its guard, up to SEMMSL = 32000)",
                values.len()
            ),
        });
    }
    if let Some(v) = values.iter().find(|&&v| v > SEM_VALUE_MAX) {
        return Err(Error::InvalidArgument {
            what: "semaphore value",
            reason: format!("{v} is over SEMVMX = {SEM_VALUE_MAX}"),
        });
    }
    Ok(())
}

fn mode_bits(mode: u32) -> libc::c_int {
    (mode & 0o777) as libc::c_int
}

impl fmt::Debug for SemaphoreSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreSet")
            .field("id", &self.id())
            .field("key", &self.key)
            .field("len", &self.len)
            .field("owner", &self.guard.is_owner())
            .finish()
    }
}

/// One `sembuf`: add `delta` to semaphore `index`, with `SEM_UNDO` if
/// `undo`, failing with `EAGAIN` instead of waiting if `nowait`.
fn sembuf(index: u16, delta: i16, undo: bool, nowait: bool) -> libc::sembuf {
    let mut flags = if undo { libc::SEM_UNDO } else { 0 };
    if nowait {
        flags |= libc::IPC_NOWAIT;
    }
    libc::sembuf { sem_num: index, sem_op: delta, sem_flg: flags as i16 }
}

/// `semop` on set `id`, waiting until `deadline` (`None`: as the
/// operations' `IPC_NOWAIT` flags say, without limit); a zero or past
/// deadline tries once (`EAGAIN` when it would wait). `EINTR` is retried
/// with the time left.
fn semop(id: i32, bufs: &mut [libc::sembuf], deadline: Option<Deadline>) -> std::io::Result<()> {
    loop {
        let timeout = match deadline.and_then(|d| d.remaining()) {
            Some(left) if left.is_zero() => {
                bufs.iter_mut().for_each(|b| b.sem_flg |= libc::IPC_NOWAIT as i16);
                None
            }
            other => other,
        };
        match sys::semop(id, bufs, timeout) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
