//! A notifier: binds a name, waits for its listeners, then notifies each
//! event id given on the command line (an id may come more than once).
//!
//! ```text
//! cargo run -p ipc-kit --example event_notifier SOCKET LISTENERS ID...
//! cargo run -p ipc-kit --example event_listener SOCKET    # in other shells
//! ```

use std::time::{Duration, Instant};

use ipc_kit::service::{EventOptions, Notifier};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res {
    let args: Vec<String> = std::env::args().collect();
    let (Some(name), Some(listeners)) = (args.get(1), args.get(2)) else {
        return Err("usage: event_notifier SOCKET LISTENERS ID...".into());
    };
    let listeners: usize = listeners.parse()?;
    let mut notifier = Notifier::bind(&name.parse()?, EventOptions { ids: 16, ..EventOptions::default() })?;
    let start = Instant::now();
    while notifier.listeners() < listeners {
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("{} of {listeners} listeners came", notifier.listeners()).into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for id in &args[3..] {
        notifier.notify(id.parse()?)?;
    }
    println!("notified {} events to {} listeners", args.len() - 3, notifier.listeners());
    Ok(())
}
