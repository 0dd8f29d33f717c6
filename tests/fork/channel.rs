//! Shared-memory channels between real processes.

use std::os::unix::fs::FileTypeExt;
use std::time::{Duration, Instant};

use ipc_kit::pipe::ChildFds;
use ipc_kit::shm::channel::Handoff;
use ipc_kit::shm::{ByteChannel, Channel, Error, Mapping, PosixShm, WaitPolicy, byte_channel, channel};
use ipc_kit_tests::{
    Exit, cases, checksum, fork, fork_in_new_pid_namespace, helper_command, inherited_fd, pattern, unique_name,
};
use nix::sys::signal::Signal;

cases!("shm::channel", helpers ["channel-named-recv" => named_recv_helper, "channel-memfd-recv" => memfd_recv_helper]:
    doorbells_handed_over_in_blocking_mode_keep_every_call_from_waiting,
    a_handoff_whose_doorbells_are_not_the_channels_still_delivers_to_pollers,
    ten_million_u64_in_order,
    byte_records_up_to_64k_with_checksums,
    sender_killed_mid_stream_disconnects,
    receiver_killed_blocked_sender_disconnects,
    hostile_peer_scribbles_on_slot_channel,
    hostile_peer_scribbles_on_byte_channel,
    timeouts_fire_within_bounds,
    named_channel_in_exec_child,
    memfd_channel_in_exec_child,
    every_wait_policy_delivers,
    sleepers_are_woken_by_sides_that_keep_no_full_barrier,
    round_trips_do_not_slip,
    stale_named_channel_is_reclaimed,
    named_channel_held_by_a_live_process_is_not_reclaimed,
    reclaim_leaves_foreign_objects_alone,
    byte_indices_off_a_record_boundary_are_refused,
    peer_gone_before_claiming_is_noticed,
    peer_gone_before_claiming_is_noticed_through_the_traits,
    a_side_given_up_cannot_be_claimed_after_fork,
    peer_in_another_pid_namespace_is_watched,
    try_send_reports_a_killed_receiver,
    reclaim_takes_over_only_a_channel_nobody_holds,
    a_state_word_written_by_a_peer_cannot_hide_a_death,
    without_proc_a_named_side_is_watched_and_a_memfd_side_refused,
    a_sender_that_wants_a_lead_takes_any_room_in_the_end,
    large_batches_reach_the_receiver_run_by_run,
    a_receiver_that_slipped_in_a_stream_still_takes_a_single_message_at_once,
    a_sleeping_sender_takes_the_room_there_is_within_its_timeout,
    a_channel_shrunk_to_nothing_reports_truncated_in_every_form,
    every_send_form_takes_the_room_a_slow_receiver_frees,
    every_byte_send_form_takes_the_room_a_slow_receiver_frees_at_the_wrap_point,
    impossible_indices_and_record_headers_give_corrupted_in_every_form,
);

fn ten_million_u64_in_order() {
    const N: u64 = 10_000_000;
    let chan = channel::<u64>(4096).unwrap();
    let sender = fork(|| {
        let mut tx = chan.sender().unwrap();
        let mut batch = [0u64; 256];
        let mut next = 0;
        while next < N {
            let n = (N - next).min(256) as usize;
            for (i, v) in batch[..n].iter_mut().enumerate() {
                *v = next + i as u64;
            }
            tx.send_many(&batch[..n]).unwrap();
            next += n as u64;
        }
    });
    let mut rx = chan.receiver().unwrap();
    let mut buf = [0u64; 512];
    let mut expected = 0;
    while expected < N {
        let n = rx.recv_many(&mut buf).unwrap();
        for &v in &buf[..n] {
            assert_eq!(v, expected, "lost, duplicated or out of order");
            expected += 1;
        }
    }
    assert!(matches!(rx.recv_timeout(Duration::from_secs(10)), Err(Error::Disconnected)));
    sender.join();
    let stats = rx.stats();
    println!("receiver: {} wakes, {} sleeps for {N} messages", stats.wakes, stats.sleeps);
}

fn byte_records_up_to_64k_with_checksums() {
    const RECORDS: u64 = 3000;
    let chan = byte_channel(1 << 20).unwrap();
    let sender = fork(|| {
        let mut tx = chan.sender().unwrap();
        for i in 0..RECORDS {
            let len = (i.wrapping_mul(2_654_435_761) % 65_537) as usize; // 0..=64 KiB
            let body = pattern(i, len);
            if i % 2 == 0 {
                tx.send(&body).unwrap();
            } else {
                // In place: write the record straight into the ring.
                let mut r = tx.reserve(len).unwrap();
                r.as_mut_slice().copy_from_slice(&body);
                r.commit();
            }
        }
    });
    let mut rx = chan.receiver().unwrap();
    let mut buf = Vec::new();
    for i in 0..RECORDS {
        let len = (i.wrapping_mul(2_654_435_761) % 65_537) as usize;
        if i % 3 == 0 {
            let sum = rx.recv_with(|b| (b.len(), checksum(b))).unwrap();
            assert_eq!(sum, (len, checksum(&pattern(i, len))), "record {i}");
        } else {
            assert_eq!(rx.recv(&mut buf).unwrap(), len);
            assert!(buf == pattern(i, len), "record {i} differs");
        }
    }
    assert!(matches!(rx.recv(&mut buf), Err(Error::Disconnected)));
    sender.join();
}

/// Waits up to 10 s for the 32-bit word at `offset` of `map` to be `want`.
fn wait_for_word(map: &Mapping, offset: usize, want: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while map.read::<u32>(offset).unwrap() != want {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A sender that finds its ring full holds out a moment for a lead of free
/// room (32 slots or an eighth of the ring; for a byte channel 2 KiB or
/// an eighth) before it writes again, so as not to write into the lines a
/// receiver that keeps up is reading. A receiver that frees less than
/// that and then stops taking must still let every blocking form through:
/// `send`, `send_timeout` and `send_many` of a slot channel, `send` of a
/// byte channel. Everything arrives once, in order.
fn a_sender_that_wants_a_lead_takes_any_room_in_the_end() {
    let chan = channel::<u64>(1024).unwrap();
    let bytes = byte_channel(4096).unwrap();
    let map = Mapping::anonymous(4096).unwrap();
    let mut sender = fork(|| {
        let mut tx = chan.sender().unwrap();
        for i in 0..1024 {
            tx.try_send(i).unwrap();
        }
        map.write(0, &1u32).unwrap();
        tx.send(1024).unwrap();
        map.write(4, &1u32).unwrap();
        tx.send_timeout(1025, Duration::from_secs(10)).unwrap();
        map.write(8, &1u32).unwrap();
        tx.send_many(&[1026, 1027]).unwrap();
        map.write(12, &1u32).unwrap();
        let mut btx = bytes.sender().unwrap();
        let mut sent = 0u32;
        while btx.try_send(&[sent as u8; 100]).is_ok() {
            sent += 1;
        }
        map.write(16, &sent).unwrap();
        btx.send(&[sent as u8; 100]).unwrap();
        map.write(20, &1u32).unwrap();
    });
    let mut rx = chan.receiver().unwrap();
    wait_for_word(&map, 0, 1, "the sender filling its ring");
    assert_eq!(rx.recv().unwrap(), 0);
    wait_for_word(&map, 4, 1, "send into the one slot freed");
    assert_eq!(rx.recv().unwrap(), 1);
    wait_for_word(&map, 8, 1, "send_timeout into the one slot freed");
    assert_eq!((rx.recv().unwrap(), rx.recv().unwrap()), (2, 3));
    wait_for_word(&map, 12, 1, "send_many into the two slots freed");
    for i in 4..1028 {
        assert_eq!(rx.recv().unwrap(), i);
    }
    let mut brx = bytes.receiver().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while map.read::<u32>(16).unwrap() == 0 {
        assert!(Instant::now() < deadline, "the byte sender filling its ring: not within 10 s");
        std::thread::sleep(Duration::from_millis(1));
    }
    let full = map.read::<u32>(16).unwrap();
    let mut buf = Vec::new();
    brx.recv(&mut buf).unwrap();
    assert_eq!(buf, [0u8; 100]);
    wait_for_word(&map, 20, 1, "a byte send into the one record's room freed");
    for i in 1..=full {
        brx.recv(&mut buf).unwrap();
        assert_eq!(buf, [i as u8; 100], "record {i}");
    }
    assert_eq!(sender.wait(), Exit::Code(0));
}

/// `send_many` and `recv_many` publish a run of at most 16 KiB of slots at
/// a time: a batch of large messages reaches the receiver run by run, so
/// a batch larger than the ring goes through, in order, whole, and a
/// receiver taking them one at a time never waits for a whole batch.
fn large_batches_reach_the_receiver_run_by_run() {
    type Big = [u64; 1024]; // 8 KiB: two to a run
    let chan = channel::<Big>(8).unwrap();
    let sender = fork(|| {
        let mut tx = chan.sender().unwrap();
        let batch: Vec<Big> = (0..40u64).map(|i| [i; 1024]).collect();
        for _ in 0..50 {
            tx.send_many(&batch).unwrap();
        }
    });
    let mut rx = chan.receiver().unwrap();
    let mut out = vec![[0u64; 1024]; 5];
    let mut got = 0u64;
    while got < 2000 {
        let n = if got.is_multiple_of(3) {
            rx.recv_many(&mut out).unwrap()
        } else {
            rx.recv_into(&mut out[0]).map(|()| 1).unwrap()
        };
        for m in &out[..n] {
            assert!(m.iter().all(|&w| w == got % 40), "message {got}");
            got += 1;
        }
    }
    sender.join();
}

fn sender_killed_mid_stream_disconnects() {
    let chan = channel::<u64>(64).unwrap();
    let mut sender = fork(|| {
        let mut tx = chan.sender().unwrap();
        for i in 0.. {
            tx.send(i).unwrap();
        }
    });
    let mut rx = chan.receiver().unwrap();
    for i in 0..10_000 {
        assert_eq!(rx.recv().unwrap(), i);
    }
    sender.kill();
    let killed = Instant::now();
    assert_eq!(sender.wait(), Exit::Signaled(Signal::SIGKILL));
    let mut last = 9_999;
    let err = loop {
        match rx.recv() {
            Ok(v) => {
                assert_eq!(v, last + 1, "what it sent still arrives, in order");
                last = v;
            }
            Err(e) => break e,
        }
    };
    let noticed = killed.elapsed();
    assert!(matches!(err, Error::Disconnected), "{err}");
    println!("a killed sender was noticed after {noticed:?}");
    assert!(noticed < Duration::from_millis(600), "noticed only after {noticed:?}");
}

fn receiver_killed_blocked_sender_disconnects() {
    let chan = byte_channel(4096).unwrap();
    let map = Mapping::anonymous(4096).unwrap();
    let mut receiver = fork(|| {
        let _rx = chan.receiver().unwrap();
        map.write(0, &1u32).unwrap(); // connected
        std::thread::sleep(Duration::from_secs(60));
    });
    while map.read::<u32>(0).unwrap() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut tx = chan.sender().unwrap();
    while tx.try_send(&[1; 1000]).is_ok() {}
    // Killed and not yet reaped (a zombie): gone all the same.
    receiver.kill();
    let t = Instant::now();
    assert!(matches!(tx.send(&[2; 1000]), Err(Error::Disconnected)));
    assert!(t.elapsed() < Duration::from_millis(600), "{:?}", t.elapsed());
    assert_eq!(receiver.wait(), Exit::Signaled(Signal::SIGKILL));
}

/// A process that writes random bytes at random places of the channel's
/// memory (header, indices, status, ring) for `run`.
fn scribble(map: &Mapping, run: Duration) -> ipc_kit_tests::Forked {
    let len = map.len();
    fork(move || {
        let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id());
        let t = Instant::now();
        while t.elapsed() < run {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x % (len as u64 - 8)) as usize & !7;
            map.write(at, &x.rotate_left(17)).unwrap();
            if x.is_multiple_of(64) {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    })
}

fn hostile_peer_scribbles_on_slot_channel() {
    let chan = channel::<[u64; 2]>(256).unwrap();
    let sender = fork(|| {
        let Ok(mut tx) = chan.sender() else { return };
        for i in 0u64.. {
            if tx.send_timeout([i, i ^ 0xABCD], Duration::from_secs(2)).is_err() {
                return; // corrupted, disconnected or stuck: fine, no crash
            }
        }
    });
    // The receiver is claimed before the scribbling starts: a claim
    // amid scribbled state words may be refused, which is not what this
    // case is about.
    let mut rx = chan.receiver().unwrap();
    let mut hostile = scribble(chan.mapping(), Duration::from_millis(800));
    let (mut ok, mut errors) = (0u64, 0u64);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(_) => ok += 1, // any bytes are a valid [u64; 2]
            Err(Error::Corrupted { .. } | Error::Timeout | Error::Disconnected) => errors += 1,
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    }
    println!("{ok} messages and {errors} errors under a hostile peer");
    assert_eq!(hostile.wait(), Exit::Code(0));
    drop(rx);
    let mut sender = sender;
    sender.kill();
    assert!(matches!(sender.wait(), Exit::Code(0) | Exit::Signaled(Signal::SIGKILL)), "the sender did not crash");
}

fn hostile_peer_scribbles_on_byte_channel() {
    let chan = byte_channel(1 << 16).unwrap();
    let sender = fork(|| {
        let Ok(mut tx) = chan.sender() else { return };
        for i in 0u64.. {
            let body = pattern(i, (i % 3000) as usize);
            if tx.send_timeout(&body, Duration::from_secs(2)).is_err() {
                return;
            }
        }
    });
    // The receiver is claimed before the scribbling starts: a claim
    // amid scribbled state words may be refused, which is not what this
    // case is about.
    let mut rx = chan.receiver().unwrap();
    let mut hostile = scribble(chan.mapping(), Duration::from_millis(800));
    let max = chan.max_record();
    let mut buf = Vec::new();
    let (mut ok, mut errors) = (0u64, 0u64);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        match rx.recv_timeout(&mut buf, Duration::from_millis(50)) {
            Ok(n) => {
                assert!(n <= max, "a record longer than the channel allows");
                ok += 1;
            }
            Err(Error::Corrupted { .. } | Error::Timeout | Error::Disconnected) => errors += 1,
            Err(e) => panic!("unexpected error kind: {e}"),
        }
        assert!(buf.capacity() <= max.max(64) * 2, "no huge allocation");
    }
    println!("{ok} records and {errors} errors under a hostile peer");
    assert_eq!(hostile.wait(), Exit::Code(0));
    drop(rx);
    let mut sender = sender;
    sender.kill();
    assert!(matches!(sender.wait(), Exit::Code(0) | Exit::Signaled(Signal::SIGKILL)));
}

fn timeouts_fire_within_bounds() {
    let chan = channel::<u32>(2).unwrap();
    let map = Mapping::anonymous(4096).unwrap();
    let idle = fork(|| {
        let _rx = chan.receiver().unwrap();
        map.write(0, &1u32).unwrap();
        while map.read::<u32>(0).unwrap() != 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    while map.read::<u32>(0).unwrap() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut tx = chan.sender().unwrap();
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    for policy in [WaitPolicy::Adaptive, WaitPolicy::Block, WaitPolicy::Spin] {
        tx.set_wait_policy(policy);
        let t = Instant::now();
        assert!(matches!(tx.send_timeout(3, Duration::from_millis(120)), Err(Error::Timeout)), "{policy:?}");
        ipc_kit_tests::assert_fired_within(t.elapsed(), Duration::from_millis(120), Duration::from_secs(1));
    }
    assert!(matches!(tx.try_send(3), Err(Error::Full)));
    map.write(0, &2u32).unwrap();
    idle.join();

    let quiet = channel::<u32>(8).unwrap();
    let _tx = quiet.sender().unwrap();
    let mut rx = quiet.receiver().unwrap();
    let t = Instant::now();
    assert!(matches!(rx.recv_timeout(Duration::from_millis(150)), Err(Error::Timeout)));
    ipc_kit_tests::assert_fired_within(t.elapsed(), Duration::from_millis(150), Duration::from_secs(1));
    assert!(matches!(rx.try_recv(), Err(Error::Empty)));
}

fn named_recv_helper(args: &[String]) {
    let chan = Channel::<u64>::open(&args[0]).unwrap();
    assert!(matches!(Channel::<u32>::open(&args[0]), Err(Error::LayoutMismatch { .. })));
    let mut rx = chan.receiver().unwrap();
    let n: u64 = args[1].parse().unwrap();
    for i in 0..n {
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), i * 3);
    }
    assert!(matches!(rx.recv_timeout(Duration::from_secs(10)), Err(Error::Disconnected)));
}

fn named_channel_in_exec_child() {
    let name = format!("/{}", unique_name("ipc-kit-test-chan"));
    let chan = Channel::<u64>::create(&name, 128).unwrap();
    let mut child = helper_command("channel-named-recv", &[&name, "100000"]).spawn().unwrap();
    let mut tx = chan.sender().unwrap();
    for i in 0..100_000u64 {
        tx.send(i * 3).unwrap();
    }
    drop(tx);
    assert!(child.wait().unwrap().success());
    drop(chan);
    assert!(matches!(PosixShm::open(&name), Err(Error::NotFound { .. })), "the creator unlinked the name");
}

// The exec'd program gets the channel's memfd and doorbells at fds 3, 4
// and 5, opens it from that handoff and waits with a `Poller`: on the
// doorbell the sender rings, with no watching thread of its own.
fn memfd_recv_helper(args: &[String]) {
    let handoff = Handoff::from_fds(inherited_fd(3), [inherited_fd(4), inherited_fd(5)]).unwrap();
    let chan = ByteChannel::from_handoff(handoff).unwrap();
    let mut rx = chan.receiver().unwrap();
    let mut poller = ipc_kit::Poller::new().unwrap();
    poller.add(&rx, ipc_kit::Interest::Readable, 7).unwrap();
    let threads = ipc_kit_tests::thread_count();
    let n: u64 = args[0].parse().unwrap();
    let mut buf = Vec::new();
    let mut i = 0;
    while i < n {
        match rx.try_recv(&mut buf) {
            Ok(_) => {
                assert!(buf == pattern(i, (i % 5000) as usize));
                i += 1;
            }
            Err(Error::Empty) => assert_eq!(poller.wait_timeout(Duration::from_secs(10)).unwrap(), [7], "woken"),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ipc_kit_tests::thread_count(), threads, "the doorbell needs no watching thread");
    assert!(matches!(rx.recv_timeout(&mut buf, Duration::from_secs(10)), Err(Error::Disconnected)));
}

fn memfd_channel_in_exec_child() {
    memfd_channel_handed_over(20_000, false);
    // Doorbells handed over the wrong way round: the receiver's pollers are
    // never rung, and still see every message (they look again every
    // 20 ms).
    memfd_channel_handed_over(2_000, true);
}

fn memfd_channel_handed_over(n: u64, swapped: bool) {
    let chan = ByteChannel::new_memfd(1 << 16).unwrap();
    let mut cmd = helper_command("channel-memfd-recv", &[&n.to_string()]);
    let (memfd, [a, b]) = chan.handoff().unwrap().into_fds();
    let (a, b) = if swapped { (b, a) } else { (a, b) };
    let mut fds = ChildFds::new();
    fds.insert(3, memfd).unwrap().insert(4, a).unwrap().insert(5, b).unwrap();
    fds.apply(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut tx = chan.sender().unwrap();
    for i in 0..n {
        tx.send(&pattern(i, (i % 5000) as usize)).unwrap();
        if i % 1000 == 0 {
            std::thread::sleep(Duration::from_millis(2)); // the receiver waits on its poller now and then
        }
    }
    drop(tx);
    assert!(child.wait().unwrap().success());
    // Only a channel in a memfd is handed over.
    assert!(matches!(byte_channel(64).unwrap().handoff(), Err(Error::LayoutMismatch { .. })));
}

fn every_wait_policy_delivers() {
    for policy in [WaitPolicy::Spin, WaitPolicy::Adaptive, WaitPolicy::Block] {
        let chan = channel::<u32>(16).unwrap();
        let child = fork(|| {
            let mut rx = chan.receiver().unwrap();
            rx.set_wait_policy(policy);
            for i in 0..20_000 {
                assert_eq!(rx.recv().unwrap(), i);
            }
        });
        let mut tx = chan.sender().unwrap();
        tx.set_wait_policy(policy);
        for i in 0..20_000 {
            tx.send(i).unwrap();
            if i % 5000 == 0 {
                std::thread::sleep(Duration::from_millis(5)); // let the receiver fall asleep
            }
        }
        child.join();
    }
}

/// Both processes sleep at once (`Block`) and take turns, so every message
/// wakes a sleeper: the race in which a lost wake-up would show, 5,000
/// times each way. Where both processes register for `membarrier`, the
/// sides publish without a full barrier and every sleeper forces one on
/// its peer first; the counts show which protocol ran.
fn sleepers_are_woken_by_sides_that_keep_no_full_barrier() {
    const N: u32 = 5_000;
    const LIMIT: Duration = Duration::from_secs(10);
    let (ping, pong) = (channel::<u32>(16).unwrap(), channel::<u32>(16).unwrap());
    let barriers_expected = ipc_kit::sync::membarrier::register();
    let child = fork(|| {
        let (mut rx, mut tx) = (ping.receiver().unwrap(), pong.sender().unwrap());
        rx.set_wait_policy(WaitPolicy::Block);
        tx.set_wait_policy(WaitPolicy::Block);
        for i in 0..N {
            assert_eq!(rx.recv_timeout(LIMIT).unwrap(), i);
            tx.send(i + 1).unwrap();
        }
        let stats = rx.stats();
        assert!(stats.sleeps > 0, "the echo side never slept");
        assert_eq!(stats.barriers >= stats.sleeps, barriers_expected, "{stats:?}");
    });
    let (mut tx, mut rx) = (ping.sender().unwrap(), pong.receiver().unwrap());
    tx.set_wait_policy(WaitPolicy::Block);
    rx.set_wait_policy(WaitPolicy::Block);
    for i in 0..N {
        tx.send(i).unwrap();
        assert_eq!(rx.recv_timeout(LIMIT).unwrap(), i + 1);
    }
    child.join();
    let stats = rx.stats();
    assert!(stats.sleeps > 0, "the sending side never slept");
    if barriers_expected {
        assert!(stats.barriers >= stats.sleeps, "a sleep without a barrier: {stats:?}");
    } else {
        assert_eq!(stats.barriers, 0, "{stats:?}");
    }
    println!(
        "{N} round trips: {} sleeps, {} barriers here; barriers used: {barriers_expected}",
        stats.sleeps, stats.barriers
    );
}

/// A stream, then requests and answers on the same byte channel. During
/// the stream the receiver may find itself waiting a moment for every
/// record and start pacing its waits (a pause before it looks); in round
/// trips each wait lasts a whole trip, and such pauses would add to every
/// one, so a side must stop slipping at once and not start again. Every
/// record arrives whole and in order either way.
fn round_trips_do_not_slip() {
    const STREAM: u64 = 200_000;
    const N: u64 = 20_000;
    const LIMIT: Duration = Duration::from_secs(10);
    let record = |i: u64| [i.to_le_bytes(); 8].concat();
    let (ping, pong) = (byte_channel(1 << 16).unwrap(), byte_channel(1 << 12).unwrap());
    let child = fork(|| {
        let (mut rx, mut tx) = (ping.receiver().unwrap(), pong.sender().unwrap());
        rx.set_wait_policy(WaitPolicy::Spin);
        tx.set_wait_policy(WaitPolicy::Spin);
        let mut buf = Vec::new();
        for i in 0..STREAM {
            rx.recv_timeout(&mut buf, LIMIT).unwrap();
            assert_eq!(buf, record(i), "stream record {i}");
        }
        let in_stream = rx.stats().slips;
        for _ in 0..N {
            rx.recv_timeout(&mut buf, LIMIT).unwrap();
            tx.send(&buf).unwrap();
        }
        let in_trips = rx.stats().slips - in_stream;
        assert!(in_trips <= N / 20, "the echo side slipped {in_trips} times in {N} round trips");
        println!("echo side: {in_stream} slips in a stream of {STREAM} records, then {in_trips} in {N} round trips");
    });
    let (mut tx, mut rx) = (ping.sender().unwrap(), pong.receiver().unwrap());
    tx.set_wait_policy(WaitPolicy::Spin);
    rx.set_wait_policy(WaitPolicy::Spin);
    for i in 0..STREAM {
        tx.send(&record(i)).unwrap();
    }
    let mut buf = Vec::new();
    for i in STREAM..STREAM + N {
        tx.send(&record(i)).unwrap();
        rx.recv_timeout(&mut buf, LIMIT).unwrap();
        assert_eq!(buf, record(i), "round trip {i}");
    }
    child.join();
    let slips = rx.stats().slips;
    assert!(slips <= N / 20, "slipped {slips} times in {N} round trips");
}

/// Unlinks a POSIX shared memory name when dropped, whoever made it: the
/// cleanup for names whose creator a case kills.
struct UnlinkOnDrop<'a>(&'a str);

impl Drop for UnlinkOnDrop<'_> {
    fn drop(&mut self) {
        if let Ok(mut shm) = PosixShm::open(self.0) {
            let _ = shm.unlink();
        }
    }
}

/// A child that runs `setup` (which makes or opens a channel and keeps it),
/// reports that it is done, and then waits to be killed.
fn holder(setup: impl FnOnce() -> Box<dyn std::any::Any>) -> ipc_kit_tests::Forked {
    let (ready_r, ready_w) = ipc_kit::pipe::pipe().unwrap();
    let child = fork(|| {
        let _kept = setup();
        ready_w.write_atomic(b"r").unwrap();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    drop(ready_w);
    assert_eq!(ready_r.read_timeout(&mut [0], Duration::from_secs(10)).unwrap(), 1, "the holder got ready");
    child
}

fn kill(mut child: ipc_kit_tests::Forked) {
    child.kill();
    assert_eq!(child.wait(), Exit::Signaled(Signal::SIGKILL));
}

fn stale_named_channel_is_reclaimed() {
    let name = format!("/{}", unique_name("ipc-kit-test-chan"));
    let _cleanup = UnlinkOnDrop(&name);
    // The creator dies holding both sides, with messages in the ring.
    kill(holder(|| {
        let chan = Channel::<u64>::create(&name, 16).unwrap();
        let mut tx = chan.sender().unwrap();
        tx.send(1).unwrap();
        Box::new((chan, tx, chan_receiver(&name)))
    }));
    assert!(matches!(Channel::<u64>::create(&name, 16), Err(Error::AlreadyExists { .. })), "the name is left behind");
    // Reclaimed: a fresh channel (of another type and size) whose sides can
    // be claimed again, and which this process now owns.
    let chan = ByteChannel::create_or_reclaim(&name, 4096).unwrap();
    let (mut tx, mut rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    tx.send(b"fresh").unwrap();
    let mut buf = Vec::new();
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 5);
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::Empty)), "nothing of the old channel is left");
    drop((tx, rx, chan));
    assert!(matches!(PosixShm::open(&name), Err(Error::NotFound { .. })), "the new owner unlinked it");

    // A creator killed after sizing the object, before writing the header
    // (a failpoint): the object was never named, so nothing is left.
    let mut creator = fork(|| {
        ipc_kit::sync::failpoint::arm("channel:mapped");
        let _ = Channel::<u64>::create(&name, 16);
        unreachable!("the failpoint kills the creator");
    });
    assert_eq!(creator.wait(), Exit::Signaled(Signal::SIGKILL));
    assert!(matches!(Channel::<u64>::open(&name), Err(Error::NotFound { .. })));
    drop(Channel::<u64>::create_or_reclaim(&name, 16).unwrap());
}

fn chan_receiver(name: &str) -> ipc_kit::shm::Receiver<u64> {
    Channel::<u64>::open(name).unwrap().receiver().unwrap()
}

fn named_channel_held_by_a_live_process_is_not_reclaimed() {
    let name = format!("/{}", unique_name("ipc-kit-test-chan"));
    let _cleanup = UnlinkOnDrop(&name);
    let creator = holder(|| Box::new(Channel::<u64>::create(&name, 16).unwrap()));
    assert!(matches!(Channel::<u64>::create_or_reclaim(&name, 16), Err(Error::AlreadyExists { .. })));
    // An opener keeps it in use after the creator dies, until it dies too.
    let opener = holder(|| Box::new(chan_receiver(&name)));
    kill(creator);
    assert!(matches!(Channel::<u64>::create_or_reclaim(&name, 16), Err(Error::AlreadyExists { .. })));
    kill(opener);
    let chan = Channel::<u64>::create_or_reclaim(&name, 16).unwrap();
    assert!(chan.sender().is_ok(), "once nobody holds it, it is taken over");
}

fn reclaim_leaves_foreign_objects_alone() {
    let name = format!("/{}", unique_name("ipc-kit-test-chan"));
    let mut foreign = PosixShm::create(&name, 4096, 0o600).unwrap();
    foreign.map().unwrap().write_bytes(0, b"not a channel").unwrap();
    match Channel::<u64>::create_or_reclaim(&name, 16) {
        Err(e @ Error::LayoutMismatch { .. }) => assert!(e.to_string().contains("left alone"), "{e}"),
        other => panic!("expected LayoutMismatch, got {other:?}"),
    }
    let mut back = [0u8; 13];
    PosixShm::open(&name).unwrap().map().unwrap().read_bytes(0, &mut back).unwrap();
    assert_eq!(&back, b"not a channel");
    foreign.unlink().unwrap();
}

/// Finding: equal head and tail indices off a record boundary (4095 in a
/// 4096-byte ring), left by anyone who can write the object before a side
/// connects, made the byte sender write past the end of the mapping and the
/// receiver read past it. Both sides now refuse to connect.
fn byte_indices_off_a_record_boundary_are_refused() {
    for (cap, index) in [(4096u64, 4095u64), (8192, 8191), (4096, 4), (4096, 8 * 1000 + 3)] {
        for tx in [true, false] {
            let chan = ByteChannel::anonymous(cap as usize).unwrap();
            let map = chan.mapping();
            map.write(128, &index).unwrap(); // tail
            map.write(256, &index).unwrap(); // head
            let claimed = if tx { chan.sender().map(drop) } else { chan.receiver().map(drop) };
            match claimed {
                Err(Error::Corrupted { what }) => assert!(what.contains(&index.to_string()), "{what}"),
                other => panic!("indices {index} in a {cap}-byte ring, sender {tx}: {other:?}"),
            }
        }
    }
    // A hostile peer writing them while connected: a typed error, no access
    // out of bounds.
    let chan = ByteChannel::anonymous(4096).unwrap();
    let (mut tx, mut rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
    tx.send(b"one").unwrap();
    chan.mapping().write(128, &4095u64).unwrap();
    let mut buf = Vec::new();
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::Corrupted { .. })));
}

/// What a side that waits on an unclaimed peer sees.
#[derive(Clone, Copy, Debug)]
enum Waiter {
    Recv,
    RecvTimeout,
    BlockedSend,
}

/// Finding: a channel made before `fork` whose child exits or is killed
/// before it claims its side left the parent waiting forever (untimed) or
/// until `Timeout`. Every possible claimer gone now reads as
/// `Disconnected`, for both kinds, a waiting receiver and a sender blocked
/// on a full ring.
fn peer_gone_before_claiming_is_noticed() {
    for bytes in [false, true] {
        for waiter in [Waiter::Recv, Waiter::RecvTimeout, Waiter::BlockedSend] {
            for killed in [false, true] {
                let what = format!("bytes {bytes}, {waiter:?}, killed {killed}");
                let slots = channel::<u64>(4).unwrap();
                let records = byte_channel(4096).unwrap();
                let mut child = fork(|| {
                    if killed {
                        std::thread::sleep(Duration::from_secs(60));
                    }
                });
                std::thread::sleep(Duration::from_millis(20));
                if killed {
                    child.kill();
                }
                let t = Instant::now();
                let got = match (bytes, waiter) {
                    (false, Waiter::Recv) => slots.receiver().unwrap().recv().map(drop),
                    (false, Waiter::RecvTimeout) => {
                        slots.receiver().unwrap().recv_timeout(Duration::from_secs(10)).map(drop)
                    }
                    (false, Waiter::BlockedSend) => {
                        let mut tx = slots.sender().unwrap();
                        (0..5).try_for_each(|i| tx.send(i))
                    }
                    (true, Waiter::Recv) => records.receiver().unwrap().recv(&mut Vec::new()).map(drop),
                    (true, Waiter::RecvTimeout) => {
                        records.receiver().unwrap().recv_timeout(&mut Vec::new(), Duration::from_secs(10)).map(drop)
                    }
                    (true, Waiter::BlockedSend) => {
                        let mut tx = records.sender().unwrap();
                        (0..5).try_for_each(|_| tx.send(&[7; 1000]))
                    }
                };
                let noticed = t.elapsed();
                assert!(matches!(got, Err(Error::Disconnected)), "{what}: {got:?}");
                println!("{what}: noticed after {noticed:?}");
                assert!(noticed < Duration::from_secs(5), "{what}: noticed only after {noticed:?}");
                child.wait();
            }
        }
    }
}

/// The same through the umbrella's traits, whose channel sides claim on
/// first use.
fn peer_gone_before_claiming_is_noticed_through_the_traits() {
    use ipc_kit::traits::Error as KitError;
    use ipc_kit::{Mechanism, Pair};
    let Pair { sender, mut receiver, .. } = Mechanism::ShmByteChannel.pair().unwrap();
    let mut child = fork(move || {
        let _unused = sender; // dies without sending
        std::thread::sleep(Duration::from_secs(60));
    });
    std::thread::sleep(Duration::from_millis(20));
    child.kill();
    let t = Instant::now();
    let got = receiver.recv(&mut Vec::new());
    assert!(matches!(got, Err(KitError::Disconnected)), "{got:?}");
    println!("noticed after {:?}", t.elapsed());
    child.wait();
}

/// A process that claimed one side of a channel made for `fork` gave up
/// the other: neither it (unless it claims both itself) nor a child it
/// forks afterwards may claim that one, which its peer may already have
/// taken for gone.
fn a_side_given_up_cannot_be_claimed_after_fork() {
    let chan = channel::<u32>(4).unwrap();
    let mut tx = chan.sender().unwrap();
    let child = fork(|| {
        assert!(matches!(chan.receiver(), Err(Error::SideGivenUp { side: "receiver" })));
    });
    child.join();
    // The claiming process itself may take the other side.
    let mut rx = chan.receiver().unwrap();
    tx.send(5).unwrap();
    assert_eq!(rx.recv().unwrap(), 5);
    drop(rx);
    assert!(matches!(tx.send(6), Err(Error::Disconnected)));
}

/// Finding: liveness checked with `kill(pid, 0)` on a pid the peer recorded
/// in its own PID namespace. A live peer there was declared dead, and a
/// killed peer that was pid 1 of its namespace was never noticed. The
/// kernel's lock on the peer's side now decides, in any namespace.
fn peer_in_another_pid_namespace_is_watched() {
    for inner_sends in [true, false] {
        let chan = channel::<u64>(8).unwrap();
        let started = fork_in_new_pid_namespace(|| {
            assert_eq!(std::process::id(), 1, "process 1 of a new PID namespace");
            let _side: Box<dyn std::any::Any> = if inner_sends {
                let mut tx = chan.sender().unwrap();
                for i in 0..40 {
                    tx.send(i).unwrap();
                    std::thread::sleep(Duration::from_millis(10));
                }
                Box::new(tx)
            } else {
                let mut rx = chan.receiver().unwrap();
                for i in 0..40 {
                    assert_eq!(rx.recv().unwrap(), i);
                }
                Box::new(rx)
            };
            loop {
                std::thread::sleep(Duration::from_secs(1)); // alive, and silent
            }
        });
        let Some((mut between, inner)) = started else {
            println!("skipped: this process may not make a PID namespace (not root)");
            return;
        };
        let t = Instant::now();
        let err = if inner_sends {
            let mut rx = chan.receiver().unwrap();
            for i in 0..40 {
                assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), i, "a live peer is not gone");
            }
            let quiet = rx.recv_timeout(Duration::from_millis(300));
            assert!(matches!(quiet, Err(Error::Timeout)), "{quiet:?}");
            nix::sys::signal::kill(inner, Signal::SIGKILL).unwrap();
            let t = Instant::now();
            let err = rx.recv_timeout(Duration::from_secs(10)).unwrap_err();
            println!("a killed sender in another PID namespace was noticed after {:?}", t.elapsed());
            err
        } else {
            let mut tx = chan.sender().unwrap();
            for i in 0..40 {
                tx.send_timeout(i, Duration::from_secs(5)).unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
            while tx.try_send(99).is_ok() {}
            assert!(matches!(tx.send_timeout(100, Duration::from_millis(300)), Err(Error::Timeout)));
            nix::sys::signal::kill(inner, Signal::SIGKILL).unwrap();
            let t = Instant::now();
            let err = tx.send_timeout(100, Duration::from_secs(10)).unwrap_err();
            println!("a killed receiver in another PID namespace was noticed after {:?}", t.elapsed());
            err
        };
        assert!(matches!(err, Error::Disconnected), "inner sends {inner_sends}: {err}");
        assert!(t.elapsed() < Duration::from_secs(9));
        between.wait();
    }
}

/// Finding: `try_send` into a full ring whose receiver was killed said
/// `Full` forever (and again after `send_timeout` had said
/// `Disconnected`). It now says `Disconnected`, and keeps saying it.
fn try_send_reports_a_killed_receiver() {
    for bytes in [false, true] {
        let slots = channel::<u64>(4).unwrap();
        let records = byte_channel(4096).unwrap();
        let (ready_r, ready_w) = ipc_kit::pipe::pipe().unwrap();
        let mut receiver = fork(|| {
            let _rx = if bytes {
                Box::new(records.receiver().unwrap()) as Box<dyn std::any::Any>
            } else {
                Box::new(slots.receiver().unwrap())
            };
            ready_w.write_atomic(b"r").unwrap();
            std::thread::sleep(Duration::from_secs(60));
        });
        drop(ready_w);
        assert_eq!(ready_r.read_timeout(&mut [0], Duration::from_secs(10)).unwrap(), 1);
        let mut slot_tx = (!bytes).then(|| slots.sender().unwrap());
        let mut byte_tx = bytes.then(|| records.sender().unwrap());
        let mut try_send = || match (&mut slot_tx, &mut byte_tx) {
            (Some(tx), _) => tx.try_send(1),
            (_, Some(tx)) => tx.try_send(&[1; 1000]),
            _ => unreachable!(),
        };
        while try_send().is_ok() {}
        assert!(matches!(try_send(), Err(Error::Full)), "a live receiver: Full");
        receiver.kill();
        assert_eq!(receiver.wait(), Exit::Signaled(Signal::SIGKILL));
        let t = Instant::now();
        let mut fulls = 0u32;
        let err = loop {
            match try_send() {
                Err(Error::Full) if t.elapsed() < Duration::from_secs(5) => fulls += 1,
                other => break other,
            }
        };
        println!("bytes {bytes}: Disconnected after {fulls} Full answers, {:?}", t.elapsed());
        assert!(matches!(err, Err(Error::Disconnected)), "bytes {bytes}: {err:?}");
        for _ in 0..3 {
            assert!(matches!(try_send(), Err(Error::Disconnected)), "it stays Disconnected");
        }
    }
}

/// Finding: `create_or_reclaim` took any object whose first word was zero
/// for an interrupted channel creation and replaced it, though only
/// channels hold the lock it tests: a live `PosixShm` user's object was
/// unlinked, and so was a FIFO at the name. Only a channel (a regular file
/// with a channel's header) that nobody holds is taken over now.
fn reclaim_takes_over_only_a_channel_nobody_holds() {
    let name = format!("/{}", unique_name("ipc-kit-test-chan"));
    let _cleanup = UnlinkOnDrop(&name);
    let left_alone = |what: &str| match ByteChannel::create_or_reclaim(&name, 4096) {
        Err(e @ Error::LayoutMismatch { .. }) => assert!(e.to_string().contains("left alone"), "{what}: {e}"),
        other => panic!("{what}: expected LayoutMismatch, got {other:?}"),
    };
    // A live user's object of zeros, and one emptied.
    let user = PosixShm::create(&name, 4096, 0o600).unwrap();
    let map = user.map().unwrap();
    map.write_bytes(100, b"in use").unwrap();
    left_alone("zeros where a header would be");
    user.set_size(0).unwrap();
    left_alone("an empty object");
    user.set_size(4096).unwrap();
    user.map().unwrap().write_bytes(100, b"in use").unwrap();
    left_alone("zeros where a header would be, again");
    let mut back = [0u8; 6];
    PosixShm::open(&name).unwrap().map().unwrap().read_bytes(100, &mut back).unwrap();
    assert_eq!(&back, b"in use", "the user's object is still there, under its name");
    drop((map, user));
    // A FIFO at the name.
    let path = format!("/dev/shm{name}");
    nix::unistd::mkfifo(path.as_str(), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    left_alone("a FIFO");
    assert!(std::fs::metadata(&path).unwrap().file_type().is_fifo(), "the FIFO is still there");
    std::fs::remove_file(&path).unwrap();
    // A channel whose every holder is gone is taken over; one held is not.
    kill(holder(|| Box::new(Channel::<u64>::create(&name, 16).unwrap())));
    let held = ByteChannel::create_or_reclaim(&name, 4096).unwrap();
    assert!(matches!(ByteChannel::create_or_reclaim(&name, 4096), Err(Error::AlreadyExists { .. })));
    drop(held);
}

/// Where the sender's state word sits: the status line (640) + 20.
const TX_STATE: usize = 640 + 20;

/// Whether the kernel is asked about a claimed side does not rest on what
/// the shared state word says: a peer that claims, writes "connected
/// without a lock" (1) or any claimed value over its state, and dies, is
/// still noticed (before, a state of 1 made the waiting side take the peer
/// for one it cannot watch, and wait until its deadline).
fn a_state_word_written_by_a_peer_cannot_hide_a_death() {
    for written in [1u32, 3] {
        for named in [false, true] {
            let name = format!("/{}", unique_name("ipc-kit-test-chan"));
            let _cleanup = UnlinkOnDrop(&name);
            let chan = if named { Channel::<u64>::create(&name, 8).unwrap() } else { channel::<u64>(8).unwrap() };
            let (ready_r, ready_w) = ipc_kit::pipe::pipe().unwrap();
            let mut peer = fork(|| {
                let _tx = chan.sender().unwrap();
                chan.mapping().write(TX_STATE, &written).unwrap();
                ready_w.write_atomic(b"r").unwrap();
                std::thread::sleep(Duration::from_secs(60));
            });
            drop(ready_w);
            assert_eq!(ready_r.read_timeout(&mut [0], Duration::from_secs(10)).unwrap(), 1);
            let mut rx = chan.receiver().unwrap();
            peer.kill();
            assert_eq!(peer.wait(), Exit::Signaled(Signal::SIGKILL));
            let got = rx.recv_timeout(Duration::from_secs(10));
            assert!(matches!(got, Err(Error::Disconnected)), "state {written}, named {named}: {got:?}");
        }
    }
}

/// Without /proc (a container that does not mount it) a named channel's
/// side takes its lock through the name opened again, and its death is
/// noticed; a memfd channel's side, which has no other way to a
/// description of its own, is refused with a typed error instead of being
/// claimed unwatched. A channel made for fork needs no /proc.
fn without_proc_a_named_side_is_watched_and_a_memfd_side_refused() {
    if !ipc_kit_tests::private_mount_namespace("unmounting /proc in a mount namespace") {
        return;
    }
    nix::mount::umount2("/proc", nix::mount::MntFlags::MNT_DETACH).unwrap();
    assert!(std::fs::metadata("/proc/self").is_err(), "precondition: no /proc");
    let name = format!("/{}", unique_name("ipc-kit-test-chan"));
    let _cleanup = UnlinkOnDrop(&name);
    let chan = ByteChannel::create(&name, 4096).unwrap();
    let (ready_r, ready_w) = ipc_kit::pipe::pipe().unwrap();
    let mut peer = fork(|| {
        let mut tx = ByteChannel::open(&name).unwrap().sender().unwrap();
        tx.send(b"from a side without /proc").unwrap();
        ready_w.write_atomic(b"r").unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    drop(ready_w);
    assert_eq!(ready_r.read_timeout(&mut [0], Duration::from_secs(10)).unwrap(), 1);
    let mut rx = chan.receiver().unwrap();
    let mut buf = Vec::new();
    rx.recv_timeout(&mut buf, Duration::from_secs(5)).unwrap();
    assert_eq!(buf, b"from a side without /proc");
    peer.kill();
    assert_eq!(peer.wait(), Exit::Signaled(Signal::SIGKILL));
    let got = rx.recv_timeout(&mut buf, Duration::from_secs(10));
    assert!(matches!(got, Err(Error::Disconnected)), "{got:?}");
    let memfd = ByteChannel::new_memfd(4096).unwrap();
    match memfd.sender() {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("/proc"), "{e}"),
        other => panic!("a memfd side without /proc: {other:?}"),
    }
}

/// A receiver that keeps up with a stream starts pacing its waits (it
/// slips), and then does not look at the sender's index in its fast path
/// once it has taken what it saw. The forms that try once must still take
/// what is waiting: here, each round, the receiver takes a stream with
/// `recv` until one of its waits slipped, then stops the sender, which
/// sends one message more if it can, and takes what is left with `try_recv`,
/// `recv_timeout(0)`, `recv_deadline` with a past deadline or
/// `try_recv_many` (a form per round): never `Empty` while the sender's
/// messages wait. Everything arrives once, in order.
fn a_receiver_that_slipped_in_a_stream_still_takes_a_single_message_at_once() {
    const ROUNDS: u32 = 16;
    const LIMIT: Duration = Duration::from_secs(10);
    // Per round r, at 16 r: the receiver's stop; at 16 r + 4: how many
    // messages the sender sent in all, plus one.
    let chan = channel::<u64>(1024).unwrap();
    let map = Mapping::anonymous(4096).unwrap();
    let sender = fork(|| {
        let mut tx = chan.sender().unwrap();
        let mut i = 0u64;
        for round in 1..=ROUNDS as usize {
            // Paced differently every 1000 messages, so that a receiver
            // that keeps up finds itself waiting a moment for messages.
            while map.read::<u32>(16 * round).unwrap() == 0 {
                match tx.try_send(i) {
                    Ok(()) => i += 1,
                    Err(Error::Full) => {}
                    Err(e) => panic!("{e}"),
                }
                for _ in 0..[0, 4, 8, 16, 32, 64, 128, 256][(i / 1000 % 8) as usize] {
                    std::hint::spin_loop();
                }
            }
            // One more, past whatever the receiver last saw (unless the
            // ring is full: then the ring is past it).
            if tx.try_send(i).is_ok() {
                i += 1;
            }
            map.write(16 * round + 4, &(i as u32 + 1)).unwrap();
        }
        // Stays connected until everything was taken.
        wait_for_word(&map, 8, 1, "the receiver taking everything");
    });
    let mut rx = chan.receiver().unwrap();
    let mut next = 0u64;
    let mut slipped_rounds = 0;
    for round in 1..=ROUNDS as usize {
        let start = Instant::now();
        loop {
            let slips = rx.stats().slips;
            assert_eq!(rx.recv_timeout(LIMIT).unwrap(), next, "lost, duplicated or out of order");
            next += 1;
            if rx.stats().slips > slips {
                slipped_rounds += 1;
                break;
            }
            if start.elapsed() > Duration::from_secs(1) {
                break;
            }
        }
        map.write(16 * round, &1u32).unwrap();
        let deadline = Instant::now() + LIMIT;
        let total = loop {
            match map.read::<u32>(16 * round + 4).unwrap() {
                0 => assert!(Instant::now() < deadline, "round {round}: the sender stopping"),
                n => break u64::from(n - 1),
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        while next < total {
            let got = match round % 4 {
                0 => rx.try_recv(),
                1 => rx.recv_timeout(Duration::ZERO),
                2 => rx.recv_deadline(Instant::now() - Duration::from_millis(1)),
                _ => {
                    let mut out = [0u64; 1];
                    rx.try_recv_many(&mut out).map(|n| if n == 1 { out[0] } else { u64::MAX })
                }
            };
            assert_eq!(
                got.ok(),
                Some(next),
                "round {round} (form {}): {} messages were waiting",
                round % 4,
                total - next
            );
            next += 1;
        }
    }
    map.write(8, &1u32).unwrap();
    sender.join();
    println!("the receiver slipped in {slipped_rounds} of {ROUNDS} rounds");
}

/// Where the sender's sleep line says that it sleeps: TX_SLEEP (512) + 12.
const TX_WAITING: usize = 512 + 12;

/// A sender that sleeps while it waits (`WaitPolicy::Block`) on a full
/// ring must take the room a receiver frees while it sleeps, within its
/// timeout, even less room than the lead it holds out for at first:
/// `send_timeout` and `send_deadline` of slot channels of 64 and 1024
/// slots, `send_timeout` and `reserve_timeout` of a byte channel. The
/// receiver frees one message (or record) once the sender sleeps, and
/// then stops taking. (A timeout of 250 ms, for a wake-up that takes
/// microseconds.)
fn a_sleeping_sender_takes_the_room_there_is_within_its_timeout() {
    const WAIT: Duration = Duration::from_millis(250);
    for cap in [64usize, 1024] {
        let chan = channel::<u64>(cap).unwrap();
        let map = Mapping::anonymous(4096).unwrap();
        let mut sender = fork(|| {
            let mut tx = chan.sender().unwrap();
            tx.set_wait_policy(WaitPolicy::Block);
            let mut i = 0;
            while tx.try_send(i).is_ok() {
                i += 1;
            }
            assert_eq!(i, cap as u64);
            map.write(0, &1u32).unwrap();
            tx.send_timeout(i, WAIT).unwrap();
            map.write(4, &1u32).unwrap();
            tx.send_deadline(i + 1, Instant::now() + WAIT).unwrap();
        });
        let mut rx = chan.receiver().unwrap();
        wait_for_word(&map, 0, 1, "the sender filling its ring");
        wait_for_word(chan.mapping(), TX_WAITING, 1, "the sender sleeping on a full ring");
        assert_eq!(rx.recv().unwrap(), 0);
        wait_for_word(&map, 4, 1, "send_timeout into the one slot freed");
        wait_for_word(chan.mapping(), TX_WAITING, 1, "the sender sleeping on a full ring again");
        assert_eq!(rx.recv().unwrap(), 1);
        assert_eq!(sender.wait(), Exit::Code(0), "capacity {cap}: a send with room timed out");
        for i in 2..cap as u64 + 2 {
            assert_eq!(rx.recv().unwrap(), i, "capacity {cap}");
        }
    }
    let bytes = byte_channel(4096).unwrap();
    let map = Mapping::anonymous(4096).unwrap();
    let mut sender = fork(|| {
        let mut tx = bytes.sender().unwrap();
        tx.set_wait_policy(WaitPolicy::Block);
        let mut sent = 0u8;
        while tx.try_send(&[sent; 100]).is_ok() {
            sent += 1;
        }
        map.write(0, &u32::from(sent)).unwrap();
        tx.send_timeout(&[sent; 100], WAIT).unwrap();
        map.write(4, &1u32).unwrap();
        let mut r = tx.reserve_timeout(100, WAIT).unwrap();
        r.as_mut_slice().copy_from_slice(&[sent + 1; 100]);
        r.commit();
    });
    let mut rx = bytes.receiver().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while map.read::<u32>(0).unwrap() == 0 {
        assert!(Instant::now() < deadline, "the byte sender filling its ring: not within 10 s");
        std::thread::sleep(Duration::from_millis(1));
    }
    let full = map.read::<u32>(0).unwrap() as u8;
    let mut buf = Vec::new();
    wait_for_word(bytes.mapping(), TX_WAITING, 1, "the byte sender sleeping on a full ring");
    rx.recv(&mut buf).unwrap();
    assert_eq!(buf, [0u8; 100]);
    wait_for_word(&map, 4, 1, "a byte send_timeout into the one record's room freed");
    wait_for_word(bytes.mapping(), TX_WAITING, 1, "the byte sender sleeping on a full ring again");
    rx.recv(&mut buf).unwrap();
    assert_eq!(buf, [1u8; 100]);
    assert_eq!(sender.wait(), Exit::Code(0), "a byte send or reserve with room timed out");
    for i in 2..=full + 1 {
        rx.recv(&mut buf).unwrap();
        assert_eq!(buf, [i; 100], "record {i}");
    }
}

/// `Err(Truncated)`, or a panic naming the form and what it gave.
fn truncated<T: std::fmt::Debug>(form: &str, got: Result<T, Error>) {
    assert!(matches!(got, Err(Error::Truncated { .. })), "{form} on a shrunk channel: {got:?}");
}

/// Runs `f` (a blocking form) in a child, which must end well within 20 s.
fn blocking(f: impl FnOnce()) {
    fork(f).join();
}

/// A named channel whose object another process shrinks to nothing while
/// both sides are connected reads as zeros, which look like a fresh
/// channel (both indices 0, the peer unclaimed): every form of both sides
/// of both kinds must still say `Truncated`, never `Empty`, `Full` or
/// `Timeout`, and the blocking forms must not block for ever. The
/// receivers have taken nothing yet; the senders' rings are full.
fn a_channel_shrunk_to_nothing_reports_truncated_in_every_form() {
    const WAIT: Duration = Duration::from_millis(300);
    let past = || Instant::now() - Duration::from_millis(1);
    let shrink = |name: &str| PosixShm::open(name).unwrap().set_size(0).unwrap();
    let name = format!("/{}", unique_name("ipc-kit-test-chan"));

    // Slot receiver, peer connected.
    let chan = Channel::<u64>::create(&name, 8).unwrap();
    let peer = holder(|| Box::new(Channel::<u64>::open(&name).unwrap().sender().unwrap()));
    let mut rx = chan.receiver().unwrap();
    shrink(&name);
    truncated("try_recv", rx.try_recv());
    truncated("recv_timeout(0)", rx.recv_timeout(Duration::ZERO));
    truncated("recv_deadline(past)", rx.recv_deadline(past()));
    truncated("recv_timeout", rx.recv_timeout(WAIT));
    truncated("try_recv_many", rx.try_recv_many(&mut [0; 4]));
    blocking(|| truncated("recv", rx.recv()));
    blocking(|| truncated("recv_many", rx.recv_many(&mut [0; 4])));
    kill(peer);
    drop((rx, chan));

    // Slot sender on a full ring, peer connected.
    let chan = Channel::<u64>::create(&name, 8).unwrap();
    let peer = holder(|| Box::new(Channel::<u64>::open(&name).unwrap().receiver().unwrap()));
    let mut tx = chan.sender().unwrap();
    tx.set_wait_policy(WaitPolicy::Spin);
    for i in 0..8 {
        tx.try_send(i).unwrap();
    }
    shrink(&name);
    truncated("try_send", tx.try_send(8));
    truncated("send_timeout(0)", tx.send_timeout(8, Duration::ZERO));
    truncated("send_deadline(past)", tx.send_deadline(8, past()));
    truncated("send_timeout", tx.send_timeout(8, WAIT));
    truncated("try_send_many", tx.try_send_many(&[8, 9]));
    blocking(|| truncated("send", tx.send(8)));
    blocking(|| truncated("send_ref", tx.send_ref(&8)));
    blocking(|| truncated("send_many", tx.send_many(&[8; 20])));
    kill(peer);
    drop((tx, chan));

    // Byte receiver, peer connected.
    let chan = ByteChannel::create(&name, 4096).unwrap();
    let peer = holder(|| Box::new(ByteChannel::open(&name).unwrap().sender().unwrap()));
    let mut rx = chan.receiver().unwrap();
    shrink(&name);
    let mut buf = Vec::new();
    truncated("byte try_recv", rx.try_recv(&mut buf));
    truncated("byte try_recv_with", rx.try_recv_with(|b| b.len()));
    truncated("byte recv_timeout(0)", rx.recv_timeout(&mut buf, Duration::ZERO));
    truncated("byte recv_timeout", rx.recv_timeout(&mut buf, WAIT));
    blocking(|| truncated("byte recv", rx.recv(&mut buf)));
    blocking(|| truncated("byte recv_with", rx.recv_with(|b| b.len())));
    kill(peer);
    drop((rx, chan));

    // Byte sender on a full ring, peer connected.
    let chan = ByteChannel::create(&name, 4096).unwrap();
    let peer = holder(|| Box::new(ByteChannel::open(&name).unwrap().receiver().unwrap()));
    let mut tx = chan.sender().unwrap();
    while tx.try_send(&[7; 100]).is_ok() {}
    shrink(&name);
    truncated("byte try_send", tx.try_send(&[7; 100]));
    truncated("byte try_reserve", tx.try_reserve(100).map(|r| r.len()));
    truncated("byte send_timeout(0)", tx.send_timeout(&[7; 100], Duration::ZERO));
    truncated("byte send_deadline(past)", tx.send_deadline(&[7; 100], past()));
    truncated("byte send_timeout", tx.send_timeout(&[7; 100], WAIT));
    truncated("byte reserve_timeout", tx.reserve_timeout(100, WAIT).map(|r| r.len()));
    blocking(|| truncated("byte send", tx.send(&[7; 100])));
    blocking(|| truncated("byte reserve", tx.reserve(100).map(|r| r.len())));
    kill(peer);
    drop((tx, chan));
}

/// Every send form of slot channels of 1, 2, 4, 8 and 64 slots, under
/// each wait policy, on a full ring whose receiver frees one slot at a time
/// a moment after the form starts (and as many as a batch needs, one at a
/// time): `send`, `send_ref`, `send_timeout`, `send_deadline` (a future
/// one, and a past one tried again until it gets in), `try_send` and
/// `try_send_many` tried again, `send_many` of one message and of a batch
/// larger than the ring. A sender holding out for its lead must still
/// take what room there is; the timed forms get in within their timeout.
/// Everything arrives once, in order.
fn every_send_form_takes_the_room_a_slow_receiver_frees() {
    const WAIT: Duration = Duration::from_secs(5);
    const FORMS: u32 = 9;
    for cap in [1usize, 2, 4, 8, 64] {
        for policy in [WaitPolicy::Spin, WaitPolicy::Adaptive, WaitPolicy::Block] {
            let chan = channel::<u64>(cap).unwrap();
            // Word 0: the form the sender starts; word 4: how many messages
            // it needs the receiver to take for it.
            let map = Mapping::anonymous(4096).unwrap();
            let sender = fork(|| {
                let mut tx = chan.sender().unwrap();
                tx.set_wait_policy(policy);
                let mut next = 0u64;
                while tx.try_send(next).is_ok() {
                    next += 1;
                }
                assert_eq!(next, cap as u64);
                for form in 1..=FORMS {
                    let batch: Vec<u64> = (next..next + 2 * cap as u64 + 1).collect();
                    let takes = if form == 9 { batch.len() as u32 } else { 1 };
                    map.write(4, &takes).unwrap();
                    map.write(0, &form).unwrap();
                    let sent = match form {
                        1 => tx.send(next).map(|()| 1),
                        2 => tx.send_ref(&next).map(|()| 1),
                        3 => tx.send_timeout(next, WAIT).map(|()| 1),
                        4 => tx.send_deadline(next, Instant::now() + WAIT).map(|()| 1),
                        5 => Ok(retry("send_deadline(past)", &mut tx, next, |tx, v| {
                            tx.send_deadline(v, Instant::now() - Duration::from_millis(1)).map(|()| 1)
                        })),
                        6 => Ok(retry("try_send", &mut tx, next, |tx, v| tx.try_send(v).map(|()| 1))),
                        7 => Ok(retry("try_send_many", &mut tx, next, |tx, v| tx.try_send_many(&[v, v + 1]))),
                        8 => tx.send_many(&[next]).map(|()| 1),
                        _ => tx.send_many(&batch).map(|()| batch.len() as u64),
                    };
                    let sent = sent.unwrap_or_else(|e| panic!("capacity {cap}, {policy:?}, form {form}: {e}"));
                    next += sent;
                    // The ring is full again (try_send_many may have put
                    // two): wait for the receiver to see the form end.
                    wait_for_word(&map, 8, form, "the receiver taking its share");
                }
            });
            let mut rx = chan.receiver().unwrap();
            let mut expected = 0u64;
            for form in 1..=FORMS {
                wait_for_word(&map, 0, form, "the sender starting a form");
                let takes = map.read::<u32>(4).unwrap();
                for _ in 0..takes {
                    std::thread::sleep(Duration::from_millis(1));
                    let got = rx.recv_timeout(Duration::from_secs(10));
                    assert_eq!(got.ok(), Some(expected), "capacity {cap}, {policy:?}, form {form}");
                    expected += 1;
                }
                map.write(8, &form).unwrap();
            }
            sender.join();
            // What the last forms left in the ring, then the end.
            loop {
                match rx.recv_timeout(Duration::from_secs(10)) {
                    Ok(v) => {
                        assert_eq!(v, expected, "capacity {cap}, {policy:?}: the rest");
                        expected += 1;
                    }
                    Err(Error::Disconnected) => break,
                    Err(e) => panic!("capacity {cap}, {policy:?}: {e}"),
                }
            }
        }
    }
}

/// Calls `f` (a send form that tries once) with `tx` and `next` until it
/// sends something, for at most 5 s; how many it sent.
fn retry(
    what: &str,
    tx: &mut ipc_kit::shm::Sender<u64>,
    next: u64,
    f: fn(&mut ipc_kit::shm::Sender<u64>, u64) -> Result<usize, Error>,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match f(tx, next) {
            Ok(0) | Err(Error::Full | Error::Timeout) => {}
            Ok(n) => return n as u64,
            Err(e) => panic!("{what}: {e}"),
        }
        assert!(Instant::now() < deadline, "{what}: no room within 5 s");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The byte channel's send and reserve forms on rings of 64 bytes to
/// 1 MiB, under each wait policy, with records whose lengths bring them
/// to the wrap point in turn (a third of the ring, then the longest, then
/// a few bytes), on a full ring whose receiver frees one record a moment
/// after the form starts, and another each 50 ms until the record fits: `send`, `send_timeout`, `send_deadline` (a
/// future one, and a past one tried again), `try_send` tried again,
/// `reserve`, `reserve_timeout`, `try_reserve` tried again. Every record
/// arrives once, whole, in order.
fn every_byte_send_form_takes_the_room_a_slow_receiver_frees_at_the_wrap_point() {
    const WAIT: Duration = Duration::from_secs(5);
    const FORMS: u64 = 8;
    const ROUNDS: u64 = 3 * FORMS;
    for cap in [64usize, 256, 4096, 1 << 20] {
        let max = cap / 2 - 8;
        let len = move |i: u64| match i % 3 {
            0 => cap / 3,
            1 => max,
            _ => (i % 8) as usize,
        };
        for policy in [WaitPolicy::Spin, WaitPolicy::Adaptive, WaitPolicy::Block] {
            let chan = byte_channel(cap).unwrap();
            let map = Mapping::anonymous(4096).unwrap();
            let sender = fork(|| {
                let mut tx = chan.sender().unwrap();
                tx.set_wait_policy(policy);
                let mut i = 0u64;
                while tx.try_send(&pattern(i, len(i))).is_ok() {
                    i += 1;
                }
                map.write(0, &(i as u32)).unwrap();
                for round in 0..ROUNDS {
                    let body = pattern(i, len(i));
                    map.write(4, &(round as u32 + 1)).unwrap();
                    let deadline = Instant::now() + WAIT;
                    loop {
                        let done = match round % FORMS {
                            0 => tx.send(&body),
                            1 => tx.send_timeout(&body, WAIT),
                            2 => tx.send_deadline(&body, Instant::now() + WAIT),
                            3 => tx.send_deadline(&body, Instant::now() - Duration::from_millis(1)),
                            4 => tx.try_send(&body),
                            5 => tx.reserve(body.len()).map(|mut r| r.as_mut_slice().copy_from_slice(&body)),
                            6 => tx
                                .reserve_timeout(body.len(), WAIT)
                                .map(|mut r| r.as_mut_slice().copy_from_slice(&body)),
                            _ => tx.try_reserve(body.len()).map(|mut r| r.as_mut_slice().copy_from_slice(&body)),
                        };
                        match done {
                            Ok(()) => break,
                            Err(Error::Full | Error::Timeout) if matches!(round % FORMS, 3 | 4 | 7) => {
                                assert!(Instant::now() < deadline, "cap {cap}, {policy:?}, round {round}: no room");
                                std::thread::sleep(Duration::from_micros(200));
                            }
                            Err(e) => panic!("cap {cap}, {policy:?}, round {round}: {e}"),
                        }
                    }
                    i += 1;
                    map.write(12, &(round as u32 + 1)).unwrap();
                    wait_for_word(&map, 8, round as u32 + 1, "the receiver seeing the form end");
                }
            });
            let mut rx = chan.receiver().unwrap();
            wait_for_word_nonzero(&map, 0);
            let mut buf = Vec::new();
            let mut expected = 0u64;
            for round in 0..ROUNDS {
                wait_for_word(&map, 4, round as u32 + 1, "the sender starting a form");
                // One record at a time, until the sender's record fits.
                'round: loop {
                    std::thread::sleep(Duration::from_millis(1));
                    let got = rx.recv_timeout(&mut buf, Duration::from_secs(10));
                    assert!(got.is_ok(), "cap {cap}, {policy:?}, round {round}: {got:?} with the sender waiting");
                    assert!(buf == pattern(expected, len(expected)), "cap {cap}, {policy:?}: record {expected}");
                    expected += 1;
                    for _ in 0..50 {
                        if map.read::<u32>(12).unwrap() == round as u32 + 1 {
                            break 'round;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                map.write(8, &(round as u32 + 1)).unwrap();
            }
            sender.join();
            loop {
                match rx.recv_timeout(&mut buf, Duration::from_secs(10)) {
                    Ok(_) => {
                        assert!(buf == pattern(expected, len(expected)), "cap {cap}, {policy:?}: record {expected}");
                        expected += 1;
                    }
                    Err(Error::Disconnected) => break,
                    Err(e) => panic!("cap {cap}, {policy:?}: {e}"),
                }
            }
        }
    }
}

/// Waits up to 10 s for the 32-bit word at `offset` of `map` to be set.
fn wait_for_word_nonzero(map: &Mapping, offset: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while map.read::<u32>(offset).unwrap() == 0 {
        assert!(Instant::now() < deadline, "word {offset}: not set within 10 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Each check of what the peer publishes, hit on purpose by a peer that
/// writes the indices and record headers itself: a wrap marker past what
/// is published, a length past the longest record, past what is published
/// or past the end of the ring, a huge length, an index off a record
/// boundary, more than a ring ahead or gone back, both on a record the
/// receiver's fast path finds by the index it read before and on one it
/// reads the index for; and indices gone back or ahead for the senders of
/// both kinds on a full ring. Every form (try, zero and longer timeouts,
/// blocking) gives `Corrupted`, at once, and so does the next call.
fn impossible_indices_and_record_headers_give_corrupted_in_every_form() {
    const TAIL: usize = 128;
    const HEAD: usize = 256;
    const RING: usize = 768;
    const CAP: u64 = 4096;
    let corrupted = |what: &str, got: Result<usize, Error>| {
        assert!(matches!(got, Err(Error::Corrupted { .. })), "{what}: {got:?}");
    };
    let max = (CAP / 2 - 8) as u32;
    // What the peer writes: where both indices stand first, the header at
    // the receiver's index, and the sender's index past it.
    let records = [
        ("a wrap marker past what is published", 0, u32::MAX, 8),
        ("a length past the longest record", 0, max + 1, CAP),
        ("a length past what is published", 0, 100, 16),
        ("a length past the end of the ring", CAP - 16, 100, 112),
        ("a huge length", 0, u32::MAX - 1, CAP),
        ("an index off a record boundary", 0, 0, 4),
        ("an index more than a ring ahead", 0, 8, CAP + 8),
    ];
    for form in 0..4 {
        let recv = |rx: &mut ipc_kit::shm::ByteReceiver| {
            let mut buf = Vec::new();
            match form {
                0 => rx.try_recv(&mut buf),
                1 => rx.recv_timeout(&mut buf, Duration::ZERO),
                2 => rx.recv_timeout(&mut buf, Duration::from_secs(1)),
                _ => rx.recv_with(|b| b.len()),
            }
        };
        for (what, at, len, ahead) in records {
            for cached in [false, true] {
                let chan = ByteChannel::anonymous(CAP as usize).unwrap();
                let (mut tx, mut rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
                for _ in 0..at / 16 {
                    tx.send(&[1; 8]).unwrap();
                    assert_eq!(recv(&mut rx).unwrap(), 8);
                }
                let at = if cached {
                    // The receiver reads the sender's index once for both
                    // records, and finds the second one changed.
                    tx.send(&[2; 8]).unwrap();
                    tx.send(&[3; 8]).unwrap();
                    assert_eq!(recv(&mut rx).unwrap(), 8);
                    at + 16
                } else {
                    at
                };
                let map = chan.mapping();
                map.write(RING + (at % CAP) as usize, &u64::from(len)).unwrap();
                if cached && len <= 8 {
                    // Only the index is impossible, and it is not read again
                    // while the receiver's cached one shows records.
                    continue;
                }
                if !cached {
                    map.write(TAIL, &(at + ahead)).unwrap();
                }
                let case = format!("{what} (form {form}, cached {cached})");
                corrupted(&case, recv(&mut rx));
                corrupted(&format!("{case}, again"), recv(&mut rx));
            }
        }
        // The sender's index gone back below what the receiver saw.
        let chan = ByteChannel::anonymous(CAP as usize).unwrap();
        let (mut tx, mut rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
        tx.send(&[1; 8]).unwrap();
        assert_eq!(recv(&mut rx).unwrap(), 8);
        chan.mapping().write(TAIL, &8u64).unwrap();
        corrupted(&format!("a byte sender index gone back (form {form})"), recv(&mut rx));
    }

    // Senders on a full ring, the receiver's index gone back or ahead.
    for (what, head) in [("gone back", 1u64), ("past the sender's", 11)] {
        for form in 0..5 {
            let chan = channel::<u64>(8).unwrap();
            let (mut tx, mut rx) = (chan.sender().unwrap(), chan.receiver().unwrap());
            tx.send_many(&[0, 1]).unwrap();
            assert_eq!(rx.recv_many(&mut [0; 2]).unwrap(), 2);
            tx.send_many(&[0; 8]).unwrap();
            chan.mapping().write(HEAD, &head).unwrap();
            let got = match form {
                0 => tx.try_send(9).map(|()| 1),
                1 => tx.send_timeout(9, Duration::ZERO).map(|()| 1),
                2 => tx.send_timeout(9, Duration::from_secs(1)).map(|()| 1),
                3 => tx.try_send_many(&[9]),
                _ => tx.send(9).map(|()| 1),
            };
            corrupted(&format!("a slot receiver index {what} (form {form})"), got);
            let bytes = ByteChannel::anonymous(CAP as usize).unwrap();
            let (mut tx, mut rx) = (bytes.sender().unwrap(), bytes.receiver().unwrap());
            tx.send(&[1; 8]).unwrap();
            rx.recv(&mut Vec::new()).unwrap();
            while tx.try_send(&[2; 8]).is_ok() {}
            let head = if head == 1 { 8 } else { CAP + 24 };
            bytes.mapping().write(HEAD, &head).unwrap();
            let got = match form {
                0 => tx.try_send(&[3; 8]).map(|()| 1),
                1 => tx.send_timeout(&[3; 8], Duration::ZERO).map(|()| 1),
                2 => tx.reserve_timeout(8, Duration::from_secs(1)).map(|r| r.len()),
                3 => tx.try_reserve(8).map(|r| r.len()),
                _ => tx.send(&[3; 8]).map(|()| 1),
            };
            corrupted(&format!("a byte receiver index {what} (form {form})"), got);
        }
    }
}

// A maker hands over doorbells whose description is blocking (as
// eventfd(2) makes them without EFD_NONBLOCK, or as a maker left them):
// the EventFds taken from them keep the type's promise that the try
// forms never wait, and the channel opened from them works.
fn doorbells_handed_over_in_blocking_mode_keep_every_call_from_waiting() {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use std::os::fd::AsFd;
    let chan = Channel::<u64>::new_memfd(4).unwrap();
    let (memfd, [a, b]) = chan.handoff().unwrap().into_fds();
    for fd in [&a, &b] {
        fcntl(fd.as_fd(), FcntlArg::F_SETFL(OFlag::empty())).unwrap();
    }
    let spare = a.try_clone().unwrap();
    let handoff = Handoff::from_fds(memfd, [a, b]).unwrap();
    let bell = &handoff.doorbells[0];
    // A late add keeps a wrong wait from hanging the case.
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        nix::unistd::write(&spare, &1u64.to_ne_bytes()).unwrap();
    });
    // A doorbell starts at 1: the first takes it, the second finds 0.
    assert_eq!(bell.try_read().unwrap(), 1);
    let got = bell.try_read();
    late.join().unwrap();
    assert!(matches!(got, Err(ipc_kit::sync::Error::WouldBlock { .. })), "try_read did not wait: {got:?}");
}

// Doorbells that are not the channel's (the same eventfd for both sides,
// another channel's): the handoff opens, and a polled receiver in another
// process sees every message (its pollers look again every 20 ms).
fn a_handoff_whose_doorbells_are_not_the_channels_still_delivers_to_pollers() {
    let other = Channel::<u64>::new_memfd(4).unwrap();
    for variant in 0..2 {
        let chan = Channel::<u64>::new_memfd(4).unwrap();
        let (memfd, [a, b]) = chan.handoff().unwrap().into_fds();
        let (_, [oa, ob]) = other.handoff().unwrap().into_fds();
        let bells = if variant == 0 { [a.try_clone().unwrap(), a] } else { [oa, ob] };
        drop(b);
        let handoff = Handoff::from_fds(memfd, bells).unwrap();
        let opened = Channel::<u64>::from_handoff(handoff).unwrap();
        let child = fork(move || {
            let mut rx = opened.receiver().unwrap();
            let mut poller = ipc_kit::Poller::new().unwrap();
            poller.add(&rx, ipc_kit::Interest::Readable, 7).unwrap();
            let mut i = 0;
            while i < 50 {
                match rx.try_recv() {
                    Ok(v) => {
                        assert_eq!(v, i);
                        i += 1;
                    }
                    Err(Error::Empty) => {
                        poller.wait_timeout(Duration::from_secs(10)).unwrap();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let mut tx = chan.sender().unwrap();
        for i in 0..50u64 {
            tx.send_timeout(i, Duration::from_secs(10)).unwrap();
            if i % 10 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        child.join();
    }
}
