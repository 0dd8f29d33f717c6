//! One-way links for the comparison: a mechanism's sending and receiving
//! side, made before `fork`, built with ipc-kit or with plain libc calls
//! (`crate::sys::raw`, and the rings of `crate::sys::ring`). After the fork
//! each process keeps one side.
//!
//! Links of the shared-memory channels, and their raw rings, are handed to
//! the run as their own types, so that neither side of a comparison pays
//! for a call through a trait object per message; the other mechanisms,
//! whose every message is a system call, go through `Box<dyn Tx>`.

use std::any::Any;
use std::io;
use std::rc::Rc;

use ipc_kit::shm::{ByteChannel, ByteReceiver, ByteSender, Channel, Receiver, Sender};
use ipc_kit::{Mechanism, MessageReceiver, MessageSender};

use super::link::{DynLink, Link, POSIX_MSGSIZE, Runner, Rx, Tx};
use super::mech::Mech;
use super::method::Impl;
use crate::sys::{raw, ring};

/// `$body` with the const `$n` standing for `$size`, one of the sizes a
/// typed channel carries (see [`fits`]).
macro_rules! sized {
    ($size:expr, $n:ident => $body:expr) => {
        sized!(@ $size, $n, $body, 8 16 32 64 128 256 512 1024 2048 4096 8192 16384 32768 65536 131072 262144 524288 1048576)
    };
    (@ $size:expr, $n:ident, $body:expr, $($v:literal)*) => {
        match $size {
            $($v => {
                const $n: usize = $v;
                $body
            })*
            other => Err(io::Error::other(format!("no typed channel of {other}-byte messages"))),
        }
    };
}

/// Makes the links of `mech` built as `imp` for messages of `size` bytes,
/// a way back too when `two`, and hands them to `runner`.
pub(crate) fn with_links<W: Runner>(mech: Mech, imp: Impl, size: usize, two: bool, runner: W) -> io::Result<W::Out> {
    match (mech, imp) {
        (Mech::ShmChannel, Impl::IpcKit) => sized!(size, N => made(two, runner, typed_channel::<N>)),
        (Mech::ShmChannel, Impl::Raw) => sized!(size, N => made(two, runner, slot_ring::<N>)),
        (Mech::Kit(Mechanism::ShmByteChannel), Impl::IpcKit) => made(two, runner, byte_channel),
        (Mech::Kit(Mechanism::ShmByteChannel), Impl::Raw) => made(two, runner, byte_ring),
        (Mech::ShmLine(ways), Impl::Raw) => {
            let (out, back, mem) = ring::Line::pair(size, ways)?;
            let (out2, back2) = (out.again(), back.again());
            let keep = |mem: &Rc<raw::Region>| Box::new(Rc::clone(mem)) as Box<dyn Any>;
            runner.run(
                Link { tx: out, rx: out2, _keep: keep(&mem) },
                Some(Link { tx: back, rx: back2, _keep: keep(&mem) }),
            )
        }
        (Mech::Service, Impl::IpcKit) => super::service::with_connection(two, runner),
        // A service's reference: the plain byte channel, ipc-kit's own.
        (Mech::Service, Impl::Raw) => made(two, runner, byte_channel),
        (Mech::ShmLine(_), Impl::IpcKit) => Err(io::Error::other(format!("{} is a raw reference only", mech.name()))),
        (_, Impl::IpcKit) => made(two, runner, || ipc_kit(mech)),
        (_, Impl::Raw) => made(two, runner, || super::raw_links::raw(mech)),
    }
}

/// Hands `runner` one link from `make`, or two when `two`.
fn made<W: Runner, T: Tx + 'static, R: Rx + 'static>(
    two: bool,
    runner: W,
    make: impl Fn() -> io::Result<Link<T, R>>,
) -> io::Result<W::Out> {
    let first = make()?;
    let back = if two { Some(make()?) } else { None };
    runner.run(first, back)
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
        Mech::Kit(Mechanism::UnixSocket) => raw::SEQPACKET_MAX,
        Mech::ShmChannel if !size.is_power_of_two() || !(8..=1 << 20).contains(&size) => {
            return Err("shm-channel carries fixed-size types: sizes are powers of two from 8 B to 1 MiB".into());
        }
        Mech::ShmLine(_) if size < 8 => {
            return Err(format!("{} carries 8 to 64 bytes: a number and the rest", mech.name()));
        }
        Mech::ShmLine(_) => 8 + ring::LINE_PAYLOAD,
        // Half the connection's ring, less a record's header.
        Mech::Service => (1 << 19) - 8,
        _ => 1 << 20,
    };
    if size > max { Err(format!("{} carries at most {max} bytes", mech.name())) } else { Ok(()) }
}

/// A link of `mech` built with ipc-kit: `Mechanism::pair` through the
/// `MessageSender`/`MessageReceiver` traits.
fn ipc_kit(mech: Mech) -> io::Result<DynLink> {
    let Mech::Kit(m) = mech else {
        return Err(io::Error::other(format!("{} has no ipc-kit side", mech.name())));
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
pub(crate) struct Taken;

/// Never ready: there is nothing behind it.
impl ipc_kit::Pollable for Taken {
    fn source(&self, _: ipc_kit::Interest) -> io::Result<Option<ipc_kit::sync::Source<'_>>> {
        Ok(None)
    }
}

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

/// The side in `slot`, claimed with `claim` in the process that first
/// uses it (after the fork).
#[inline]
fn claimed<S>(slot: &mut Option<S>, claim: impl FnOnce() -> ipc_kit::shm::Result<S>) -> io::Result<&mut S> {
    if slot.is_none() {
        *slot = Some(claim().map_err(io::Error::from)?);
    }
    slot.as_mut().ok_or_else(|| io::Error::other("a side that was just claimed is missing"))
}

/// A `Channel<[u8; N]>` of [`ring_slots`] slots.
fn typed_channel<const N: usize>() -> io::Result<Link<ChanTx<N>, ChanRx<N>>> {
    let chan = Rc::new(Channel::<[u8; N]>::anonymous(ring_slots(N)).map_err(io::Error::from)?);
    let tx = ChanTx::<N> { chan: Rc::clone(&chan), side: None };
    let rx = ChanRx::<N> { chan: Rc::clone(&chan), side: None };
    Ok(Link { tx, rx, _keep: Box::new(chan) })
}

/// A typed channel's sender, claimed by the process that first sends.
struct ChanTx<const N: usize> {
    chan: Rc<Channel<[u8; N]>>,
    side: Option<Sender<[u8; N]>>,
}

impl<const N: usize> ChanTx<N> {
    #[inline]
    fn side(&mut self) -> io::Result<&mut Sender<[u8; N]>> {
        claimed(&mut self.side, || self.chan.sender())
    }
}

impl<const N: usize> Tx for ChanTx<N> {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let value: &[u8; N] = msg.try_into().map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.side()?.send_ref(value).map_err(io::Error::from)
    }

    fn send_batch(&mut self, msgs: &[u8], size: usize) -> io::Result<()> {
        let values: &[[u8; N]] = batch_of(msgs, size)?;
        self.side()?.send_many(values).map_err(io::Error::from)
    }
}

/// A typed channel's receiver, claimed by the process that first receives.
struct ChanRx<const N: usize> {
    chan: Rc<Channel<[u8; N]>>,
    side: Option<Receiver<[u8; N]>>,
}

impl<const N: usize> ChanRx<N> {
    #[inline]
    fn side(&mut self) -> io::Result<&mut Receiver<[u8; N]>> {
        claimed(&mut self.side, || self.chan.receiver())
    }
}

impl<const N: usize> Rx for ChanRx<N> {
    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if buf.len() < N {
            buf.resize(N, 0);
        }
        let out: &mut [u8; N] = (&mut buf[..N]).try_into().map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.side()?.recv_into(out).map_err(io::Error::from)?;
        Ok(N)
    }

    fn recv_batch(&mut self, buf: &mut [u8], size: usize) -> io::Result<usize> {
        let values: &mut [[u8; N]] = batch_of_mut(buf, size)?;
        self.side()?.recv_many(values).map_err(io::Error::from)
    }
}

/// `msgs` as whole messages of `N` bytes (`size`).
fn batch_of<const N: usize>(msgs: &[u8], size: usize) -> io::Result<&[[u8; N]]> {
    bytemuck::try_cast_slice(msgs).ok().filter(|_| size == N).ok_or(io::ErrorKind::InvalidInput.into())
}

/// The whole messages of `N` bytes (`size`) that fit in `buf`; at least one.
fn batch_of_mut<const N: usize>(buf: &mut [u8], size: usize) -> io::Result<&mut [[u8; N]]> {
    let whole = buf.len() / N * N;
    bytemuck::try_cast_slice_mut(&mut buf[..whole])
        .ok()
        .filter(|v: &&mut [[u8; N]]| size == N && !v.is_empty())
        .ok_or(io::ErrorKind::InvalidInput.into())
}

/// The strong raw reference of the typed channel: a ring of as many
/// `N`-byte slots (`sys::ring::SlotRing`).
fn slot_ring<const N: usize>() -> io::Result<Link<ring::SlotRing<N>, ring::SlotRing<N>>> {
    let (tx, rx, mem) = ring::SlotRing::<N>::pair(ring_slots(N))?;
    Ok(Link { tx, rx, _keep: Box::new(mem) })
}

impl<const N: usize> Tx for ring::SlotRing<N> {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let value: &[u8; N] = msg.try_into().map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        ring::SlotRing::send(self, value);
        Ok(())
    }

    fn send_batch(&mut self, msgs: &[u8], size: usize) -> io::Result<()> {
        let values: &[[u8; N]] = batch_of(msgs, size)?;
        self.send_many(values);
        Ok(())
    }
}

impl<const N: usize> Rx for ring::SlotRing<N> {
    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if buf.len() < N {
            buf.resize(N, 0);
        }
        let out: &mut [u8; N] = (&mut buf[..N]).try_into().map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        ring::SlotRing::recv(self, out);
        Ok(N)
    }

    fn recv_batch(&mut self, buf: &mut [u8], size: usize) -> io::Result<usize> {
        let values: &mut [[u8; N]] = batch_of_mut(buf, size)?;
        Ok(self.recv_many(values))
    }
}

/// The byte ring of both byte-channel links: 1 MiB, as
/// `Mechanism::ShmByteChannel`'s pair has.
const BYTE_RING: usize = 1 << 20;

/// A byte channel of [`BYTE_RING`] bytes, used through its own sides.
fn byte_channel() -> io::Result<Link<ByteTx, ByteRx>> {
    let chan = Rc::new(ByteChannel::anonymous(BYTE_RING).map_err(io::Error::from)?);
    let (tx, rx) = (ByteTx { chan: Rc::clone(&chan), side: None }, ByteRx { chan: Rc::clone(&chan), side: None });
    Ok(Link { tx, rx, _keep: Box::new(chan) })
}

/// A byte channel's sender, claimed by the process that first sends.
struct ByteTx {
    chan: Rc<ByteChannel>,
    side: Option<ByteSender>,
}

impl Tx for ByteTx {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let side = claimed(&mut self.side, || self.chan.sender())?;
        side.send(msg).map_err(io::Error::from)
    }
}

/// A byte channel's receiver, claimed by the process that first receives.
struct ByteRx {
    chan: Rc<ByteChannel>,
    side: Option<ByteReceiver>,
}

impl Rx for ByteRx {
    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let side = claimed(&mut self.side, || self.chan.receiver())?;
        side.recv(buf).map_err(io::Error::from)
    }
}

/// The strong raw reference of the byte channel (`sys::ring::ByteRing`).
fn byte_ring() -> io::Result<Link<ring::ByteRing, ring::ByteRing>> {
    let (tx, rx, mem) = ring::ByteRing::pair(BYTE_RING)?;
    Ok(Link { tx, rx, _keep: Box::new(mem) })
}

impl Tx for ring::ByteRing {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        ring::ByteRing::send(self, msg)
    }
}

impl Rx for ring::ByteRing {
    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        Ok(ring::ByteRing::recv(self, buf))
    }
}

impl Tx for ring::Line {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        ring::Line::send(self, msg)
    }
}

impl Rx for ring::Line {
    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        Ok(ring::Line::recv(self, buf))
    }
}
