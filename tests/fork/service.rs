//! Services across processes: many clients served at once, clients and
//! services that die at any step, access by credentials, hostile
//! handshakes and hostile memory, a cap on clients, a low descriptor
//! limit, and the three forms of each wait.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use ipc_kit::service::{
    Access, Connection, Error, Refusal, RequestId, Requester, Responder, Service, ServiceOptions, SocketName, connect,
    connect_timeout,
};
use ipc_kit::shm::Memfd;
use ipc_kit::socket::SeqpacketSocket;
use ipc_kit::sync::{Interest, Poller};
use ipc_kit_tests::{Exit, Rng, ScratchDir, cases, checksum, fork, pattern};
use nix::sys::signal::Signal;

cases!("service":
    sixteen_clients_each_send_ten_thousand_checksummed_requests(120 s),
    clients_killed_at_random_are_freed_and_the_rest_served(60 s),
    a_killed_service_disconnects_its_clients_at_once,
    a_client_that_dies_before_its_first_message_is_seen_at_once,
    a_client_of_another_uid_is_denied_and_receives_no_fd,
    hostile_handshakes_are_refused_and_the_service_goes_on,
    a_peer_that_scribbles_on_the_memory_gives_corrupted_to_it_alone,
    a_low_descriptor_limit_gives_a_typed_error_and_leaks_nothing(60 s),
    the_service_refuses_clients_beyond_its_cap,
    replies_find_their_requests_in_any_order,
    the_memory_is_a_sealed_memfd_without_a_name,
    the_three_forms_wait_as_told,
    options_out_of_range_bind_nothing,
    ipc_kit_ls_shows_the_service_and_its_clients,
    the_async_forms_serve_clients_and_see_a_death,
    typed_values_travel_both_ways_through_the_umbrellas_traits,
);

/// The greeting of the handshake, as a client in another language sends it.
pub(crate) const HELLO: [u8; 16] = *b"ipc-svc\0\x01\0\0\0\0\0\0\0";

pub(crate) fn name_in(dir: &ScratchDir, file: &str) -> SocketName {
    SocketName::path(dir.path().join(file)).unwrap()
}

/// How many descriptors this process has open.
pub(crate) fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
}

/// Connects at the socket level, sends `greeting` with `fds`, and returns
/// the answer's status and the descriptors that came with it (`None`: no
/// answer, the service closed).
fn raw_handshake(name: &SocketName, greeting: &[u8], fds: &[BorrowedFd<'_>]) -> Option<(u32, Vec<OwnedFd>)> {
    let s = SeqpacketSocket::connect_timeout(name, Duration::from_secs(10)).unwrap();
    // A client turned away as it connected finds the socket closed.
    match s.send_with_fds(greeting, fds) {
        Ok(()) | Err(ipc_kit::socket::Error::Disconnected) => {}
        Err(e) => panic!("greeting: {e}"),
    }
    raw_answer(&s)
}

fn raw_answer(s: &SeqpacketSocket) -> Option<(u32, Vec<OwnedFd>)> {
    let mut buf = [0u8; 64];
    let mut got = s.recv_with_fds_timeout(&mut buf, 16, Duration::from_secs(10));
    if matches!(got, Err(ipc_kit::socket::Error::Disconnected)) {
        // A reset (the service closed with something of ours unread) is
        // reported once, before what it sent.
        got = s.recv_with_fds_timeout(&mut buf, 16, Duration::from_secs(1));
    }
    match got {
        Ok((32, fds)) => Some((u32::from_le_bytes(buf[12..16].try_into().unwrap()), fds)),
        Ok((0, _)) => None,
        Ok((n, _)) => panic!("an answer of {n} bytes"),
        Err(ipc_kit::socket::Error::Disconnected) => None,
        Err(e) => panic!("no answer: {e}"),
    }
}

/// Serves requests on every connection: the reply is the request's
/// checksum. Returns when `done` says so, with the requests served.
fn serve(service: &mut Service, mut done: impl FnMut(&Service, usize) -> bool) -> usize {
    let mut poller = Poller::new().unwrap();
    poller.add(&*service, Interest::Readable, 0).unwrap();
    let mut conns: HashMap<u64, Responder> = HashMap::new();
    let (mut next, mut served, mut buf) = (1u64, 0usize, Vec::new());
    while !done(service, conns.len()) {
        let ready: Vec<u64> = poller.wait_timeout(Duration::from_millis(20)).unwrap().to_vec();
        for token in ready {
            if token == 0 {
                loop {
                    match service.try_accept() {
                        Ok(c) => {
                            let r = Responder::new(c);
                            poller.add(&r, Interest::Readable, next).unwrap();
                            conns.insert(next, r);
                            next += 1;
                        }
                        Err(Error::WouldBlock) => break,
                        Err(e) => panic!("accept: {e}"),
                    }
                }
                continue;
            }
            let Some(r) = conns.get_mut(&token) else { continue };
            loop {
                match r.try_recv_request(&mut buf) {
                    Ok(id) => {
                        r.reply(id, &checksum(&buf).to_le_bytes()).unwrap_or_else(|e| {
                            assert!(matches!(e, Error::Disconnected), "reply: {e}");
                        });
                        served += 1;
                    }
                    Err(Error::WouldBlock) => break,
                    Err(Error::Disconnected) => {
                        poller.remove(token).unwrap();
                        conns.remove(&token);
                        break;
                    }
                    Err(e) => panic!("request: {e}"),
                }
            }
        }
    }
    served
}

/// A client's requests, `window` outstanding at a time, each checked
/// against its checksum.
fn request_checked(req: &mut Requester, seed: u64, count: usize, window: usize) {
    let mut outstanding = std::collections::VecDeque::new();
    let mut reply = Vec::new();
    for i in 0..count {
        let body = pattern(seed + i as u64, 1 + (i * 37) % 300);
        outstanding.push_back((req.send_request(&body).unwrap(), checksum(&body)));
        if outstanding.len() == window || i + 1 == count {
            while let Some((id, sum)) = outstanding.pop_front() {
                req.recv_reply(id, &mut reply).unwrap();
                assert_eq!(reply, sum.to_le_bytes(), "reply to request {}", id.0);
            }
        }
    }
}

// Issue: "16 client processes each send 10,000 checksummed requests to
// one server" — served through one Poller, with many outstanding.
fn sixteen_clients_each_send_ten_thousand_checksummed_requests() {
    const CLIENTS: usize = 16;
    const REQUESTS: usize = 10_000;
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let mut children: Vec<_> = (0..CLIENTS)
        .map(|c| {
            fork(|| {
                let mut req = Requester::new(connect_timeout(&name, Duration::from_secs(20)).unwrap());
                request_checked(&mut req, c as u64 * 1_000_000, REQUESTS, 1 + c % 8);
                assert_eq!(req.outstanding(), 0);
            })
        })
        .collect();
    let mut seen = 0;
    let served = serve(&mut service, |s, live| {
        seen = seen.max(s.clients());
        seen == CLIENTS && live == 0
    });
    assert_eq!(served, CLIENTS * REQUESTS);
    for c in &mut children {
        assert_eq!(c.wait(), Exit::Code(0));
    }
    assert_eq!(service.clients(), 0, "every connection dropped gave its place back");
}

// Issue: "clients SIGKILLed at random: the server frees them and goes on
// serving the rest" — killed before connecting, in the handshake, between
// and in the middle of requests.
fn clients_killed_at_random_are_freed_and_the_rest_served() {
    const CLIENTS: usize = 12;
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let mut rng = Rng::new(0x5eed);
    let mut children: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let pause = Duration::from_millis(rng.below(40));
            let name = &name;
            fork(move || {
                let name = name.clone();
                std::thread::sleep(pause);
                let mut req = Requester::new(connect_timeout(&name, Duration::from_secs(20)).unwrap());
                // The even ones go on until killed; the odd ones finish.
                let count = if c % 2 == 0 { usize::MAX } else { 3_000 };
                for i in 0..count {
                    let body = pattern((c * 1_000_000 + i) as u64, 1 + i % 200);
                    let mut reply = Vec::new();
                    req.call(&body, &mut reply).unwrap();
                    assert_eq!(reply, checksum(&body).to_le_bytes());
                }
            })
        })
        .collect();
    let kill_at: Vec<Duration> = (0..CLIENTS).map(|_| Duration::from_millis(rng.below(400))).collect();
    let start = Instant::now();
    let mut killed = [false; CLIENTS];
    let served = serve(&mut service, |s, live| {
        for c in (0..CLIENTS).step_by(2) {
            if !killed[c] && start.elapsed() >= kill_at[c] {
                children[c].kill();
                killed[c] = true;
            }
        }
        // Done when every client is gone and the service let go of them.
        killed.iter().enumerate().all(|(c, k)| c % 2 == 1 || *k)
            && children.iter_mut().enumerate().all(|(c, ch)| c % 2 == 0 || ch.wait_timeout(Duration::ZERO).is_some())
            && live == 0
            && s.clients() == 0
    });
    for (c, ch) in children.iter_mut().enumerate() {
        let want = if c % 2 == 0 { Exit::Signaled(Signal::SIGKILL) } else { Exit::Code(0) };
        assert_eq!(ch.wait(), want, "client {c}");
    }
    assert!(served >= CLIENTS / 2 * 3_000, "the survivors were all served ({served})");
    assert_eq!(service.clients(), 0);
}

// `Connection` docs: "when the peer drops its end or dies, at any moment
// ..., a wait of this end wakes at once" — the service is killed while
// one client waits to receive and another waits for room.
fn a_killed_service_disconnects_its_clients_at_once() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let (ready_r, ready_w) = std::io::pipe().unwrap();
    let options = ServiceOptions { request_capacity: 4096, ..Default::default() };
    let mut server = fork(|| {
        let mut service = Service::bind(&name, options).unwrap();
        nix::unistd::write(&ready_w, b"b").unwrap();
        let _conns: Vec<Connection> = (0..2).map(|_| service.accept().unwrap()).collect();
        nix::unistd::write(&ready_w, b"a").unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    drop(ready_w);
    let mut b = [0u8; 1];
    nix::unistd::read(&ready_r, &mut b).unwrap();
    let mut receiving = connect(&name).unwrap();
    let mut sending = connect(&name).unwrap();
    nix::unistd::read(&ready_r, &mut b).unwrap();
    assert_eq!(receiving.peer_credentials().pid, server.pid().as_raw() as u32);
    // Fill the requests' ring, so that the next send waits for room.
    while sending.try_send(&[7u8; 1000]).is_ok() {}
    let killer = std::thread::spawn({
        let pid = server.pid();
        move || {
            std::thread::sleep(Duration::from_millis(100));
            nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();
        }
    });
    let sender = std::thread::spawn(move || sending.send_timeout(&[1u8; 1000], Duration::from_secs(20)));
    let started = Instant::now();
    let mut buf = Vec::new();
    assert!(matches!(receiving.recv_timeout(&mut buf, Duration::from_secs(20)), Err(Error::Disconnected)));
    assert!(matches!(sender.join().unwrap(), Err(Error::Disconnected)));
    assert!(started.elapsed() < Duration::from_secs(15), "woken by the death, not by the deadline");
    killer.join().unwrap();
    assert_eq!(server.wait(), Exit::Signaled(Signal::SIGKILL));
    assert!(receiving.peer_gone());
    assert!(matches!(receiving.try_recv(&mut buf), Err(Error::Disconnected)));
}

// Issue: "either end's death is Disconnected at once, even before the
// first message" — a client that completed the handshake at the socket
// level and died without ever touching the memory.
fn a_client_that_dies_before_its_first_message_is_seen_at_once() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let mut client = fork(|| {
        let (status, fds) = raw_handshake(&name, &HELLO, &[]).unwrap();
        assert_eq!((status, fds.len()), (0, 6));
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: ends this forked child at once, as a kill would.
        unsafe { libc::_exit(0) };
    });
    let mut conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    assert!(matches!(conn.recv_timeout(&mut buf, Duration::from_secs(20)), Err(Error::Disconnected)));
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(client.wait(), Exit::Code(0));
    // And the sending side, whose peer never claimed the ring.
    let filled = loop {
        match conn.try_send(&[0; 1000]) {
            Ok(()) => {}
            other => break other,
        }
    };
    assert!(matches!(filled, Err(Error::WouldBlock | Error::Disconnected)), "{filled:?}");
    assert!(matches!(conn.send_timeout(&[0; 1000], Duration::from_secs(20)), Err(Error::Disconnected)));
    drop(conn);
    assert_eq!(service.clients(), 0);
}

// `Access` docs: a client "turned away gets Refusal::Denied and no
// descriptor"; with root, a real other user is turned away by `SameUser`
// and let in by `Only`.
fn a_client_of_another_uid_is_denied_and_receives_no_fd() {
    let dir = ScratchDir::new();
    let me = nix::unistd::geteuid().as_raw();
    // A list that leaves this user out, whoever runs the case.
    let name = name_in(&dir, "only");
    let mut service = Service::bind(
        &name,
        ServiceOptions { access: Access::Only { uids: vec![me.wrapping_add(1)], gids: vec![] }, ..Default::default() },
    )
    .unwrap();
    let mut raw = fork(|| {
        let (status, fds) = raw_handshake(&name, &HELLO, &[]).unwrap();
        assert_eq!((status, fds.len()), (1, 0));
        match connect(&name) {
            Err(Error::Refused { reason: Refusal::Denied, .. }) => {}
            other => panic!("{other:?}"),
        }
    });
    assert!(matches!(service.accept_timeout(Duration::from_secs(2)), Err(Error::Timeout)));
    assert_eq!(raw.wait(), Exit::Code(0));
    if !nix::unistd::geteuid().is_root() {
        eprintln!("no other user to become without root: the other-uid half passed over");
        return;
    }
    dir.path().metadata().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for (access, let_in) in
        [(Access::SameUser, false), (Access::Only { uids: vec![65534], gids: vec![] }, true), (Access::Anyone, true)]
    {
        let name = name_in(&dir, "any");
        let mut service = Service::bind(&name, ServiceOptions { access, mode: 0o666, ..Default::default() }).unwrap();
        let mut nobody = fork(|| {
            ipc_kit_tests::become_nobody();
            let before = open_fds();
            match connect(&name) {
                Ok(mut c) if let_in => {
                    c.send(b"from nobody").unwrap();
                    let mut b = Vec::new();
                    c.recv_timeout(&mut b, Duration::from_secs(10)).unwrap();
                    assert_eq!(b, b"welcome");
                }
                Err(Error::Refused { reason: Refusal::Denied, .. }) if !let_in => {
                    assert_eq!(open_fds(), before, "no descriptor came");
                }
                other => panic!("let in {let_in}: {other:?}"),
            }
        });
        if let_in {
            let mut c = service.accept_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(c.peer_credentials().uid, 65534);
            let mut b = Vec::new();
            c.recv_timeout(&mut b, Duration::from_secs(10)).unwrap();
            assert_eq!(b, b"from nobody");
            c.send(b"welcome").unwrap();
            assert_eq!(nobody.wait(), Exit::Code(0));
        } else {
            assert!(matches!(service.accept_timeout(Duration::from_secs(1)), Err(Error::Timeout)));
            assert_eq!(nobody.wait(), Exit::Code(0));
        }
    }
}

// `Service` docs: "a client that stalls, sends garbage or descriptors is
// dropped or refused without the caller seeing it" — and nothing it sent
// stays open in the service.
fn hostile_handshakes_are_refused_and_the_service_goes_on() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let options = ServiceOptions { handshake_timeout: Duration::from_millis(300), ..Default::default() };
    let mut service = Service::bind(&name, options).unwrap();
    let unsealed =
        std::fs::File::from(nix::sys::memfd::memfd_create("hostile", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap());
    unsealed.set_len(1 << 20).unwrap();
    let small = Memfd::create("hostile-small", 64).unwrap();
    let mut wrong_version = HELLO;
    wrong_version[8] = 2;
    let mut flags = HELLO;
    flags[12] = 1;
    let garbage = pattern(9, 4000);
    let baseline = open_fds();
    let cases: [(&str, &[u8], Vec<BorrowedFd<'_>>); 8] = [
        ("garbage", b"GET / HTTP/1.1\r\n", vec![]),
        ("a long message", &garbage, vec![]),
        ("a short greeting", &HELLO[..15], vec![]),
        ("another version", &wrong_version, vec![]),
        ("unknown flags", &flags, vec![]),
        ("a greeting with an unsealed memfd", &HELLO, vec![unsealed.as_fd()]),
        ("a greeting with a small sealed memfd", &HELLO, vec![small.as_fd()]),
        ("a greeting with many descriptors", &HELLO, vec![small.as_fd(); 200]),
    ];
    for (what, greeting, fds) in &cases {
        let s = SeqpacketSocket::connect_timeout(&name, Duration::from_secs(5)).unwrap();
        s.send_with_fds(greeting, fds).unwrap();
        assert!(
            matches!(service.accept_timeout(Duration::from_millis(200)), Err(Error::Timeout)),
            "{what}: no connection"
        );
        let (status, got) = raw_answer(&s).unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!((status, got.len()), (3, 0), "{what}: refused for the protocol");
        drop(s);
        assert_eq!(open_fds(), baseline, "{what}: nothing it sent is left open");
    }
    // One that never greets is dropped when its time is up, also while
    // the service is busy with others.
    let stall = SeqpacketSocket::connect_timeout(&name, Duration::from_secs(5)).unwrap();
    assert!(matches!(service.accept_timeout(Duration::from_millis(600)), Err(Error::Timeout)));
    assert_eq!(service.handshakes(), 0);
    assert!(raw_answer(&stall).is_none(), "dropped without an answer");
    drop(stall);
    // One that connects and goes before greeting.
    drop(SeqpacketSocket::connect_timeout(&name, Duration::from_secs(5)).unwrap());
    assert!(matches!(service.try_accept(), Err(Error::WouldBlock)));
    assert_eq!(open_fds(), baseline);
    // And the service still serves a client that speaks the protocol.
    let mut good = fork(|| {
        let mut c = Requester::new(connect(&name).unwrap());
        let mut reply = Vec::new();
        c.call(b"still there?", &mut reply).unwrap();
        assert_eq!(reply, b"yes");
    });
    let mut r = Responder::new(service.accept_timeout(Duration::from_secs(10)).unwrap());
    let mut buf = Vec::new();
    let id = r.recv_request(&mut buf).unwrap();
    assert_eq!(buf, b"still there?");
    r.reply(id, b"yes").unwrap();
    assert_eq!(good.wait(), Exit::Code(0));
    drop((r, good));
    assert_eq!(open_fds(), baseline);
}

// DESIGN: "a corrupt peer gives Corrupted, never out-of-bounds access" —
// a client maps the requests' memfd it was handed and writes the worst
// values over all of it; its connection fails with a typed error, and the
// service's other connection goes on.
fn a_peer_that_scribbles_on_the_memory_gives_corrupted_to_it_alone() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let options = ServiceOptions { request_capacity: 4096, ..Default::default() };
    let mut service = Service::bind(&name, options).unwrap();
    let mut hostile = fork(|| {
        let s = SeqpacketSocket::connect_timeout(&name, Duration::from_secs(5)).unwrap();
        s.send(&HELLO).unwrap();
        let (status, mut fds) = raw_answer(&s).unwrap();
        assert_eq!((status, fds.len()), (0, 6));
        let memfd = Memfd::from_fd(fds.swap_remove(0)).unwrap();
        let map = memfd.map().unwrap();
        for pass in 0..200u64 {
            let fill = if pass % 2 == 0 { vec![0xff; map.len()] } else { pattern(pass, map.len()) };
            map.write_bytes(0, &fill).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(500));
    });
    let mut bad = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut good_client = fork(|| {
        let mut c = Requester::new(connect(&name).unwrap());
        request_checked(&mut c, 77, 2_000, 4);
    });
    let mut good = Responder::new(service.accept_timeout(Duration::from_secs(10)).unwrap());
    let mut buf = Vec::new();
    let mut errors = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    for _ in 0..2_000 {
        let id = good.recv_request(&mut buf).unwrap();
        good.reply(id, &checksum(&buf).to_le_bytes()).unwrap();
        match bad.try_recv(&mut buf) {
            Ok(_) | Err(Error::WouldBlock) => {}
            Err(Error::Channel(_) | Error::Disconnected) => errors += 1,
            Err(e) => panic!("not a typed error of the memory: {e}"),
        }
    }
    while errors == 0 && Instant::now() < deadline {
        match bad.recv_timeout(&mut buf, Duration::from_millis(50)) {
            Ok(_) | Err(Error::Timeout) => {}
            Err(Error::Channel(_) | Error::Disconnected) => errors += 1,
            Err(e) => panic!("not a typed error of the memory: {e}"),
        }
    }
    assert!(errors > 0, "the scribbled connection reported it");
    assert_eq!(good_client.wait(), Exit::Code(0));
    assert_eq!(hostile.wait(), Exit::Code(0));
}

// Issue: "a low RLIMIT_NOFILE gives a typed error, and nothing leaks" —
// at the service and at the client, at every limit from none to spare
// up to enough.
fn a_low_descriptor_limit_gives_a_typed_error_and_leaks_nothing() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    // The limit that leaves exactly `spare` descriptor numbers free.
    let leaving = |spare: u64| {
        let open: std::collections::HashSet<u64> = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .collect();
        // The directory's own descriptor is closed again by now.
        let mut free = 0;
        (0u64..)
            .find(|n| {
                if open.contains(n) && std::fs::metadata(format!("/proc/self/fd/{n}")).is_ok() {
                    return false;
                }
                free += 1;
                free > spare
            })
            .unwrap()
    };
    let (mut server_ok, mut server_short, mut client_short) = (0, 0, 0);
    for spare in 0..24u64 {
        // The service short of descriptors.
        let baseline = open_fds();
        let mut client = fork(|| match connect_timeout(&name, Duration::from_secs(3)) {
            Ok(_) => std::process::exit(0),
            Err(Error::Refused { reason: Refusal::Unavailable, .. }) => std::process::exit(10),
            Err(Error::Timeout | Error::Disconnected) => std::process::exit(11),
            Err(e) => panic!("client: {e}"),
        });
        setrlimit(Resource::RLIMIT_NOFILE, leaving(spare), hard).unwrap();
        let got = service.accept_timeout(Duration::from_secs(5));
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
        match got {
            Ok(c) => {
                server_ok += 1;
                drop(c);
            }
            Err(Error::OutOfDescriptors { .. }) => server_short += 1,
            Err(e) => panic!("service with {spare} spare: {e}"),
        }
        let exit = client.wait();
        assert!(matches!(exit, Exit::Code(0 | 10 | 11)), "client with the service at {spare} spare: {exit:?}");
        drop(client);
        // A connection the listener could not take waits in its backlog,
        // gone by now: let the service take it and drop it.
        let _ = service.accept_timeout(Duration::from_millis(50));
        assert_eq!(open_fds(), baseline, "the service at {spare} spare leaked");
        // The client short of descriptors.
        let mut client = fork(|| {
            let before = open_fds();
            setrlimit(Resource::RLIMIT_NOFILE, leaving(spare), hard).unwrap();
            let got = connect_timeout(&name, Duration::from_secs(5));
            setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
            match got {
                Ok(c) => {
                    drop(c);
                    assert_eq!(open_fds(), before);
                    std::process::exit(0)
                }
                Err(Error::OutOfDescriptors { .. }) => {
                    assert_eq!(open_fds(), before, "the client at {spare} spare leaked");
                    std::process::exit(10)
                }
                Err(e) => panic!("client with {spare} spare: {e}"),
            }
        });
        match service.accept_timeout(Duration::from_secs(5)) {
            Ok(c) => drop(c),
            Err(Error::Timeout) => {}
            Err(e) => panic!("service beside a short client: {e}"),
        }
        match client.wait() {
            Exit::Code(0) => {}
            Exit::Code(10) => client_short += 1,
            other => panic!("client with {spare} spare: {other:?}"),
        }
    }
    assert!(server_short > 0 && server_ok > 0, "both outcomes were reached ({server_short} short, {server_ok} ok)");
    assert!(client_short > 0, "the client ran short at some limit");
}

// `ServiceOptions::max_clients` docs: "one more is refused with
// Refusal::Full. A client counts until the service drops its Connection".
fn the_service_refuses_clients_beyond_its_cap() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions { max_clients: 2, ..Default::default() }).unwrap();
    let (go_r, go_w) = std::io::pipe().unwrap();
    let mut clients = fork(|| {
        let a = connect(&name).unwrap();
        let b = connect(&name).unwrap();
        match connect(&name) {
            Err(Error::Refused { reason: Refusal::Full, .. }) => {}
            other => panic!("a third client: {other:?}"),
        }
        // Told that the service dropped one: a place is free again.
        let mut byte = [0u8; 1];
        nix::unistd::read(&go_r, &mut byte).unwrap();
        let c = connect(&name).unwrap();
        drop((a, b, c));
    });
    let first = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let _second = service.accept_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(service.clients(), 2);
    assert!(matches!(service.accept_timeout(Duration::from_millis(300)), Err(Error::Timeout)));
    drop(first);
    assert_eq!(service.clients(), 1);
    nix::unistd::write(&go_w, b"g").unwrap();
    let _third = service.accept_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(clients.wait(), Exit::Code(0));
}

// `Requester` docs: replies may come "in any order"; one that comes for
// another outstanding request is kept until asked for; one for no
// request at all is an error.
fn replies_find_their_requests_in_any_order() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let mut server = fork(|| {
        let mut r = Responder::new(service.accept_timeout(Duration::from_secs(10)).unwrap());
        let mut got = Vec::new();
        let mut buf = Vec::new();
        for _ in 0..50 {
            let id = r.recv_request(&mut buf).unwrap();
            got.push((id, buf.clone()));
        }
        for (id, body) in got.iter().rev() {
            r.reply(*id, &checksum(body).to_le_bytes()).unwrap();
        }
        // The last request gets a reply to nothing, then a message too
        // short to be a reply.
        let last = r.recv_request(&mut buf).unwrap();
        assert_eq!(buf, b"last");
        r.reply(RequestId(last.0 + 1000), b"stray").unwrap();
        let mut conn = r.into_inner();
        conn.send(b"short").unwrap();
        assert!(matches!(conn.recv_timeout(&mut buf, Duration::from_secs(10)), Err(Error::Disconnected)));
    });
    let mut req = Requester::new(connect(&name).unwrap());
    let ids: Vec<(RequestId, Vec<u8>)> =
        (0..50).map(|i| pattern(i, 10 + i as usize)).map(|b| (req.send_request(&b).unwrap(), b)).collect();
    let mut reply = Vec::new();
    for (id, body) in &ids {
        req.recv_reply(*id, &mut reply).unwrap();
        assert_eq!(reply, checksum(body).to_le_bytes());
    }
    assert_eq!(req.outstanding(), 0);
    assert!(matches!(req.recv_reply(ids[0].0, &mut reply), Err(Error::Malformed { .. })), "taken already");
    let id = req.send_request(b"last").unwrap();
    assert!(matches!(req.recv_reply(id, &mut reply), Err(Error::Malformed { .. })), "a stray reply");
    assert!(matches!(req.recv_reply(id, &mut reply), Err(Error::Malformed { .. })), "a message without an id");
    drop(req);
    assert_eq!(server.wait(), Exit::Code(0));
}

// lib docs: "made by the service in sealed memfds and passed over the
// socket, so that no name in /dev/shm exists".
fn the_memory_is_a_sealed_memfd_without_a_name() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let shm_before: Vec<_> =
        std::fs::read_dir("/dev/shm").unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let mut client = fork(|| {
        let (status, fds) = raw_handshake(&name, &HELLO, &[]).unwrap();
        assert_eq!((status, fds.len()), (0, 6));
        for memfd in [&fds[0], &fds[3]] {
            let seals = nix::fcntl::fcntl(memfd, nix::fcntl::FcntlArg::F_GET_SEALS).unwrap();
            let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
            assert_eq!(seals & want, want, "sealed against shrinking and growing");
            let link = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(memfd))).unwrap();
            assert!(link.to_string_lossy().starts_with("/memfd:"), "{}", link.display());
        }
    });
    let c = service.accept_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(client.wait(), Exit::Code(0));
    let shm_after: Vec<_> =
        std::fs::read_dir("/dev/shm").unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert_eq!(shm_before.len(), shm_after.len(), "nothing in /dev/shm");
    drop(c);
}

// Every wait has three forms: `try_*` never waits, timed ones wait as
// long as asked (zero included), and connecting to a service that does
// not answer times out.
fn the_three_forms_wait_as_told() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    assert!(matches!(service.try_accept(), Err(Error::WouldBlock)));
    assert!(matches!(service.accept_timeout(Duration::ZERO), Err(Error::Timeout)));
    let t = Instant::now();
    assert!(matches!(service.accept_timeout(Duration::from_millis(100)), Err(Error::Timeout)));
    assert!(t.elapsed() >= Duration::from_millis(100));
    // Nobody accepts: the client's handshake times out.
    let t = Instant::now();
    assert!(matches!(connect_timeout(&name, Duration::from_millis(200)), Err(Error::Timeout)));
    assert!(t.elapsed() >= Duration::from_millis(200));
    let _ = service.accept_timeout(Duration::from_millis(50));
    let mut client = fork(|| {
        let mut c = connect_timeout(&name, Duration::from_secs(10)).unwrap();
        let mut buf = Vec::new();
        assert!(matches!(c.try_recv(&mut buf), Err(Error::WouldBlock)));
        assert!(matches!(c.recv_timeout(&mut buf, Duration::ZERO), Err(Error::Timeout)));
        let t = Instant::now();
        assert!(matches!(c.recv_timeout(&mut buf, Duration::from_millis(100)), Err(Error::Timeout)));
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert!(matches!(c.try_recv_pod::<u64>(), Err(Error::WouldBlock)));
        c.send_pod(&42u64).unwrap();
        assert_eq!(c.recv_pod_timeout::<u64>(Duration::from_secs(10)).unwrap(), 43);
        let max = c.max_message();
        assert!(matches!(c.send(&vec![0; max + 1]), Err(Error::MessageTooLarge { len, .. }) if len == max + 1));
        c.send(&vec![1; max]).unwrap();
        // The ring is full now: no room for more.
        assert!(matches!(c.try_send(&vec![1; max]), Err(Error::WouldBlock)));
        assert!(matches!(c.send_timeout(&vec![1; max], Duration::from_millis(100)), Err(Error::Timeout)));
    });
    let mut c = service.accept_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(c.recv_pod_timeout::<u64>(Duration::from_secs(10)).unwrap(), 42);
    c.send_pod(&43u64).unwrap();
    assert_eq!(client.wait(), Exit::Code(0));
    // A Pod of the wrong size is refused and consumed.
    let mut buf = Vec::new();
    assert!(matches!(c.recv_pod_timeout::<u32>(Duration::from_secs(10)), Err(Error::Malformed { .. })));
    assert!(matches!(c.recv_timeout(&mut buf, Duration::from_secs(10)), Err(Error::Disconnected)));
}

// `ServiceOptions` docs: the ranges, "before anything is bound".
fn options_out_of_range_bind_nothing() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let base = ServiceOptions::default();
    for bad in [
        ServiceOptions { max_clients: 0, ..base.clone() },
        ServiceOptions { request_capacity: 4095, ..base.clone() },
        ServiceOptions { request_capacity: 2048, ..base.clone() },
        ServiceOptions { reply_capacity: 3 << 12, ..base.clone() },
        ServiceOptions { reply_capacity: 1 << 31, ..base.clone() },
        ServiceOptions { mode: 0o1777, ..base.clone() },
    ] {
        assert!(matches!(Service::bind(&name, bad.clone()), Err(Error::InvalidOptions { .. })), "{bad:?}");
        assert!(!dir.path().join("svc").exists());
    }
    for good in [
        ServiceOptions { request_capacity: 4096, reply_capacity: 1 << 30, max_clients: 1, ..base.clone() },
        ServiceOptions { mode: 0o777, ..base },
    ] {
        let s = Service::bind(&name, good).unwrap();
        assert!(dir.path().join("svc").exists());
        drop(s);
        assert!(!dir.path().join("svc").exists());
    }
}

/// The services `ipc-kit ls --json` lists under `name`: their processes
/// and their clients' processes.
fn listed(name: &SocketName) -> Vec<(i64, Vec<i64>)> {
    let out = std::process::Command::new(ipc_kit_tests::ipc_kit_bin()).args(["ls", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "service" && v["address"] == format!("service:{name}"))
        .map(|v| {
            let clients = v["clients"].as_array().unwrap().iter().map(|c| c["pid"].as_i64().unwrap()).collect();
            (v["creator"]["pid"].as_i64().unwrap(), clients)
        })
        .collect()
}

// Issue: "`ipc-kit ls` shows the services that are bound and their
// clients" — and forgets them when they go.
fn ipc_kit_ls_shows_the_service_and_its_clients() {
    let dir = ScratchDir::new();
    for name in [name_in(&dir, "listed.sock"), format!("@{}", ipc_kit_tests::unique_name("listed")).parse().unwrap()] {
        let me = i64::from(std::process::id() as i32);
        // The clients are forked before the service is bound, as separate
        // programs would be (a child of the service holds what it holds).
        let (go_r, go_w) = std::io::pipe().unwrap();
        let mut clients: Vec<_> = (0..2)
            .map(|_| {
                fork(|| {
                    let mut b = [0u8; 1];
                    nix::unistd::read(&go_r, &mut b).unwrap();
                    let mut conn = connect(&name).unwrap();
                    // Until the service drops its end.
                    let mut buf = Vec::new();
                    assert!(matches!(conn.recv_timeout(&mut buf, Duration::from_secs(20)), Err(Error::Disconnected)));
                })
            })
            .collect();
        let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
        assert_eq!(listed(&name), [(me, vec![])]);
        nix::unistd::write(&go_w, b"gg").unwrap();
        let conns: Vec<Connection> = (0..2).map(|_| service.accept_timeout(Duration::from_secs(10)).unwrap()).collect();
        let mut want: Vec<i64> = clients.iter().map(|c| i64::from(c.pid().as_raw())).collect();
        want.sort_unstable();
        let mut got = listed(&name);
        got[0].1.sort_unstable();
        assert_eq!(got, [(me, want)]);
        drop(conns);
        for c in &mut clients {
            assert_eq!(c.wait(), Exit::Code(0));
        }
        assert_eq!(listed(&name), [(me, vec![])]);
        drop(service);
        assert_eq!(listed(&name), []);
    }
}

// `AsyncService` and `AsyncConnection` docs: accept, receive and send in
// tokio tasks, cancel-safe; a client killed mid-stream ends its task
// with `Disconnected`.
fn the_async_forms_serve_clients_and_see_a_death() {
    const CALLS: usize = 1_000;
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let mut clients: Vec<_> = (0..3)
        .map(|c| {
            let name = &name;
            fork(move || {
                let mut req = Requester::new(connect_timeout(name, Duration::from_secs(20)).unwrap());
                let mut reply = Vec::new();
                for i in 0..CALLS {
                    if c == 2 && i == CALLS / 2 {
                        nix::sys::signal::kill(nix::unistd::Pid::this(), Signal::SIGKILL).unwrap();
                    }
                    let body = pattern((c * CALLS + i) as u64, 1 + i % 100);
                    req.call(&body, &mut reply).unwrap();
                    assert_eq!(reply, checksum(&body).to_le_bytes());
                }
            })
        })
        .collect();
    let served = ipc_kit_tests::tokio_runtime().block_on(async {
        let mut service = service.into_async().unwrap();
        // A wait given up leaves nothing half done behind it (a client in
        // its handshake then is accepted by the next call).
        let early = tokio::time::timeout(Duration::from_micros(1), service.accept()).await;
        let mut early = early.ok().map(Result::unwrap);
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let conn = match early.take() {
                Some(conn) => conn,
                None => service.accept().await.unwrap(),
            };
            tasks.push(tokio::spawn(async move {
                let mut conn = conn.into_async().unwrap();
                let (mut buf, mut served) = (Vec::new(), 0usize);
                loop {
                    match conn.recv(&mut buf).await {
                        Ok(_) => {
                            let mut reply = buf[..8].to_vec();
                            reply.extend_from_slice(&checksum(&buf[8..]).to_le_bytes());
                            conn.send(&reply).await.unwrap();
                            served += 1;
                        }
                        Err(Error::Disconnected) => return served,
                        Err(e) => panic!("{e}"),
                    }
                }
            }));
        }
        let mut served = Vec::new();
        for t in tasks {
            served.push(t.await.unwrap());
        }
        served.sort_unstable();
        served
    });
    assert_eq!(served, [CALLS / 2, CALLS, CALLS]);
    for (c, ch) in clients.iter_mut().enumerate() {
        let want = if c == 2 { Exit::Signaled(Signal::SIGKILL) } else { Exit::Code(0) };
        assert_eq!(ch.wait(), want);
    }
}

// The umbrella's `MessageSender`/`MessageReceiver` for a connection's
// sides: typed values (serde, postcard) both ways, and a peer's bytes that
// are no such value give `Malformed`, then the next value arrives.
fn typed_values_travel_both_ways_through_the_umbrellas_traits() {
    use ipc_kit::typed::{RecvValue, SendValue};
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Order {
        id: u64,
        items: Vec<String>,
        rush: Option<bool>,
    }
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let mut client = fork(|| {
        let (mut tx, mut rx) = connect(&name).unwrap().split();
        for id in 0..100u64 {
            let order = Order {
                id,
                items: vec!["x".repeat(id as usize); (id % 4) as usize],
                rush: (id % 3 == 0).then_some(true),
            };
            tx.send_value(&order).unwrap();
            let mut buf = Vec::new();
            let back: Order = rx.recv_value_timeout(&mut buf, Duration::from_secs(10)).unwrap();
            assert_eq!(back, Order { id: id + 1, ..order });
        }
        // Bytes that are no `Order`, then one that is.
        ipc_kit::MessageSender::send(&mut tx, &[0xff; 3]).unwrap();
        tx.send_value(&Order { id: 7, items: vec![], rush: None }).unwrap();
    });
    let (mut tx, mut rx) = service.accept_timeout(Duration::from_secs(10)).unwrap().split();
    let mut buf = Vec::new();
    for id in 0..100u64 {
        let mut order: Order = rx.recv_value_timeout(&mut buf, Duration::from_secs(10)).unwrap();
        assert_eq!(order.id, id);
        order.id += 1;
        tx.send_value(&order).unwrap();
    }
    let bad = rx.recv_value_timeout::<Order>(&mut buf, Duration::from_secs(10));
    assert!(matches!(bad, Err(ipc_kit::traits::Error::Malformed { .. })), "{bad:?}");
    let next: Order = rx.recv_value_timeout(&mut buf, Duration::from_secs(10)).unwrap();
    assert_eq!(next.id, 7);
    assert_eq!(client.wait(), Exit::Code(0));
}
