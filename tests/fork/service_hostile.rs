//! Services against hostile peers: clients and services that speak the
//! wire protocol by hand, peers that scribble, idle CPU, Poller liveness,
//! timeouts, descriptor leaks, an unprivileged side, floods of clients.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use ipc_kit::service::{
    Access, Connection, Error, Refusal, Requester, Responder, Service, ServiceOptions, SocketName, connect,
    connect_timeout,
};
use ipc_kit::shm::{ByteChannel, Memfd};
use ipc_kit::socket::{SeqpacketListener, SeqpacketSocket};
use ipc_kit::sync::{Interest, Poller};
use ipc_kit_tests::{Exit, ScratchDir, cases, fork, pattern, thread_cpu};

cases!("service_hostile":
    idle_waits_do_not_spin,
    socket_junk_after_the_handshake_does_not_wake_or_spin,
    a_peer_that_shuts_its_write_half_but_lives,
    stalled_handshakes_fill_the_cap_then_are_dropped,
    stalled_handshakes_are_dropped_under_a_poller,
    a_poller_sees_a_dead_peer_at_once_and_try_recv_says_disconnected,
    a_hostile_server_hands_wrong_descriptors(60 s),
    a_hostile_server_with_swapped_doorbells,
    a_hostile_server_hands_one_ring_for_both_directions,
    scribbling_while_the_service_waits_blocked,
    scribbling_on_the_reply_ring_while_the_service_sends,
    a_hostile_server_scribbles_while_the_client_waits,
    requester_with_a_hostile_server,
    zero_and_huge_timeouts,
    clients_that_close_at_each_step_leak_nothing,
    a_service_that_dies_at_each_step,
    refusals_leak_no_descriptors_at_the_client,
    an_unprivileged_service_and_clients,
    every_descriptor_is_cloexec_and_an_execd_child_does_not_keep_the_peer_alive,
    idle_wait_wakeups,
    a_poller_on_a_full_sender_sees_the_death,
    a_full_service_refuses_every_time_with_full,
    a_hostile_server_seals_its_memfd_against_writes,
    a_flood_of_refused_clients_holds_no_accept_past_its_time,
);

use crate::service::{HELLO, name_in, open_fds};

/// CPU time (user + system) this thread has used.
fn cpu_of<R>(what: &str, f: impl FnOnce() -> R) -> (R, Duration) {
    let (c, t) = (thread_cpu(), Instant::now());
    let r = f();
    let (cpu, wall) = (thread_cpu() - c, t.elapsed());
    eprintln!("{what}: cpu {cpu:?} over wall {wall:?}");
    (r, cpu)
}

/// A welcome of the protocol with the capacities given.
fn welcome(requests: u64, replies: u64) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[..8].copy_from_slice(b"ipc-svc\0");
    m[8..12].copy_from_slice(&1u32.to_le_bytes());
    m[16..24].copy_from_slice(&requests.to_le_bytes());
    m[24..32].copy_from_slice(&replies.to_le_bytes());
    m
}

/// Connects by hand and completes the handshake: the socket and the six fds.
fn raw_client(name: &SocketName) -> (SeqpacketSocket, Vec<OwnedFd>) {
    let s = SeqpacketSocket::connect_timeout(name, Duration::from_secs(10)).unwrap();
    s.send(&HELLO).unwrap();
    let mut buf = [0u8; 64];
    let (n, fds) = s.recv_with_fds_timeout(&mut buf, 16, Duration::from_secs(10)).unwrap();
    assert_eq!((n, buf[12], fds.len()), (32, 0, 6), "a welcome");
    (s, fds)
}

/// The client's ends from a raw client's six fds: (requests sender, replies receiver).
fn claim_client_sides(fds: Vec<OwnedFd>) -> (ipc_kit::shm::ByteSender, ipc_kit::shm::ByteReceiver) {
    let mut it = fds.into_iter();
    let mut chan = || {
        let (m, a, b) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        ByteChannel::from_handoff(ipc_kit::shm::channel::Handoff::from_fds(m, [a, b]).unwrap()).unwrap()
    };
    let (req, rep) = (chan(), chan());
    (req.sender().unwrap(), rep.receiver().unwrap())
}

fn idle_waits_do_not_spin() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let options = ServiceOptions { handshake_timeout: Duration::from_secs(20), ..Default::default() };
    let mut service = Service::bind(&name, options).unwrap();
    let mut client = fork(|| {
        let _c = connect(&name).unwrap();
        std::thread::sleep(Duration::from_secs(6));
    });
    let mut conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut buf = Vec::new();
    let mut worst = Duration::ZERO;
    let (r, cpu) = cpu_of("recv_timeout(1s) idle", || conn.recv_timeout(&mut buf, Duration::from_secs(1)));
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    worst = worst.max(cpu);
    while conn.try_send(&[1; 1000]).is_ok() {}
    let (r, cpu) = cpu_of("send_timeout(1s) on a full ring", || conn.send_timeout(&[1; 1000], Duration::from_secs(1)));
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    worst = worst.max(cpu);
    let mut poller = Poller::new().unwrap();
    poller.add(&conn, Interest::Readable, 1).unwrap();
    let (n, cpu) = cpu_of("Poller::wait_timeout(1s) on an idle connection", || {
        let mut wakes = 0;
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            wakes += poller.wait_deadline(until).unwrap().len();
        }
        wakes
    });
    eprintln!("poller reported the idle connection {n} times");
    worst = worst.max(cpu);
    poller.remove(1).unwrap();
    // A stalled handshake pending while the service waits.
    let _stall = SeqpacketSocket::connect_timeout(&name, Duration::from_secs(5)).unwrap();
    let (r, cpu) =
        cpu_of("accept_timeout(1s) with a stalled handshake", || service.accept_timeout(Duration::from_secs(1)));
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert_eq!(service.handshakes(), 1);
    worst = worst.max(cpu);
    client.kill();
    client.wait();
    assert!(worst < Duration::from_millis(100), "an idle wait used {worst:?} of CPU in 1 s");
}

fn socket_junk_after_the_handshake_does_not_wake_or_spin() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let mut client = fork(|| {
        let (s, fds) = raw_client(&name);
        for i in 0..50 {
            let fd: Vec<BorrowedFd<'_>> = if i % 2 == 0 { vec![fds[0].as_fd()] } else { vec![] };
            let _ = s.try_send_with_fds(&pattern(i, 100), &fd);
        }
        std::thread::sleep(Duration::from_secs(3));
    });
    let mut conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut buf = Vec::new();
    let (r, cpu) = cpu_of("service recv_timeout(1s) with junk on the socket", || {
        conn.recv_timeout(&mut buf, Duration::from_secs(1))
    });
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    assert!(!conn.peer_gone());
    let mut poller = Poller::new().unwrap();
    poller.add(&conn, Interest::Readable, 1).unwrap();
    let (wakes, cpu2) = cpu_of("Poller 1s with junk on the socket", || {
        let mut wakes = 0;
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            wakes += poller.wait_deadline(until).unwrap().len();
        }
        wakes
    });
    eprintln!("junk: poller woke {wakes} times");
    client.kill();
    client.wait();
    let t = Instant::now();
    let r = conn.recv_timeout(&mut buf, Duration::from_secs(10));
    eprintln!("junk: after the client's death {r:?} in {:?}", t.elapsed());
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert!(cpu < Duration::from_millis(100) && cpu2 < Duration::from_millis(100), "{cpu:?} {cpu2:?}");
    assert!(wakes < 5, "the poller reported an idle connection {wakes} times");
}

fn a_peer_that_shuts_its_write_half_but_lives() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let mut client = fork(|| {
        let (s, fds) = raw_client(&name);
        let (mut tx, _rx) = claim_client_sides(fds);
        tx.send(b"before").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        tx.send(b"after").unwrap();
        std::thread::sleep(Duration::from_secs(3));
    });
    let mut conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut buf = Vec::new();
    conn.recv_timeout(&mut buf, Duration::from_secs(5)).unwrap();
    assert_eq!(buf, b"before");
    // The peer shut down its socket's writing but lives: its next message
    // comes, and the wait for it does not spin.
    let (r, cpu) = cpu_of("recv after the peer's SHUT_WR", || conn.recv_timeout(&mut buf, Duration::from_secs(10)));
    assert!(matches!(r, Ok(5)) && buf == b"after", "{r:?} {:?}", String::from_utf8_lossy(&buf));
    client.kill();
    client.wait();
    assert!(matches!(conn.recv_timeout(&mut buf, Duration::from_secs(10)), Err(Error::Disconnected)));
    assert!(cpu < Duration::from_millis(100));
}

fn stalled_handshakes_fill_the_cap_then_are_dropped() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let options =
        ServiceOptions { max_clients: 3, handshake_timeout: Duration::from_millis(400), ..Default::default() };
    let mut service = Service::bind(&name, options).unwrap();
    let (go_r, go_w) = std::io::pipe().unwrap();
    let mut hostile = fork(|| {
        let _s: Vec<_> =
            (0..3).map(|_| SeqpacketSocket::connect_timeout(&name, Duration::from_secs(5)).unwrap()).collect();
        nix::unistd::write(&go_w, b"g").unwrap();
        std::thread::sleep(Duration::from_secs(4));
    });
    drop(go_w);
    let mut b = [0u8; 1];
    nix::unistd::read(&go_r, &mut b).unwrap();
    let mut good = fork(|| {
        let r = connect_timeout(&name, Duration::from_secs(5));
        eprintln!("cap: a good client while 3 stall: {:?}", r.as_ref().err());
        assert!(matches!(r, Err(Error::Refused { reason: Refusal::Full, .. })), "{r:?}");
        std::thread::sleep(Duration::from_millis(600));
        let mut c = connect_timeout(&name, Duration::from_secs(5)).unwrap();
        c.send(b"hi").unwrap();
    });
    let t = Instant::now();
    let mut conn = loop {
        match service.accept_timeout(Duration::from_millis(100)) {
            Ok(c) => break c,
            Err(Error::Timeout) => assert!(t.elapsed() < Duration::from_secs(10), "never let in"),
            Err(e) => panic!("{e}"),
        }
    };
    let mut buf = Vec::new();
    conn.recv_timeout(&mut buf, Duration::from_secs(5)).unwrap();
    assert_eq!(good.wait(), Exit::Code(0));
    hostile.kill();
    hostile.wait();
}

fn stalled_handshakes_are_dropped_under_a_poller() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let options = ServiceOptions { handshake_timeout: Duration::from_millis(300), ..Default::default() };
    let mut service = Service::bind(&name, options).unwrap();
    let stall = SeqpacketSocket::connect_timeout(&name, Duration::from_secs(5)).unwrap();
    let mut poller = Poller::new().unwrap();
    poller.add(&service, Interest::Readable, 0).unwrap();
    let t = Instant::now();
    let mut rounds = 0;
    while t.elapsed() < Duration::from_secs(2) {
        let ready = poller.wait_timeout(Duration::from_secs(2)).unwrap().to_vec();
        rounds += 1;
        if !ready.is_empty() {
            assert!(matches!(service.try_accept(), Err(Error::WouldBlock)));
        }
        if service.handshakes() == 0 && t.elapsed() > Duration::from_millis(250) {
            break;
        }
        assert!(rounds < 200, "the poller spins on the service ({rounds} rounds in {:?})", t.elapsed());
    }
    eprintln!("poller service: handshakes {} after {:?}, {rounds} rounds", service.handshakes(), t.elapsed());
    assert_eq!(service.handshakes(), 0);
    let mut buf = [0u8; 64];
    assert!(matches!(stall.recv_timeout(&mut buf, Duration::from_secs(1)), Ok(0) | Err(_)));
}

fn a_poller_sees_a_dead_peer_at_once_and_try_recv_says_disconnected() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    for round in 0..20 {
        let delay = Duration::from_micros(50 * round);
        let mut client = fork(|| {
            let (_s, _fds) = raw_client(&name);
            std::thread::sleep(Duration::from_millis(100) + delay);
            // SAFETY: ends this forked child at once.
            unsafe { libc::_exit(0) };
        });
        let conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
        let mut resp = Responder::new(conn);
        let mut poller = Poller::new().unwrap();
        poller.add(&resp, Interest::Readable, 1).unwrap();
        let mut buf = Vec::new();
        // try_recv right before, so that the rate limit of look_sometimes is primed.
        let mut tries = 0;
        loop {
            match resp.try_recv_request(&mut buf) {
                Err(Error::WouldBlock) => {}
                other => panic!("{other:?}"),
            }
            let ready = poller.wait_timeout(Duration::from_secs(10)).unwrap().to_vec();
            assert_eq!(ready, vec![1], "round {round}: woke for the death");
            match resp.try_recv_request(&mut buf) {
                Err(Error::Disconnected) => break,
                Err(Error::WouldBlock) => {
                    tries += 1;
                    assert!(tries < 1000, "round {round}: ready, but try_recv says WouldBlock for ever");
                }
                other => panic!("{other:?}"),
            }
        }
        if tries > 0 {
            eprintln!("poller death round {round}: {tries} spurious WouldBlock after ready");
        }
        assert_eq!(client.wait(), Exit::Code(0));
    }
}

/// What the fake server hands over.
enum Hand {
    Fds(Vec<OwnedFd>, [u8; 32]),
}

fn eventfd() -> OwnedFd {
    ipc_kit::sync::EventFd::new(0, ipc_kit::sync::EventFdMode::Counter).unwrap().into()
}

/// Makes a real channel pair as the service would: (requests, replies).
fn real_channels(cap: usize) -> (ByteChannel, ByteChannel) {
    let req = ByteChannel::new_memfd(cap).unwrap();
    let rep = ByteChannel::new_memfd(cap).unwrap();
    req.memfd().unwrap().seal_grow().unwrap();
    rep.memfd().unwrap().seal_grow().unwrap();
    (req, rep)
}

fn fds_of(chan: &ByteChannel) -> Vec<OwnedFd> {
    let (m, [a, b]) = chan.handoff().unwrap().into_fds();
    vec![m, a, b]
}

fn dup(fd: BorrowedFd<'_>) -> OwnedFd {
    fd.try_clone_to_owned().unwrap()
}

/// Runs a fake service that answers one client with `hand`, and a client
/// that connects to it; returns what the client's `connect` gave (as text).
fn against_fake(
    dir: &ScratchDir,
    what: &str,
    hand: impl FnOnce() -> Hand,
    after: impl FnOnce(&SeqpacketSocket),
) -> String {
    let name = name_in(dir, &format!("fake-{}", what.len()));
    let listener = SeqpacketListener::bind(&name).unwrap();
    let (res_r, res_w) = std::io::pipe().unwrap();
    let mut client = fork(|| {
        let before = open_fds();
        let r = connect_timeout(&name, Duration::from_secs(5));
        let text = match &r {
            Ok(_) => "Ok(connection)".to_string(),
            Err(e) => format!("Err({e:?})"),
        };
        drop(r);
        let after = open_fds();
        let msg = format!("{text} fds {before}->{after}");
        nix::unistd::write(&res_w, msg.as_bytes()).unwrap();
    });
    drop(res_w);
    let s = listener.accept().unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(s.recv_timeout(&mut buf, Duration::from_secs(5)).unwrap(), 16);
    let Hand::Fds(fds, msg) = hand();
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    s.send_with_fds(&msg, &borrowed).unwrap();
    after(&s);
    let exit = client.wait_timeout(Duration::from_secs(10));
    let mut out = String::new();
    std::io::Read::read_to_string(&mut &res_r, &mut out).unwrap();
    let line = format!("{what}: exit {exit:?}: {out}");
    eprintln!("fake server {line}");
    if exit.is_none() {
        client.kill();
        client.wait();
    }
    line
}

fn a_hostile_server_hands_wrong_descriptors() {
    let dir = ScratchDir::new();
    let cap = 4096usize;
    let mut results = Vec::new();
    let file = || std::fs::File::open("/proc/self/stat").map(OwnedFd::from).unwrap();
    results.push(against_fake(
        &dir,
        "regular files x6",
        || Hand::Fds((0..6).map(|_| file()).collect(), welcome(4096, 4096)),
        |_| {},
    ));
    results.push(against_fake(
        &dir,
        "unsealed memfds of the right size",
        || {
            let (req, rep) = real_channels(cap);
            let mut fds = Vec::new();
            for chan in [&req, &rep] {
                let raw = nix::sys::memfd::memfd_create("unsealed", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
                let f = std::fs::File::from(raw);
                let mut bytes = vec![0u8; chan.mapping().len()];
                chan.mapping().read_bytes(0, &mut bytes).unwrap();
                std::io::Write::write_all(&mut &f, &bytes).unwrap();
                fds.extend([OwnedFd::from(f), eventfd(), eventfd()]);
            }
            Hand::Fds(fds, welcome(cap as u64, cap as u64))
        },
        |_| {},
    ));
    results.push(against_fake(
        &dir,
        "sealed memfd of a wrong size (64 bytes)",
        || {
            let m = Memfd::create("small", 64).unwrap();
            let fds = vec![dup(m.as_fd()), eventfd(), eventfd(), dup(m.as_fd()), eventfd(), eventfd()];
            Hand::Fds(fds, welcome(cap as u64, cap as u64))
        },
        |_| {},
    ));
    results.push(against_fake(
        &dir,
        "real channels, capacity announced wrong",
        || {
            let (req, rep) = real_channels(cap);
            let mut fds = fds_of(&req);
            fds.extend(fds_of(&rep));
            Hand::Fds(fds, welcome(8192, cap as u64))
        },
        |_| {},
    ));
    results.push(against_fake(
        &dir,
        "one memfd six times",
        || {
            let (req, _rep) = real_channels(cap);
            let m = fds_of(&req).remove(0);
            Hand::Fds((0..6).map(|_| dup(m.as_fd())).collect(), welcome(cap as u64, cap as u64))
        },
        |_| {},
    ));
    results.push(against_fake(
        &dir,
        "a request ring whose sender is claimed already",
        || {
            let (req, rep) = real_channels(cap);
            let s = req.sender().unwrap();
            std::mem::forget(s);
            let mut fds = fds_of(&req);
            fds.extend(fds_of(&rep));
            Hand::Fds(fds, welcome(cap as u64, cap as u64))
        },
        |_| {},
    ));
    results.push(against_fake(
        &dir,
        "seven descriptors",
        || {
            let (req, rep) = real_channels(cap);
            let mut fds = fds_of(&req);
            fds.extend(fds_of(&rep));
            fds.push(eventfd());
            Hand::Fds(fds, welcome(cap as u64, cap as u64))
        },
        |_| {},
    ));
    results.push(against_fake(
        &dir,
        "five descriptors",
        || {
            let (req, rep) = real_channels(cap);
            let mut fds = fds_of(&req);
            fds.extend(fds_of(&rep));
            fds.pop();
            Hand::Fds(fds, welcome(cap as u64, cap as u64))
        },
        |_| {},
    ));
    results.push(against_fake(
        &dir,
        "a welcome without descriptors",
        || Hand::Fds(vec![], welcome(cap as u64, cap as u64)),
        |_| {},
    ));
    results.push(against_fake(
        &dir,
        "a refusal with descriptors",
        || {
            let mut m = welcome(0, 0);
            m[12] = 2;
            Hand::Fds(vec![eventfd(), eventfd()], m)
        },
        |_| {},
    ));
    results.push(against_fake(
        &dir,
        "eventfd where the memfd goes",
        || {
            let (req, rep) = real_channels(cap);
            let mut fds = fds_of(&req);
            fds.extend(fds_of(&rep));
            fds[0] = eventfd();
            Hand::Fds(fds, welcome(cap as u64, cap as u64))
        },
        |_| {},
    ));
    results.push(against_fake(
        &dir,
        "the listening-side socket as a doorbell",
        || {
            let (req, rep) = real_channels(cap);
            let mut fds = fds_of(&req);
            fds.extend(fds_of(&rep));
            let (a, _b) = SeqpacketSocket::pair().unwrap();
            fds[1] = OwnedFd::from(a);
            Hand::Fds(fds, welcome(cap as u64, cap as u64))
        },
        |_| {},
    ));
    results.push(against_fake(
        &dir,
        "a huge announced capacity",
        || {
            let (req, rep) = real_channels(cap);
            let mut fds = fds_of(&req);
            fds.extend(fds_of(&rep));
            Hand::Fds(fds, welcome(u64::MAX, u64::MAX))
        },
        |_| {},
    ));
    results.push(against_fake(
        &dir,
        "a welcome and the server closes at once",
        || {
            let (req, rep) = real_channels(cap);
            let mut fds = fds_of(&req);
            fds.extend(fds_of(&rep));
            Hand::Fds(fds, welcome(cap as u64, cap as u64))
        },
        |_| {},
    ));
    let bad: Vec<_> = results
        .iter()
        .filter(|l| {
            let expected_ok = l.starts_with("a welcome and the server closes");
            let exit_ok = l.contains("exit Some(Code(0))");
            let fds_ok = l.rsplit("fds ").next().is_some_and(|f| {
                let mut p = f.trim().split("->");
                p.next() == p.next()
            });
            let typed = l.contains("Handshake") || l.contains("Refused") || (expected_ok && l.contains("Ok("));
            !(exit_ok && fds_ok && typed)
        })
        .collect();
    assert!(bad.is_empty(), "not a typed handshake error, or a leak, or a crash: {bad:#?}");
}

fn a_hostile_server_with_swapped_doorbells() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "swap");
    let listener = SeqpacketListener::bind(&name).unwrap();
    let mut client = fork(|| {
        let mut c = connect_timeout(&name, Duration::from_secs(5)).unwrap();
        let mut buf = Vec::new();
        for i in 0..20u8 {
            c.send(&[i]).unwrap();
            let t = Instant::now();
            c.recv_timeout(&mut buf, Duration::from_secs(5)).unwrap();
            if i == 0 {
                eprintln!("swapped doorbells: a round trip took {:?}", t.elapsed());
            }
            assert_eq!(buf, [i]);
        }
        let t = Instant::now();
        let r = c.recv_timeout(&mut buf, Duration::from_secs(10));
        eprintln!("swapped doorbells: after the server's death {r:?} in {:?}", t.elapsed());
        assert!(matches!(r, Err(Error::Disconnected)));
    });
    let s = listener.accept().unwrap();
    let mut b = [0u8; 64];
    s.recv(&mut b).unwrap();
    let (req, rep) = real_channels(4096);
    let (mut rx, mut tx) = (req.receiver().unwrap(), rep.sender().unwrap());
    let mut fds = Vec::new();
    for chan in [&req, &rep] {
        let mut f = fds_of(chan);
        f.swap(1, 2);
        fds.extend(f);
    }
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    s.send_with_fds(&welcome(4096, 4096), &borrowed).unwrap();
    drop(fds);
    let mut buf = Vec::new();
    for _ in 0..20 {
        rx.recv_timeout(&mut buf, Duration::from_secs(5)).unwrap();
        tx.send(&buf).unwrap();
    }
    drop((s, rx, tx, req, rep, listener));
    assert_eq!(client.wait(), Exit::Code(0));
}

fn a_hostile_server_hands_one_ring_for_both_directions() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "one");
    let listener = SeqpacketListener::bind(&name).unwrap();
    let mut client = fork(|| {
        let r = connect_timeout(&name, Duration::from_secs(5));
        assert!(matches!(r, Err(Error::Handshake { .. })), "one ring for both ways: {r:?}");
    });
    let s = listener.accept().unwrap();
    let mut b = [0u8; 64];
    s.recv(&mut b).unwrap();
    let (req, _rep) = real_channels(4096);
    let mut fds = fds_of(&req);
    fds.extend(fds_of(&req));
    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
    s.send_with_fds(&welcome(4096, 4096), &borrowed).unwrap();
    assert_eq!(client.wait(), Exit::Code(0));
}

/// A raw client that maps both memfds and writes `fill` over them, and
/// stays alive `live` after.
fn scribble(fds: &[OwnedFd], which: &[usize], passes: u64) {
    for &i in which {
        let Ok(memfd) = Memfd::from_fd(dup(fds[i].as_fd())) else { continue };
        let map = memfd.map().unwrap();
        for pass in 0..passes {
            let fill = match pass % 3 {
                0 => vec![0xff; map.len()],
                1 => pattern(pass, map.len()),
                _ => vec![0; map.len()],
            };
            map.write_bytes(0, &fill).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        // Left impossible (every index all ones), so that a side that
        // looks only now still finds the damage: zeros would pass for a
        // ring that is merely full, or empty, for ever.
        map.write_bytes(0, &vec![0xff; map.len()]).unwrap();
    }
}

fn scribbling_while_the_service_waits_blocked() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions { request_capacity: 4096, ..Default::default() }).unwrap();
    let mut hostile = fork(|| {
        let (_s, fds) = raw_client(&name);
        std::thread::sleep(Duration::from_millis(200));
        scribble(&fds, &[0], 60);
        std::thread::sleep(Duration::from_secs(4));
    });
    let mut conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let mut outcomes = Vec::new();
    let r = loop {
        match conn.recv(&mut buf) {
            Ok(n) => outcomes.push(n),
            Err(e) => break e,
        }
        if outcomes.len() > 10_000 {
            panic!("endless messages from garbage");
        }
    };
    eprintln!("scribble/blocked recv: {} garbage messages then {r:?} after {:?}", outcomes.len(), t.elapsed());
    let gone_by_death = t.elapsed() > Duration::from_secs(3);
    hostile.kill();
    hostile.wait();
    assert!(matches!(r, Error::Channel(_)), "a typed error of the memory: {r:?}");
    assert!(!gone_by_death, "only the peer's death ended the wait");
}

fn scribbling_on_the_reply_ring_while_the_service_sends() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions { reply_capacity: 4096, ..Default::default() }).unwrap();
    let mut hostile = fork(|| {
        let (_s, fds) = raw_client(&name);
        std::thread::sleep(Duration::from_millis(300));
        scribble(&fds, &[3], 60);
        std::thread::sleep(Duration::from_secs(4));
    });
    let mut conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let t = Instant::now();
    let mut sent = 0u64;
    let r = loop {
        match conn.send(&[7u8; 500]) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        if sent > 1_000_000 {
            panic!("endless room from garbage");
        }
    };
    eprintln!("scribble/blocked send: {sent} sent then {r:?} after {:?}", t.elapsed());
    let by_death = t.elapsed() > Duration::from_secs(3);
    hostile.kill();
    hostile.wait();
    // Disconnected while the peer lives is a misreport, but typed.
    assert!(matches!(r, Error::Channel(_) | Error::Disconnected), "a typed error: {r:?}");
    assert!(!by_death, "only the peer's death ended the wait");
}

fn a_hostile_server_scribbles_while_the_client_waits() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions { reply_capacity: 4096, ..Default::default() }).unwrap();
    let mut client = fork(|| {
        let mut c = connect(&name).unwrap();
        let mut buf = Vec::new();
        let t = Instant::now();
        let mut n = 0;
        let r = loop {
            match c.recv(&mut buf) {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
            assert!(n < 10_000);
        };
        eprintln!("server scribbles: client got {n} messages then {r:?} after {:?}", t.elapsed());
        assert!(matches!(r, Error::Channel(_) | Error::Disconnected), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(3), "only the peer's death ended it");
    });
    let conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // The service's own memfd of replies, found in /proc/self/fd: the one
    // of 4096 + header... take every memfd and scribble on the newest two.
    let mut memfds: Vec<(i32, OwnedFd)> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let n: i32 = e.file_name().to_str()?.parse().ok()?;
            let l = std::fs::read_link(e.path()).ok()?;
            l.to_string_lossy().starts_with("/memfd:ipc-service-").then(|| {
                // SAFETY: n is open (listed just now) and only borrowed for a dup.
                (n, unsafe { BorrowedFd::borrow_raw(n) }.try_clone_to_owned().unwrap())
            })
        })
        .collect();
    memfds.sort_by_key(|(n, _)| *n);
    let fds: Vec<OwnedFd> = memfds.into_iter().map(|(_, f)| f).collect();
    let all: Vec<usize> = (0..fds.len()).collect();
    scribble(&fds, &all, 60);
    std::thread::sleep(Duration::from_secs(4));
    drop(conn);
    assert_eq!(client.wait(), Exit::Code(0));
}

fn requester_with_a_hostile_server() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let mut client = fork(|| {
        let mut req = Requester::new(connect(&name).unwrap());
        let id = req.send_request(b"q").unwrap();
        let mut reply = Vec::new();
        let mut results = Vec::new();
        for _ in 0..6 {
            let r = req.recv_reply_timeout(id, &mut reply, Duration::from_secs(5));
            let done = r.is_ok();
            results.push(format!("{r:?}"));
            if done {
                break;
            }
        }
        eprintln!("requester: {results:?} reply {:?}", String::from_utf8_lossy(&reply));
        assert_eq!(reply, b"right");
        assert_eq!(req.outstanding(), 0);
        // A second request, then a reply-less server death.
        let id2 = req.send_request(b"q2").unwrap();
        let r = req.recv_reply_timeout(id2, &mut reply, Duration::from_secs(10));
        eprintln!("requester after the server's death: {r:?}");
        assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    });
    let mut conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut buf = Vec::new();
    conn.recv_timeout(&mut buf, Duration::from_secs(5)).unwrap();
    let id = u64::from_le_bytes(buf[..8].try_into().unwrap());
    let tagged = |i: u64, p: &[u8]| [&i.to_le_bytes()[..], p].concat();
    conn.send(&tagged(id + 7, b"unknown")).unwrap();
    conn.send(b"abc").unwrap();
    conn.send(b"").unwrap();
    conn.send(&tagged(id, b"right")).unwrap();
    conn.recv_timeout(&mut buf, Duration::from_secs(5)).unwrap();
    drop(conn);
    assert_eq!(client.wait(), Exit::Code(0));
}

fn zero_and_huge_timeouts() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let past = Instant::now();
    assert!(matches!(service.accept_deadline(past), Err(Error::Timeout)));
    let mut client = fork(|| {
        let mut c = connect_timeout(&name, Duration::MAX).unwrap();
        let mut buf = Vec::new();
        assert!(matches!(c.recv_timeout(&mut buf, Duration::ZERO), Err(Error::Timeout)));
        c.send_timeout(b"x", Duration::MAX).unwrap();
        c.recv_timeout(&mut buf, Duration::MAX).unwrap();
        assert!(matches!(c.sender().send_deadline(b"y", Instant::now()), Ok(())));
        let mut r = Requester::new(c);
        let mut reply = Vec::new();
        r.call_timeout(b"z", &mut reply, Duration::MAX).unwrap();
        let id = r.send_request(b"w").unwrap();
        let z = r.recv_reply_timeout(id, &mut reply, Duration::ZERO);
        eprintln!("recv_reply_timeout(ZERO) with the reply maybe in flight: {z:?}");
        if z.is_ok() {
            return;
        }
        r.recv_reply_timeout(id, &mut reply, Duration::MAX).unwrap();
    });
    let mut c = service.accept_timeout(Duration::MAX).unwrap();
    let mut buf = Vec::new();
    c.recv_timeout(&mut buf, Duration::MAX).unwrap();
    c.send_timeout(b"back", Duration::MAX).unwrap();
    c.recv_timeout(&mut buf, Duration::MAX).unwrap();
    let mut r = Responder::new(c);
    for _ in 0..2 {
        let id = r.recv_request_timeout(&mut buf, Duration::MAX).unwrap();
        r.reply_timeout(id, b"ok", Duration::MAX).unwrap();
    }
    assert_eq!(client.wait(), Exit::Code(0));
}

fn clients_that_close_at_each_step_leak_nothing() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let options = ServiceOptions { handshake_timeout: Duration::from_millis(300), ..Default::default() };
    let mut service = Service::bind(&name, options).unwrap();
    let baseline = open_fds();
    for step in 0..5 {
        let mut client = fork(|| {
            let s = SeqpacketSocket::connect_timeout(&name, Duration::from_secs(5)).unwrap();
            if step == 0 {
                return;
            }
            s.send(&HELLO).unwrap();
            if step == 1 {
                return;
            }
            let mut buf = [0u8; 64];
            let (_, fds) = s.recv_with_fds_timeout(&mut buf, 16, Duration::from_secs(5)).unwrap();
            if step == 2 {
                return;
            }
            let (_tx, _rx) = claim_client_sides(fds);
            if step == 3 {
                return;
            }
            drop(_rx);
            std::thread::sleep(Duration::from_millis(100));
        });
        let got = service.accept_timeout(Duration::from_millis(800));
        assert_eq!(client.wait(), Exit::Code(0));
        drop(client);
        match got {
            Ok(mut c) => {
                let mut buf = Vec::new();
                let t = Instant::now();
                let r = c.recv_timeout(&mut buf, Duration::from_secs(5));
                assert!(matches!(r, Err(Error::Disconnected)), "step {step}: {r:?}");
                assert!(t.elapsed() < Duration::from_secs(1));
                let r = c.send_timeout(&[0; 100], Duration::from_secs(5));
                eprintln!("close at step {step}: send after the peer's death {r:?}");
            }
            Err(e) => eprintln!("close at step {step}: accept {e:?}"),
        }
        let _ = service.accept_timeout(Duration::from_millis(400));
        assert_eq!(service.clients(), 0, "step {step}");
        assert_eq!(service.handshakes(), 0, "step {step}");
        assert_eq!(open_fds(), baseline, "step {step}: the service leaked");
    }
}

fn a_service_that_dies_at_each_step() {
    let dir = ScratchDir::new();
    for step in 0..3 {
        let name = name_in(&dir, &format!("svc{step}"));
        let (r, w) = std::io::pipe().unwrap();
        let mut server = fork(|| {
            let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
            nix::unistd::write(&w, b"b").unwrap();
            if step == 2 {
                let _c = service.accept().unwrap();
            }
            std::thread::sleep(Duration::from_secs(60));
        });
        drop(w);
        let mut b = [0u8; 1];
        nix::unistd::read(&r, &mut b).unwrap();
        let pid = server.pid();
        if step == 0 {
            server.kill();
            server.wait();
        }
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        });
        let before = open_fds();
        let t = Instant::now();
        let got = connect_timeout(&name, Duration::from_secs(10));
        let text = format!("{:?}", got.as_ref().map(|_| ()));
        let waited = t.elapsed();
        let after_recv = got.map(|mut c| {
            let mut buf = Vec::new();
            let t = Instant::now();
            (c.recv_timeout(&mut buf, Duration::from_secs(10)).map_err(|e| format!("{e:?}")), t.elapsed())
        });
        killer.join().unwrap();
        server.wait();
        eprintln!("service dies at step {step}: connect {text} in {waited:?}; then {after_recv:?}");
        assert_eq!(open_fds(), before, "step {step}: leaked");
        assert!(waited < Duration::from_secs(5), "step {step}: connect waited out its timeout");
    }
}

fn refusals_leak_no_descriptors_at_the_client() {
    let dir = ScratchDir::new();
    let before = open_fds();
    // No service at all, and a stale file.
    let r = connect_timeout(&name_in(&dir, "none"), Duration::from_secs(1));
    assert!(matches!(r, Err(Error::Socket(_))), "{r:?}");
    let stale = name_in(&dir, "stale");
    drop(SeqpacketListener::bind(&stale).map(|mut l| l.persist()));
    let r = connect_timeout(&stale, Duration::from_secs(1));
    eprintln!("stale: {r:?}");
    assert_eq!(open_fds(), before);
    let name = name_in(&dir, "svc");
    let me = nix::unistd::geteuid().as_raw();
    let mut service = Service::bind(
        &name,
        ServiceOptions { access: Access::Only { uids: vec![me + 1], gids: vec![] }, ..Default::default() },
    )
    .unwrap();
    let mut client = fork(|| {
        let before = open_fds();
        for _ in 0..20 {
            let r = connect_timeout(&name, Duration::from_secs(5));
            assert!(matches!(r, Err(Error::Refused { reason: Refusal::Denied, .. })), "{r:?}");
        }
        assert_eq!(open_fds(), before);
    });
    while client.wait_timeout(Duration::ZERO).is_none() {
        let _ = service.accept_timeout(Duration::from_millis(50));
    }
    assert_eq!(client.wait(), Exit::Code(0));
}

fn an_unprivileged_service_and_clients() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let dir = ScratchDir::new();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let name = name_in(&dir, "nobody-svc");
    let (r, w) = std::io::pipe().unwrap();
    let mut server = fork(|| {
        ipc_kit_tests::become_nobody();
        let mut service = Service::bind(&name, ServiceOptions { mode: 0o666, ..Default::default() }).unwrap();
        nix::unistd::write(&w, b"b").unwrap();
        for _ in 0..2 {
            let c = service.accept_timeout(Duration::from_secs(10));
            match c {
                Ok(c) => {
                    let mut r = Responder::new(c);
                    let mut buf = Vec::new();
                    let id = r.recv_request(&mut buf).unwrap();
                    r.reply(id, &buf).unwrap();
                }
                Err(e) => eprintln!("nobody service: accept {e:?}"),
            }
        }
    });
    drop(w);
    let mut b = [0u8; 1];
    nix::unistd::read(&r, &mut b).unwrap();
    // Root (let in by SameUser) and nobody itself.
    for as_nobody in [false, true] {
        let mut client = fork(|| {
            if as_nobody {
                ipc_kit_tests::become_nobody();
            }
            let mut req = Requester::new(connect_timeout(&name, Duration::from_secs(10)).unwrap());
            let mut reply = Vec::new();
            req.call(b"hello", &mut reply).unwrap();
            assert_eq!(reply, b"hello");
        });
        assert_eq!(client.wait(), Exit::Code(0), "client as nobody {as_nobody}");
    }
    assert_eq!(server.wait(), Exit::Code(0));
    // A nobody client to a root service with the default mode: the file's mode turns it away.
    let name = name_in(&dir, "root-svc");
    let _service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let mut client = fork(|| {
        ipc_kit_tests::become_nobody();
        let before = open_fds();
        let r = connect_timeout(&name, Duration::from_secs(2));
        eprintln!("nobody -> root 0600: {r:?}");
        assert!(matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied), "{r:?}");
        assert_eq!(open_fds(), before);
    });
    assert_eq!(client.wait(), Exit::Code(0));
    let _ = Connection::peer_credentials;
}

/// The descriptors open now, with whether each is close-on-exec.
fn fds_with_cloexec() -> std::collections::BTreeMap<i32, (bool, String)> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let n: i32 = e.file_name().to_str()?.parse().ok()?;
            let link = std::fs::read_link(e.path()).ok()?.to_string_lossy().into_owned();
            // SAFETY: n was listed open; F_GETFD only reads its flags.
            let flags = unsafe { libc::fcntl(n, libc::F_GETFD) };
            (flags >= 0).then_some((n, (flags & libc::FD_CLOEXEC != 0, link)))
        })
        .collect()
}

fn every_descriptor_is_cloexec_and_an_execd_child_does_not_keep_the_peer_alive() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let before = fds_with_cloexec();
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let mut client = fork(|| {
        let before = fds_with_cloexec();
        let c = connect(&name).unwrap();
        let new: Vec<_> = fds_with_cloexec().into_iter().filter(|(n, _)| !before.contains_key(n)).collect();
        let leaky: Vec<_> = new.iter().filter(|(_, (c, _))| !c).collect();
        eprintln!("client fds of a connection: {} new, not cloexec: {leaky:?}", new.len());
        assert!(leaky.is_empty());
        // A program started now, that outlives this process.
        let mut child = std::process::Command::new("sleep").arg("1").spawn().unwrap();
        std::thread::spawn(move || child.wait());
        std::thread::sleep(Duration::from_millis(200));
        drop(c);
        // SAFETY: ends this forked child at once.
        unsafe { libc::_exit(0) };
    });
    let mut conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let new: Vec<_> = fds_with_cloexec().into_iter().filter(|(n, _)| !before.contains_key(n)).collect();
    let leaky: Vec<_> = new.iter().filter(|(_, (c, _))| !c).collect();
    eprintln!("service fds: {} new, not cloexec: {leaky:?}", new.len());
    let mut buf = Vec::new();
    let t = Instant::now();
    let r = conn.recv_timeout(&mut buf, Duration::from_secs(10));
    let el = t.elapsed();
    eprintln!("client with an exec'd child: {r:?} after {el:?}");
    assert_eq!(client.wait(), Exit::Code(0));
    std::thread::sleep(Duration::from_millis(1200));
    assert!(matches!(r, Err(Error::Disconnected)) && el < Duration::from_secs(1));
    assert!(leaky.is_empty());
}

fn ctx_switches() -> i64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    ru.ru_nvcsw + ru.ru_nivcsw
}

fn idle_wait_wakeups() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let mut client = fork(|| {
        let mut c = connect(&name).unwrap();
        let mut buf = Vec::new();
        let (s0, t0) = (ctx_switches(), thread_cpu());
        let _ = c.recv_timeout(&mut buf, Duration::from_secs(1));
        eprintln!("client idle recv 1s: {} context switches, cpu {:?}", ctx_switches() - s0, thread_cpu() - t0);
    });
    let mut conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut buf = Vec::new();
    let (s0, t0) = (ctx_switches(), thread_cpu());
    let _ = conn.recv_timeout(&mut buf, Duration::from_secs(1));
    let sw = ctx_switches() - s0;
    eprintln!("service idle recv 1s: {sw} context switches, cpu {:?}", thread_cpu() - t0);
    let (s0, t0) = (ctx_switches(), thread_cpu());
    let _ = conn.recv_timeout(&mut buf, Duration::from_millis(1));
    eprintln!("recv_timeout(1ms): {} switches, cpu {:?}", ctx_switches() - s0, thread_cpu() - t0);
    assert_eq!(client.wait(), Exit::Code(0));
    assert!(sw < 200, "{sw} wake-ups in an idle second");
}

fn a_poller_on_a_full_sender_sees_the_death() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions { reply_capacity: 4096, ..Default::default() }).unwrap();
    let mut client = fork(|| {
        let (_s, _fds) = raw_client(&name);
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: ends this forked child at once.
        unsafe { libc::_exit(0) };
    });
    let conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let (mut tx, _rx) = conn.split();
    while tx.try_send(&[1; 100]).is_ok() {}
    let mut poller = Poller::new().unwrap();
    poller.add(&tx, Interest::Writable, 7).unwrap();
    let t = Instant::now();
    let ready = poller.wait_timeout(Duration::from_secs(10)).unwrap().to_vec();
    let el = t.elapsed();
    let r = tx.try_send(&[1; 100]);
    eprintln!("poller on a full sender: {ready:?} after {el:?}, then try_send {r:?}");
    assert_eq!(ready, vec![7]);
    assert!(el < Duration::from_secs(2));
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert_eq!(client.wait(), Exit::Code(0));
}

fn a_full_service_refuses_every_time_with_full() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions { max_clients: 1, ..Default::default() }).unwrap();
    let mut client = fork(|| {
        let _first = connect(&name).unwrap();
        let before = open_fds();
        let mut other = Vec::new();
        for _ in 0..300 {
            match connect_timeout(&name, Duration::from_secs(5)) {
                Err(Error::Refused { reason: Refusal::Full, .. }) => {}
                r => other.push(format!("{:?}", r.map(|_| ()))),
            }
        }
        eprintln!(
            "300 connects to a full service: {} not Full: {:?}",
            other.len(),
            other.iter().take(3).collect::<Vec<_>>()
        );
        assert!(other.is_empty());
        assert_eq!(open_fds(), before);
    });
    let _c = service.accept_timeout(Duration::from_secs(10)).unwrap();
    while client.wait_timeout(Duration::ZERO).is_none() {
        let _ = service.accept_timeout(Duration::from_millis(20));
    }
    assert_eq!(client.wait(), Exit::Code(0));
}

fn a_hostile_server_seals_its_memfd_against_writes() {
    let dir = ScratchDir::new();
    let line = against_fake(
        &dir,
        "a channel sealed F_SEAL_FUTURE_WRITE",
        || {
            let (req, rep) = real_channels(4096);
            let mut fds = fds_of(&req);
            fds.extend(fds_of(&rep));
            // SAFETY: fcntl on an open fd.
            let r = unsafe {
                libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&fds[0]), libc::F_ADD_SEALS, libc::F_SEAL_FUTURE_WRITE)
            };
            assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
            std::mem::forget((req, rep));
            Hand::Fds(fds, welcome(4096, 4096))
        },
        |_| {},
    );
    assert!(line.contains("Handshake") && line.contains("Some(Code(0))"), "{line}");
}

fn a_flood_of_refused_clients_holds_no_accept_past_its_time() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let me = nix::unistd::geteuid().as_raw();
    // Nobody is let in: every client is refused, so no accept can succeed.
    let garbage_greeters = std::env::var_os("PROBE_GARBAGE").is_some();
    let access = if garbage_greeters { Access::Anyone } else { Access::Only { uids: vec![me + 1], gids: vec![] } };
    let options = ServiceOptions { access, max_clients: 1000, ..Default::default() };
    let mut service = Service::bind(&name, options).unwrap();
    let flooders: Vec<_> = (0..3)
        .map(|_| {
            fork(|| {
                let until = Instant::now() + Duration::from_secs(8);
                while Instant::now() < until {
                    if let Ok(s) = SeqpacketSocket::try_connect(&name) {
                        let _ = s.try_send(b"garbage");
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut worst = Duration::ZERO;
    for _ in 0..6 {
        let t = Instant::now();
        let r = service.accept_timeout(Duration::from_millis(200));
        let el = t.elapsed();
        eprintln!("flood: accept_timeout(200ms) -> {:?} after {el:?}", r.map(|_| ()));
        worst = worst.max(el);
        let t = Instant::now();
        let r = service.try_accept();
        let el2 = t.elapsed();
        eprintln!("flood: try_accept -> {:?} after {el2:?}", r.map(|_| ()));
        worst = worst.max(el2);
    }
    for mut f in flooders {
        f.kill();
        f.wait();
    }
    assert!(worst < Duration::from_secs(1), "a timed or try_ accept ran {worst:?} under a flood of refused clients");
}
