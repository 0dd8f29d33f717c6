//! The `service` rows: one connection of a service (ipc-service), the
//! client's requests one way and the service's replies the other, set
//! against the plain shared-memory byte channel (`shm-byte-channel`,
//! ipc-kit's own) as its reference; and the time a client takes to
//! connect, handshake included.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ipc_kit::service::{Receiver, Sender, Service, ServiceOptions, SocketName, connect};

use super::link::{Link, Runner, Rx, Tx};
use super::method;

/// The rings of the connection: as the byte channel it is set against.
const RING: usize = 1 << 20;

/// A fresh abstract name for a service of this process.
fn fresh_name() -> io::Result<SocketName> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("@ipc-kit-bench-service-{}-{n}", std::process::id()).parse().map_err(io::Error::from)
}

/// A service of one client: the connection's two ends, made here before
/// the run forks.
fn one_connection() -> io::Result<(ipc_kit::service::Connection, ipc_kit::service::Connection)> {
    let name = fresh_name()?;
    let options = ServiceOptions { request_capacity: RING, reply_capacity: RING, max_clients: 1, ..Default::default() };
    let mut service = Service::bind(&name, options)?;
    let client = std::thread::spawn(move || connect(&name));
    let server_end = service.accept_timeout(Duration::from_secs(10))?;
    let client_end = client.join().map_err(|_| io::Error::other("the connecting thread panicked"))??;
    Ok((client_end, server_end))
}

/// The links of one connection, handed to `runner`: the requests (the
/// client's sender, the service's receiver) and, for round trips, the
/// replies.
pub(crate) fn with_connection<W: Runner>(two: bool, runner: W) -> io::Result<W::Out> {
    let (client, server) = one_connection()?;
    let (client_tx, client_rx) = client.split();
    let (server_tx, server_rx) = server.split();
    let requests = Link { tx: SvcTx(client_tx), rx: SvcRx(server_rx), _keep: Box::new(()) };
    if two {
        runner.run(requests, Some(Link { tx: SvcTx(server_tx), rx: SvcRx(client_rx), _keep: Box::new(()) }))
    } else {
        runner.run(requests, None)
    }
}

struct SvcTx(Sender);

impl Tx for SvcTx {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.0.send(msg).map_err(io::Error::from)
    }
}

struct SvcRx(Receiver);

impl Rx for SvcRx {
    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        self.0.recv(buf).map_err(io::Error::from)
    }
}

/// How long `connect` takes, the service in another process: the
/// connection, the greeting, the service making the two memfd rings and
/// passing them, and the client mapping and claiming them. `count`
/// connections, one after the other.
pub(crate) fn connect_times(count: u32) -> io::Result<Histogram<u64>> {
    let name = fresh_name()?;
    let mut service = Service::bind(&name, ServiceOptions::default())?;
    method::two_processes(
        || {
            for _ in 0..count {
                drop(service.accept_timeout(Duration::from_secs(10))?);
            }
            Ok(())
        },
        || {
            let mut times = method::histogram();
            for _ in 0..count {
                let start = Instant::now();
                let conn = connect(&name)?;
                let took = start.elapsed().as_nanos() as u64;
                drop(conn);
                times.record(took.max(1)).map_err(io::Error::other)?;
            }
            Ok(times)
        },
    )
}
