//! A subscriber of `pubsub_publisher`: joins by the name (waiting for the
//! publisher to bind it), receives every tick in order until the
//! publisher is gone, and prints how many it got.
//!
//! ```text
//! cargo run -p ipc-kit --example pubsub_subscriber SOCKET
//! ```

use std::time::{Duration, Instant};

use ipc_kit::service::{Error, Subscriber};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
struct Tick {
    seq: u64,
    square: u64,
}

fn main() -> Res {
    let name = std::env::args().nth(1).ok_or("usage: pubsub_subscriber SOCKET")?.parse()?;
    let start = Instant::now();
    let mut sub = loop {
        match Subscriber::connect_timeout(&name, Duration::from_secs(5)) {
            Ok(sub) => break sub,
            Err(Error::Socket(_)) if start.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut next = None;
    let mut got = 0u64;
    loop {
        match sub.recv_pod::<Tick>() {
            Ok(tick) => {
                if tick.square != tick.seq.wrapping_mul(tick.seq) || next.is_some_and(|n| n != tick.seq) {
                    return Err(format!("tick {} out of order or damaged", tick.seq).into());
                }
                next = Some(tick.seq + 1);
                got += 1;
            }
            Err(Error::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    println!("received {got} ticks in order");
    Ok(())
}
