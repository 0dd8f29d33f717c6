//! Services (ipc-service): a client killed at any step (before it
//! connects, in its handshake, while it sends requests), and a service
//! killed at any step (before it binds, before it accepts, while it
//! replies). The survivor sees every acknowledged message whole and in
//! order, then `Disconnected`, never a hang or a signal.

use std::time::{Duration, Instant};

use ipc_kit::service::{Error, Service, ServiceOptions, SocketName, connect_timeout};
use ipc_kit_tests::record::encode;
use ipc_kit_tests::{Rng, fork, unique_name};

use crate::harness::{
    BOUND, Campaign, Failed, Hung, InOrder, Outcome, Survived, bury, bury_and_check, kill_after, noticed,
};
use crate::pipe::{Size, message};

/// A fresh abstract name: nothing to leave behind.
fn fresh() -> SocketName {
    format!("@{}", unique_name("ipc-kit-faults-service")).parse().expect("an abstract name")
}

fn options() -> ServiceOptions {
    ServiceOptions { request_capacity: 1 << 20, reply_capacity: 1 << 20, ..Default::default() }
}

/// A client sends requests (acknowledging each after `send` returns) and
/// dies at any step; the service gets every acknowledged one whole and in
/// order, then `Disconnected`, and its count of clients goes back to 0.
pub(crate) fn client_killed(c: &mut Campaign, run: u32, delay: Duration, rng: &mut Rng) -> Outcome {
    let size = Size::pick(rng);
    let name = fresh();
    let mut service = match Service::bind(&name, options()) {
        Ok(s) => s,
        Err(e) => return Failed(format!("bind: {e}")),
    };
    let board = &c.board;
    let mut victim = fork(|| {
        let mut conn = connect_timeout(&name, BOUND).expect("connect");
        let mut msg = Vec::new();
        for seq in 0.. {
            message(run, seq, size, &mut msg);
            conn.send(&msg).expect("send a request");
            board.ack(seq + 1);
        }
    });
    let timer = kill_after(victim.pid(), delay);
    // The client may die before it connects or in its handshake: then no
    // connection comes, and the service forgets what it began.
    let give_up = Instant::now() + delay + BOUND;
    let mut dead = false;
    let conn = loop {
        match service.accept_timeout(Duration::from_millis(20)) {
            Ok(conn) => break Some(conn),
            // Once the client is dead, one more look takes a handshake it
            // finished just before.
            Err(Error::Timeout) if dead => break None,
            Err(Error::Timeout) if Instant::now() < give_up => dead = victim.wait_timeout(Duration::ZERO).is_some(),
            Err(Error::Timeout) => break None,
            Err(e) => return Failed(format!("accept: {e}")),
        }
    };
    let Some(mut conn) = conn else {
        return match bury(victim, timer) {
            Ok(_) if c.board.acked() == 0 && service.handshakes() == 0 => Survived("killed before its handshake ended"),
            Ok(_) => Failed(format!("no connection, {} handshakes held", service.handshakes())),
            Err(o) => o,
        };
    };
    let mut order = InOrder::new(run);
    let mut buf = Vec::new();
    let end = loop {
        match conn.recv_timeout(&mut buf, delay + BOUND) {
            Ok(_) => {
                if let Err(o) = order.take(&buf) {
                    break Err(o);
                }
            }
            Err(Error::Disconnected) => {
                noticed();
                break Ok("Disconnected");
            }
            Err(Error::Timeout) => break Err(Hung("no end after the client died".into())),
            Err(e) => break Err(Failed(format!("recv: {e}"))),
        }
    };
    drop(conn);
    if service.clients() != 0 {
        return Failed(format!("{} clients counted after the only one went", service.clients()));
    }
    bury_and_check(c, victim, timer, &order, end)
}

/// A service binds, accepts one client and answers each of its requests
/// with the same record, and dies at any step; the client gets a typed
/// error when it connects too early, else every reply in order and then
/// `Disconnected` within the bound.
pub(crate) fn service_killed(c: &mut Campaign, run: u32, delay: Duration, _: &mut Rng) -> Outcome {
    let name = fresh();
    let board = &c.board;
    let mut victim = fork(|| {
        let mut service = Service::bind(&name, options()).expect("bind");
        board.set_ready();
        let mut conn = service.accept().expect("accept");
        let mut buf = Vec::new();
        loop {
            conn.recv(&mut buf).expect("a request");
            conn.send(&buf).expect("a reply");
        }
    });
    let timer = kill_after(victim.pid(), delay);
    let kill = Instant::now() + delay;
    // Until it is bound (or dead): connecting to a name nobody holds is
    // `NotFound`/`Refused`, a typed error, and tried again.
    let mut conn = loop {
        match connect_timeout(&name, BOUND) {
            Ok(conn) => break conn,
            Err(Error::Socket(_) | Error::Disconnected)
                if Instant::now() < kill + BOUND && victim.wait_timeout(Duration::ZERO).is_none() =>
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(Error::Socket(_) | Error::Disconnected) => {
                return match bury(victim, timer) {
                    Ok(_) => Survived("killed before it served"),
                    Err(o) => o,
                };
            }
            Err(e) => return Failed(format!("connect: {e}")),
        }
    };
    let (mut msg, mut buf, mut order) = (Vec::new(), Vec::new(), InOrder::new(run));
    let end = (0..)
        .find_map(|seq| {
            encode(run, seq, true, &mut msg);
            let sent = conn.send_timeout(&msg, BOUND).and_then(|()| conn.recv_timeout(&mut buf, BOUND));
            match sent {
                Ok(_) => order.take(&buf).err().map(Err),
                Err(Error::Disconnected) => Some(Ok(())),
                Err(Error::Timeout) => Some(Err(Hung("a wait outlived the service".into()))),
                Err(e) => Some(Err(Failed(format!("request: {e}")))),
            }
        })
        .unwrap_or(Ok(()));
    noticed();
    let late = Instant::now().saturating_duration_since(kill);
    let outcome = match end {
        Ok(()) if late < BOUND => Survived("Disconnected"),
        Ok(()) => Hung(format!("Disconnected only {late:?} after the kill")),
        Err(o) => o,
    };
    match bury(victim, timer) {
        Ok(_) => outcome,
        Err(o) => o,
    }
}
