//! A client of `service_server`: connects to the service by its name,
//! sends each word as a request, and prints each reply.
//!
//! ```text
//! cargo run -p ipc-kit --example service_client SOCKET WORD...
//! ```
//!
//! It checks that the service runs as the user this client runs as
//! before it sends anything.

use ipc_kit::service::{Requester, connect_timeout};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res {
    let args: Vec<String> = std::env::args().collect();
    let Some(name) = args.get(1) else {
        return Err("usage: service_client SOCKET WORD...".into());
    };
    let conn = connect_timeout(&name.parse()?, std::time::Duration::from_secs(10))?;
    let server = conn.peer_credentials();
    if server.uid != own_uid() {
        return Err(format!("the service at {name} runs as uid {}, not as this user", server.uid).into());
    }
    let mut service = Requester::new(conn);
    let mut reply = Vec::new();
    for word in &args[2..] {
        service.call(word.as_bytes(), &mut reply)?;
        println!("{}", String::from_utf8_lossy(&reply));
    }
    Ok(())
}

/// This process's effective user id: the owner of its /proc entry.
fn own_uid() -> u32 {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(u32::MAX)
}
