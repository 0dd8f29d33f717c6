//! Lock directories: what a maker of a named pair holds while the pair's
//! name exists, so that the kernel itself says when a leftover is stale.
//!
//! A maker makes `$TMPDIR/ipc-kit-pair-…` (mode 0700) and holds an
//! exclusive `flock` on it for as long as the POSIX queue of the same name,
//! or the FIFO inside the directory, exists. The kernel drops the lock when
//! the maker dies, however it dies; so a directory whose lock can be taken
//! belongs to a maker that is gone (or to one that has not locked it yet,
//! and which then finds it gone and starts again under a new name), and the
//! sweep removes it with its queue. Neither pids nor time are trusted.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, Flock, FlockArg, OFlag};
use nix::sys::stat::{FchmodatFlags, Mode, fchmodat};

/// The start of every lock directory's and every pair queue's name.
const PREFIX: &str = "ipc-kit-pair-";

/// How many names to try before giving up.
const TRIES: u32 = 16;

/// A directory this process made and holds locked; removed (with whatever
/// is in it) and unlocked on drop.
#[derive(Debug)]
pub(super) struct LockDir {
    name: String,
    path: PathBuf,
    _lock: Flock<File>,
}

impl LockDir {
    /// Makes `$TMPDIR/NAME` under a fresh name and locks it.
    ///
    /// # Errors
    ///
    /// When the directory cannot be made, opened or locked; or when every
    /// try lost its fresh directory to someone else (a sweep that took it
    /// between `mkdir` and `flock`).
    pub(super) fn new() -> io::Result<LockDir> {
        let mut tries = 0;
        loop {
            tries += 1;
            let name = unique_name();
            let path = std::env::temp_dir().join(&name);
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < TRIES => continue,
                Err(e) => return Err(naming(e, "make", &path)),
                Ok(()) => {}
            }
            // The umask may have taken bits the maker needs (to open the
            // directory, and to make a FIFO in it): the mode is set again.
            // Where that fails, the lock below finds out.
            let _ = set_owner_only(&path);
            // Between `mkdir` and the lock, a sweep may take the new
            // directory for a dead maker's and remove it: then it is not
            // ours (or gone), and a new name is tried. A sweep that holds
            // it now removes it itself.
            match take(&path).map_err(|e| naming(e, "lock", &path))? {
                Some(lock) => return Ok(LockDir { name, path, _lock: lock }),
                None if tries < TRIES => {}
                None => {
                    return Err(io::Error::other(format!(
                        "every one of {TRIES} fresh lock directories in {} was taken by another process before \
                         it could be locked",
                        std::env::temp_dir().display()
                    )));
                }
            }
        }
    }

    /// The directory's name, which the queue of the pair shares.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The directory.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockDir {
    fn drop(&mut self) {
        // Still locked here: the lock goes with the fields, after this.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Gives the file at `path` mode 0700 (read, write and search for its
/// owner only), whatever the umask took from it when it was made; on the
/// file itself, never through a symbolic link put in its place.
pub(super) fn set_owner_only(path: &Path) -> io::Result<()> {
    fchmodat(AT_FDCWD, path, Mode::S_IRWXU, FchmodatFlags::NoFollowSymlink).map_err(io::Error::from)
}

/// `e`, of the same kind, saying what was done to which directory.
fn naming(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("cannot {what} the lock directory {} of a pair: {e}", path.display()))
}

/// Opens the directory at `path` without following a symlink, takes its
/// lock without waiting, and checks that it is still what is at `path`
/// (the same device and inode) and that this user owns it. `None` when it
/// is gone, locked by another process, or not the same or not ours.
fn take(path: &Path) -> io::Result<Option<Flock<File>>> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let dir = match OpenOptions::new().read(true).custom_flags(flags.bits()).open(path) {
        Ok(dir) => dir,
        // Gone, or no longer a directory (a symbolic link: ELOOP).
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error().map(Errno::from_raw).is_some_and(|e| matches!(e, Errno::ELOOP | Errno::ENOTDIR)) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let lock = match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
        Err((_, e)) => return Err(e.into()),
    };
    let held = lock.metadata()?;
    if held.uid() != nix::unistd::geteuid().as_raw() {
        return Ok(None);
    }
    match std::fs::symlink_metadata(path) {
        Ok(there) if there.dev() == held.dev() && there.ino() == held.ino() => Ok(Some(lock)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes what dead makers of pairs left: each `$TMPDIR/ipc-kit-pair-NAME`
/// directory of this user whose lock can be taken, with the POSIX queue
/// `/ipc-kit-pair-NAME`. One read of the temporary directory; what cannot
/// be opened, locked or removed (another user's, a live maker's) is left
/// alone, silently.
pub(super) fn sweep() {
    let tmp = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&tmp) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().filter(|n| n.starts_with(PREFIX)) else { continue };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let Ok(Some(_lock)) = take(&path) else { continue };
        // The queue first: while the directory stays, so does the record
        // that a queue of this name may need removing. Only a passing
        // failure keeps it for the next sweep; any other means there is
        // no queue of this user's to remove (none, another user's, a name
        // no queue can have, no POSIX queues in this kernel).
        if let Err(Errno::EINTR | Errno::ENOMEM) = nix::mqueue::mq_unlink(format!("/{name}").as_str()) {
            continue;
        }
        let _ = std::fs::remove_dir_all(&path);
    }
}

/// `ipc-kit-pair-PID-N-RANDOM`: unique in this process by `N`, and by
/// `RANDOM` against what a dead process with a reused pid left (a name
/// that exists all the same is skipped).
pub(super) fn unique_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // std seeds each RandomState's keys from the OS's random source.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(n);
    format!("{PREFIX}{}-{n}-{:016x}", std::process::id(), h.finish())
}
