//! Every mechanism by name, and a connected pair of any of them.

use std::io;

use crate::traits::{MessageReceiver, MessageSender};

/// The type of the empty message that primes a System V pair's queue.
const PRIMING_TYPE: i64 = 2;

/// The mechanisms the traits cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mechanism {
    /// An anonymous pipe, framed.
    Pipe,
    /// A named pipe in a fresh temporary directory, framed; the FIFO and
    /// its directory are removed as soon as both ends are open.
    Fifo,
    /// A private System V message queue, primed with one empty message
    /// so that the kernel records its maker (see [`pair`](Self::pair)).
    SysvQueue,
    /// A POSIX message queue with a unique name (10 messages of 8 KiB),
    /// unlinked as soon as both ends are open.
    PosixQueue,
    /// A shared-memory byte channel (1 MiB ring) in anonymous memory.
    ShmByteChannel,
}

impl Mechanism {
    /// Every mechanism.
    pub const ALL: &[Mechanism] =
        &[Mechanism::Pipe, Mechanism::Fifo, Mechanism::SysvQueue, Mechanism::PosixQueue, Mechanism::ShmByteChannel];

    /// A short name, as `ipc-kit bench` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Pipe => "pipe",
            Mechanism::Fifo => "fifo",
            Mechanism::SysvQueue => "sysv-msgq",
            Mechanism::PosixQueue => "posix-mq",
            Mechanism::ShmByteChannel => "shm-byte-channel",
        }
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
    /// The mechanism's own errors when its object cannot be made.
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
        Ok(match self {
            Mechanism::Pipe => {
                let (r, w) = ipc_pipe::pipe()?;
                Pair::new(crate::impls::PipeSender::new(w), ipc_pipe::FrameReader::new(r), Keep::None)
            }
            Mechanism::Fifo => {
                let dir = TempDir::new()?;
                let fifo = ipc_fifo::Fifo::create(dir.0.join("fifo"), 0o600)?;
                let r = fifo.try_open_reader()?;
                let w = fifo.try_open_writer()?;
                // Both ends are open: the FIFO and its directory go now,
                // so a crash leaves nothing behind.
                drop(fifo);
                drop(dir);
                Pair::new(crate::impls::PipeSender::new(w), ipc_pipe::FrameReader::new(r), Keep::None)
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
                let mut tries = 0;
                let mut q = loop {
                    let name = format!("/{}", unique_name());
                    match ipc_msgq::PosixQueue::create(&name, ipc_msgq::QueueAttr::default(), 0o600) {
                        Err(ipc_msgq::Error::AlreadyExists { .. }) if tries < 16 => tries += 1,
                        other => break other?,
                    }
                };
                let other = ipc_msgq::PosixQueue::open(q.name())?;
                // Both ends are open: the name goes now (the queue lives on
                // while open), so a crash leaves nothing behind.
                q.unlink()?;
                Pair::new(q, other, Keep::None)
            }
            Mechanism::ShmByteChannel => {
                let chan = ipc_shm::ByteChannel::anonymous(1 << 20)?;
                let other = chan.clone();
                Pair::new(crate::impls::ChannelSender::new(chan), crate::impls::ChannelReceiver::new(other), Keep::None)
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

/// `ipc-kit-pair-PID-N-RANDOM`: unique in this process by `N`, and by
/// `RANDOM` against what a dead process with a reused pid left.
fn unique_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // std seeds each RandomState's keys from the OS's random source.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(n);
    format!("ipc-kit-pair-{}-{n}-{:016x}", std::process::id(), h.finish())
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

/// A temporary directory for a FIFO, removed by the process that made it.
#[derive(Debug)]
struct TempDir(std::path::PathBuf, u32);

impl TempDir {
    fn new() -> io::Result<TempDir> {
        let mut tries = 0;
        loop {
            let dir = std::env::temp_dir().join(unique_name());
            match std::fs::create_dir(&dir) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 16 => tries += 1,
                Err(e) => return Err(e),
                Ok(()) => return Ok(TempDir(dir, std::process::id())),
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.1 == std::process::id() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
