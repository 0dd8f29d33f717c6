//! Unix seqpacket sockets (the umbrella's `unix-socket`): a sender killed
//! while it sends messages of any size, a receiver killed while it takes
//! records.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ipc_kit::socket::{Error, SeqpacketSocket};
use ipc_kit_tests::Rng;
use ipc_kit_tests::record::encode;
use ipc_kit_tests::{close_inherited, fork};

use crate::harness::{
    BOUND, Campaign, Failed, Hung, InOrder, Outcome, Survived, bury, bury_and_check, kill_after, noticed,
};
use crate::pipe::{Size, message};

/// A sender sends messages (acknowledging each after `send` returns) and
/// dies; the receiver gets every acknowledged message whole and in order,
/// then `Disconnected`.
pub(crate) fn sender_killed(c: &mut Campaign, run: u32, delay: Duration, rng: &mut Rng) -> Outcome {
    let size = Size::pick(rng);
    let (ours, theirs) = match SeqpacketSocket::pair() {
        Ok(p) => p,
        Err(e) => return Failed(format!("socketpair: {e}")),
    };
    let board = &c.board;
    let victim = fork(|| {
        close_inherited(ours.as_raw_fd());
        let mut msg = Vec::new();
        for seq in 0.. {
            message(run, seq, size, &mut msg);
            theirs.send(&msg).expect("send a message");
            board.ack(seq + 1);
        }
    });
    drop(theirs);
    let timer = kill_after(victim.pid(), delay);
    let mut order = InOrder::new(run);
    let mut buf = Vec::new();
    let end = loop {
        match ours.recv_vec_timeout(&mut buf, BOUND) {
            Ok(_) => {
                if let Err(o) = order.take(&buf) {
                    break Err(o);
                }
            }
            Err(Error::Disconnected) => {
                noticed();
                break Ok("Disconnected");
            }
            Err(Error::Timeout) => break Err(Hung("no end after the sender died".into())),
            Err(e) => break Err(Failed(format!("recv: {e}"))),
        }
    };
    bury_and_check(c, victim, timer, &order, end)
}

/// A receiver takes 64-byte records and dies; the sender gets
/// `Disconnected` within the bound after the kill, never a signal.
pub(crate) fn receiver_killed(c: &mut Campaign, run: u32, delay: Duration, _: &mut Rng) -> Outcome {
    let (ours, theirs) = match SeqpacketSocket::pair() {
        Ok(p) => p,
        Err(e) => return Failed(format!("socketpair: {e}")),
    };
    let board = &c.board;
    let victim = fork(|| {
        close_inherited(ours.as_raw_fd());
        let mut order = InOrder::new(run);
        let mut buf = Vec::new();
        loop {
            let n = theirs.recv_vec_timeout(&mut buf, BOUND).expect("receive a record");
            assert!(n == buf.len() && order.take(&buf).is_ok(), "a torn or wrong record");
            board.ack(order.next);
        }
    });
    drop(theirs);
    let timer = kill_after(victim.pid(), delay);
    let kill = Instant::now() + delay;
    let mut msg = Vec::new();
    let end = (0..)
        .map(|seq| {
            encode(run, seq, true, &mut msg);
            ours.send_timeout(&msg, BOUND)
        })
        .find_map(Result::err);
    noticed();
    let late = Instant::now().saturating_duration_since(kill);
    let outcome = match end {
        Some(Error::Disconnected) if late < BOUND => Survived("Disconnected"),
        Some(Error::Disconnected) => Hung(format!("Disconnected only {late:?} after the kill")),
        Some(Error::Timeout) => Hung("a send blocked on a dead receiver".into()),
        other => Failed(format!("send: {other:?}")),
    };
    match bury(victim, timer) {
        Ok(_) => outcome,
        Err(o) => o,
    }
}
