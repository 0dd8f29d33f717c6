//! A service that clients, separate programs, find by name: it answers
//! each request with the request in capitals.
//!
//! ```text
//! cargo run -p ipc-kit --example service_server SOCKET CLIENTS
//! cargo run -p ipc-kit --example service_client SOCKET hello world   # as often as you like
//! ```
//!
//! It binds SOCKET (a path, or `@name` for an abstract name), serves every
//! client at once through one `Poller`, and ends once CLIENTS clients have
//! come and gone, printing what it served. The socket file goes with it.

use std::collections::HashMap;

use ipc_kit::service::{Error, Responder, Service, ServiceOptions};
use ipc_kit::{Interest, Poller};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res {
    let args: Vec<String> = std::env::args().collect();
    let (Some(name), Some(clients)) = (args.get(1), args.get(2)) else {
        return Err("usage: service_server SOCKET CLIENTS".into());
    };
    let clients: usize = clients.parse()?;
    let mut service = Service::bind(&name.parse()?, ServiceOptions::default())?;
    println!("listening at {name}");
    let mut poller = Poller::new()?;
    poller.add(&service, Interest::Readable, 0)?;
    let mut live: HashMap<u64, Responder> = HashMap::new();
    let (mut came, mut gone, mut requests, mut next) = (0, 0, 0u64, 1u64);
    let mut buf = Vec::new();
    while gone < clients {
        for token in poller.wait()?.to_vec() {
            if token == 0 {
                // Every client that finished its handshake; the service
                // has refused or dropped any that did not.
                while came < clients {
                    match service.try_accept() {
                        Ok(conn) => {
                            let who = conn.peer_credentials();
                            println!("client {} (pid {}, uid {})", next, who.pid, who.uid);
                            let r = Responder::new(conn);
                            poller.add(&r, Interest::Readable, next)?;
                            live.insert(next, r);
                            (came, next) = (came + 1, next + 1);
                        }
                        Err(Error::WouldBlock) => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                continue;
            }
            let Some(r) = live.get_mut(&token) else { continue };
            loop {
                match r.try_recv_request(&mut buf) {
                    Ok(id) => {
                        r.reply(id, &buf.to_ascii_uppercase())?;
                        requests += 1;
                    }
                    Err(Error::WouldBlock) => break,
                    // The client closed its end, or died.
                    Err(Error::Disconnected) => {
                        poller.remove(token)?;
                        live.remove(&token);
                        gone += 1;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    println!("served {requests} requests from {clients} clients");
    Ok(())
}
