use std::fmt;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::{Deadline, Key, sys};

const WHAT: &str = "System V semaphore set";

/// The most semaphores one set may hold on Linux (`SEMMSL` is 32000), less
/// the guard that every set made here carries.
const MAX_SEMS: usize = 32_000 - 1;

/// The states of a set's guard, its hidden last semaphore (see
/// [`SemaphoreSet`]'s docs, "Making a set").
mod guard {
    /// Nobody has begun making the set (the value `semget` gives).
    pub(super) const FRESH: u16 = 0;
    /// A live process is making it. It holds 1 of its SEM_UNDO adjustment
    /// here, which the kernel adds back when it dies: the value becomes
    /// [`ABANDONED`].
    pub(super) const MAKING: u16 = 1;
    /// The process that was making it died.
    pub(super) const ABANDONED: u16 = 2;
    /// Made: its values are set. (Any value from here up counts.)
    pub(super) const READY: u16 = 3;
}

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
    id: i32,
    key: Key,
    len: usize,
    owner: crate::Owned,
}

impl SemaphoreSet {
    /// Creates a new set with these initial values (exclusive: an existing
    /// set under `key` is an error), permissions `mode` (such as 0o600).
    /// The set holds one semaphore more than `values`, its guard (see
    /// "Making a set" above).
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`], also when another process's
    /// [`open_or_create`](Self::open_or_create) finished making the set
    /// while this process was stalled right after making it;
    /// [`Error::InvalidArgument`] for no values, more than 31999, or a value
    /// over [`SEM_VALUE_MAX`]; [`Error::PermissionDenied`]; [`Error::Io`]
    /// (such as `ENOSPC` when the system's limit of sets is reached).
    #[doc(alias = "semget")]
    pub fn create(key: Key, values: &[u16], mode: u32) -> Result<Self> {
        check_values(values)?;
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | mode_bits(mode);
        let id = sys::semget(key.raw(), (values.len() + 1) as libc::c_int, flags)
            .map_err(|e| Error::from_os(WHAT, || key.to_string(), "semget", e))?;
        let mut set = SemaphoreSet { id, key, len: values.len(), owner: crate::Owned::none() };
        crate::failpoint::hit("sysv-sem:created");
        if !set.claim(guard::FRESH)? {
            return Err(Error::AlreadyExists { what: WHAT, name: key.describe(id) });
        }
        // Ours from here: dropped on an error below, it is removed.
        set.owner = crate::Owned::here();
        set.make(values, guard::FRESH)?;
        Ok(set)
    }

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
        crate::open_or_create(
            || Self::create(key, values, mode),
            || Self::open_with(key, Some(values), deadline),
            |e| matches!(e, Error::AlreadyExists { .. }),
            |e| matches!(e, Error::NotFound { .. }),
        )
    }

    /// Opens the set under `key` once it is made; makes it with `values`
    /// (if given) when nobody is making it.
    fn open_with(key: Key, values: Option<&[u16]>, deadline: Deadline) -> Result<Self> {
        if key.is_private() {
            return Err(Error::InvalidKey { key: 0, reason: "IPC_PRIVATE names no existing set; open by key" });
        }
        let id = sys::semget(key.raw(), 0, 0).map_err(|e| Error::from_os(WHAT, || key.to_string(), "semget", e))?;
        let mut set = SemaphoreSet { id, key, len: 0, owner: crate::Owned::none() };
        let ds = sys::sem_stat(id).map_err(|e| set.gone_is_missing(set.err("semctl(IPC_STAT)", e)))?;
        let nsems = usize::try_from(ds.sem_nsems).unwrap_or(0);
        if nsems < 2 {
            return Err(set.no_guard(nsems));
        }
        set.len = nsems - 1;
        loop {
            let state = set.guard_value().map_err(|e| set.gone_is_missing(e))?;
            match (state, values) {
                (guard::READY.., _) => return Ok(set),
                (guard::MAKING, _) => set.wait_made(deadline).map_err(|e| set.gone_is_missing(e))?,
                (guard::FRESH | guard::ABANDONED, None) => {
                    return Err(Error::NotFound { what: "finished System V semaphore set", name: key.describe(id) });
                }
                (from, Some(values)) => {
                    if from == guard::FRESH {
                        // Nobody has begun: so nobody has operated on the
                        // set either, unless it is not one of ours.
                        // (A claim sets sem_otime, and the guard never
                        // returns to 0 after one.)
                        let ds = sys::sem_stat(id).map_err(|e| set.gone_is_missing(set.err("semctl(IPC_STAT)", e)))?;
                        if ds.sem_otime != 0 {
                            if set.guard_value().map_err(|e| set.gone_is_missing(e))? == guard::FRESH {
                                return Err(set.no_guard(nsems));
                            }
                            continue;
                        }
                    }
                    if values.len() != set.len {
                        return Err(Error::InvalidArgument {
                            what: "semaphore values",
                            reason: format!(
                                "{} given; the set {} to make holds {}",
                                values.len(),
                                key.describe(id),
                                set.len
                            ),
                        });
                    }
                    if set.claim(from).map_err(|e| set.gone_is_missing(e))? {
                        set.owner = crate::Owned::here();
                        set.make(values, from)?;
                        return Ok(set);
                    }
                }
            }
        }
    }

    /// The index of the guard.
    fn guard_index(&self) -> u16 {
        // At most MAX_SEMS, which fits.
        u16::try_from(self.len).unwrap_or(u16::MAX)
    }

    fn guard_value(&self) -> Result<u16> {
        let v = sys::sem_getval(self.id, libc::c_int::from(self.guard_index()))
            .map_err(|e| self.err("semctl(GETVAL)", e))?;
        Ok(u16::try_from(v).unwrap_or(u16::MAX))
    }

    /// One `semop` on the guard alone: (delta, SEM_UNDO) pairs, applied in
    /// order and atomically.
    fn guard_op(&self, ops: &[(i16, bool)], nowait: bool, deadline: Option<Deadline>) -> Result<bool> {
        let g = self.guard_index();
        let mut bufs: Vec<libc::sembuf> = ops
            .iter()
            .map(|&(delta, undo)| {
                let mut flags = if undo { libc::SEM_UNDO } else { 0 };
                if nowait {
                    flags |= libc::IPC_NOWAIT;
                }
                libc::sembuf { sem_num: g, sem_op: delta, sem_flg: flags as i16 }
            })
            .collect();
        loop {
            let timeout = match deadline.and_then(|d| d.remaining()) {
                Some(left) if left.is_zero() => {
                    bufs.iter_mut().for_each(|b| b.sem_flg |= libc::IPC_NOWAIT as i16);
                    None
                }
                other => other,
            };
            match sys::semop(self.id, &mut bufs, timeout) {
                Ok(()) => return Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(false),
                Err(e) => return Err(self.err("semop", e)),
            }
        }
    }

    /// Claims the making of the set, found in state `from` (FRESH or
    /// ABANDONED): whether this process got it. On success the guard is
    /// MAKING, and SEM_UNDO will add 1 (to ABANDONED) if we die.
    fn claim(&self, from: u16) -> Result<bool> {
        // "+2 then -1 with undo": the undo adds the 1 back, leaving 2.
        let claim: &[(i16, bool)] = match from {
            guard::FRESH => &[(0, false), (2, false), (-1, true)],
            // "-2 then wait for 0" tests for exactly 2.
            _ => &[(-2, false), (0, false), (2, false), (-1, true)],
        };
        self.guard_op(claim, true, None)
    }

    /// Makes the claimed set: sets `values`, then marks it made and gives
    /// up the claim's undo, in one operation. On an error the set is left
    /// abandoned, for another process to make.
    fn make(&self, values: &[u16], from: u16) -> Result<()> {
        crate::failpoint::hit("sysv-sem:claimed");
        let made = (|| {
            for (i, &v) in values.iter().enumerate() {
                // A fresh set holds zeroes; an abandoned one, anything.
                if v != 0 || from != guard::FRESH {
                    sys::sem_setval(self.id, i as libc::c_int, libc::c_int::from(v))
                        .map_err(|e| self.err("semctl(SETVAL)", e))?;
                }
            }
            crate::failpoint::hit("sysv-sem:valued");
            // MAKING (1) + 1 with undo (cancelling the claim's) + 1 = READY.
            self.guard_op(&[(1, true), (1, false)], false, None).map(drop)
        })();
        if made.is_err() {
            // Give the making up: + 1 with undo (cancelling the claim's) =
            // ABANDONED.
            let _ = self.guard_op(&[(1, true)], true, None);
        }
        made
    }

    /// Waits until the guard leaves MAKING: made, or its maker died.
    fn wait_made(&self, deadline: Deadline) -> Result<()> {
        // "-2 then +2" waits for the value to be 2 or more, and changes
        // nothing.
        if self.guard_op(&[(-2, false), (2, false)], false, Some(deadline))? {
            Ok(())
        } else {
            Err(Error::Timeout { what: "System V semaphore set, which another process is still making" })
        }
    }

    /// The error for a set that carries no guard.
    fn no_guard(&self, nsems: usize) -> Error {
        Error::InvalidArgument {
            what: "System V semaphore set",
            reason: format!(
                "the set {} ({nsems} semaphores) was not made by SemaphoreSet: it carries no guard",
                self.key.describe(self.id)
            ),
        }
    }

    /// A set removed while we looked at it is, to an opener, not there.
    fn gone_is_missing(&self, e: Error) -> Error {
        match e {
            Error::Removed { what, name } => Error::NotFound { what, name },
            other => other,
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
