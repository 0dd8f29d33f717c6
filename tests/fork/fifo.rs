//! Named pipes between unrelated processes, real tools, and hostile paths.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipc_kit::fifo::{Error, Fifo, FifoClient, FifoServer};
use ipc_kit::pipe::{FrameReader, FrameWriter};
use ipc_kit_tests::{
    Exit, Refusal, SLACK, ScratchDir, assert_fired_within, cases, fork, helper_command, pattern,
    private_mount_namespace,
};

use crate::fifo_service::{forked_client, service, wait_for_file};

cases!("fifo", helpers ["fifo-write-frames" => write_frames_helper, "fifo-read-frames" => read_frames_helper]:
    exec_child_writes_by_path,
    exec_child_reads_by_path,
    shell_echo_and_cat_through_a_fifo,
    open_without_peer_waits_or_fails,
    planted_files_are_refused,
    permission_denied_for_nobody,
    stale_fifo_taken_over,
    owner_unlinks_only_its_own_fifo,
    server_answers_eight_clients,
    server_survives_a_client_killed_mid_request,
    client_notices_a_killed_server,
    server_drops_bad_requests,
    bogus_frame_lengths_from_an_unrelated_writer,
    reply_path_too_long_for_any_request,
    garbage_writers_beside_eight_honest_clients,
    clients_spell_the_server_path_differently,
    client_in_another_mount_namespace_is_answered,
    late_replies_are_dropped_and_unread_replies_wait_in_the_server,
    replacing_never_hijacks_a_live_or_starting_server,
    reply_fifo_of_a_killed_client_is_reclaimed,
    socket_swapped_in_is_not_a_fifo,
    leftovers_of_killed_starters_are_swept,
    a_frame_inside_a_request_is_payload,
    every_end_and_queue_fd_is_cloexec_and_blocking,
);

fn write_frames_helper(args: &[String]) {
    let fifo = Fifo::open(&args[0]).unwrap();
    let mut tx = FrameWriter::new(fifo.open_writer().unwrap());
    for i in 0..500u64 {
        tx.send(&pattern(i, (i * 97 % 20_000) as usize)).unwrap();
    }
}

fn exec_child_writes_by_path() {
    let dir = ScratchDir::new();
    let path = dir.path().join("fifo");
    let fifo = Fifo::create(&path, 0o600).unwrap();
    let mut child = helper_command("fifo-write-frames", &[path.to_str().unwrap()]).spawn().unwrap();
    let mut rx = FrameReader::new(fifo.open_reader().unwrap());
    let mut buf = Vec::new();
    for i in 0..500u64 {
        rx.recv(&mut buf).unwrap().unwrap();
        assert!(buf == pattern(i, (i * 97 % 20_000) as usize), "frame {i}");
    }
    assert_eq!(rx.recv(&mut buf).unwrap(), None, "end of file when the writer exits");
    assert!(child.wait().unwrap().success());
}

fn read_frames_helper(args: &[String]) {
    let fifo = Fifo::open(&args[0]).unwrap();
    let mut rx = FrameReader::new(fifo.open_reader_timeout(Duration::from_secs(10)).unwrap());
    let mut buf = Vec::new();
    for i in 0..300u64 {
        rx.recv(&mut buf).unwrap().unwrap();
        assert!(buf == pattern(i, 100 + i as usize));
    }
    assert_eq!(rx.recv(&mut buf).unwrap(), None);
}

fn exec_child_reads_by_path() {
    let dir = ScratchDir::new();
    let path = dir.path().join("fifo");
    let fifo = Fifo::create(&path, 0o600).unwrap();
    let mut child = helper_command("fifo-read-frames", &[path.to_str().unwrap()]).spawn().unwrap();
    let mut tx = FrameWriter::new(fifo.open_writer_timeout(Duration::from_secs(10)).unwrap());
    for i in 0..300u64 {
        tx.send(&pattern(i, 100 + i as usize)).unwrap();
    }
    drop(tx);
    assert!(child.wait().unwrap().success());
}

fn shell_echo_and_cat_through_a_fifo() {
    let dir = ScratchDir::new();
    let path = dir.path().join("fifo");
    let fifo = Fifo::create(&path, 0o600).unwrap();
    let p = path.to_str().unwrap();
    // sh writes, we read.
    let mut sh = Command::new("sh").args(["-c", &format!("echo from the shell > '{p}'")]).spawn().unwrap();
    let mut got = String::new();
    fifo.open_reader().unwrap().read_to_string(&mut got).unwrap();
    assert_eq!(got, "from the shell\n");
    assert!(sh.wait().unwrap().success());
    // We write, cat reads.
    let cat = Command::new("cat").arg(p).stdout(Stdio::piped()).spawn().unwrap();
    let mut w = fifo.open_writer_timeout(Duration::from_secs(10)).unwrap();
    w.write_all(b"to cat\n").unwrap();
    drop(w);
    let out = cat.wait_with_output().unwrap();
    assert_eq!(out.stdout, b"to cat\n");
}

fn open_without_peer_waits_or_fails() {
    let dir = ScratchDir::new();
    let fifo = Fifo::create(dir.path().join("fifo"), 0o600).unwrap();
    assert!(matches!(fifo.try_open_writer(), Err(Error::NoReader { .. })));
    for timeout in [Duration::ZERO, Duration::from_millis(120)] {
        let t = Instant::now();
        assert!(matches!(fifo.open_writer_timeout(timeout), Err(Error::Timeout { .. })));
        assert_fired_within(t.elapsed(), timeout, SLACK);
        let t = Instant::now();
        assert!(matches!(fifo.open_reader_timeout(timeout), Err(Error::Timeout { .. })));
        assert_fired_within(t.elapsed(), timeout, SLACK);
    }
    // A blocking reader's open waits for a writer in another process.
    let writer = fork(|| {
        std::thread::sleep(Duration::from_millis(80));
        let mut w = fifo.open_writer_timeout(Duration::from_secs(10)).unwrap();
        w.write_all(b"late").unwrap();
    });
    let t = Instant::now();
    let mut r = fifo.open_reader().unwrap();
    assert!(t.elapsed() >= Duration::from_millis(50), "the open waited for the writer");
    let mut got = Vec::new();
    r.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"late");
    writer.join();
}

fn planted_files_are_refused() {
    let dir = ScratchDir::new();
    let regular = dir.path().join("regular");
    std::fs::write(&regular, b"secret").unwrap();
    let link = dir.path().join("link");
    let real = Fifo::create(dir.path().join("real"), 0o600).unwrap();
    std::os::unix::fs::symlink(real.path(), &link).unwrap();
    let subdir = dir.path().join("subdir");
    std::fs::create_dir(&subdir).unwrap();
    assert!(matches!(Fifo::open(&regular), Err(Error::NotAFifo { found: "regular file", .. })));
    assert!(matches!(Fifo::open(&link), Err(Error::NotAFifo { found: "symbolic link", .. })));
    assert!(matches!(Fifo::open(&subdir), Err(Error::NotAFifo { found: "directory", .. })));
    assert!(matches!(Fifo::open(dir.path().join("missing/fifo")), Err(Error::NotFound { .. })));
    assert!(matches!(Fifo::create(dir.path().join("missing/fifo"), 0o600), Err(Error::NotFound { .. })));
    assert!(matches!(Fifo::create(&regular, 0o600), Err(Error::AlreadyExists { .. })));
    // A FIFO whose path is swapped for a symlink or a file after it was
    // found: the open itself refuses (O_NOFOLLOW, then fstat).
    let swapped = dir.path().join("swapped");
    let fifo = Fifo::create(&swapped, 0o600).unwrap();
    std::fs::remove_file(&swapped).unwrap();
    std::os::unix::fs::symlink(&regular, &swapped).unwrap();
    assert!(matches!(fifo.try_open_reader(), Err(Error::NotAFifo { found: "symbolic link", .. })));
    std::fs::remove_file(&swapped).unwrap();
    std::fs::write(&swapped, b"planted").unwrap();
    assert!(matches!(fifo.try_open_reader(), Err(Error::NotAFifo { found: "regular file", .. })));
    assert!(matches!(fifo.try_open_writer(), Err(Error::NotAFifo { found: "regular file", .. })));
    assert_eq!(std::fs::read(&swapped).unwrap(), b"planted", "nothing written to the planted file");
    drop(fifo);
    assert!(swapped.exists(), "the owner does not unlink a file that replaced its FIFO");
}

/// A caller the FIFO's mode refuses (see [`Refusal`]) gets
/// `PermissionDenied` for either end.
fn permission_denied_for_nobody() {
    let refusal = Refusal::here();
    let dir = ScratchDir::new();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let fifo = Fifo::create(dir.path().join("private"), 0o600).unwrap();
    refusal.apply_to_path(fifo.path());
    let mut child = fork(|| {
        refusal.become_caller();
        let f = Fifo::open(fifo.path()).unwrap();
        assert!(matches!(f.try_open_reader(), Err(Error::PermissionDenied { .. })));
        assert!(matches!(f.try_open_writer(), Err(Error::PermissionDenied { .. })));
    });
    assert_eq!(child.wait(), Exit::Code(0));
}

fn stale_fifo_taken_over() {
    let dir = ScratchDir::new();
    let path = dir.path().join("service");
    let mut dead = Fifo::create(&path, 0o600).unwrap();
    dead.persist(); // as if its owner died without cleaning up
    drop(dead);
    assert!(matches!(Fifo::create(&path, 0o600), Err(Error::AlreadyExists { .. })));
    let fresh = Fifo::create_replacing(&path, 0o600).unwrap();
    assert!(fresh.is_owner());
    let regular = dir.path().join("not-a-fifo");
    std::fs::write(&regular, b"keep me").unwrap();
    assert!(matches!(Fifo::create_replacing(&regular, 0o600), Err(Error::NotAFifo { .. })));
    assert_eq!(std::fs::read(&regular).unwrap(), b"keep me");
    let other = Fifo::open_or_create(&path, 0o600).unwrap();
    assert!(!other.is_owner());
    drop(fresh);
    assert!(!path.exists());
}

fn owner_unlinks_only_its_own_fifo() {
    let dir = ScratchDir::new();
    let path = dir.path().join("f");
    let fifo = Fifo::create(&path, 0o600).unwrap();
    let opener = Fifo::open(&path).unwrap();
    drop(opener);
    assert!(path.exists(), "an opener never unlinks");
    // The owner's FIFO is replaced by another process's FIFO of the same name.
    std::fs::remove_file(&path).unwrap();
    let theirs = Fifo::create(&path, 0o600).unwrap();
    drop(fifo);
    assert!(path.exists(), "the first owner does not remove the second one's FIFO");
    drop(theirs);
    assert!(!path.exists());
}

fn server_answers_eight_clients() {
    const CLIENTS: u64 = 8;
    const REQUESTS: u64 = 1000;
    let (dir, path, mut server) = service();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            forked_client(&path, |client| {
                for i in 0..REQUESTS {
                    let body = pattern(c << 32 | i, (i % 200) as usize);
                    let mut req = c.to_le_bytes().to_vec();
                    req.extend_from_slice(&body);
                    let reply = client.request_timeout(&req, Duration::from_secs(20)).unwrap();
                    // The server answers with the request reversed.
                    let mut expected = req.clone();
                    expected.reverse();
                    assert_eq!(reply, expected, "client {c} request {i}: a reply meant for someone else");
                }
            })
        })
        .collect();
    for _ in 0..CLIENTS * REQUESTS {
        let req = server.recv_timeout(Duration::from_secs(20)).unwrap();
        let mut reply = req.payload.clone();
        reply.reverse();
        server.reply(&req, &reply).unwrap();
    }
    clients.into_iter().for_each(|c| c.join());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("service")], "the clients removed their reply FIFOs");
}

fn server_survives_a_client_killed_mid_request() {
    let (_dir, path, mut server) = service();
    let doomed = forked_client(&path, |client| {
        client.send_request(b"never read the answer").unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut doomed = doomed;
    doomed.kill();
    doomed.wait();
    match server.reply(&req, b"too late") {
        Err(Error::ClientGone { pid, .. }) => assert_eq!(pid as i32, doomed.pid().as_raw()),
        other => panic!("expected ClientGone, got {other:?}"),
    }
    assert!(!req.reply_path().exists(), "the dead client's reply FIFO was removed");
    // And the server goes on.
    let fine = forked_client(&path, |client| {
        assert_eq!(client.request_timeout(b"ping", Duration::from_secs(10)).unwrap(), b"pong");
    });
    let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
    server.reply(&req, b"pong").unwrap();
    fine.join();
}

fn client_notices_a_killed_server() {
    let dir = ScratchDir::new();
    let path = dir.path().join("service");
    let mut server = fork(|| {
        let mut server = FifoServer::create(&path, 0o600).unwrap();
        let _ = server.recv(); // takes one request, never answers
        std::thread::sleep(Duration::from_secs(60));
    });
    let t = Instant::now();
    let mut client = loop {
        match FifoClient::connect(&path) {
            Ok(c) => break c,
            Err(_) if t.elapsed() < Duration::from_secs(10) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("{e}"),
        }
    };
    let killer = {
        let pid = server.pid();
        fork(move || {
            std::thread::sleep(Duration::from_millis(100));
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        })
    };
    let t = Instant::now();
    match client.request(b"hello?") {
        Err(Error::ServerGone { .. }) => {}
        other => panic!("expected ServerGone, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2), "noticed after {:?}", t.elapsed());
    killer.join();
    assert_eq!(server.wait(), Exit::Signaled(nix::sys::signal::Signal::SIGKILL));
    assert!(matches!(client.send_request(b"again"), Err(Error::ServerGone { .. })));
    assert!(matches!(FifoClient::connect(&path), Err(Error::ServerGone { .. })));
    let _ = std::fs::remove_file(&path); // what the dead server left
}

fn server_drops_bad_requests() {
    let (_dir, path, mut server) = service();
    let raw = Fifo::open(&path).unwrap().try_open_writer().unwrap();
    // Well-formed frames with bad requests in them: too short; a reply
    // path longer than the request; a reply path that is not the
    // server's (someone else's file). Each is a BadRequest.
    raw.write_atomic(&request_frame(b"abc")).unwrap();
    raw.write_atomic(&request_frame(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200, 0, b'x'])).unwrap();
    let mut evil = vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    evil.extend_from_slice(&(11u16).to_le_bytes());
    evil.extend_from_slice(b"/etc/passwd");
    raw.write_atomic(&request_frame(&evil)).unwrap();
    for _ in 0..3 {
        assert!(matches!(server.recv_timeout(Duration::from_secs(5)), Err(Error::BadRequest { .. })));
    }
    // Bytes that are no frame at all: skipped, nothing to receive.
    (&raw).write_all(&(1_000_000u32).to_le_bytes()).unwrap();
    assert!(matches!(server.recv_timeout(Duration::from_millis(100)), Err(Error::Timeout { .. })));
    let mut client_req = FifoClient::connect(&path).unwrap();
    assert!(matches!(client_req.send_request(&vec![0; 5000]), Err(Error::RequestTooLarge { .. })));
    assert!(client_req.max_request() < 4096);
    client_req.send_request(b"still served").unwrap();
    assert_eq!(server.recv_timeout(Duration::from_secs(5)).unwrap().payload, b"still served");
}

/// A request frame as FifoClient writes it: magic, body length, FNV-1a
/// (64) of the length and body, body.
fn request_frame(body: &[u8]) -> Vec<u8> {
    let len = (body.len() as u32).to_le_bytes();
    let sum = len
        .iter()
        .chain(body)
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut m = b"IKfq".to_vec();
    m.extend_from_slice(&len);
    m.extend_from_slice(&sum.to_le_bytes());
    m.extend_from_slice(body);
    m
}

/// A writer that opens the FIFO by path and sends a valid frame, then a
/// header claiming 4 GiB; another that stops in the middle of a frame. The
/// reader gets the valid frame, then typed errors, and allocates nothing
/// for the claimed size.
fn bogus_frame_lengths_from_an_unrelated_writer() {
    let dir = ScratchDir::new();
    let path = dir.path().join("frames");
    let fifo = Fifo::create(&path, 0o600).unwrap();
    let writer = fork(|| {
        let mut w = Fifo::open(&path).unwrap().open_writer_timeout(Duration::from_secs(5)).unwrap();
        FrameWriter::new(&mut w).send(b"valid").unwrap();
        w.write_all(&u32::MAX.to_le_bytes()).unwrap();
        w.write_all(&[7; 100]).unwrap();
    });
    let r = fifo.open_reader_timeout(Duration::from_secs(5)).unwrap();
    let mut frames = FrameReader::with_max(&r, 1 << 20);
    let mut buf = Vec::new();
    assert_eq!(frames.recv_timeout(&mut buf, Duration::from_secs(5)).unwrap(), Some(5));
    let before = buf.capacity();
    match frames.recv_timeout(&mut buf, Duration::from_secs(5)) {
        Err(ipc_kit::pipe::Error::FrameTooLarge { len, max }) => assert_eq!((len, max), (u64::from(u32::MAX), 1 << 20)),
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert_eq!(buf.capacity(), before, "nothing allocated for the bogus frame");
    writer.join();

    // A writer that dies inside a frame: the rest is TruncatedFrame. (A
    // FIFO of its own: the first one may still hold the bogus frame's
    // tail, which its reader left unread.)
    let path = dir.path().join("frames2");
    let fifo = Fifo::create(&path, 0o600).unwrap();
    let writer = fork(|| {
        let mut w = Fifo::open(&path).unwrap().open_writer_timeout(Duration::from_secs(5)).unwrap();
        w.write_all(&1000u32.to_le_bytes()).unwrap();
        w.write_all(&[1; 10]).unwrap();
    });
    let r = fifo.open_reader_timeout(Duration::from_secs(5)).unwrap();
    let mut frames = FrameReader::new(&r);
    match frames.recv_timeout(&mut buf, Duration::from_secs(5)) {
        Err(ipc_kit::pipe::Error::TruncatedFrame { expected: 1000, got: 10 }) => {}
        other => panic!("expected TruncatedFrame, got {other:?}"),
    }
    writer.join();
}

/// A server deep enough in the file system that a client's reply path
/// (near `PATH_MAX`) leaves no room for a request in one atomic write:
/// `connect` says so with a typed error; it neither panics nor reports a
/// huge `max_request`. A path one level up still connects, and its
/// `max_request` is what is left of `PIPE_BUF`.
fn reply_path_too_long_for_any_request() {
    let dir = ScratchDir::new();
    let mut deep = dir.path().to_path_buf();
    // The reply path is SERVER.reply.PID.N: aim it at 4091 bytes.
    let tail = format!(".reply.{}.0", std::process::id()).len() + 1; // + "s"
    while deep.as_os_str().len() + 1 + 200 + 1 + tail < 4091 {
        deep.push("d".repeat(200));
    }
    let last = 4091 - tail - 1 - 1 - deep.as_os_str().len();
    deep.push("e".repeat(last));
    std::fs::create_dir_all(&deep).unwrap();
    let path = deep.join("s");
    let _server = FifoServer::create(&path, 0o600).unwrap();
    match FifoClient::connect(&path) {
        Err(Error::InvalidPath { path: p, .. }) => assert!(p.as_os_str().len() > 4080, "{}", p.display()),
        other => panic!("expected InvalidPath, got {other:?}"),
    }
    let left: Vec<_> = std::fs::read_dir(&deep).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("s")], "no reply FIFO left behind");
    // Shallower: a client connects and may send what is left.
    let path = dir.path().join("s");
    let mut server = FifoServer::create(&path, 0o600).unwrap();
    let mut client = FifoClient::connect(&path).unwrap();
    let max = client.max_request();
    assert!(max > 3000 && max < 4096, "max_request {max}");
    assert!(matches!(client.send_request(&vec![1; max + 1]), Err(Error::RequestTooLarge { .. })));
    client.send_request(&vec![1; max]).unwrap();
    assert_eq!(server.recv_timeout(Duration::from_secs(5)).unwrap().payload.len(), max);
}

/// Writes garbage into the server's FIFO until killed: random bytes in
/// random amounts (some over PIPE_BUF, so not atomic), headers claiming
/// `u32::MAX` or more than PIPE_BUF, and frame starts that stop short.
fn garbage_writer(path: &std::path::Path, seed: u64, ready: &ipc_kit::pipe::PipeWriter) {
    let w = Fifo::open(path).unwrap().open_writer_timeout(Duration::from_secs(5)).unwrap();
    let mut rng = ipc_kit_tests::Rng::new(seed);
    for n in 0u64.. {
        if n == 20 {
            ready.write_atomic(b"g").unwrap(); // garbage is flowing
        }
        let size = rng.below(10_000) as usize;
        let short = rng.below(200) as usize;
        let junk = match rng.below(5) {
            0 => u32::MAX.to_le_bytes().to_vec(),
            1 => {
                let mut m = request_frame(&rng.bytes(short));
                m[4..8].copy_from_slice(&5000u32.to_le_bytes()); // over PIPE_BUF
                m
            }
            2 => {
                let m = request_frame(&rng.bytes(100));
                m[..short % m.len()].to_vec() // a frame cut short
            }
            3 => rng.bytes(size),
            _ => {
                let mut m = request_frame(&rng.bytes(50));
                m[20] ^= 1; // a bad check
                m
            }
        };
        let _ = (&w).write_all(&junk);
        std::thread::sleep(Duration::from_micros(rng.below(2000)));
    }
}

/// Four garbage writers (two of them killed mid-run, most likely inside a
/// write) beside eight honest clients: every honest request is answered,
/// with its own reply.
fn garbage_writers_beside_eight_honest_clients() {
    const CLIENTS: u64 = 8;
    const REQUESTS: u64 = 200;
    let (_dir, path, mut server) = service();
    let (ready_rx, ready_tx) = ipc_kit::pipe::pipe().unwrap();
    let mut garbage: Vec<_> = (0..4u64)
        .map(|g| {
            let path = path.clone();
            let ready_tx = &ready_tx;
            fork(move || garbage_writer(&path, 0x9e37 + g, ready_tx))
        })
        .collect();
    // Let the garbage flow (and keep reading it) before any client comes.
    let mut flowing = 0;
    let end = Instant::now() + Duration::from_secs(20);
    while flowing < 4 {
        assert!(Instant::now() < end, "{flowing} of 4 garbage writers started");
        match server.recv_timeout(Duration::from_millis(10)) {
            Err(Error::BadRequest { .. } | Error::Timeout { .. }) => {}
            other => panic!("garbage gave {other:?}"),
        }
        flowing += ready_rx.try_read(&mut [0; 4]).unwrap_or(0);
    }
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            forked_client(&path, |client| {
                for i in 0..REQUESTS {
                    let mut req = (c << 32 | i).to_le_bytes().to_vec();
                    req.extend_from_slice(&pattern(c << 32 | i, (i * 13 % 300) as usize));
                    let reply = client.request_timeout(&req, Duration::from_secs(20)).unwrap();
                    let mut expected = req.clone();
                    expected.reverse();
                    assert_eq!(reply, expected, "client {c} request {i}");
                }
            })
        })
        .collect();
    let end = Instant::now() + Duration::from_secs(60);
    let mut answered = 0;
    while answered < CLIENTS * REQUESTS {
        assert!(Instant::now() < end, "answered {answered} of {} honest requests", CLIENTS * REQUESTS);
        match server.recv_timeout(Duration::from_secs(1)) {
            Ok(req) => {
                let mut reply = req.payload.clone();
                reply.reverse();
                server.reply(&req, &reply).unwrap();
                answered += 1;
            }
            Err(Error::BadRequest { .. } | Error::Timeout { .. }) => {}
            Err(e) => panic!("{e}"),
        }
        if answered == CLIENTS * REQUESTS / 3 && garbage.len() == 4 {
            for mut g in garbage.drain(..2) {
                g.kill();
                assert_eq!(g.wait(), Exit::Signaled(nix::sys::signal::Signal::SIGKILL));
            }
        }
    }
    clients.into_iter().for_each(|c| c.join());
    for mut g in garbage {
        g.kill();
        g.wait();
    }
}

/// Clients that name the server by a relative path, through `..`, and
/// through a symbolically linked directory are all answered; a request
/// naming a reply FIFO in another directory is refused.
fn clients_spell_the_server_path_differently() {
    let dir = ScratchDir::new();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("sub"), dir.path().join("link")).unwrap();
    let path = dir.path().join("sub/service");
    let mut server = FifoServer::create(&path, 0o600).unwrap();
    let spellings = ["sub/service", "./sub/../sub/service", "link/service", "link/../sub/service"];
    let clients: Vec<_> = spellings
        .iter()
        .map(|spelling| {
            let base = dir.path().to_path_buf();
            fork(move || {
                std::env::set_current_dir(&base).unwrap();
                let mut client = FifoClient::connect(spelling).unwrap();
                assert_eq!(
                    client.request_timeout(spelling.as_bytes(), Duration::from_secs(10)).unwrap(),
                    b"ok",
                    "{spelling}"
                );
                let mut absolute = FifoClient::connect(base.join(spelling)).unwrap();
                assert_eq!(absolute.request_timeout(b"abs", Duration::from_secs(10)).unwrap(), b"ok", "{spelling}");
            })
        })
        .collect();
    for _ in 0..2 * spellings.len() {
        let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(req.reply_path().starts_with(std::fs::canonicalize(dir.path().join("sub")).unwrap()));
        server.reply(&req, b"ok").unwrap();
    }
    clients.into_iter().for_each(|c| c.join());
    // A reply path in another directory, named like the server's: the
    // server takes only the name and looks in its own directory, where
    // there is no such FIFO; the FIFO in the other directory, with a
    // reader waiting, gets nothing.
    let raw = Fifo::open(&path).unwrap().try_open_writer().unwrap();
    let other = dir.path().join("service.reply.1.0");
    let decoy = Fifo::create(&other, 0o600).unwrap();
    let decoy_reader = decoy.try_open_reader().unwrap();
    let mut body = vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&(other.as_os_str().len() as u16).to_le_bytes());
    body.extend_from_slice(other.as_os_str().as_encoded_bytes());
    raw.write_atomic(&request_frame(&body)).unwrap();
    let req = server.recv_timeout(Duration::from_secs(5)).unwrap();
    let own = std::fs::canonicalize(dir.path().join("sub")).unwrap().join("service.reply.1.0");
    assert_eq!(req.reply_path(), own);
    assert!(matches!(server.reply(&req, b"not for you"), Err(Error::ClientGone { .. })));
    assert!(matches!(decoy_reader.try_read(&mut [0; 64]), Err(ipc_kit::pipe::Error::WouldBlock)));
}

/// A client that sees the server's directory under another path, in
/// another mount namespace (a bind mount, as a container has), is
/// answered: the server finds the reply FIFO by its name in its own
/// directory.
fn client_in_another_mount_namespace_is_answered() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: a bind mount in a mount namespace of its own needs root");
        return;
    }
    let dir = ScratchDir::new();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    std::fs::create_dir(dir.path().join("alias")).unwrap();
    let path = dir.path().join("real/service");
    let mut server = FifoServer::create(&path, 0o600).unwrap();
    let alias = dir.path().join("alias");
    let real = dir.path().join("real");
    let mut client = fork(move || {
        assert!(private_mount_namespace("a bind mount in a mount namespace of its own"));
        nix::mount::mount(Some(&real), &alias, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
            .expect("bind mount");
        // Hide the real path, as a container would.
        nix::mount::mount(Some("tmpfs"), &real, Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>)
            .expect("mount over the real path");
        let mut client = FifoClient::connect(alias.join("service")).unwrap();
        assert!(client.reply_path().starts_with(&alias), "{}", client.reply_path().display());
        assert_eq!(client.request_timeout(b"from afar", Duration::from_secs(10)).unwrap(), b"welcome");
    });
    let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(req.payload, b"from afar");
    assert!(req.reply_path().starts_with(std::fs::canonicalize(dir.path().join("real")).unwrap()));
    server.reply(&req, b"welcome").unwrap();
    assert_eq!(client.wait(), Exit::Code(0));
}

/// `create_replacing` takes over only a FIFO no reader has open: a live
/// server (in another process) keeps its FIFO and its clients, a plain
/// FIFO with a reader is left alone, a stale one is replaced. And a
/// server starting at the same moment as a replacer is never taken for
/// stale: at most one of the two ends up serving.
fn replacing_never_hijacks_a_live_or_starting_server() {
    let (dir, path, mut live) = service();
    let rival = {
        let path = path.clone();
        fork(move || match FifoServer::create_replacing(&path, 0o600) {
            Err(Error::InUse { .. }) => {}
            other => panic!("a live server's FIFO was replaced: {other:?}"),
        })
    };
    rival.join();
    let client = forked_client(&path, |c| {
        assert_eq!(c.request_timeout(b"who?", Duration::from_secs(10)).unwrap(), b"the first");
    });
    let req = live.recv_timeout(Duration::from_secs(10)).unwrap();
    live.reply(&req, b"the first").unwrap();
    client.join();
    drop(live);
    // A plain FIFO: in use while a reader has it open, stale after.
    let plain = dir.path().join("plain");
    let mut f = Fifo::create(&plain, 0o600).unwrap();
    f.persist();
    let reader = f.try_open_reader().unwrap();
    assert!(matches!(Fifo::create_replacing(&plain, 0o600), Err(Error::InUse { .. })));
    drop(reader);
    assert!(Fifo::create_replacing(&plain, 0o600).unwrap().is_owner());

    // Starting and replacing at once, many times: never both.
    for round in 0..100 {
        let path = dir.path().join(format!("race{round}"));
        let (ready_rx, ready_tx) = ipc_kit::pipe::pipe().unwrap();
        let (go_rx, go_tx) = ipc_kit::pipe::pipe().unwrap();
        let contender = |replace: bool| {
            let path = path.clone();
            let (ready_tx, go_rx) = (&ready_tx, &go_rx);
            fork(move || {
                let got =
                    if replace { FifoServer::create_replacing(&path, 0o600) } else { FifoServer::create(&path, 0o600) };
                ready_tx.write_atomic(&[u8::from(got.is_ok())]).unwrap();
                let _ = go_rx.read_timeout(&mut [0], Duration::from_secs(20)); // hold the server
            })
        };
        let a = contender(false);
        let b = contender(true);
        let mut got = [0u8; 2];
        let mut n = 0;
        while n < 2 {
            n += ready_rx.read_timeout(&mut got[n..], Duration::from_secs(20)).unwrap();
        }
        assert!(got != [1, 1], "round {round}: a starting server was replaced");
        assert!(got != [0, 0], "round {round}: neither served");
        go_tx.write_atomic(&[1, 1]).unwrap();
        a.join();
        b.join();
    }
}

/// A client killed between requests leaves its reply FIFO; the next
/// client to connect removes it (no reader has it open), and a live idle
/// client's reply FIFO stays. A server starting over the leftovers of a
/// crashed one removes them too.
fn reply_fifo_of_a_killed_client_is_reclaimed() {
    let (dir, path, mut server) = service();
    let (ready_rx, ready_tx) = ipc_kit::pipe::pipe().unwrap();
    let spawn_client = |ready_tx: &ipc_kit::pipe::PipeWriter| {
        forked_client(&path, |c| {
            assert_eq!(c.request_timeout(b"hi", Duration::from_secs(10)).unwrap(), b"hi");
            ready_tx.write_atomic(b"r").unwrap();
            std::thread::sleep(Duration::from_secs(60)); // idle between requests
        })
    };
    let mut doomed = spawn_client(&ready_tx);
    let mut idle = spawn_client(&ready_tx);
    for _ in 0..2 {
        let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
        server.reply(&req, &req.payload).unwrap();
    }
    let mut got = 0;
    while got < 2 {
        got += ready_rx.read_timeout(&mut [0; 2], Duration::from_secs(10)).unwrap();
    }
    let reply_fifos = || -> Vec<String> {
        let mut v: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("service.reply."))
            .collect();
        v.sort();
        v
    };
    assert_eq!(reply_fifos().len(), 2);
    doomed.kill();
    doomed.wait();
    let doomed_fifo = format!("service.reply.{}.", doomed.pid());
    assert!(reply_fifos().iter().any(|n| n.starts_with(&doomed_fifo)), "the killed client left its FIFO");
    // The next client reclaims it; the idle client's stays.
    let next = FifoClient::connect(&path).unwrap();
    let left = reply_fifos();
    assert!(!left.iter().any(|n| n.starts_with(&doomed_fifo)), "a dead client's reply FIFO stayed: {left:?}");
    assert!(left.iter().any(|n| n.starts_with(&format!("service.reply.{}.", idle.pid()))), "{left:?}");
    assert_eq!(left.len(), 2, "{left:?}");
    drop(next);
    idle.kill();
    idle.wait();
    // A new server over a crashed one's leftovers removes them too.
    drop(server);
    assert_eq!(reply_fifos().len(), 1, "the idle client's FIFO, now a dead one's");
    let _server = FifoServer::create(&path, 0o600).unwrap();
    assert_eq!(reply_fifos(), Vec::<String>::new());
}

/// A Unix socket put at a FIFO's path after `Fifo::open` is NotAFifo on
/// every open (the kernel says ENXIO, as for a FIFO without a reader);
/// and a client connecting to it is refused the same way.
fn socket_swapped_in_is_not_a_fifo() {
    let dir = ScratchDir::new();
    let path = dir.path().join("f");
    let mut made = Fifo::create(&path, 0o600).unwrap();
    let f = Fifo::open(&path).unwrap();
    made.unlink().unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let not_a_fifo = |r: Result<(), Error>| match r {
        Err(Error::NotAFifo { found: "socket", .. }) => {}
        other => panic!("expected NotAFifo (socket), got {other:?}"),
    };
    not_a_fifo(f.try_open_writer().map(drop));
    not_a_fifo(f.open_writer_timeout(Duration::from_millis(50)).map(drop));
    not_a_fifo(f.try_open_reader().map(drop));
    not_a_fifo(FifoClient::connect(&path).map(drop));
}

/// FIFOs that servers and clients killed while starting left under their
/// temporary names, and dead clients' reply FIFOs, are removed when a
/// server starts; one a reader still has open, and names not of this
/// server's making, stay.
fn leftovers_of_killed_starters_are_swept() {
    let dir = ScratchDir::new();
    let stale = ["service.new.999999.0", "service.reply.999999.0.new.999999.1", "service.reply.12.3"];
    let foreign = ["service.reply.x", "other.new.1.2", "service.new.1.2.3"];
    for name in stale.iter().chain(&foreign) {
        Fifo::create(dir.path().join(name), 0o600).unwrap().persist();
    }
    let mut held = Fifo::create(dir.path().join("service.new.5.5"), 0o600).unwrap();
    held.persist();
    let reader = held.try_open_reader().unwrap(); // a server still starting
    let _server = FifoServer::create(dir.path().join("service"), 0o600).unwrap();
    for name in stale {
        assert!(!dir.path().join(name).exists(), "{name} stayed");
    }
    for name in foreign.iter().chain(&["service.new.5.5"]) {
        assert!(dir.path().join(name).exists(), "{name} was removed");
    }
    drop(reader);
    for name in foreign.iter().chain(&["service.new.5.5"]) {
        std::fs::remove_file(dir.path().join(name)).unwrap();
    }
}

/// A request whose payload carries a well-checked request frame of its
/// own (a client relaying bytes), behind another request, so that the
/// server's first read (`PIPE_BUF` bytes) ends inside it: the server gives
/// the whole request, never the frame inside it, and each client gets its
/// own reply.
fn a_frame_inside_a_request_is_payload() {
    let (_dir, path, mut server) = service();
    let (sent_rx, sent_tx) = ipc_kit::pipe::pipe().unwrap();
    let clients = forked_client(&path, |first| {
        let mut relay = FifoClient::connect(&path).unwrap();
        // A frame naming the first client's reply FIFO.
        let reply = first.reply_path().as_os_str().as_encoded_bytes();
        let mut body = std::process::id().to_le_bytes().to_vec();
        body.extend_from_slice(&[0; 8]); // a ticket
        body.extend_from_slice(&(reply.len() as u16).to_le_bytes());
        body.extend_from_slice(reply);
        body.extend_from_slice(b"smuggled");
        let mut relayed = vec![b'r'; 64];
        relayed.extend_from_slice(&request_frame(&body));
        relayed.resize(relay.max_request(), b'r');
        first.send_request(&[b'f'; 3000]).unwrap();
        relay.send_request(&relayed).unwrap();
        sent_tx.write_atomic(b"sent").unwrap();
        assert_eq!(first.recv_reply().unwrap(), b"to the first");
        assert_eq!(relay.recv_reply().unwrap(), b"to the relay");
    });
    // Both requests wait in the FIFO before the server reads.
    assert_eq!(sent_rx.read_timeout(&mut [0; 4], Duration::from_secs(10)).unwrap(), 4);
    let first = server.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(first.payload, [b'f'; 3000]);
    server.reply(&first, b"to the first").unwrap();
    let relayed = server.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        relayed.payload.len() > 3000 && relayed.payload.starts_with(&[b'r'; 64]),
        "the relayed request, whole: got {} bytes for {}",
        relayed.payload.len(),
        relayed.reply_path().display()
    );
    assert_ne!(relayed.reply_path(), first.reply_path());
    server.reply(&relayed, b"to the relay").unwrap();
    assert!(matches!(server.recv_timeout(Duration::from_millis(100)), Err(Error::Timeout { .. })));
    clients.join();
}

/// Replies carry the ticket of their request. A request given up by
/// `request_timeout` gets its reply late: it is dropped, and the next
/// request gets its own. A reply that does not fit in a client's reply
/// FIFO never holds the server: `reply` returns at once, the rest is
/// queued and reaches the client, whole and in order, while the server
/// waits for requests. A client that never reads is cut off once more than
/// `QUEUE_PER_CLIENT` bytes would wait for it: its reply FIFO goes, and the
/// client learns it (`ClientStalled`) and connects again.
fn late_replies_are_dropped_and_unread_replies_wait_in_the_server() {
    let (dir, path, mut server) = service();
    let big = pattern(7, 1 << 20);
    let huge = vec![9u8; 16 << 20];
    let go = dir.path().join("go");
    let mut client = forked_client(&path, |c| {
        // Given up: its reply comes after the timeout.
        assert!(matches!(c.request_timeout(b"slow", Duration::from_millis(100)), Err(Error::Timeout { .. })));
        std::fs::write(&go, b"").unwrap();
        assert_eq!(c.request_timeout(b"next", Duration::from_secs(10)).unwrap(), b"reply to next");
        // Three requests whose replies (1 MiB each) wait in the server
        // while this client does not read.
        for _ in 0..3 {
            c.send_request(b"big").unwrap();
        }
        wait_for_file(&go.with_extension("2"));
        for i in 0..3 {
            assert!(c.recv_reply().unwrap() == big, "big reply {i}");
        }
        // Never reading again: cut off once too much waits for it.
        c.send_request(b"huge").unwrap();
        wait_for_file(&go.with_extension("3"));
        match c.recv_reply() {
            Err(Error::ClientStalled { .. }) => {}
            other => panic!("expected ClientStalled, got {:?}", other.map(|r| r.len())),
        }
        let mut again = FifoClient::connect(&path).unwrap();
        assert_eq!(again.request_timeout(b"back", Duration::from_secs(10)).unwrap(), b"welcome back");
    });
    let slow = server.recv_timeout(Duration::from_secs(10)).unwrap();
    wait_for_file(&go);
    server.reply(&slow, b"reply to slow").unwrap(); // late: dropped by the client
    let next = server.recv_timeout(Duration::from_secs(10)).unwrap();
    server.reply(&next, b"reply to next").unwrap();
    let t = Instant::now();
    for _ in 0..3 {
        let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
        server.reply(&req, &big).unwrap();
    }
    assert!(t.elapsed() < Duration::from_secs(5), "replies that do not fit wait in the server, not the server");
    assert!(server.queued() > 2 << 20, "queued: {}", server.queued());
    // Another client is served meanwhile.
    let other = forked_client(&path, |c| {
        assert_eq!(c.request_timeout(b"me", Duration::from_secs(10)).unwrap(), b"you");
    });
    let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(req.payload, b"me");
    server.reply(&req, b"you").unwrap();
    other.join();
    // The first client reads now: the server writes as it waits.
    std::fs::write(go.with_extension("2"), b"").unwrap();
    server.flush_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(server.queued(), 0);
    let req = server.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(req.payload, b"huge");
    let mut cut = false;
    for _ in 0..3 {
        match server.reply(&req, &huge) {
            Ok(()) => {}
            Err(Error::ClientStalled { .. }) => {
                cut = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(cut, "more than QUEUE_PER_CLIENT ({}) bytes waited for one client", FifoServer::QUEUE_PER_CLIENT);
    assert!(!req.reply_path().exists(), "the cut-off client's reply FIFO was removed");
    assert_eq!(server.queued(), 0, "nothing kept for a client cut off");
    std::fs::write(go.with_extension("3"), b"").unwrap();
    let back = server.recv_timeout(Duration::from_secs(10)).unwrap();
    server.reply(&back, b"welcome back").unwrap();
    server.flush_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(client.wait(), Exit::Code(0));
}

/// Every fd a FIFO end, an anonymous pipe or a POSIX queue holds is
/// close-on-exec (an exec'd program gets none of them unasked), and in
/// blocking mode: the ends opened without waiting drop the `O_NONBLOCK`
/// they were opened with.
fn every_end_and_queue_fd_is_cloexec_and_blocking() {
    use std::os::fd::{AsFd, AsRawFd};

    use ipc_kit::msgq::{PosixQueue, QueueAttr};
    use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};

    fn check(what: &str, fd: &impl AsFd) {
        let fd = fd.as_fd();
        let cloexec = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD).unwrap());
        assert!(cloexec.contains(FdFlag::FD_CLOEXEC), "{what} (fd {}) is inherited across exec", fd.as_raw_fd());
        let status = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).unwrap());
        assert!(!status.contains(OFlag::O_NONBLOCK), "{what} (fd {}) is nonblocking", fd.as_raw_fd());
    }

    let (r, w) = ipc_kit::pipe::pipe().unwrap();
    check("a pipe's reader", &r);
    check("a pipe's writer", &w);

    let dir = ScratchDir::new();
    let fifo = Fifo::create(dir.path().join("f"), 0o600).unwrap();
    let early = fifo.try_open_reader().unwrap();
    check("try_open_reader", &early);
    check("try_open_writer", &fifo.try_open_writer().unwrap());
    check("open_writer", &fifo.open_writer().unwrap());
    let writer = fifo.open_writer_timeout(Duration::from_secs(5)).unwrap();
    check("open_writer_timeout", &writer);
    check("open_reader", &fifo.open_reader().unwrap());
    (&writer).write_all(b"x").unwrap(); // what open_reader_timeout waits for
    check("open_reader_timeout", &fifo.open_reader_timeout(Duration::from_secs(5)).unwrap());
    drop((early, writer));

    let name = format!("/{}", ipc_kit_tests::unique_name("ipc-kit-test-cloexec"));
    let made = PosixQueue::create(&name, QueueAttr { max_messages: 2, message_size: 16 }, 0o600).unwrap();
    check("PosixQueue::create", &made);
    check("PosixQueue::open", &PosixQueue::open(&name).unwrap());
}
