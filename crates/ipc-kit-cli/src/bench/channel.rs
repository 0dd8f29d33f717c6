//! The shared-memory channels' batched and bulk forms against hand-written
//! C-style equivalents in the same shared memory: a plain SPSC ring and a
//! ring of 64 KiB blocks.

use std::hint::spin_loop;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ipc_kit::shm::{Mapping, byte_channel, channel};

use super::method::{Impl, two_processes};
use super::workload::{Size, Unit, Workload, gbps, note, ns_per_op};

/// A 64-byte message.
type Msg = [u64; 8];

pub(crate) const WORKLOADS: &[Workload] = &[
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

fn stream(imp: Impl, size: Size) -> io::Result<f64> {
    let msgs = size.ops * 200;
    match imp {
        Impl::IpcKit => {
            let chan = channel::<Msg>(RING as usize).map_err(io::Error::from)?;
            let stats = two_processes(
                || {
                    let mut rx = chan.receiver()?;
                    let mut buf = [[0u64; 8]; BATCH];
                    let mut got = 0;
                    while got < msgs {
                        got += rx.recv_many(&mut buf)? as u64;
                    }
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
            note(format!(
                "shm channel stream: sender made {} futex wakes and {} sleeps for {msgs} messages ({:.5} per message)",
                tx.wakes,
                tx.sleeps,
                (tx.wakes + tx.sleeps) as f64 / msgs as f64
            ));
            Ok(ns)
        }
        Impl::Raw => raw_stream(msgs),
    }
}

/// A plain SPSC ring of 64-byte slots: head and tail on their own cache
/// lines, each side caching the other's index, spinning while full or
/// empty, publishing a batch with one store.
fn raw_stream(msgs: u64) -> io::Result<f64> {
    let map = Mapping::anonymous(256 + (RING as usize) * 64)?;
    let index = |off| map.shared::<AtomicU64>(off).map_err(io::Error::from);
    two_processes(
        || {
            let (head, tail) = (index(0)?, index(128)?);
            let (mut h, mut t) = (0u64, 0u64);
            let mut buf = [[0u64; 8]; BATCH];
            while h < msgs {
                while t == h {
                    t = tail.load(Ordering::Acquire);
                    spin_loop();
                }
                let n = (t - h).min(BATCH as u64);
                for (i, m) in buf[..n as usize].iter_mut().enumerate() {
                    let off = 256 + (((h + i as u64) % RING) * 64) as usize;
                    *m = map.read(off)?;
                }
                h += n;
                head.store(h, Ordering::Release);
            }
            Ok(())
        },
        || {
            let (head, tail) = (index(0)?, index(128)?);
            let (mut h, mut t) = (0u64, 0u64);
            let mut batch = [[0u64; 8]; BATCH];
            let start = Instant::now();
            while t < msgs {
                while t + BATCH as u64 - h > RING {
                    h = head.load(Ordering::Acquire);
                    spin_loop();
                }
                for (i, m) in batch.iter_mut().enumerate() {
                    m[0] = t + i as u64;
                    let off = 256 + (((t + i as u64) % RING) * 64) as usize;
                    map.write(off, m)?;
                }
                t += BATCH as u64;
                tail.store(t, Ordering::Release);
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
