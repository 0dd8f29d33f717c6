//! How a [`SemaphoreSet`] is made without a race: its guard, a hidden
//! last semaphore whose value says how far the making got (see
//! `SemaphoreSet`'s docs, "Making a set"), and the opening that waits for
//! a set being made, or finishes one whose maker died.

use super::{SemId, SemaphoreSet, WHAT, check_values, mode_bits, sembuf, semop};
use crate::error::{Error, Result};
use crate::object::Guard;
use crate::{Deadline, Key, sys};

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
    /// over [`SEM_VALUE_MAX`](crate::SEM_VALUE_MAX); [`Error::PermissionDenied`]; [`Error::Io`]
    /// (such as `ENOSPC` when the system's limit of sets is reached).
    #[doc(alias = "semget")]
    pub fn create(key: Key, values: &[u16], mode: u32) -> Result<Self> {
        check_values(values)?;
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | mode_bits(mode);
        let id = sys::semget(key.raw(), (values.len() + 1) as libc::c_int, flags)
            .map_err(|e| Error::from_os(WHAT, || key.to_string(), "semget", e))?;
        let mut set = SemaphoreSet { guard: Guard::opened(SemId(id)), key, len: values.len() };
        crate::failpoint::hit("sysv-sem:created");
        if !set.claim(guard::FRESH)? {
            return Err(Error::AlreadyExists { what: WHAT, name: key.describe(id) });
        }
        // Ours from here: dropped on an error below, it is removed.
        set.guard.own();
        set.make(values, guard::FRESH)?;
        Ok(set)
    }

    /// Opens the set under `key` once it is made; makes it with `values`
    /// (if given) when nobody is making it.
    pub(super) fn open_with(key: Key, values: Option<&[u16]>, deadline: Deadline) -> Result<Self> {
        if key.is_private() {
            return Err(Error::InvalidKey { key: 0, reason: "IPC_PRIVATE names no existing set; open by key" });
        }
        let id = sys::semget(key.raw(), 0, 0).map_err(|e| Error::from_os(WHAT, || key.to_string(), "semget", e))?;
        let mut set = SemaphoreSet { guard: Guard::opened(SemId(id)), key, len: 0 };
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
                        set.guard.own();
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
        let v = sys::sem_getval(self.id(), libc::c_int::from(self.guard_index()))
            .map_err(|e| self.err("semctl(GETVAL)", e))?;
        Ok(u16::try_from(v).unwrap_or(u16::MAX))
    }

    /// One `semop` on the guard alone: (delta, SEM_UNDO) pairs, applied in
    /// order and atomically.
    fn guard_op(&self, ops: &[(i16, bool)], nowait: bool, deadline: Option<Deadline>) -> Result<bool> {
        let g = self.guard_index();
        let mut bufs: Vec<libc::sembuf> = ops.iter().map(|&(delta, undo)| sembuf(g, delta, undo, nowait)).collect();
        match semop(self.id(), &mut bufs, deadline) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(false),
            Err(e) => Err(self.err("semop", e)),
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
                    sys::sem_setval(self.id(), i as libc::c_int, libc::c_int::from(v))
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
                self.key.describe(self.id())
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
}
