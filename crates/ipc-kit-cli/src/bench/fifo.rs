//! Named pipes: ipc-fifo's ends against plain open/read/write loops on a
//! FIFO made with mkfifo.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ipc_kit::fifo::Fifo;

use super::{Impl, Size, Unit, Workload, gbps, ns_per_op, two_processes};
use crate::sys;

pub(crate) const WORKLOADS: &[Workload] = &[
    Workload { name: "FIFO stream, 64 KiB writes", unit: Unit::GigabytesPerSecond, run: stream },
    Workload { name: "FIFO round trip, 64 B", unit: Unit::NanosPerOp, run: round_trip },
];

const CHUNK: usize = 64 << 10;

/// A directory for the run's FIFOs, removed with them.
struct Dir(PathBuf);

impl Dir {
    fn new() -> io::Result<Dir> {
        let d = std::env::temp_dir().join(format!("ipc-kit-bench-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&d)?;
        Ok(Dir(d))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stream(imp: Impl, size: Size) -> io::Result<f64> {
    let dir = Dir::new()?;
    let path = dir.path("stream");
    let total = size.bytes;
    let start = match imp {
        Impl::IpcKit => {
            let fifo = Fifo::create(&path, 0o600).map_err(io::Error::from)?;
            two_processes(
                || {
                    let mut r = fifo.open_reader().map_err(io::Error::from)?;
                    let mut buf = vec![0u8; CHUNK];
                    while r.read(&mut buf)? > 0 {}
                    Ok(())
                },
                || {
                    let mut w = fifo.open_writer().map_err(io::Error::from)?;
                    let data = vec![0x33u8; CHUNK];
                    let start = Instant::now();
                    send_all(total, |n| w.write_all(&data[..n]))?;
                    Ok(start)
                },
            )?
        }
        Impl::Raw => {
            sys::raw_mkfifo(&path)?;
            two_processes(
                || {
                    let r = sys::raw_open(&path, libc::O_RDONLY)?;
                    let mut buf = vec![0u8; CHUNK];
                    sys::raw_read_loop(r.as_fd(), &mut buf).map(drop)
                },
                || {
                    let w = sys::raw_open(&path, libc::O_WRONLY)?;
                    let data = vec![0x33u8; CHUNK];
                    let start = Instant::now();
                    sys::raw_write_loop(w.as_fd(), &data, total)?;
                    Ok(start)
                },
            )?
        }
    };
    Ok(gbps(total, start.elapsed()))
}

fn send_all(total: u64, mut write: impl FnMut(usize) -> io::Result<()>) -> io::Result<()> {
    let mut left = total;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(CHUNK);
        write(n)?;
        left -= n as u64;
    }
    Ok(())
}

fn round_trip(imp: Impl, size: Size) -> io::Result<f64> {
    let dir = Dir::new()?;
    let (ping, pong) = (dir.path("ping"), dir.path("pong"));
    let ops = (size.ops / 4).max(100);
    match imp {
        Impl::IpcKit => {
            let (a, b) = (
                Fifo::create(&ping, 0o600).map_err(io::Error::from)?,
                Fifo::create(&pong, 0o600).map_err(io::Error::from)?,
            );
            two_processes(
                || {
                    let mut r = a.open_reader().map_err(io::Error::from)?;
                    let mut w = b.open_writer().map_err(io::Error::from)?;
                    let mut m = [0u8; 64];
                    for _ in 0..ops {
                        r.read_exact(&mut m)?;
                        w.write_all(&m)?;
                    }
                    Ok(())
                },
                || {
                    let mut w = a.open_writer().map_err(io::Error::from)?;
                    let mut r = b.open_reader().map_err(io::Error::from)?;
                    let mut m = [7u8; 64];
                    let start = Instant::now();
                    for _ in 0..ops {
                        w.write_all(&m)?;
                        r.read_exact(&mut m)?;
                    }
                    Ok(ns_per_op(ops, start.elapsed()))
                },
            )
        }
        Impl::Raw => {
            sys::raw_mkfifo(&ping)?;
            sys::raw_mkfifo(&pong)?;
            let echo = |p: &Path, q: &Path| -> io::Result<()> {
                let r = sys::raw_open(p, libc::O_RDONLY)?;
                let w = sys::raw_open(q, libc::O_WRONLY)?;
                let mut m = [0u8; 64];
                for _ in 0..ops {
                    sys::raw_read_exact(r.as_fd(), &mut m)?;
                    sys::raw_write_loop(w.as_fd(), &m, 64)?;
                }
                Ok(())
            };
            two_processes(
                || echo(&ping, &pong),
                || {
                    let w = sys::raw_open(&ping, libc::O_WRONLY)?;
                    let r = sys::raw_open(&pong, libc::O_RDONLY)?;
                    let mut m = [7u8; 64];
                    let start = Instant::now();
                    for _ in 0..ops {
                        sys::raw_write_loop(w.as_fd(), &m, 64)?;
                        sys::raw_read_exact(r.as_fd(), &mut m)?;
                    }
                    Ok(ns_per_op(ops, start.elapsed()))
                },
            )
        }
    }
}
