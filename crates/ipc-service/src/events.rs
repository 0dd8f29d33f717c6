//! Named events: one [`Notifier`] bound at a name notifies by id, any
//! number of [`Listener`]s wait (or poll) and learn which ids fired since
//! they last looked, and how many times.
//!
//! The counts live in a sealed memfd that only the notifier's process can
//! write (listeners map it read-only). A notification costs the notifier
//! a few stores, and a system call only for listeners that sleep.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipc_shm::events::{EventReader, EventWriter};
use ipc_socket::{Credentials, SocketName};
use ipc_sync::Deadline;
use ipc_sync::ready::{Interest, Pollable, Source};

use crate::error::{Error, Result};
use crate::hub::{Hub, HubOptions, Kind, Roster};
use crate::member::{self, Joined, MemberWait, News};
use crate::options::Access;
use crate::service::label;

/// How [`Notifier`] is bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventOptions {
    /// How many ids, 1 to 65536 (default 64): ids are 0 to `ids - 1`.
    pub ids: u32,
    /// The most listeners at once, 1 to 4096 (default 64).
    pub max_listeners: usize,
    /// Who may listen (default [`Access::SameUser`]).
    pub access: Access,
    /// How long a listener that connected has to greet (default 2 s).
    pub handshake_timeout: Duration,
    /// The socket file's mode (default 0o600).
    pub mode: u32,
}

impl Default for EventOptions {
    fn default() -> Self {
        EventOptions {
            ids: 64,
            max_listeners: 64,
            access: Access::SameUser,
            handshake_timeout: Duration::from_secs(2),
            mode: 0o600,
        }
    }
}

impl EventOptions {
    fn hub(&self) -> HubOptions {
        HubOptions {
            access: self.access.clone(),
            max_members: self.max_listeners,
            handshake_timeout: self.handshake_timeout,
            mode: self.mode,
        }
    }
}

/// The notifying end (see the [crate docs](crate)).
#[derive(Debug)]
pub struct Notifier {
    writer: EventWriter,
    roster: Roster,
    hub: Hub,
}

impl Notifier {
    /// Binds `name`; listeners may connect from now on (a thread of this
    /// process takes them in).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`]; [`Error::Socket`] when the name is in
    /// use; [`Error::Channel`] or [`Error::Io`].
    pub fn bind(name: &SocketName, options: EventOptions) -> Result<Notifier> {
        if !(1..=ipc_shm::events::MAX_IDS).contains(&(options.ids as usize)) {
            return Err(Error::InvalidOptions { reason: format!("{} ids: 1 to 65536", options.ids) });
        }
        options.hub().check()?;
        let writer = EventWriter::create(&label(Kind::Events.labels().0, name), options.ids as usize)?;
        let table = writer.memfd().try_clone()?;
        let hub = Hub::bind(name, Kind::Events, 0, options.hub(), table, writer.position())?;
        Ok(Notifier { writer, roster: Roster::new(), hub })
    }

    /// The name it is bound at.
    pub fn name(&self) -> &SocketName {
        self.hub.name()
    }

    /// How many ids.
    pub fn ids(&self) -> u32 {
        self.writer.ids() as u32
    }

    /// How many listeners are connected now.
    pub fn listeners(&self) -> usize {
        self.hub.count()
    }

    /// The credentials of the listeners connected now.
    pub fn listener_credentials(&self) -> Vec<Credentials> {
        self.hub.members().iter().map(|m| m.peer).collect()
    }

    /// Notifies `id`: every listener learns that it fired (and how many
    /// times since it last looked). Never waits.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownEvent`] for an id beyond [`ids`](Self::ids).
    pub fn notify(&mut self, id: u32) -> Result<()> {
        if id >= self.ids() {
            return Err(Error::UnknownEvent { id, ids: self.ids() });
        }
        self.roster.sync(&self.hub, || 0);
        self.writer.notify(id as usize)?;
        self.roster.wake(&self.hub);
        Ok(())
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.writer.close();
        for m in self.hub.members() {
            m.ring();
        }
    }
}

/// The ids that fired since a listener last looked: each once, with how
/// many times it fired, in the order of the ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fired(Vec<(u32, u64)>);

impl Fired {
    /// Each id that fired, with how many times.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.0.iter().copied()
    }

    /// Whether `id` fired.
    pub fn contains(&self, id: u32) -> bool {
        self.count(id) > 0
    }

    /// How many times `id` fired (0: not at all).
    pub fn count(&self, id: u32) -> u64 {
        self.0.binary_search_by_key(&id, |&(i, _)| i).map_or(0, |at| self.0[at].1)
    }

    /// How many ids fired.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none did.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A listener's news: a generation it has not seen, or the notifier's
/// end.
#[derive(Debug)]
struct Moved {
    table: Arc<std::sync::Mutex<EventReader>>,
    generation: Arc<AtomicU64>,
}

impl News for Moved {
    fn place(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    fn ready(&self) -> bool {
        let table = self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        table.changed() || table.closed()
    }
}

/// A listener of a [`Notifier`], connected by name: it learns of every
/// notification made after it connected.
#[derive(Debug)]
pub struct Listener {
    table: Arc<std::sync::Mutex<EventReader>>,
    generation: Arc<AtomicU64>,
    wait: Arc<MemberWait>,
    joined: Joined,
}

impl Listener {
    /// Connects to the notifier bound at `name`.
    ///
    /// # Errors
    ///
    /// [`Error::Refused`]; [`Error::Socket`]; [`Error::Handshake`] (not a
    /// notifier, or one that sent what none sends);
    /// [`Error::OutOfDescriptors`].
    pub fn connect(name: &SocketName) -> Result<Listener> {
        Self::connect_until(name, Deadline::never())
    }

    /// As [`connect`](Self::connect), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As above, and [`Error::Timeout`] or the socket's timeout.
    pub fn connect_timeout(name: &SocketName, timeout: Duration) -> Result<Listener> {
        Self::connect_until(name, Deadline::after(timeout))
    }

    /// As [`connect`](Self::connect), waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn connect_deadline(name: &SocketName, deadline: Instant) -> Result<Listener> {
        Self::connect_until(name, Deadline::at(deadline))
    }

    fn connect_until(name: &SocketName, deadline: Deadline) -> Result<Listener> {
        let (mut joined, object) = member::join(name, Kind::Events, deadline)?;
        let reader = EventReader::open(&object).map_err(|e| match Error::from(e) {
            e @ Error::OutOfDescriptors { .. } => e,
            e => Error::handshake(format!("the notifier's table: {e}")),
        })?;
        let generation = Arc::new(AtomicU64::new(reader.generation()));
        let table = Arc::new(std::sync::Mutex::new(reader));
        let news = Moved { table: Arc::clone(&table), generation: Arc::clone(&generation) };
        let wait = MemberWait::new(&joined, news)?;
        joined.take_place()?;
        Ok(Listener { table, generation, wait, joined })
    }

    /// How many ids the notifier has.
    pub fn ids(&self) -> u32 {
        self.lock().ids() as u32
    }

    /// The notifier's credentials, as the kernel gave them at connect.
    pub fn notifier_credentials(&self) -> Credentials {
        self.joined.owner
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EventReader> {
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until some id fired since this listener last looked, and
    /// says which.
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] when the notifier is gone and everything it
    /// notified was told.
    pub fn wait(&mut self) -> Result<Fired> {
        self.until(Some(Deadline::never()))
    }

    /// As [`wait`](Self::wait), or [`Error::WouldBlock`] at once when
    /// nothing fired.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn try_wait(&mut self) -> Result<Fired> {
        self.until(None)
    }

    /// As [`wait`](Self::wait), waiting at most `timeout`
    /// ([`Error::Timeout`]).
    ///
    /// # Errors
    ///
    /// As above.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Fired> {
        self.until(Some(Deadline::after(timeout)))
    }

    /// As [`wait`](Self::wait), waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn wait_deadline(&mut self, deadline: Instant) -> Result<Fired> {
        self.until(Some(Deadline::at(deadline)))
    }

    fn until(&mut self, deadline: Option<Deadline>) -> Result<Fired> {
        let wait = Arc::clone(&self.wait);
        wait.until(deadline, || {
            let mut fired = Vec::new();
            let (changed, closed) = {
                let mut table = self.lock();
                let changed = table.changed();
                table.take(&mut fired);
                self.generation.store(table.generation(), Ordering::Relaxed);
                (changed, table.closed())
            };
            if !fired.is_empty() {
                fired.sort_unstable();
                return Ok(Some(Fired(fired)));
            }
            // Gone, and (looked at after, so that a last notification
            // just before the end is not missed) nothing new.
            if !changed && (closed || self.joined.link.look_sometimes()) && !self.lock().changed() {
                return Err(Error::Disconnected);
            }
            Ok(None)
        })
    }
}

impl Pollable for Listener {
    /// Readable while an id fired that this listener was not told of (or
    /// the notifier is gone).
    fn source(&self, interest: Interest) -> std::io::Result<Option<Source<'_>>> {
        Ok((interest == Interest::Readable).then(|| self.wait.source()))
    }

    fn polls_cheaply(&self) -> bool {
        true
    }
}
