//! Shared-memory channels, slots and bytes: a side killed once claimed,
//! killed before or while it claims (also from another PID namespace), a
//! named channel's creator or opener killed while it makes or opens it,
//! and a creator stalled inside the making. The sides are the umbrella's
//! `MessageSender` and `MessageReceiver`.

use std::time::{Duration, Instant};

use ipc_kit::MessageReceiver;
use ipc_kit::traits::Error as KitError;
use ipc_kit_tests::record::encode;
use ipc_kit_tests::{Exit, Rng, fork};
use nix::sys::signal::{Signal, kill};

use crate::harness::{
    BOUND, Campaign, Corrupted, Failed, Hung, InOrder, Outcome, Survived, bury, bury_and_check, hold, kill_after,
    noticed, receive_forever, wait_ready, wait_stopped,
};
use crate::sides::{AnyChannel, Make, Ring};

/// Whether the channel has a name.
#[derive(Clone, Copy, Debug)]
enum Naming {
    /// In anonymous shared memory, made before `fork`.
    Anonymous,
    /// Under the campaign's one name, made by one process and opened by
    /// the other.
    Named,
}

/// The victim's side of the channel.
#[derive(Clone, Copy, Debug)]
enum Side {
    Sender,
    Receiver,
}

/// Where the victim's pid lives.
#[derive(Clone, Copy, Debug)]
enum Pids {
    /// This PID namespace.
    Shared,
    /// Process 1 of a new PID namespace, whose pid means nothing here.
    NewNamespace,
}

/// The sender killed once it has claimed its side.
pub(crate) fn slot_sender_killed(c: &mut Campaign, run: u32, delay: Duration, _: &mut Rng) -> Outcome {
    sender_killed(c, run, delay, Ring::Slots, Naming::Anonymous, None)
}

/// The byte channel's sender killed once it has claimed its side.
pub(crate) fn byte_sender_killed(c: &mut Campaign, run: u32, delay: Duration, _: &mut Rng) -> Outcome {
    sender_killed(c, run, delay, Ring::Bytes, Naming::Anonymous, None)
}

/// The receiver killed once it has claimed its side.
pub(crate) fn slot_receiver_killed(c: &mut Campaign, run: u32, delay: Duration, _: &mut Rng) -> Outcome {
    receiver_killed(c, run, delay, Ring::Slots, Naming::Anonymous)
}

/// The byte channel's receiver killed once it has claimed its side.
pub(crate) fn byte_receiver_killed(c: &mut Campaign, run: u32, delay: Duration, _: &mut Rng) -> Outcome {
    receiver_killed(c, run, delay, Ring::Bytes, Naming::Anonymous)
}

/// A named channel's creator killed, now and then at a failpoint inside
/// the making.
pub(crate) fn named_creator_killed(c: &mut Campaign, run: u32, delay: Duration, rng: &mut Rng) -> Outcome {
    let failpoint = match rng.below(16) {
        0 => Some("posix-shm:opened"),
        1 => Some("channel:mapped"),
        _ => None,
    };
    sender_killed(c, run, delay, Ring::pick(rng), Naming::Named, failpoint)
}

/// A named channel's opener killed.
pub(crate) fn named_opener_killed(c: &mut Campaign, run: u32, delay: Duration, rng: &mut Rng) -> Outcome {
    receiver_killed(c, run, delay, Ring::pick(rng), Naming::Named)
}

/// The sender killed before, while or after it claims its side.
pub(crate) fn unclaimed_sender_killed(c: &mut Campaign, run: u32, delay: Duration, rng: &mut Rng) -> Outcome {
    early(c, run, delay, rng, Side::Sender, Pids::Shared)
}

/// The receiver killed before, while or after it claims its side.
pub(crate) fn unclaimed_receiver_killed(c: &mut Campaign, run: u32, delay: Duration, rng: &mut Rng) -> Outcome {
    early(c, run, delay, rng, Side::Receiver, Pids::Shared)
}

/// As [`unclaimed_sender_killed`], the sender in a new PID namespace.
pub(crate) fn namespaced_sender_killed(c: &mut Campaign, run: u32, delay: Duration, rng: &mut Rng) -> Outcome {
    early(c, run, delay, rng, Side::Sender, Pids::NewNamespace)
}

/// As [`unclaimed_receiver_killed`], the receiver in a new PID namespace.
pub(crate) fn namespaced_receiver_killed(c: &mut Campaign, run: u32, delay: Duration, rng: &mut Rng) -> Outcome {
    early(c, run, delay, rng, Side::Receiver, Pids::NewNamespace)
}

/// A named channel's creator stopped at a point inside the making.
pub(crate) fn named_creator_stalled(c: &mut Campaign, run: u32, _: Duration, rng: &mut Rng) -> Outcome {
    let point = ["posix-shm:opened", "channel:mapped", "posix-shm:prepared"][rng.below(3) as usize];
    let stall = Duration::from_micros(rng.below(300_000));
    creator_stalled(c, run, point, stall, Ring::pick(rng))
}

/// [`peer_killed_early`] with its claim delay and ring drawn from `rng`.
fn early(c: &Campaign, run: u32, delay: Duration, rng: &mut Rng, role: Side, pids: Pids) -> Outcome {
    let claim_after = Duration::from_micros(rng.below(3_000));
    peer_killed_early(c, run, delay, claim_after, Ring::pick(rng), role, pids)
}

/// The victim claims the sending side and sends until killed; the
/// survivor receives everything acknowledged, then `Disconnected`.
/// Named: the victim makes the channel under the campaign's one name
/// with `create_or_reclaim` (taking over what a predecessor killed
/// mid-creation left) and may be killed while it does (at random, or
/// exactly at `failpoint`); the survivor opens it by name.
fn sender_killed(
    c: &Campaign,
    run: u32,
    delay: Duration,
    ring: Ring,
    naming: Naming,
    failpoint: Option<&'static str>,
) -> Outcome {
    let anonymous = if let Naming::Named = naming {
        None
    } else {
        match AnyChannel::new(ring) {
            Ok(c) => Some(c),
            Err(e) => return Failed(e),
        }
    };
    let (board, name) = (&c.board, c.posix_name.as_str());
    let mut victim = fork(|| {
        let made;
        if let Some(point) = failpoint {
            ipc_kit::sync::failpoint::arm(point);
        }
        let chan = match &anonymous {
            Some(c) => c,
            None => {
                made = AnyChannel::named(ring, name, Make::Reclaim).unwrap_or_else(|e| board.fail_setup(e));
                &made
            }
        };
        let mut tx = chan.sender().expect("claim the sender");
        board.set_ready();
        let mut msg = Vec::new();
        for seq in 0.. {
            encode(run, seq, true, &mut msg);
            if tx.send_timeout(&msg, Duration::from_secs(60)).is_err() {
                panic!("send");
            }
            board.ack(seq + 1);
        }
    });
    let early = matches!(naming, Naming::Named).then(|| kill_after(victim.pid(), delay));
    if !wait_ready(board, &mut victim) {
        let how = match failpoint {
            Some(_) => "killed at a failpoint while making the channel",
            None => "killed while making the channel",
        };
        return c.killed_setting_up(victim, early, how);
    }
    let chan = match anonymous.map_or_else(|| AnyChannel::named(ring, name, Make::Open), Ok) {
        Ok(c) => c,
        Err(e) => return Failed(e),
    };
    let mut rx = match chan.receiver() {
        Ok(rx) => rx,
        Err(e) => return Failed(e),
    };
    let timer = early.unwrap_or_else(|| kill_after(victim.pid(), delay));
    let mut order = InOrder::new(run);
    let end = drain_channel(rx.as_mut(), &mut order, "no Disconnected after the sender died").map(|()| {
        noticed();
        "Disconnected"
    });
    bury_and_check(c, victim, timer, &order, end)
}

/// The victim claims the receiving side and dies; the survivor's sends
/// end in `Disconnected` once the ring is full. Named: the survivor
/// makes the channel with plain `create` (so the name must be free
/// again after every run) and the victim opens it by name, and may be
/// killed while it does.
fn receiver_killed(c: &Campaign, run: u32, delay: Duration, ring: Ring, naming: Naming) -> Outcome {
    let made = match naming {
        Naming::Named => AnyChannel::named(ring, &c.posix_name, Make::Create),
        Naming::Anonymous => AnyChannel::new(ring),
    };
    let chan = match made {
        Ok(c) => c,
        Err(e) => return Failed(e),
    };
    let (board, name) = (&c.board, c.posix_name.as_str());
    let mut victim = fork(|| {
        let opened;
        let chan = if let Naming::Named = naming {
            opened = AnyChannel::named(ring, name, Make::Open).unwrap_or_else(|e| board.fail_setup(e));
            &opened
        } else {
            &chan
        };
        let mut rx = chan.receiver().expect("claim the receiver");
        board.set_ready();
        receive_forever(rx.as_mut(), run, board, BOUND);
    });
    let mut tx = match chan.sender() {
        Ok(tx) => tx,
        Err(e) => return Failed(e),
    };
    let early = matches!(naming, Naming::Named).then(|| kill_after(victim.pid(), delay));
    if !wait_ready(board, &mut victim) {
        return c.killed_setting_up(victim, early, "killed while opening the channel");
    }
    let timer = early.unwrap_or_else(|| kill_after(victim.pid(), delay));
    let mut msg = Vec::new();
    let t = Instant::now();
    let outcome = (0..).find_map(|seq| {
        encode(run, seq, true, &mut msg);
        tx.send_timeout(&msg, BOUND).err()
    });
    noticed();
    let outcome = match outcome {
        None => Failed("unreachable: sends never end".into()),
        Some(end) => match end {
            KitError::Disconnected if t.elapsed() < delay + BOUND => Survived("Disconnected"),
            KitError::Disconnected => Hung(format!("Disconnected only after {:?}", t.elapsed())),
            KitError::Timeout => Hung("a send blocked on a dead receiver".into()),
            e => Failed(e.to_string()),
        },
    };
    match bury(victim, timer) {
        Ok(_) => outcome,
        Err(o) => o,
    }
}

/// A channel made before `fork`: the victim starts claiming its side
/// after `claim_after` and is killed after `delay`, so the kill lands
/// before, during or after its claim. The survivor claims the other side
/// at once and waits on it (receiving everything acknowledged, or
/// sending into a ring that fills): it must end in `Disconnected` within
/// the bound after the kill, also when the victim never claimed.
/// `Pids::NewNamespace`: the victim is process 1 of a new PID namespace, whose
/// pid means nothing here.
fn peer_killed_early(
    c: &Campaign,
    run: u32,
    delay: Duration,
    claim_after: Duration,
    ring: Ring,
    role: Side,
    pids: Pids,
) -> Outcome {
    let chan = match AnyChannel::new(ring) {
        Ok(c) => c,
        Err(e) => return Failed(e),
    };
    let board = &c.board;
    let body = || {
        hold(claim_after);
        let mut msg = Vec::new();
        if let Side::Sender = role {
            let mut tx = chan.sender().expect("claim the sender");
            board.set_ready();
            for seq in 0.. {
                encode(run, seq, true, &mut msg);
                if tx.send_timeout(&msg, Duration::from_secs(60)).is_err() {
                    panic!("send");
                }
                board.ack(seq + 1);
            }
        } else {
            let mut rx = chan.receiver().expect("claim the receiver");
            board.set_ready();
            receive_forever(rx.as_mut(), run, board, Duration::from_secs(60));
        }
    };
    let (mut victim, target) = if let Pids::NewNamespace = pids {
        match ipc_kit_tests::fork_in_new_pid_namespace(body) {
            Some(started) => started,
            None => return Failed("no PID namespace could be made".into()),
        }
    } else {
        let victim = fork(body);
        let pid = victim.pid();
        (victim, pid)
    };
    let timer = kill_after(target, delay);
    let t = Instant::now();
    let end = if let Side::Sender = role {
        let mut rx = match chan.receiver() {
            Ok(rx) => rx,
            Err(e) => return Failed(e),
        };
        let mut order = InOrder::new(run);
        drain_channel(rx.as_mut(), &mut order, "no Disconnected after the sender died")
            .map(|()| order.check(c.board.acked(), "Disconnected"))
    } else {
        let mut tx = match chan.sender() {
            Ok(tx) => tx,
            Err(e) => return Failed(e),
        };
        let mut msg = Vec::new();
        let end = (0..).find_map(|seq| {
            encode(run, seq, true, &mut msg);
            tx.send_timeout(&msg, BOUND).err()
        });
        match end {
            Some(KitError::Disconnected) => Ok(Survived("Disconnected")),
            Some(KitError::Timeout) => Err(Hung("a send blocked on a dead receiver".into())),
            Some(e) => Err(Failed(e.to_string())),
            None => Err(Failed("unreachable: sends never end".into())),
        }
    };
    noticed();
    let _ = timer.join();
    let _ = kill(target, Signal::SIGKILL);
    let reaped = victim.wait_timeout(BOUND);
    let outcome = match end {
        Ok(_) if t.elapsed() > delay + BOUND => Hung(format!("Disconnected only after {:?}", t.elapsed())),
        Ok(Survived(_)) if !board.ready() => Survived("Disconnected, the victim killed before it claimed"),
        Ok(o) | Err(o) => o,
    };
    match (reaped, matches!(pids, Pids::NewNamespace)) {
        (None, _) => Hung("the victim could not be reaped".into()),
        (Some(Exit::Signaled(Signal::SIGKILL)), _) | (Some(_), true) => outcome,
        (Some(other), false) => Failed(format!("the victim ended with {other:?} before the kill")),
    }
}

/// The victim makes a named channel and stops itself (SIGSTOP) at
/// `point` inside the making, for `stall`; meanwhile the survivor tries
/// to open it by name, over and over. It must never find it half made
/// (only "not found" until the creator goes on), and once the creator
/// is continued both use the one channel: everything sent arrives, in
/// order, then `Disconnected`.
fn creator_stalled(c: &Campaign, run: u32, point: &'static str, stall: Duration, ring: Ring) -> Outcome {
    const N: u64 = 200;
    let (board, name) = (&c.board, c.posix_name.as_str());
    let mut victim = fork(|| {
        ipc_kit::sync::failpoint::arm_stop(point);
        let chan = AnyChannel::named(ring, name, Make::Create).unwrap_or_else(|e| board.fail_setup(e));
        let mut tx = chan.sender().expect("claim the sender");
        board.set_ready();
        let mut msg = Vec::new();
        for seq in 0..N {
            encode(run, seq, true, &mut msg);
            if tx.send_timeout(&msg, BOUND).is_err() {
                panic!("send");
            }
            board.ack(seq + 1);
        }
    });
    if !wait_stopped(victim.pid()) {
        return Failed(format!("the creator never stopped at {point}"));
    }
    let stopped = Instant::now();
    let mut continued = false;
    let chan = loop {
        if !continued && stopped.elapsed() >= stall {
            let _ = kill(victim.pid(), Signal::SIGCONT);
            continued = true;
        }
        let named = !matches!(ipc_kit::shm::PosixShm::open(name), Err(ipc_kit::shm::Error::NotFound { .. }));
        match named.then(|| AnyChannel::named(ring, name, Make::Open)) {
            None => {}
            Some(Ok(chan)) if continued => break chan,
            Some(Ok(_)) => return Corrupted(format!("opened while its creator was stopped at {point}")),
            Some(Err(e)) => return Corrupted(format!("found it half made at {point}: {e}")),
        }
        if stopped.elapsed() > stall + BOUND {
            return Hung(format!("not there {:?} after the creator went on", stopped.elapsed()));
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let mut rx = match chan.receiver() {
        Ok(rx) => rx,
        Err(e) => return Failed(e),
    };
    let mut order = InOrder::new(run);
    let end = match drain_channel(rx.as_mut(), &mut order, "the creator's messages stopped") {
        Ok(()) if order.next == N => Survived("waited for; nothing half made seen"),
        Ok(()) => Corrupted(format!("{} of {N} messages", order.next)),
        Err(o) => o,
    };
    match victim.wait_timeout(BOUND) {
        Some(Exit::Code(0)) => end,
        Some(other) => Failed(format!("the creator ended with {other:?}")),
        None => Hung("the creator did not finish".into()),
    }
}

/// Receives from a channel into `order` until it says `Disconnected`; a
/// receive that waits out the bound is `Hung(hung)`.
fn drain_channel(rx: &mut dyn MessageReceiver, order: &mut InOrder, hung: &str) -> Result<(), Outcome> {
    let mut buf = Vec::new();
    loop {
        match rx.recv_timeout(&mut buf, BOUND) {
            Ok(_) => order.take(&buf)?,
            Err(KitError::Disconnected) => return Ok(()),
            Err(KitError::Timeout) => return Err(Hung(hung.into())),
            Err(e) => return Err(Failed(e.to_string())),
        }
    }
}
