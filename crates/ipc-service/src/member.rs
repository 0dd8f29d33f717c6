//! A hub's member: how it joins (the handshake, then a word once it took
//! its place), and how it waits (on its doorbell and socket, telling the
//! owner's thread each time it goes to sleep).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::Instant;

use ipc_shm::Memfd;
use ipc_shm::broadcast::{CursorCell, NOT_STARTED};
use ipc_socket::{Credentials, SeqpacketSocket, SocketName};
use ipc_sync::ready::{Readiness, Source};
use ipc_sync::{Deadline, EventFd, EventFdMode};
use nix::errno::Errno;
use nix::sys::memfd::{MFdFlags, memfd_create};

use crate::error::{Error, Result};
use crate::hub::Kind;
use crate::link::{Link, Waiter};
use crate::service::label;
use crate::wire;

/// What a member waits for: whether there is news for it (a message at
/// its cursor, a newer value, an event), and its place, which it gives in
/// its cell before it sleeps.
pub(crate) trait News: Send + Sync + std::fmt::Debug + 'static {
    /// Its place now, or `NOT_STARTED`.
    fn place(&self) -> u64;
    /// Whether a look would find something (or the owner's end).
    fn ready(&self) -> bool;
}

/// A member's readiness for a poller and for its own waits: armed, it
/// says in its cell where it is and that it sleeps.
#[derive(Debug)]
struct MemberReady<N> {
    news: N,
    cell: CursorCell,
    link: Arc<Link>,
}

impl<N: News> Readiness for MemberReady<N> {
    fn arm(&self) -> bool {
        let at = self.news.place();
        if at != NOT_STARTED {
            self.cell.set_cursor(at);
        }
        self.cell.nap();
        self.cell.set_asleep(true);
        // Said to the owner's thread too, which only then makes the owner
        // look at this cell (a full socket: the owner's recheck remains).
        let _ = self.link.socket().try_send(&wire::HUB_NAP);
        // Ordered with the owner's look at this word after it changed the
        // shared object: one of the two sees the other.
        fence(Ordering::SeqCst);
        self.news.ready()
    }

    fn disarm(&self) {
        self.cell.set_asleep(false);
    }

    fn edges(&self) -> bool {
        true
    }
}

/// How a member waits: on its doorbell and its socket at once (the
/// owner's death wakes it), after a short window of looking again.
#[derive(Debug)]
pub(crate) struct MemberWait {
    waiter: Waiter,
}

impl MemberWait {
    pub(crate) fn new(joined: &Joined, news: impl News) -> Result<Arc<MemberWait>> {
        let ready = Arc::new(MemberReady { news, cell: joined.cell.clone(), link: Arc::clone(&joined.link) });
        let waiter = Waiter::new(Source::doorbell(joined.bell.as_fd(), ready), Some(&joined.link))?;
        Ok(Arc::new(MemberWait { waiter }))
    }

    /// Runs `attempt` until it gives a result: once, and with no
    /// deadline (`try_*`) that is all ([`Error::WouldBlock`]); else yields
    /// for a short window (other members may wait for this CPU), then
    /// sleeps until woken, the owner's death or `deadline`.
    pub(crate) fn until<R>(
        &self,
        deadline: Option<Deadline>,
        mut attempt: impl FnMut() -> Result<Option<R>>,
    ) -> Result<R> {
        if let Some(r) = attempt()? {
            return Ok(r);
        }
        let Some(deadline) = deadline else { return Err(Error::WouldBlock) };
        let (start, window) = (Instant::now(), crate::connection::window(deadline));
        loop {
            if deadline.has_expired() {
                return Err(Error::Timeout);
            }
            if start.elapsed() < window {
                std::thread::yield_now();
            } else {
                self.waiter.park(deadline)?;
            }
            if let Some(r) = attempt()? {
                return Ok(r);
            }
        }
    }

    /// What a poller waits on.
    pub(crate) fn source(&self) -> Source<'_> {
        self.waiter.source()
    }
}

/// What a member receives when it joins.
#[derive(Debug)]
pub(crate) struct Joined {
    pub(crate) link: Arc<Link>,
    pub(crate) cell: CursorCell,
    /// Kept open: `ipc-kit ls` counts members by it.
    /// An empty memfd labelled with the member's label, the inode of the
    /// owner's shared memory and the name: made once it took its place,
    /// held for its life; `ipc-kit ls` finds members by it.
    marker: Option<OwnedFd>,
    marker_label: String,
    pub(crate) bell: EventFd,
    pub(crate) owner_bell: EventFd,
    pub(crate) flags: u32,
    pub(crate) id: u64,
    pub(crate) owner: Credentials,
}

/// Joins the hub of `kind` at `name`: what the member keeps, and the
/// shared object's memfd, which it maps and then closes (only the owner
/// holds a descriptor of it, which is how `ipc-kit ls` tells the owner).
pub(crate) fn join(name: &SocketName, kind: Kind, deadline: Deadline) -> Result<(Joined, Memfd)> {
    let socket = match deadline.instant() {
        None => SeqpacketSocket::connect(name)?,
        Some(at) => SeqpacketSocket::connect_deadline(name, at)?,
    };
    match socket.try_send(&wire::hub_hello(kind as u32)) {
        Ok(()) | Err(ipc_socket::Error::Disconnected) => {}
        Err(e) => return Err(e.into()),
    }
    let mut buf = [0u8; wire::ANSWER_LEN + 1];
    let mut got = match deadline.remaining() {
        None => socket.recv_with_fds(&mut buf, wire::HUB_FDS),
        Some(left) => socket.recv_with_fds_timeout(&mut buf, wire::HUB_FDS, left),
    };
    if matches!(got, Err(ipc_socket::Error::Disconnected)) {
        // As for a service: a reset first, the answer queued behind it.
        got = socket.try_recv_with_fds(&mut buf, wire::HUB_FDS).map_err(|e| match e {
            ipc_socket::Error::WouldBlock => ipc_socket::Error::Disconnected,
            e => e,
        });
    }
    let (n, fds) = match got {
        Ok(got) => got,
        Err(e @ (ipc_socket::Error::FdsTruncated { .. } | ipc_socket::Error::Truncated { .. })) => {
            return Err(Error::handshake(format!("the answer: {e}")));
        }
        Err(e) => return Err(e.into()),
    };
    let (flags, id) = match wire::read_hub_answer(&buf[..n], kind as u32)? {
        Ok(welcome) => welcome,
        Err(reason) => return Err(Error::Refused { name: name.to_string(), reason }),
    };
    let [object, cell, bell, owner_bell] = <[_; wire::HUB_FDS]>::try_from(fds).map_err(|fds| {
        Error::handshake(format!("the welcome carried {} descriptors, not {}", fds.len(), wire::HUB_FDS))
    })?;
    let refused = |what: &str| {
        let what = what.to_owned();
        move |e: Error| match e {
            e @ Error::OutOfDescriptors { .. } => e,
            e => Error::handshake(format!("the {what}: {e}")),
        }
    };
    let object = Memfd::from_fd(object).map_err(Error::from).map_err(refused("shared memory"))?;
    let cell_memfd = Memfd::from_fd(cell).map_err(Error::from).map_err(refused("member's cell"))?;
    let cell = CursorCell::open(&cell_memfd).map_err(Error::from).map_err(refused("member's cell"))?;
    let eventfd = |fd| EventFd::from_fd(fd, EventFdMode::Counter).map_err(|e| Error::io("eventfd", e));
    let bell = eventfd(bell).map_err(refused("member's doorbell"))?;
    let owner_bell = eventfd(owner_bell).map_err(refused("owner's doorbell"))?;
    let owner = socket.peer_credentials()?;
    let inode = nix::sys::stat::fstat(&object).map_err(|e| Error::io("fstat", std::io::Error::from(e)))?.st_ino;
    let marker_label = label(&format!("{} {inode}", kind.labels().1), name);
    let joined =
        Joined { link: Link::new(socket, None), cell, marker: None, marker_label, bell, owner_bell, flags, id, owner };
    Ok((joined, object))
}

impl Joined {
    /// Says to the owner that this member took its place (its first look
    /// at the shared object is made): it counts among the members from
    /// then on.
    pub(crate) fn take_place(&mut self) -> Result<()> {
        let marker = memfd_create(self.marker_label.as_str(), MFdFlags::MFD_CLOEXEC).map_err(|e| match e {
            Errno::EMFILE | Errno::ENFILE => Error::OutOfDescriptors { op: "memfd_create" },
            e => Error::io("memfd_create", std::io::Error::from(e)),
        })?;
        self.marker = Some(marker);
        match self.link.socket().try_send(&wire::HUB_JOINED) {
            Ok(()) => Ok(()),
            Err(ipc_socket::Error::Disconnected) => Err(Error::Disconnected),
            Err(e) => Err(e.into()),
        }
    }
}
