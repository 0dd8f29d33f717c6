//! Publish/subscribe (ipc-service): a subscriber killed at any step
//! (before it joins, in its handshake, while it reads) under `Block`, and
//! a publisher killed at any step (before it binds, before anyone
//! joined, while it publishes). A publisher goes on at once without the
//! dead subscriber; a subscriber receives every message published
//! (acknowledged) whole and in order, then `Disconnected`, never a hang or
//! a signal.

use std::time::{Duration, Instant};

use ipc_kit::service::{Error, PubSubOptions, Publisher, SocketName, Subscriber};
use ipc_kit_tests::record::encode;
use ipc_kit_tests::{Rng, fork, unique_name};

use crate::harness::{
    BOUND, Campaign, Failed, Hung, InOrder, Outcome, Survived, bury, bury_and_check, kill_after, noticed,
};

fn fresh() -> SocketName {
    format!("@{}", unique_name("ipc-kit-faults-pubsub")).parse().expect("an abstract name")
}

fn options() -> PubSubOptions {
    // A small ring, so that a subscriber that stops holds the publisher.
    PubSubOptions { capacity: 16, max_message: 64, ..PubSubOptions::default() }
}

/// A subscriber reads and dies at any step; the publisher, publishing
/// all along under `Block`, never waits out its bound and ends with no
/// subscriber counted.
pub(crate) fn subscriber_killed(_: &mut Campaign, run: u32, delay: Duration, rng: &mut Rng) -> Outcome {
    let name = fresh();
    let mut publisher = match Publisher::bind(&name, options()) {
        Ok(p) => p,
        Err(e) => return Failed(format!("bind: {e}")),
    };
    // Some die reading, some stalled (holding the publisher up).
    let stall = rng.chance(2);
    let victim = fork(|| {
        let mut sub = Subscriber::connect_timeout(&name, BOUND).expect("subscribe");
        let mut buf = Vec::new();
        loop {
            sub.recv(&mut buf).expect("a message");
            if stall {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    });
    let timer = kill_after(victim.pid(), delay);
    let dead_by = Instant::now() + delay;
    let mut msg = Vec::new();
    let mut seq = 0;
    // Publishes until the subscriber is dead and dropped: a publish held
    // up by the stalled subscriber returns at its death (the bound is the
    // kill delay and more), and none waits after it.
    loop {
        encode(run, seq, true, &mut msg);
        match publisher.publish_timeout(&msg, delay + BOUND) {
            Ok(_) => seq += 1,
            Err(Error::Timeout) => return Hung(format!("a publish waited out {:?}", delay + BOUND)),
            Err(e) => return Failed(format!("publish: {e}")),
        }
        if Instant::now() >= dead_by && publisher.subscribers() == 0 {
            break;
        }
        if Instant::now() > dead_by + BOUND {
            return Hung(format!("{} subscribers counted after the only one died", publisher.subscribers()));
        }
    }
    noticed();
    match bury(victim, timer) {
        Ok(_) if seq > 0 => Survived(if stall { "dropped while stalled" } else { "dropped while reading" }),
        Ok(_) => Failed("nothing published".into()),
        Err(o) => o,
    }
}

/// A publisher publishes numbered records (acknowledging each once
/// `publish` returned) and dies at any step; the subscriber receives every
/// acknowledged record in order, then `Disconnected` within the bound.
pub(crate) fn publisher_killed(c: &mut Campaign, run: u32, delay: Duration, _: &mut Rng) -> Outcome {
    let name = fresh();
    let board = &c.board;
    let mut victim = fork(|| {
        let mut publisher = Publisher::bind(&name, options()).expect("bind");
        while publisher.subscribers() == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        let mut msg = Vec::new();
        for seq in 0.. {
            encode(run, seq, true, &mut msg);
            publisher.publish(&msg).expect("publish");
            board.ack(seq + 1);
        }
    });
    let timer = kill_after(victim.pid(), delay);
    let kill = Instant::now() + delay;
    let mut sub = loop {
        match Subscriber::connect_timeout(&name, BOUND) {
            Ok(sub) => break sub,
            // Not bound yet (a typed error, tried again), until it is dead.
            Err(Error::Socket(_) | Error::Disconnected)
                if Instant::now() < kill + BOUND && victim.wait_timeout(Duration::ZERO).is_none() =>
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(Error::Socket(_) | Error::Disconnected) => {
                return match bury(victim, timer) {
                    Ok(_) if c.board.acked() == 0 => Survived("killed before anyone joined"),
                    Ok(_) => Failed("acknowledged records, and no one could join".into()),
                    Err(o) => o,
                };
            }
            Err(e) => return Failed(format!("subscribe: {e}")),
        }
    };
    let (mut buf, mut order) = (Vec::new(), InOrder::new(run));
    let end = loop {
        match sub.recv_timeout(&mut buf, delay + BOUND) {
            Ok(_) => {
                if let Err(o) = order.take(&buf) {
                    break Err(o);
                }
            }
            Err(Error::Disconnected) => {
                noticed();
                let late = Instant::now().saturating_duration_since(kill);
                break if late < BOUND {
                    Ok("Disconnected")
                } else {
                    Err(Hung(format!("Disconnected only {late:?} after the kill")))
                };
            }
            Err(Error::Timeout) => break Err(Hung("no end after the publisher died".into())),
            Err(e) => break Err(Failed(format!("recv: {e}"))),
        }
    };
    bury_and_check(c, victim, timer, &order, end)
}
