use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipc_pipe::{PipeReader, PipeWriter};
use ipc_sync::Deadline;
use ipc_sync::object::{Guard, Remove};
use ipc_sync::os::PollFlags;
use nix::fcntl::OFlag;

use crate::error::{Error, Result, os_err};
use crate::sys;

/// A named pipe (FIFO) in the file system: a pipe that processes which
/// are not parent and child can meet at by its path.
///
/// The handle that creates it ([`create`](Self::create)) unlinks it when
/// dropped, unless [`persist`](Self::persist) is called, and only if the
/// path still names the FIFO it made. Handles from [`open`](Self::open)
/// never unlink it.
///
/// Opening an end is where FIFOs have sharp edges, and where this type
/// takes care:
///
/// - the path is opened with `O_NOFOLLOW`, and the opened fd is checked
///   to be a FIFO (`fstat`, after the open, so nothing can be swapped in
///   between): a symbolic link, regular file or directory planted at the
///   path is [`Error::NotAFifo`], and nothing is read from or written to
///   it;
/// - a reader's open waits for a writer and a writer's open for a reader;
///   the `try_*` forms never wait (a writer without a reader is
///   [`Error::NoReader`]) and the `*_timeout` forms wait up to a deadline.
///
/// The ends are ipc-pipe's [`PipeReader`] and [`PipeWriter`], with all
/// their methods (frames, atomic writes, timeouts, capacity), in blocking
/// mode and close-on-exec.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use ipc_fifo::Fifo;
///
/// let path = std::env::temp_dir().join(format!("ipc-fifo-doc-{}", std::process::id()));
/// let fifo = Fifo::create(&path, 0o600)?;
/// // A reader that does not wait for a writer, then a writer that finds it.
/// let mut reader = fifo.try_open_reader()?;
/// let mut writer = fifo.try_open_writer()?;
/// writer.write_all(b"by name")?;
/// drop(writer);
/// let mut got = String::new();
/// reader.read_to_string(&mut got)?;
/// assert_eq!(got, "by name");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # References
///
/// [fifo(7)](https://man7.org/linux/man-pages/man7/fifo.7.html),
/// [mkfifo(3)](https://man7.org/linux/man-pages/man3/mkfifo.3.html)
pub struct Fifo {
    place: Guard<Place>,
}

/// Where a FIFO is, and which FIFO this handle made there, to unlink only
/// it.
#[derive(Debug)]
struct Place {
    path: PathBuf,
    c_path: CString,
    /// Which FIFO this handle made.
    made: Option<Identity>,
}

impl Place {
    /// Whether the FIFO made is at the path: not removed, nor replaced by
    /// another file. `None` when none was made here, or when the path
    /// cannot be looked at.
    fn made_is_there(&self) -> Option<bool> {
        let made = self.made?;
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) => Some(meta.file_type().is_fifo() && Identity::of(&meta) == made),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(false),
            Err(_) => None,
        }
    }
}

impl Remove for Place {
    /// Unlinks the FIFO made here, when it is still at the path: never a
    /// file that replaced it.
    fn remove(&self) -> io::Result<()> {
        match self.made_is_there() {
            Some(true) => std::fs::remove_file(&self.path),
            Some(false) | None => Err(io::ErrorKind::NotFound.into()),
        }
    }
}

/// What tells one file from another that later took its name: device and
/// inode, which a file system may reuse at once, and the birth time where
/// the file system records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    born: Option<std::time::SystemTime>,
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Identity {
        Identity { dev: meta.dev(), ino: meta.ino(), born: meta.created().ok() }
    }
}

/// The path as the kernel takes it, checked before any system call: not
/// empty, no NUL, under `PATH_MAX` bytes.
fn c_path(path: &Path) -> Result<CString> {
    let bytes = path.as_os_str().as_bytes();
    let invalid = |reason| Error::InvalidPath { path: path.to_owned(), reason };
    if bytes.is_empty() {
        return Err(invalid("it is empty"));
    }
    if bytes.len() >= libc::PATH_MAX as usize {
        return Err(invalid("it is PATH_MAX (4096) bytes or longer"));
    }
    CString::new(bytes).map_err(|_| invalid("it contains a NUL byte"))
}

fn kind_name(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "regular file",
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "symbolic link",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => "character device",
        libc::S_IFBLK => "block device",
        _ => "file of an unknown type",
    }
}

impl Fifo {
    /// Makes a FIFO at `path` with permissions `mode` (such as 0o600);
    /// fails if anything is there already.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyExists`]; [`Error::NotFound`] when a directory on
    /// the way is missing; [`Error::PermissionDenied`];
    /// [`Error::InvalidPath`] for an empty path, one with NUL, one of
    /// `PATH_MAX` bytes or more, or a name in it over `NAME_MAX`.
    #[doc(alias = "mkfifo")]
    pub fn create(path: impl AsRef<Path>, mode: u32) -> Result<Self> {
        let path = path.as_ref();
        let c = c_path(path)?;
        sys::mkfifo(&c, mode).map_err(|e| os_err(path, "mkfifo", e))?;
        let meta = std::fs::symlink_metadata(path).map_err(|e| os_err(path, "lstat", e))?;
        let made = Some(Identity::of(&meta));
        Ok(Fifo { place: Guard::made(Place { path: path.to_owned(), c_path: c, made }) })
    }

    /// Refers to the FIFO already at `path` (which must be one: a symbolic
    /// link is not followed).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; [`Error::NotAFifo`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let c = c_path(path)?;
        let meta = std::fs::symlink_metadata(path).map_err(|e| os_err(path, "lstat", e))?;
        if !meta.file_type().is_fifo() {
            return Err(Error::NotAFifo { path: path.to_owned(), found: kind_name(meta.mode()) });
        }
        Ok(Fifo { place: Guard::opened(Place { path: path.to_owned(), c_path: c, made: None }) })
    }

    /// Refers to the FIFO at `path`, making it (and owning it) when there
    /// is none.
    ///
    /// # Errors
    ///
    /// As for [`create`](Self::create) and [`open`](Self::open).
    pub fn open_or_create(path: impl AsRef<Path>, mode: u32) -> Result<Self> {
        let path = path.as_ref();
        ipc_sync::object::open_or_create_object(|| Self::create(path, mode), || Self::open(path))
    }

    /// Makes a FIFO at `path`, first removing a FIFO left there (say, by an
    /// owner that died without cleaning up). Only a stale FIFO is removed:
    /// one that no reader has open (a nonblocking open for writing fails
    /// with `ENXIO`). A FIFO a reader has open is left alone, and anything
    /// else at the path is refused.
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] when a reader has the FIFO at `path` open;
    /// [`Error::NotAFifo`] when something other than a FIFO is there; as
    /// for [`create`](Self::create).
    pub fn create_replacing(path: impl AsRef<Path>, mode: u32) -> Result<Self> {
        let path = path.as_ref();
        for _ in 0..100 {
            match Self::create(path, mode) {
                Err(Error::AlreadyExists { .. }) => remove_if_stale(path)?,
                other => return other,
            }
        }
        Err(Error::AlreadyExists { path: path.to_owned() })
    }

    /// Makes a FIFO and publishes it at `path` only once `open` has opened
    /// what it needs on it (say, a server's reader): the FIFO is made
    /// under a temporary name beside `path` and linked into place, so no
    /// one ever finds it at `path` without its reader. With `replace`, a
    /// stale FIFO at `path` is removed first (as by
    /// [`create_replacing`](Self::create_replacing)). The temporary name
    /// is `NAME.new.PID.N`; one left by a creator killed before it opened
    /// its ends may be removed by anyone once it is stale, and a creator
    /// whose temporary FIFO was so removed starts again.
    pub(crate) fn create_published<T>(
        path: &Path,
        mode: u32,
        replace: bool,
        mut open: impl FnMut(&Fifo) -> Result<T>,
    ) -> Result<(Fifo, T)> {
        let c = c_path(path)?;
        let Some(name) = path.file_name() else {
            return Err(Error::InvalidPath { path: path.to_owned(), reason: "it does not end in a file name" });
        };
        // The temporary FIFO is stale until `open` has its reader, and
        // may be swept as a crashed creator's leftover meanwhile: then
        // start again.
        let mut last = Error::AlreadyExists { path: path.to_owned() };
        for _ in 0..100 {
            let mut temp = None;
            for n in 0..100u32 {
                let mut temp_name = name.to_owned();
                temp_name.push(format!(".new.{}.{n}", std::process::id()));
                match Self::create(path.with_file_name(temp_name), mode) {
                    Err(Error::AlreadyExists { .. }) => {} // pid reuse: take the next name
                    // Swept between mkfifo and lstat, or the directory is
                    // missing: start again, and say so if it stays.
                    Err(e @ Error::NotFound { .. }) => {
                        last = e;
                        break;
                    }
                    other => {
                        temp = Some(other?);
                        break;
                    }
                }
            }
            let Some(mut temp) = temp else {
                if matches!(last, Error::NotFound { .. }) {
                    continue;
                }
                return Err(last);
            };
            let ends = match open(&temp) {
                Err(Error::NotFound { .. }) => continue,
                other => other?,
            };
            let mut linked = None;
            for _ in 0..100 {
                match sys::link(&temp.place.name().c_path, &c) {
                    Ok(()) => {
                        linked = Some(true);
                        break;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                        linked = Some(false); // the temporary name was swept
                        break;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) && replace => remove_if_stale(path)?,
                    Err(e) => return Err(os_err(path, "link", e)),
                }
            }
            match linked {
                Some(true) => {}
                Some(false) => continue,
                None => return Err(Error::AlreadyExists { path: path.to_owned() }),
            }
            let made = temp.place.name().made;
            let _ = temp.unlink();
            return Ok((Fifo { place: Guard::made(Place { path: path.to_owned(), c_path: c, made }) }, ends));
        }
        Err(last)
    }

    /// Opens `flags` on the path and checks that the fd is a FIFO.
    fn open_end(&self, flags: OFlag) -> Result<OwnedFd> {
        let fd = loop {
            match sys::open(&self.place.name().c_path, flags) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Err(self.no_reader_or_not_a_fifo()),
                other => break other.map_err(|e| os_err(self.path(), "open", e))?,
            }
        };
        let (kind, _) = sys::fstat(fd.as_fd()).map_err(|e| os_err(self.path(), "fstat", e))?;
        if kind != libc::S_IFIFO {
            return Err(Error::NotAFifo { path: self.path().to_owned(), found: kind_name(kind) });
        }
        if flags.contains(OFlag::O_NONBLOCK) {
            sys::set_blocking(fd.as_fd()).map_err(|e| os_err(self.path(), "fcntl", e))?;
        }
        Ok(fd)
    }

    /// `ENXIO` from open: no reader, or a socket (or device) now at the
    /// path, which `open` refuses the same way.
    fn no_reader_or_not_a_fifo(&self) -> Error {
        match std::fs::symlink_metadata(self.path()) {
            Ok(meta) if !meta.file_type().is_fifo() => {
                Error::NotAFifo { path: self.path().to_owned(), found: kind_name(meta.mode()) }
            }
            _ => Error::NoReader { path: self.path().to_owned() },
        }
    }

    /// Opens the reading end, waiting until a writer opens the FIFO.
    ///
    /// # Errors
    ///
    /// [`Error::NotAFifo`]; [`Error::NotFound`]; [`Error::PermissionDenied`].
    pub fn open_reader(&self) -> Result<PipeReader> {
        self.open_end(OFlag::O_RDONLY).map(PipeReader::from)
    }

    /// Opens the reading end at once, writer or not. While no writer has
    /// the FIFO open, a read returns end of file (`Ok(0)`) rather than
    /// waiting: open the reader first, let writers come, then read, or use
    /// [`open_reader_timeout`](Self::open_reader_timeout).
    ///
    /// # Errors
    ///
    /// As for [`open_reader`](Self::open_reader).
    pub fn try_open_reader(&self) -> Result<PipeReader> {
        self.open_end(OFlag::O_RDONLY | OFlag::O_NONBLOCK).map(PipeReader::from)
    }

    /// Opens the reading end and waits at most `timeout` for a writer to
    /// send something (or to come and go). A zero timeout looks once: bytes
    /// a writer left in the FIFO are found.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`open_reader`](Self::open_reader).
    pub fn open_reader_timeout(&self, timeout: Duration) -> Result<PipeReader> {
        self.open_reader_until(Deadline::after(timeout))
    }

    /// Like [`open_reader_timeout`](Self::open_reader_timeout) with a
    /// deadline on the monotonic clock.
    ///
    /// # Errors
    ///
    /// As for [`open_reader_timeout`](Self::open_reader_timeout).
    pub fn open_reader_deadline(&self, deadline: Instant) -> Result<PipeReader> {
        self.open_reader_until(Deadline::at(deadline))
    }

    fn open_reader_until(&self, deadline: Deadline) -> Result<PipeReader> {
        let fd = self.open_end(OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
        // Poll before looking at the clock: a deadline that has passed
        // polls once without waiting, so bytes already there are found.
        match ipc_sync::os::poll_until(fd.as_fd(), PollFlags::POLLIN, deadline) {
            Ok(true) => Ok(PipeReader::from(fd)),
            Ok(false) => Err(Error::Timeout { path: self.path().to_owned() }),
            Err(e) => Err(os_err(self.path(), "poll", e)),
        }
    }

    /// Opens the writing end, waiting until a reader opens the FIFO.
    ///
    /// # Errors
    ///
    /// As for [`open_reader`](Self::open_reader).
    pub fn open_writer(&self) -> Result<PipeWriter> {
        self.open_end(OFlag::O_WRONLY).map(PipeWriter::from)
    }

    /// Opens the writing end if a reader has the FIFO open now.
    ///
    /// # Errors
    ///
    /// [`Error::NoReader`], and as for [`open_writer`](Self::open_writer).
    pub fn try_open_writer(&self) -> Result<PipeWriter> {
        self.open_end(OFlag::O_WRONLY | OFlag::O_NONBLOCK).map(PipeWriter::from)
    }

    /// Opens the writing end, waiting at most `timeout` for a reader. (The
    /// kernel has no timed open: this retries a nonblocking open with
    /// pauses from 20 µs up to 1 ms, so it ends at most about 1 ms late.)
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as for [`open_writer`](Self::open_writer).
    pub fn open_writer_timeout(&self, timeout: Duration) -> Result<PipeWriter> {
        self.open_writer_until(Deadline::after(timeout))
    }

    /// Like [`open_writer_timeout`](Self::open_writer_timeout) with a
    /// deadline on the monotonic clock.
    ///
    /// # Errors
    ///
    /// As for [`open_writer_timeout`](Self::open_writer_timeout).
    pub fn open_writer_deadline(&self, deadline: Instant) -> Result<PipeWriter> {
        self.open_writer_until(Deadline::at(deadline))
    }

    fn open_writer_until(&self, deadline: Deadline) -> Result<PipeWriter> {
        let mut pause = Duration::from_micros(20);
        loop {
            match self.try_open_writer() {
                Err(Error::NoReader { .. }) => {}
                other => return other,
            }
            match deadline.remaining() {
                Some(left) if left.is_zero() => return Err(Error::Timeout { path: self.path().to_owned() }),
                Some(left) => std::thread::sleep(pause.min(left)),
                None => std::thread::sleep(pause),
            }
            pause = (pause * 2).min(Duration::from_millis(1));
        }
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.place.name().path
    }

    /// Whether this handle unlinks the FIFO when dropped.
    pub fn is_owner(&self) -> bool {
        self.place.is_owner()
    }

    /// Keeps the FIFO after this handle is dropped.
    pub fn persist(&mut self) {
        self.place.persist();
    }

    /// Removes the FIFO's name now (open ends keep working).
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`]; [`Error::NotAFifo`] when something else took
    /// its place.
    pub fn unlink(&mut self) -> Result<()> {
        // Whatever FIFO is at the path now, not only the one made here.
        self.place.persist();
        let path = self.path();
        let meta = std::fs::symlink_metadata(path).map_err(|e| os_err(path, "lstat", e))?;
        if !meta.file_type().is_fifo() {
            return Err(Error::NotAFifo { path: path.to_owned(), found: kind_name(meta.mode()) });
        }
        std::fs::remove_file(path).map_err(|e| os_err(path, "unlink", e))
    }
}

/// Removes the FIFO at `path` if no reader has it open (a nonblocking open
/// for writing fails with `ENXIO`: the kernel's word that it is stale),
/// and only the FIFO so found, not one that took its name meanwhile.
pub(crate) fn remove_if_stale(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(|e| os_err(path, "lstat", e))?,
    };
    if !meta.file_type().is_fifo() {
        return Err(Error::NotAFifo { path: path.to_owned(), found: kind_name(meta.mode()) });
    }
    match Fifo::open(path)?.try_open_writer() {
        Err(Error::NoReader { .. }) => {}
        Err(Error::NotFound { .. }) => return Ok(()),
        Ok(_) => return Err(Error::InUse { path: path.to_owned() }),
        Err(e) => return Err(e),
    }
    match std::fs::symlink_metadata(path) {
        Ok(now) if Identity::of(&now) == Identity::of(&meta) => match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(os_err(path, "unlink", e)),
            _ => Ok(()),
        },
        _ => Ok(()), // gone or replaced meanwhile: the caller tries again
    }
}

/// Whether the file at `path` is the FIFO `end` is open on (not gone, nor
/// a file that replaced it). When that cannot be told, yes.
pub(crate) fn is_same(path: &Path, end: &impl AsFd) -> bool {
    let Ok(ours) = end.as_fd().try_clone_to_owned().and_then(|fd| std::fs::File::from(fd).metadata()) else {
        return true;
    };
    match std::fs::symlink_metadata(path) {
        Ok(there) => (there.dev(), there.ino()) == (ours.dev(), ours.ino()),
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// Removes the file at `path` when it is the FIFO `end` is open on (not a
/// file that replaced it since). Whether it was removed.
pub(crate) fn remove_if_same(path: &Path, end: &impl AsFd) -> bool {
    let there = std::fs::symlink_metadata(path).is_ok();
    there && is_same(path, end) && std::fs::remove_file(path).is_ok()
}

impl Fifo {
    /// Whether the FIFO this handle made is at its path: not removed, nor
    /// replaced by another file. `None` for a handle that made none, or
    /// when the path cannot be looked at.
    pub(crate) fn made_is_there(&self) -> Option<bool> {
        self.place.name().made_is_there()
    }
}

impl fmt::Debug for Fifo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fifo").field("path", &self.path()).field("owner", &self.is_owner()).finish()
    }
}
