//! The life of a named or keyed IPC object, shared by every crate of
//! ipc-kit: checking a POSIX name, creating or opening without a race,
//! the process that owns the object and removes it, and what an errno
//! says about the object.
//!
//! A named object (a POSIX segment, queue or semaphore, a FIFO) or a keyed
//! one (a System V segment, queue or semaphore set) outlives the process
//! that made it. Each handle type of ipc-kit holds a [`Guard`]: it knows
//! how to remove its object ([`Remove`]) and whether this process made it
//! ([`Owned`]), and removes it on drop only then, so a child that
//! inherited a copy of the handle across `fork` leaves it alone.
//!
//! Each crate's error enum is declared through
//! [`object_error!`](crate::object_error), which gives it the variants every named object
//! needs (`AlreadyExists`, `NotFound`, `PermissionDenied`, `Removed`,
//! `Io`), the errno classification ([`ObjectError::from_os`]) and the
//! conversion into [`std::io::Error`].

use std::ffi::CString;
use std::io;

use crate::sys;

/// Checks the name of a POSIX IPC object (shared memory, semaphore or
/// message queue) before it reaches a system call: a leading '/', at least
/// one more character, no other '/', no NUL, not `.` or `..` after the '/'
/// (glibc opens such names as paths under /dev/shm, and `/..` would be
/// /dev itself), at most `max_len` bytes after the '/'. Returns it as a C
/// string, or the reason it is refused.
///
/// # Errors
///
/// The reason, as a sentence fragment ("it must start with '/'").
///
/// # Examples
///
/// ```
/// assert!(ipc_sync::posix_name("/jobs", 255).is_ok());
/// assert!(ipc_sync::posix_name("jobs", 255).is_err());
/// assert!(ipc_sync::posix_name("/a/b", 255).is_err());
/// assert!(ipc_sync::posix_name("/..", 255).is_err());
/// assert!(ipc_sync::posix_name("/.", 255).is_err());
/// assert!(ipc_sync::posix_name("/...", 255).is_ok());
/// ```
pub fn posix_name(name: &str, max_len: usize) -> Result<CString, &'static str> {
    if !name.starts_with('/') {
        return Err("it must start with '/'");
    }
    if name.len() < 2 {
        return Err("it needs at least one character after the '/'");
    }
    if name[1..].contains('/') {
        return Err("it may contain no '/' after the first");
    }
    if matches!(&name[1..], "." | "..") {
        return Err("'.' and '..' name directories, not objects");
    }
    if name.len() - 1 > max_len {
        return Err("it is too long");
    }
    CString::new(name).map_err(|_| "it contains a NUL byte")
}

/// Whether process `pid` is alive: it exists and is not a zombie (a
/// process that died and was not yet reaped by its parent). Used to notice
/// a peer that died without cleaning up. A pid of 0 is nobody.
///
/// Pids are reused, so a very old pid may name another process; ipc-kit
/// checks while the peer is expected to be there, where that is unlikely.
///
/// ```
/// assert!(ipc_sync::process_alive(std::process::id()));
/// assert!(!ipc_sync::process_alive(0));
/// ```
pub fn process_alive(pid: u32) -> bool {
    sys::pid_alive(pid)
}

/// Opens a named or keyed IPC object, creating it when there is none: an
/// exclusive `create`; if the object `exists`, `open` it; if it went
/// `missing` in between (removed by someone else), start over. So exactly
/// one of several racing processes creates it, and only that one owns it.
///
/// # Errors
///
/// The first error of `create` or `open` that is neither `exists` nor
/// `missing`.
pub fn open_or_create<T, E>(
    mut create: impl FnMut() -> Result<T, E>,
    mut open: impl FnMut() -> Result<T, E>,
    exists: impl Fn(&E) -> bool,
    missing: impl Fn(&E) -> bool,
) -> Result<T, E> {
    loop {
        match create() {
            Err(e) if exists(&e) => {}
            other => return other,
        }
        match open() {
            Err(e) if missing(&e) => continue,
            other => return other,
        }
    }
}

/// [`open_or_create`] for a typed error of ipc-kit: `create` finding the
/// object there ([`ObjectFault::Exists`]) opens it, and `open` finding it
/// gone ([`ObjectFault::Missing`]) starts over.
///
/// ```
/// use std::cell::Cell;
/// use ipc_sync::Error;
/// use ipc_sync::object::open_or_create_object;
///
/// // Someone else made it; it is removed before we open it; we make it.
/// let creates = Cell::new(0);
/// let made = open_or_create_object(
///     || {
///         creates.set(creates.get() + 1);
///         match creates.get() {
///             1 => Err(Error::AlreadyExists { what: "thing", name: "/t".into() }),
///             _ => Ok("made"),
///         }
///     },
///     || Err(Error::NotFound { what: "thing", name: "/t".into() }),
/// );
/// assert_eq!(made?, "made");
/// assert_eq!(creates.get(), 2);
/// # Ok::<(), Error>(())
/// ```
///
/// # Errors
///
/// As for [`open_or_create`].
pub fn open_or_create_object<T, E: ObjectError>(
    create: impl FnMut() -> Result<T, E>,
    open: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    open_or_create(
        create,
        open,
        |e| e.fault() == Some(ObjectFault::Exists),
        |e| e.fault() == Some(ObjectFault::Missing),
    )
}

/// Which process owns a named or keyed object: the one that created it.
/// Only that process removes the object when its handle is dropped; a
/// child that inherited a copy of the handle across `fork` does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owned(u32);

impl Owned {
    /// Owned by the calling process.
    pub fn here() -> Owned {
        Owned(std::process::id())
    }

    /// Owned by nobody (the handle only opened the object, or persists it).
    pub const fn none() -> Owned {
        Owned(0)
    }

    /// Whether the calling process owns the object.
    pub fn is_owner(self) -> bool {
        self.0 != 0 && self.0 == std::process::id()
    }
}

/// How a named or keyed object is removed: `shm_unlink`, `mq_unlink`,
/// `sem_unlink`, `unlink` of a FIFO, or `IPC_RMID` of a System V id.
pub trait Remove {
    /// Removes the object (its name, or its id: open handles keep working
    /// where the kernel allows).
    ///
    /// # Errors
    ///
    /// The error of the system call.
    fn remove(&self) -> io::Result<()>;
}

/// A handle's hold on a named or keyed object: its name or id, and whether
/// this process made it and so removes it when the handle is dropped.
///
/// ```
/// use std::cell::Cell;
/// use ipc_sync::object::{Guard, Remove};
///
/// struct Name<'a>(&'a Cell<u32>);
/// impl Remove for Name<'_> {
///     fn remove(&self) -> std::io::Result<()> {
///         self.0.set(self.0.get() + 1);
///         Ok(())
///     }
/// }
///
/// let removed = Cell::new(0);
/// drop(Guard::made(Name(&removed)));
/// assert_eq!(removed.get(), 1);
/// drop(Guard::opened(Name(&removed)));
/// let mut kept = Guard::made(Name(&removed));
/// kept.persist();
/// drop(kept);
/// assert_eq!(removed.get(), 1);
/// ```
#[derive(Debug)]
pub struct Guard<N: Remove> {
    name: N,
    owner: Owned,
}

impl<N: Remove> Guard<N> {
    /// The object this process just created: removed when dropped here.
    pub fn made(name: N) -> Self {
        Guard { name, owner: Owned::here() }
    }

    /// An object this process opened: left in place.
    pub fn opened(name: N) -> Self {
        Guard { name, owner: Owned::none() }
    }

    /// The name or id.
    pub fn name(&self) -> &N {
        &self.name
    }

    /// Whether dropping this guard removes the object: it was made by
    /// this process (not one it was forked from) and not persisted.
    pub fn is_owner(&self) -> bool {
        self.owner.is_owner()
    }

    /// Takes ownership: the object is removed when this guard is dropped
    /// in this process.
    pub fn own(&mut self) {
        self.owner = Owned::here();
    }

    /// Leaves the object in place when this guard is dropped.
    pub fn persist(&mut self) {
        self.owner = Owned::none();
    }

    /// Removes the object now; the guard removes it no more.
    ///
    /// # Errors
    ///
    /// The error of [`Remove::remove`].
    pub fn remove(&mut self) -> io::Result<()> {
        self.owner = Owned::none();
        self.name.remove()
    }
}

impl<N: Remove> Drop for Guard<N> {
    fn drop(&mut self) {
        if self.owner.is_owner() {
            let _ = self.name.remove();
        }
    }
}

/// What an errno from creating, opening or using a named or keyed IPC
/// object (a queue, segment, semaphore, FIFO) says about the object: the
/// errno knowledge every crate's typed error shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectFault {
    /// It exists already (`EEXIST`).
    Exists,
    /// It does not exist (`ENOENT`).
    Missing,
    /// Its permissions keep this process out (`EACCES`, `EPERM`).
    Denied,
    /// It was removed while in use (`EIDRM`).
    Removed,
}

impl ObjectFault {
    /// The fault `e` reports, if it is one of these.
    pub fn of(e: &io::Error) -> Option<ObjectFault> {
        match e.raw_os_error()? {
            libc::EEXIST => Some(ObjectFault::Exists),
            libc::ENOENT => Some(ObjectFault::Missing),
            libc::EACCES | libc::EPERM => Some(ObjectFault::Denied),
            libc::EIDRM => Some(ObjectFault::Removed),
            _ => None,
        }
    }
}

/// The typed error of a crate of ipc-kit as an [`io::Error`]: its kind,
/// and the OS error it carries. Implemented with
/// [`io_error_conversion!`](crate::io_error_conversion), which
/// [`object_error!`](crate::object_error) includes.
pub trait IntoIoError: std::error::Error + Send + Sync + Sized + 'static {
    /// The [`io::ErrorKind`] it converts to.
    fn io_kind(&self) -> io::ErrorKind;

    /// The OS error it carries unchanged (its `Io` variant), or itself.
    ///
    /// # Errors
    ///
    /// `self` when it is not a plain OS error.
    fn into_os_error(self) -> Result<io::Error, Self>;
}

/// The typed error of a crate of ipc-kit whose objects have names: how it
/// is made from an errno. Implemented by
/// [`object_error!`](crate::object_error) for the enums with the object
/// variants, and by hand for the others (a FIFO is named by its path).
pub trait ObjectError: IntoIoError {
    /// The variant for `fault` about the object `what` named `name`.
    fn object(fault: ObjectFault, what: &'static str, name: String) -> Self;

    /// The variant for any other failure of the system call `op`.
    fn io(op: &'static str, source: io::Error) -> Self;

    /// What it says about the object, when it is one of the variants
    /// [`object`](Self::object) makes.
    fn fault(&self) -> Option<ObjectFault> {
        None
    }

    /// Turns an OS error about the object `what` named `name` into the
    /// matching typed error: `AlreadyExists`, `NotFound`,
    /// `PermissionDenied`, `Removed`, or `Io` naming `op`.
    fn from_os(what: &'static str, name: impl FnOnce() -> String, op: &'static str, e: io::Error) -> Self {
        match ObjectFault::of(&e) {
            Some(fault) => Self::object(fault, what, name()),
            None => Self::io(op, e),
        }
    }
}

/// An error of ipc-kit as an [`io::Error`]: the OS error itself when it
/// is one, otherwise a new one of the error's kind that carries it.
pub fn into_io_error<E: IntoIoError>(e: E) -> io::Error {
    match e.into_os_error() {
        Ok(source) => source,
        Err(other) => io::Error::new(other.io_kind(), other),
    }
}

/// Declares a crate's error enum: the variants given, then those every
/// named or keyed object needs (`AlreadyExists`, `NotFound`,
/// `PermissionDenied`, `Removed`, each with the kind of object and its
/// name, and `Io` with the failed call and the OS error), with
/// [`ObjectError`], `From<Error> for io::Error` and `kind()`, the
/// [`io::ErrorKind`] of each variant: those of the variants given are
/// listed after the enum, under `kinds`.
///
/// Two more variants come on request, after `kinds` (whose kinds are then
/// listed there too): `invalid_name: "POSIX message queue";` adds
/// `InvalidName { name, reason }`, a POSIX name refused before any system
/// call ("invalid POSIX message queue name …"), and `invalid_key:
/// "System V";` adds `InvalidKey { reason }`, a key that cannot be used
/// ("invalid System V key: …").
///
/// ```
/// use std::io::ErrorKind;
///
/// ipc_sync::object_error! {
///     /// What can go wrong with a queue.
///     pub enum Error {
///         /// A `try_recv` found nothing.
///         #[error("the queue is empty")]
///         Empty,
///     }
///     kinds {
///         Error::Empty => ErrorKind::WouldBlock,
///         Error::InvalidName { .. } | Error::InvalidKey { .. } => ErrorKind::InvalidInput,
///     }
///     invalid_name: "POSIX message queue";
///     invalid_key: "System V";
/// }
///
/// let e = Error::InvalidName { name: "q".into(), reason: "it must start with '/'" };
/// assert_eq!(e.to_string(), "invalid POSIX message queue name \"q\": it must start with '/'");
/// assert_eq!(e.kind(), ErrorKind::InvalidInput);
/// let e = Error::InvalidKey { reason: "IPC_PRIVATE names no existing object" };
/// assert_eq!(e.to_string(), "invalid System V key: IPC_PRIVATE names no existing object");
/// let e = std::io::Error::from(Error::NotFound { what: "queue", name: "/q".into() });
/// assert_eq!(e.kind(), ErrorKind::NotFound);
/// assert_eq!(e.to_string(), "no queue /q exists");
/// ```
#[macro_export]
macro_rules! object_error {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($body:tt)*
        }
        kinds {
            $($pat:pat => $kind:expr),* $(,)?
        }
        $(invalid_name: $names:literal;)?
        $(invalid_key: $keys:literal;)?
    ) => {
        $(#[$meta])*
        #[derive(Debug, thiserror::Error)]
        #[non_exhaustive]
        pub enum $name {
            $($body)*

            $(
                /// A name refused before any system call.
                #[error("invalid {} name {name:?}: {reason}", $names)]
                InvalidName {
                    /// The name given.
                    name: String,
                    /// Why.
                    reason: &'static str,
                },
            )?

            $(
                /// A key that cannot be used.
                #[error("invalid {} key: {reason}", $keys)]
                InvalidKey {
                    /// Why.
                    reason: &'static str,
                },
            )?

            /// `create` found the object there already.
            #[error("the {what} {name} already exists")]
            AlreadyExists {
                /// What kind of object.
                what: &'static str,
                /// Its name or key.
                name: String,
            },

            /// `open` found no such object.
            #[error("no {what} {name} exists")]
            NotFound {
                /// What kind of object.
                what: &'static str,
                /// Its name or key.
                name: String,
            },

            /// The object's permissions do not let this process in.
            #[error("permission denied for the {what} {name}")]
            PermissionDenied {
                /// What kind of object.
                what: &'static str,
                /// Its name or key.
                name: String,
            },

            /// The object was removed while in use (`EIDRM`, or an id
            /// that no longer names it).
            #[error("the {what} {name} was removed")]
            Removed {
                /// What kind of object.
                what: &'static str,
                /// Its name, key or id.
                name: String,
            },

            /// Any other failure of a system call.
            #[error("{op} failed: {source}")]
            Io {
                /// What was being done.
                op: &'static str,
                /// The error from the operating system.
                #[source]
                source: ::std::io::Error,
            },
        }

        impl $name {
            /// The [`std::io::ErrorKind`] this error converts to.
            pub fn kind(&self) -> ::std::io::ErrorKind {
                match self {
                    $($pat => $kind,)*
                    $name::AlreadyExists { .. } => ::std::io::ErrorKind::AlreadyExists,
                    $name::NotFound { .. } | $name::Removed { .. } => ::std::io::ErrorKind::NotFound,
                    $name::PermissionDenied { .. } => ::std::io::ErrorKind::PermissionDenied,
                    $name::Io { source, .. } => source.kind(),
                }
            }
        }

        $crate::io_error_conversion!($name);

        impl $crate::object::ObjectError for $name {
            fn object(fault: $crate::object::ObjectFault, what: &'static str, name: String) -> Self {
                use $crate::object::ObjectFault;
                match fault {
                    ObjectFault::Exists => $name::AlreadyExists { what, name },
                    ObjectFault::Missing => $name::NotFound { what, name },
                    ObjectFault::Denied => $name::PermissionDenied { what, name },
                    ObjectFault::Removed => $name::Removed { what, name },
                }
            }

            fn io(op: &'static str, source: ::std::io::Error) -> Self {
                $name::Io { op, source }
            }

            fn fault(&self) -> ::std::option::Option<$crate::object::ObjectFault> {
                use $crate::object::ObjectFault;
                match self {
                    $name::AlreadyExists { .. } => Some(ObjectFault::Exists),
                    $name::NotFound { .. } => Some(ObjectFault::Missing),
                    $name::PermissionDenied { .. } => Some(ObjectFault::Denied),
                    $name::Removed { .. } => Some(ObjectFault::Removed),
                    _ => None,
                }
            }
        }
    };
}

/// Implements [`IntoIoError`] and `From<Error> for io::Error` for a
/// crate's error enum that has an inherent `kind(&self) -> io::ErrorKind`
/// and an `Io { source, .. }` variant carrying the OS error: the OS error
/// converts to itself, any other variant to an [`io::Error`] of its kind
/// that carries it.
#[macro_export]
macro_rules! io_error_conversion {
    ($name:ident) => {
        impl $crate::object::IntoIoError for $name {
            fn io_kind(&self) -> ::std::io::ErrorKind {
                self.kind()
            }

            fn into_os_error(self) -> ::std::result::Result<::std::io::Error, Self> {
                match self {
                    $name::Io { source, .. } => Ok(source),
                    other => Err(other),
                }
            }
        }

        impl ::std::convert::From<$name> for ::std::io::Error {
            fn from(e: $name) -> Self {
                $crate::object::into_io_error(e)
            }
        }
    };
}

/// A name as one line of text, for listings: UTF-8 text as it is, but a
/// backslash doubled and every control character or byte that is not
/// UTF-8 as `\xNN` (so that `ipc-kit ls` prints one name per line, and
/// `ipc-kit rm` takes the spelling back).
///
/// ```
/// use ipc_sync::object::escape_name;
///
/// assert_eq!(escape_name(b"a b\\c\n\xff"), "a b\\\\c\\x0a\\xff");
/// assert_eq!(escape_name("grüße".as_bytes()), "grüße");
/// ```
pub fn escape_name(name: &[u8]) -> String {
    let mut out = String::new();
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}
