//! The latest value: one [`Blackboard`] bound at a name keeps it, any
//! number of [`BlackboardReader`]s read it whenever they like.
//!
//! The value lives in a sealed memfd that only the blackboard's process
//! can write (readers map it read-only), in several copies: a reader
//! copies the latest one and checks that it was not rewritten meanwhile,
//! so it never sees a torn value, and neither the readers nor their
//! number ever hold the writer up. A reader can also wait for a value
//! newer than the last it read, with a poller or in async code too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Pod;
use ipc_shm::board::{BoardRead, BoardReader, BoardWriter};
use ipc_socket::{Credentials, SocketName};
use ipc_sync::Deadline;
use ipc_sync::ready::{Interest, Pollable, Source};

use crate::error::{Error, Result};
use crate::hub::{Hub, HubOptions, Kind, Roster};
use crate::member::{self, Joined, MemberWait, News};
use crate::options::Access;
use crate::service::label;

/// How many times a read copies the value before it gives up with
/// [`Error::Unsettled`]: an honest writer would have to write the value
/// `copies` times during each of them.
pub const READ_TRIES: u32 = 1000;

/// How a [`Blackboard`] is bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlackboardOptions {
    /// The largest value, 1 byte to 64 MiB (default 4096).
    pub max_size: usize,
    /// Copies of the value kept, 2 to 64 (default 4): a reader's copy
    /// fails only when the writer writes this many values meanwhile.
    pub copies: usize,
    /// The most readers at once, 1 to 4096 (default 64).
    pub max_readers: usize,
    /// Who may read (default [`Access::SameUser`]).
    pub access: Access,
    /// How long a reader that connected has to greet (default 2 s).
    pub handshake_timeout: Duration,
    /// The socket file's mode (default 0o600).
    pub mode: u32,
}

impl Default for BlackboardOptions {
    fn default() -> Self {
        BlackboardOptions {
            max_size: 4096,
            copies: 4,
            max_readers: 64,
            access: Access::SameUser,
            handshake_timeout: Duration::from_secs(2),
            mode: 0o600,
        }
    }
}

impl BlackboardOptions {
    fn hub(&self) -> HubOptions {
        HubOptions {
            access: self.access.clone(),
            max_members: self.max_readers,
            handshake_timeout: self.handshake_timeout,
            mode: self.mode,
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidOptions { reason });
        if !(1..=ipc_shm::board::MAX_VALUE).contains(&self.max_size) {
            return bad(format!("max_size {}: 1 byte to 64 MiB", self.max_size));
        }
        if !(2..=ipc_shm::board::MAX_COPIES).contains(&self.copies) {
            return bad(format!("copies {}: 2 to 64", self.copies));
        }
        if self.copies.saturating_mul(self.max_size) > 1 << 30 {
            return bad(format!("{} copies of {} bytes are over 1 GiB", self.copies, self.max_size));
        }
        self.hub().check()
    }
}

/// The writing end of a blackboard (see the [crate docs](crate)).
#[derive(Debug)]
pub struct Blackboard {
    writer: BoardWriter,
    roster: Roster,
    hub: Hub,
}

impl Blackboard {
    /// Binds `name`; readers may connect from now on (a thread of this
    /// process takes them in). It holds no value until the first write.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`]; [`Error::Socket`] when the name is in
    /// use; [`Error::Channel`] or [`Error::Io`].
    pub fn bind(name: &SocketName, options: BlackboardOptions) -> Result<Blackboard> {
        options.check()?;
        let writer = BoardWriter::create(&label(Kind::Blackboard.labels().0, name), options.copies, options.max_size)?;
        let board = writer.memfd().try_clone()?;
        let hub = Hub::bind(name, Kind::Blackboard, 0, options.hub(), board, writer.position())?;
        Ok(Blackboard { writer, roster: Roster::new(), hub })
    }

    /// The name it is bound at.
    pub fn name(&self) -> &SocketName {
        self.hub.name()
    }

    /// The largest value.
    pub fn max_size(&self) -> usize {
        self.writer.max()
    }

    /// The latest value's version (0 before the first write).
    pub fn version(&self) -> u64 {
        self.writer.version()
    }

    /// How many readers are connected now.
    pub fn readers(&self) -> usize {
        self.hub.count()
    }

    /// The credentials of the readers connected now.
    pub fn reader_credentials(&self) -> Vec<Credentials> {
        self.hub.members().iter().map(|m| m.peer).collect()
    }

    /// Makes `bytes` the value, and returns its version (from 1). Never
    /// waits.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`].
    pub fn write(&mut self, bytes: &[u8]) -> Result<u64> {
        self.write_with(bytes.len(), |buf| buf.copy_from_slice(bytes))
    }

    /// Makes a value of `len` bytes that `f` writes in place the value.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`].
    pub fn write_with(&mut self, len: usize, f: impl FnOnce(&mut [u8])) -> Result<u64> {
        let max = self.writer.max();
        if len > max {
            return Err(Error::MessageTooLarge { len, max });
        }
        self.roster.sync(&self.hub, || 0);
        let v = self.writer.write_with(len, f)?;
        self.roster.wake(&self.hub);
        Ok(v)
    }

    /// Makes a `T` the value.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`].
    pub fn write_pod<T: Pod>(&mut self, value: &T) -> Result<u64> {
        self.write(bytemuck::bytes_of(value))
    }
}

impl Drop for Blackboard {
    fn drop(&mut self) {
        self.writer.close();
        for m in self.hub.members() {
            m.ring();
        }
    }
}

/// A reader's news: a version newer than the last it read, or the
/// writer's end.
#[derive(Debug)]
struct Newer {
    board: Arc<BoardReader>,
    seen: Arc<AtomicU64>,
}

impl News for Newer {
    fn place(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    fn ready(&self) -> bool {
        self.board.version() > self.seen.load(Ordering::Relaxed) || self.board.closed()
    }
}

/// A reader of a [`Blackboard`], connected by name.
///
/// [`read`](Self::read) copies the latest value at any time (also after
/// the writer is gone: the last value stays);
/// [`wait_newer`](Self::wait_newer) waits for a value newer than the last
/// one this reader read, and is what a poller waits for (readable while
/// there is one).
#[derive(Debug)]
pub struct BlackboardReader {
    board: Arc<BoardReader>,
    /// The version it last read.
    seen: Arc<AtomicU64>,
    wait: Arc<MemberWait>,
    joined: Joined,
}

impl BlackboardReader {
    /// Connects to the blackboard bound at `name`.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`]; [`Error::Socket`]; [`Error::Handshake`] (not a
    /// blackboard, or one that sent what no blackboard sends);
    /// [`Error::OutOfDescriptors`].
    pub fn connect(name: &SocketName) -> Result<BlackboardReader> {
        Self::connect_until(name, Deadline::never())
    }

    /// As [`connect`](Self::connect), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As above, and [`Error::Timeout`] or the socket's timeout.
    pub fn connect_timeout(name: &SocketName, timeout: Duration) -> Result<BlackboardReader> {
        Self::connect_until(name, Deadline::after(timeout))
    }

    /// As [`connect`](Self::connect), waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn connect_deadline(name: &SocketName, deadline: Instant) -> Result<BlackboardReader> {
        Self::connect_until(name, Deadline::at(deadline))
    }

    fn connect_until(name: &SocketName, deadline: Deadline) -> Result<BlackboardReader> {
        let (mut joined, object) = member::join(name, Kind::Blackboard, deadline)?;
        let board = Arc::new(BoardReader::open(&object).map_err(|e| match Error::from(e) {
            e @ Error::OutOfDescriptors { .. } => e,
            e => Error::handshake(format!("the blackboard's memory: {e}")),
        })?);
        let seen = Arc::new(AtomicU64::new(0));
        let wait = MemberWait::new(&joined, Newer { board: Arc::clone(&board), seen: Arc::clone(&seen) })?;
        joined.take_place()?;
        Ok(BlackboardReader { board, seen, wait, joined })
    }

    /// The largest value.
    pub fn max_size(&self) -> usize {
        self.board.max()
    }

    /// The writer's credentials, as the kernel gave them at connect.
    pub fn writer_credentials(&self) -> Credentials {
        self.joined.owner
    }

    /// The latest value's version, as the writer says (0: none yet).
    pub fn version(&self) -> u64 {
        self.board.version()
    }

    /// Whether the writer is gone (the value stays readable).
    pub fn writer_gone(&self) -> bool {
        self.board.closed() || self.joined.link.look()
    }

    /// Copies the latest value into `buf` (cleared first) and returns its
    /// version, or `None` (and `buf` empty) when none was written yet.
    /// Never waits for the writer.
    ///
    /// # Errors
    ///
    /// [`Error::Unsettled`] when every one of [`READ_TRIES`] copies
    /// changed under it.
    pub fn read(&mut self, buf: &mut Vec<u8>) -> Result<Option<u64>> {
        self.read_with(|b| {
            buf.clear();
            buf.extend_from_slice(b);
        })
        .map(|got| got.map(|(v, ())| v))
    }

    /// Reads the latest value in place: `f` sees it where the writer
    /// wrote it, and its result is returned with the version. `f` may be
    /// called more than once: a call that saw the value being rewritten
    /// is dropped and the read tried again (so `f` must not act on what it
    /// sees before the read returns).
    ///
    /// # Errors
    ///
    /// As for [`read`](Self::read).
    pub fn read_with<R>(&mut self, f: impl FnMut(&[u8]) -> R) -> Result<Option<(u64, R)>> {
        match self.board.read_with(READ_TRIES, f) {
            BoardRead::Value { version, value } => {
                self.seen.store(version, Ordering::Relaxed);
                Ok(Some((version, value)))
            }
            BoardRead::Empty => Ok(None),
            BoardRead::Unsettled => Err(Error::Unsettled { tries: READ_TRIES }),
        }
    }

    /// Reads the latest value as a `T`: `None` when none was written yet.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for a value of another size; as for
    /// [`read`](Self::read).
    pub fn read_pod<T: Pod>(&mut self) -> Result<Option<T>> {
        match self.read_with(crate::subscriber::read_pod::<T>)? {
            Some((_, value)) => value.map(Some),
            None => Ok(None),
        }
    }

    /// Waits for a value newer than the last one this reader read (any
    /// value, if it read none), reads it into `buf`, and returns its
    /// version.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when the writer is gone and wrote nothing
    /// newer; as for [`read`](Self::read).
    pub fn wait_newer(&mut self, buf: &mut Vec<u8>) -> Result<u64> {
        self.newer_until(Some(Deadline::never()), buf)
    }

    /// As [`wait_newer`](Self::wait_newer), or [`Error::WouldBlock`] at
    /// once when there is no newer value.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn try_newer(&mut self, buf: &mut Vec<u8>) -> Result<u64> {
        self.newer_until(None, buf)
    }

    /// As [`wait_newer`](Self::wait_newer), waiting at most `timeout`
    /// ([`Error::Timeout`]).
    ///
    /// # Errors
    ///
    /// As above.
    pub fn wait_newer_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<u64> {
        self.newer_until(Some(Deadline::after(timeout)), buf)
    }

    /// As [`wait_newer`](Self::wait_newer), waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn wait_newer_deadline(&mut self, buf: &mut Vec<u8>, deadline: Instant) -> Result<u64> {
        self.newer_until(Some(Deadline::at(deadline)), buf)
    }

    fn newer_until(&mut self, deadline: Option<Deadline>, buf: &mut Vec<u8>) -> Result<u64> {
        let wait = Arc::clone(&self.wait);
        wait.until(deadline, || {
            let before = self.seen.load(Ordering::Relaxed);
            if self.board.version() > before {
                // Newer than the last read, or nothing (a writer that
                // went back, which no writer does, gives nothing newer).
                return Ok(self.read(buf)?.filter(|&v| v > before));
            }
            // Gone, and (looked at after, so that a last write just before
            // the end is not missed) nothing newer.
            if (self.board.closed() || self.joined.link.look_sometimes()) && self.board.version() <= before {
                return Err(Error::Disconnected);
            }
            Ok(None)
        })
    }
}

impl Pollable for BlackboardReader {
    /// Readable while a value newer than the last one read waits (or the
    /// writer is gone).
    fn source(&self, interest: Interest) -> std::io::Result<Option<Source<'_>>> {
        Ok((interest == Interest::Readable).then(|| self.wait.source()))
    }

    fn polls_cheaply(&self) -> bool {
        true
    }
}
