//! Typed messages (feature `serde`) across processes, through every
//! mechanism, and a peer that sends what is not the type asked for.

use ipc_kit::traits::Error;
use ipc_kit::typed::{RecvValue, SendValue};
use ipc_kit::{Mechanism, MessageSender};
use ipc_kit_tests::{Rng, cases, fork};
use std::time::Duration;

cases!("typed":
    values_of_every_shape_through_every_mechanism_across_fork,
    a_peer_sending_other_bytes_gets_malformed_and_the_next_value_arrives,
    values_longer_than_a_mechanism_carries_are_too_large,
);

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
enum Job {
    Resize { path: String, width: u32, height: u32 },
    Batch(Vec<u64>),
    Note(Option<String>),
    Stop,
}

/// Job `i`, of a shape and length that vary with it.
fn job(i: u64) -> Job {
    match i % 4 {
        0 => Job::Resize { path: format!("/images/{i}.png"), width: i as u32, height: (i * 7) as u32 },
        1 => Job::Batch((0..i % 50).map(|k| k * i).collect()),
        2 => Job::Note((!i.is_multiple_of(3)).then(|| "x".repeat((i % 200) as usize))),
        _ => Job::Stop,
    }
}

// `SendValue` and `RecvValue` docs: one value per message, through any
// sender and receiver; 1,000 values of varying shape per mechanism, in
// order, from a child process.
fn values_of_every_shape_through_every_mechanism_across_fork() {
    const N: u64 = 1000;
    for &m in Mechanism::ALL {
        let mut pair = m.pair().unwrap();
        let child = fork(|| {
            for i in 0..N {
                pair.sender.send_value(&job(i)).unwrap();
            }
        });
        let mut buf = Vec::new();
        for i in 0..N {
            let got: Job = pair.receiver.recv_value_timeout(&mut buf, Duration::from_secs(10)).unwrap();
            assert_eq!(got, job(i), "{m}: value {i}");
        }
        child.join();
    }
}

// `typed` docs: a message that does not decode as the type, or has bytes
// after the value, is `Malformed`, "and the next message is received as
// usual" — never a panic, whatever the bytes.
fn a_peer_sending_other_bytes_gets_malformed_and_the_next_value_arrives() {
    for &m in Mechanism::ALL {
        let mut pair = m.pair().unwrap();
        let child = fork(|| {
            let mut rng = Rng::new(7);
            for round in 0..200u64 {
                // Garbage of any length but empty (an empty message is
                // refused by some mechanisms), then a good value.
                let len = 1 + rng.below(100) as usize;
                let mut junk = rng.bytes(len);
                if round % 5 == 0 {
                    // A good value with a byte after it.
                    junk = postcard_like(&job(round));
                    junk.push(0);
                }
                pair.sender.send(&junk).unwrap();
                pair.sender.send_value(&job(round)).unwrap();
            }
        });
        let mut buf = Vec::new();
        let (mut malformed, mut decoded) = (0, 0);
        for round in 0..200u64 {
            match pair.receiver.recv_value_timeout::<Job>(&mut buf, Duration::from_secs(10)) {
                Ok(_) => decoded += 1,
                Err(Error::Malformed { len, .. }) => {
                    assert!(len > 0);
                    malformed += 1;
                }
                Err(e) => panic!("{m}: round {round}: {e}"),
            }
            let good: Job = pair.receiver.recv_value_timeout(&mut buf, Duration::from_secs(10)).unwrap();
            assert_eq!(good, job(round), "{m}: the value after the junk of round {round}");
        }
        child.join();
        assert!(malformed >= 40, "{m}: {malformed} malformed, {decoded} junk messages that decoded");
    }
}

/// `value`'s bytes as `send_value` sends them, through a pair of the
/// simplest mechanism.
fn postcard_like(value: &Job) -> Vec<u8> {
    let mut pair = Mechanism::UnixSocket.pair().unwrap();
    pair.sender.send_value(value).unwrap();
    let mut buf = Vec::new();
    let n = ipc_kit::MessageReceiver::recv(&mut *pair.receiver, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

// A value whose encoding is over what a mechanism carries is `TooLarge`
// before anything is sent (a POSIX queue's 8 KiB messages here).
fn values_longer_than_a_mechanism_carries_are_too_large() {
    let mut pair = Mechanism::PosixQueue.pair().unwrap();
    let big = Job::Batch(vec![u64::MAX; 2000]);
    assert!(matches!(pair.sender.send_value(&big), Err(Error::TooLarge { .. })));
    assert!(matches!(pair.sender.try_send_value(&big), Err(Error::TooLarge { .. })));
    pair.sender.send_value(&Job::Stop).unwrap();
    let mut buf = Vec::new();
    assert_eq!(pair.receiver.try_recv_value::<Job>(&mut buf).unwrap(), Job::Stop, "nothing of the big one was sent");
}
