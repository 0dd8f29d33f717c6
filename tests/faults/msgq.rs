//! Message queues, System V and POSIX: the creator and sender killed, and
//! the receiver killed. Queues know no peers: every message must stay.
//! Written once over the umbrella's `MessageSender` and `MessageReceiver`.

use std::time::Duration;

use ipc_kit::Mechanism;
use ipc_kit::msgq::{PosixQueue, QueueAttr, SysvQueue};
use ipc_kit::traits::Error as KitError;
use ipc_kit::{MessageReceiver, MessageSender};
use ipc_kit_tests::record::{decode, encode};
use ipc_kit_tests::{Rng, fork};

use crate::harness::{
    BOUND, Campaign, Corrupted, Failed, InOrder, Outcome, Survived, bury, kill_after, receive_forever,
};

/// Either queue: both sides in one handle.
trait Queue: MessageSender + MessageReceiver {}

impl<Q: MessageSender + MessageReceiver> Queue for Q {}

/// The System V queue's creator and sender killed.
pub(crate) fn sysv_sender_killed(c: &mut Campaign, run: u32, delay: Duration, _: &mut Rng) -> Outcome {
    sender_killed(c, run, delay, Mechanism::SysvQueue)
}

/// The POSIX queue's creator and sender killed.
pub(crate) fn posix_sender_killed(c: &mut Campaign, run: u32, delay: Duration, _: &mut Rng) -> Outcome {
    sender_killed(c, run, delay, Mechanism::PosixQueue)
}

/// The System V queue's receiver killed.
pub(crate) fn sysv_receiver_killed(c: &mut Campaign, run: u32, delay: Duration, _: &mut Rng) -> Outcome {
    receiver_killed(c, run, delay, Mechanism::SysvQueue)
}

/// The POSIX queue's receiver killed.
pub(crate) fn posix_receiver_killed(c: &mut Campaign, run: u32, delay: Duration, _: &mut Rng) -> Outcome {
    receiver_killed(c, run, delay, Mechanism::PosixQueue)
}

/// Opens (or makes) the campaign's queue: System V under its key, or
/// POSIX under its name.
fn queue(c: &Campaign, mech: Mechanism) -> Result<Box<dyn Queue>, String> {
    match mech {
        Mechanism::SysvQueue => SysvQueue::open_or_create(c.key, 0o600)
            .map(|q| Box::new(q) as Box<dyn Queue>)
            .map_err(|e| format!("msgget: {e}")),
        Mechanism::PosixQueue => PosixQueue::open_or_create(&c.posix_name, QueueAttr::default(), 0o600)
            .map(|q| Box::new(q) as Box<dyn Queue>)
            .map_err(|e| format!("mq_open: {e}")),
        other => Err(format!("{other} is not a message queue")),
    }
}

/// The victim opens or makes the queue (it is the owner when it made
/// it, and dies without removing it) and sends; the survivor takes it
/// over and finds every acknowledged message, in order, then nothing.
fn sender_killed(c: &Campaign, run: u32, delay: Duration, mech: Mechanism) -> Outcome {
    let board = &c.board;
    let victim = fork(|| {
        let mut q = queue(c, mech).expect("open or make the queue");
        let mut msg = Vec::new();
        for seq in 0.. {
            encode(run, seq, false, &mut msg);
            q.send(&msg).expect("send");
            board.ack(seq + 1);
        }
    });
    let timer = kill_after(victim.pid(), delay);
    let mut q = match queue(c, mech) {
        Ok(q) => q,
        Err(e) => return Failed(e),
    };
    let mut order = InOrder::new(run);
    let mut buf = Vec::new();
    // Receive while the victim lives, then drain: a queue has no
    // notion of its peers, so "nothing more" is a short quiet spell
    // after the victim is gone.
    let mut gone = false;
    let mut victim = Some(victim);
    let mut timer = Some(timer);
    loop {
        match q.recv_timeout(&mut buf, Duration::from_millis(if gone { 50 } else { 5 })) {
            Ok(_) => {
                if let Err(o) = order.take(&buf) {
                    return o;
                }
            }
            Err(KitError::Timeout) if gone => break,
            Err(KitError::Timeout) => {
                if victim.as_mut().is_some_and(|v| v.wait_timeout(Duration::ZERO).is_some()) {
                    if let (Some(v), Some(t)) = (victim.take(), timer.take())
                        && let Err(o) = bury(v, t)
                    {
                        return o;
                    }
                    gone = true;
                }
            }
            Err(e) => return Failed(e.to_string()),
        }
    }
    order.check(c.board.acked(), "every acknowledged message kept")
}

/// The survivor owns the queue and sends; the victim receives and
/// dies. What the victim did not acknowledge is still queued, but for
/// the one message it may have taken in the instant it died.
fn receiver_killed(c: &Campaign, run: u32, delay: Duration, mech: Mechanism) -> Outcome {
    let mut q = match queue(c, mech) {
        Ok(q) => q,
        Err(e) => return Failed(e),
    };
    let board = &c.board;
    let victim = fork(|| receive_forever(q.as_mut(), run, board, BOUND));
    let timer = kill_after(victim.pid(), delay);
    let mut victim = Some(victim);
    let mut timer = Some(timer);
    let mut msg = Vec::new();
    let mut sent = 0;
    // Send until the victim is gone and the queue has filled up.
    loop {
        encode(run, sent, false, &mut msg);
        match q.send_timeout(&msg, Duration::from_millis(5)) {
            Ok(()) => sent += 1,
            Err(KitError::Timeout) => {
                if let Some(v) = victim.as_mut()
                    && v.wait_timeout(Duration::ZERO).is_some()
                {
                    if let (Some(v), Some(t)) = (victim.take(), timer.take())
                        && let Err(o) = bury(v, t)
                    {
                        return o;
                    }
                    break;
                }
            }
            Err(e) => return Failed(e.to_string()),
        }
        if sent > 1_000_000 {
            return Failed("the victim outlived a million messages".into());
        }
    }
    let acked = c.board.acked();
    let mut buf = Vec::new();
    let mut first = None;
    let mut order = InOrder::new(run);
    loop {
        match q.recv_timeout(&mut buf, Duration::from_millis(50)) {
            Ok(_) => {
                let Some((_, seq)) = decode(&buf) else { return Corrupted("a damaged message".into()) };
                if first.is_none() {
                    // The victim acknowledged `acked`; it may have taken
                    // one more when it died.
                    if seq != acked && seq != acked + 1 {
                        return Corrupted(format!("{seq} first after {acked} acknowledged"));
                    }
                    first = Some(seq);
                    order.next = seq;
                }
                if let Err(o) = order.take(&buf) {
                    return o;
                }
            }
            Err(KitError::Timeout) => break,
            Err(e) => return Failed(e.to_string()),
        }
    }
    let left = sent - acked;
    match first {
        _ if order.next != sent && first.is_some() => {
            Corrupted(format!("sent {sent}, the queue held up to {}", order.next))
        }
        None if left > 1 => Corrupted(format!("{left} unacknowledged messages vanished")),
        Some(seq) if seq > acked => Survived("the rest kept, but one taken as it died"),
        _ => Survived("every unacknowledged message kept"),
    }
}
