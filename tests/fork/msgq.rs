//! Message queues across real processes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipc_kit::msgq::{Error, Key, PosixQueue, QueueAttr, Selector, SysvQueue};
use ipc_kit::shm::Mapping;
use ipc_kit_tests::{
    Exit, Refusal, SLACK, ScratchDir, SysvKind, assert_fired_within, become_nobody, cases, checksum, fork,
    helper_command, may_exceed_resource_limits, unique_name,
};

/// The model of msgrcv(2)'s type rules that ipc-msgq's own tests use.
#[path = "../../crates/ipc-msgq/tests/support/selector_model.rs"]
mod selector_model;

use selector_model::{pick, selector};

cases!("msgq", helpers ["sysv-queue-by-path" => sysv_helper, "posix-queue-by-name" => posix_helper]:
    sysv_by_path_key_in_exec_child,
    posix_by_name_in_exec_child,
    sysv_selector_rules_across_fork,
    sysv_selector_model_proptest_across_fork,
    sysv_many_producers_many_consumers,
    posix_many_producers_many_consumers,
    full_queues_block_then_proceed,
    try_forms_and_timeouts,
    removal_while_blocked,
    oversize_and_bad_input,
    permission_denied_for_nobody,
    zero_and_past_timeouts_try_once,
    sysv_removed_on_every_path,
    sysv_message_over_capacity_is_too_large,
    sysv_recv_vec_after_msgmax_raised,
    pair_names_survive_pid_reuse_and_crashes,
    posix_dot_names_are_invalid,
    sysv_capacity_lowered_under_a_waiting_sender,
    queue_pairs_outlive_a_killed_peer,
    sysv_send_and_recv_in_a_thread_local_destructor,
    sysv_send_from_a_signal_handler_during_a_receive,
);

fn sysv_helper(args: &[String]) {
    let q = SysvQueue::open(Key::from_path(&args[0], b'q').unwrap()).unwrap();
    let mut buf = [0u8; 64];
    let (t, n) = q.recv_timeout(Selector::Exactly(1), &mut buf, Duration::from_secs(10)).unwrap();
    assert_eq!((t, &buf[..n]), (1, &b"ping"[..]));
    q.send(2, b"pong").unwrap();
}

fn sysv_by_path_key_in_exec_child() {
    let dir = ScratchDir::new();
    let path = dir.path().join("rendezvous");
    std::fs::write(&path, b"").unwrap();
    let q = SysvQueue::create(Key::from_path(&path, b'q').unwrap(), 0o600).unwrap();
    let mut child = helper_command("sysv-queue-by-path", &[path.to_str().unwrap()]).spawn().unwrap();
    q.send(1, b"ping").unwrap();
    let mut buf = [0u8; 64];
    let (t, n) = q.recv_timeout(Selector::Exactly(2), &mut buf, Duration::from_secs(10)).unwrap();
    assert_eq!((t, &buf[..n]), (2, &b"pong"[..]));
    assert!(child.wait().unwrap().success());
    let st = q.stat().unwrap();
    assert_eq!(st.messages, 0);
    assert_eq!(st.last_receiver, Some(std::process::id() as i32));
}

fn posix_helper(args: &[String]) {
    let q = PosixQueue::open(&args[0]).unwrap();
    let mut buf = vec![0u8; q.message_size()];
    for expected in [7u32, 3, 0] {
        let (n, prio) = q.recv_timeout(&mut buf, Duration::from_secs(10)).unwrap();
        assert_eq!((n, prio), (1, expected), "highest priority first");
    }
}

fn posix_by_name_in_exec_child() {
    let name = format!("/{}", unique_name("ipc-kit-test-mq"));
    let q = PosixQueue::create(&name, QueueAttr { max_messages: 8, message_size: 128 }, 0o600).unwrap();
    for prio in [0, 7, 3] {
        q.send(&[prio as u8], prio).unwrap();
    }
    let status = helper_command("posix-queue-by-name", &[&name]).status().unwrap();
    assert!(status.success(), "helper: {status}");
    assert_eq!(q.state().unwrap().messages, 0);
    drop(q);
    assert!(matches!(PosixQueue::open(&name), Err(Error::NotFound { .. })), "the owner unlinked it");
}

fn sysv_selector_rules_across_fork() {
    // Sends here, receives with every selector in a child, against the
    // rules worked out by hand.
    let q = SysvQueue::create(Key::private(), 0o600).unwrap();
    for (t, v) in [(3, 1u8), (1, 2), (5, 3), (1, 4), (2, 5), (4, 6)] {
        q.send(t, &[v]).unwrap();
    }
    let child = fork(|| {
        let mut b = [0u8; 1];
        let mut take = |s| q.try_recv(s, &mut b).map(|(t, _)| (t, b[0]));
        assert_eq!(take(Selector::AtMost(2)).unwrap(), (1, 2), "lowest type up to 2, first of it");
        assert_eq!(take(Selector::Except(3)).unwrap(), (5, 3), "first not of type 3");
        assert_eq!(take(Selector::Exactly(4)).unwrap(), (4, 6));
        assert_eq!(take(Selector::AtMost(5)).unwrap(), (1, 4));
        assert_eq!(take(Selector::Any).unwrap(), (3, 1));
        assert!(matches!(take(Selector::Exactly(3)), Err(Error::Empty)));
        assert_eq!(take(Selector::Any).unwrap(), (2, 5));
    });
    child.join();
    assert_eq!(q.stat().unwrap().messages, 0);
}

fn sysv_selector_model_proptest_across_fork() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let sends = prop::collection::vec(1i64..5, 0..40);
    let receives = prop::collection::vec(selector(1..5), 0..50);
    let mut runner = TestRunner::new(Config { cases: 48, failure_persistence: None, ..Config::default() });
    runner
        .run(&(sends, receives), |(sends, receives)| {
            // This process sends; a forked child receives with the
            // selectors and checks each outcome against the model.
            let q = SysvQueue::create(Key::private(), 0o600).unwrap();
            let mut model = Vec::new();
            for (i, &t) in sends.iter().enumerate() {
                q.send(t, &(i as u64).to_le_bytes()).unwrap();
                model.push((t, i as u64));
            }
            let mut child = fork(|| {
                let mut model = model.clone();
                let mut buf = [0u8; 8];
                for &sel in &receives {
                    match (q.try_recv(sel, &mut buf), pick(&model, sel)) {
                        (Ok((t, 8)), Some(i)) => assert_eq!((t, u64::from_le_bytes(buf)), model.remove(i), "{sel:?}"),
                        (Err(Error::Empty), None) => {}
                        (got, want) => panic!("{sel:?}: got {got:?}, the model says {want:?}"),
                    }
                }
                assert_eq!(q.stat().unwrap().messages, model.len() as u64);
            });
            prop_assert_eq!(child.wait(), Exit::Code(0));
            Ok(())
        })
        .unwrap();
}

/// `producers` processes send `per` checksummed messages each; `consumers`
/// processes take them; a shared bitmap shows each arrived exactly once,
/// and each consumer sees every producer's messages in order.
fn many_to_many(
    producers: u64,
    consumers: u64,
    per: u64,
    send: &(dyn Fn(&[u8; 24]) + Sync),
    recv: &(dyn Fn(&mut [u8; 24]) + Sync),
) {
    let bits = producers * per;
    let map = Mapping::anonymous(((bits / 64 + 1) * 8) as usize).unwrap();
    let word = |i: u64| map.shared::<AtomicU64>((i / 64 * 8) as usize).unwrap();
    let consumer_procs: Vec<_> = (0..consumers)
        .map(|_| {
            fork(|| {
                let mut last = vec![None::<u64>; producers as usize];
                let mut m = [0u8; 24];
                loop {
                    recv(&mut m);
                    let p = u64::from_le_bytes(m[..8].try_into().unwrap());
                    let seq = u64::from_le_bytes(m[8..16].try_into().unwrap());
                    if p == u64::MAX {
                        return; // a stop message
                    }
                    assert_eq!(checksum(&m[..16]).to_le_bytes(), m[16..], "corrupted");
                    assert!(last[p as usize].is_none_or(|l| l < seq), "producer {p}: out of order");
                    last[p as usize] = Some(seq);
                    let bit = p * per + seq;
                    let old = word(bit).fetch_or(1 << (bit % 64), Ordering::SeqCst);
                    assert_eq!(old & (1 << (bit % 64)), 0, "message {p}/{seq} duplicated");
                }
            })
        })
        .collect();
    let producer_procs: Vec<_> = (0..producers)
        .map(|p| {
            fork(move || {
                for seq in 0..per {
                    let mut m = [0u8; 24];
                    m[..8].copy_from_slice(&p.to_le_bytes());
                    m[8..16].copy_from_slice(&seq.to_le_bytes());
                    let sum = checksum(&m[..16]);
                    m[16..].copy_from_slice(&sum.to_le_bytes());
                    send(&m);
                }
            })
        })
        .collect();
    producer_procs.into_iter().for_each(|c| c.join());
    for _ in 0..consumers {
        let mut stop = [0u8; 24];
        stop[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        send(&stop);
    }
    consumer_procs.into_iter().for_each(|c| c.join());
    for bit in 0..bits {
        assert_ne!(word(bit).load(Ordering::SeqCst) & (1 << (bit % 64)), 0, "message {bit} lost");
    }
}

fn sysv_many_producers_many_consumers() {
    let q = SysvQueue::create(Key::private(), 0o600).unwrap();
    many_to_many(4, 3, 5000, &|m| q.send(1, m).unwrap(), &|m| {
        q.recv(Selector::Any, m).unwrap();
    });
}

fn posix_many_producers_many_consumers() {
    let name = format!("/{}", unique_name("ipc-kit-test-mq"));
    let q = PosixQueue::create(&name, QueueAttr { max_messages: 10, message_size: 24 }, 0o600).unwrap();
    many_to_many(4, 3, 5000, &|m| q.send(m, 0).unwrap(), &|m| {
        q.recv(m).unwrap();
    });
}

fn full_queues_block_then_proceed() {
    let q = SysvQueue::create(Key::private(), 0o600).unwrap();
    let cap = q.stat().unwrap().capacity as usize;
    let big = vec![1u8; 4096];
    for _ in 0..cap / 4096 {
        q.send(1, &big).unwrap();
    }
    assert!(matches!(q.try_send(1, &big), Err(Error::Full)));
    let blocked = fork(|| {
        let t = Instant::now();
        q.send(2, &big).unwrap(); // waits for room
        assert!(t.elapsed() >= Duration::from_millis(50), "did not wait: {:?}", t.elapsed());
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut buf = vec![0u8; 4096];
    q.recv(Selector::Exactly(1), &mut buf).unwrap();
    blocked.join();
    assert_eq!(q.try_recv(Selector::Exactly(2), &mut buf).unwrap(), (2, 4096));

    let name = format!("/{}", unique_name("ipc-kit-test-mq"));
    let p = PosixQueue::create(&name, QueueAttr { max_messages: 2, message_size: 16 }, 0o600).unwrap();
    p.send(b"a", 0).unwrap();
    p.send(b"b", 0).unwrap();
    assert!(matches!(p.try_send(b"c", 0), Err(Error::Full)));
    let blocked = fork(|| {
        let t = Instant::now();
        p.send(b"c", 5).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(50));
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut buf = [0u8; 16];
    assert_eq!(p.recv(&mut buf).unwrap(), (1, 0));
    blocked.join();
    assert_eq!(p.recv(&mut buf).unwrap(), (1, 5), "the higher priority jumps the queue");
}

fn try_forms_and_timeouts() {
    let q = SysvQueue::create(Key::private(), 0o600).unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(q.try_recv(Selector::Any, &mut buf), Err(Error::Empty)));
    for timeout in [Duration::ZERO, Duration::from_millis(5), Duration::from_millis(150)] {
        let t = Instant::now();
        assert!(matches!(q.recv_timeout(Selector::Any, &mut buf, timeout), Err(Error::Timeout)));
        assert_fired_within(t.elapsed(), timeout, SLACK);
    }
    let name = format!("/{}", unique_name("ipc-kit-test-mq"));
    let p = PosixQueue::create(&name, QueueAttr { max_messages: 1, message_size: 16 }, 0o600).unwrap();
    assert!(matches!(p.try_recv(&mut buf), Err(Error::Empty)));
    let t = Instant::now();
    assert!(matches!(p.recv_timeout(&mut buf, Duration::from_millis(150)), Err(Error::Timeout)));
    assert_fired_within(t.elapsed(), Duration::from_millis(150), SLACK);
    p.send(b"x", 0).unwrap();
    let t = Instant::now();
    assert!(matches!(p.send_timeout(b"y", 0, Duration::from_millis(120)), Err(Error::Timeout)));
    assert_fired_within(t.elapsed(), Duration::from_millis(120), SLACK);
    // A message that comes while a timed receive waits is taken.
    let late = fork(|| {
        std::thread::sleep(Duration::from_millis(50));
        q.send(9, b"late").unwrap();
    });
    let (t9, n) = q.recv_timeout(Selector::Exactly(9), &mut buf, Duration::from_secs(10)).unwrap();
    assert_eq!((t9, &buf[..n]), (9, &b"late"[..]));
    late.join();
}

fn removal_while_blocked() {
    let q = SysvQueue::create(Key::private(), 0o600).unwrap();
    let waiter = fork(|| {
        let mut buf = [0u8; 8];
        match q.recv(Selector::Any, &mut buf) {
            Err(Error::Removed { .. }) => {}
            other => panic!("expected Removed, got {other:?}"),
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    q.remove().unwrap();
    waiter.join();
}

fn oversize_and_bad_input() {
    let q = SysvQueue::create(Key::private(), 0o600).unwrap();
    let cap = q.stat().unwrap().capacity;
    // msgmnb binds only a caller without CAP_SYS_RESOURCE.
    let privileged = may_exceed_resource_limits();
    match q.set_capacity(cap * 4) {
        Ok(()) if privileged => assert_eq!(q.stat().unwrap().capacity, cap * 4),
        Err(e @ Error::LimitExceeded { .. }) if !privileged => assert!(e.to_string().contains("msgmnb"), "{e}"),
        other => panic!("privileged: {privileged}; got {other:?}"),
    }
    q.set_capacity(cap / 2).unwrap();
    assert_eq!(q.stat().unwrap().capacity, cap / 2);
    q.set_mode(0o640).unwrap();
    assert_eq!(q.stat().unwrap().mode, 0o640);
    let long = format!("/{}", "q".repeat(256));
    for bad in ["no-slash", "/", "/a/b", "/nul\0", long.as_str()] {
        assert!(matches!(PosixQueue::open(bad), Err(Error::InvalidName { .. })), "{bad:?}");
    }
    let name = format!("/{}", unique_name("ipc-kit-test-mq"));
    // Over msg_max and msgsize_max: refused, naming the file, unless the
    // caller has CAP_SYS_RESOURCE, which goes up to the kernel's fixed
    // maxima (65536 messages, 16 MiB), and past those for nobody.
    let too_deep = QueueAttr { max_messages: 1000, message_size: 16 };
    match PosixQueue::create(&name, too_deep, 0o600) {
        Ok(q) if privileged => assert_eq!(q.message_size(), 16),
        Err(e @ Error::LimitExceeded { .. }) if !privileged => {
            assert!(e.to_string().contains("/proc/sys/fs/mqueue/msg_max"), "{e}")
        }
        other => panic!("privileged: {privileged}; got {other:?}"),
    }
    let too_wide = QueueAttr { max_messages: 1, message_size: 1 << 20 };
    match PosixQueue::create(&name, too_wide, 0o600) {
        // RLIMIT_MSGQUEUE (819200 bytes by default) still stands.
        Ok(_) | Err(Error::LimitExceeded { .. }) if privileged => {}
        Err(e @ Error::LimitExceeded { .. }) => assert!(e.to_string().contains("msgsize_max"), "{e}"),
        other => panic!("privileged: {privileged}; got {other:?}"),
    }
    for (beyond, file) in [
        (QueueAttr { max_messages: 65537, message_size: 16 }, "msg_max"),
        (QueueAttr { max_messages: 1, message_size: (16 << 20) + 1 }, "msgsize_max"),
        (QueueAttr { max_messages: usize::MAX, message_size: 16 }, "msg_max"),
        (QueueAttr { max_messages: 1, message_size: usize::MAX }, "msgsize_max"),
    ] {
        match PosixQueue::create(&name, beyond, 0o600) {
            Err(e @ Error::LimitExceeded { .. }) => assert!(e.to_string().contains(file), "{beyond:?}: {e}"),
            other => panic!("{beyond:?}: expected LimitExceeded, got {other:?}"),
        }
    }
    let p = PosixQueue::create(&name, QueueAttr { max_messages: 2, message_size: 32 }, 0o600).unwrap();
    assert!(matches!(p.send(&[0; 33], 0), Err(Error::MessageTooLarge { len: 33, max: 32, .. })));
    assert!(matches!(p.recv(&mut [0; 31]), Err(Error::BufferTooSmall { len: 31, needed: Some(32) })));
    assert!(matches!(PosixQueue::create(&name, QueueAttr::default(), 0o600), Err(Error::AlreadyExists { .. })));
    let again = PosixQueue::open_or_create(&name, QueueAttr::default(), 0o600).unwrap();
    assert_eq!((again.is_owner(), again.message_size()), (false, 32));
}

/// A caller the queues' modes refuse (see [`Refusal`]: another user as
/// root, the owner of a mode-000 queue otherwise) gets `PermissionDenied`.
fn permission_denied_for_nobody() {
    let refusal = Refusal::here();
    let key = Key::new(0x1e00_0000 | (std::process::id() as i32 & 0xffff)).unwrap();
    let q = SysvQueue::create(key, 0o600).unwrap();
    refusal.apply_to_sysv(SysvKind::Queue, q.id());
    let name = format!("/{}", unique_name("ipc-kit-test-mq"));
    let p = PosixQueue::create(&name, QueueAttr { max_messages: 2, message_size: 16 }, 0o600).unwrap();
    refusal.apply_to_fd(&p);
    let mut child = fork(|| {
        refusal.become_caller();
        assert!(matches!(SysvQueue::open(key), Err(Error::PermissionDenied { .. })));
        assert!(matches!(PosixQueue::open(&name), Err(Error::PermissionDenied { .. })));
    });
    assert_eq!(child.wait(), Exit::Code(0));
    drop((q, p));
}

fn zero_and_past_timeouts_try_once() {
    // A message another process left, and room for one: a zero timeout, a
    // deadline of now and one already past each take it or send at once.
    let past = Instant::now();
    std::thread::sleep(Duration::from_millis(2));
    let name = format!("/{}", unique_name("ipc-kit-test-mq"));
    let p = PosixQueue::create(&name, QueueAttr { max_messages: 1, message_size: 16 }, 0o600).unwrap();
    let s = SysvQueue::create(Key::private(), 0o600).unwrap();
    let mut buf = [0u8; 16];
    let mut vec = Vec::new();
    for round in 0..5u8 {
        fork(|| {
            p.send(&[round], 0).unwrap();
            s.send(1, &[round]).unwrap();
        })
        .join();
        let got = match round {
            0 => p.recv_timeout(&mut buf, Duration::ZERO).map(|(n, _)| buf[..n].to_vec()),
            1 => p.recv_deadline(&mut buf, Instant::now()).map(|(n, _)| buf[..n].to_vec()),
            2 => p.recv_deadline(&mut buf, past).map(|(n, _)| buf[..n].to_vec()),
            3 => p.recv_vec_timeout(&mut vec, Duration::ZERO).map(|_| vec.clone()),
            _ => p.recv_vec_timeout_no_priority(&mut vec, Duration::ZERO).map(|_| vec.clone()),
        };
        assert_eq!(got.unwrap(), [round], "POSIX receive {round} with a zero or past timeout");
        let got = match round {
            0 => s.recv_timeout(Selector::Any, &mut buf, Duration::ZERO).map(|(_, n)| buf[..n].to_vec()),
            1 => s.recv_deadline(Selector::Any, &mut buf, Instant::now()).map(|(_, n)| buf[..n].to_vec()),
            2 => s.recv_deadline(Selector::Any, &mut buf, past).map(|(_, n)| buf[..n].to_vec()),
            _ => s.recv_vec_timeout(Selector::Any, &mut vec, Duration::ZERO).map(|_| vec.clone()),
        };
        assert_eq!(got.unwrap(), [round], "System V receive {round} with a zero or past timeout");
        // Room for one now: the timed sends go through at once.
        match round {
            0 => p.send_timeout(b"s", 0, Duration::ZERO).unwrap(),
            1 => p.send_deadline(b"s", 0, Instant::now()).unwrap(),
            _ => p.send_deadline(b"s", 0, past).unwrap(),
        }
        match round {
            0 => s.send_timeout(1, b"s", Duration::ZERO).unwrap(),
            1 => s.send_deadline(1, b"s", Instant::now()).unwrap(),
            _ => s.send_deadline(1, b"s", past).unwrap(),
        }
        // The queue is full now, so another try says Timeout at once.
        assert!(matches!(p.send_timeout(b"t", 0, Duration::ZERO), Err(Error::Timeout)));
        let taken = fork(|| {
            let mut b = [0u8; 16];
            assert_eq!(p.try_recv(&mut b).unwrap().0, 1);
            assert_eq!(s.try_recv(Selector::Any, &mut b).unwrap().1, 1);
        });
        taken.join();
    }
    assert!(matches!(p.recv_timeout(&mut buf, Duration::ZERO), Err(Error::Timeout)));
    assert!(matches!(s.recv_timeout(Selector::Any, &mut buf, Duration::ZERO), Err(Error::Timeout)));
}

fn sysv_removed_on_every_path() {
    use ipc_kit::{MessageReceiver, MessageSender};
    let q = SysvQueue::create(Key::private(), 0o600).unwrap();
    let mut other = SysvQueue::open_id(q.id()).unwrap();
    q.send(1, b"left").unwrap();
    // Another process removes it; every call here then says Removed.
    let id = q.id();
    fork(move || SysvQueue::open_id(id).unwrap().remove().unwrap()).join();
    let mut buf = [0u8; 16];
    let mut vec = Vec::new();
    let removed = |what: &str, r: Result<(), Error>| match r {
        Err(Error::Removed { .. }) => {}
        other => panic!("{what} after removal: expected Removed, got {other:?}"),
    };
    let ms = Duration::from_millis(50);
    removed("recv", q.recv(Selector::Any, &mut buf).map(drop));
    removed("try_recv", q.try_recv(Selector::Any, &mut buf).map(drop));
    removed("recv_timeout", q.recv_timeout(Selector::Any, &mut buf, ms).map(drop));
    removed("recv_timeout(0)", q.recv_timeout(Selector::Any, &mut buf, Duration::ZERO).map(drop));
    removed("recv_deadline", q.recv_deadline(Selector::Exactly(3), &mut buf, Instant::now() + ms).map(drop));
    removed("recv_truncating", q.recv_truncating(Selector::Any, &mut buf).map(drop));
    removed("recv_vec", q.recv_vec(Selector::Any, &mut vec).map(drop));
    removed("try_recv_vec", q.try_recv_vec(Selector::Any, &mut vec).map(drop));
    removed("recv_vec_timeout", q.recv_vec_timeout(Selector::Any, &mut vec, ms).map(drop));
    removed("recv_pod", q.recv_pod::<u32>(Selector::Any).map(drop));
    removed("send", q.send(1, b"x"));
    removed("try_send", q.try_send(1, b"x"));
    removed("send_timeout", q.send_timeout(1, b"x", ms));
    removed("send_deadline", q.send_deadline(1, b"x", Instant::now()));
    removed("send_pod", q.send_pod(1, &7u32));
    removed("stat", q.stat().map(drop));
    // Through the traits, a removed queue is a disconnected peer.
    let gone = |what: &str, r: Result<(), ipc_kit::traits::Error>| match r {
        Err(ipc_kit::traits::Error::Disconnected) => {}
        other => panic!("{what} through the traits: expected Disconnected, got {other:?}"),
    };
    gone("recv", MessageReceiver::recv(&mut other, &mut vec).map(drop));
    gone("try_recv", MessageReceiver::try_recv(&mut other, &mut vec).map(drop));
    gone("recv_timeout", MessageReceiver::recv_timeout(&mut other, &mut vec, ms).map(drop));
    gone("send", MessageSender::send(&mut other, b"x"));
    gone("try_send", MessageSender::try_send(&mut other, b"x"));
    gone("send_timeout", MessageSender::send_timeout(&mut other, b"x", ms));
}

fn sysv_message_over_capacity_is_too_large() {
    use ipc_kit::MessageSender;
    let q = SysvQueue::create(Key::private(), 0o600).unwrap();
    q.set_capacity(100).unwrap();
    let too_large = |what: &str, r: Result<(), Error>| match r {
        Err(Error::MessageTooLarge { len: 200, max: 100, .. }) => {}
        other => panic!("{what} of 200 bytes into a 100-byte queue: expected MessageTooLarge, got {other:?}"),
    };
    // In another process, so that a send that waits for good is seen and
    // killed rather than hanging the case.
    let mut sender = fork(|| {
        let q = SysvQueue::open_id(q.id()).unwrap();
        too_large("send", q.send(1, &[7; 200]));
        too_large("try_send", q.try_send(1, &[7; 200]));
        too_large("send_timeout", q.send_timeout(1, &[7; 200], Duration::from_secs(30)));
        too_large("send_deadline", q.send_deadline(1, &[7; 200], Instant::now()));
        let mut t = SysvQueue::open_id(q.id()).unwrap();
        match MessageSender::send(&mut t, &[7; 200]) {
            Err(ipc_kit::traits::Error::TooLarge { len: 200, max: 100 }) => {}
            other => panic!("send through the traits: expected TooLarge, got {other:?}"),
        }
    });
    match sender.wait_timeout(Duration::from_secs(10)) {
        Some(Exit::Code(0)) => {}
        None => {
            sender.kill();
            panic!("a send over the queue's capacity waited instead of failing");
        }
        Some(other) => panic!("sender: {other:?}"),
    }
    assert_eq!(q.stat().unwrap().messages, 0, "nothing was sent");
    // The limit itself fits; with the queue full, limit + 1 is too large
    // and a message that fits an empty queue is only Full.
    q.try_send(1, &[1; 100]).unwrap();
    assert!(matches!(q.try_send(1, &[1; 50]), Err(Error::Full)));
    assert!(matches!(q.try_send(1, &[1; 101]), Err(Error::MessageTooLarge { len: 101, max: 100, .. })));
    assert!(matches!(q.send_timeout(1, &[1; 50], Duration::ZERO), Err(Error::Timeout)));
    let mut buf = [0u8; 128];
    assert_eq!(q.try_recv(Selector::Any, &mut buf).unwrap(), (1, 100));
    q.send(1, &[2; 100]).unwrap();
}

fn sysv_recv_vec_after_msgmax_raised() {
    // msgmax belongs to the IPC namespace: raise it in a private one.
    let child = fork(|| {
        let max = ipc_kit::msgq::sysv_max_message();
        let q = SysvQueue::create(Key::private(), 0o600).unwrap();
        let mut vec = Vec::new();
        q.send(1, &vec![3; max]).unwrap();
        assert_eq!(q.recv_vec(Selector::Any, &mut vec).unwrap(), 1);
        assert_eq!(vec.len(), max, "a message of msgmax bytes");
        drop(q);
        if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC).is_err() {
            // Unprivileged: msgmax cannot be raised here, which is all
            // that applies.
            return;
        }
        let max = ipc_kit::msgq::sysv_max_message();
        let raised = max * 2;
        std::fs::write("/proc/sys/kernel/msgmax", raised.to_string()).unwrap();
        // A new queue's capacity is msgmnb: room for both messages below.
        std::fs::write("/proc/sys/kernel/msgmnb", (raised * 2 + max).to_string()).unwrap();
        let q = SysvQueue::create(Key::private(), 0o600).unwrap();
        let big = ipc_kit_tests::pattern(11, raised);
        q.send(5, &big).unwrap();
        assert_eq!(q.recv_vec(Selector::Any, &mut vec).unwrap(), 5, "a message of the raised msgmax");
        assert!(vec == big, "received exactly what was sent");
        q.send(6, &big[..max + 1]).unwrap();
        assert_eq!(q.try_recv_vec(Selector::Any, &mut vec).unwrap(), 6);
        assert_eq!(vec.len(), max + 1);
        // Lowered again: the kernel refuses a send over it, as too large.
        std::fs::write("/proc/sys/kernel/msgmax", max.to_string()).unwrap();
        assert!(matches!(q.send(1, &big), Err(Error::MessageTooLarge { .. })));
    });
    child.join();
}

/// Panics (in a child) when a POSIX queue whose name starts with `prefix`
/// exists in this IPC namespace, listed through a private mqueue mount
/// (root only; elsewhere nothing applies).
fn assert_no_posix_queue_named(prefix: &str) {
    let dir = ScratchDir::new();
    let mnt = dir.path().join("mq");
    std::fs::create_dir(&mnt).unwrap();
    fork(|| {
        use nix::mount::MsFlags;
        if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).is_err() {
            return;
        }
        nix::mount::mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
            .unwrap();
        nix::mount::mount(Some("mqueue"), &mnt, Some("mqueue"), MsFlags::empty(), None::<&str>).unwrap();
        let left: Vec<String> = std::fs::read_dir(&mnt)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix))
            .collect();
        assert!(left.is_empty(), "POSIX queues left behind: {left:?}");
    })
    .join();
}

fn pair_names_survive_pid_reuse_and_crashes() {
    use ipc_kit::Mechanism;
    let tmp = std::env::temp_dir();
    // What a killed process with this pid left, before the pid came back.
    fork(|| {
        let pid = std::process::id();
        let attr = QueueAttr { max_messages: 1, message_size: 8 };
        let mut stale = Vec::new();
        for n in 0..8 {
            let mut q = PosixQueue::create(&format!("/ipc-kit-pair-{pid}-{n}"), attr, 0o600).unwrap();
            q.persist();
            stale.push(q);
            std::fs::create_dir(tmp.join(format!("ipc-kit-pair-{pid}-{n}"))).unwrap();
        }
        let results: Vec<_> = [Mechanism::PosixQueue, Mechanism::Fifo]
            .into_iter()
            .map(|m| {
                let r = m.pair().map(|mut p| {
                    p.sender.send(b"fresh").unwrap();
                    let mut buf = Vec::new();
                    p.receiver.recv(&mut buf).unwrap();
                    buf
                });
                (m, r)
            })
            .collect();
        // Unlocked, they are a dead maker's: the pairs swept them first.
        let mut unswept = Vec::new();
        for (n, mut q) in stale.into_iter().enumerate() {
            if q.unlink().is_ok() {
                unswept.push(format!("/ipc-kit-pair-{pid}-{n}"));
            }
            if std::fs::remove_dir(tmp.join(format!("ipc-kit-pair-{pid}-{n}"))).is_ok() {
                unswept.push(format!("{}/ipc-kit-pair-{pid}-{n}", tmp.display()));
            }
        }
        for (m, r) in results {
            assert_eq!(
                r.unwrap_or_else(|e| panic!("{} pair beside a dead namesake's leftovers: {e}", m.name())),
                b"fresh"
            );
        }
        assert!(unswept.is_empty(), "a dead namesake's leftovers were not swept (now removed): {unswept:?}");
    })
    .join();
    // A process killed while holding pairs leaves nothing behind.
    let mut holder = fork(|| {
        let mut pairs = Vec::new();
        for m in [Mechanism::PosixQueue, Mechanism::Fifo, Mechanism::PosixQueue] {
            let mut p = m.pair().unwrap();
            p.sender.send(b"held").unwrap();
            pairs.push(p);
        }
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL).unwrap();
    });
    let pid = holder.pid();
    assert!(matches!(holder.wait(), Exit::Signaled(nix::sys::signal::Signal::SIGKILL)));
    let prefix = format!("ipc-kit-pair-{pid}-");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let removed: Vec<_> = left.iter().map(|n| std::fs::remove_dir_all(tmp.join(n))).collect();
    assert!(left.is_empty(), "left in {}: {left:?} (now removed: {removed:?})", tmp.display());
    if let Ok(mut q) = PosixQueue::open(&format!("/{prefix}0")) {
        q.unlink().unwrap();
        panic!("the POSIX queue /{prefix}0 was left behind");
    }
    assert_no_posix_queue_named(&prefix);
}

fn posix_dot_names_are_invalid() {
    // "/." and "/.." name the mqueue directory and its parent, not queues.
    let attr = QueueAttr { max_messages: 1, message_size: 8 };
    for name in ["/.", "/.."] {
        let r = PosixQueue::create(name, attr, 0o600);
        assert!(matches!(r, Err(Error::InvalidName { .. })), "create {name}: {r:?}");
        let r = PosixQueue::open(name);
        assert!(matches!(r, Err(Error::InvalidName { .. })), "open {name}: {r:?}");
        let r = PosixQueue::open_or_create(name, attr, 0o600);
        assert!(matches!(r, Err(Error::InvalidName { .. })), "open_or_create {name}: {r:?}");
    }
    // A child as nobody gets the same answer, not PermissionDenied.
    fork(|| {
        become_nobody();
        let r = PosixQueue::create("/.", attr, 0o600);
        assert!(matches!(r, Err(Error::InvalidName { .. })), "create /. as nobody: {r:?}");
    })
    .join();
}

/// A blocking send already waiting when the capacity is lowered below its
/// message goes on waiting (the kernel checks only before it waits); a
/// timed send started then says `MessageTooLarge`; raising the capacity
/// again lets the waiting send through, whole.
fn sysv_capacity_lowered_under_a_waiting_sender() {
    let q = SysvQueue::create(Key::private(), 0o600).unwrap();
    q.set_capacity(300).unwrap();
    q.send(1, &[1; 200]).unwrap();
    let id = q.id();
    let mut waiting = fork(|| SysvQueue::open_id(id).unwrap().send(2, &[2; 200]).unwrap());
    // Until the sender waits in the kernel (its message does not fit):
    // its wait channel says so where the kernel shows it; else it is
    // asleep and the queue is unchanged, and it is given a moment more.
    let until = Instant::now() + Duration::from_secs(10);
    let pid = waiting.pid();
    loop {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        if wchan.contains("msgsnd") {
            break;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let asleep = stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('S'));
        if !wchan.contains("msg") && asleep {
            std::thread::sleep(Duration::from_millis(200));
            break;
        }
        assert!(Instant::now() < until, "the sender never waited");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(q.stat().unwrap().messages, 1, "the second message did not fit");
    q.set_capacity(150).unwrap();
    match q.send_timeout(3, &[3; 200], Duration::from_secs(5)) {
        Err(Error::MessageTooLarge { len: 200, max: 150, .. }) => {}
        other => panic!("a timed send over the lowered capacity: expected MessageTooLarge, got {other:?}"),
    }
    assert_eq!(waiting.wait_timeout(Duration::from_millis(300)), None, "the waiting send gave up");
    let mut buf = [0u8; 256];
    assert_eq!(q.recv(Selector::Any, &mut buf).unwrap(), (1, 200));
    // Room for 200 bytes would be there, but not within 150.
    assert_eq!(waiting.wait_timeout(Duration::from_millis(300)), None, "the waiting send fit 150 bytes");
    q.set_capacity(300).unwrap();
    assert_eq!(waiting.wait_timeout(Duration::from_secs(10)), Some(Exit::Code(0)), "the waiting send went through");
    assert_eq!(q.recv(Selector::Any, &mut buf).unwrap(), (2, 200));
    assert_eq!(buf[..200], [2; 200]);
}

/// As the traits document: a queue records no peer, so the receiver of a
/// queue pair whose sender was killed gets what it sent, then waits
/// (`Timeout`, not `Disconnected`); only removal disconnects.
fn queue_pairs_outlive_a_killed_peer() {
    use ipc_kit::{Mechanism, traits::Error as TraitError};
    for m in [Mechanism::SysvQueue, Mechanism::PosixQueue] {
        let mut pair = m.pair().unwrap();
        let mut sender = fork(|| {
            pair.sender.send(b"last words").unwrap();
            std::thread::sleep(Duration::from_secs(60));
        });
        let mut buf = Vec::new();
        assert_eq!(pair.receiver.recv_timeout(&mut buf, Duration::from_secs(10)).unwrap(), 10, "{}", m.name());
        sender.kill();
        sender.wait();
        match pair.receiver.recv_timeout(&mut buf, Duration::from_millis(100)) {
            Err(TraitError::Timeout) => {}
            other => panic!("{}: expected Timeout, got {other:?}", m.name()),
        }
    }
}

/// A thread's goodbye: a value in a thread-local whose drop, as the thread
/// ends, receives from and sends to a System V queue. By then the thread's
/// other thread-locals (those first used after it was set) are gone, so a
/// send or receive must not need them: it works, and does not abort the
/// process.
fn sysv_send_and_recv_in_a_thread_local_destructor() {
    use std::cell::RefCell;

    struct Goodbye(i32);
    impl Drop for Goodbye {
        fn drop(&mut self) {
            let q = SysvQueue::open_id(self.0).unwrap();
            let mut buf = [0u8; 16];
            let hello = matches!(q.try_recv(Selector::Exactly(1), &mut buf), Ok((1, 5))) && buf[..5] == *b"hello";
            q.send(2, b"goodbye").unwrap();
            q.send(3, &[u8::from(hello)]).unwrap();
        }
    }
    thread_local! {
        static GOODBYE: RefCell<Option<Goodbye>> = const { RefCell::new(None) };
    }

    let q = SysvQueue::create(Key::private(), 0o600).unwrap();
    let id = q.id();
    let child = fork(|| {
        std::thread::spawn(move || {
            // Set first, so its destructor runs after those of the
            // thread-locals the send below may use (they run in reverse).
            GOODBYE.with(|g| *g.borrow_mut() = Some(Goodbye(id)));
            SysvQueue::open_id(id).unwrap().send(1, b"hello").unwrap();
        })
        .join()
        .unwrap();
    });
    child.join();
    let mut buf = [0u8; 16];
    assert_eq!(q.try_recv(Selector::Exactly(2), &mut buf).unwrap(), (2, 7), "the goodbye was sent");
    assert_eq!(buf[..7], *b"goodbye");
    assert_eq!(q.try_recv(Selector::Exactly(3), &mut buf).unwrap(), (3, 1));
    assert_eq!(buf[0], 1, "the goodbye received the hello");
    assert_eq!(q.stat().unwrap().messages, 0);
}

/// A System V send from a signal handler that interrupts a receive
/// waiting on the same thread: the handler's send does not touch the
/// waiting receive's buffer, goes through, and the receive (retried after
/// the signal) takes its message.
fn sysv_send_from_a_signal_handler_during_a_receive() {
    #![allow(unsafe_code)]
    use std::sync::atomic::{AtomicBool, AtomicI32};

    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

    static QUEUE: AtomicI32 = AtomicI32::new(0);
    static SENT: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_alarm(_: libc::c_int) {
        // Nothing here allocates on success: the queue is opened by id and
        // msgmax was read before.
        let sent = SysvQueue::open_id(QUEUE.load(Ordering::SeqCst)).and_then(|q| q.try_send(5, b"from the handler"));
        SENT.store(sent.is_ok(), Ordering::SeqCst);
    }

    let q = SysvQueue::create(Key::private(), 0o600).unwrap();
    let child = fork(|| {
        QUEUE.store(q.id(), Ordering::SeqCst);
        q.send(1, b"warm up").unwrap(); // reads msgmax
        let mut buf = [0u8; 64];
        assert_eq!(q.recv(Selector::Exactly(1), &mut buf).unwrap(), (1, 7));
        let action = SigAction::new(SigHandler::Handler(on_alarm), SaFlags::empty(), SigSet::empty());
        // SAFETY: the handler touches atomics and the queue by id only;
        // this process has one thread.
        unsafe { sigaction(Signal::SIGALRM, &action) }.unwrap();
        nix::unistd::alarm::set(1);
        let got = q.recv(Selector::Exactly(5), &mut buf).unwrap();
        assert!(SENT.load(Ordering::SeqCst), "the handler's send failed");
        assert_eq!((got.0, &buf[..got.1]), (5, &b"from the handler"[..]));
    });
    child.join();
    assert_eq!(q.stat().unwrap().messages, 0);
}
