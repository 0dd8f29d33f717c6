//! The channels against a model (a VecDeque), in one process through two
//! mappings of one memfd; the cross-process cases are in the fork suite.

use std::collections::VecDeque;
use std::time::Duration;

use ipc_shm::channel::Handoff;
use ipc_shm::{ByteChannel, Channel, Error, Memfd, byte_channel, channel};
use proptest::prelude::*;

/// `m` handed over with doorbells of its own, as a peer would hand over a
/// memfd it made.
fn with_doorbells(m: Memfd) -> Handoff {
    let bell = || ipc_sync::EventFd::new(1, ipc_sync::EventFdMode::Counter).unwrap();
    Handoff { memfd: m, doorbells: [bell(), bell()] }
}

#[derive(Clone, Debug)]
enum SlotOp {
    TrySend(u64),
    Send(u64),
    SendMany(Vec<u64>),
    TryRecv,
    RecvMany(usize),
    TryRecvMany(usize),
    RecvTimeout,
}

fn slot_op() -> impl Strategy<Value = SlotOp> {
    prop_oneof![
        any::<u64>().prop_map(SlotOp::TrySend),
        any::<u64>().prop_map(SlotOp::Send),
        prop::collection::vec(any::<u64>(), 0..20).prop_map(SlotOp::SendMany),
        Just(SlotOp::TryRecv),
        (1usize..20).prop_map(SlotOp::RecvMany),
        (0usize..20).prop_map(SlotOp::TryRecvMany),
        Just(SlotOp::RecvTimeout),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn slot_channel_matches_a_queue(ops in prop::collection::vec(slot_op(), 1..300), cap_log in 0u32..5) {
        let cap = 1usize << cap_log;
        let a = Channel::<u64>::new_memfd(cap).unwrap();
        let b = Channel::<u64>::from_handoff(a.handoff().unwrap()).unwrap();
        let (mut tx, mut rx) = (a.sender().unwrap(), b.receiver().unwrap());
        let mut model = VecDeque::new();
        for op in ops {
            match op {
                SlotOp::TrySend(v) => match tx.try_send(v) {
                    Ok(()) => model.push_back(v),
                    Err(Error::Full) => prop_assert_eq!(model.len(), cap),
                    Err(e) => prop_assert!(false, "{e}"),
                },
                SlotOp::Send(v) if model.len() < cap => {
                    tx.send(v).unwrap();
                    model.push_back(v);
                }
                SlotOp::Send(_) => {}
                SlotOp::SendMany(vs) if model.len() + vs.len() <= cap => {
                    tx.send_many(&vs).unwrap();
                    model.extend(vs);
                }
                SlotOp::SendMany(vs) => {
                    let n = tx.try_send_many(&vs).unwrap();
                    prop_assert_eq!(n, (cap - model.len()).min(vs.len()));
                    model.extend(&vs[..n]);
                }
                SlotOp::TryRecv => match rx.try_recv() {
                    Ok(v) => prop_assert_eq!(Some(v), model.pop_front()),
                    Err(Error::Empty) => prop_assert!(model.is_empty()),
                    Err(e) => prop_assert!(false, "{e}"),
                },
                SlotOp::RecvMany(n) if !model.is_empty() => {
                    let mut out = vec![0; n];
                    let got = rx.recv_many(&mut out).unwrap();
                    prop_assert_eq!(got, n.min(model.len()));
                    for v in &out[..got] {
                        prop_assert_eq!(Some(*v), model.pop_front());
                    }
                }
                SlotOp::RecvMany(_) => {}
                SlotOp::TryRecvMany(n) => {
                    let mut out = vec![0; n];
                    let got = rx.try_recv_many(&mut out).unwrap();
                    prop_assert_eq!(got, n.min(model.len()));
                    for v in &out[..got] {
                        prop_assert_eq!(Some(*v), model.pop_front());
                    }
                }
                SlotOp::RecvTimeout => match rx.recv_timeout(Duration::from_millis(1)) {
                    Ok(v) => prop_assert_eq!(Some(v), model.pop_front()),
                    Err(Error::Timeout) => prop_assert!(model.is_empty()),
                    Err(e) => prop_assert!(false, "{e}"),
                },
            }
        }
        drop(tx);
        while let Some(v) = model.pop_front() {
            prop_assert_eq!(rx.try_recv().unwrap(), v);
        }
        prop_assert!(matches!(rx.try_recv(), Err(Error::Disconnected)));
    }

    #[test]
    fn byte_channel_matches_a_queue(
        ops in prop::collection::vec(prop_oneof![(0usize..300).prop_map(Some), Just(None)], 1..300),
        cap_log in 6u32..11,
    ) {
        let cap = 1usize << cap_log;
        let a = ByteChannel::new_memfd(cap).unwrap();
        let b = ByteChannel::from_handoff(a.handoff().unwrap()).unwrap();
        let (mut tx, mut rx) = (a.sender().unwrap(), b.receiver().unwrap());
        let max = a.max_record();
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut seq = 0u8;
        let mut buf = Vec::new();
        for op in ops {
            match op {
                Some(len) if len > max => {
                    prop_assert!(
                        matches!(tx.try_send(&vec![0; len]), Err(Error::RecordTooLarge { max: m, .. }) if m == max),
                        "too large"
                    );
                }
                Some(len) => {
                    seq = seq.wrapping_add(1);
                    let record: Vec<u8> = (0..len).map(|i| seq.wrapping_add(i as u8)).collect();
                    match tx.try_send(&record) {
                        Ok(()) => model.push_back(record),
                        // A record up to the maximum always fits an empty ring.
                        Err(Error::Full) => prop_assert!(!model.is_empty(), "an empty ring refused {len} bytes"),
                        Err(e) => prop_assert!(false, "{e}"),
                    }
                }
                None => match rx.try_recv(&mut buf) {
                    Ok(n) => {
                        prop_assert_eq!(n, buf.len());
                        prop_assert_eq!(Some(buf.clone()), model.pop_front());
                    }
                    Err(Error::Empty) => prop_assert!(model.is_empty()),
                    Err(e) => prop_assert!(false, "{e}"),
                },
            }
        }
        drop(tx);
        while let Some(r) = model.pop_front() {
            rx.try_recv(&mut buf).unwrap();
            prop_assert_eq!(&buf, &r);
        }
        prop_assert!(matches!(rx.try_recv(&mut buf), Err(Error::Disconnected)));
    }
}

#[test]
fn layout_mismatches_are_refused() {
    let a = Channel::<u64>::new_memfd(16).unwrap();
    let fd = || a.handoff().unwrap();
    assert!(matches!(Channel::<u32>::from_handoff(fd()), Err(Error::LayoutMismatch { .. })));
    assert!(matches!(Channel::<i64>::from_handoff(fd()), Err(Error::LayoutMismatch { .. })), "same size, other type");
    assert!(matches!(ByteChannel::from_handoff(fd()), Err(Error::LayoutMismatch { .. })));
    let foreign = Memfd::create("foreign", 1 << 16).unwrap();
    foreign.map().unwrap().write_bytes(0, b"not a channel header at all").unwrap();
    let t = std::time::Instant::now();
    match Channel::<u64>::from_handoff(with_doorbells(foreign)) {
        Err(e @ Error::LayoutMismatch { .. }) => assert!(e.to_string().contains("magic"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_byte_ring_under_64_bytes_is_refused_on_open() {
    // A peer's header claiming a 32-byte ring (sizes otherwise consistent):
    // its longest record would be negative.
    let a = ByteChannel::new_memfd(64).unwrap();
    let m = a.memfd().unwrap().map().unwrap();
    m.write::<u64>(16, &32).unwrap(); // capacity
    m.write::<u64>(56, &(768 + 32)).unwrap(); // total size
    match ByteChannel::from_handoff(a.handoff().unwrap()) {
        Err(Error::LayoutMismatch { reason }) => assert!(reason.contains("capacity 32"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sides_are_claimed_once_and_sizes_checked() {
    let c = channel::<u32>(8).unwrap();
    let _tx = c.sender().unwrap();
    assert!(matches!(c.sender(), Err(Error::AlreadyConnected { side: "sender" })));
    assert!(matches!(channel::<u32>(6), Err(Error::InvalidSize { .. })));
    assert!(matches!(channel::<u32>(0), Err(Error::InvalidSize { .. })));
    assert!(matches!(channel::<()>(8), Err(Error::InvalidSize { .. })));
    assert!(matches!(byte_channel(32), Err(Error::InvalidSize { .. })));
    let b = byte_channel(1024).unwrap();
    let mut tx = b.sender().unwrap();
    assert_eq!(tx.max_record(), 504);
    assert!(matches!(tx.send(&[0; 505]), Err(Error::RecordTooLarge { len: 505, max: 504 })));
    let mut rx = b.receiver().unwrap();
    tx.send(&[7; 504]).unwrap();
    tx.send(&[8; 504]).unwrap(); // two of the longest fill the ring exactly
    assert!(matches!(tx.try_send(&[]), Err(Error::Full)));
    assert_eq!(rx.recv_with(|r| r.iter().map(|&b| u64::from(b)).sum::<u64>()).unwrap(), 7 * 504);
    assert_eq!(rx.try_recv_with(|r| r.to_vec()).unwrap(), vec![8; 504]);
    let t = std::time::Instant::now();
    assert!(matches!(rx.recv_timeout(&mut Vec::new(), Duration::from_millis(30)), Err(Error::Timeout)));
    assert!(t.elapsed() >= Duration::from_millis(30));
}

#[test]
fn a_dropped_receiver_disconnects_the_sender() {
    let c = channel::<u8>(4).unwrap();
    let (mut tx, rx) = (c.sender().unwrap(), c.receiver().unwrap());
    tx.send(1).unwrap();
    drop(rx);
    assert!(matches!(tx.send(2), Err(Error::Disconnected)));
    assert!(matches!(tx.try_send(2), Err(Error::Disconnected)));
}

#[test]
fn large_messages_by_reference() {
    type Page = [u8; 65536];
    let c = channel::<Page>(2).unwrap();
    let (mut tx, mut rx) = (c.sender().unwrap(), c.receiver().unwrap());
    let mut page: Box<Page> = bytemuck::zeroed_box();
    for (i, b) in page.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    tx.send_ref(&page).unwrap();
    page[0] = 99;
    tx.send_ref(&page).unwrap();
    let mut out: Box<Page> = bytemuck::zeroed_box();
    rx.recv_into(&mut out).unwrap();
    assert_eq!(out[0], 0);
    assert!(out.iter().enumerate().all(|(i, &b)| i == 0 || b == (i % 251) as u8));
    rx.recv_into(&mut out).unwrap();
    assert_eq!(out[0], 99);
    drop(tx);
    assert!(matches!(rx.recv_into(&mut out), Err(Error::Disconnected)));
}
