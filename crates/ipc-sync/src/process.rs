//! This process, told apart from the processes forked from it.

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sys;

/// A process, told apart from every process forked from it and from the
/// one it was forked from: by its pid and by how many forks made it. A
/// handle that a forked child inherits records the [`Process`] that made
/// it, so that only that process does what only its maker may (close a
/// side, unlink a name).
///
/// The pid alone is not enough: a child forked into a new PID namespace
/// may have the same number as its parent has in its own (both pid 1,
/// say). Compared within one process's memory only: it means nothing to
/// another process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Process {
    pid: u32,
    forks: u64,
}

/// Forks between the first call of [`Process::current`] and this process,
/// counted in each child as it starts.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_fork() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

impl Process {
    /// The calling process. The first call registers the fork counter (a
    /// `pthread_atfork` child handler), so record it before forking
    /// children that must be told apart; should the registration fail (no
    /// memory), the pid alone tells processes apart.
    ///
    /// ```
    /// use ipc_sync::process::Process;
    /// assert_eq!(Process::current(), Process::current());
    /// ```
    pub fn current() -> Process {
        Process { pid: std::process::id(), forks: forks() }
    }
}

/// How many forks lie between the first call (of this or of
/// [`Process::current`]) and the calling process: the same in a process
/// all its life, one more in each child it forks afterwards, and read
/// without a system call. Values in the memory a child inherits tagged
/// with it tell the child that they were its parent's.
pub fn forks() -> u64 {
    static AT_FORK: Once = Once::new();
    AT_FORK.call_once(|| {
        let _ = sys::at_fork_child(count_fork);
    });
    FORKS.load(Ordering::Relaxed)
}
