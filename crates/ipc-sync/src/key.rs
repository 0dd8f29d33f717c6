use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::sys;

/// The key of a System V IPC object: a semaphore set, a shared-memory
/// segment or a message queue.
///
/// Unrelated processes find the same object by agreeing on a key: a number
/// both know ([`Key::new`]) or one made from a path both can see
/// ([`Key::from_path`], `ftok(3)`). [`Key::private`] (`IPC_PRIVATE`) makes
/// a new object every time, found only through its id.
///
/// # Examples
///
/// ```
/// use ipc_sync::Key;
///
/// let a = Key::from_path("/", b'k')?;
/// let b = Key::from_path("/", b'k')?;
/// assert_eq!(a, b, "the same path and project id give the same key");
/// assert!(Key::from_path("/no/such/path", b'k').is_err());
/// assert!(Key::new(0).is_err(), "0 is IPC_PRIVATE");
/// assert!(Key::private().is_private());
/// # Ok::<(), ipc_sync::Error>(())
/// ```
///
/// # References
///
/// [ftok(3)](https://man7.org/linux/man-pages/man3/ftok.3.html),
/// [sysvipc(7)](https://man7.org/linux/man-pages/man7/sysvipc.7.html)
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(libc::key_t);

impl Key {
    /// `IPC_PRIVATE`: every `create` with it makes a new object.
    #[doc(alias = "IPC_PRIVATE")]
    pub const fn private() -> Key {
        Key(libc::IPC_PRIVATE)
    }

    /// A key chosen by number.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] for 0, which is `IPC_PRIVATE` (use
    /// [`Key::private`] for that).
    pub const fn new(key: i32) -> Result<Key> {
        if key == libc::IPC_PRIVATE {
            return Err(Error::InvalidKey { key, reason: "0 is IPC_PRIVATE; use Key::private() for a private object" });
        }
        Ok(Key(key))
    }

    /// The key `ftok(3)` makes from an existing path and a project id: the
    /// same for every process that names the same file and id.
    ///
    /// # Errors
    ///
    /// [`Error::KeyPath`] naming the path when it does not exist or cannot
    /// be reached; [`Error::InvalidKey`] for project id 0, which `ftok`
    /// does not allow.
    #[doc(alias = "ftok")]
    pub fn from_path(path: impl AsRef<Path>, proj_id: u8) -> Result<Key> {
        let path = path.as_ref();
        if proj_id == 0 {
            return Err(Error::InvalidKey { key: 0, reason: "ftok needs a nonzero project id" });
        }
        let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::KeyPath {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path contains a NUL byte"),
        })?;
        let key = sys::ftok(&c, proj_id).map_err(|source| Error::KeyPath { path: path.to_owned(), source })?;
        Ok(Key(key))
    }

    /// The number passed to `shmget`, `msgget` or `semget`.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// How errors name the object with this key and `id`: `0x… (id N)`, or
    /// `id N` for a private object.
    pub fn describe(self, id: i32) -> String {
        if self.is_private() { format!("id {id}") } else { format!("{self} (id {id})") }
    }

    /// Whether this is `IPC_PRIVATE`.
    pub const fn is_private(self) -> bool {
        self.0 == libc::IPC_PRIVATE
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_private() { f.write_str("Key(IPC_PRIVATE)") } else { write!(f, "Key({:#010x})", self.0) }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_private() { f.write_str("IPC_PRIVATE") } else { write!(f, "{:#010x}", self.0) }
    }
}
