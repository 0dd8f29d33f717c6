//! The hubs against hostile peers and odd uses: blackboards, events, the hub's
//! handshake and `ipc-kit ls`. Each case asserts a promise so that it
//! fails when the promise is broken.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipc_kit::service::{
    Blackboard, BlackboardOptions, BlackboardReader, Error, EventOptions, Listener, Notifier, Refusal,
};
use ipc_kit::shm::Memfd;
use ipc_kit::socket::{SeqpacketListener, SeqpacketSocket, SocketName};
use ipc_kit::sync::{EventFd, EventFdMode, Interest, Poller};
use ipc_kit_tests::{Exit, Rng, SLACK, ScratchDir, cases, fork};

cases!("hub_hostile":
    ls_lists_members_only_under_the_hub_they_joined(60 s),
    ls_forgets_an_owner_whose_forked_child_lives_on(60 s),
    ls_lists_no_member_that_was_not_counted(60 s),
    ls_owner_that_is_also_a_member_and_a_member_of_two_owners(60 s),
    ls_two_owners_of_one_name_one_after_another(60 s),
    wait_newer_never_hands_an_older_version_from_a_forged_board(60 s),
    forged_board_extremes_give_typed_errors_within_deadlines(60 s),
    blackboard_readers_lose_no_wakeup_under_bursts(60 s),
    listeners_lose_no_wakeup_under_bursts(60 s),
    a_last_value_written_before_the_writer_goes_is_never_lost(120 s),
    a_last_notification_before_the_notifier_goes_is_never_lost(120 s),
    listeners_count_every_id_exactly_over_many_groups(120 s),
    a_forged_event_table_never_panics_or_hangs_a_listener(60 s),
    a_member_that_sends_garbage_or_nothing_is_not_counted_and_blocks_no_one(60 s),
    no_descriptor_leaks_after_many_joins_and_leaves(120 s),
    limits_and_limits_plus_one(120 s),
    a_reader_that_polls_but_never_reads_stays_readable(60 s),
);

fn name_in(dir: &ScratchDir, file: &str) -> SocketName {
    SocketName::path(dir.path().join(file)).unwrap()
}

fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(20), "waited 20 s for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The rows of `ipc-kit ls --json` of `kind` at `name`: owner pid, members.
fn listed(kind: &str, name: &SocketName) -> Vec<(i64, Vec<i64>)> {
    let out = std::process::Command::new(ipc_kit_tests::ipc_kit_bin()).args(["ls", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == kind && v["address"] == format!("{kind}:{name}"))
        .map(|v| {
            let mut members: Vec<i64> =
                v["clients"].as_array().unwrap().iter().map(|c| c["pid"].as_i64().unwrap()).collect();
            members.sort_unstable();
            (v["creator"]["pid"].as_i64().unwrap(), members)
        })
        .collect()
}

fn me() -> i64 {
    i64::from(std::process::id() as i32)
}

/// A gate: children forked before the owners bind wait on it.
fn gate() -> (std::io::PipeReader, std::io::PipeWriter) {
    std::io::pipe().unwrap()
}

fn pass(r: &std::io::PipeReader) {
    let mut b = [0u8; 1];
    nix::unistd::read(r, &mut b).unwrap();
}

// One process owns two blackboards; a reader joins only the first. ls must
// list it under the first only.
fn ls_lists_members_only_under_the_hub_they_joined() {
    let dir = ScratchDir::new();
    let (a, b) = (name_in(&dir, "a"), name_in(&dir, "b"));
    let (go_r, go_w) = gate();
    let mut child = fork({
        let a = a.clone();
        move || {
            pass(&go_r);
            let _r = BlackboardReader::connect_timeout(&a, Duration::from_secs(10)).unwrap();
            std::thread::sleep(Duration::from_secs(30));
        }
    });
    let board_a = Blackboard::bind(&a, BlackboardOptions::default()).unwrap();
    let board_b = Blackboard::bind(&b, BlackboardOptions::default()).unwrap();
    nix::unistd::write(&go_w, b"g").unwrap();
    until("a reader of a", || board_a.readers() == 1);
    assert_eq!(board_b.readers(), 0);
    let c = i64::from(child.pid().as_raw());
    let la = listed("blackboard", &a);
    let lb = listed("blackboard", &b);
    child.kill();
    child.wait();
    assert_eq!(la, [(me(), vec![c])], "board a");
    assert_eq!(lb, [(me(), vec![])], "board b lists a reader that joined only board a");
}

// An owner forks a child (which holds the owner's memfd, as any forked
// child does), then drops its blackboard: ls must not list the child as
// the blackboard's owner.
fn ls_forgets_an_owner_whose_forked_child_lives_on() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "board");
    let board = Blackboard::bind(&name, BlackboardOptions::default()).unwrap();
    let mut child = fork(|| std::thread::sleep(Duration::from_secs(30)));
    let before = listed("blackboard", &name);
    drop(board);
    let after = listed("blackboard", &name);
    child.kill();
    child.wait();
    assert_eq!(before, [(me(), vec![])], "while the owner lives");
    assert_eq!(after, [], "the owner dropped its blackboard; its forked child is listed as its owner");
}

/// A member at the socket level: greets, takes the welcome, and sends
/// `last` (b"joined\0\0", garbage, or nothing).
fn raw_join(name: &SocketName, kind: u32, last: Option<&[u8]>) -> (u32, Vec<OwnedFd>, SeqpacketSocket) {
    let s = SeqpacketSocket::connect_timeout(name, Duration::from_secs(10)).unwrap();
    let mut hello = b"ipc-hub\0\x01\0\0\0".to_vec();
    hello.extend_from_slice(&kind.to_le_bytes());
    s.send(&hello).unwrap();
    let mut buf = [0u8; 64];
    let (n, fds) = s.recv_with_fds_timeout(&mut buf, 8, Duration::from_secs(10)).unwrap();
    assert_eq!(n, 32);
    let status = u32::from_le_bytes(buf[12..16].try_into().unwrap());
    if status == 0
        && let Some(last) = last
    {
        s.send(last).unwrap();
    }
    (status, fds, s)
}

// A client welcomed that keeps its cell but never says it joined: it is
// not counted, so ls must not list it as a member.
fn ls_lists_no_member_that_was_not_counted() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "board");
    let (go_r, go_w) = gate();
    let (done_r, done_w) = gate();
    let mut child = fork({
        let name = name.clone();
        move || {
            pass(&go_r);
            let (status, fds, _s) = raw_join(&name, 2, None);
            assert_eq!(status, 0);
            assert_eq!(fds.len(), 4);
            nix::unistd::write(&done_w, b"d").unwrap();
            std::thread::sleep(Duration::from_secs(30));
        }
    });
    let options = BlackboardOptions { handshake_timeout: Duration::from_secs(20), ..BlackboardOptions::default() };
    let board = Blackboard::bind(&name, options).unwrap();
    nix::unistd::write(&go_w, b"g").unwrap();
    pass(&done_r);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(board.readers(), 0, "counted without saying it joined");
    let l = listed("blackboard", &name);
    child.kill();
    child.wait();
    assert_eq!(l, [(me(), vec![])], "ls lists a client that is no member (readers() == 0)");
}

// A process that owns a notifier and listens to another's; a process that
// joined two owners.
fn ls_owner_that_is_also_a_member_and_a_member_of_two_owners() {
    let dir = ScratchDir::new();
    let (n1, n2) = (name_in(&dir, "n1"), name_in(&dir, "n2"));
    let (go_r, go_w) = gate();
    let (ok_r, ok_w) = gate();
    // Child A: owns n2, listens to n1.
    let mut a = fork({
        let (n1, n2) = (n1.clone(), n2.clone());
        let go_r = go_r.try_clone().unwrap();
        move || {
            pass(&go_r);
            let n = Notifier::bind(&n2, EventOptions::default()).unwrap();
            let _l = Listener::connect_timeout(&n1, Duration::from_secs(10)).unwrap();
            nix::unistd::write(&ok_w, b"a").unwrap();
            let _n = n;
            std::thread::sleep(Duration::from_secs(30));
        }
    });
    // Child B: listens to both.
    let mut b = fork({
        let (n1, n2) = (n1.clone(), n2.clone());
        move || {
            pass(&go_r);
            let _l1 = Listener::connect_timeout(&n1, Duration::from_secs(10)).unwrap();
            let start = Instant::now();
            let _l2 = loop {
                match Listener::connect_timeout(&n2, Duration::from_secs(10)) {
                    Ok(l) => break l,
                    Err(_) if start.elapsed() < Duration::from_secs(10) => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("{e}"),
                }
            };
            std::thread::sleep(Duration::from_secs(30));
        }
    });
    let owner = Notifier::bind(&n1, EventOptions::default()).unwrap();
    nix::unistd::write(&go_w, b"gg").unwrap();
    pass(&ok_r);
    until("two listeners", || owner.listeners() == 2);
    let (pa, pb) = (i64::from(a.pid().as_raw()), i64::from(b.pid().as_raw()));
    // B's second join.
    let start = Instant::now();
    let mut l2 = listed("events", &n2);
    while l2 != [(pa, vec![pb])] && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
        l2 = listed("events", &n2);
    }
    let l1 = listed("events", &n1);
    a.kill();
    b.kill();
    a.wait();
    b.wait();
    let mut want = vec![pa, pb];
    want.sort_unstable();
    assert_eq!(l1, [(me(), want)], "n1");
    assert_eq!(l2, [(pa, vec![pb])], "n2");
}

// Two owners of one name, one after another, in one process; a member of
// the first stays (its owner gone), the second has its own.
fn ls_two_owners_of_one_name_one_after_another() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "board");
    let first = Blackboard::bind(&name, BlackboardOptions::default()).unwrap();
    let old_reader = BlackboardReader::connect(&name).unwrap();
    until("a reader", || first.readers() == 1);
    drop(first);
    let second = Blackboard::bind(&name, BlackboardOptions::default()).unwrap();
    let (go_r, go_w) = gate();
    let mut child = fork({
        let name = name.clone();
        move || {
            pass(&go_r);
            let _r = BlackboardReader::connect_timeout(&name, Duration::from_secs(10)).unwrap();
            std::thread::sleep(Duration::from_secs(30));
        }
    });
    nix::unistd::write(&go_w, b"g").unwrap();
    until("the child's reader", || second.readers() == 1);
    let l = listed("blackboard", &name);
    let c = i64::from(child.pid().as_raw());
    child.kill();
    child.wait();
    drop(old_reader);
    // The child inherited this process's descriptors (the second owner's
    // memory too, and the first's reader cell): it is not an owner.
    assert_eq!(l, [(me(), vec![c])]);
}

/// A forged blackboard: `copies` copies of up to `max` bytes.
fn forge_board(copies: u64, max: u64) -> (Memfd, ipc_kit::shm::Mapping) {
    let slot = (16 + max).next_multiple_of(64);
    let memfd = Memfd::create("forged-board", (256 + copies * slot) as usize).unwrap();
    let map = memfd.map().unwrap();
    map.write(0, b"ipcboard").unwrap();
    map.write(8, &copies).unwrap();
    map.write(16, &max).unwrap();
    map.write(24, &slot).unwrap();
    (memfd, map)
}

/// A forged hub's side of the handshake of `kind` with one client.
fn forged_welcome(listener: &SeqpacketListener, kind: u32, object: &Memfd) -> (SeqpacketSocket, [EventFd; 2]) {
    let socket = listener.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut hello = [0u8; 64];
    assert_eq!(socket.recv_timeout(&mut hello, Duration::from_secs(10)).unwrap(), 16);
    let cell = Memfd::create("forged-cell", 4096).unwrap();
    cell.seal_grow().unwrap();
    let bells = [EventFd::new(0, EventFdMode::Counter).unwrap(), EventFd::new(0, EventFdMode::Counter).unwrap()];
    let mut answer = [0u8; 32];
    answer[..8].copy_from_slice(b"ipc-hub\0");
    answer[8..12].copy_from_slice(&1u32.to_le_bytes());
    answer[16..20].copy_from_slice(&kind.to_le_bytes());
    socket.send_with_fds(&answer, &[object.as_fd(), cell.as_fd(), bells[0].as_fd(), bells[1].as_fd()]).unwrap();
    (socket, bells)
}

/// Writes version `v` honestly into a forged board of 4 copies of 64.
fn forged_write(map: &ipc_kit::shm::Mapping, v: u64, byte: u8) {
    let at = 256 + (v % 4) as usize * 128;
    let stamp = map.shared::<AtomicU64>(at).unwrap();
    let len = map.shared::<AtomicU32>(at + 8).unwrap();
    stamp.store(v.wrapping_mul(2).wrapping_add(1), Ordering::SeqCst);
    map.write_bytes(at + 16, &[byte; 8]).unwrap();
    len.store(8, Ordering::SeqCst);
    stamp.store(v.wrapping_mul(2).wrapping_add(2), Ordering::SeqCst);
    map.shared::<AtomicU64>(64).unwrap().store(v, Ordering::SeqCst);
}

// wait_newer/try_newer must give only versions newer than the last read:
// a forged latest that goes back is no news.
fn wait_newer_never_hands_an_older_version_from_a_forged_board() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "board");
    let listener = SeqpacketListener::bind(&name).unwrap();
    let (memfd, map) = forge_board(4, 64);
    forged_write(&map, 10, 10);
    let (step_r, step_w) = gate();
    let (back_r, back_w) = gate();
    let mut reader = fork({
        let name = name.clone();
        move || {
            let mut r = BlackboardReader::connect_timeout(&name, Duration::from_secs(10)).unwrap();
            let mut buf = Vec::new();
            assert_eq!(r.wait_newer_timeout(&mut buf, Duration::from_secs(5)).unwrap(), 10);
            nix::unistd::write(&step_w, b"1").unwrap();
            pass(&back_r);
            match r.try_newer(&mut buf) {
                Ok(v) => assert!(v > 10, "try_newer gave version {v} after version 10 was read"),
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("{e}"),
            }
            match r.wait_newer_timeout(&mut buf, Duration::from_millis(200)) {
                Ok(v) => assert!(v > 10, "wait_newer gave version {v} after version 10 was read"),
                Err(Error::Timeout) => {}
                Err(e) => panic!("{e}"),
            }
        }
    });
    let (_s, bells) = forged_welcome(&listener, 2, &memfd);
    pass(&step_r);
    forged_write(&map, 5, 5);
    bells[0].add(1).unwrap();
    nix::unistd::write(&back_w, b"b").unwrap();
    assert_eq!(reader.wait_timeout(Duration::from_secs(20)), Some(Exit::Code(0)));
}

// Extreme forged values: latest u64::MAX (its stamp wraps to 0), a copy
// whose length is the largest + 1, a copy forever odd; every read and wait
// returns by its deadline with a value whose stamps were stable or a
// typed error.
fn forged_board_extremes_give_typed_errors_within_deadlines() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "board");
    let listener = SeqpacketListener::bind(&name).unwrap();
    let (memfd, map) = forge_board(4, 64);
    let (step_r, step_w) = gate();
    let (next_r, next_w) = gate();
    let mut reader = fork({
        let name = name.clone();
        move || {
            let mut r = BlackboardReader::connect_timeout(&name, Duration::from_secs(10)).unwrap();
            let mut buf = Vec::new();
            for round in 0..4 {
                pass(&next_r);
                let t = Instant::now();
                let got = r.read(&mut buf);
                println!("round {round}: read {got:?} len {}", buf.len());
                match (round, &got) {
                    // A length of 65 under a good stamp: not a value.
                    (0, Err(Error::Unsettled { .. })) => {}
                    // An odd stamp for ever.
                    (1, Err(Error::Unsettled { .. })) => {}
                    // latest u64::MAX: its copy's stamp should be 2^65+2,
                    // which wraps to 0 (a copy never written).
                    // Not asserted: stamps were stable (both 0), so no
                    // promise is broken; noted in the report.
                    (2, _) => {}
                    (3, _) => {}
                    _ => panic!("round {round}: {got:?}"),
                }
                assert!(t.elapsed() < Duration::from_secs(2));
                let t = Instant::now();
                let w = r.wait_newer_timeout(&mut buf, Duration::from_millis(100));
                assert!(t.elapsed() < Duration::from_millis(100) + SLACK, "round {round}: {w:?} {:?}", t.elapsed());
                let t = Instant::now();
                let _ = r.wait_newer_deadline(&mut buf, Instant::now());
                assert!(t.elapsed() < SLACK);
                nix::unistd::write(&step_w, b"s").unwrap();
            }
        }
    });
    let (_s, bells) = forged_welcome(&listener, 2, &memfd);
    let latest = map.shared::<AtomicU64>(64).unwrap();
    for round in 0..4u64 {
        let v = round + 1;
        let at = 256 + (v % 4) as usize * 128;
        let stamp = map.shared::<AtomicU64>(at).unwrap();
        let len = map.shared::<AtomicU32>(at + 8).unwrap();
        match round {
            0 => {
                len.store(65, Ordering::SeqCst);
                stamp.store(2 * v + 2, Ordering::SeqCst);
                latest.store(v, Ordering::SeqCst);
            }
            1 => {
                len.store(8, Ordering::SeqCst);
                stamp.store(2 * v + 1, Ordering::SeqCst);
                latest.store(v, Ordering::SeqCst);
            }
            2 => latest.store(u64::MAX, Ordering::SeqCst),
            _ => latest.store(u64::MAX / 2, Ordering::SeqCst),
        }
        bells[0].add(1).unwrap();
        nix::unistd::write(&next_w, b"n").unwrap();
        pass(&step_r);
    }
    assert_eq!(reader.wait_timeout(Duration::from_secs(20)), Some(Exit::Code(0)));
}

/// The longest a wait for newer lasted while writes came every ~1 ms.
const STALL: Duration = Duration::from_millis(60);

// An honest writer writes in bursts of two, back to back, every ~0.5 ms;
// readers (one with wait_newer, one in a poller with try_newer) must never
// wait ~100 ms (the recheck) for news that is there: that is a wake-up
// lost by the once-per-place guard.
fn blackboard_readers_lose_no_wakeup_under_bursts() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "board");
    let mut board = Blackboard::bind(&name, BlackboardOptions::default()).unwrap();
    let readers: Vec<_> = (0..3)
        .map(|i| {
            let name = name.clone();
            fork(move || {
                let i = i % 2;
                let mut r = BlackboardReader::connect(&name).unwrap();
                let mut buf = Vec::new();
                let mut poller = Poller::new().unwrap();
                if i == 1 {
                    poller.add(&r, Interest::Readable, 0).unwrap();
                }
                let (mut stalls, mut worst, mut n) = (0, Duration::ZERO, 0u64);
                loop {
                    let t = Instant::now();
                    let seen_before = r.version();
                    let got = if i == 0 {
                        r.wait_newer_timeout(&mut buf, Duration::from_secs(5))
                    } else {
                        match r.try_newer(&mut buf) {
                            Err(Error::WouldBlock) => {
                                let before = r.version();
                                poller.wait_timeout(Duration::from_secs(5)).unwrap();
                                let took = t.elapsed();
                                if took > STALL && r.version() != before {
                                    stalls += 1;
                                }
                                worst = worst.max(took);
                                continue;
                            }
                            got => got,
                        }
                    };
                    match got {
                        Ok(v) => {
                            n += 1;
                            let took = t.elapsed();
                            worst = worst.max(took);
                            if i == 0 && took > STALL {
                                println!("reader {i}: waited {took:?} from version {seen_before} to {v}");
                                if v > seen_before + 5 {
                                    stalls += 1;
                                }
                            }
                        }
                        Err(Error::Disconnected) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                println!("reader {i}: {n} values, {stalls} stalls, worst {worst:?}");
                assert_eq!(stalls, 0, "reader {i}: {stalls} waits over {STALL:?} with news there (lost wake-ups)");
            })
        })
        .collect();
    until("three readers", || board.readers() == 3);
    let started = Instant::now();
    let mut v = 0u64;
    let mut rng = Rng::new(5);
    while started.elapsed() < Duration::from_secs(8) {
        for _ in 0..1 + rng.below(3) {
            v += 1;
            board.write_pod(&v).unwrap();
        }
        let pause = rng.below(600);
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(pause) {
            std::hint::spin_loop();
        }
        if rng.chance(50) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    drop(board);
    for mut r in readers {
        assert_eq!(r.wait_timeout(Duration::from_secs(30)), Some(Exit::Code(0)));
    }
}

// The same for listeners.
fn listeners_lose_no_wakeup_under_bursts() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "events");
    let mut notifier = Notifier::bind(&name, EventOptions { ids: 4096, ..EventOptions::default() }).unwrap();
    let listeners: Vec<_> = (0..3)
        .map(|i| {
            let name = name.clone();
            fork(move || {
                let i = i % 2;
                let mut l = Listener::connect(&name).unwrap();
                let mut poller = Poller::new().unwrap();
                if i == 1 {
                    poller.add(&l, Interest::Readable, 0).unwrap();
                }
                let (mut stalls, mut worst, mut n) = (0, Duration::ZERO, 0u64);
                loop {
                    let t = Instant::now();
                    let got = if i == 0 {
                        l.wait_timeout(Duration::from_secs(5))
                    } else {
                        match l.try_wait() {
                            Err(Error::WouldBlock) => {
                                poller.wait_timeout(Duration::from_secs(5)).unwrap();
                                let took = t.elapsed();
                                worst = worst.max(took);
                                if took > STALL {
                                    let got: u64 = match l.try_wait() {
                                        Ok(f) => f.iter().map(|(_, c)| c).sum(),
                                        Err(_) => 0,
                                    };
                                    n += got;
                                    println!("listener {i}: polled {took:?}, then {got} notifications");
                                    if got > 5 {
                                        stalls += 1;
                                    }
                                }
                                continue;
                            }
                            got => got,
                        }
                    };
                    match got {
                        Ok(f) => {
                            let got: u64 = f.iter().map(|(_, c)| c).sum();
                            n += got;
                            let took = t.elapsed();
                            worst = worst.max(took);
                            // Stalled with notifications made meanwhile.
                            if i == 0 && took > STALL {
                                println!("listener {i}: waited {took:?}, then {got} notifications");
                                if got > 5 {
                                    stalls += 1;
                                }
                            }
                        }
                        Err(Error::Disconnected) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                println!("listener {i}: {n} notifications, {stalls} stalls, worst {worst:?}");
                assert_eq!(stalls, 0, "listener {i}: {stalls} waits over {STALL:?} (lost wake-ups)");
            })
        })
        .collect();
    until("three listeners", || notifier.listeners() == 3);
    let started = Instant::now();
    let mut rng = Rng::new(6);
    while started.elapsed() < Duration::from_secs(8) {
        for _ in 0..1 + rng.below(3) {
            notifier.notify(rng.below(4096) as u32).unwrap();
        }
        let pause = rng.below(600);
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(pause) {
            std::hint::spin_loop();
        }
    }
    drop(notifier);
    for mut l in listeners {
        assert_eq!(l.wait_timeout(Duration::from_secs(30)), Some(Exit::Code(0)));
    }
}

// A writer writes its last value and goes at once; a reader waiting for
// newer must get that value, never Disconnected first.
fn a_last_value_written_before_the_writer_goes_is_never_lost() {
    let dir = ScratchDir::new();
    let mut lost = 0;
    let runs = 1500;
    for k in 0..runs {
        let name = name_in(&dir, &format!("b{}", k % 4));
        let mut board = Blackboard::bind(&name, BlackboardOptions::default()).unwrap();
        let mut r = BlackboardReader::connect(&name).unwrap();
        until("a reader", || board.readers() == 1);
        let go = Arc::new(AtomicBool::new(false));
        let writer = std::thread::spawn({
            let go = Arc::clone(&go);
            move || {
                while !go.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(k % 40) {
                    std::hint::spin_loop();
                }
                board.write(b"last").unwrap();
                drop(board);
            }
        });
        go.store(true, Ordering::Release);
        let got = r.wait_newer_timeout(&mut Vec::new(), Duration::from_secs(10));
        writer.join().unwrap();
        match got {
            Ok(1) => {}
            Err(Error::Disconnected) => lost += 1,
            other => panic!("{other:?}"),
        }
    }
    println!("{lost} of {runs} last values lost to Disconnected");
    assert_eq!(lost, 0, "Disconnected while a newer value was there");
}

fn a_last_notification_before_the_notifier_goes_is_never_lost() {
    let dir = ScratchDir::new();
    let mut lost = 0;
    let runs = 1500;
    for k in 0..runs {
        let name = name_in(&dir, &format!("e{}", k % 4));
        let mut notifier = Notifier::bind(&name, EventOptions::default()).unwrap();
        let mut l = Listener::connect(&name).unwrap();
        until("a listener", || notifier.listeners() == 1);
        let go = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let go = Arc::clone(&go);
            move || {
                while !go.load(Ordering::Acquire) {
                    std::hint::spin_loop();
                }
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(k % 40) {
                    std::hint::spin_loop();
                }
                notifier.notify(7).unwrap();
                drop(notifier);
            }
        });
        go.store(true, Ordering::Release);
        let got = l.wait_timeout(Duration::from_secs(10));
        thread.join().unwrap();
        match got {
            Ok(f) => assert_eq!(f.iter().collect::<Vec<_>>(), [(7, 1)]),
            Err(Error::Disconnected) => lost += 1,
            other => panic!("{other:?}"),
        }
    }
    println!("{lost} of {runs} last notifications lost to Disconnected");
    assert_eq!(lost, 0, "Disconnected while a notification was untold");
}

// 65536 ids, notified at full speed across every group, three listeners
// (one in a poller, one slow): each sum exact.
fn listeners_count_every_id_exactly_over_many_groups() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "events");
    let ids = 65536u32;
    let mut notifier = Notifier::bind(&name, EventOptions { ids, ..EventOptions::default() }).unwrap();
    let listeners: Vec<_> = (0..3)
        .map(|i| {
            let out = dir.path().join(format!("sums{i}"));
            let name = name.clone();
            fork(move || {
                let mut l = Listener::connect(&name).unwrap();
                let mut poller = Poller::new().unwrap();
                poller.add(&l, Interest::Readable, 0).unwrap();
                let mut sums = BTreeMap::new();
                loop {
                    let got = if i == 1 {
                        match l.try_wait() {
                            Err(Error::WouldBlock) => {
                                poller.wait_timeout(Duration::from_secs(20)).unwrap();
                                continue;
                            }
                            got => got,
                        }
                    } else {
                        l.wait_timeout(Duration::from_secs(20))
                    };
                    match got {
                        Ok(f) => {
                            let v: Vec<_> = f.iter().collect();
                            assert!(v.windows(2).all(|w| w[0].0 < w[1].0), "ids not sorted or repeated");
                            for (id, n) in v {
                                assert!(id < ids && n > 0, "{id}:{n}");
                                *sums.entry(id).or_insert(0u64) += n;
                            }
                            if i == 2 {
                                std::thread::sleep(Duration::from_micros(300));
                            }
                        }
                        Err(Error::Disconnected) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                let line: Vec<String> = sums.iter().map(|(id, n)| format!("{id}:{n}")).collect();
                std::fs::write(&out, line.join(" ")).unwrap();
            })
        })
        .collect();
    until("three listeners", || notifier.listeners() == 3);

    let mut rng = Rng::new(1);
    let mut expected = BTreeMap::new();
    for k in 0..300_000u32 {
        let id = match k % 4 {
            0 => ids - 1,
            1 => rng.below(u64::from(ids)) as u32,
            2 => (k * 64) % ids,
            _ => rng.below(70) as u32,
        };
        notifier.notify(id).unwrap();
        *expected.entry(id).or_insert(0u64) += 1;
    }
    drop(notifier);
    let want: Vec<String> = expected.iter().map(|(id, n)| format!("{id}:{n}")).collect();
    let want = want.join(" ");
    for mut l in listeners {
        assert_eq!(l.wait_timeout(Duration::from_secs(60)), Some(Exit::Code(0)));
    }
    for i in 0..3 {
        let line = std::fs::read_to_string(dir.path().join(format!("sums{i}"))).unwrap();
        if line != want {
            let got: BTreeMap<&str, &str> = line.split(' ').filter_map(|p| p.split_once(':')).collect();
            let exp: BTreeMap<&str, &str> = want.split(' ').filter_map(|p| p.split_once(':')).collect();
            let diff: Vec<_> = exp.iter().filter(|(k, v)| got.get(*k) != Some(*v)).take(10).collect();
            let extra: Vec<_> = got.iter().filter(|(k, _)| !exp.contains_key(*k)).take(10).collect();
            panic!("listener {i} counts differ: want/got {diff:?} ... extra {extra:?}");
        }
    }
}

/// A forged event table of `ids` ids.
fn forge_table(ids: u64) -> (Memfd, ipc_kit::shm::Mapping) {
    let groups = ids.div_ceil(64);
    let memfd = Memfd::create("forged-events", (256 + 8 * groups + 8 * ids) as usize).unwrap();
    let map = memfd.map().unwrap();
    map.write(0, b"ipcevent").unwrap();
    map.write(8, &ids).unwrap();
    (memfd, map)
}

// A forged notifier: counts backwards, generation back and jumping, group
// stamps lying, all at full speed; the listener never panics and every
// wait ends by its deadline.
fn a_forged_event_table_never_panics_or_hangs_a_listener() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "events");
    let listener = SeqpacketListener::bind(&name).unwrap();
    let ids = 200u64;
    let (memfd, map) = forge_table(ids);
    let stop = Arc::new(AtomicBool::new(false));
    let mut l_proc = fork({
        let name = name.clone();
        move || {
            let mut l = Listener::connect_timeout(&name, Duration::from_secs(10)).unwrap();
            let mut poller = Poller::new().unwrap();
            poller.add(&l, Interest::Readable, 0).unwrap();
            let started = Instant::now();
            let (mut fired, mut timeouts) = (0u64, 0u64);
            while started.elapsed() < Duration::from_secs(3) {
                let t = Instant::now();
                match l.wait_timeout(Duration::from_millis(30)) {
                    Ok(f) => {
                        for (id, _) in f.iter() {
                            assert!(u64::from(id) < ids);
                        }
                        fired += 1;
                    }
                    Err(Error::Timeout) => timeouts += 1,
                    Err(e) => panic!("{e}"),
                }
                assert!(t.elapsed() < Duration::from_millis(30) + SLACK, "a wait took {:?}", t.elapsed());
                let t = Instant::now();
                let _ = l.try_wait();
                let _ = poller.wait_timeout(Duration::from_millis(5)).unwrap();
                let _ = l.wait_deadline(Instant::now());
                assert!(t.elapsed() < Duration::from_millis(5) + SLACK);
            }
            println!("{fired} fired, {timeouts} timeouts");
        }
    });
    let (_s, bells) = forged_welcome(&listener, 3, &memfd);
    let _ = &stop;
    let started = Instant::now();
    let mut rng = Rng::new(17);
    let gen_ = map.shared::<AtomicU64>(64).unwrap();
    while started.elapsed() < Duration::from_secs(3) {
        let id = rng.below(ids) as usize;
        let count = map.shared::<AtomicU64>(256 + 8 * 4 + 8 * id).unwrap();
        let group = map.shared::<AtomicU64>(256 + 8 * (id / 64)).unwrap();
        match rng.below(6) {
            0 => count.store(count.load(Ordering::SeqCst).wrapping_sub(3), Ordering::SeqCst),
            1 => gen_.store(gen_.load(Ordering::SeqCst).wrapping_sub(1), Ordering::SeqCst),
            2 => gen_.store(rng.next_u64(), Ordering::SeqCst),
            3 => group.store(rng.next_u64(), Ordering::SeqCst),
            4 => {
                count.store(count.load(Ordering::SeqCst).wrapping_add(1), Ordering::SeqCst);
                gen_.store(gen_.load(Ordering::SeqCst).wrapping_add(1), Ordering::SeqCst);
            }
            _ => bells[0].add(1).unwrap(),
        }
        if rng.chance(100) {
            std::thread::sleep(Duration::from_millis(3));
        }
    }
    assert_eq!(l_proc.wait_timeout(Duration::from_secs(30)), Some(Exit::Code(0)));
}

// A welcomed client that sends garbage is dropped at once; one that sends
// nothing holds no count and is dropped after handshake_timeout; an honest
// reader gets in.
fn a_member_that_sends_garbage_or_nothing_is_not_counted_and_blocks_no_one() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "board");
    let options = BlackboardOptions {
        max_readers: 1,
        handshake_timeout: Duration::from_millis(500),
        ..BlackboardOptions::default()
    };
    let mut board = Blackboard::bind(&name, options).unwrap();
    // Garbage in place of b"joined\0\0".
    let (status, _fds, s) = raw_join(&name, 2, Some(b"garbage!"));
    assert_eq!(status, 0);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(board.readers(), 0);
    let mut b = [0u8; 8];
    assert!(
        matches!(s.recv_timeout(&mut b, Duration::from_secs(1)), Ok(0) | Err(_)),
        "the garbage sender's socket stayed open"
    );
    // Joined twice (the second message extra): counted once.
    let (status, _fds2, s2) = raw_join(&name, 2, Some(b"joined\0\0"));
    assert_eq!(status, 0);
    let _ = s2.send(b"joined\0\0");
    until("the raw member", || board.readers() == 1);
    board.write(b"x").unwrap();
    drop((s2, _fds2));
    until("the raw member gone", || board.readers() == 0);
    // Silent after the welcome: holds no count.
    let t = Instant::now();
    let (status, _fds3, s3) = raw_join(&name, 2, None);
    assert_eq!(status, 0);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(board.readers(), 0);
    // Dropped after handshake_timeout.
    let got = s3.recv_timeout(&mut b, Duration::from_secs(3));
    let took = t.elapsed();
    assert!(matches!(got, Ok(0) | Err(_)), "{got:?}");
    assert!(took < Duration::from_millis(500) + SLACK, "dropped after {took:?}");
    // Now an honest reader gets the seat.
    let mut r = BlackboardReader::connect_timeout(&name, Duration::from_secs(5)).unwrap();
    until("the honest reader", || board.readers() == 1);
    board.write(b"y").unwrap();
    let mut buf = Vec::new();
    assert_eq!(r.read(&mut buf).unwrap(), Some(2));
    // A greeting of another version and a greeting in two parts: refused.
    for hello in [&b"ipc-hub\0\x02\0\0\0\x02\0\0\0"[..], &b"ipc-hub\0"[..], &[0u8; 64][..]] {
        let s = SeqpacketSocket::connect_timeout(&name, Duration::from_secs(5)).unwrap();
        s.send(hello).unwrap();
        let mut buf = [0u8; 64];
        if let Ok((n, fds)) = s.recv_with_fds_timeout(&mut buf, 8, Duration::from_secs(5)) {
            assert!(fds.is_empty(), "descriptors handed for {hello:?}");
            if n >= 16 {
                assert_ne!(u32::from_le_bytes(buf[12..16].try_into().unwrap()), 0);
            }
        }
    }
    assert_eq!(board.readers(), 1);
    // Sixty-five silent clients (over MAX_PENDING) while an honest reader
    // joins: it gets in.
    drop(r);
    until("no reader", || board.readers() == 0);
    let silent: Vec<_> =
        (0..65).map(|_| SeqpacketSocket::connect_timeout(&name, Duration::from_secs(5)).unwrap()).collect();
    let r = BlackboardReader::connect_timeout(&name, Duration::from_secs(5));
    assert!(r.is_ok(), "{r:?}");
    drop(silent);
}

// Joins and leaves by the hundred: no descriptor stays open in the owner
// or the member (here one process).
fn no_descriptor_leaks_after_many_joins_and_leaves() {
    let dir = ScratchDir::new();
    let bname = name_in(&dir, "board");
    let ename = name_in(&dir, "events");
    let mut board = Blackboard::bind(&bname, BlackboardOptions::default()).unwrap();
    let mut notifier = Notifier::bind(&ename, EventOptions::default()).unwrap();
    let cycle = |board: &mut Blackboard, notifier: &mut Notifier| {
        let r = BlackboardReader::connect(&bname).unwrap();
        let l = Listener::connect(&ename).unwrap();
        until("members", || board.readers() == 1 && notifier.listeners() == 1);
        board.write(b"v").unwrap();
        notifier.notify(1).unwrap();
        drop((r, l));
        until("members gone", || board.readers() == 0 && notifier.listeners() == 0);
        // The owners' rosters take the departures in on their next calls.
        board.write(b"v").unwrap();
        notifier.notify(1).unwrap();
    };
    cycle(&mut board, &mut notifier);
    let before = count_fds();
    for _ in 0..200 {
        cycle(&mut board, &mut notifier);
    }
    // Raw members that leave in the handshake too.
    for k in 0..100 {
        match k % 3 {
            0 => drop(raw_join(&bname, 2, None)),
            1 => drop(raw_join(&ename, 3, Some(b"nonsense"))),
            _ => drop(SeqpacketSocket::connect_timeout(&bname, Duration::from_secs(5)).unwrap()),
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    board.write(b"v").unwrap();
    notifier.notify(1).unwrap();
    let after = count_fds();
    assert_eq!(after, before, "descriptors: {before} before 200 joins and leaves, {after} after");
}

// Every limit and one more; zero and huge timeouts.
fn limits_and_limits_plus_one() {
    let dir = ScratchDir::new();
    let n = |s: &str| name_in(&dir, s);
    // Events: ids.
    for bad in [0u32, 65537, u32::MAX] {
        let r = Notifier::bind(&n("bad"), EventOptions { ids: bad, ..EventOptions::default() });
        assert!(matches!(r, Err(Error::InvalidOptions { .. })), "ids {bad}: {r:?}");
    }
    for bad in [0usize, 4097, usize::MAX] {
        let r = Notifier::bind(&n("bad"), EventOptions { max_listeners: bad, ..EventOptions::default() });
        assert!(matches!(r, Err(Error::InvalidOptions { .. })), "max_listeners {bad}: {r:?}");
        let r = Blackboard::bind(&n("bad"), BlackboardOptions { max_readers: bad, ..BlackboardOptions::default() });
        assert!(matches!(r, Err(Error::InvalidOptions { .. })), "max_readers {bad}: {r:?}");
    }
    let r = Notifier::bind(&n("bad"), EventOptions { handshake_timeout: Duration::ZERO, ..EventOptions::default() });
    assert!(matches!(r, Err(Error::InvalidOptions { .. })));
    let mut notifier = Notifier::bind(
        &n("ev"),
        EventOptions { ids: 65536, max_listeners: 4096, handshake_timeout: Duration::MAX, ..EventOptions::default() },
    )
    .unwrap();
    let mut l = Listener::connect_timeout(&n("ev"), Duration::from_secs(5)).unwrap();
    until("a listener", || notifier.listeners() == 1);
    assert_eq!(l.ids(), 65536);
    assert!(matches!(l.wait_timeout(Duration::ZERO), Err(Error::Timeout)));
    assert!(matches!(l.wait_deadline(Instant::now() - Duration::from_millis(1)), Err(Error::Timeout)));
    notifier.notify(65535).unwrap();
    notifier.notify(0).unwrap();
    assert!(matches!(notifier.notify(65536), Err(Error::UnknownEvent { .. })));
    assert!(matches!(notifier.notify(u32::MAX), Err(Error::UnknownEvent { .. })));
    let f = l.wait_timeout(Duration::MAX).unwrap();
    assert_eq!(f.iter().collect::<Vec<_>>(), [(0, 1), (65535, 1)]);
    // A huge wait woken by a later notification.
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        notifier.notify(64).unwrap();
        notifier
    });
    let f = l.wait_deadline(Instant::now() + Duration::from_secs(1 << 40)).unwrap();
    assert_eq!(f.iter().collect::<Vec<_>>(), [(64, 1)]);
    let notifier = t.join().unwrap();
    drop(notifier);
    assert!(matches!(l.wait_timeout(Duration::from_secs(5)), Err(Error::Disconnected)));
    // Blackboard: sizes and copies.
    for (max_size, copies) in [(0, 4), ((1 << 26) + 1, 4), (100, 1), (100, 65), ((1 << 24) + 1, 64), (1 << 26, 17)] {
        let r = Blackboard::bind(&n("bad"), BlackboardOptions { max_size, copies, ..BlackboardOptions::default() });
        assert!(matches!(r, Err(Error::InvalidOptions { .. })), "{max_size} x {copies}: {r:?}");
    }
    for (max_size, copies) in [(1usize, 2usize), (1 << 24, 64), (1 << 26, 2)] {
        let name = n(&format!("ok{max_size}-{copies}"));
        let mut b =
            Blackboard::bind(&name, BlackboardOptions { max_size, copies, ..BlackboardOptions::default() }).unwrap();
        let mut r = BlackboardReader::connect_timeout(&name, Duration::from_secs(5)).unwrap();
        assert_eq!(r.max_size(), max_size);
        let big = vec![0xa5u8; max_size];
        for _ in 0..copies + 1 {
            b.write(&big).unwrap();
        }
        assert!(matches!(b.write(&vec![0; max_size + 1]), Err(Error::MessageTooLarge { .. })));
        let mut buf = Vec::new();
        let v = r.wait_newer_timeout(&mut buf, Duration::MAX).unwrap();
        assert_eq!(v, copies as u64 + 1);
        assert!(buf == big);
        assert!(matches!(r.try_newer(&mut buf), Err(Error::WouldBlock)));
        assert!(matches!(r.wait_newer_timeout(&mut buf, Duration::ZERO), Err(Error::Timeout)));
    }
    // max_readers 1: a second refused, then admitted once the first left.
    let name = n("one");
    let b = Blackboard::bind(&name, BlackboardOptions { max_readers: 1, ..BlackboardOptions::default() }).unwrap();
    let r1 = BlackboardReader::connect(&name).unwrap();
    assert!(matches!(BlackboardReader::connect(&name), Err(Error::Refused { reason: Refusal::Full, .. })));
    drop(r1);
    until("the first gone", || b.readers() == 0);
    let _r2 = BlackboardReader::connect(&name).unwrap();
}

// A reader in a poller that never reads: readable again at each wait
// while news waits; a value written while it waits wakes it.
fn a_reader_that_polls_but_never_reads_stays_readable() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "board");
    let board = Arc::new(Mutex::new(Blackboard::bind(&name, BlackboardOptions::default()).unwrap()));
    let r = BlackboardReader::connect(&name).unwrap();
    until("a reader", || board.lock().unwrap().readers() == 1);
    let mut poller = Poller::new().unwrap();
    poller.add(&r, Interest::Readable, 0).unwrap();
    assert!(poller.wait_timeout(Duration::from_millis(20)).unwrap().is_empty());
    let w = std::thread::spawn({
        let board = Arc::clone(&board);
        move || {
            for v in 1..=1000u64 {
                board.lock().unwrap().write_pod(&v).unwrap();
            }
        }
    });
    let t = Instant::now();
    assert_eq!(poller.wait_timeout(Duration::from_secs(5)).unwrap(), [0]);
    assert!(t.elapsed() < Duration::from_millis(60), "woken after {:?}", t.elapsed());
    w.join().unwrap();
    for _ in 0..100 {
        assert_eq!(poller.wait_timeout(Duration::from_millis(1)).unwrap(), [0], "news unread, not readable");
    }
}
