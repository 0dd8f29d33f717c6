//! Every mechanism by name, and a connected pair of any of them.

use std::io;

use crate::traits::{MessageReceiver, MessageSender};

mod lock_dir;

/// The type of the empty message that primes a System V pair's queue.
const PRIMING_TYPE: i64 = 2;

/// The mechanisms the traits cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mechanism {
    /// An anonymous pipe, framed.
    Pipe,
    /// A named pipe in a fresh temporary directory, framed; the FIFO and
    /// its directory are removed as soon as both ends are open (and swept
    /// by a later pair if the maker dies first: see [`pair`](Self::pair)).
    Fifo,
    /// A private System V message queue, primed with one empty message
    /// so that the kernel records its maker (see [`pair`](Self::pair)).
    SysvQueue,
    /// A POSIX message queue with a unique name (10 messages of 8 KiB),
    /// unlinked as soon as both ends are open (and swept by a later pair
    /// if the maker dies first: see [`pair`](Self::pair)).
    PosixQueue,
    /// A shared-memory byte channel (1 MiB ring) in anonymous memory.
    ShmByteChannel,
    /// A pair of connected Unix seqpacket sockets (`socketpair`): whole
    /// messages up to the socket's send buffer.
    UnixSocket,
}

impl Mechanism {
    /// Every mechanism.
    pub const ALL: &[Mechanism] = &[
        Mechanism::Pipe,
        Mechanism::Fifo,
        Mechanism::SysvQueue,
        Mechanism::PosixQueue,
        Mechanism::ShmByteChannel,
        Mechanism::UnixSocket,
    ];

    /// A short name, as `ipc-kit bench` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Pipe => "pipe",
            Mechanism::Fifo => "fifo",
            Mechanism::SysvQueue => "sysv-msgq",
            Mechanism::PosixQueue => "posix-mq",
            Mechanism::ShmByteChannel => "shm-byte-channel",
            Mechanism::UnixSocket => "unix-socket",
        }
    }

    /// The mechanism of a [`name`](Self::name), if one has it.
    ///
    /// ```
    /// use ipc_kit::Mechanism;
    /// for &m in Mechanism::ALL {
    ///     assert_eq!(Mechanism::from_name(m.name()), Some(m));
    /// }
    /// assert_eq!(Mechanism::from_name("carrier-pigeon"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.iter().copied().find(|m| m.name() == name)
    }

    /// A connected sender and receiver. Make the pair before `fork`; then
    /// one process keeps the sender and drops the receiver, the other the
    /// reverse. Keep the `Pair` value itself alive while the sides are in
    /// use (take the sides out with `let Pair { sender, receiver, .. } =
    /// pair;`, not from a temporary): it holds what a mechanism needs
    /// besides its two sides, such as the handle that removes a System V
    /// queue, which goes when the creating process drops it (a forked
    /// child's copies never remove anything).
    ///
    /// # Leftovers
    ///
    /// A FIFO pair and a POSIX queue pair have names only while `pair`
    /// runs: the FIFO and its directory, or the queue's name, are removed
    /// as soon as both ends are open. A process killed inside `pair` may
    /// leave them behind, and the next `pair` of either kind, by any
    /// process of the same user with the same temporary directory, sweeps
    /// them:
    ///
    /// - While the name exists, the maker holds an exclusive `flock` on a
    ///   directory `$TMPDIR/ipc-kit-pair-NAME` (mode 0700) that it made;
    ///   the FIFO is inside it, and the queue is `/ipc-kit-pair-NAME`. The
    ///   kernel drops the lock when the maker dies.
    /// - At its start, each `pair` of these two kinds reads the temporary
    ///   directory once and takes every such directory of this user whose
    ///   lock it can take without waiting (its maker is dead), opened
    ///   without following symbolic links and checked to be still the one
    ///   at that path; it removes the queue of that name, then the
    ///   directory. Directories of live makers (locked), of other users, or
    ///   that cannot be removed are left alone, without an error.
    ///
    /// Proof of a maker's death comes from the kernel's lock only, never
    /// from pids or time. A maker that forks (or another thread forks)
    /// while it holds the lock shares the lock with the child, and its
    /// leftovers are swept once both are gone.
    ///
    /// A System V pair's queue is private (`IPC_PRIVATE`) and is removed
    /// when the process that made the pair drops it; a killed maker leaves
    /// it, as System V queues outlive their processes. `pair` sends one
    /// empty message through the queue and receives it itself, so that the
    /// kernel records the maker as the queue's last sender and receiver
    /// and `ipc-kit rm --orphaned` offers the queue once the maker and
    /// whoever used the queue later are gone. (The kernel records no
    /// receiver that is still waiting: a child that only receives, and has
    /// received nothing yet, does not keep the queue from looking
    /// orphaned after the maker's death.)
    ///
    /// # Errors
    ///
    /// The mechanism's own errors when its object cannot be made; for a
    /// FIFO or POSIX queue pair, also when the lock directory cannot be
    /// made or locked in the temporary directory.
    ///
    /// # Examples
    ///
    /// Code written once against the traits works over every mechanism:
    ///
    /// ```
    /// use ipc_kit::{Mechanism, MessageReceiver, MessageSender};
    ///
    /// fn echo_three(tx: &mut dyn MessageSender, rx: &mut dyn MessageReceiver) -> ipc_kit::traits::Result<Vec<u8>> {
    ///     let mut buf = Vec::new();
    ///     for word in [&b"one"[..], b"two", b"three"] {
    ///         tx.send(word)?;
    ///         rx.recv(&mut buf)?;
    ///     }
    ///     Ok(buf)
    /// }
    ///
    /// for m in Mechanism::ALL {
    ///     let mut pair = m.pair()?;
    ///     assert_eq!(echo_three(pair.sender.as_mut(), pair.receiver.as_mut()).unwrap(), b"three", "{}", m.name());
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn pair(self) -> io::Result<Pair> {
        /// A frame reader on the end reopened on a description of its own
        /// where that can be done, as `PipeSender::new` does.
        #[cfg(feature = "pipe")]
        fn frames(r: ipc_pipe::PipeReader) -> ipc_pipe::FrameReader<ipc_pipe::PipeReader> {
            ipc_pipe::FrameReader::new(r.reopen().unwrap_or(r))
        }
        Ok(match self {
            Mechanism::Pipe => {
                let (r, w) = ipc_pipe::pipe()?;
                Pair::new(crate::impls::PipeSender::new(w), frames(r), Keep::None)
            }
            Mechanism::Fifo => {
                lock_dir::sweep();
                let dir = lock_dir::LockDir::new()?;
                let fifo = ipc_fifo::Fifo::create(dir.path().join("fifo"), 0o600)?;
                // As the directory: whatever the umask took.
                lock_dir::set_owner_only(fifo.path())?;
                let r = fifo.try_open_reader()?;
                let w = fifo.try_open_writer()?;
                // Both ends are open: the FIFO and its directory go now,
                // and the lock with them.
                drop(fifo);
                drop(dir);
                Pair::new(crate::impls::PipeSender::new(w), frames(r), Keep::None)
            }
            Mechanism::SysvQueue => {
                // The owning handle stays in the pair: whichever process
                // drops its side first must not remove the queue under the
                // other.
                let owner = ipc_msgq::SysvQueue::create(ipc_sync::Key::private(), 0o600)?;
                let tx = ipc_msgq::SysvQueue::open_id(owner.id())?;
                let rx = ipc_msgq::SysvQueue::open_id(owner.id())?;
                // One empty message through the queue, so that the kernel
                // records this process as its last sender and receiver: a
                // queue with no pid recorded is never taken for an orphan.
                // (Its own type, so that nothing else sent meanwhile is
                // taken for it.)
                tx.try_send(PRIMING_TYPE, &[])?;
                rx.try_recv(ipc_msgq::Selector::Exactly(PRIMING_TYPE), &mut [])?;
                Pair::new(tx, rx, Keep::SysvQueue { _owner: owner })
            }
            Mechanism::PosixQueue => {
                lock_dir::sweep();
                // The queue has the lock directory's name, and exists only
                // while the directory is locked.
                let mut tries = 0;
                let (dir, mut q) = loop {
                    let dir = lock_dir::LockDir::new()?;
                    let name = format!("/{}", dir.name());
                    match ipc_msgq::PosixQueue::create(&name, ipc_msgq::QueueAttr::default(), 0o600) {
                        Err(ipc_msgq::Error::AlreadyExists { .. }) if tries < 16 => tries += 1,
                        other => break (dir, other?),
                    }
                };
                // Mode 0600 whatever the umask took, so that this process
                // may open it again.
                let owner_rw = nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR;
                nix::sys::stat::fchmod(std::os::fd::AsFd::as_fd(&q), owner_rw).map_err(io::Error::from)?;
                let other = ipc_msgq::PosixQueue::open(q.name())?;
                // Both ends are open: the name goes now (the queue lives on
                // while open), then the directory and its lock.
                q.unlink()?;
                drop(dir);
                Pair::new(q, other, Keep::None)
            }
            Mechanism::ShmByteChannel => {
                let chan = ipc_shm::ByteChannel::anonymous(1 << 20)?;
                let other = chan.clone();
                Pair::new(crate::impls::ChannelSender::new(chan), crate::impls::ChannelReceiver::new(other), Keep::None)
            }
            Mechanism::UnixSocket => {
                let (tx, rx) = ipc_socket::SeqpacketSocket::pair().map_err(io::Error::from)?;
                Pair::new(tx, rx, Keep::None)
            }
        })
    }
}

/// What a pair keeps alive besides its two sides.
#[derive(Debug)]
enum Keep {
    None,
    /// The handle that removes the queue with the pair.
    SysvQueue {
        _owner: ipc_msgq::SysvQueue,
    },
}

/// A connected sender and receiver of one [`Mechanism`].
pub struct Pair {
    /// The sending side.
    pub sender: Box<dyn MessageSender + Send>,
    /// The receiving side.
    pub receiver: Box<dyn MessageReceiver + Send>,
    _keep: Keep,
}

impl Pair {
    fn new(s: impl MessageSender + Send + 'static, r: impl MessageReceiver + Send + 'static, keep: Keep) -> Pair {
        Pair { sender: Box::new(s), receiver: Box::new(r), _keep: keep }
    }
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair").finish_non_exhaustive()
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Reads a mechanism by its [`name`](Mechanism::name).
impl std::str::FromStr for Mechanism {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mechanism::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = Mechanism::ALL.iter().map(|m| m.name()).collect();
            format!("{s:?} is not a mechanism; the mechanisms are {}", names.join(", "))
        })
    }
}
