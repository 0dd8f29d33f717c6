//! Model checking of the slot channel's ring with loom: every
//! interleaving (within the preemption bound) of a sender and a receiver
//! thread, with each slot access checked for being ordered after the last
//! conflicting one. Run by `cargo xtask loom` (`--cfg loom`).
#![cfg(loom)]

use ipc_shm::{Channel, Error, WaitPolicy};

fn sides(capacity: usize) -> (ipc_shm::Sender<u64>, ipc_shm::Receiver<u64>) {
    let chan = Channel::<u64>::model(capacity);
    let (mut tx, mut rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    tx.set_wait_policy(WaitPolicy::Spin);
    rx.set_wait_policy(WaitPolicy::Spin);
    (tx, rx)
}

#[test]
fn messages_arrive_in_order_through_a_full_ring() {
    loom::model(|| {
        let (mut tx, mut rx) = sides(2);
        let sender = loom::thread::spawn(move || {
            for v in 1..=3 {
                tx.send(v).unwrap();
            }
        });
        for v in 1..=3 {
            assert_eq!(rx.recv().unwrap(), v);
        }
        sender.join().unwrap();
    });
}

#[test]
fn batches_publish_with_one_index_update() {
    loom::model(|| {
        let (mut tx, mut rx) = sides(4);
        let sender = loom::thread::spawn(move || {
            tx.send_many(&[1, 2, 3]).unwrap();
        });
        let mut got = Vec::new();
        let mut buf = [0u64; 4];
        while got.len() < 3 {
            let n = rx.recv_many(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, [1, 2, 3]);
        sender.join().unwrap();
    });
}

#[test]
fn a_dropped_sender_is_drained_then_disconnected() {
    loom::model(|| {
        let (mut tx, mut rx) = sides(2);
        let sender = loom::thread::spawn(move || {
            tx.send(7).unwrap();
            drop(tx);
        });
        assert_eq!(rx.recv().unwrap(), 7);
        assert!(matches!(rx.recv(), Err(Error::Disconnected)));
        sender.join().unwrap();
    });
}

#[test]
fn a_one_slot_ring_hands_over_every_message() {
    loom::model(|| {
        let (mut tx, mut rx) = sides(1);
        let sender = loom::thread::spawn(move || {
            for v in 10..14 {
                tx.send(v).unwrap();
            }
        });
        for v in 10..14 {
            assert_eq!(rx.recv().unwrap(), v);
        }
        sender.join().unwrap();
    });
}
