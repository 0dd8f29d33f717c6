//! Message queues: ipc-msgq against plain libc loops doing the same work.

use std::io;
use std::time::Instant;

use ipc_kit::msgq::{Key, PosixQueue, QueueAttr, Selector, SysvQueue};

use super::{Impl, Size, Unit, Workload, ns_per_op, two_processes};
use crate::sys;

pub(crate) const WORKLOADS: &[Workload] = &[
    Workload {
        name: "System V queue round trip, 64 B",
        unit: Unit::NanosPerOp,
        run: |i, s| sysv(i, s, Work::RoundTrip),
    },
    Workload { name: "System V queue stream, 64 B", unit: Unit::NanosPerOp, run: |i, s| sysv(i, s, Work::Stream(64)) },
    Workload {
        name: "System V queue stream, 8 KiB",
        unit: Unit::NanosPerOp,
        run: |i, s| sysv(i, s, Work::Stream(8192)),
    },
    Workload { name: "POSIX queue round trip, 64 B", unit: Unit::NanosPerOp, run: |i, s| posix(i, s, Work::RoundTrip) },
    Workload { name: "POSIX queue stream, 64 B", unit: Unit::NanosPerOp, run: |i, s| posix(i, s, Work::Stream(64)) },
    Workload { name: "POSIX queue stream, 8 KiB", unit: Unit::NanosPerOp, run: |i, s| posix(i, s, Work::Stream(8192)) },
];

#[derive(Clone, Copy)]
enum Work {
    /// 64-byte ping and pong.
    RoundTrip,
    /// One way, messages of this many bytes.
    Stream(usize),
}

/// Round trips each sleep on both sides: a quarter as many as stream
/// messages, enough for about a second per run.
fn count(size: Size, work: Work) -> u64 {
    match work {
        Work::RoundTrip => (size.ops / 4).max(100),
        Work::Stream(_) => size.ops,
    }
}

/// The same loop over two send and receive functions (ours or raw): the
/// child answers or drains, this process times.
fn drive(
    ops: u64,
    work: Work,
    send: &(dyn Fn(i64, &[u8]) -> io::Result<()> + Sync),
    recv: &(dyn Fn(i64, &mut [u8]) -> io::Result<usize> + Sync),
) -> io::Result<f64> {
    let len = match work {
        Work::RoundTrip => 64,
        Work::Stream(n) => n,
    };
    two_processes(
        || {
            let mut buf = vec![0u8; len.max(8192)];
            for _ in 0..ops {
                let n = recv(1, &mut buf)?;
                if let Work::RoundTrip = work {
                    send(2, &buf[..n])?;
                }
            }
            Ok(())
        },
        || {
            let data = vec![0x42u8; len];
            let mut buf = vec![0u8; 8192];
            let start = Instant::now();
            for _ in 0..ops {
                send(1, &data)?;
                if let Work::RoundTrip = work {
                    recv(2, &mut buf)?;
                }
            }
            Ok(ns_per_op(ops, start.elapsed()))
        },
    )
}

fn sysv(imp: Impl, size: Size, work: Work) -> io::Result<f64> {
    let ops = count(size, work);
    match imp {
        Impl::IpcKit => {
            let q = SysvQueue::create(Key::private(), 0o600).map_err(io::Error::from)?;
            drive(ops, work, &|t, d| q.send(t, d).map_err(io::Error::from), &|t, b| {
                q.recv(Selector::Exactly(t), b).map(|(_, n)| n).map_err(io::Error::from)
            })
        }
        Impl::Raw => {
            let q = sys::RawSysvQueue::new()?;
            drive(ops, work, &|t, d| q.send(t, d), &|t, b| q.recv(t, b))
        }
    }
}

fn posix(imp: Impl, size: Size, work: Work) -> io::Result<f64> {
    let ops = count(size, work);
    let id = std::process::id();
    // Two queues: a POSIX queue has no types to keep ping and pong apart.
    let name = |s: &str| format!("/ipc-kit-bench-{id}-{s}");
    match imp {
        Impl::IpcKit => {
            let attr = QueueAttr { max_messages: 10, message_size: 8192 };
            let a = PosixQueue::create(&name("a"), attr, 0o600).map_err(io::Error::from)?;
            let b = PosixQueue::create(&name("b"), attr, 0o600).map_err(io::Error::from)?;
            let pick = |t: i64| if t == 1 { &a } else { &b };
            drive(ops, work, &|t, d| pick(t).send(d, 0).map_err(io::Error::from), &|t, buf| {
                pick(t).recv(buf).map(|(n, _)| n).map_err(io::Error::from)
            })
        }
        Impl::Raw => {
            let a = sys::PosixQueue::new(&name("a"), 8192)?;
            let b = sys::PosixQueue::new(&name("b"), 8192)?;
            let pick = |t: i64| if t == 1 { &a } else { &b };
            drive(ops, work, &|t, d| pick(t).send(d), &|t, buf| pick(t).recv(buf))
        }
    }
}
