//! Pipe throughput: ipc-pipe against plain read/write/vmsplice loops.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use ipc_kit::pipe::{PipeReader, PipeWriter, SigpipeGuard};

use super::method::Impl;
use super::workload::{Unit, Workload, gbps};
use crate::sys;

pub(crate) const PLAIN_64K: &str = "pipe, 64 KiB writes, 1 MiB pipe";
pub(crate) const VMSPLICE: &str = "pipe, vmsplice of 1 MiB, 1 MiB pipe";

pub(crate) const WORKLOADS: &[Workload] = &[
    Workload {
        name: "pipe, 4 KiB writes, 1 MiB pipe",
        unit: Unit::GigabytesPerSecond,
        run: |imp, size| stream(imp, Mode::Write, 4 << 10, size.bytes),
    },
    Workload {
        name: "pipe, 4 KiB writes, 1 MiB pipe, ipc-kit inside a SigpipeGuard",
        unit: Unit::GigabytesPerSecond,
        run: |imp, size| stream(imp, Mode::GuardedWrite, 4 << 10, size.bytes),
    },
    Workload {
        name: PLAIN_64K,
        unit: Unit::GigabytesPerSecond,
        run: |imp, size| stream(imp, Mode::Write, 64 << 10, size.bytes),
    },
    Workload {
        name: VMSPLICE,
        unit: Unit::GigabytesPerSecond,
        run: |imp, size| stream(imp, Mode::Vmsplice, 1 << 20, size.bytes),
    },
];

const PIPE_SIZE: usize = 1 << 20;

#[derive(Clone, Copy)]
enum Mode {
    Write,
    /// Writes with `SIGPIPE` held off once for the whole loop.
    GuardedWrite,
    Vmsplice,
}

/// Moves `total` bytes in chunks of `chunk` through a 1 MiB pipe from this
/// process to a forked reader on CPU 1; GB/s until the reader has read the
/// last byte and exited.
fn stream(imp: Impl, mode: Mode, chunk: usize, total: u64) -> io::Result<f64> {
    let (r, w): (OwnedFd, OwnedFd) = match imp {
        Impl::Raw => sys::raw_pipe(PIPE_SIZE)?,
        Impl::IpcKit => {
            let (r, w) = ipc_kit::pipe::pipe()?;
            w.set_capacity(PIPE_SIZE)?;
            (r.into(), w.into())
        }
    };
    let mut rbuf = vec![0u8; chunk.max(64 << 10)];
    let wbuf = vec![0xA5u8; chunk];
    let pid = match sys::fork()? {
        sys::Forked::Child => {
            drop(w);
            sys::pin_to_cpu(1);
            let got = match imp {
                Impl::Raw => sys::raw_read_loop(r.as_fd(), &mut rbuf),
                Impl::IpcKit => read_loop(PipeReader::from(r), &mut rbuf),
            };
            sys::exit_now(if matches!(got, Ok(n) if n == total) { 0 } else { 1 });
        }
        sys::Forked::Parent(pid) => pid,
    };
    drop(r);
    // The raw loops use only the fd of this wrapper.
    let w = PipeWriter::from(w);
    let start = Instant::now();
    let written = match (imp, mode) {
        (Impl::Raw, Mode::Write | Mode::GuardedWrite) => sys::raw_write_loop(w.as_fd(), &wbuf, total),
        (Impl::Raw, Mode::Vmsplice) => sys::raw_vmsplice_loop(w.as_fd(), &wbuf, total),
        (Impl::IpcKit, mode) => write_loop(&w, mode, &wbuf, total),
    };
    drop(w);
    let code = sys::wait(pid)?;
    let elapsed = start.elapsed();
    written?;
    if code != 0 {
        return Err(io::Error::other(format!("the reader process failed (exit {code})")));
    }
    Ok(gbps(total, elapsed))
}

fn write_loop(w: &PipeWriter, mode: Mode, buf: &[u8], total: u64) -> io::Result<()> {
    let _guard = matches!(mode, Mode::GuardedWrite).then(SigpipeGuard::new);
    let mut left = total;
    let mut w = w;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        match mode {
            Mode::Write | Mode::GuardedWrite => w.write_all(&buf[..n])?,
            Mode::Vmsplice => w.vmsplice_all(&buf[..n])?,
        }
        left -= n as u64;
    }
    Ok(())
}

fn read_loop(mut r: PipeReader, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0;
    loop {
        match r.read(buf)? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}
