//! A blackboard: binds a name, waits for its first readers, and keeps
//! the latest reading there, a new one every few milliseconds; readers
//! look whenever they like (and may come later).
//!
//! ```text
//! cargo run -p ipc-kit --example blackboard_writer SOCKET READINGS READERS
//! cargo run -p ipc-kit --example blackboard_reader SOCKET    # in other shells
//! ```

use std::time::{Duration, Instant};

use ipc_kit::service::{Blackboard, BlackboardOptions};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// The latest reading: its number, and a value with its check.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Reading {
    n: u64,
    celsius_milli: i64,
    check: u64,
}

fn main() -> Res {
    let args: Vec<String> = std::env::args().collect();
    let [_, name, readings, readers] = &args[..] else {
        return Err("usage: blackboard_writer SOCKET READINGS READERS".into());
    };
    let (readings, readers): (u64, usize) = (readings.parse()?, readers.parse()?);
    let mut board = Blackboard::bind(&name.parse()?, BlackboardOptions::default())?;
    let start = Instant::now();
    while board.readers() < readers && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    for n in 1..=readings {
        let celsius_milli = 20_000 + (n as i64 % 50) * 10;
        board.write_pod(&Reading { n, celsius_milli, check: n ^ celsius_milli as u64 })?;
        std::thread::sleep(Duration::from_millis(2));
    }
    // Keeps the last reading up a moment for late readers.
    std::thread::sleep(Duration::from_millis(200));
    println!("wrote {readings} readings for {} readers", board.readers());
    Ok(())
}
