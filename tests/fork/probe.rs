//! Hostile peers and new users against the promises of the FIFO server,
//! the pipes, the queues and the command.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use ipc_kit::fifo::{Error, Fifo, FifoClient, FifoServer};
use ipc_kit::msgq::{Key, SysvQueue};
use ipc_kit_tests::{Exit, Forked, ScratchDir, cases, fork};

use crate::fifo_service::{exits_well, fill, forked_client, serve_on_a_thread, service, wait_for_file};

cases!("probe":
    fifo_open_reader_zero_timeout_takes_a_waiting_writer,
    request_timeout_honours_its_timeout_when_the_request_fifo_is_full,
    a_client_that_never_reads_its_replies_does_not_stop_the_server,
    a_forged_request_never_answers_another_client,
    sysv_write_only_sender_to_a_full_queue_gets_full,
    pairs_killed_while_being_made_leave_nothing,
    a_dead_clients_reply_never_reaches_a_new_client_with_its_pid,
    server_recv_timeout_ends_under_a_flood_of_garbage,
    client_notices_its_server_died_though_a_new_one_took_the_path,
    cli_recv_takes_a_message_longer_than_msgmax_now,
    sysv_pair_of_a_killed_process_is_swept_as_an_orphan,
    server_with_a_name_that_is_not_utf8,
    pair_sweeps_spare_live_makers_and_take_stale_leftovers,
    pipelined_requests_never_take_another_requests_reply,
    server_removes_the_reply_fifo_of_a_client_killed_mid_reply,
    clients_that_never_read_do_not_stall_the_server_in_turn(40 s),
    pair_error_names_a_missing_temporary_directory,
    a_forged_request_never_disconnects_an_idle_client,
    pairs_are_made_under_any_umask,
    a_queue_read_slowly_never_holds_more_than_its_bound(40 s),
    clients_that_never_read_do_not_take_every_file_descriptor(40 s),
    queued_replies_reach_many_clients_whole_and_in_order(40 s),
    a_server_dropped_with_replies_queued_ends_every_wait(40 s),
    clients_that_never_read_do_not_cut_off_a_client_that_reads(60 s),
    a_server_waiting_with_replies_queued_spins_no_cpu(40 s),
    a_client_cut_off_learns_it_and_is_served_after_connecting_again(40 s),
    a_queued_clients_path_taken_by_another_file_is_never_written(40 s),
    forged_requests_in_numbers_cut_off_an_idle_client_that_connects_again(40 s),
);

/// A request frame as any process may write it into the request FIFO:
/// the protocol is public, and its check is no secret.
fn forged_request(pid: u32, reply_path: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = pid.to_le_bytes().to_vec();
    body.extend_from_slice(&0x5eed_u64.to_le_bytes()); // a ticket: the victim's is secret
    body.extend_from_slice(&u16::try_from(reply_path.len()).unwrap().to_le_bytes());
    body.extend_from_slice(reply_path);
    body.extend_from_slice(payload);
    let len = u32::try_from(body.len()).unwrap().to_le_bytes();
    let sum = len
        .iter()
        .chain(&body)
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut frame = b"IKfq".to_vec();
    frame.extend_from_slice(&len);
    frame.extend_from_slice(&sum.to_le_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// A zero timeout tries once: with a writer's bytes already in the FIFO,
/// `open_reader_timeout(ZERO)` and `open_reader_deadline(now)` return the
/// reader rather than `Timeout`.
fn fifo_open_reader_zero_timeout_takes_a_waiting_writer() {
    let dir = ScratchDir::new();
    let fifo = Fifo::create(dir.path().join("f"), 0o600).unwrap();
    let _hold = fifo.try_open_reader().unwrap();
    let w = fifo.try_open_writer().unwrap();
    (&w).write_all(b"waiting").unwrap();
    match fifo.open_reader_timeout(Duration::ZERO) {
        Ok(_) => {}
        other => panic!("a zero timeout with bytes waiting gave {other:?}"),
    }
    match fifo.open_reader_deadline(Instant::now()) {
        Ok(_) => {}
        other => panic!("a deadline of now with bytes waiting gave {other:?}"),
    }
}

/// A server that does not read for a while (busy), and a request FIFO
/// kept full by a hostile writer: `request_timeout` still ends by its
/// timeout, with `Timeout`, rather than blocking in the write.
fn request_timeout_honours_its_timeout_when_the_request_fifo_is_full() {
    let (_dir, path, _server) = service();
    let filler = Fifo::open(&path).unwrap().try_open_writer().unwrap();
    fill(&filler, 0x55, "the request FIFO");
    let mut client = forked_client(&path, |client| {
        let t = Instant::now();
        match client.request_timeout(b"hello", Duration::from_millis(200)) {
            Err(Error::Timeout { .. }) => {}
            other => panic!("expected Timeout, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(3), "ended after {:?}", t.elapsed());
    });
    let stuck = "request_timeout(200 ms) still blocked after 5 s: the request FIFO is full";
    exits_well(&mut client, Duration::from_secs(5), "the client", stuck);
}

/// A client that sends requests and never reads its replies must not stop
/// the server: replying to it ends (with an error) in bounded time, and
/// an honest client is answered.
fn a_client_that_never_reads_its_replies_does_not_stop_the_server() {
    let (_dir, path, mut server) = service();
    let stalled = never_reading(&path, 1, &[b"send me a lot"]);
    let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(req.payload, b"send me a lot");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    serve_on_a_thread(server, move |server| {
        // A reply larger than the reply FIFO holds: the client must read
        // for it to go through, and it never does.
        let stalled_reply = server.reply(&req, &vec![7u8; 1 << 20]);
        let _ = done_tx.send(format!("{stalled_reply:?}"));
        let honest = server.recv_timeout(Duration::from_secs(10)).unwrap();
        server.reply(&honest, b"answered").unwrap();
    });
    let mut honest = forked_client(&path, |client| {
        assert_eq!(client.request_timeout(b"me too", Duration::from_secs(10)).unwrap(), b"answered");
    });
    let honest_exit = honest.wait_timeout(Duration::from_secs(15));
    let stalled_reply = done_rx.try_recv().ok();
    drop(stalled);
    assert_eq!(
        honest_exit,
        Some(Exit::Code(0)),
        "an honest client was not answered while one client did not read its reply (the reply to the stalled client: {stalled_reply:?})"
    );
}

/// A client of the server at `path`, in a child: it connects, writes the
/// path of its reply FIFO (which anyone can list) to `go.name`, waits for
/// `go` to appear, then does `then`. Returns the child and that path.
fn victim(path: &Path, go: &Path, then: impl FnOnce(&mut FifoClient)) -> (ipc_kit_tests::Forked, Vec<u8>) {
    let child = fork(|| {
        let mut client = FifoClient::connect(path).unwrap();
        std::fs::write(go.with_extension("name"), client.reply_path().as_os_str().as_bytes()).unwrap();
        wait_for_file(go);
        then(&mut client);
    });
    let name_file = go.with_extension("name");
    wait_for_file(&name_file);
    // Written whole before it is read: the child wrote it in one call,
    // and an empty read means it was caught between create and write.
    let t = Instant::now();
    let name = loop {
        match std::fs::read(&name_file) {
            Ok(name) if !name.is_empty() => break name,
            _ => {
                assert!(t.elapsed() < Duration::from_secs(10), "the victim did not say its reply FIFO");
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    };
    (child, name)
}

/// `clients` clients of the server at `path`, in a child, each of which
/// sends `requests` and never reads a reply. Once all are sent, the child
/// makes the file `ready` beside `path`.
fn never_reading(path: &Path, clients: usize, requests: &[&[u8]]) -> ipc_kit_tests::Forked {
    fork(|| {
        let connected: Vec<_> = (0..clients)
            .map(|_| {
                let mut c = FifoClient::connect(path).unwrap();
                for r in requests {
                    c.send_request(r).unwrap();
                }
                c
            })
            .collect();
        std::fs::write(path.with_file_name("ready"), b"").unwrap();
        std::thread::sleep(Duration::from_secs(60)); // never reads
        drop(connected);
    })
}

/// Answers every request to `server` (until none comes for 20 s) with
/// `bulk` bytes of the request's first byte, on a thread; what each reply
/// gave comes out of the returned channel.
fn answer_in_bulk(server: FifoServer, bulk: usize) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    serve_on_a_thread(server, move |server| {
        while let Ok(req) = server.recv_timeout(Duration::from_secs(20)) {
            let got = server.reply(&req, &vec![req.payload[0]; bulk]);
            let _ = tx.send(format!("{got:?}"));
        }
    });
    rx
}

/// Answers one request to `server` with `reply` on a thread, then flushes
/// (10 s at most); what the reply gave comes out of the returned channel.
fn answer_one(server: FifoServer, reply: Vec<u8>) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    serve_on_a_thread(server, move |server| {
        let honest = server.recv_timeout(Duration::from_secs(10)).unwrap();
        let _ = tx.send(format!("{:?}", server.reply(&honest, &reply)));
        let _ = server.flush_timeout(Duration::from_secs(10));
    });
    rx
}

/// Waits up to 15 s for the `honest` client and ends the `stalled` ones:
/// panics unless the honest one was answered (exited with 0), with `what`
/// and what the server's reply to it gave (from `reply`, within 5 s).
fn assert_answered(mut honest: Forked, reply: &std::sync::mpsc::Receiver<String>, stalled: Forked, what: &str) {
    let honest_exit = honest.wait_timeout(Duration::from_secs(15));
    let honest_reply = reply.recv_timeout(Duration::from_secs(5)).ok();
    drop(stalled);
    assert_eq!(honest_exit, Some(Exit::Code(0)), "{what} (its reply: {honest_reply:?})");
}

/// Any process that may write to the request FIFO can forge a frame (its
/// check is public) naming another client's reply FIFO. The server then
/// replies into that FIFO, and the client takes the forged request's
/// reply for the answer to its own next request.
fn a_forged_request_never_answers_another_client() {
    let (dir, path, mut server) = service();
    // The victim connects, says where its reply FIFO is (anyone can list
    // the directory), waits for the forgery, then asks.
    let go = dir.path().join("go");
    let (mut victim, name) = victim(&path, &go, |client| {
        let reply = client.request_timeout(b"mine", Duration::from_secs(10)).unwrap();
        assert_eq!(reply, b"reply to mine", "the victim got a reply meant for another request");
    });
    let hostile = Fifo::open(&path).unwrap().try_open_writer().unwrap();
    hostile.write_atomic(&forged_request(1, &name, b"forged")).unwrap();
    // The server serves the forged request as any other.
    let req = server.recv_timeout(Duration::from_secs(5)).unwrap();
    let answer = [b"reply to ".as_slice(), &req.payload].concat();
    let _ = server.reply(&req, &answer);
    std::fs::write(&go, b"").unwrap();
    let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
    let answer = [b"reply to ".as_slice(), &req.payload].concat();
    let _ = server.reply(&req, &answer);
    match victim.wait_timeout(Duration::from_secs(15)) {
        Some(Exit::Code(0)) => {}
        other => panic!("the victim ended with {other:?}"),
    }
}

/// The `ipc-kit` binary next to this test binary, or where IPC_KIT_BIN
/// A sender that may write to a System V queue but not read it (mode
/// 0200 for its owner, or 0622 for others: the kernel needs read
/// permission for `IPC_STAT`) finds the queue full: `try_send` says
/// `Full` and `send_timeout` says `Timeout`, as documented, not
/// `PermissionDenied` from looking at the queue's capacity.
fn sysv_write_only_sender_to_a_full_queue_gets_full() {
    fork(|| {
        ipc_kit_tests::become_nobody();
        let q = SysvQueue::create(Key::private(), 0o600).unwrap();
        loop {
            match q.try_send(1, &[9; 1024]) {
                Ok(()) => {}
                Err(ipc_kit::msgq::Error::Full) => break,
                Err(e) => panic!("filling: {e:?}"),
            }
        }
        q.set_mode(0o200).unwrap();
        match q.try_send(1, &[9; 1024]) {
            Err(ipc_kit::msgq::Error::Full) => {}
            other => panic!("try_send to a full queue it may only write: {other:?}"),
        }
        match q.send_timeout(1, &[9; 1024], Duration::from_millis(50)) {
            Err(ipc_kit::msgq::Error::Timeout) => {}
            other => panic!("send_timeout to a full queue it may only write: {other:?}"),
        }
    })
    .join();
}

/// Processes killed at random moments while they make and drop POSIX
/// queue and FIFO pairs (`Mechanism::pair`): whatever step the kill lands
/// on, what they leave (a queue `/ipc-kit-pair-PID-…`, a directory
/// `$TMPDIR/ipc-kit-pair-PID-…`) is stale by the kernel's word (its lock
/// is free), and the next run's pairs, one of each kind, sweep it: then
/// nothing of theirs is left. Whatever is found is removed here after the
/// check.
fn pairs_killed_while_being_made_leave_nothing() {
    // Listing POSIX queues takes an mqueue mount, which takes root.
    // Without it the directories are checked, and a queue is swept only
    // with its directory.
    let mnt = nix::unistd::geteuid().is_root().then(|| {
        assert!(ipc_kit_tests::private_mount_namespace("mounting an mqueue file system"));
        let mnt = ScratchDir::new();
        nix::mount::mount(Some("mqueue"), mnt.path(), Some("mqueue"), nix::mount::MsFlags::empty(), None::<&str>)
            .expect("mount mqueue");
        mnt
    });
    if mnt.is_none() {
        println!("POSIX queues not listed (mounting an mqueue file system needs root): directories checked");
    }
    let tmp = std::env::temp_dir();
    let mut rng = ipc_kit_tests::Rng::new(u64::from(std::process::id()));
    let looping = ipc_kit::shm::Mapping::anonymous(4096).unwrap();
    let mut killed = Vec::new();
    for _ in 0..150 {
        looping.write(0, &0u32).unwrap();
        let mut child = fork(|| {
            loop {
                for m in [ipc_kit::Mechanism::PosixQueue, ipc_kit::Mechanism::Fifo] {
                    drop(m.pair().unwrap());
                }
                looping.write(0, &1u32).unwrap();
            }
        });
        // Kill it at a random moment once it makes pairs in a loop.
        let t = Instant::now();
        while looping.read::<u32>(0).unwrap() == 0 && t.elapsed() < Duration::from_secs(5) {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_micros(rng.below(1000)));
        child.kill();
        child.wait();
        killed.push(format!("ipc-kit-pair-{}-", child.pid()));
    }
    let leftovers = || {
        let mut left = Vec::new();
        for dir in mnt.iter().map(ScratchDir::path).chain([tmp.as_path()]) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                if killed.iter().any(|prefix| e.file_name().as_bytes().starts_with(prefix.as_bytes())) {
                    left.push(e.path());
                }
            }
        }
        left
    };
    let before = leftovers().len();
    // The next run: each pair sweeps first.
    for m in [ipc_kit::Mechanism::Fifo, ipc_kit::Mechanism::PosixQueue] {
        drop(m.pair().unwrap());
    }
    let left = leftovers();
    for path in &left {
        let _ = std::fs::remove_dir_all(path);
        let _ = std::fs::remove_file(path);
        if let Some(name) = path.file_name().filter(|_| path.parent() == Some(tmp.as_path())) {
            if let Ok(mut q) = ipc_kit::msgq::PosixQueue::open(&format!("/{}", name.to_string_lossy())) {
                let _ = q.unlink();
            }
        }
    }
    if let Some(mnt) = &mnt {
        nix::mount::umount(mnt.path()).unwrap();
    }
    assert!(
        left.is_empty(),
        "left behind by killed makers of pairs after the next pairs ({before} before them): {left:?}"
    );
}

/// Pids are reused (here: two clients, each pid 1 in a PID namespace of
/// its own). A client sends a request and goes; a new client with the
/// same pid connects before the server replies. The late reply must not
/// reach the new client (the server says `ClientGone`), which gets the
/// answer to its own request.
fn a_dead_clients_reply_never_reaches_a_new_client_with_its_pid() {
    let (dir, path, mut server) = service();
    let Some((mut first, _)) = ipc_kit_tests::fork_in_new_pid_namespace(|| {
        let mut client = FifoClient::connect(&path).unwrap();
        client.send_request(b"first").unwrap();
    }) else {
        println!("skipped: making PID namespaces needs root");
        return;
    };
    assert_eq!(first.wait_timeout(Duration::from_secs(10)), Some(Exit::Code(0)));
    let late = server.recv_timeout(Duration::from_secs(5)).unwrap();
    let ready = dir.path().join("ready");
    let (mut second, _) = ipc_kit_tests::fork_in_new_pid_namespace(|| {
        let mut client = FifoClient::connect(&path).unwrap();
        std::fs::write(&ready, client.reply_path().as_os_str().as_bytes()).unwrap();
        let reply = client.request_timeout(b"second", Duration::from_secs(10)).unwrap();
        assert_eq!(reply, b"reply to second", "a reply meant for a dead client with the same pid");
    })
    .unwrap();
    wait_for_file(&ready);
    let late_reply = server.reply(&late, b"reply to first");
    let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
    server.reply(&req, &[b"reply to ".as_slice(), &req.payload].concat()).unwrap();
    let exit = second.wait_timeout(Duration::from_secs(15));
    assert_eq!(
        exit,
        Some(Exit::Code(0)),
        "the new client with the dead one's pid (replying to the dead one gave {late_reply:?}; paths {} and {})",
        late.reply_path().display(),
        String::from_utf8_lossy(&std::fs::read(&ready).unwrap_or_default())
    );
}

/// A writer that pours garbage into the request FIFO without pause: the
/// server's `recv_timeout` still ends by its deadline (`Timeout`: no
/// request came), rather than reading garbage for as long as it flows.
fn server_recv_timeout_ends_under_a_flood_of_garbage() {
    let (_dir, path, mut server) = service();
    let flood: Vec<_> = (0..4)
        .map(|_| {
            fork(|| {
                let w = Fifo::open(&path).unwrap().open_writer_timeout(Duration::from_secs(5)).unwrap();
                let _ = w.set_capacity(1 << 20);
                loop {
                    let _ = (&w).write_all(&[0u8; 65536]);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300)); // the flood fills the FIFO
    let mut serving = fork(move || {
        let t = Instant::now();
        match server.recv_timeout(Duration::from_millis(200)) {
            Err(Error::Timeout { .. }) => {}
            other => panic!("expected Timeout, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(3), "ended after {:?}", t.elapsed());
        std::mem::forget(server); // the parent's handle owns the FIFO
    });
    let stuck = "recv_timeout(200 ms) still reading garbage after 8 s";
    exits_well(&mut serving, Duration::from_secs(8), "the server", stuck);
    drop(flood);
}

/// A server takes a request and is killed; a new server starts at the
/// same path (`create_replacing`, as after any crash). The client waiting
/// for its reply with `request` must learn that its server is gone: the
/// FIFO it wrote to has no reader any more. (The new server never saw the
/// request and will never answer it.)
fn client_notices_its_server_died_though_a_new_one_took_the_path() {
    let dir = ScratchDir::new();
    let path = dir.path().join("service");
    let (ready, got) = (dir.path().join("ready"), dir.path().join("got"));
    let mut first = fork(|| {
        let mut server = FifoServer::create(&path, 0o600).unwrap();
        std::fs::write(&ready, b"").unwrap();
        let _req = server.recv_timeout(Duration::from_secs(10)).unwrap();
        std::fs::write(&got, b"").unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    wait_for_file(&ready);
    let mut client = fork(|| {
        let mut client = FifoClient::connect(&path).unwrap();
        match client.request(b"lost with its server") {
            Err(Error::ServerGone { .. }) => {}
            other => panic!("expected ServerGone, got {other:?}"),
        }
    });
    wait_for_file(&got);
    first.kill();
    first.wait();
    let _second = FifoServer::create_replacing(&path, 0o600).unwrap();
    let stuck = "the client still waits for a reply from a dead server after 5 s";
    exits_well(&mut client, Duration::from_secs(5), "the client", stuck);
}

/// A message sent before msgmax was lowered is longer than msgmax now.
/// The library's `recv_vec` asks again with more room; `ipc-kit recv`
/// must get it too, rather than fail with "buffer too small" and leave it
/// queued for good.
fn cli_recv_takes_a_message_longer_than_msgmax_now() {
    fork(|| {
        // msgmax belongs to the IPC namespace: lower it in a private one.
        if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC).is_err() {
            println!("skipped: a private IPC namespace needs root");
            return;
        }
        let q = SysvQueue::create(Key::private(), 0o600).unwrap();
        let msg = ipc_kit_tests::pattern(5, 2000);
        q.send(3, &msg).unwrap();
        std::fs::write("/proc/sys/kernel/msgmax", "100").unwrap();
        let out = std::process::Command::new(ipc_kit_tests::ipc_kit_bin())
            .args(["recv", &format!("sysv-id:{}", q.id()), "--raw"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout == msg, "{} bytes out, 2000 sent", out.stdout.len());
    })
    .join();
}

/// The ids of the System V queues in this IPC namespace.
fn sysv_queue_ids() -> Vec<i32> {
    let text = std::fs::read_to_string("/proc/sysvipc/msg").unwrap();
    text.lines().skip(1).filter_map(|l| l.split_whitespace().nth(1)?.parse().ok()).collect()
}

/// A process killed while it holds a `Mechanism::SysvQueue` pair, before
/// anything went through it, leaves its queue behind (a System V queue
/// outlives its processes). Crash leftovers must be reclaimable: `ipc-kit
/// rm --orphaned` (here a dry run) offers it. The queue is removed here
/// afterwards either way.
fn sysv_pair_of_a_killed_process_is_swept_as_an_orphan() {
    let before = sysv_queue_ids();
    let made = ipc_kit::shm::Mapping::anonymous(4096).unwrap();
    let mut holder = fork(|| {
        let _pair = ipc_kit::Mechanism::SysvQueue.pair().unwrap();
        made.write(0, &1u32).unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    wait_for_flag(&made, "no pair made");
    holder.kill();
    holder.wait();
    let left: Vec<i32> = sysv_queue_ids().into_iter().filter(|id| !before.contains(id)).collect();
    assert_eq!(left.len(), 1, "the killed holder's queue: {left:?}");
    let out = std::process::Command::new(ipc_kit_tests::ipc_kit_bin())
        .args(["rm", "--orphaned", "--dry-run"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    SysvQueue::open_id(left[0]).unwrap().remove().unwrap();
    let ours = format!("would remove msg-id:{}", left[0]);
    assert!(said.lines().any(|l| l == ours), "the queue of a killed pair holder is not offered: {said}");
}

/// A server whose file name is not UTF-8 (any bytes but `/` and NUL make
/// a file name): its clients' reply FIFOs are named after its exact name,
/// so the reply FIFO of a killed client is reclaimed by the next client,
/// and a server whose name differs only in such a byte is not taken for
/// it (requests naming its clients' FIFOs are refused).
fn server_with_a_name_that_is_not_utf8() {
    use std::ffi::OsStr;
    let dir = ScratchDir::new();
    let path = dir.path().join(OsStr::from_bytes(b"svc\xff"));
    let mut server = FifoServer::create(&path, 0o600).unwrap();
    let mut doomed = forked_client(&path, |c| {
        c.send_request(b"hi").unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
    let doomed_fifo = req.reply_path().to_owned();
    assert!(doomed_fifo.exists());
    doomed.kill();
    doomed.wait();
    let next = FifoClient::connect(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!doomed_fifo.exists(), "a dead client's reply FIFO stayed: {names:?}");
    // A neighbour whose name differs in the byte that is not UTF-8.
    let other = dir.path().join(OsStr::from_bytes(b"svc\xfe"));
    let mut neighbour = FifoServer::create(&other, 0o600).unwrap();
    let raw = Fifo::open(&other).unwrap().try_open_writer().unwrap();
    raw.write_atomic(&forged_request(1, next.reply_path().as_os_str().as_bytes(), b"cross")).unwrap();
    match neighbour.recv_timeout(Duration::from_secs(5)) {
        Err(Error::BadRequest { .. }) => {}
        other => panic!("a request naming another server's client's FIFO: {other:?}"),
    }
}

/// Things named like a pair's lock directory (`$TMPDIR/NAME`) and queue
/// (`/NAME`), planted by a case, and removed when it ends however it ends.
struct Planted(Vec<String>);

impl Planted {
    /// A directory `NAME` (mode 0700) with a FIFO in it, and a queue
    /// `/NAME` that outlives this process: what a maker killed inside
    /// `pair` leaves.
    fn pair_leftovers(&mut self, name: String) -> std::path::PathBuf {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(&name);
        self.0.push(name.clone());
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        nix::unistd::mkfifo(&dir.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let attr = ipc_kit::msgq::QueueAttr { max_messages: 1, message_size: 8 };
        ipc_kit::msgq::PosixQueue::create(&format!("/{name}"), attr, 0o600).unwrap().persist();
        dir
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        for name in &self.0 {
            let path = std::env::temp_dir().join(name);
            if std::fs::remove_dir_all(&path).is_err() {
                let _ = std::fs::remove_file(&path);
            }
            if let Ok(mut q) = ipc_kit::msgq::PosixQueue::open(&format!("/{name}")) {
                let _ = q.unlink();
            }
        }
    }
}

/// Waits up to 10 s for a child to write a word other than 0 at the start
/// of `map`; `not_done` says what it did not do otherwise.
fn wait_for_flag(map: &ipc_kit::shm::Mapping, not_done: &str) {
    let t = Instant::now();
    while map.read::<u32>(0).unwrap() == 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "{not_done}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether the POSIX queue `name` exists.
fn posix_queue_exists(name: &str) -> bool {
    match ipc_kit::msgq::PosixQueue::open(name) {
        Ok(_) => true,
        Err(ipc_kit::msgq::Error::NotFound { .. }) => false,
        Err(e) => panic!("opening {name}: {e}"),
    }
}

/// The sweep each FIFO and POSIX queue pair runs first takes only what is
/// provably stale. Planted in the temporary directory: the leftovers of a
/// dead maker (a directory with a FIFO in it, unlocked, and a queue of its
/// name); the same, locked by a live process; a symbolic link named like
/// a lock directory to a directory elsewhere; and (as root) an unlocked
/// empty directory of another user. A pair removes the first with its
/// queue and leaves the rest. Then processes make pairs in a loop, each
/// one sweeping, and keep their latest pairs: every pair works, made
/// beside the others' sweeps and used after them, and the live holder's
/// directory and queue survive every sweep. Once the holder is killed,
/// the next pair removes them too.
fn pair_sweeps_spare_live_makers_and_take_stale_leftovers() {
    use ipc_kit::Mechanism;
    let tmp = std::env::temp_dir();
    let pid = std::process::id();
    let mut planted = Planted(Vec::new());
    let stale = planted.pair_leftovers(format!("ipc-kit-pair-planted-{pid}-stale"));
    // A live maker: it holds the lock, then makes its FIFO and queue.
    let live_name = format!("ipc-kit-pair-planted-{pid}-live");
    let live = tmp.join(&live_name);
    planted.0.push(live_name.clone());
    let locked = ipc_kit::shm::Mapping::anonymous(4096).unwrap();
    let mut holder = fork(|| {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&live).unwrap();
        let dir = std::fs::File::open(&live).unwrap();
        let _lock = nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
        nix::unistd::mkfifo(&live.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let attr = ipc_kit::msgq::QueueAttr { max_messages: 1, message_size: 8 };
        ipc_kit::msgq::PosixQueue::create(&format!("/{live_name}"), attr, 0o600).unwrap().persist();
        locked.write(0, &1u32).unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    wait_for_flag(&locked, "the live maker did not lock its directory");
    // A symbolic link to a directory of someone else's.
    let elsewhere = ScratchDir::new();
    std::fs::write(elsewhere.path().join("keep"), b"not a pair's").unwrap();
    let link_name = format!("ipc-kit-pair-planted-{pid}-link");
    planted.0.push(link_name.clone());
    std::os::unix::fs::symlink(elsewhere.path(), tmp.join(&link_name)).unwrap();
    // Another user's, which only root can plant.
    let other_name = format!("ipc-kit-pair-planted-{pid}-other");
    let other = nix::unistd::geteuid().is_root().then(|| {
        planted.0.push(other_name.clone());
        let path = tmp.join(&other_name);
        std::fs::create_dir(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        path
    });

    for m in [Mechanism::Fifo, Mechanism::PosixQueue] {
        let mut pair = m.pair().unwrap();
        pair.sender.send(b"after a sweep").unwrap();
        let mut buf = Vec::new();
        pair.receiver.recv(&mut buf).unwrap();
        assert_eq!(buf, b"after a sweep", "{}", m.name());
    }
    assert!(!stale.exists(), "a dead maker's directory was not swept");
    assert!(!posix_queue_exists(&format!("/ipc-kit-pair-planted-{pid}-stale")), "a dead maker's queue was not swept");
    assert!(live.join("fifo").exists(), "a live maker's directory or FIFO was swept");
    assert!(posix_queue_exists(&format!("/{live_name}")), "a live maker's queue was swept");
    assert!(elsewhere.path().join("keep").exists(), "the sweep followed a symbolic link");
    assert!(tmp.join(&link_name).symlink_metadata().is_ok(), "the sweep removed a symbolic link it could not lock");
    if let Some(other) = &other {
        assert!(other.exists(), "the sweep removed another user's directory");
    }

    // Makers side by side, each keeping its latest pairs and using them
    // after every new one (made beside the others' sweeps).
    let makers: Vec<_> = (0..3u8)
        .map(|who| {
            fork(move || {
                let t = Instant::now();
                let mut kept: Vec<(Mechanism, ipc_kit::Pair)> = Vec::new();
                let mut buf = Vec::new();
                let mut n = 0u32;
                while t.elapsed() < Duration::from_millis(1500) {
                    let m = if n.is_multiple_of(2) { Mechanism::Fifo } else { Mechanism::PosixQueue };
                    let pair = m.pair().unwrap_or_else(|e| panic!("{} pair number {n} of maker {who}: {e}", m.name()));
                    kept.push((m, pair));
                    if kept.len() > 4 {
                        kept.remove(0);
                    }
                    for (i, (m, pair)) in kept.iter_mut().enumerate() {
                        let msg = [who, i as u8, n as u8];
                        pair.sender.send(&msg).unwrap_or_else(|e| panic!("{} send of maker {who}: {e}", m.name()));
                        pair.receiver
                            .recv(&mut buf)
                            .unwrap_or_else(|e| panic!("{} recv of maker {who}: {e}", m.name()));
                        assert_eq!(buf, msg, "{} pair of maker {who}", m.name());
                    }
                    n += 1;
                }
                assert!(n > 10, "maker {who} made only {n} pairs");
            })
        })
        .collect();
    for (who, mut maker) in makers.into_iter().enumerate() {
        match maker.wait_timeout(Duration::from_secs(15)) {
            Some(Exit::Code(0)) => {}
            other => panic!("maker {who} ended with {other:?}"),
        }
    }
    assert!(live.join("fifo").exists(), "a live maker's directory or FIFO was swept by makers in a loop");
    assert!(posix_queue_exists(&format!("/{live_name}")), "a live maker's queue was swept by makers in a loop");

    // Its maker dies: the kernel drops the lock, and the next pair sweeps.
    holder.kill();
    holder.wait();
    drop(Mechanism::PosixQueue.pair().unwrap());
    assert!(!live.exists(), "the directory of a maker since killed was not swept");
    assert!(!posix_queue_exists(&format!("/{live_name}")), "the queue of a maker since killed was not swept");
}

/// A client that sends many requests before reading (pipelining) and reads
/// late: the replies that do not fit in its reply FIFO wait in the server,
/// which goes on serving. Every reply the client then takes is the answer
/// to its own request, in order; had the server cut it off, the client
/// would learn it (an error) rather than take the next request's reply
/// for it or wait for good.
fn pipelined_requests_never_take_another_requests_reply() {
    let (_dir, path, mut server) = service();
    let mut client = forked_client(&path, |client| {
        for i in 0..20u8 {
            client.send_request(&[i]).unwrap();
        }
        // Busy elsewhere: the replies pile up meanwhile.
        std::thread::sleep(Duration::from_secs(3));
        for i in 0..20u8 {
            match client.recv_reply() {
                Ok(reply) => assert_eq!(reply[0], i, "the reply to request {} came for request {i}", reply[0]),
                Err(Error::ClientStalled { .. }) => return,
                Err(e) => panic!("reply {i}: {e}"),
            }
        }
    });
    // Replies of 4000 bytes: sixteen fill the client's reply FIFO.
    let t = Instant::now();
    for _ in 0..20 {
        let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
        let _ = server.reply(&req, &[req.payload[0]; 4000]);
    }
    assert!(t.elapsed() < Duration::from_secs(2), "the server waited for a client that does not read");
    // The server waits (here for no request) while the client reads.
    server.flush_timeout(Duration::from_secs(15)).unwrap();
    assert_eq!(
        client.wait_timeout(Duration::from_secs(10)),
        Some(Exit::Code(0)),
        "the pipelining client took a wrong reply, or waited for good for a dropped one"
    );
}

/// A client killed while part of its reply waits in the server for room:
/// the server drops what waited for it and removes its reply FIFO, as for
/// any client found gone.
fn server_removes_the_reply_fifo_of_a_client_killed_mid_reply() {
    let (_dir, path, mut server) = service();
    let client = never_reading(&path, 1, &[b"a lot, please"]);
    let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
    let pid = client.pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    });
    // Larger than the reply FIFO holds: the rest waits in the server.
    server.reply(&req, &vec![1u8; 1 << 20]).unwrap();
    assert!(server.queued() > 0);
    killer.join().unwrap();
    drop(client);
    server.flush_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(server.queued(), 0, "what waited for a dead client was dropped");
    assert!(
        req.reply_path().symlink_metadata().is_err(),
        "the reply FIFO of a client gone is still there: {}",
        req.reply_path().display()
    );
}

/// One process opens several connections, fills each one's reply FIFO
/// itself and sends one request on each: every reply then waits for room
/// until the server gives up on it. An honest client asking meanwhile is
/// still answered within a few seconds, not after one reply timeout per
/// hostile connection.
fn clients_that_never_read_do_not_stall_the_server_in_turn() {
    const HOSTILE: usize = 6;
    let (dir, path, server) = service();
    let ready = dir.path().join("ready");
    let hostile = fork(|| {
        let mut clients = Vec::new();
        for _ in 0..HOSTILE {
            let mut client = FifoClient::connect(&path).unwrap();
            let filler = Fifo::open(client.reply_path()).unwrap().try_open_writer().unwrap();
            fill(&filler, 0, "a reply FIFO");
            client.send_request(b"x").unwrap();
            clients.push((client, filler));
        }
        std::fs::write(&ready, b"").unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    let t = Instant::now();
    while !ready.exists() {
        assert!(t.elapsed() < Duration::from_secs(10), "the hostile connections were not made");
        std::thread::sleep(Duration::from_millis(5));
    }
    serve_on_a_thread(server, |server| {
        while let Ok(req) = server.recv_timeout(Duration::from_secs(30)) {
            let _ = server.reply(&req, b"ok");
        }
    });
    let mut honest = forked_client(&path, |client| {
        assert_eq!(client.request_timeout(b"me", Duration::from_secs(6)).unwrap(), b"ok");
    });
    let exit = honest.wait_timeout(Duration::from_secs(15));
    drop(hostile);
    assert_eq!(
        exit,
        Some(Exit::Code(0)),
        "an honest client was not answered within 6 s behind {HOSTILE} connections that never read"
    );
}

/// `pair` of a FIFO or POSIX queue with `TMPDIR` naming a directory that
/// does not exist fails, and its error says which path (not a bare
/// "No such file or directory").
fn pair_error_names_a_missing_temporary_directory() {
    use ipc_kit::Mechanism;
    let scratch = ScratchDir::new();
    let missing = scratch.path().join("no-such-dir");
    fork(move || {
        set_tmpdir(&missing);
        for m in [Mechanism::Fifo, Mechanism::PosixQueue] {
            let e = m.pair().err().unwrap_or_else(|| panic!("{} pair made without its temporary directory", m.name()));
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{}: {e}", m.name());
            let text = e.to_string();
            assert!(
                text.contains(&*missing.to_string_lossy()),
                "{} pair's error does not name the path: {text}",
                m.name()
            );
        }
    })
    .join();
}

/// A service whose replies are larger than a reply FIFO holds, and a
/// client that is connected but between requests. Any process that may
/// write to the request FIFO forges a request naming that client's reply
/// FIFO (its name is in the directory listing): the server's reply to it
/// fills the idle client's FIFO, and the rest waits in the server. The
/// client's next request must still be answered.
fn a_forged_request_never_disconnects_an_idle_client() {
    const BULK: usize = 100_000;
    let (dir, path, server) = service();
    let go = dir.path().join("go");
    let (mut victim, name) = victim(&path, &go, |client| match client.request_timeout(b"v", Duration::from_secs(10)) {
        Ok(reply) => assert!(reply.len() == BULK && reply.iter().all(|&b| b == b'v'), "a wrong reply"),
        Err(e) => panic!("an idle client was cut off by a request it never sent: {e}"),
    });
    let rx = answer_in_bulk(server, BULK);
    let forger = Fifo::open(&path).unwrap().try_open_writer().unwrap();
    forger.write_atomic(&forged_request(1, &name, b"a")).unwrap();
    let forged = rx.recv_timeout(Duration::from_secs(10)).expect("the forged request was not answered");
    std::fs::write(&go, b"").unwrap();
    assert_eq!(
        victim.wait_timeout(Duration::from_secs(15)),
        Some(Exit::Code(0)),
        "the victim was not answered after a forged request naming its reply FIFO (whose reply gave {forged})"
    );
}

/// The lock directory of a FIFO or POSIX queue pair is documented as mode
/// 0700, which its maker needs (it opens the directory to lock it, and
/// makes the FIFO in it): a process whose umask takes those bits away
/// still makes pairs. (Root passes every permission check: the maker here
/// runs as nobody when the suite runs as root.)
fn pairs_are_made_under_any_umask() {
    use ipc_kit::Mechanism;
    let scratch = ScratchDir::new();
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(scratch.path(), Some(65534), Some(65534)).unwrap();
    }
    let tmp = scratch.path().to_owned();
    fork(move || {
        ipc_kit_tests::become_nobody();
        set_tmpdir(&tmp);
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o777));
        for m in [Mechanism::Fifo, Mechanism::PosixQueue] {
            let mut pair = m.pair().unwrap_or_else(|e| panic!("{} pair under umask 0777: {e}", m.name()));
            pair.sender.send(b"masked").unwrap();
            let mut buf = Vec::new();
            pair.receiver.recv(&mut buf).unwrap();
            assert_eq!(buf, b"masked", "{}", m.name());
        }
    })
    .join();
    let left: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "pairs left {left:?}");
}

/// Sets `TMPDIR` in a forked child, which runs one thread.
#[allow(unsafe_code)]
fn set_tmpdir(dir: &std::path::Path) {
    // SAFETY: called only in a forked child, where no other thread reads
    // or writes the environment.
    unsafe { std::env::set_var("TMPDIR", dir) };
}

/// A client that reads its replies, but never quite catches up: its queue
/// never empties, yet the server holds no more for it than the queued
/// bytes (at most `QUEUE_PER_CLIENT`), not every byte ever sent to it.
fn a_queue_read_slowly_never_holds_more_than_its_bound() {
    const REPLY: usize = 4 << 20;
    const REPLIES: usize = 64; // 256 MiB in all
    let (_dir, path, mut server) = service();
    let reader = forked_client(&path, |client| {
        client.send_request(b"stream").unwrap();
        // Reads the reply FIFO's bytes as they come, and never ends.
        let mut raw = std::fs::File::open(client.reply_path()).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let _ = std::io::Read::read(&mut raw, &mut buf).unwrap();
        }
    });
    let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
    for i in 0..REPLIES {
        server.reply(&req, &vec![b'x'; REPLY]).unwrap_or_else(|e| panic!("reply {i}: {e}"));
        // Another reply once the queue is down to 16 MiB: it never empties.
        while server.queued() > 16 << 20 {
            let _ = server.flush_timeout(Duration::from_millis(1));
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak_kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    drop(reader);
    let bound = FifoServer::QUEUE_PER_CLIENT + (64 << 20);
    assert!(
        peak_kib * 1024 < bound,
        "the server peaked at {peak_kib} KiB with at most 20 MiB queued (bound {} KiB), after {} MiB sent",
        bound / 1024,
        (REPLY * REPLIES) >> 20
    );
}

/// Clients that never read, each with a reply queued: every one holds a
/// writer open in the server. Past the server's limit of open files, the
/// server must still answer an honest client (cutting off stalled ones
/// as it must), not fail every reply for want of a file descriptor.
fn clients_that_never_read_do_not_take_every_file_descriptor() {
    const STALLED: usize = 48;
    let (dir, path, mut server) = service();
    let ready = dir.path().join("ready");
    let stalled = never_reading(&path, STALLED, &[b"a lot"]);
    wait_for_file(&ready);
    // Forked before the limit is lowered; it asks once `go` appears.
    let go = dir.path().join("go");
    let honest = forked_client(&path, |client| {
        wait_for_file(&go);
        assert_eq!(client.request_timeout(b"me too", Duration::from_secs(10)).unwrap(), b"answered");
    });
    // Made now; renamed to `go` later, which takes no file descriptor.
    let go_soon = dir.path().join("go.soon");
    std::fs::write(&go_soon, b"").unwrap();
    let open_now = std::fs::read_dir("/proc/self/fd").unwrap().count();
    limit_open_files(open_now as u64 + 32);
    let mut errors = Vec::new();
    for _ in 0..STALLED {
        let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
        // More than a reply FIFO holds: queued, its writer kept open.
        if let Err(e) = server.reply(&req, &vec![7u8; 256 << 10]) {
            errors.push(e.to_string());
        }
    }
    let reply = answer_one(server, b"answered".to_vec());
    std::fs::rename(&go_soon, &go).unwrap();
    let what = format!(
        "an honest client was not answered with {STALLED} stalled clients queued (stalled replies' errors: {errors:?})"
    );
    assert_answered(honest, &reply, stalled, &what);
}

/// Lowers this process's limit of open files (soft and hard).
#[allow(unsafe_code)]
fn limit_open_files(n: u64) {
    let lim = libc::rlimit { rlim_cur: n, rlim_max: n };
    // SAFETY: setrlimit reads one valid rlimit.
    let r = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(r, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// Many clients at once, each with several requests in flight and
/// replies larger than a reply FIFO holds: every client gets each reply
/// whole, and in the order of its requests.
fn queued_replies_reach_many_clients_whole_and_in_order() {
    const CLIENTS: u8 = 6;
    const EACH: u8 = 3;
    let reply_len = |client: u8, i: u8| (300 << 10) + usize::from(client) * 7 + usize::from(i);
    let (_dir, path, mut server) = service();
    let mut clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            forked_client(&path, |client| {
                for i in 0..EACH {
                    client.send_request(&[c, i]).unwrap();
                }
                for i in 0..EACH {
                    let got = client.recv_reply().unwrap();
                    assert!(
                        got.len() == reply_len(c, i) && got.iter().all(|&b| b == i),
                        "client {c}: reply {i} was {} bytes of {:?}",
                        got.len(),
                        got.first()
                    );
                }
            })
        })
        .collect();
    for _ in 0..usize::from(CLIENTS) * usize::from(EACH) {
        let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
        let (c, i) = (req.payload[0], req.payload[1]);
        server.reply(&req, &vec![i; reply_len(c, i)]).unwrap();
    }
    let flushed = server.flush_timeout(Duration::from_secs(20));
    for (c, client) in clients.iter_mut().enumerate() {
        assert_eq!(
            client.wait_timeout(Duration::from_secs(20)),
            Some(Exit::Code(0)),
            "client {c} (flush: {flushed:?})"
        );
    }
    assert_eq!(server.queued(), 0);
}

/// A server dropped with replies queued for clients that wait for them:
/// each client's wait ends (the server is gone), none hangs.
fn a_server_dropped_with_replies_queued_ends_every_wait() {
    const CLIENTS: usize = 4;
    let (_dir, path, mut server) = service();
    let mut clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            forked_client(&path, |client| match client.request(b"big") {
                Err(Error::ServerGone { .. }) => {}
                other => panic!("a request to a server dropped mid-reply gave {:?}", other.map(|r| r.len())),
            })
        })
        .collect();
    for _ in 0..CLIENTS {
        let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
        server.reply(&req, &vec![1u8; 8 << 20]).unwrap();
    }
    assert!(server.queued() > 0, "nothing was queued");
    drop(server);
    for (c, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.wait_timeout(Duration::from_secs(10)), Some(Exit::Code(0)), "client {c}");
    }
}

/// Clients that never read hold all they may (`QUEUE_TOTAL` between
/// them): a client that reads what it is sent still gets its reply,
/// larger than its reply FIFO holds, rather than being cut off for what
/// the others did not read.
fn clients_that_never_read_do_not_cut_off_a_client_that_reads() {
    const REPLY: usize = 16 << 20; // the largest
    let stalled_clients = FifoServer::QUEUE_TOTAL.div_ceil(FifoServer::QUEUE_PER_CLIENT);
    let (dir, path, mut server) = service();
    let ready = dir.path().join("ready");
    let stalled = never_reading(&path, stalled_clients, &[b"a lot", b"a lot"]);
    wait_for_file(&ready);
    let mut results = Vec::new();
    for _ in 0..2 * stalled_clients {
        let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
        results.push(format!("{:?}", server.reply(&req, &vec![7u8; REPLY]).err()));
    }
    let reply = answer_one(server, vec![b'h'; 1 << 20]);
    let honest = forked_client(&path, |client| {
        let got = client.request_timeout(b"me too", Duration::from_secs(10)).unwrap();
        assert!(got.len() == 1 << 20 && got.iter().all(|&b| b == b'h'), "a wrong reply");
    });
    let what = format!(
        "a reading client was not answered while {stalled_clients} clients held their queues full (theirs: {results:?})"
    );
    assert_answered(honest, &reply, stalled, &what);
}

/// This process's CPU time (user and system) so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the command's closing parenthesis: utime and stime
    // are the 12th and 13th of them, in clock ticks (100 a second here).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest.split(' ').skip(11).take(2).map(|v| v.parse().unwrap()).collect();
    Duration::from_millis((f[0] + f[1]) * 10)
}

/// A server with a reply queued for a client that does not read: its
/// waits (timed, zero, flush) end by their deadlines and spin no CPU;
/// once the client dies, a flush drops its queue, counts nothing queued
/// and removes its reply FIFO.
fn a_server_waiting_with_replies_queued_spins_no_cpu() {
    let (_dir, path, mut server) = service();
    let mut stalled = never_reading(&path, 1, &[b"a lot"]);
    let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
    server.reply(&req, &vec![3u8; 1 << 20]).unwrap();
    let queued = server.queued();
    assert!(queued > 0 && queued < 1 << 20, "{queued} bytes queued of a 1 MiB reply");
    let cpu = cpu_time();
    let began = Instant::now();
    assert!(matches!(server.recv_timeout(Duration::from_secs(2)), Err(Error::Timeout { .. })));
    assert!(matches!(server.flush_timeout(Duration::from_secs(1)), Err(Error::Timeout { .. })));
    assert!(matches!(server.recv_timeout(Duration::ZERO), Err(Error::Timeout { .. })));
    assert!(matches!(server.flush_timeout(Duration::ZERO), Err(Error::Timeout { .. })));
    let waited = began.elapsed();
    let spent = cpu_time().saturating_sub(cpu);
    assert!(waited < Duration::from_secs(8), "the waits took {waited:?}");
    assert!(spent < Duration::from_millis(1500), "{spent:?} of CPU in {waited:?} of waiting");
    assert_eq!(server.queued(), queued, "the queue changed while the client did not read");
    stalled.kill();
    let _ = stalled.wait_timeout(Duration::from_secs(10));
    server.flush_timeout(Duration::from_secs(5)).expect("a flush with only a dead client's queue");
    assert_eq!(server.queued(), 0);
    assert!(!req.reply_path().exists(), "the dead client's reply FIFO was left");
    match server.reply(&req, b"late") {
        Err(Error::ClientGone { .. }) => {}
        other => panic!("a reply to a dead client gave {other:?}"),
    }
}

/// A client that sends requests and does not read until its queue passes
/// `QUEUE_PER_CLIENT` is cut off: its wait for a reply ends in
/// `ClientStalled`, and once connected again it is served.
fn a_client_cut_off_learns_it_and_is_served_after_connecting_again() {
    const REPLY: usize = 16 << 20;
    let (dir, path, mut server) = service();
    let go = dir.path().join("go");
    let mut client = forked_client(&path, |client| {
        for _ in 0..3 {
            client.send_request(b"a lot").unwrap();
        }
        wait_for_file(&go);
        let mut got = Vec::new();
        let end = loop {
            match client.recv_reply() {
                Ok(r) => got.push(r.len()),
                Err(e) => break e,
            }
        };
        assert!(matches!(end, Error::ClientStalled { .. }), "after replies {got:?}, a cut-off client got {end:?}");
        let mut again = FifoClient::connect(&path).unwrap();
        assert_eq!(again.request_timeout(b"again", Duration::from_secs(10)).unwrap(), b"welcome back");
    });
    let mut results = Vec::new();
    for _ in 0..3 {
        let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
        results.push(server.reply(&req, &vec![5u8; REPLY]));
    }
    assert!(
        matches!(results.as_slice(), [Ok(()), Ok(()), Err(Error::ClientStalled { .. })]),
        "three replies of 16 MiB to a client that does not read gave {results:?}"
    );
    assert_eq!(server.queued(), 0, "a cut-off client's queue is still counted");
    std::fs::write(&go, b"").unwrap();
    let req = server.recv_timeout(Duration::from_secs(15)).unwrap();
    assert_eq!(req.payload, b"again");
    server.reply(&req, b"welcome back").unwrap();
    assert_eq!(client.wait_timeout(Duration::from_secs(15)), Some(Exit::Code(0)));
}

/// A file, then a symbolic link to another process's FIFO, put at the
/// path of a client with replies queued: the server writes into neither
/// (its queued writer keeps the old FIFO open; a new reply opens nothing
/// that is not a FIFO at the path itself).
fn a_queued_clients_path_taken_by_another_file_is_never_written() {
    let (dir, path, mut server) = service();
    let mut stalled = never_reading(&path, 1, &[b"one", b"two"]);
    let first = server.recv_timeout(Duration::from_secs(10)).unwrap();
    server.reply(&first, &vec![1u8; 1 << 20]).unwrap();
    let decoy = dir.path().join("decoy");
    std::fs::write(&decoy, b"decoy").unwrap();
    std::fs::rename(&decoy, first.reply_path()).unwrap();
    let second = server.recv_timeout(Duration::from_secs(10)).unwrap();
    let queued = server.reply(&second, &vec![2u8; 1 << 20]);
    let _ = server.flush_timeout(Duration::from_millis(200));
    stalled.kill();
    let _ = stalled.wait_timeout(Duration::from_secs(10));
    let _ = server.flush_timeout(Duration::from_secs(5));
    assert_eq!(server.queued(), 0, "a dead client's queue is still counted");
    let after = server.reply(&second, b"three");
    assert_eq!(
        std::fs::read(first.reply_path()).unwrap(),
        b"decoy",
        "the server wrote into a file put at a reply path (queued: {queued:?}, after: {after:?})"
    );
    // Now a symbolic link to a FIFO another process reads.
    let victim = Fifo::create(dir.path().join("victim"), 0o600).unwrap();
    let victim_reader = victim.try_open_reader().unwrap();
    std::fs::remove_file(first.reply_path()).unwrap();
    std::os::unix::fs::symlink(victim.path(), first.reply_path()).unwrap();
    let linked = server.reply(&second, b"four");
    assert!(linked.is_err(), "a reply through a symbolic link went through");
    let mut buf = [0u8; 16];
    assert!(
        matches!(victim_reader.try_read(&mut buf), Err(ipc_kit::pipe::Error::WouldBlock)),
        "the victim FIFO got bytes"
    );
    std::fs::remove_file(first.reply_path()).unwrap();
}

/// Like `a_forged_request_never_disconnects_an_idle_client`, with the
/// forged requests many: replies to them pile up in the idle client's
/// queue until it passes `QUEUE_PER_CLIENT`. As `FifoServer::reply`
/// documents (the server cannot tell a forged request from the client's
/// own, hence the advice to keep the directory unlistable), the client
/// is then cut off: it learns so (`ClientStalled`), connects again and is
/// served; it never takes a forged reply for its own.
fn forged_requests_in_numbers_cut_off_an_idle_client_that_connects_again() {
    const BULK: usize = 100_000;
    const FORGED: usize = 400; // 40 MB of replies: past QUEUE_PER_CLIENT
    let (dir, path, server) = service();
    let go = dir.path().join("go");
    let (mut victim, name) = victim(&path, &go, |client| {
        let reply = match client.request_timeout(b"v", Duration::from_secs(10)) {
            Ok(reply) => reply,
            Err(Error::ClientStalled { .. }) => {
                let mut again = FifoClient::connect(client.reply_path().parent().unwrap().join("service")).unwrap();
                again.request_timeout(b"v", Duration::from_secs(10)).unwrap()
            }
            Err(e) => panic!("{e}"),
        };
        assert!(reply.len() == BULK && reply.iter().all(|&b| b == b'v'), "a wrong reply");
    });
    let rx = answer_in_bulk(server, BULK);
    let forger = Fifo::open(&path).unwrap().try_open_writer().unwrap();
    let mut answers = Vec::new();
    for _ in 0..FORGED {
        forger.write_atomic(&forged_request(1, &name, b"a")).unwrap();
        answers.push(rx.recv_timeout(Duration::from_secs(10)).expect("a forged request was not answered"));
    }
    answers.dedup();
    std::fs::write(&go, b"").unwrap();
    assert_eq!(
        victim.wait_timeout(Duration::from_secs(15)),
        Some(Exit::Code(0)),
        "the victim was not served after {FORGED} forged requests naming its reply FIFO (their replies gave {answers:?})"
    );
}
