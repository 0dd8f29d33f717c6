//! Binding to a name. A listener's socket file is made under a temporary
//! name beside its path (`.ipc-socket.new.PID.N`), given its mode, set listening,
//! and only then linked into place: nobody ever finds a listener at the
//! path that has the wrong mode or does not accept yet, and a stale
//! socket file there (one nobody is bound to) is taken over, never a live
//! one. A datagram socket binds its path itself (its datagrams carry the
//! name it is bound to); its file has its mode from the start (set on the
//! socket before the bind). Binders of this crate take the directory's
//! `flock` while they look at, remove or publish a file there.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use ipc_sync::object::{Guard, Remove};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::socket::{Backlog, UnixAddr, bind as bind_addr, listen};
use nix::sys::stat::Mode;

use crate::error::{Error, Result, kind_name};
use crate::name::{MAX_PATH, SocketName};
use crate::socket::{self, Kind};

/// How a name is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindOptions {
    /// The socket file's mode (a socket file's write permission lets a
    /// process connect or send to it). Default `0o600`. Not used for
    /// abstract names, which have no file (anyone in the network
    /// namespace may connect: check [peer
    /// credentials](crate::StreamSocket::peer_credentials) instead).
    pub mode: u32,
    /// How many connections may wait to be accepted. Default 128; the
    /// kernel caps it at `net.core.somaxconn`.
    pub backlog: i32,
    /// Whether a stale socket file at the path (one no process is bound
    /// to, left by a process that died) is removed first. Default `true`.
    /// A live one is never touched: [`Error::InUse`].
    pub take_over_stale: bool,
}

impl Default for BindOptions {
    fn default() -> Self {
        BindOptions { mode: 0o600, backlog: 128, take_over_stale: true }
    }
}

/// A bound socket, and the socket file it made (removed when dropped in
/// the process that made it, if it is still that file).
#[derive(Debug)]
pub(crate) struct Bound {
    // Dropped first: the file is removed while the socket is still open,
    // so no binder takes it for stale (and links its own) in between.
    pub(crate) file: Option<Guard<SocketFile>>,
    pub(crate) fd: OwnedFd,
    pub(crate) name: SocketName,
}

/// A socket file this process made: its path and identity.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

/// Unlinks the socket file if the path still names it (not a file that
/// replaced it since).
impl Remove for SocketFile {
    fn remove(&self) -> std::io::Result<()> {
        let now = std::fs::symlink_metadata(&self.path)?;
        if (now.dev(), now.ino()) == self.id {
            std::fs::remove_file(&self.path)?;
        }
        Ok(())
    }
}

/// Binds a new socket of `kind` to `name` (listening, for stream and
/// seqpacket sockets; nonblocking then, as accepts wait by polling).
pub(crate) fn bind(kind: Kind, name: &SocketName, options: &BindOptions) -> Result<Bound> {
    let listens = kind != Kind::Datagram;
    let fd = socket::new(kind, listens)?;
    let listen_now = |fd: &OwnedFd| -> Result<()> {
        if listens {
            let backlog = Backlog::new(options.backlog.clamp(1, libc::SOMAXCONN))
                .map_err(|e| Error::Io { op: "listen", source: e.into() })?;
            listen(fd, backlog).map_err(|e| Error::Io { op: "listen", source: e.into() })?;
        }
        Ok(())
    };
    let path = match name {
        SocketName::Abstract(_) => {
            bind_addr(fd.as_raw_fd(), &name.addr()?).map_err(|e| Error::of_name(name, "bind", e.into()))?;
            listen_now(&fd)?;
            return Ok(Bound { fd, name: name.clone(), file: None });
        }
        SocketName::Path(p) => p,
    };
    let (dir, file_name) = split(name, path)?;
    let dir_fd = nix::fcntl::open(dir.as_path(), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::of_name(name, "open of the socket's directory", e.into()))?;
    // The file bind makes takes the socket's mode (less the umask): set
    // first, no one ever finds it wider than asked.
    nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(options.mode & 0o777))
        .map_err(|e| Error::Io { op: "fchmod of a new socket", source: e.into() })?;
    let id = if listens {
        let (temp, id) = bind_temp(&fd, name, &dir, &dir_fd, options.mode)?;
        let published = listen_now(&fd).and_then(|()| {
            let _lock = DirLock::take(&dir, name)?;
            link_into_place(kind, name, path, &dir_fd, &temp, &file_name, options.take_over_stale)
        });
        let _ = nix::unistd::unlinkat(&dir_fd, temp.as_os_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        published?;
        id
    } else {
        let _lock = DirLock::take(&dir, name)?;
        bind_datagram(&fd, name, path, &dir_fd, &file_name, options)?
    };
    sweep_temps(&dir);
    Ok(Bound { fd, name: name.clone(), file: Some(Guard::made(SocketFile { path: path.clone(), id })) })
}

/// Binds a datagram socket at its path itself: the address its datagrams
/// carry is the name it is bound to, so that replies reach it. A
/// datagram socket is live (a connect reaches it) from its bind, so no
/// other binder can take it for stale, and its file has its mode from the
/// start (the socket's, set before).
fn bind_datagram(
    fd: &OwnedFd,
    name: &SocketName,
    path: &Path,
    dir_fd: &OwnedFd,
    file_name: &std::ffi::OsStr,
    options: &BindOptions,
) -> Result<(u64, u64)> {
    let addr = name.addr()?;
    let mut bound = false;
    for _ in 0..100 {
        match bind_addr(fd.as_raw_fd(), &addr) {
            Ok(()) => {
                bound = true;
                break;
            }
            Err(nix::errno::Errno::EADDRINUSE) if options.take_over_stale => {
                remove_if_stale(Kind::Datagram, name, path)?;
            }
            Err(nix::errno::Errno::EADDRINUSE) => return Err(stale_or_in_use(Kind::Datagram, name, path)),
            Err(e) => return Err(Error::of_name(name, "bind", e.into())),
        }
    }
    if !bound {
        return Err(Error::InUse { name: name.to_string() });
    }
    let id = set_mode(dir_fd, file_name, path, options.mode).map_err(|e| {
        // Not left behind: the socket is ours, and unusable without its mode.
        let _ = nix::unistd::unlinkat(dir_fd, file_name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        Error::of_name(name, "chmod of the new socket file", e)
    })?;
    Ok(id)
}

/// Gives the socket file `file_name` in the directory `mode`, and checks
/// that it is still a socket: its identity.
fn set_mode(dir_fd: &OwnedFd, file_name: &std::ffi::OsStr, path: &Path, mode: u32) -> std::io::Result<(u64, u64)> {
    nix::sys::stat::fchmodat(
        dir_fd,
        file_name,
        Mode::from_bits_truncate(mode & 0o777),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )?;
    let m = std::fs::symlink_metadata(path)?;
    if !m.file_type().is_socket() {
        return Err(std::io::Error::other("the new socket file was replaced"));
    }
    Ok((m.dev(), m.ino()))
}

/// The directory and file name of a socket's path.
fn split(name: &SocketName, path: &Path) -> Result<(PathBuf, std::ffi::OsString)> {
    let bad = |reason: &str| Error::InvalidName { name: name.to_string(), reason: reason.into() };
    let file = path.file_name().ok_or_else(|| bad("it does not end in a file name"))?;
    let parent = path.parent().unwrap_or(Path::new(""));
    // `svc/` and `svc/.` have the file name `svc` to `Path`, but not to
    // the kernel (a directory, or nothing to bind).
    if parent.join(file).as_os_str().as_bytes() != path.as_os_str().as_bytes() {
        return Err(bad("it does not end in a file name (a trailing '/' or '.')"));
    }
    let dir = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    Ok((dir.to_owned(), file.to_owned()))
}

/// Binds `fd` under a fresh temporary name in the directory and gives the
/// file `mode`: the temporary name and the file's identity.
fn bind_temp(
    fd: &OwnedFd,
    name: &SocketName,
    dir: &Path,
    dir_fd: &OwnedFd,
    mode: u32,
) -> Result<(std::ffi::OsString, (u64, u64))> {
    for n in 0..1000u32 {
        let temp = std::ffi::OsString::from(format!("{TEMP_PREFIX}{}.{n}", std::process::id()));
        // Through the directory's descriptor where the whole path is too
        // long for an address.
        let direct = dir.join(&temp);
        let at = if direct.as_os_str().len() <= MAX_PATH {
            direct
        } else {
            Path::new(&format!("/proc/self/fd/{}", dir_fd.as_raw_fd())).join(&temp)
        };
        if at.as_os_str().len() > MAX_PATH {
            return Err(Error::InvalidName {
                name: name.to_string(),
                reason: format!(
                    "its directory cannot be reached by a path short enough to bind the temporary name {}",
                    temp.to_string_lossy()
                ),
            });
        }
        let addr = UnixAddr::new(at.as_path()).map_err(|e| Error::of_name(name, "bind", e.into()))?;
        match bind_addr(fd.as_raw_fd(), &addr) {
            Ok(()) => {}
            // A leftover of a process with this pid before: the next name.
            Err(nix::errno::Errno::EADDRINUSE) => continue,
            Err(e) => return Err(Error::of_name(name, "bind", e.into())),
        }
        return match set_mode(dir_fd, temp.as_os_str(), &dir.join(&temp), mode) {
            Ok(id) => Ok((temp, id)),
            Err(e) => {
                let _ = nix::unistd::unlinkat(dir_fd, temp.as_os_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
                Err(Error::of_name(name, "chmod of the new socket file", e))
            }
        };
    }
    Err(Error::InUse { name: name.to_string() })
}

/// Links the temporary file to the socket's path, taking a stale file
/// there over if allowed.
fn link_into_place(
    kind: Kind,
    name: &SocketName,
    path: &Path,
    dir_fd: &OwnedFd,
    temp: &std::ffi::OsStr,
    file_name: &std::ffi::OsStr,
    take_over: bool,
) -> Result<()> {
    for _ in 0..100 {
        match nix::unistd::linkat(dir_fd, temp, dir_fd, file_name, AtFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EEXIST) if take_over => remove_if_stale(kind, name, path)?,
            Err(nix::errno::Errno::EEXIST) => return Err(stale_or_in_use(kind, name, path)),
            Err(e) => return Err(Error::of_name(name, "link of the new socket file", e.into())),
        }
    }
    Err(Error::InUse { name: name.to_string() })
}

/// What is at `path` when it may not be taken over: `InUse` for a socket
/// (live or not), `NotASocket` for anything else.
fn stale_or_in_use(_kind: Kind, name: &SocketName, path: &Path) -> Error {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => Error::NotASocket { name: name.to_string(), found: kind_name(&m) },
        _ => Error::InUse { name: name.to_string() },
    }
}

/// Removes the socket file at `path` if nobody is bound to it (a connect
/// is refused), and only the file so found. A live socket is `InUse`
/// (and its listener sees a connection that closes at once); anything
/// but a socket is `NotASocket`.
pub(crate) fn remove_if_stale(kind: Kind, name: &SocketName, path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(|e| Error::of_name(name, "lstat", e))?,
    };
    if !meta.file_type().is_socket() {
        return Err(Error::NotASocket { name: name.to_string(), found: kind_name(&meta) });
    }
    match socket::connect(kind, name, crate::call::Wait::No) {
        Err(Error::Refused { .. }) => {}
        Err(Error::NotFound { .. }) => return Ok(()),
        Ok(_) | Err(Error::WouldBlock | Error::WrongType { .. }) => {
            return Err(Error::InUse { name: name.to_string() });
        }
        Err(e) => return Err(e),
    }
    match std::fs::symlink_metadata(path) {
        Ok(now) if (now.dev(), now.ino()) == (meta.dev(), meta.ino()) => match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::of_name(name, "unlink", e)),
            _ => Ok(()),
        },
        _ => Ok(()), // gone or replaced meanwhile: the caller tries again
    }
}

/// The socket directory's advisory lock (`flock`), held while a binder of
/// this crate looks at, removes or publishes a socket file there, so that
/// two binders never both take a stale file over (one removing the file
/// the other just published). Without read permission on the directory
/// there is no lock to take, and binding goes on without it.
struct DirLock(#[allow(dead_code)] Option<nix::fcntl::Flock<std::fs::File>>);

impl DirLock {
    /// Waits up to 5 s for the lock (a binder holds it for a few system
    /// calls).
    fn take(dir: &Path, name: &SocketName) -> Result<DirLock> {
        let Ok(mut file) = std::fs::File::open(dir) else { return Ok(DirLock(None)) };
        let wait = crate::call::Wait::after(std::time::Duration::from_secs(5));
        let mut backoff = crate::call::Backoff::new();
        loop {
            match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(DirLock(Some(lock))),
                Err((f, nix::errno::Errno::EWOULDBLOCK | nix::errno::Errno::EINTR)) => {
                    file = f;
                    if backoff.pause(wait).is_err() {
                        return Err(Error::InUse { name: name.to_string() });
                    }
                }
                // A file system without locks: go on without.
                Err(_) => return Ok(DirLock(None)),
            }
        }
    }
}

/// The start of the temporary names of socket files being published:
/// `.ipc-socket.new.PID.N`, short whatever the socket's own name, so that
/// any path a socket may have can be published through it.
const TEMP_PREFIX: &str = ".ipc-socket.new.";

/// Removes the temporary socket files (`.ipc-socket.new.PID.N`) of
/// processes that died while binding in `dir`.
fn sweep_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.as_bytes().strip_prefix(TEMP_PREFIX.as_bytes()) else { continue };
        let mut parts = rest.split(|&b| b == b'.');
        let number = |p: Option<&[u8]>| {
            p.filter(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit))
                .and_then(|p| std::str::from_utf8(p).ok()?.parse::<u32>().ok())
        };
        let (Some(pid), Some(_), None) = (number(parts.next()), number(parts.next()), parts.next()) else { continue };
        let is_socket = entry.file_type().is_ok_and(|t| t.is_socket());
        if is_socket && pid != std::process::id() && !ipc_sync::process_alive(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The descriptor of a bound socket.
impl AsFd for Bound {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
