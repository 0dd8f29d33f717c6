//! Publish/subscribe: one [`Publisher`] bound at a name, any number of
//! [`Subscriber`]s (up to a cap fixed when it binds) that join and leave
//! at any time, each reading every message from where it joined, at its
//! own pace.
//!
//! The messages go through one ring of slots in a sealed memfd that only
//! the publisher can write: subscribers map it read-only, so none can
//! change what the others read. Each subscriber has a page of its own
//! beside it (its cursor, whether it sleeps), which the publisher reads as
//! untrusted, and its socket, which tells the publisher at once when it
//! leaves or dies. What a full ring does is the [`Policy`]:
//!
//! - [`Policy::Block`]: the publisher waits until the slowest subscriber
//!   has read the message the next one overwrites (a subscriber that dies
//!   is dropped at once, and the publisher goes on);
//! - [`Policy::Overwrite`]: the publisher never waits; a subscriber that
//!   fell a whole ring behind gets [`Error::Lagged`] with the count of the
//!   messages it lost, and goes on from the oldest it can still read.

use std::ops::{Deref, DerefMut};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytemuck::Pod;
use ipc_shm::broadcast::{BroadcastWriter, WriterFlags};
use ipc_socket::{Credentials, SocketName};
use ipc_sync::Deadline;
use ipc_sync::ready::{Interest, Pollable, Readiness, Source};

use crate::connection::window;
use crate::error::{Error, Result};
use crate::hub::{self, Hub, HubOptions, Kind, Member, Roster};
use crate::link::Waiter;
use crate::options::Access;
use crate::service::label;

/// What a publisher does when its ring is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Wait for the slowest live subscriber.
    #[default]
    Block,
    /// Overwrite the oldest message; a subscriber that had not read it
    /// learns how many it lost ([`Error::Lagged`]).
    Overwrite,
}

impl Policy {
    fn code(self) -> u32 {
        match self {
            Policy::Block => 0,
            Policy::Overwrite => 1,
        }
    }

    pub(crate) fn from_code(code: u32) -> Option<Policy> {
        match code {
            0 => Some(Policy::Block),
            1 => Some(Policy::Overwrite),
            _ => None,
        }
    }
}

/// How a [`Publisher`] is bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubSubOptions {
    /// What a full ring does (default [`Policy::Block`]).
    pub policy: Policy,
    /// The ring's slots: a power of two from 2 to 2^24 (default 1024).
    pub capacity: usize,
    /// The longest message, 1 byte to 16 MiB (default 1024); each slot
    /// takes this much, plus 16 bytes, rounded up to 64.
    pub max_message: usize,
    /// The most subscribers at once, 1 to 4096 (default 64); one more is
    /// refused with [`Refusal::Full`](crate::Refusal::Full).
    pub max_subscribers: usize,
    /// Who may subscribe (default [`Access::SameUser`]).
    pub access: Access,
    /// How long a subscriber that connected has to greet (default 2 s).
    pub handshake_timeout: Duration,
    /// The socket file's mode (default 0o600).
    pub mode: u32,
}

impl Default for PubSubOptions {
    fn default() -> Self {
        PubSubOptions {
            policy: Policy::Block,
            capacity: 1024,
            max_message: 1024,
            max_subscribers: 64,
            access: Access::SameUser,
            handshake_timeout: Duration::from_secs(2),
            mode: 0o600,
        }
    }
}

/// The most memory a ring may take.
const MAX_RING: usize = 1 << 30;

impl PubSubOptions {
    fn hub(&self) -> HubOptions {
        HubOptions {
            access: self.access.clone(),
            max_members: self.max_subscribers,
            handshake_timeout: self.handshake_timeout,
            mode: self.mode,
        }
    }

    fn check(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::InvalidOptions { reason });
        if !self.capacity.is_power_of_two() || !(2..=ipc_shm::broadcast::MAX_SLOTS).contains(&self.capacity) {
            return bad(format!("capacity {}: a power of two from 2 to 2^24", self.capacity));
        }
        if !(1..=ipc_shm::broadcast::MAX_MESSAGE).contains(&self.max_message) {
            return bad(format!("max_message {}: 1 byte to 16 MiB", self.max_message));
        }
        let slot = (self.max_message + 16).next_multiple_of(64);
        if self.capacity.saturating_mul(slot) > MAX_RING {
            return bad(format!("{} slots of {slot} bytes are over 1 GiB", self.capacity));
        }
        self.hub().check()
    }
}

/// The lowest cursor among the live subscribers that started, each
/// taken within what it can be (from where it started, or a ring behind,
/// to the head): `head` when there is none.
fn floor(members: &[Arc<Member>], head: u64, capacity: u64) -> u64 {
    let low = head.saturating_sub(capacity);
    members.iter().filter(|m| m.alive()).filter_map(|m| m.place().map(|at| at.max(low).min(head))).min().unwrap_or(head)
}

/// The publishing end (see the [crate docs](crate)).
#[derive(Debug)]
pub struct Publisher {
    writer: BroadcastWriter,
    policy: Policy,
    roster: Roster,
    /// The lowest cursor found when last looked (under `Block`).
    floor: u64,
    waiter: Waiter,
    hub: Hub,
}

/// A publisher's readiness for a poller: room in the ring.
#[derive(Debug)]
struct Room {
    flags: WriterFlags,
    shared: Arc<hub::Shared>,
    capacity: u64,
    block: bool,
}

impl Readiness for Room {
    fn arm(&self) -> bool {
        if !self.block {
            return true;
        }
        // Emptied first: a subscriber that filled the counter would
        // otherwise keep every other ring from getting through.
        let _ = self.shared.bell().try_read();
        // Rung when every subscriber passed a quarter of the ring more:
        // one wake-up lets a run of messages through, not one.
        let head = self.flags.head();
        let until = head.saturating_sub(self.capacity) + (self.capacity / 4).max(1);
        self.flags.set_waiting(Some(until));
        head - floor(&self.shared.members(), head, self.capacity) < self.capacity
    }

    fn disarm(&self) {
        if self.block {
            self.flags.set_waiting(None);
        }
    }

    fn edges(&self) -> bool {
        true
    }
}

impl Publisher {
    /// Binds `name` and takes subscribers from now on (a thread of this
    /// process takes them in).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOptions`]; [`Error::Socket`] when the name is in
    /// use or cannot be bound; [`Error::Channel`] or [`Error::Io`] when the
    /// ring, its descriptors or the thread cannot be made.
    pub fn bind(name: &SocketName, options: PubSubOptions) -> Result<Publisher> {
        options.check()?;
        let writer =
            BroadcastWriter::create(&label(Kind::PubSub.labels().0, name), options.capacity, options.max_message)?;
        let ring = writer.memfd().try_clone()?;
        let hub = Hub::bind(name, Kind::PubSub, options.policy.code(), options.hub(), ring, writer.position())?;
        let room = Room {
            flags: writer.flags(),
            shared: hub.shared(),
            capacity: writer.capacity(),
            block: options.policy == Policy::Block,
        };
        let waiter = Waiter::new(Source::doorbell(hub.bell().as_fd(), Arc::new(room)), None)?;
        Ok(Publisher { writer, policy: options.policy, roster: Roster::new(), floor: 0, waiter, hub })
    }

    /// The name it is bound at.
    pub fn name(&self) -> &SocketName {
        self.hub.name()
    }

    /// Its policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The ring's slots.
    pub fn capacity(&self) -> usize {
        self.writer.capacity() as usize
    }

    /// The longest message.
    pub fn max_message(&self) -> usize {
        self.writer.max_message()
    }

    /// How many messages it published.
    pub fn published(&self) -> u64 {
        self.writer.head()
    }

    /// How many subscribers are joined now.
    pub fn subscribers(&self) -> usize {
        self.hub.count()
    }

    /// The credentials of the subscribers joined now.
    pub fn subscriber_credentials(&self) -> Vec<Credentials> {
        self.hub.members().iter().map(|m| m.peer).collect()
    }

    /// Publishes a copy of `bytes`, waiting for room under
    /// [`Policy::Block`]; returns the message's number (from 0).
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`].
    pub fn publish(&mut self, bytes: &[u8]) -> Result<u64> {
        self.publish_until(bytes, Some(Deadline::never()))
    }

    /// As [`publish`](Self::publish), or [`Error::WouldBlock`] at once
    /// when the ring is full (under `Block`).
    ///
    /// # Errors
    ///
    /// As above.
    pub fn try_publish(&mut self, bytes: &[u8]) -> Result<u64> {
        self.publish_until(bytes, None)
    }

    /// As [`publish`](Self::publish), waiting at most `timeout`
    /// ([`Error::Timeout`]).
    ///
    /// # Errors
    ///
    /// As above.
    pub fn publish_timeout(&mut self, bytes: &[u8], timeout: Duration) -> Result<u64> {
        self.publish_until(bytes, Some(Deadline::after(timeout)))
    }

    /// As [`publish`](Self::publish), waiting until `deadline`.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn publish_deadline(&mut self, bytes: &[u8], deadline: Instant) -> Result<u64> {
        self.publish_until(bytes, Some(Deadline::at(deadline)))
    }

    /// Publishes a `T`'s bytes.
    ///
    /// # Errors
    ///
    /// As for [`publish`](Self::publish).
    pub fn publish_pod<T: Pod>(&mut self, value: &T) -> Result<u64> {
        self.publish(bytemuck::bytes_of(value))
    }

    /// As [`publish_pod`](Self::publish_pod), or [`Error::WouldBlock`].
    ///
    /// # Errors
    ///
    /// As for [`try_publish`](Self::try_publish).
    pub fn try_publish_pod<T: Pod>(&mut self, value: &T) -> Result<u64> {
        self.try_publish(bytemuck::bytes_of(value))
    }

    /// As [`publish_pod`](Self::publish_pod), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// As for [`publish_timeout`](Self::publish_timeout).
    pub fn publish_pod_timeout<T: Pod>(&mut self, value: &T, timeout: Duration) -> Result<u64> {
        self.publish_timeout(bytemuck::bytes_of(value), timeout)
    }

    /// The next slot, in place: write the message into it and
    /// [`publish`](Loan::publish) it, with no copy. Waits for room under
    /// `Block`. A loan dropped unpublished publishes nothing.
    ///
    /// # Errors
    ///
    /// None yet; the `Result` is for symmetry with the other forms.
    pub fn loan(&mut self) -> Result<Loan<'_>> {
        self.loan_until(Some(Deadline::never()))
    }

    /// As [`loan`](Self::loan), or [`Error::WouldBlock`].
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`].
    pub fn try_loan(&mut self) -> Result<Loan<'_>> {
        self.loan_until(None)
    }

    /// As [`loan`](Self::loan), waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`].
    pub fn loan_timeout(&mut self, timeout: Duration) -> Result<Loan<'_>> {
        self.loan_until(Some(Deadline::after(timeout)))
    }

    fn loan_until(&mut self, deadline: Option<Deadline>) -> Result<Loan<'_>> {
        self.room(deadline)?;
        // Stamped now: what it overwrites is lost from here on.
        let _ = self.writer.loan();
        Ok(Loan { publisher: self })
    }

    fn publish_until(&mut self, bytes: &[u8], deadline: Option<Deadline>) -> Result<u64> {
        let max = self.writer.max_message();
        if bytes.len() > max {
            return Err(Error::MessageTooLarge { len: bytes.len(), max });
        }
        self.room(deadline)?;
        let n = self.writer.write(bytes)?;
        self.wake();
        Ok(n)
    }

    #[inline]
    fn sync(&mut self) {
        let head = self.writer.head();
        self.roster.sync(&self.hub, || head);
    }

    /// Makes sure the next slot may be written.
    fn room(&mut self, deadline: Option<Deadline>) -> Result<()> {
        self.sync();
        if self.policy == Policy::Overwrite {
            return Ok(());
        }
        let (head, cap) = (self.writer.head(), self.writer.capacity());
        if head - self.floor < cap {
            return Ok(());
        }
        let spin = deadline.map(|d| (Instant::now(), window(d)));
        loop {
            self.floor = floor(self.roster.members(), head, cap);
            if head - self.floor < cap {
                return Ok(());
            }
            let Some(deadline) = deadline else { return Err(Error::WouldBlock) };
            if deadline.has_expired() {
                return Err(Error::Timeout);
            }
            if spin.is_some_and(|(at, window)| at.elapsed() < window) {
                std::thread::yield_now();
            } else {
                self.waiter.park(deadline)?;
            }
            self.sync();
        }
    }

    #[inline]
    fn wake(&self) {
        self.roster.wake(&self.hub);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.writer.close();
        for m in self.hub.members() {
            m.ring();
        }
    }
}

impl Pollable for Publisher {
    /// Writable while the next message fits (always, under `Overwrite`).
    fn source(&self, interest: Interest) -> std::io::Result<Option<Source<'_>>> {
        Ok((interest == Interest::Writable).then(|| self.waiter.source()))
    }
}

/// A slot of the ring lent by [`Publisher::loan`]: the message is
/// written into it in place (it dereferences to the slot's
/// [`max_message`](Publisher::max_message) bytes) and published with
/// [`publish`](Self::publish).
#[derive(Debug)]
pub struct Loan<'p> {
    publisher: &'p mut Publisher,
}

impl Loan<'_> {
    /// Publishes the slot's first `len` bytes; returns the message's
    /// number.
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`] for `len` over the slot.
    pub fn publish(self, len: usize) -> Result<u64> {
        let max = self.publisher.writer.max_message();
        if len > max {
            return Err(Error::MessageTooLarge { len, max });
        }
        let n = self.publisher.writer.commit(len)?;
        self.publisher.wake();
        Ok(n)
    }
}

impl Deref for Loan<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.publisher.writer.loaned()
    }
}

impl DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.publisher.writer.loan()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Subscriber;

    fn name(tag: &str) -> SocketName {
        SocketName::abstract_name(format!("ipc-pubsub-test-{}-{tag}", std::process::id())).unwrap()
    }

    #[test]
    fn subscribers_get_every_message_under_block_and_see_the_end() {
        let name = name("block");
        let options = PubSubOptions { capacity: 8, max_message: 16, ..PubSubOptions::default() };
        let mut publisher = Publisher::bind(&name, options).unwrap();
        let subs: Vec<_> = (0..3).map(|_| Subscriber::connect(&name).unwrap()).collect();
        while publisher.subscribers() < 3 {
            std::thread::yield_now();
        }
        let readers: Vec<_> = subs
            .into_iter()
            .map(|mut s| {
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        match s.recv_pod::<u64>() {
                            Ok(v) => got.push(v),
                            Err(Error::Disconnected) => return got,
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        for i in 0..10_000u64 {
            publisher.publish_pod(&i).unwrap();
        }
        drop(publisher);
        for r in readers {
            assert_eq!(r.join().unwrap(), (0..10_000).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_slow_subscriber_under_overwrite_is_told_what_it_lost() {
        let name = name("overwrite");
        let options =
            PubSubOptions { policy: Policy::Overwrite, capacity: 4, max_message: 8, ..PubSubOptions::default() };
        let mut publisher = Publisher::bind(&name, options).unwrap();
        let mut sub = Subscriber::connect(&name).unwrap();
        while publisher.subscribers() < 1 {
            std::thread::yield_now();
        }
        for i in 0..10u64 {
            publisher.publish_pod(&i).unwrap();
        }
        assert!(matches!(sub.try_recv_pod::<u64>(), Err(Error::Lagged { missed: 8 })));
        assert_eq!(sub.try_recv_pod::<u64>().unwrap(), 8);
        assert_eq!(sub.try_recv_pod::<u64>().unwrap(), 9);
        assert!(matches!(sub.try_recv_pod::<u64>(), Err(Error::WouldBlock)));
        let mut loan = publisher.loan().unwrap();
        loan[..8].copy_from_slice(&10u64.to_ne_bytes());
        loan.publish(8).unwrap();
        assert_eq!(sub.recv_pod_timeout::<u64>(Duration::from_secs(1)).unwrap(), 10);
        assert_eq!(sub.lagged(), 8);
    }
}
