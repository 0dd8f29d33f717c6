//! The mechanisms under stress, and how each carries many producers and
//! consumers:
//!
//! - pipe and FIFO: with one consumer, frames (`FrameWriter`, each frame
//!   one `writev` of at most `PIPE_BUF` bytes, so producers never
//!   interleave); with several, 64-byte records written with
//!   `write_atomic` and read 64 bytes at a time, so every read takes one
//!   whole record. The end is end of file once every producer and the
//!   parent have closed their write ends.
//! - System V and POSIX queues: all processes share the queue; after the
//!   producers exit, the parent queues one end marker per consumer, behind
//!   every message.
//! - Unix seqpacket sockets: a pair, every producer sending on one end
//!   and every consumer receiving on the other (each send is one whole
//!   message, each receive takes one); the end is `Disconnected` once
//!   every producer and the parent have closed the sending end.
//! - shared-memory channels (single producer, single consumer): a mesh of
//!   N × M channels; producer p sends message s to consumer s mod M, and
//!   each consumer polls its N channels until every producer has closed.
//! - services: a service per consumer, bound by the parent; each producer
//!   connects to every one of them and sends message s to consumer s mod
//!   M; each consumer accepts its N clients and polls their connections
//!   until every one is `Disconnected`.
//! - publish/subscribe (`Block`): a publisher per producer, bound in the
//!   producer's own process; every consumer subscribes to all of them and
//!   must receive every message of each (N × M deliveries per run); a
//!   publisher starts once all M subscribers joined, and its end is each
//!   subscriber's `Disconnected` after the rest.

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use ipc_kit::Mechanism;
use ipc_kit::fifo::Fifo;
use ipc_kit::msgq::{PosixQueue, QueueAttr, Selector, SysvQueue};
use ipc_kit::pipe::{FrameReader, FrameWriter, PipeReader, PipeWriter};
use ipc_kit::service::{
    Connection, Error as ServiceError, PubSubOptions, Publisher, Service, ServiceOptions, SocketName, Subscriber,
    connect_timeout,
};
use ipc_kit::shm::{ByteChannel, ByteReceiver, Channel, Receiver};
use ipc_kit::socket::SeqpacketSocket;
use ipc_kit::sync::Key;
use ipc_kit_tests::record::{self, FIXED};
use ipc_kit_tests::{ScratchDir, close_inherited, unique_name};

use crate::tally::{DATA_TYPE, END_TYPE, Tally};

/// The longest a consumer waits for its next message before it reports
/// itself stuck.
const IDLE: Duration = Duration::from_secs(20);

/// A mechanism under stress: each of the umbrella's [`Mechanism`]s, and
/// the typed slot channel, which the umbrella's byte-message traits do
/// not carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mech {
    Kit(Mechanism),
    ShmChannel,
    Service,
    PubSub,
}

/// Every mechanism, in the umbrella's order, the slot channel before its
/// byte sibling.
pub(crate) static ALL: LazyLock<Vec<Mech>> = LazyLock::new(|| {
    let slots_first = |m: Mechanism| (m == Mechanism::ShmByteChannel).then_some(Mech::ShmChannel);
    let mut all: Vec<Mech> =
        Mechanism::ALL.iter().flat_map(|&m| slots_first(m).into_iter().chain([Mech::Kit(m)])).collect();
    all.push(Mech::Service);
    all.push(Mech::PubSub);
    all
});

impl Mech {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mech::Kit(m) => m.name(),
            Mech::ShmChannel => "shm-channel",
            Mech::Service => "service",
            Mech::PubSub => "pubsub",
        }
    }

    /// Whether every consumer receives every message (publish/subscribe),
    /// rather than each message going to one consumer.
    pub(crate) fn broadcasts(self) -> bool {
        self == Mech::PubSub
    }
}

impl clap::ValueEnum for Mech {
    fn value_variants<'a>() -> &'a [Self] {
        ALL.as_slice()
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// What the processes of one run share, made by the parent before it
/// forks them.
pub(crate) enum Setup {
    Pipe {
        reader: PipeReader,
        writer: Option<PipeWriter>,
    },
    Fifo {
        fifo: Fifo,
        writer: Option<PipeWriter>,
        _dir: ScratchDir,
    },
    Sysv(SysvQueue),
    Posix(PosixQueue),
    Slots(Vec<Channel<[u8; FIXED]>>),
    Bytes(Vec<ByteChannel>),
    Socket {
        receiving: SeqpacketSocket,
        sending: Option<SeqpacketSocket>,
    },
    /// A service per consumer (its own process takes it in hand).
    Service(Vec<(RefCell<Service>, SocketName)>),
    /// The names of the producers' publishers (each binds its own).
    PubSub(Vec<SocketName>),
}

impl Setup {
    pub(crate) fn new(mech: Mech, producers: usize, consumers: usize) -> Result<Setup, String> {
        let e = |what: &str, err: &dyn std::fmt::Display| format!("{what}: {err}");
        Ok(match mech {
            Mech::Kit(Mechanism::Pipe) => {
                let (reader, writer) = ipc_kit::pipe::pipe().map_err(|err| e("pipe", &err))?;
                Setup::Pipe { reader, writer: Some(writer) }
            }
            Mech::Kit(Mechanism::Fifo) => {
                let dir = ScratchDir::new();
                let fifo = Fifo::create(dir.path().join("stress"), 0o600).map_err(|err| e("mkfifo", &err))?;
                // The parent holds a write end until the producers are
                // done, so that consumers open at once and see end of file
                // only after everything was sent. A reader opened without
                // waiting lets the writer open without waiting.
                let probe = fifo.try_open_reader().map_err(|err| e("open FIFO reader", &err))?;
                let writer = fifo.open_writer().map_err(|err| e("open FIFO writer", &err))?;
                drop(probe);
                Setup::Fifo { fifo, writer: Some(writer), _dir: dir }
            }
            Mech::Kit(Mechanism::SysvQueue) => {
                Setup::Sysv(SysvQueue::create(Key::private(), 0o600).map_err(|err| e("msgget", &err))?)
            }
            Mech::Kit(Mechanism::PosixQueue) => {
                let name = format!("/{}", unique_name("ipc-kit-stress"));
                Setup::Posix(PosixQueue::create(&name, QueueAttr::default(), 0o600).map_err(|err| e("mq_open", &err))?)
            }
            Mech::ShmChannel => Setup::Slots(
                (0..producers * consumers)
                    .map(|_| Channel::anonymous(1024))
                    .collect::<Result<_, _>>()
                    .map_err(|err| e("channel", &err))?,
            ),
            Mech::Kit(Mechanism::ShmByteChannel) => Setup::Bytes(
                (0..producers * consumers)
                    .map(|_| ByteChannel::anonymous(64 << 10))
                    .collect::<Result<_, _>>()
                    .map_err(|err| e("byte channel", &err))?,
            ),
            Mech::Kit(Mechanism::UnixSocket) => {
                let (sending, receiving) = SeqpacketSocket::pair().map_err(|err| e("socketpair", &err))?;
                Setup::Socket { receiving, sending: Some(sending) }
            }
            Mech::Service => Setup::Service(
                (0..consumers)
                    .map(|_| {
                        let name: SocketName =
                            format!("@{}", unique_name("ipc-kit-stress")).parse().map_err(|e| format!("{e}"))?;
                        let options = ServiceOptions { max_clients: producers, ..Default::default() };
                        Service::bind(&name, options).map(|s| (RefCell::new(s), name)).map_err(|err| e("bind", &err))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Mech::PubSub => Setup::PubSub(
                (0..producers)
                    .map(|_| format!("@{}", unique_name("ipc-kit-stress-pubsub")).parse().map_err(|e| format!("{e}")))
                    .collect::<Result<_, _>>()?,
            ),
            Mech::Kit(other) => return Err(format!("{other}: not yet under stress here")),
        })
    }

    /// Producer `p` of `producers`: sends its `per` messages.
    pub(crate) fn produce(&self, p: usize, per: u64, consumers: usize) -> Result<(), String> {
        let fixed =
            matches!(self, Setup::Slots(_)) || consumers > 1 && matches!(self, Setup::Pipe { .. } | Setup::Fifo { .. });
        let mut msg = Vec::new();
        let mut next = |seq: u64| {
            record::encode(p as u32, seq, fixed, &mut msg);
            std::mem::take(&mut msg)
        };
        match self {
            Setup::Pipe { writer, .. } => {
                let w = writer.as_ref().ok_or("no writer")?;
                send_pipe(w, per, fixed, &mut next)
            }
            Setup::Fifo { fifo, .. } => {
                let w = fifo.open_writer_timeout(IDLE).map_err(|e| format!("open FIFO writer: {e}"))?;
                send_pipe(&w, per, fixed, &mut next)
            }
            Setup::Sysv(q) => {
                for seq in 0..per {
                    q.send(DATA_TYPE, &next(seq)).map_err(|e| format!("msgsnd: {e}"))?;
                }
                Ok(())
            }
            Setup::Posix(q) => {
                for seq in 0..per {
                    q.send(&next(seq), 0).map_err(|e| format!("mq_send: {e}"))?;
                }
                Ok(())
            }
            Setup::Slots(chans) => {
                let mut tx = claim((0..consumers).map(|c| &chans[p * consumers + c]), Channel::sender, "sender")?;
                for seq in 0..per {
                    let m = next(seq);
                    let value: &[u8; FIXED] = m.as_slice().try_into().map_err(|_| "record size")?;
                    tx[(seq % consumers as u64) as usize].send_ref(value).map_err(|e| format!("send: {e}"))?;
                }
                Ok(())
            }
            Setup::Socket { sending, .. } => {
                let tx = sending.as_ref().ok_or("no sending end")?;
                for seq in 0..per {
                    tx.send(&next(seq)).map_err(|e| format!("send: {e}"))?;
                }
                Ok(())
            }
            Setup::Service(services) => {
                let mut tx = services
                    .iter()
                    .map(|(_, name)| connect_timeout(name, IDLE).map_err(|e| format!("connect: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                for seq in 0..per {
                    tx[(seq % consumers as u64) as usize].send(&next(seq)).map_err(|e| format!("send: {e}"))?;
                }
                Ok(())
            }
            Setup::PubSub(names) => {
                let options = PubSubOptions { capacity: 256, max_message: 256, ..PubSubOptions::default() };
                let mut publisher = Publisher::bind(&names[p], options).map_err(|e| format!("bind: {e}"))?;
                let start = Instant::now();
                while publisher.subscribers() < consumers {
                    if start.elapsed() > IDLE {
                        return Err(format!("{} of {consumers} subscribers came", publisher.subscribers()));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                for seq in 0..per {
                    publisher.publish_timeout(&next(seq), IDLE).map_err(|e| format!("publish: {e}"))?;
                }
                Ok(())
            }
            Setup::Bytes(chans) => {
                let mut tx = claim((0..consumers).map(|c| &chans[p * consumers + c]), ByteChannel::sender, "sender")?;
                for seq in 0..per {
                    tx[(seq % consumers as u64) as usize].send(&next(seq)).map_err(|e| format!("send: {e}"))?;
                }
                Ok(())
            }
        }
    }

    /// Consumer `c`: receives until the end, into `tally`.
    pub(crate) fn consume(
        &self,
        c: usize,
        producers: usize,
        consumers: usize,
        tally: &mut Tally,
    ) -> Result<(), String> {
        let mut buf = Vec::new();
        match self {
            Setup::Pipe { reader, writer } => {
                // Our copy of the parent's write end would keep end of file
                // from ever coming.
                if let Some(w) = writer {
                    close_inherited(w.as_raw_fd());
                }
                recv_pipe(reader, consumers > 1, tally)
            }
            Setup::Fifo { fifo, writer, .. } => {
                if let Some(w) = writer {
                    close_inherited(w.as_raw_fd());
                }
                let r = fifo.open_reader_timeout(IDLE).map_err(|e| format!("open FIFO reader: {e}"))?;
                recv_pipe(&r, consumers > 1, tally)
            }
            Setup::Socket { receiving, sending } => {
                // Our copy of the sending end would keep the end from ever
                // coming.
                if let Some(s) = sending {
                    close_inherited(s.as_raw_fd());
                }
                loop {
                    match receiving.recv_vec_timeout(&mut buf, IDLE) {
                        Ok(_) => tally.take(&buf),
                        Err(ipc_kit::socket::Error::Disconnected) => return Ok(()),
                        Err(e) => return Err(format!("recv: {e}")),
                    }
                }
            }
            Setup::Sysv(q) => loop {
                let mtype = q.recv_vec_timeout(Selector::Any, &mut buf, IDLE).map_err(|e| format!("msgrcv: {e}"))?;
                if mtype == END_TYPE {
                    return Ok(());
                }
                tally.take(&buf);
            },
            Setup::Posix(q) => loop {
                q.recv_vec_timeout(&mut buf, IDLE).map_err(|e| format!("mq_receive: {e}"))?;
                if buf.is_empty() {
                    return Ok(());
                }
                tally.take(&buf);
            },
            Setup::Slots(chans) => {
                let chans = (0..producers).map(|p| &chans[p * consumers + c]);
                let mut rx: Vec<_> = claim(chans, Channel::receiver, "receiver")?.into_iter().map(Some).collect();
                poll_mesh(&mut rx, |r: &mut Receiver<[u8; FIXED]>, wait| {
                    let got = match wait {
                        None => r.try_recv(),
                        Some(t) => r.recv_timeout(t),
                    };
                    got.map(|v| tally.take(&v)).map_err(Polled::from)
                })
            }
            Setup::Service(services) => {
                // Our own service's clients; the others are other
                // consumers' (the copies here are never used).
                let mut service = services[c].0.borrow_mut();
                let mut rx = Vec::new();
                while rx.len() < producers {
                    rx.push(Some(service.accept_timeout(IDLE).map_err(|e| format!("accept: {e}"))?));
                }
                poll_mesh(&mut rx, |r: &mut Connection, wait| {
                    let got = match wait {
                        None => r.try_recv(&mut buf),
                        Some(t) => r.recv_timeout(&mut buf, t),
                    };
                    got.map(|_| tally.take(&buf)).map_err(Polled::from)
                })
            }
            Setup::PubSub(names) => {
                let start = Instant::now();
                let mut rx = Vec::new();
                for name in names {
                    // The producer binds it when it starts.
                    let sub = loop {
                        match Subscriber::connect_timeout(name, IDLE) {
                            Ok(s) => break s,
                            Err(_) if start.elapsed() < IDLE => std::thread::sleep(Duration::from_millis(1)),
                            Err(e) => return Err(format!("subscribe: {e}")),
                        }
                    };
                    rx.push(Some(sub));
                }
                poll_mesh(&mut rx, |r: &mut Subscriber, wait| {
                    let got = match wait {
                        None => r.try_recv(&mut buf),
                        Some(t) => r.recv_timeout(&mut buf, t),
                    };
                    got.map(|_| tally.take(&buf)).map_err(Polled::from)
                })
            }
            Setup::Bytes(chans) => {
                let chans = (0..producers).map(|p| &chans[p * consumers + c]);
                let mut rx: Vec<_> = claim(chans, ByteChannel::receiver, "receiver")?.into_iter().map(Some).collect();
                poll_mesh(&mut rx, |r: &mut ByteReceiver, wait| {
                    let got = match wait {
                        None => r.try_recv(&mut buf),
                        Some(t) => r.recv_timeout(&mut buf, t),
                    };
                    got.map(|_| tally.take(&buf)).map_err(Polled::from)
                })
            }
        }
    }

    /// After every producer has exited: tells the consumers that nothing
    /// more comes.
    pub(crate) fn finish(&mut self, consumers: usize) -> Result<(), String> {
        match self {
            Setup::Pipe { writer, .. } | Setup::Fifo { writer, .. } => {
                *writer = None;
                Ok(())
            }
            Setup::Socket { sending, .. } => {
                *sending = None;
                Ok(())
            }
            Setup::Sysv(q) => {
                (0..consumers).try_for_each(|_| q.send(END_TYPE, b"")).map_err(|e| format!("msgsnd end marker: {e}"))
            }
            Setup::Posix(q) => {
                (0..consumers).try_for_each(|_| q.send(b"", 0)).map_err(|e| format!("mq_send end marker: {e}"))
            }
            Setup::Slots(_) | Setup::Bytes(_) | Setup::Service(_) | Setup::PubSub(_) => Ok(()),
        }
    }
}

/// Claims one side (`what`) of each channel in `chans`.
fn claim<'a, C: 'a, S>(
    chans: impl Iterator<Item = &'a C>,
    side: impl Fn(&C) -> ipc_kit::shm::Result<S>,
    what: &str,
) -> Result<Vec<S>, String> {
    chans.map(side).collect::<Result<Vec<_>, _>>().map_err(|e| format!("claim {what}: {e}"))
}

fn send_pipe(w: &PipeWriter, per: u64, fixed: bool, next: &mut impl FnMut(u64) -> Vec<u8>) -> Result<(), String> {
    if fixed {
        for seq in 0..per {
            w.write_atomic(&next(seq)).map_err(|e| format!("write: {e}"))?;
        }
    } else {
        let mut frames = FrameWriter::new(w);
        for seq in 0..per {
            frames.send(&next(seq)).map_err(|e| format!("write frame: {e}"))?;
        }
    }
    Ok(())
}

fn recv_pipe(r: &PipeReader, fixed: bool, tally: &mut Tally) -> Result<(), String> {
    if fixed {
        let mut rec = [0u8; FIXED];
        loop {
            match r.read_timeout(&mut rec, IDLE).map_err(|e| format!("read: {e}"))? {
                0 => return Ok(()),
                // Anything but a whole record is a torn one.
                n => tally.take(&rec[..n]),
            }
        }
    }
    let mut frames = FrameReader::new(r);
    let mut buf = Vec::new();
    while frames.recv_timeout(&mut buf, IDLE).map_err(|e| format!("read frame: {e}"))?.is_some() {
        tally.take(&buf);
    }
    Ok(())
}

/// What polling one channel of the mesh gave besides a message.
enum Polled {
    Empty,
    Closed,
    Failed(String),
}

impl From<ServiceError> for Polled {
    fn from(e: ServiceError) -> Polled {
        match e {
            ServiceError::WouldBlock | ServiceError::Timeout => Polled::Empty,
            ServiceError::Disconnected => Polled::Closed,
            e => Polled::Failed(e.to_string()),
        }
    }
}

impl From<ipc_kit::shm::Error> for Polled {
    fn from(e: ipc_kit::shm::Error) -> Polled {
        match e {
            ipc_kit::shm::Error::Empty | ipc_kit::shm::Error::Timeout => Polled::Empty,
            ipc_kit::shm::Error::Disconnected => Polled::Closed,
            other => Polled::Failed(other.to_string()),
        }
    }
}

/// Receives from every channel in `rx` until each is closed: a pass of
/// non-blocking receives over all of them, and when a pass found nothing,
/// a short wait on one of them in turn.
fn poll_mesh<R>(
    rx: &mut [Option<R>],
    mut recv: impl FnMut(&mut R, Option<Duration>) -> Result<(), Polled>,
) -> Result<(), String> {
    let mut idle_since = Instant::now();
    let mut turn = 0;
    loop {
        let mut got = false;
        for slot in rx.iter_mut() {
            let Some(r) = slot else { continue };
            // Drain what is there, up to a bound, before moving on.
            for _ in 0..64 {
                match recv(r, None) {
                    Ok(()) => got = true,
                    Err(Polled::Empty) => break,
                    Err(Polled::Closed) => {
                        *slot = None;
                        break;
                    }
                    Err(Polled::Failed(e)) => return Err(e),
                }
            }
        }
        let open: Vec<usize> = (0..rx.len()).filter(|&i| rx[i].is_some()).collect();
        if open.is_empty() {
            return Ok(());
        }
        if got {
            idle_since = Instant::now();
            continue;
        }
        if idle_since.elapsed() > IDLE {
            return Err(format!("nothing received for {IDLE:?} with {} producer(s) still open", open.len()));
        }
        turn = (turn + 1) % open.len();
        let i = open[turn];
        if let Some(r) = &mut rx[i] {
            match recv(r, Some(Duration::from_millis(1))) {
                Ok(()) => idle_since = Instant::now(),
                Err(Polled::Empty) => {}
                Err(Polled::Closed) => rx[i] = None,
                Err(Polled::Failed(e)) => return Err(e),
            }
        }
    }
}
