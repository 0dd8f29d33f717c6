//! A request/response server on a named pipe: it upper-cases what clients
//! send, until a client sends "quit".
//!
//! ```text
//! cargo run -p ipc-fifo --example fifo_server -- /tmp/upper.fifo &
//! cargo run -p ipc-fifo --example fifo_client -- /tmp/upper.fifo hello world quit
//! ```

use ipc_fifo::{Error, FifoServer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: fifo_server PATH")?;
    // Take over a FIFO that a crashed server may have left; a live
    // server's FIFO is left alone (Error::InUse), never hijacked.
    let mut server = FifoServer::create_replacing(&path, 0o600)?;
    println!("serving at {path}");
    loop {
        let request = match server.recv() {
            Ok(r) => r,
            Err(e @ Error::BadRequest { .. }) => {
                eprintln!("dropped: {e}");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let text = String::from_utf8_lossy(&request.payload).into_owned();
        match server.reply(&request, text.to_uppercase().as_bytes()) {
            // A client gone, or cut off for not reading its replies: the
            // others are served all the same.
            Ok(()) | Err(Error::ClientGone { .. } | Error::ClientStalled { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if text == "quit" {
            // Replies that did not fit in a client's FIFO wait in the
            // server: give them a moment to go out.
            let _ = server.flush_timeout(std::time::Duration::from_secs(1));
            return Ok(()); // the server's FIFO is removed as it goes
        }
    }
}
