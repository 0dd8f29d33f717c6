use std::fmt;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::{Deadline, Key, sys};

const WHAT: &str = "System V semaphore set";

/// The most semaphores one set may hold on Linux (`SEMMSL` is 32000).
const MAX_SEMS: usize = 32_000;

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
/// A freshly created set is initialized in two steps (create, then set the
/// values); [`open`](Self::open) waits until the creator has finished
/// (the creator's first operation sets `sem_otime`).
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
    id: i32,
    key: Key,
    len: usize,
    owner: crate::Owned,
}

impl SemaphoreSet {
    /// Creates a new set with these initial values (exclusive: an existing
    /// set under `key` is an error), permissions `mode` (such as 0o600).
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`]; [`Error::InvalidArgument`] for no values,
    /// more than 32000, or a value over [`SEM_VALUE_MAX`];
    /// [`Error::PermissionDenied`]; [`Error::Io`] (such as `ENOSPC` when
    /// the system's limit of sets is reached).
    #[doc(alias = "semget")]
    pub fn create(key: Key, values: &[u16], mode: u32) -> Result<Self> {
        check_values(values)?;
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | mode_bits(mode);
        let id = sys::semget(key.raw(), values.len() as libc::c_int, flags)
            .map_err(|e| Error::from_os(WHAT, || key.to_string(), "semget", e))?;
        let set = SemaphoreSet { id, key, len: values.len(), owner: crate::Owned::here() };
        crate::failpoint::hit("sysv-sem:created");
        set.initialize(values)?;
        Ok(set)
    }

    /// Opens the existing set under `key`, waiting (up to
    /// [`CREATION_GRACE`](crate::CREATION_GRACE)) until its creator has
    /// initialized it: making a set takes two steps (`semget`, then
    /// setting its values).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; [`Error::PermissionDenied`]; [`Error::Timeout`]
    /// when the set was never initialized (its creator died between the
    /// two steps; [`open_or_create`](Self::open_or_create) takes such a set
    /// over); [`Error::InvalidKey`] for [`Key::private`].
    pub fn open(key: Key) -> Result<Self> {
        Self::open_with(key, None)
    }

    fn open_with(key: Key, take_over: Option<&[u16]>) -> Result<Self> {
        if key.is_private() {
            return Err(Error::InvalidKey { key: 0, reason: "IPC_PRIVATE names no existing set; open by key" });
        }
        let id = sys::semget(key.raw(), 0, 0).map_err(|e| Error::from_os(WHAT, || key.to_string(), "semget", e))?;
        Self::opened(id, key, take_over)
    }

    /// Opens the set under `key`, or creates it with `values` and `mode`
    /// when there is none. Only a handle that created it removes it. A set
    /// still uninitialized after [`CREATION_GRACE`](crate::CREATION_GRACE)
    /// (its creator died between the two steps of making it) is
    /// initialized here with `values`.
    ///
    /// # Errors
    ///
    /// As for [`create`](Self::create) and [`open`](Self::open), without
    /// its `Timeout`; [`Error::InvalidArgument`] when an uninitialized set
    /// to take over holds another number of semaphores.
    pub fn open_or_create(key: Key, values: &[u16], mode: u32) -> Result<Self> {
        check_values(values)?;
        crate::open_or_create(
            || Self::create(key, values, mode),
            || Self::open_with(key, Some(values)),
            |e| matches!(e, Error::AlreadyExists { .. }),
            |e| matches!(e, Error::NotFound { .. }),
        )
    }

    /// The set `id`, once initialized; after the grace, initialized here
    /// with `take_over` if given.
    fn opened(id: i32, key: Key, take_over: Option<&[u16]>) -> Result<Self> {
        let deadline = Deadline::after(crate::CREATION_GRACE);
        loop {
            let ds = sys::sem_stat(id).map_err(|e| Error::from_os(WHAT, || key.to_string(), "semctl(IPC_STAT)", e))?;
            let len = usize::try_from(ds.sem_nsems).unwrap_or(0);
            let set = SemaphoreSet { id, key, len, owner: crate::Owned::none() };
            if ds.sem_otime != 0 {
                return Ok(set);
            }
            if deadline.has_expired() {
                let Some(values) = take_over else {
                    return Err(Error::Timeout { what: "initialization of the System V semaphore set by its creator" });
                };
                if values.len() != len {
                    return Err(Error::InvalidArgument {
                        what: "semaphore values",
                        reason: format!(
                            "{} given; the uninitialized set {} holds {len}",
                            values.len(),
                            key.describe(id)
                        ),
                    });
                }
                set.initialize(values)?;
                return Ok(set);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn initialize(&self, values: &[u16]) -> Result<()> {
        sys::sem_setall(self.id, values).map_err(|e| self.err("semctl(SETALL)", e))?;
        // An operation that changes nothing sets sem_otime: openers wait
        // for it.
        let mut nop = [libc::sembuf { sem_num: 0, sem_op: 0, sem_flg: libc::IPC_NOWAIT as i16 }];
        match sys::semop(self.id, &mut nop, None) {
            Ok(()) => Ok(()),
            // The first value is nonzero: "wait for zero" would block; take
            // one and give it back instead (atomically, so nobody sees it;
            // in this order, so a value at SEM_VALUE_MAX never passes it).
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                let mut ops = [
                    libc::sembuf { sem_num: 0, sem_op: -1, sem_flg: 0 },
                    libc::sembuf { sem_num: 0, sem_op: 1, sem_flg: 0 },
                ];
                sys::semop(self.id, &mut ops, None).map_err(|e| self.err("semop", e))
            }
            Err(e) => Err(self.err("semop", e)),
        }
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
            let mut flags = if op.undo { libc::SEM_UNDO } else { 0 };
            if wait.is_none() {
                flags |= libc::IPC_NOWAIT;
            }
            bufs.push(libc::sembuf { sem_num: op.index, sem_op: op.delta, sem_flg: flags as i16 });
        }
        loop {
            let timeout = match wait.and_then(|d| d.remaining()) {
                // A zero or past deadline tries once.
                Some(left) if left.is_zero() => {
                    bufs.iter_mut().for_each(|b| b.sem_flg |= libc::IPC_NOWAIT as i16);
                    None
                }
                other => other,
            };
            match sys::semop(self.id, &mut bufs, timeout) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && wait.is_some() => {
                    return Err(Error::Timeout { what: WHAT });
                }
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) => {
                    return Err(Error::Overflow {
                        what: "semaphore value (or its undo adjustment)",
                        max: u64::from(SEM_VALUE_MAX),
                    });
                }
                Err(e) => return Err(self.err("semop", e)),
            }
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
        let v = sys::sem_getval(self.id, libc::c_int::from(index)).map_err(|e| self.err("semctl(GETVAL)", e))?;
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
        sys::sem_setval(self.id, libc::c_int::from(index), libc::c_int::from(value))
            .map_err(|e| self.err("semctl(SETVAL)", e))
    }

    /// How many semaphores the set holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a set has at least one semaphore.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The set's id (as `ipcs -s` shows it).
    pub fn id(&self) -> i32 {
        self.id
    }

    /// The key it was created or opened with.
    pub fn key(&self) -> Key {
        self.key
    }

    /// Whether this handle removes the set when dropped.
    pub fn is_owner(&self) -> bool {
        self.owner.is_owner()
    }

    /// Keeps the set after this handle is dropped.
    pub fn persist(&mut self) {
        self.owner = crate::Owned::none();
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
        self.owner = crate::Owned::none();
        sys::sem_remove(self.id).map_err(|e| self.err("semctl(IPC_RMID)", e))
    }

    /// Removes the set with this id (as `ipcs -s` shows it), for tools
    /// that clean up sets they did not open.
    ///
    /// # Errors
    ///
    /// [`Error::PermissionDenied`]; [`Error::Removed`] when no set has that
    /// id.
    pub fn remove_id(id: i32) -> Result<()> {
        SemaphoreSet { id, key: Key::private(), len: 0, owner: crate::Owned::none() }.remove()
    }

    fn err(&self, op: &'static str, e: std::io::Error) -> Error {
        let (key, id) = (self.key, self.id);
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
            reason: format!("{} semaphores; a set holds 1 to {MAX_SEMS}", values.len()),
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

impl Drop for SemaphoreSet {
    fn drop(&mut self) {
        if self.owner.is_owner() {
            let _ = sys::sem_remove(self.id);
        }
    }
}

impl fmt::Debug for SemaphoreSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreSet")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("len", &self.len)
            .field("owner", &self.owner)
            .finish()
    }
}
