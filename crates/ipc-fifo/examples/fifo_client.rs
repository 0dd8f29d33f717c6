//! A client of `fifo_server`: sends each argument as a request and prints
//! the replies.
//!
//! ```text
//! cargo run -p ipc-fifo --example fifo_client -- /tmp/upper.fifo hello world quit
//! ```

use std::time::Duration;

use ipc_fifo::FifoClient;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: fifo_client PATH WORD...")?;
    let mut client = FifoClient::connect(&path)?;
    for word in args {
        let reply = client.request_timeout(word.as_bytes(), Duration::from_secs(5))?;
        println!("{word} -> {}", String::from_utf8_lossy(&reply));
    }
    Ok(())
}
