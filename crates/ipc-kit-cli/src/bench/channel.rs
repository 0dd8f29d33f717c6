//! The shared-memory channels' per-message, batched and bulk forms against
//! hand-written C-style equivalents in shared memory: the SPSC ring of
//! `sys::ring` and a ring of 64 KiB blocks. The channel runs also count
//! the system calls both sides made.

use std::hint::spin_loop;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ipc_kit::shm::{ChannelStats, Mapping, byte_channel, channel};

use super::method::{Impl, two_processes};
use super::workload::{Size, Unit, Workload, gbps, note, ns_per_op};
use crate::sys::ring::SlotRing;

/// A 64-byte message.
type Msg = [u64; 8];

pub(crate) const WORKLOADS: &[Workload] = &[
    Workload {
        name: "shm channel stream, 64 B messages one by one (send_ref, recv_into); raw = SPSC ring in the bench",
        unit: Unit::NanosPerOp,
        run: one_by_one,
    },
    Workload {
        name: "shm channel stream, 64 B messages in batches of 64; raw = SPSC ring in the bench",
        unit: Unit::NanosPerOp,
        run: stream,
    },
    Workload {
        name: "shm byte channel stream, 64 KiB records, 4 MiB ring; raw = ring of 64 KiB blocks",
        unit: Unit::GigabytesPerSecond,
        run: bulk,
    },
];

const BATCH: usize = 64;
const RING: u64 = 4096;

/// Adds the note on the system calls of a channel run: both sides' futex
/// wakes and sleeps and forced barriers, per message.
fn syscalls(what: &str, msgs: u64, tx: ChannelStats, rx: ChannelStats) {
    let calls = |s: ChannelStats| s.wakes + s.sleeps + s.barriers;
    note(format!(
        "{what}: sender {} wakes, {} sleeps, {} barriers, {} slips; receiver {} wakes, {} sleeps, {} barriers, {} \
         slips; {msgs} messages ({:.5} system calls per message)",
        tx.wakes,
        tx.sleeps,
        tx.barriers,
        tx.slips,
        rx.wakes,
        rx.sleeps,
        rx.barriers,
        rx.slips,
        (calls(tx) + calls(rx)) as f64 / msgs as f64
    ));
}

/// Sends the receiving side's counts back to the sending process.
fn stats_word(s: ChannelStats) -> [u64; 4] {
    [s.wakes, s.sleeps, s.barriers, s.slips]
}

fn from_word(w: [u64; 4]) -> ChannelStats {
    ChannelStats { wakes: w[0], sleeps: w[1], barriers: w[2], slips: w[3] }
}

fn one_by_one(imp: Impl, size: Size) -> io::Result<f64> {
    let msgs = size.ops * 200;
    match imp {
        Impl::IpcKit => {
            let chan = channel::<Msg>(RING as usize).map_err(io::Error::from)?;
            let counts = Mapping::anonymous(64)?;
            let (ns, tx) = two_processes(
                || {
                    let mut rx = chan.receiver()?;
                    let mut m = [0u64; 8];
                    for i in 0..msgs {
                        rx.recv_into(&mut m)?;
                        if m[0] != i {
                            return Err(io::Error::other(format!("message {i} arrived as {}", m[0])));
                        }
                    }
                    counts.write(0, &stats_word(rx.stats()))?;
                    Ok(())
                },
                || {
                    let mut tx = chan.sender()?;
                    let mut m = [0u64; 8];
                    let start = Instant::now();
                    for i in 0..msgs {
                        m[0] = i;
                        tx.send_ref(&m)?;
                    }
                    Ok((start, tx.stats()))
                },
            )
            .map(|(start, tx)| (ns_per_op(msgs, start.elapsed()), tx))?;
            syscalls("shm channel stream, one by one", msgs, tx, from_word(counts.read(0)?));
            Ok(ns)
        }
        Impl::Raw => {
            let (mut tx, mut rx, _mem) = SlotRing::<64>::pair(RING as usize)?;
            let start = two_processes(
                || {
                    let mut m = [0u8; 64];
                    for i in 0..msgs {
                        rx.recv(&mut m);
                        if m[..8] != i.to_le_bytes() {
                            return Err(io::Error::other(format!("message {i} arrived wrong")));
                        }
                    }
                    Ok(())
                },
                || {
                    let mut m = [0u8; 64];
                    let start = Instant::now();
                    for i in 0..msgs {
                        m[..8].copy_from_slice(&i.to_le_bytes());
                        tx.send(&m);
                    }
                    Ok(start)
                },
            )?;
            // Until the receiver has taken the last message and exited.
            Ok(ns_per_op(msgs, start.elapsed()))
        }
    }
}

fn stream(imp: Impl, size: Size) -> io::Result<f64> {
    let msgs = size.ops * 200;
    match imp {
        Impl::IpcKit => {
            let chan = channel::<Msg>(RING as usize).map_err(io::Error::from)?;
            let counts = Mapping::anonymous(64)?;
            let stats = two_processes(
                || {
                    let mut rx = chan.receiver()?;
                    let mut buf = [[0u64; 8]; BATCH];
                    let mut got = 0;
                    while got < msgs {
                        got += rx.recv_many(&mut buf)? as u64;
                    }
                    counts.write(0, &stats_word(rx.stats()))?;
                    Ok(())
                },
                || {
                    let mut tx = chan.sender()?;
                    let mut batch = [[0u64; 8]; BATCH];
                    let start = Instant::now();
                    let mut sent = 0;
                    while sent < msgs {
                        for (i, m) in batch.iter_mut().enumerate() {
                            m[0] = sent + i as u64;
                        }
                        tx.send_many(&batch)?;
                        sent += BATCH as u64;
                    }
                    let elapsed = start.elapsed();
                    Ok((ns_per_op(msgs, elapsed), tx.stats()))
                },
            )?;
            let (ns, tx) = stats;
            syscalls("shm channel stream, batches of 64", msgs, tx, from_word(counts.read(0)?));
            Ok(ns)
        }
        Impl::Raw => raw_stream(msgs),
    }
}

/// The strong SPSC ring of `sys::ring`, 64-byte slots, in batches of 64
/// on both sides, each batch published with one store.
fn raw_stream(msgs: u64) -> io::Result<f64> {
    let (mut tx, mut rx, _mem) = SlotRing::<64>::pair(RING as usize)?;
    two_processes(
        || {
            let mut buf = [[0u8; 64]; BATCH];
            let mut got = 0;
            while got < msgs {
                got += rx.recv_many(&mut buf) as u64;
            }
            Ok(())
        },
        || {
            let mut batch = [[0u8; 64]; BATCH];
            let start = Instant::now();
            let mut sent = 0u64;
            while sent < msgs {
                for (i, m) in batch.iter_mut().enumerate() {
                    m[..8].copy_from_slice(&(sent + i as u64).to_le_bytes());
                }
                tx.send_many(&batch);
                sent += BATCH as u64;
            }
            Ok(ns_per_op(msgs, start.elapsed()))
        },
    )
}

const RECORD: usize = 64 << 10;
const BULK_RING: usize = 4 << 20;

fn bulk(imp: Impl, size: Size) -> io::Result<f64> {
    let records = (size.bytes / RECORD as u64).max(16);
    let bytes = records * RECORD as u64;
    match imp {
        Impl::IpcKit => {
            let chan = byte_channel(BULK_RING).map_err(io::Error::from)?;
            let start = two_processes(
                || {
                    let mut rx = chan.receiver()?;
                    let mut out = vec![0u8; RECORD];
                    for _ in 0..records {
                        rx.recv_with(|b| out[..b.len()].copy_from_slice(b))?;
                    }
                    std::hint::black_box(&out);
                    Ok(())
                },
                || {
                    let mut tx = chan.sender()?;
                    let data = vec![0x5Au8; RECORD];
                    let start = Instant::now();
                    for _ in 0..records {
                        tx.send(&data)?;
                    }
                    Ok(start)
                },
            )?;
            // Until the receiver has copied the last record out and exited.
            Ok(gbps(bytes, start.elapsed()))
        }
        Impl::Raw => {
            // The same 4 MiB of payload space, in 64 KiB blocks.
            let blocks = (BULK_RING / RECORD) as u64;
            let map = Mapping::anonymous(256 + BULK_RING)?;
            let index = |off| map.shared::<AtomicU64>(off).map_err(io::Error::from);
            let start = two_processes(
                || {
                    let (head, tail) = (index(0)?, index(128)?);
                    let mut out = vec![0u8; RECORD];
                    let (mut h, mut t) = (0u64, 0u64);
                    while h < records {
                        while t == h {
                            t = tail.load(Ordering::Acquire);
                            spin_loop();
                        }
                        map.read_bytes(256 + ((h % blocks) as usize) * RECORD, &mut out)?;
                        h += 1;
                        head.store(h, Ordering::Release);
                    }
                    std::hint::black_box(&out);
                    Ok(())
                },
                || {
                    let (head, tail) = (index(0)?, index(128)?);
                    let data = vec![0x5Au8; RECORD];
                    let (mut h, mut t) = (0u64, 0u64);
                    let start = Instant::now();
                    while t < records {
                        while t - h >= blocks {
                            h = head.load(Ordering::Acquire);
                            spin_loop();
                        }
                        map.write_bytes(256 + ((t % blocks) as usize) * RECORD, &data)?;
                        t += 1;
                        tail.store(t, Ordering::Release);
                    }
                    Ok(start)
                },
            )?;
            Ok(gbps(bytes, start.elapsed()))
        }
    }
}
