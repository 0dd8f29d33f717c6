//! Unrelated processes meeting in POSIX shared memory by name: a counter
//! under a process-shared mutex, and an event that says "done".
//!
//! ```text
//! cargo run -p ipc-shm --example shared_counter
//! ```
//!
//! The program starts two copies of itself (with the arguments `worker
//! NAME`), which open the shared memory by its name, add to the counter
//! 100,000 times each, and set the event when the last one is through.

use std::process::Command;
use std::time::Duration;

use ipc_shm::PosixShm;
use ipc_sync::{Event, Mutex, Semaphore};

/// Where things live in the shared page.
const COUNTER: usize = 0; // Mutex<u64>
const FINISHED: usize = 64; // Semaphore: one unit per worker done
const DONE: usize = 128; // Event

const WORKERS: u32 = 2;
const ADDS: u64 = 100_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") {
        return worker(&args[2]);
    }
    let name = format!("/ipc-kit-example-{}", std::process::id());
    // The creator owns the name: it is unlinked when `shm` is dropped.
    let shm = PosixShm::create(&name, 4096, 0o600)?;
    let map = shm.map()?;
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| Command::new(std::env::current_exe()?).args(["worker", &name]).spawn())
        .collect::<Result<_, _>>()?;
    map.shared::<Event>(DONE)?.wait_timeout(Duration::from_secs(30))?;
    for mut w in workers {
        w.wait()?;
    }
    // A worker killed while holding the lock would show here as
    // Err(LockError::OwnerDied(guard)); they all finished, so none did.
    let total = *map.shared::<Mutex<u64>>(COUNTER)?.lock().map_err(|e| e.to_string())?;
    println!("{WORKERS} processes added {ADDS} each: the counter reads {total}");
    assert_eq!(total, u64::from(WORKERS) * ADDS);
    Ok(())
}

fn worker(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let shm = PosixShm::open(name)?;
    let map = shm.map()?;
    let counter = map.shared::<Mutex<u64>>(COUNTER)?;
    for _ in 0..ADDS {
        *counter.lock().map_err(|e| e.to_string())? += 1;
    }
    let finished = map.shared::<Semaphore>(FINISHED)?;
    finished.post()?;
    if finished.value() == WORKERS {
        map.shared::<Event>(DONE)?.set();
    }
    Ok(())
}
