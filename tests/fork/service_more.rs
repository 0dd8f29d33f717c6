//! Services, more: the async forms (cancelled waits, deaths, idle waits,
//! many connections on one runtime, the cooperative budget), `ipc-kit ls`
//! for services in every spelling and shape, and the README's claims.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use ipc_kit::service::{Connection, Error, Requester, Service, ServiceOptions, SocketName, connect};
use ipc_kit_tests::{Exit, ScratchDir, cases, fork};
use nix::sys::signal::Signal;

cases!("service_more":
    async_cancelled_recv_and_send_take_nothing,
    async_peer_death_ends_pending_recv_and_send_at_once,
    async_split_sides_both_see_a_death,
    idle_async_waits_do_not_spin,
    many_connections_on_one_current_thread_runtime(90 s),
    a_recv_loop_that_always_succeeds_lets_other_tasks_run,
    a_send_loop_that_always_succeeds_lets_other_tasks_run,
    a_connection_holds_eleven_descriptors_at_each_end,
    ls_names_in_any_spelling,
    ls_text_output_is_one_line_per_service,
    ls_two_long_abstract_names_in_one_process,
    ls_two_services_in_one_process_with_their_clients,
    ls_a_forked_worker_is_neither_service_nor_client,
    ls_a_service_that_is_its_own_client,
    a_service_dead_but_its_forked_child_alive,
    ls_the_same_path_bound_twice_in_one_process,
    a_send_with_room_after_the_peer_closed_cleanly,
);

fn name_in(dir: &ScratchDir, file: &str) -> SocketName {
    SocketName::path(dir.path().join(file)).unwrap()
}

/// CPU time of this process (all threads), from /proc/self/stat, in ms.
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks * 1000 / 100
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
}

/// A pipe end pair for telling a child "go".
fn gate() -> (std::io::PipeReader, std::io::PipeWriter) {
    std::io::pipe().unwrap()
}

fn wait_gate(r: &mut std::io::PipeReader) {
    let mut b = [0u8; 1];
    r.read_exact(&mut b).unwrap();
}

fn open_gate(w: &mut std::io::PipeWriter) {
    w.write_all(b"g").unwrap();
}

// ---------------------------------------------------------------- async

// Cancel safety: a recv and a send given up by a timeout took and sent
// nothing.
fn async_cancelled_recv_and_send_take_nothing() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "cancel.sock");
    let (mut go_r, mut go_w) = gate();
    let (mut back_r, mut back_w) = gate();
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let mut client = fork(|| {
        let mut conn = connect(&name).unwrap();
        wait_gate(&mut go_r);
        conn.send(b"A").unwrap();
        // Drain what the service sent, then report how many and the last.
        wait_gate(&mut go_r);
        let (mut n, mut last, mut buf) = (0u64, Vec::new(), Vec::new());
        while conn.recv_timeout(&mut buf, Duration::from_millis(300)).is_ok() {
            n += 1;
            last.clone_from(&buf);
        }
        let mut report = n.to_le_bytes().to_vec();
        report.extend_from_slice(&last);
        conn.send(&report).unwrap();
        wait_gate(&mut go_r);
        let _ = back_w.write_all(b"d");
    });
    let conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    ipc_kit_tests::tokio_runtime().block_on(async {
        let mut conn = conn.into_async().unwrap();
        let mut buf = b"untouched".to_vec();
        for _ in 0..50 {
            assert!(tokio::time::timeout(Duration::from_micros(200), conn.recv(&mut buf)).await.is_err());
        }
        assert_eq!(buf, b"untouched", "a cancelled recv wrote into buf");
        open_gate(&mut go_w);
        let n = tokio::time::timeout(Duration::from_secs(5), conn.recv(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf[..n], b"A");
        // Fill the replies ring.
        let (mut sender, mut receiver) = conn.split();
        let mut sent = 0u64;
        loop {
            match sender.get_mut().try_send(&sent.to_le_bytes()) {
                Ok(()) => sent += 1,
                Err(Error::WouldBlock) => break,
                Err(e) => panic!("{e}"),
            }
        }
        for _ in 0..20 {
            let r = tokio::time::timeout(Duration::from_micros(300), sender.send(b"XXXXXXXX-cancelled")).await;
            assert!(r.is_err(), "a send into a full ring finished: {r:?}");
        }
        open_gate(&mut go_w);
        let n = tokio::time::timeout(Duration::from_secs(10), receiver.recv(&mut buf)).await.unwrap().unwrap();
        let got = u64::from_le_bytes(buf[..8].try_into().unwrap());
        assert_eq!(got, sent, "the client received {got} messages, {sent} were sent");
        assert_eq!(&buf[8..n], &(sent - 1).to_le_bytes(), "the last message is not the last sent");
        // And the send works again.
        tokio::time::timeout(Duration::from_secs(5), sender.send(b"after")).await.unwrap().unwrap();
    });
    open_gate(&mut go_w);
    let mut b = [0u8; 1];
    back_r.read_exact(&mut b).unwrap();
    assert_eq!(client.wait(), Exit::Code(0));
}

/// Connects, then blocks until killed (reading nothing).
fn idle_client(name: &SocketName, ready: std::io::PipeWriter) -> ipc_kit_tests::Forked {
    let mut ready = ready;
    fork(move || {
        let conn = connect(name).unwrap();
        ready.write_all(b"c").unwrap();
        std::thread::sleep(Duration::from_secs(60));
        drop(conn);
    })
}

fn async_peer_death_ends_pending_recv_and_send_at_once() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "death.sock");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let (mut r, w) = gate();
    let mut a = idle_client(&name, w.try_clone().unwrap());
    let mut b = idle_client(&name, w);
    let ca = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let cb = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut two = [0u8; 2];
    r.read_exact(&mut two).unwrap();
    let (pa, pb) = (a.pid(), b.pid());
    let (ra, rb) = ipc_kit_tests::tokio_runtime().block_on(async move {
        let (ca, cb) = if ca.peer_credentials().pid as i32 == pa.as_raw() { (ca, cb) } else { (cb, ca) };
        let mut ca = ca.into_async().unwrap();
        let mut cb = cb.into_async().unwrap();
        // b's ring full.
        while cb.sender_try_fill() {}
        let recv = tokio::spawn(async move {
            let mut buf = Vec::new();
            let r = ca.recv(&mut buf).await;
            (r.map(|_| ()), Instant::now())
        });
        let send = tokio::spawn(async move {
            let r = cb.send(b"into a full ring").await;
            (r, Instant::now())
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        nix::sys::signal::kill(pa, Signal::SIGKILL).unwrap();
        nix::sys::signal::kill(pb, Signal::SIGKILL).unwrap();
        let (ra, ta) = tokio::time::timeout(Duration::from_secs(5), recv).await.expect("recv never ended").unwrap();
        let (rb, tb) = tokio::time::timeout(Duration::from_secs(5), send).await.expect("send never ended").unwrap();
        ((ra, ta - t0), (rb, tb - t0))
    });
    println!("recv: {:?} after {:?}; send: {:?} after {:?}", ra.0, ra.1, rb.0, rb.1);
    assert!(matches!(ra.0, Err(Error::Disconnected)), "{:?}", ra.0);
    assert!(matches!(rb.0, Err(Error::Disconnected)), "{:?}", rb.0);
    assert!(ra.1 < Duration::from_millis(100) && rb.1 < Duration::from_millis(100));
    a.wait();
    b.wait();
}

trait Fill {
    fn sender_try_fill(&mut self) -> bool;
}

impl Fill for ipc_kit::service::AsyncConnection {
    fn sender_try_fill(&mut self) -> bool {
        // No access to the inner sender without split: send through a
        // zero timeout future instead.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut fut = std::pin::pin!(self.send(&[7u8; 1000]));
        fut.as_mut().poll(&mut cx).is_ready()
    }
}

use std::future::Future;

fn async_split_sides_both_see_a_death() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "split.sock");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let (mut r, w) = gate();
    let mut a = idle_client(&name, w);
    let conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut one = [0u8; 1];
    r.read_exact(&mut one).unwrap();
    let pa = a.pid();
    let (rr, rs) = ipc_kit_tests::tokio_runtime().block_on(async move {
        let (mut s, mut rx) = conn.into_async().unwrap().split();
        while s.get_mut().try_send(&[1u8; 1000]).is_ok() {}
        while s.get_mut().try_send(b"y").is_ok() {}
        let recv = tokio::spawn(async move {
            let mut buf = Vec::new();
            let r = rx.recv(&mut buf).await.map(|_| ());
            (r, Instant::now())
        });
        let send = tokio::spawn(async move { (s.send(b"x").await, Instant::now()) });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t0 = Instant::now();
        nix::sys::signal::kill(pa, Signal::SIGKILL).unwrap();
        let (r1, t1) = tokio::time::timeout(Duration::from_secs(5), recv).await.expect("recv hung").unwrap();
        let (r2, t2) = tokio::time::timeout(Duration::from_secs(5), send).await.expect("send hung").unwrap();
        ((r1, t1 - t0), (r2, t2 - t0))
    });
    println!("split recv {rr:?} send {rs:?}");
    assert!(matches!(rr.0, Err(Error::Disconnected)) && matches!(rs.0, Err(Error::Disconnected)));
    assert!(rr.1 < Duration::from_millis(100) && rs.1 < Duration::from_millis(100));
    a.wait();
}

// Idle waits: an accept, recvs on idle connections, a send into a full
// ring, and a client stuck in its handshake, all pending for 1.5 s.
fn idle_async_waits_do_not_spin() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "idle.sock");
    let options = ServiceOptions { handshake_timeout: Duration::from_millis(700), ..Default::default() };
    let mut service = Service::bind(&name, options).unwrap();
    let (mut r, w) = gate();
    let n: usize = 40;
    let mut clients: Vec<_> = (0..n).map(|_| idle_client(&name, w.try_clone().unwrap())).collect();
    let conns: Vec<Connection> = (0..n).map(|_| service.accept_timeout(Duration::from_secs(10)).unwrap()).collect();
    let mut four = vec![0u8; n];
    r.read_exact(&mut four).unwrap();
    // A client that connects and never greets.
    let stuck = ipc_kit::socket::SeqpacketSocket::connect_timeout(&name, Duration::from_secs(5)).unwrap();
    let used = ipc_kit_tests::tokio_runtime().block_on(async move {
        let mut service = service.into_async().unwrap();
        let mut conns: Vec<_> = conns.into_iter().map(|c| c.into_async().unwrap()).collect();
        let full = conns.pop().unwrap();
        let (mut fs, _fr) = full.split();
        while fs.get_mut().try_send(&[1u8; 1000]).is_ok() {}
        let which = "rsa";
        let mut tasks = Vec::new();
        if which.contains('r') {
            for mut c in conns {
                tasks.push(tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let _ = c.recv(&mut buf).await;
                }));
            }
        }
        if which.contains('s') {
            tasks.push(tokio::spawn(async move {
                let _ = fs.send(b"never").await;
            }));
        }
        if which.contains('a') {
            tasks.push(tokio::spawn(async move {
                let _ = service.accept().await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let c0 = cpu_ms();
        let idle: u64 = 1500;
        let s0 = std::fs::read_to_string("/proc/self/schedstat").unwrap();
        tokio::time::sleep(Duration::from_millis(idle)).await;
        let s1 = std::fs::read_to_string("/proc/self/schedstat").unwrap();
        let ns = |s: &str| s.split_whitespace().next().unwrap().parse::<u64>().unwrap();
        println!(
            "main thread on CPU {} us, {} times scheduled, over {idle} ms",
            (ns(&s1) - ns(&s0)) / 1000,
            s1.split_whitespace().nth(2).unwrap().parse::<u64>().unwrap()
                - s0.split_whitespace().nth(2).unwrap().parse::<u64>().unwrap()
        );
        let used = cpu_ms() - c0;
        for t in tasks {
            t.abort();
        }
        used
    });
    drop(stuck);
    println!("CPU over the idle waits: {used} ms");
    // 39 idle recvs, a send into a full ring, an accept: no side wakes
    // to look at its peer (its socket reports a death).
    assert!(used < 30, "idle async waits used {used} ms of CPU");
    for c in &mut clients {
        c.kill();
        c.wait();
    }
}

fn many_connections_on_one_current_thread_runtime() {
    const CLIENTS: usize = 60;
    const CALLS: usize = 300;
    let dir = ScratchDir::new();
    let name = name_in(&dir, "many.sock");
    let service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let (mut go_r, mut go_w) = gate();
    let mut clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let name = &name;
            let go_r = go_r.try_clone().unwrap();
            fork(move || {
                let mut go_r = go_r;
                let mut req = Requester::new(ipc_kit::service::connect_timeout(name, Duration::from_secs(20)).unwrap());
                wait_gate(&mut go_r);
                let mut reply = Vec::new();
                for i in 0..CALLS {
                    let body = format!("{c}:{i}");
                    req.call(body.as_bytes(), &mut reply).unwrap();
                    assert_eq!(reply, body.to_uppercase().into_bytes());
                }
            })
        })
        .collect();
    let _ = &mut go_r;
    let t0 = Instant::now();
    let served = ipc_kit_tests::tokio_runtime().block_on(async {
        let mut service = service.into_async().unwrap();
        let mut tasks = Vec::new();
        for _ in 0..CLIENTS {
            let conn = tokio::time::timeout(Duration::from_secs(30), service.accept()).await.unwrap().unwrap();
            tasks.push(tokio::spawn(async move {
                let mut conn = conn.into_async().unwrap();
                let (mut buf, mut n) = (Vec::new(), 0usize);
                loop {
                    match conn.recv(&mut buf).await {
                        Ok(_) => {
                            let mut reply = buf[..8].to_vec();
                            reply.extend_from_slice(&buf[8..].to_ascii_uppercase());
                            conn.send(&reply).await.unwrap();
                            n += 1;
                        }
                        Err(Error::Disconnected) => return n,
                        Err(e) => panic!("{e}"),
                    }
                }
            }));
        }
        // Everyone at once.
        for _ in 0..CLIENTS {
            open_gate(&mut go_w);
        }
        let mut total = 0;
        for t in tasks {
            total += tokio::time::timeout(Duration::from_secs(60), t).await.expect("a task hung").unwrap();
        }
        total
    });
    println!("{CLIENTS} clients x {CALLS} calls in {:?}", t0.elapsed());
    assert_eq!(served, CLIENTS * CALLS);
    for c in &mut clients {
        assert_eq!(c.wait(), Exit::Code(0));
    }
}

// consume_budget: a loop of recvs that always find a message lets a
// second task run.
fn a_recv_loop_that_always_succeeds_lets_other_tasks_run() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "budget.sock");
    let options =
        ServiceOptions { request_capacity: ipc_kit::service::MAX_CAPACITY.min(4 << 20), ..Default::default() };
    let mut service = Service::bind(&name, options).unwrap();
    let (mut go_r, mut go_w) = gate();
    let (mut done_r, mut done_w) = gate();
    let mut client = fork(move || {
        let mut conn = connect(&name).unwrap();
        let mut n = 0u64;
        while conn.try_send(&n.to_le_bytes()).is_ok() {
            n += 1;
        }
        done_w.write_all(&n.to_le_bytes()).unwrap();
        wait_gate(&mut go_r);
    });
    let conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut nb = [0u8; 8];
    done_r.read_exact(&mut nb).unwrap();
    let n = u64::from_le_bytes(nb);
    let (ticks, got) = beside_a_counter(async move {
        let mut conn = conn.into_async().unwrap();
        let mut buf = Vec::new();
        let mut got = 0u64;
        for _ in 0..n {
            conn.recv(&mut buf).await.unwrap();
            got += 1;
        }
        got
    });
    println!("{got} recvs that always found a message; the other task ran {ticks} times meanwhile");
    assert!(ticks > 0, "the other task never ran during {got} recvs");
    open_gate(&mut go_w);
    assert_eq!(client.wait(), Exit::Code(0));
}

/// Runs `work` on a current-thread runtime beside a task that counts its
/// turns; returns the turns it had meanwhile, and what `work` gave.
fn beside_a_counter<T>(work: impl std::future::Future<Output = T>) -> (u64, T) {
    use std::cell::Cell;
    use std::rc::Rc;
    ipc_kit_tests::tokio_runtime().block_on(async move {
        let counter = Rc::new(Cell::new(0u64));
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                let c2 = Rc::clone(&counter);
                tokio::task::spawn_local(async move {
                    loop {
                        c2.set(c2.get() + 1);
                        tokio::task::yield_now().await;
                    }
                });
                tokio::task::yield_now().await;
                let before = counter.get();
                let out = work.await;
                (counter.get() - before, out)
            })
            .await
    })
}

fn a_send_loop_that_always_succeeds_lets_other_tasks_run() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "budget2.sock");
    let options = ServiceOptions { reply_capacity: ipc_kit::service::MAX_CAPACITY.min(4 << 20), ..Default::default() };
    let mut service = Service::bind(&name, options).unwrap();
    let (mut go_r, mut go_w) = gate();
    let mut client = fork(move || {
        let _conn = connect(&name).unwrap();
        wait_gate(&mut go_r);
    });
    let conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let (ticks, sent) = beside_a_counter(async move {
        let mut conn = conn.into_async().unwrap();
        for i in 0..20_000u64 {
            conn.send(&i.to_le_bytes()).await.unwrap();
        }
        20_000
    });
    println!("{sent} sends with room; the other task ran {ticks} times meanwhile");
    assert!(ticks > 0);
    open_gate(&mut go_w);
    assert_eq!(client.wait(), Exit::Code(0));
}

// README: "Each connection holds 11 descriptors at each end".
fn a_connection_holds_eleven_descriptors_at_each_end() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "fds.sock");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let (mut r, mut w) = gate();
    let (mut go_r, mut go_w) = gate();
    let mut client = fork(move || {
        let before = open_fds();
        let conn = connect(&name).unwrap();
        let after = open_fds();
        w.write_all(&((after - before) as u64).to_le_bytes()).unwrap();
        wait_gate(&mut go_r);
        drop(conn);
    });
    let before = open_fds();
    let conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let after = open_fds();
    let mut b = [0u8; 8];
    r.read_exact(&mut b).unwrap();
    let at_client = u64::from_le_bytes(b);
    println!("descriptors per connection: service end {}, client end {at_client}", after - before);
    open_gate(&mut go_w);
    assert_eq!(client.wait(), Exit::Code(0));
    drop(conn);
    assert_eq!((after - before, at_client), (11, 11));
}

// ---------------------------------------------------------------- ls

fn ls_json() -> Vec<serde_json::Value> {
    let out = std::process::Command::new(ipc_kit_tests::ipc_kit_bin()).args(["ls", "--json"]).output().unwrap();
    assert!(out.status.success(), "ls --json failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

fn services_of(pid: i64) -> Vec<(String, Vec<i64>)> {
    let mut v: Vec<(String, Vec<i64>)> = ls_json()
        .into_iter()
        .filter(|v| v["kind"] == "service" && v["creator"]["pid"].as_i64() == Some(pid))
        .map(|v| {
            let mut clients: Vec<i64> =
                v["clients"].as_array().unwrap().iter().map(|c| c["pid"].as_i64().unwrap()).collect();
            clients.sort_unstable();
            (v["address"].as_str().unwrap().to_owned(), clients)
        })
        .collect();
    v.sort();
    v
}

fn me() -> i64 {
    i64::from(std::process::id() as i32)
}

/// How `ipc-kit ls` writes a service's address: the name's bytes escaped
/// (an abstract name with its `@`), cut with `…` when its memfd label
/// could not hold it all.
fn listed_as(name: &SocketName) -> String {
    let bytes = match name {
        SocketName::Path(p) => p.as_os_str().as_bytes().to_vec(),
        SocketName::Abstract(a) => [b"@".as_slice(), a].concat(),
    };
    format!("service:{}", ipc_kit::sync::object::escape_name(&bytes))
}

/// Whether `listed` is `want`, or `want` cut with `…` at its end.
fn lists(listed: &str, want: &str) -> bool {
    listed == want || listed.strip_suffix('…').is_some_and(|cut| cut.len() > 200 && want.starts_with(cut))
}

fn ls_names_in_any_spelling() {
    let dir = ScratchDir::new();
    let uniq = ipc_kit_tests::unique_name("sp");
    let mut names: Vec<SocketName> = vec![
        name_in(&dir, "with space.sock"),
        name_in(&dir, "back\\slash.sock"),
        name_in(&dir, "new\nline.sock"),
        name_in(&dir, "ends (deleted)"),
        SocketName::path(dir.path().join(OsStr::from_bytes(b"bad\xffutf8.sock"))).unwrap(),
        SocketName::abstract_name(format!("{uniq} with space")).unwrap(),
        SocketName::abstract_name([uniq.as_bytes(), b"\x01\xff\\"].concat()).unwrap(),
    ];
    // Near the 107-byte limit.
    let mut long = uniq.as_bytes().to_vec();
    long.resize(107, b'L');
    names.push(SocketName::abstract_name(&long).unwrap());
    let dirlen = dir.path().as_os_str().len() + 1;
    if dirlen < 100 {
        let file = "p".repeat(107 - dirlen);
        names.push(name_in(&dir, &file));
    }
    let services: Vec<Service> = names.iter().map(|n| Service::bind(n, ServiceOptions::default()).unwrap()).collect();
    let listed = services_of(me());
    let mut problems = Vec::new();
    for n in &names {
        let want = listed_as(n);
        let hits = listed.iter().filter(|(a, _)| lists(a, &want)).count();
        if hits != 1 {
            problems.push(format!("{want:?} listed {hits} times"));
        }
    }
    if listed.len() != names.len() {
        problems.push(format!("{} services bound, {} listed: {listed:?}", names.len(), listed.len()));
    }
    drop(services);
    assert!(problems.is_empty(), "{problems:#?}");
}

// README: "A name is printed as it is, but with a backslash doubled and
// control characters and bytes that are not UTF-8 as \xNN, so that each
// object takes one line".
fn ls_text_output_is_one_line_per_service() {
    let dir = ScratchDir::new();
    let names = [
        name_in(&dir, "new\nline.sock"),
        name_in(&dir, "back\\slash.sock"),
        SocketName::path(dir.path().join(OsStr::from_bytes(b"bad\xffutf8.sock"))).unwrap(),
    ];
    let services: Vec<Service> = names.iter().map(|n| Service::bind(n, ServiceOptions::default()).unwrap()).collect();
    let out = std::process::Command::new(ipc_kit_tests::ipc_kit_bin()).arg("ls").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let dirs = dir.path().display().to_string();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(&dirs) || l.starts_with("line.sock")).collect();
    println!("{lines:#?}");
    drop(services);
    let mut problems = Vec::new();
    if lines.len() != 3 {
        problems.push(format!("3 services on {} lines", lines.len()));
    }
    if !lines.iter().any(|l| l.contains("new\\x0aline")) {
        problems.push("the newline is not shown as \\x0a".into());
    }
    if !lines.iter().any(|l| l.contains("back\\\\slash")) {
        problems.push("the backslash is not doubled".into());
    }
    if !lines.iter().any(|l| l.contains("bad\\xffutf8")) {
        problems.push("the non-UTF-8 byte is not shown as \\xff".into());
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

fn ls_two_long_abstract_names_in_one_process() {
    let uniq = ipc_kit_tests::unique_name("ln");
    let mk = |last: u8| {
        let mut n = uniq.as_bytes().to_vec();
        n.resize(106, 0xfe);
        n.push(last);
        SocketName::abstract_name(n).unwrap()
    };
    let (a, b) = (mk(1), mk(2));
    let sa = Service::bind(&a, ServiceOptions::default()).unwrap();
    let sb = Service::bind(&b, ServiceOptions::default()).unwrap();
    let listed = services_of(me());
    println!("{listed:#?}");
    drop((sa, sb));
    // Both listed, apart (by their memfds), under names cut to fit.
    let got: Vec<&String> = listed.iter().map(|(n, _)| n).collect();
    assert_eq!(got.len(), 2, "two services bound, listed: {got:?}");
    for w in [listed_as(&a), listed_as(&b)] {
        assert!(got.iter().any(|g| lists(g, &w)), "want {w:?}, listed {got:?}");
    }
}

fn ls_two_services_in_one_process_with_their_clients() {
    let dir = ScratchDir::new();
    let (na, nb) = (name_in(&dir, "a.sock"), name_in(&dir, "b.sock"));
    let (mut go_r, mut go_w) = gate();
    let (mut up_r, up_w) = gate();
    let (mut end_r, mut end_w) = gate();
    let mut ca = {
        let (na, mut go_r, mut up_w, mut end_r) =
            (na.clone(), go_r.try_clone().unwrap(), up_w.try_clone().unwrap(), end_r.try_clone().unwrap());
        fork(move || {
            wait_gate(&mut go_r);
            let c = connect(&na).unwrap();
            up_w.write_all(b"u").unwrap();
            wait_gate(&mut end_r);
            drop(c);
        })
    };
    let mut cb = {
        let nb = nb.clone();
        let mut up_w = up_w;
        fork(move || {
            wait_gate(&mut go_r);
            let c1 = connect(&nb).unwrap();
            let c2 = connect(&nb).unwrap();
            up_w.write_all(b"u").unwrap();
            wait_gate(&mut end_r);
            drop((c1, c2));
        })
    };
    let mut sa = Service::bind(&na, ServiceOptions::default()).unwrap();
    let mut sb = Service::bind(&nb, ServiceOptions::default()).unwrap();
    open_gate(&mut go_w);
    open_gate(&mut go_w);
    let a1 = sa.accept_timeout(Duration::from_secs(10)).unwrap();
    let b1 = sb.accept_timeout(Duration::from_secs(10)).unwrap();
    let b2 = sb.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut two = [0u8; 2];
    up_r.read_exact(&mut two).unwrap();
    let listed = ls_json();
    let mine: Vec<_> =
        listed.iter().filter(|v| v["kind"] == "service" && v["creator"]["pid"].as_i64() == Some(me())).collect();
    for v in &mine {
        println!("{v}");
    }
    let got = services_of(me());
    open_gate(&mut end_w);
    open_gate(&mut end_w);
    ca.wait();
    cb.wait();
    drop((a1, b1, b2));
    let want = vec![
        (format!("service:{na}"), vec![i64::from(ca.pid().as_raw())]),
        (format!("service:{nb}"), vec![i64::from(cb.pid().as_raw())]),
    ];
    assert_eq!(got, want);
    let sizes: Vec<_> = mine.iter().map(|v| v["size"].as_u64().unwrap()).collect();
    let mut sizes = sizes;
    sizes.sort_unstable();
    assert_eq!(sizes, [1, 2], "connections per service");
}

// A service that forks a worker for a connection (the worker drops the
// Service, keeping the connection): the worker is not a client.
fn ls_a_forked_worker_is_neither_service_nor_client() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "fork.sock");
    let (mut go_r, mut go_w) = gate();
    let (mut end_r, mut end_w) = gate();
    let mut client = {
        let name = name.clone();
        fork(move || {
            wait_gate(&mut go_r);
            let mut c = connect(&name).unwrap();
            let mut buf = Vec::new();
            let _ = c.recv_timeout(&mut buf, Duration::from_secs(20));
            wait_gate(&mut end_r);
        })
    };
    let mut service = Some(Service::bind(&name, ServiceOptions::default()).unwrap());
    open_gate(&mut go_w);
    let conn = service.as_mut().unwrap().accept_timeout(Duration::from_secs(10)).unwrap();
    let (mut w1_r, mut w1_w) = gate();
    let (mut w2_r, mut w2_w) = gate();
    let (mut rd_r, rd_w) = gate();
    // A child that keeps everything.
    let mut keeper = {
        let mut rd_w = rd_w.try_clone().unwrap();
        fork(move || {
            rd_w.write_all(b"k").unwrap();
            wait_gate(&mut w1_r);
        })
    };
    // A worker that drops the service and keeps the connection.
    let mut worker = {
        let mut rd_w = rd_w;
        let svc = &mut service;
        fork(move || {
            drop(svc.take());
            rd_w.write_all(b"w").unwrap();
            wait_gate(&mut w2_r);
        })
    };
    let mut two = [0u8; 2];
    rd_r.read_exact(&mut two).unwrap();
    let socket_file_kept = dir.path().join("fork.sock").exists();
    let all = ls_json();
    let listed: Vec<_> = all.iter().filter(|v| v["kind"] == "service").collect();
    let pids =
        [me(), i64::from(client.pid().as_raw()), i64::from(keeper.pid().as_raw()), i64::from(worker.pid().as_raw())];
    let ours: Vec<_> = listed
        .iter()
        .filter(|v| v["creator"]["pid"].as_i64().is_some_and(|p| pids.contains(&p)))
        .map(|v| {
            let c: Vec<i64> = v["clients"].as_array().unwrap().iter().map(|c| c["pid"].as_i64().unwrap()).collect();
            (v["creator"]["pid"].as_i64().unwrap(), c)
        })
        .collect();
    println!("me {}, client {}, keeper {}, worker {}: listed {ours:?}", pids[0], pids[1], pids[2], pids[3]);
    open_gate(&mut w1_w);
    open_gate(&mut w2_w);
    keeper.wait();
    worker.wait();
    drop(conn);
    open_gate(&mut end_w);
    client.wait();
    assert!(socket_file_kept, "a forked worker's drop of the Service removed the service's socket file");
    assert_eq!(ours, [(pids[0], vec![pids[1]])]);
}

// A process that is both the service and (in a thread) its own client.
fn ls_a_service_that_is_its_own_client() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "self.sock");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let t = std::thread::spawn({
        let name = name.clone();
        move || connect(&name).unwrap()
    });
    let conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    let mine = t.join().unwrap();
    let v: Vec<_> =
        ls_json().into_iter().filter(|v| v["kind"] == "service" && v["address"] == format!("service:{name}")).collect();
    println!("{v:?}");
    drop((conn, mine));
    assert_eq!(v.len(), 1);
    let clients: Vec<i64> = v[0]["clients"].as_array().unwrap().iter().map(|c| c["pid"].as_i64().unwrap()).collect();
    // A connection of the service's own process is counted, and its
    // process is not listed among the clients (it is the service's).
    assert_eq!(v[0]["size"], 1);
    assert!(clients.is_empty(), "{clients:?}");
}

// The README: "when either process dies, at any step, the other's waits
// end at once with Disconnected" - a service that forked a child (which
// inherits the connection) dies.
fn a_service_dead_but_its_forked_child_alive() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "orphan.sock");
    let (mut up_r, up_w) = gate();
    let mut server = {
        let name = name.clone();
        fork(move || {
            let mut up_w = up_w;
            let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
            up_w.write_all(b"b").unwrap();
            let conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
            // A child for some side job; it sleeps.
            let _child = fork(|| std::thread::sleep(Duration::from_millis(1500)));
            std::thread::sleep(Duration::from_millis(200));
            drop(conn);
            nix::sys::signal::kill(nix::unistd::Pid::this(), Signal::SIGKILL).unwrap();
        })
    };
    let mut b = [0u8; 1];
    up_r.read_exact(&mut b).unwrap();
    let mut conn = connect(&name).unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let got = conn.recv_timeout(&mut buf, Duration::from_secs(2));
    println!("the service died at about 200 ms; its child lives on: recv gave {got:?} after {:?}", t0.elapsed());
    assert_eq!(server.wait(), Exit::Signaled(Signal::SIGKILL));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(matches!(got, Err(Error::Disconnected)), "{got:?}");
}

// A socket file unlinked by someone, and the name bound again by the same
// process: two live services, both reachable through their fds.
fn ls_the_same_path_bound_twice_in_one_process() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "twice.sock");
    let a = Service::bind(&name, ServiceOptions::default()).unwrap();
    std::fs::remove_file(dir.path().join("twice.sock")).unwrap();
    let b = Service::bind(&name, ServiceOptions::default()).unwrap();
    let listed = services_of(me());
    println!("{listed:?}");
    drop((a, b));
    assert_eq!(listed.len(), 2, "two services bound in this process, listed {listed:?}");
}

// Connection docs: "a sender gets Disconnected ... at once when the peer
// closed its side cleanly".
fn a_send_with_room_after_the_peer_closed_cleanly() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "clean.sock");
    let mut service = Service::bind(&name, ServiceOptions::default()).unwrap();
    let mut client = fork(|| {
        let conn = connect(&name).unwrap();
        drop(conn);
    });
    let mut conn = service.accept_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(client.wait(), Exit::Code(0));
    std::thread::sleep(Duration::from_millis(50));
    let sync = conn.send(b"after the peer left");
    let try_ = conn.try_send(b"after the peer left");
    let asy = ipc_kit_tests::tokio_runtime().block_on(async move {
        let mut c = conn.into_async().unwrap();
        c.send(b"x").await
    });
    println!("send {sync:?}, try_send {try_:?}, async send {asy:?}");
    assert!(
        matches!(sync, Err(Error::Disconnected))
            && matches!(try_, Err(Error::Disconnected))
            && matches!(asy, Err(Error::Disconnected))
    );
}
