//! A publisher: binds a name, waits for its subscribers, then publishes
//! numbered ticks to all of them (each tick waits for the slowest, the
//! `Block` policy).
//!
//! ```text
//! cargo run -p ipc-kit --example pubsub_publisher SOCKET TICKS SUBSCRIBERS
//! cargo run -p ipc-kit --example pubsub_subscriber SOCKET    # in other shells
//! ```

use std::time::{Duration, Instant};

use ipc_kit::service::{PubSubOptions, Publisher};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// What travels: a tick's number and a value computed from it.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Tick {
    seq: u64,
    square: u64,
}

fn main() -> Res {
    let args: Vec<String> = std::env::args().collect();
    let [_, name, ticks, subscribers] = &args[..] else {
        return Err("usage: pubsub_publisher SOCKET TICKS SUBSCRIBERS".into());
    };
    let (ticks, subscribers): (u64, usize) = (ticks.parse()?, subscribers.parse()?);
    let mut publisher = Publisher::bind(&name.parse()?, PubSubOptions::default())?;
    let start = Instant::now();
    while publisher.subscribers() < subscribers {
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("{} of {subscribers} subscribers came", publisher.subscribers()).into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for seq in 0..ticks {
        publisher.publish_pod(&Tick { seq, square: seq.wrapping_mul(seq) })?;
    }
    println!("published {ticks} ticks to {} subscribers", publisher.subscribers());
    // Dropped: subscribers read what is left, then see the end.
    Ok(())
}
