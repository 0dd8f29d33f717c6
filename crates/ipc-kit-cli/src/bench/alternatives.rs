//! The round trip of a 64-byte message between two processes through each
//! mechanism, for choosing between them: the shared-memory channel beside
//! a pipe, a Unix socket and the two kinds of message queue, in one run.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use ipc_kit::pipe::pipe;
use ipc_kit::shm::{WaitPolicy, channel};

use super::{median, ns_per_op, two_processes};
use crate::sys::{PosixQueue, RawSysvQueue};

type Msg = [u8; 64];

/// One mechanism's round trip: ns per round trip over `ops` of them.
type RoundTrip = fn(u64) -> io::Result<f64>;

/// Prints the median round trip of each mechanism over `reps` runs of
/// `ops` round trips each.
pub(crate) fn run(ops: u64, reps: usize) -> Result<(), String> {
    let mechanisms: [(&str, RoundTrip); 6] = [
        ("shm channel (Adaptive)", |ops| shm(ops, WaitPolicy::Adaptive)),
        ("shm channel (Block)", |ops| shm(ops, WaitPolicy::Block)),
        ("pipe (ipc-pipe)", pipes),
        ("Unix stream socket (std)", unix_socket),
        ("System V message queue (libc)", sysv),
        ("POSIX message queue (libc)", posix),
    ];
    println!("\nround trip of a 64-byte message between two processes, {ops} per run, median of {reps} runs");
    for (name, f) in mechanisms {
        let mut figures = Vec::with_capacity(reps);
        for _ in 0..reps {
            figures.push(f(ops).map_err(|e| format!("{name}: {e}"))?);
        }
        println!("  {name:<32} {:>10.0} ns", median(figures.into_iter()));
    }
    Ok(())
}

fn shm(ops: u64, policy: WaitPolicy) -> io::Result<f64> {
    let ping = channel::<Msg>(8).map_err(io::Error::from)?;
    let pong = channel::<Msg>(8).map_err(io::Error::from)?;
    two_processes(
        || {
            let (mut rx, mut tx) = (ping.receiver()?, pong.sender()?);
            rx.set_wait_policy(policy);
            for _ in 0..ops {
                tx.send(rx.recv()?)?;
            }
            Ok(())
        },
        || {
            let (mut tx, mut rx) = (ping.sender()?, pong.receiver()?);
            rx.set_wait_policy(policy);
            let start = Instant::now();
            for _ in 0..ops {
                tx.send([7; 64])?;
                rx.recv()?;
            }
            Ok(ns_per_op(ops, start.elapsed()))
        },
    )
}

/// Echoes `ops` messages through a pair of byte streams.
fn echo<R: Read, W: Write>(ops: u64, r: &mut R, w: &mut W) -> io::Result<()> {
    let mut m = [0u8; 64];
    for _ in 0..ops {
        r.read_exact(&mut m)?;
        w.write_all(&m)?;
    }
    Ok(())
}

fn ping<R: Read, W: Write>(ops: u64, r: &mut R, w: &mut W) -> io::Result<f64> {
    let mut m = [7u8; 64];
    let start = Instant::now();
    for _ in 0..ops {
        w.write_all(&m)?;
        r.read_exact(&mut m)?;
    }
    Ok(ns_per_op(ops, start.elapsed()))
}

fn pipes(ops: u64) -> io::Result<f64> {
    let (mut r1, mut w1) = pipe()?;
    let (mut r2, mut w2) = pipe()?;
    two_processes(|| echo(ops, &mut r1, &mut w2), || ping(ops, &mut r2, &mut w1))
}

fn unix_socket(ops: u64) -> io::Result<f64> {
    let (mut a, mut b) = UnixStream::pair()?;
    let mut b2 = b.try_clone()?;
    let mut a2 = a.try_clone()?;
    two_processes(|| echo(ops, &mut b, &mut b2), || ping(ops, &mut a, &mut a2))
}

fn sysv(ops: u64) -> io::Result<f64> {
    let q = RawSysvQueue::new()?;
    two_processes(
        || {
            let mut m = [0u8; 64];
            for _ in 0..ops {
                q.recv(1, &mut m)?;
                q.send(2, &m)?;
            }
            Ok(())
        },
        || {
            let mut m = [7u8; 64];
            let start = Instant::now();
            for _ in 0..ops {
                q.send(1, &m)?;
                q.recv(2, &mut m)?;
            }
            Ok(ns_per_op(ops, start.elapsed()))
        },
    )
}

fn posix(ops: u64) -> io::Result<f64> {
    let id = std::process::id();
    let a = PosixQueue::new(&format!("/ipc-kit-bench-{id}-a"), 64)?;
    let b = PosixQueue::new(&format!("/ipc-kit-bench-{id}-b"), 64)?;
    two_processes(
        || {
            let mut m = [0u8; 64];
            for _ in 0..ops {
                a.recv(&mut m)?;
                b.send(&m)?;
            }
            Ok(())
        },
        || {
            let mut m = [7u8; 64];
            let start = Instant::now();
            for _ in 0..ops {
                a.send(&m)?;
                b.recv(&mut m)?;
            }
            Ok(ns_per_op(ops, start.elapsed()))
        },
    )
}
