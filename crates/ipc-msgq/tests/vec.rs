//! Receiving into a reusable vector: contents replaced, lengths exact,
//! and the try and timeout forms.

use std::time::Duration;

use ipc_msgq::{Error, Key, PosixQueue, QueueAttr, Selector, SysvQueue};

fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn sysv_recv_vec_replaces_the_contents() {
    let q = SysvQueue::create(Key::private(), 0o600).unwrap();
    let lens = [0, 1, 64, 8192, 7];
    for (i, &len) in lens.iter().enumerate() {
        q.send(i as i64 + 1, &body(len, i as u8)).unwrap();
    }
    let mut buf = vec![0xEE; 10_000];
    for (i, &len) in lens.iter().enumerate() {
        assert_eq!(q.recv_vec(Selector::Any, &mut buf).unwrap(), i as i64 + 1);
        assert_eq!(buf, body(len, i as u8));
    }
    assert!(matches!(q.try_recv_vec(Selector::Any, &mut buf), Err(Error::Empty)));
    assert!(matches!(q.recv_vec_timeout(Selector::Any, &mut buf, Duration::from_millis(20)), Err(Error::Timeout)));
    q.send(3, b"three").unwrap();
    assert!(matches!(q.try_recv_vec(Selector::Exactly(2), &mut buf), Err(Error::Empty)));
    assert_eq!(q.try_recv_vec(Selector::Except(2), &mut buf).unwrap(), 3);
    assert_eq!(buf, b"three");
    assert!(matches!(q.recv_vec(Selector::Exactly(0), &mut buf), Err(Error::InvalidType { .. })));
}

#[test]
fn posix_recv_vec_replaces_the_contents() {
    let name = format!("/ipc-msgq-vec-{}", std::process::id());
    let q = PosixQueue::create(&name, QueueAttr { max_messages: 8, message_size: 4096 }, 0o600).unwrap();
    let lens = [0, 1, 4096, 100];
    for (i, &len) in lens.iter().enumerate() {
        q.send(&body(len, i as u8), 1).unwrap();
    }
    let mut buf = Vec::new();
    for (i, &len) in lens.iter().enumerate() {
        assert_eq!(q.recv_vec(&mut buf).unwrap(), 1);
        assert_eq!(buf, body(len, i as u8));
        assert!(buf.capacity() >= 4096);
    }
    assert!(matches!(q.try_recv_vec(&mut buf), Err(Error::Empty)));
    assert!(matches!(q.recv_vec_timeout(&mut buf, Duration::from_millis(20)), Err(Error::Timeout)));
    q.send(b"high", 9).unwrap();
    assert_eq!(q.recv_vec_timeout(&mut buf, Duration::from_secs(5)).unwrap(), 9);
    assert_eq!(buf, b"high");
}
