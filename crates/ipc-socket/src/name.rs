//! Socket names: a path in the file system, or a name in the abstract
//! namespace (Linux: no file, gone when the last socket bound to it
//! closes, seen by every process in the same network namespace).

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::sys::socket::UnixAddr;

use crate::error::{Error, Result};

/// The most bytes a socket's path may have: `sun_path` is 108 bytes,
/// with room for the terminating NUL.
pub const MAX_PATH: usize = 107;

/// The most bytes an abstract name may have (`sun_path` less its leading
/// NUL).
pub const MAX_ABSTRACT: usize = 107;

/// Where a socket is found.
///
/// ```
/// use ipc_socket::SocketName;
///
/// let file: SocketName = "/run/user/1000/app.sock".parse()?;
/// assert!(matches!(file, SocketName::Path(_)));
/// // A leading '@' names the abstract namespace, as `ss` prints it.
/// let abstract_name: SocketName = "@app".parse()?;
/// assert_eq!(abstract_name, SocketName::abstract_name("app")?);
/// assert_eq!(abstract_name.to_string(), "@app");
/// # Ok::<(), ipc_socket::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SocketName {
    /// A socket file at this path (at most [`MAX_PATH`] bytes, no NUL).
    Path(PathBuf),
    /// A name in the abstract namespace (1 to [`MAX_ABSTRACT`] bytes, any
    /// bytes).
    Abstract(Vec<u8>),
}

impl SocketName {
    /// The socket file at `path`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for an empty path, one with a NUL byte, or
    /// one over [`MAX_PATH`] bytes.
    pub fn path(path: impl Into<PathBuf>) -> Result<SocketName> {
        let path = path.into();
        let bytes = path.as_os_str().as_bytes();
        let bad = |reason: String| Err(Error::InvalidName { name: path.display().to_string(), reason });
        if bytes.is_empty() {
            return bad("it is empty".into());
        }
        if bytes.contains(&0) {
            return bad("a path cannot hold a NUL byte".into());
        }
        if bytes.len() > MAX_PATH {
            return bad(format!("it is {} bytes, over the {MAX_PATH} a socket's path may have", bytes.len()));
        }
        Ok(SocketName::Path(path))
    }

    /// The name `name` in the abstract namespace.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`] for an empty name or one over
    /// [`MAX_ABSTRACT`] bytes.
    pub fn abstract_name(name: impl AsRef<[u8]>) -> Result<SocketName> {
        let name = name.as_ref();
        let bad = |reason: String| Err(Error::InvalidName { name: show_abstract(name), reason });
        if name.is_empty() {
            return bad("an abstract name needs at least one byte".into());
        }
        if name.len() > MAX_ABSTRACT {
            return bad(format!("it is {} bytes, over the {MAX_ABSTRACT} an abstract name may have", name.len()));
        }
        Ok(SocketName::Abstract(name.to_vec()))
    }

    /// The path, for a socket file.
    pub fn as_path(&self) -> Option<&Path> {
        match self {
            SocketName::Path(p) => Some(p),
            SocketName::Abstract(_) => None,
        }
    }

    /// The address the kernel takes.
    pub(crate) fn addr(&self) -> Result<UnixAddr> {
        let made = match self {
            SocketName::Path(p) => UnixAddr::new(p.as_path()),
            SocketName::Abstract(n) => UnixAddr::new_abstract(n),
        };
        // Checked when made; the kernel's own limits say the same.
        made.map_err(|e| Error::InvalidName { name: self.to_string(), reason: e.desc().to_owned() })
    }
}

/// `@` and the name for an abstract name (bytes outside printable ASCII,
/// and `\`, as `\xNN`); the path for a socket file.
impl fmt::Display for SocketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketName::Path(p) => write!(f, "{}", p.display()),
            SocketName::Abstract(n) => f.write_str(&show_abstract(n)),
        }
    }
}

fn show_abstract(name: &[u8]) -> String {
    let mut s = String::from("@");
    for &b in name {
        if b.is_ascii_graphic() && b != b'\\' || b == b' ' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// A leading `@` names the abstract namespace (the rest, as bytes, is the
/// name); anything else is a path.
impl FromStr for SocketName {
    type Err = Error;

    fn from_str(s: &str) -> Result<SocketName> {
        match s.strip_prefix('@') {
            Some(name) => SocketName::abstract_name(name),
            None => SocketName::path(s),
        }
    }
}

impl TryFrom<&Path> for SocketName {
    type Error = Error;

    fn try_from(p: &Path) -> Result<SocketName> {
        SocketName::path(p)
    }
}

impl TryFrom<&OsStr> for SocketName {
    type Error = Error;

    fn try_from(p: &OsStr) -> Result<SocketName> {
        SocketName::path(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_at_the_limit_and_over_it() {
        let at = "/".to_owned() + &"a".repeat(MAX_PATH - 1);
        assert!(SocketName::path(&at).unwrap().addr().is_ok());
        let over = at.clone() + "a";
        assert!(matches!(SocketName::path(&over), Err(Error::InvalidName { .. })));
        assert!(matches!(SocketName::path(""), Err(Error::InvalidName { .. })));
        assert!(matches!(SocketName::path("a\0b"), Err(Error::InvalidName { .. })));
    }

    #[test]
    fn abstract_names_at_the_limit_and_over_it() {
        let at = vec![0u8; MAX_ABSTRACT];
        let name = SocketName::abstract_name(&at).unwrap();
        assert_eq!(name.addr().unwrap().as_abstract(), Some(at.as_slice()));
        assert!(matches!(SocketName::abstract_name(vec![1u8; MAX_ABSTRACT + 1]), Err(Error::InvalidName { .. })));
        assert!(matches!(SocketName::abstract_name(b""), Err(Error::InvalidName { .. })));
        assert!(matches!("@".parse::<SocketName>(), Err(Error::InvalidName { .. })));
    }

    #[test]
    fn names_in_every_spelling() {
        assert_eq!("@x y".parse::<SocketName>().unwrap(), SocketName::Abstract(b"x y".to_vec()));
        assert_eq!("rel/sock".parse::<SocketName>().unwrap(), SocketName::Path("rel/sock".into()));
        assert_eq!(SocketName::abstract_name(b"a\0\\\n").unwrap().to_string(), "@a\\x00\\x5c\\x0a");
        // A path that starts with '@' is spelled with a directory.
        assert_eq!("./@x".parse::<SocketName>().unwrap(), SocketName::Path("./@x".into()));
    }
}
