//! One-way links for the comparison: a mechanism's sending and receiving
//! side, made before `fork`, built with ipc-kit or with plain libc calls
//! (`crate::sys::raw`). After the fork each process keeps one side.

use std::any::Any;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use ipc_kit::shm::Channel;
use ipc_kit::{Mechanism, MessageReceiver, MessageSender};

use super::mech::Mech;
use crate::sys::raw;

/// The sending side.
pub(crate) trait Tx {
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;
}

/// The receiving side.
pub(crate) trait Rx {
    /// Receives the next message into `buf` (which may be grown or
    /// shortened; the message is `buf[..n]`); returns its length `n`.
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize>;
}

/// A one-way link: its two sides, and what must live as long as it (the
/// objects, removed when the process that made them drops this).
pub(crate) struct Link {
    pub(crate) tx: Box<dyn Tx>,
    pub(crate) rx: Box<dyn Rx>,
    pub(crate) _keep: Box<dyn Any>,
}

/// The bytes of one slot of the shm ring for messages of `size` bytes, and
/// the number of slots: about 1 MiB in all, at least 8 slots.
pub(crate) fn ring_slots(size: usize) -> usize {
    ((1usize << 20) / size.max(1)).next_power_of_two().clamp(8, 1 << 16)
}

/// Whether `mech` can carry messages of `size` bytes, and if not why.
pub(crate) fn fits(mech: Mech, size: usize) -> Result<(), String> {
    let max = match mech {
        Mech::Kit(Mechanism::SysvQueue) => ipc_kit::msgq::sysv_max_message().min(raw::MSG_TEXT),
        Mech::Kit(Mechanism::PosixQueue) => POSIX_MSGSIZE,
        Mech::ShmChannel if !size.is_power_of_two() || !(8..=1 << 20).contains(&size) => {
            return Err("shm-channel carries fixed-size types: sizes are powers of two from 8 B to 1 MiB".into());
        }
        _ => 1 << 20,
    };
    if size > max { Err(format!("{} carries at most {max} bytes", mech.name())) } else { Ok(()) }
}

/// The message size of the POSIX queues on both sides (that of
/// `Mechanism::PosixQueue`'s pair).
const POSIX_MSGSIZE: usize = 8192;

/// A link of `mech` built with ipc-kit: `Mechanism::pair` through the
/// `MessageSender`/`MessageReceiver` traits, or for the typed channel a
/// `Channel<[u8; size]>`.
pub(crate) fn ipc_kit(mech: Mech, size: usize) -> io::Result<Link> {
    let m = match mech {
        Mech::Kit(m) => m,
        Mech::ShmChannel => return typed_channel(size),
        Mech::UnixSocket => return Err(io::Error::other("unix-socket has no ipc-kit side")),
    };
    let mut pair = m.pair()?;
    let tx = std::mem::replace(&mut pair.sender, Box::new(Taken));
    let rx = std::mem::replace(&mut pair.receiver, Box::new(Taken));
    Ok(Link { tx: Box::new(KitTx(tx)), rx: Box::new(KitRx(rx)), _keep: Box::new(pair) })
}

fn kit_err(e: ipc_kit::traits::Error) -> io::Error {
    match e {
        ipc_kit::traits::Error::Disconnected => io::ErrorKind::BrokenPipe.into(),
        e => io::Error::other(e),
    }
}

struct KitTx(Box<dyn MessageSender + Send>);

impl Tx for KitTx {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.0.send(msg).map_err(kit_err)
    }
}

struct KitRx(Box<dyn MessageReceiver + Send>);

impl Rx for KitRx {
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.0.recv(buf).map_err(kit_err)
    }
}

/// Stands in a `Pair` for the sides taken out of it.
struct Taken;

impl MessageSender for Taken {
    fn send(&mut self, _: &[u8]) -> ipc_kit::traits::Result<()> {
        Err(ipc_kit::traits::Error::Disconnected)
    }
    fn try_send(&mut self, _: &[u8]) -> ipc_kit::traits::Result<()> {
        Err(ipc_kit::traits::Error::Disconnected)
    }
    fn send_timeout(&mut self, _: &[u8], _: std::time::Duration) -> ipc_kit::traits::Result<()> {
        Err(ipc_kit::traits::Error::Disconnected)
    }
}

impl MessageReceiver for Taken {
    fn recv(&mut self, _: &mut Vec<u8>) -> ipc_kit::traits::Result<usize> {
        Err(ipc_kit::traits::Error::Disconnected)
    }
    fn try_recv(&mut self, _: &mut Vec<u8>) -> ipc_kit::traits::Result<usize> {
        Err(ipc_kit::traits::Error::Disconnected)
    }
    fn recv_timeout(&mut self, _: &mut Vec<u8>, _: std::time::Duration) -> ipc_kit::traits::Result<usize> {
        Err(ipc_kit::traits::Error::Disconnected)
    }
}

/// `Channel<[u8; size]>` for the power-of-two sizes `fits` allows.
fn typed_channel(size: usize) -> io::Result<Link> {
    macro_rules! sizes {
        ($($n:literal)*) => {
            match size {
                $($n => channel_of::<$n>(),)*
                _ => Err(io::Error::other(format!("no typed channel of {size}-byte messages"))),
            }
        };
    }
    sizes!(8 16 32 64 128 256 512 1024 2048 4096 8192 16384 32768 65536 131072 262144 524288 1048576)
}

fn channel_of<const N: usize>() -> io::Result<Link> {
    let chan = Rc::new(Channel::<[u8; N]>::anonymous(ring_slots(N)).map_err(io::Error::from)?);
    let tx = ChanTx::<N> { chan: Rc::clone(&chan), side: None };
    let rx = ChanRx::<N> { chan: Rc::clone(&chan), side: None };
    Ok(Link { tx: Box::new(tx), rx: Box::new(rx), _keep: Box::new(chan) })
}

/// A typed channel's sender, claimed by the process that first sends.
struct ChanTx<const N: usize> {
    chan: Rc<Channel<[u8; N]>>,
    side: Option<ipc_kit::shm::Sender<[u8; N]>>,
}

impl<const N: usize> Tx for ChanTx<N> {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let value: &[u8; N] = msg.try_into().map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let side = match &mut self.side {
            Some(s) => s,
            None => self.side.insert(self.chan.sender().map_err(io::Error::from)?),
        };
        side.send_ref(value).map_err(io::Error::from)
    }
}

/// A typed channel's receiver, claimed by the process that first receives.
struct ChanRx<const N: usize> {
    chan: Rc<Channel<[u8; N]>>,
    side: Option<ipc_kit::shm::Receiver<[u8; N]>>,
}

impl<const N: usize> Rx for ChanRx<N> {
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if buf.len() < N {
            buf.resize(N, 0);
        }
        let out: &mut [u8; N] = (&mut buf[..N]).try_into().map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let side = match &mut self.side {
            Some(s) => s,
            None => self.side.insert(self.chan.receiver().map_err(io::Error::from)?),
        };
        side.recv_into(out).map_err(io::Error::from)?;
        Ok(N)
    }
}

/// A link of `mech` built with plain libc calls.
pub(crate) fn raw(mech: Mech, size: usize) -> io::Result<Link> {
    match mech {
        Mech::Kit(Mechanism::Pipe) => {
            let (r, w) = raw::pipe()?;
            Ok(fd_link(r, w, Box::new(())))
        }
        Mech::UnixSocket => {
            let (a, b) = raw::socketpair()?;
            Ok(fd_link(b, a, Box::new(())))
        }
        Mech::Kit(Mechanism::Fifo) => {
            let dir = OwnedDir::new()?;
            let path = dir.path.join("fifo");
            raw::mkfifo(&path)?;
            let (r, w) = raw::open_fifo(&path)?;
            Ok(fd_link(r, w, Box::new(dir)))
        }
        Mech::Kit(Mechanism::SysvQueue) => {
            let q = Rc::new(SysvOwner { id: raw::msgget_private()?, owner: std::process::id() });
            let tx = SysvTx { id: q.id, buf: raw::MsgBuf::new() };
            let rx = SysvRx { id: q.id, buf: raw::MsgBuf::new() };
            Ok(Link { tx: Box::new(tx), rx: Box::new(rx), _keep: Box::new(q) })
        }
        Mech::Kit(Mechanism::PosixQueue) => {
            let name = format!("/ipc-kit-bench-{}-{}", std::process::id(), next_id());
            let mq = raw::mq_create(&name, 10, POSIX_MSGSIZE as i64)?;
            let q = Rc::new(MqOwner { mq, name, owner: std::process::id() });
            Ok(Link { tx: Box::new(MqTx(mq)), rx: Box::new(MqRx(mq)), _keep: Box::new(q) })
        }
        Mech::ShmChannel => SlotRing::link(size),
        Mech::Kit(Mechanism::ShmByteChannel) => ByteRing::link(),
        Mech::Kit(m) => Err(io::Error::other(format!("{m} has no raw reference yet"))),
    }
}

fn next_id() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn fd_link(r: OwnedFd, w: OwnedFd, keep: Box<dyn Any>) -> Link {
    Link { tx: Box::new(FdTx(w)), rx: Box::new(FdRx(r)), _keep: keep }
}

struct FdTx(OwnedFd);

impl Tx for FdTx {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        raw::write_frame(self.0.as_fd(), msg)
    }
}

struct FdRx(OwnedFd);

impl Rx for FdRx {
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        raw::read_frame(self.0.as_fd(), buf)
    }
}

/// A directory for a FIFO, removed by the process that made it.
struct OwnedDir {
    path: PathBuf,
    owner: u32,
}

impl OwnedDir {
    fn new() -> io::Result<OwnedDir> {
        let path = std::env::temp_dir().join(format!("ipc-kit-bench-{}-{}", std::process::id(), next_id()));
        std::fs::create_dir(&path)?;
        Ok(OwnedDir { path, owner: std::process::id() })
    }
}

impl Drop for OwnedDir {
    fn drop(&mut self) {
        if self.owner == std::process::id() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

struct SysvOwner {
    id: libc::c_int,
    owner: u32,
}

impl Drop for SysvOwner {
    fn drop(&mut self) {
        if self.owner == std::process::id() {
            raw::msg_remove(self.id);
        }
    }
}

struct SysvTx {
    id: libc::c_int,
    buf: Box<raw::MsgBuf>,
}

impl Tx for SysvTx {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        raw::msgsnd(self.id, &mut self.buf, msg)
    }
}

struct SysvRx {
    id: libc::c_int,
    buf: Box<raw::MsgBuf>,
}

impl Rx for SysvRx {
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let n = raw::msgrcv(self.id, &mut self.buf)?;
        if buf.len() < n {
            buf.resize(n, 0);
        }
        buf[..n].copy_from_slice(self.buf.text(n));
        Ok(n)
    }
}

struct MqOwner {
    mq: raw::Mqd,
    name: String,
    owner: u32,
}

impl Drop for MqOwner {
    fn drop(&mut self) {
        raw::mq_close(self.mq, &self.name, self.owner == std::process::id());
    }
}

struct MqTx(raw::Mqd);

impl Tx for MqTx {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        raw::mq_send(self.0, msg)
    }
}

struct MqRx(raw::Mqd);

impl Rx for MqRx {
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if buf.len() < POSIX_MSGSIZE {
            buf.resize(POSIX_MSGSIZE, 0);
        }
        raw::mq_receive(self.0, buf)
    }
}

/// Offsets in the rings' shared memory: the receiver's index, the
/// sender's index (each on its own cache lines), then the data.
const HEAD: usize = 0;
const TAIL: usize = 128;
const DATA: usize = 256;

/// A ring of fixed-size slots in shared memory: the sender copies into
/// slot `tail % slots` and publishes `tail + 1`; the receiver copies out
/// and publishes `head + 1`; each busy-waits on the other's index.
struct SlotRing {
    region: Rc<raw::Region>,
    size: usize,
    slots: u64,
    /// This side's own index and its last view of the other's.
    mine: u64,
    theirs: u64,
}

impl SlotRing {
    fn link(size: usize) -> io::Result<Link> {
        let slots = ring_slots(size);
        let region = Rc::new(raw::Region::new(DATA + slots * size)?);
        let side = |region| SlotRing { region, size, slots: slots as u64, mine: 0, theirs: 0 };
        let (tx, rx) = (side(Rc::clone(&region)), side(Rc::clone(&region)));
        Ok(Link { tx: Box::new(tx), rx: Box::new(rx), _keep: Box::new(region) })
    }

    fn slot(&self, index: u64) -> usize {
        DATA + (index % self.slots) as usize * self.size
    }
}

impl Tx for SlotRing {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        if msg.len() != self.size {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        while self.mine - self.theirs == self.slots {
            self.theirs = self.region.word(HEAD).load(Ordering::Acquire);
            std::hint::spin_loop();
        }
        self.region.write(self.slot(self.mine), msg);
        self.mine += 1;
        self.region.word(TAIL).store(self.mine, Ordering::Release);
        Ok(())
    }
}

impl Rx for SlotRing {
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let ring = self;
        while ring.mine == ring.theirs {
            ring.theirs = ring.region.word(TAIL).load(Ordering::Acquire);
            std::hint::spin_loop();
        }
        if buf.len() < ring.size {
            buf.resize(ring.size, 0);
        }
        ring.region.read(ring.slot(ring.mine), &mut buf[..ring.size]);
        ring.mine += 1;
        ring.region.word(HEAD).store(ring.mine, Ordering::Release);
        Ok(ring.size)
    }
}

/// A ring of variable-length records in 1 MiB of shared memory (as
/// `Mechanism::ShmByteChannel`'s): each record is an 8-byte length and the
/// bytes, padded to 8; a record that would run past the end starts again
/// at the front after a skip mark. Indices count bytes.
struct ByteRing {
    region: Rc<raw::Region>,
    mine: u64,
    theirs: u64,
}

const BYTE_RING: u64 = 1 << 20;
const SKIP: u64 = u64::MAX;

impl ByteRing {
    fn link() -> io::Result<Link> {
        let region = Rc::new(raw::Region::new(DATA + BYTE_RING as usize)?);
        let side = |region| ByteRing { region, mine: 0, theirs: 0 };
        let (tx, rx) = (side(Rc::clone(&region)), side(Rc::clone(&region)));
        Ok(Link { tx: Box::new(tx), rx: Box::new(rx), _keep: Box::new(region) })
    }
}

impl Tx for ByteRing {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let need = 8 + (msg.len() as u64).next_multiple_of(8);
        if need > BYTE_RING / 2 {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let off = self.mine % BYTE_RING;
        let skip = if BYTE_RING - off < need { BYTE_RING - off } else { 0 };
        while self.mine + skip + need - self.theirs > BYTE_RING {
            self.theirs = self.region.word(HEAD).load(Ordering::Acquire);
            std::hint::spin_loop();
        }
        if skip > 0 {
            self.region.word(DATA + off as usize).store(SKIP, Ordering::Relaxed);
            self.mine += skip;
        }
        let at = DATA + (self.mine % BYTE_RING) as usize;
        self.region.word(at).store(msg.len() as u64, Ordering::Relaxed);
        self.region.write(at + 8, msg);
        self.mine += need;
        self.region.word(TAIL).store(self.mine, Ordering::Release);
        Ok(())
    }
}

impl Rx for ByteRing {
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let ring = self;
        loop {
            while ring.mine == ring.theirs {
                ring.theirs = ring.region.word(TAIL).load(Ordering::Acquire);
                std::hint::spin_loop();
            }
            let at = DATA + (ring.mine % BYTE_RING) as usize;
            let len = ring.region.word(at).load(Ordering::Relaxed);
            if len == SKIP {
                ring.mine += BYTE_RING - ring.mine % BYTE_RING;
                continue;
            }
            let n =
                usize::try_from(len).ok().filter(|&n| n as u64 <= BYTE_RING / 2).ok_or(io::ErrorKind::InvalidData)?;
            if buf.len() < n {
                buf.resize(n, 0);
            }
            ring.region.read(at + 8, &mut buf[..n]);
            ring.mine += 8 + (n as u64).next_multiple_of(8);
            ring.region.word(HEAD).store(ring.mine, Ordering::Release);
            return Ok(n);
        }
    }
}
