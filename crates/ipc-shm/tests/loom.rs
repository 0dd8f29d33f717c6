//! Model checking of the slot channel's ring with loom: every
//! interleaving (within the preemption bound) of a sender and a receiver
//! thread, with each slot access checked for being ordered after the last
//! conflicting one. Run by `cargo xtask loom` (`--cfg loom`).
#![cfg(loom)]

use ipc_shm::{Channel, Error, Receiver, Sender, WaitPolicy};

/// Checks every interleaving of `send` on a sender thread (which drops
/// the sender when it returns) and `receive` here, over a ring of
/// `capacity` slots, both sides spinning.
fn model(capacity: usize, send: fn(&mut Sender<u64>), receive: fn(&mut Receiver<u64>)) {
    loom::model(move || {
        let chan = Channel::<u64>::model(capacity);
        let (mut tx, mut rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        tx.set_wait_policy(WaitPolicy::Spin);
        rx.set_wait_policy(WaitPolicy::Spin);
        let sender = loom::thread::spawn(move || send(&mut tx));
        receive(&mut rx);
        sender.join().unwrap();
    });
}

#[test]
fn messages_arrive_in_order_through_a_full_ring() {
    model(
        2,
        |tx| (1..=3).for_each(|v| tx.send(v).unwrap()),
        |rx| (1..=3).for_each(|v| assert_eq!(rx.recv().unwrap(), v)),
    );
}

#[test]
fn batches_publish_with_one_index_update() {
    model(
        4,
        |tx| tx.send_many(&[1, 2, 3]).unwrap(),
        |rx| {
            let mut got = Vec::new();
            let mut buf = [0u64; 4];
            while got.len() < 3 {
                let n = rx.recv_many(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, [1, 2, 3]);
        },
    );
}

#[test]
fn a_dropped_sender_is_drained_then_disconnected() {
    model(
        2,
        |tx| tx.send(7).unwrap(),
        |rx| {
            assert_eq!(rx.recv().unwrap(), 7);
            assert!(matches!(rx.recv(), Err(Error::Disconnected)));
        },
    );
}

#[test]
fn a_one_slot_ring_hands_over_every_message() {
    model(
        1,
        |tx| (10..14).for_each(|v| tx.send(v).unwrap()),
        |rx| (10..14).for_each(|v| assert_eq!(rx.recv().unwrap(), v)),
    );
}
