//! A listener of `event_notifier`: connects by the name, waits for events
//! until the notifier is gone, and prints how often each id fired.
//!
//! ```text
//! cargo run -p ipc-kit --example event_listener SOCKET
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ipc_kit::service::{Error, Listener};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res {
    let name = std::env::args().nth(1).ok_or("usage: event_listener SOCKET")?.parse()?;
    let start = Instant::now();
    let mut listener = loop {
        match Listener::connect_timeout(&name, Duration::from_secs(5)) {
            Ok(l) => break l,
            Err(Error::Socket(_)) if start.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut counts = BTreeMap::new();
    loop {
        match listener.wait() {
            Ok(fired) => {
                for (id, times) in fired.iter() {
                    *counts.entry(id).or_insert(0) += times;
                }
            }
            Err(Error::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let line: Vec<String> = counts.iter().map(|(id, n)| format!("{id}x{n}")).collect();
    println!("fired {}", line.join(" "));
    Ok(())
}
