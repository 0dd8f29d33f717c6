//! The raw sides of the kernel mechanisms' links: each driven with plain
//! libc calls (`crate::sys::raw`), as a C program does it, through the
//! same `Tx`/`Rx` traits as the ipc-kit sides.

use std::any::Any;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use ipc_kit::Mechanism;

use super::link::{DynLink, Link, POSIX_MSGSIZE, Rx, Tx};
use super::mech::Mech;
use crate::sys::raw;

/// A link of `mech` built with plain libc calls.
pub(crate) fn raw(mech: Mech) -> io::Result<DynLink> {
    match mech {
        Mech::Kit(Mechanism::Pipe) => {
            let (r, w) = raw::pipe()?;
            Ok(fd_link(r, w, Box::new(())))
        }
        Mech::Kit(Mechanism::UnixSocket) => {
            let (a, b) = raw::seqpacket_pair()?;
            Ok(Link { tx: Box::new(SeqTx(a)), rx: Box::new(SeqRx(b)), _keep: Box::new(()) })
        }
        Mech::Kit(Mechanism::Fifo) => {
            let (r, w) = fifo_ends()?;
            Ok(fd_link(r, w, Box::new(())))
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
        _ => Err(io::Error::other(format!("{} has no raw reference through a trait object", mech.name()))),
    }
}

fn next_id() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A seqpacket socket's sending end: one `send(2)` per message.
struct SeqTx(OwnedFd);

impl Tx for SeqTx {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        raw::send_message(self.0.as_fd(), msg)
    }
}

/// A seqpacket socket's receiving end: one `recv(2)` per message into a
/// buffer as large as the longest message.
struct SeqRx(OwnedFd);

impl Rx for SeqRx {
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        raw::recv_message(self.0.as_fd(), buf)
    }
}

fn fd_link(r: OwnedFd, w: OwnedFd, keep: Box<dyn Any>) -> DynLink {
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
/// Both ends of a FIFO made with plain libc calls, in a directory of its
/// own that is gone again when this returns (the ends stay open).
pub(crate) fn fifo_ends() -> io::Result<(OwnedFd, OwnedFd)> {
    let dir = OwnedDir::new()?;
    let path = dir.path.join("fifo");
    raw::mkfifo(&path)?;
    raw::open_fifo(&path)
}

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
