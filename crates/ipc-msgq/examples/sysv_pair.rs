//! Two unrelated processes meeting at a System V message queue: they
//! agree on a path, and `ftok` turns it into the same key in both.
//!
//! ```text
//! cargo run -p ipc-msgq --example sysv_pair
//! ```
//!
//! The program creates the queue and starts a copy of itself (`worker
//! PATH`), which finds the queue from the path alone, answers each
//! request (type 1) with a reply (type 2), and stops at type 3.

use std::process::Command;

use ipc_msgq::{Key, Selector, SysvQueue};

const REQUEST: i64 = 1;
const REPLY: i64 = 2;
const STOP: i64 = 3;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") {
        return worker(&args[2]);
    }
    let path = std::env::temp_dir().join(format!("ipc-msgq-example-{}", std::process::id()));
    std::fs::write(&path, b"")?;
    // The creator removes the queue when `queue` is dropped.
    let queue = SysvQueue::create(Key::from_path(&path, b'x')?, 0o600)?;
    let mut child = Command::new(std::env::current_exe()?).arg("worker").arg(&path).spawn()?;
    let mut buf = [0u8; 64];
    for n in 1..=3u32 {
        queue.send(REQUEST, format!("request {n}").as_bytes())?;
        let (_, len) = queue.recv(Selector::Exactly(REPLY), &mut buf)?;
        println!("parent: got {:?}", String::from_utf8_lossy(&buf[..len]));
    }
    queue.send(STOP, b"")?;
    child.wait()?;
    std::fs::remove_file(&path)?;
    Ok(())
}

fn worker(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let queue = SysvQueue::open(Key::from_path(path, b'x')?)?;
    let mut buf = [0u8; 64];
    loop {
        // Requests and the stop message, never our own replies.
        match queue.recv(Selector::Except(REPLY), &mut buf)? {
            (STOP, _) => return Ok(()),
            (_, len) => {
                let reply = format!("reply to {}", String::from_utf8_lossy(&buf[..len]));
                queue.send(REPLY, reply.as_bytes())?;
            }
        }
    }
}
