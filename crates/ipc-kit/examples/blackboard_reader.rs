//! A reader of `blackboard_writer`: connects by the name and waits for
//! each newer reading (it may skip some: it wants the latest) until the
//! writer is gone, then prints the last one.
//!
//! ```text
//! cargo run -p ipc-kit --example blackboard_reader SOCKET
//! ```

use std::time::{Duration, Instant};

use ipc_kit::service::{BlackboardReader, Error};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Reading {
    n: u64,
    celsius_milli: i64,
    check: u64,
}

fn main() -> Res {
    let name = std::env::args().nth(1).ok_or("usage: blackboard_reader SOCKET")?.parse()?;
    let start = Instant::now();
    let mut reader = loop {
        match BlackboardReader::connect_timeout(&name, Duration::from_secs(5)) {
            Ok(r) => break r,
            Err(Error::Socket(_)) if start.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let (mut last, mut seen) = (0, 0u64);
    let mut buf = Vec::new();
    loop {
        match reader.wait_newer(&mut buf) {
            Ok(_) => {
                let r: Reading = bytemuck::pod_read_unaligned(&buf);
                if r.check != r.n ^ r.celsius_milli as u64 || r.n <= last {
                    return Err(format!("reading {} torn or old", r.n).into());
                }
                (last, seen) = (r.n, seen + 1);
            }
            Err(Error::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!("last reading {last} ({seen} seen)");
    Ok(())
}
