//! Unix sockets across processes: credentials, descriptors passed (also to
//! an exec'd program), truncation, names taken over or refused, the socket
//! file's mode, peers that die, and the three forms of each wait.

use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::{Duration, Instant};

use ipc_kit::socket::{
    BindOptions, DatagramSocket, Error, MAX_FDS, MAX_PATH, SeqpacketListener, SeqpacketSocket, SocketName,
    StreamListener, StreamSocket,
};
use ipc_kit_tests::{
    Exit, Refusal, ScratchDir, assert_fired_within, cases, checksum, fork, fork_in_new_pid_namespace, helper_command,
    pattern, set_sigpipe_default, unique_name,
};

cases!("socket", helpers ["socket-recv-fds" => recv_fds_helper]:
    credentials_on_both_ends_across_fork,
    a_peer_in_another_pid_namespace_has_its_pid_there,
    a_memfd_and_a_pipe_end_reach_an_exec_child,
    more_fds_than_asked_for_are_all_closed,
    fds_at_the_limit_and_over_it,
    a_message_longer_than_the_buffer_is_cut_and_said_so,
    a_stale_socket_file_is_taken_over_and_a_live_one_never,
    something_else_at_the_path_is_left_alone,
    the_socket_files_mode_keeps_others_out,
    abstract_names_need_no_file,
    paths_at_the_limit_and_over_it,
    the_three_forms_wait_as_told,
    a_full_backlog_makes_connect_wait,
    a_dead_peer_is_disconnected_never_a_signal,
    seqpacket_carries_checksummed_messages_in_order,
    datagrams_name_their_sender,
    a_listener_removes_its_own_file_only,
    leftovers_of_binders_that_died_are_swept,
    descriptors_handed_over_are_checked_for_their_kind,
);

fn name_in(dir: &ScratchDir, file: &str) -> SocketName {
    SocketName::path(dir.path().join(file)).unwrap()
}

/// How many descriptors this process has open.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

// `StreamSocket::peer_credentials` docs: "the peer's process, user and
// group", on both ends, for stream and seqpacket sockets.
fn credentials_on_both_ends_across_fork() {
    let dir = ScratchDir::new();
    let (stream_name, seq_name) = (name_in(&dir, "s"), name_in(&dir, "q"));
    let stream = StreamListener::bind(&stream_name).unwrap();
    let seq = SeqpacketListener::bind(&seq_name).unwrap();
    let parent = std::process::id();
    let mut child = fork(|| {
        let me = (std::process::id(), nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
        for c in [
            StreamSocket::connect(&stream_name).unwrap().peer_credentials().unwrap(),
            SeqpacketSocket::connect(&seq_name).unwrap().peer_credentials().unwrap(),
        ] {
            assert_eq!((c.pid, c.uid, c.gid), (parent, me.1, me.2));
        }
        let _ = me;
        std::thread::sleep(Duration::from_millis(200));
    });
    let pid = child.pid().as_raw() as u32;
    let a = stream.accept_timeout(Duration::from_secs(10)).unwrap().peer_credentials().unwrap();
    let b = seq.accept_timeout(Duration::from_secs(10)).unwrap().peer_credentials().unwrap();
    let uid = nix::unistd::getuid().as_raw();
    assert_eq!((a.pid, a.uid), (pid, uid));
    assert_eq!((b.pid, b.uid), (pid, uid));
    assert_eq!(child.wait(), Exit::Code(0));
}

// `Credentials` docs: "A process in another PID namespace that this one
// cannot see has pid 0", and one this process can see has the pid it has
// here, not its own namespace's.
fn a_peer_in_another_pid_namespace_has_its_pid_there() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "s");
    let listener = StreamListener::bind(&name).unwrap();
    let Some((mut between, outer_pid)) = fork_in_new_pid_namespace(|| {
        let s = StreamSocket::connect(&name).unwrap();
        // Inside, this process is pid 1; the listener's process is not
        // in this namespace at all.
        assert_eq!(std::process::id(), 1);
        assert_eq!(s.peer_credentials().unwrap().pid, 0);
        let mut b = [0u8; 1];
        let _ = (&s).read(&mut b);
    }) else {
        eprintln!("no PID namespace can be made here (needs root): passed over");
        return;
    };
    let s = listener.accept_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(s.peer_credentials().unwrap().pid, outer_pid.as_raw() as u32);
    drop(s);
    assert_eq!(between.wait(), Exit::Code(0));
}

/// Exec'd: connects to the seqpacket listener at `args[0]`, takes a
/// message with a memfd and a pipe's write end, and writes "got " and the
/// memfd's bytes into the pipe.
fn recv_fds_helper(args: &[String]) {
    let s = SeqpacketSocket::connect(&args[0].parse().unwrap()).unwrap();
    let mut buf = [0u8; 64];
    let (n, fds) = s.recv_with_fds_timeout(&mut buf, 4, Duration::from_secs(10)).unwrap();
    assert_eq!(&buf[..n], b"two fds");
    let [memfd, pipe_end]: [OwnedFd; 2] = fds.try_into().unwrap();
    // Close-on-exec, as received.
    for fd in [&memfd, &pipe_end] {
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert!(nix::fcntl::FdFlag::from_bits_retain(flags).contains(nix::fcntl::FdFlag::FD_CLOEXEC));
    }
    let mut file = std::fs::File::from(memfd);
    file.rewind().unwrap();
    let mut content = String::new();
    file.read_to_string(&mut content).unwrap();
    // The memfd is 64 bytes; what was written is followed by zeros.
    let content = content.trim_end_matches('\0');
    std::fs::File::from(pipe_end).write_all(format!("got {content}").as_bytes()).unwrap();
}

// The issue's case: a memfd and a pipe end sent through a socket to an
// exec'd program, which uses both.
fn a_memfd_and_a_pipe_end_reach_an_exec_child() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "fds");
    let listener = SeqpacketListener::bind(&name).unwrap();
    let memfd = ipc_kit::shm::Memfd::create("ipc-kit-socket-test", 64).unwrap();
    let mut file = std::fs::File::from(memfd.as_fd().try_clone_to_owned().unwrap());
    file.write_all(b"from the memfd").unwrap();
    let (mut r, w) = ipc_kit::pipe::pipe().unwrap();
    let mut child = helper_command("socket-recv-fds", &[&name.to_string()]).spawn().unwrap();
    let s = listener.accept_timeout(Duration::from_secs(10)).unwrap();
    s.send_with_fds(b"two fds", &[memfd.as_fd(), w.as_fd()]).unwrap();
    drop(w);
    let mut got = String::new();
    r.read_to_string(&mut got).unwrap();
    assert_eq!(got, "got from the memfd");
    assert!(child.wait().unwrap().success());
}

// `recv_with_fds` docs: more than `max_fds` is `FdsTruncated`, "every one
// of them was closed", and the bytes were read; nothing leaks, on every
// kind of socket, and with `max_fds` 0 (a plain receive) too.
fn more_fds_than_asked_for_are_all_closed() {
    let (r, _w) = ipc_kit::pipe::pipe().unwrap();
    let five: Vec<_> = (0..5).map(|_| r.as_fd()).collect();
    let before = open_fds();
    // Stream.
    let (a, b) = StreamSocket::pair().unwrap();
    a.send_with_fds(b"abc", &five).unwrap();
    let mut buf = [0u8; 8];
    assert!(matches!(b.recv_with_fds(&mut buf, 2), Err(Error::FdsTruncated { max: 2, len: 3 })));
    a.send_with_fds(b"x", &five).unwrap();
    assert_eq!(b.recv(&mut buf).unwrap(), 1, "a plain receive drops them");
    // Seqpacket.
    let (c, d) = SeqpacketSocket::pair().unwrap();
    c.send_with_fds(b"msg", &five).unwrap();
    assert!(matches!(d.recv_with_fds(&mut buf, 4), Err(Error::FdsTruncated { max: 4, len: 3 })));
    c.send_with_fds(b"msg", &five).unwrap();
    assert_eq!(d.recv(&mut buf).unwrap(), 3);
    // Datagram.
    let (e, f) = DatagramSocket::pair().unwrap();
    e.send_with_fds(b"dg", &five).unwrap();
    assert!(matches!(f.recv_from_with_fds(&mut buf, 1), Err(Error::FdsTruncated { max: 1, len: 2 })));
    drop((a, b, c, d, e, f));
    assert_eq!(open_fds(), before, "descriptors left open");
    // Across processes, too: the sender forks and goes.
    let (c, d) = SeqpacketSocket::pair().unwrap();
    let child = fork(|| c.send_with_fds(b"from a child", &five).unwrap());
    child.join();
    let before = open_fds();
    let mut big = [0u8; 32];
    assert!(matches!(d.recv_with_fds(&mut big, 3), Err(Error::FdsTruncated { max: 3, len: 12 })));
    assert_eq!(open_fds(), before);
}

// `MAX_FDS` (253, the kernel's `SCM_MAX_FD`) go in one message; one more
// is `TooManyFds` before anything is sent.
fn fds_at_the_limit_and_over_it() {
    let (r, _w) = ipc_kit::pipe::pipe().unwrap();
    let (a, b) = SeqpacketSocket::pair().unwrap();
    let at: Vec<_> = (0..MAX_FDS).map(|_| r.as_fd()).collect();
    a.send_with_fds(b"many", &at).unwrap();
    let mut buf = [0u8; 8];
    let (n, fds) = b.recv_with_fds(&mut buf, MAX_FDS).unwrap();
    assert_eq!((n, fds.len()), (4, MAX_FDS));
    drop(fds);
    let over: Vec<_> = (0..=MAX_FDS).map(|_| r.as_fd()).collect();
    assert!(
        matches!(a.send_with_fds(b"x", &over), Err(Error::TooManyFds { count, max: MAX_FDS }) if count == MAX_FDS + 1)
    );
    assert!(matches!(b.try_recv(&mut buf), Err(Error::WouldBlock)), "nothing was sent");
    // Descriptors need a byte to travel with on a stream.
    let (s, _t) = StreamSocket::pair().unwrap();
    assert!(matches!(s.send_with_fds(b"", &[r.as_fd()]), Err(Error::FdsWithoutData)));
}

// `SeqpacketSocket::recv` and `DatagramSocket::recv_from` docs: a message
// longer than the buffer is `Truncated` with its length; the next one
// arrives whole.
fn a_message_longer_than_the_buffer_is_cut_and_said_so() {
    let (a, b) = SeqpacketSocket::pair().unwrap();
    a.send(&pattern(1, 100)).unwrap();
    a.send(&pattern(2, 10)).unwrap();
    let mut small = [0u8; 40];
    assert!(matches!(b.recv(&mut small), Err(Error::Truncated { len: 100, capacity: 40 })));
    assert_eq!(small[..], pattern(1, 100)[..40]);
    assert_eq!(b.recv(&mut small).unwrap(), 10);
    assert_eq!(small[..10], pattern(2, 10)[..]);
    let (c, d) = DatagramSocket::pair().unwrap();
    c.send(&pattern(3, 64)).unwrap();
    assert!(matches!(d.recv_from(&mut small), Err(Error::Truncated { len: 64, capacity: 40 })));
    // Zero bytes of room: the length is still told.
    c.send(b"abc").unwrap();
    assert!(matches!(d.recv_from(&mut []), Err(Error::Truncated { len: 3, capacity: 0 })));
}

// `BindOptions::take_over_stale` docs: a stale socket file is removed
// first; "A live one is never touched: `InUse`".
fn a_stale_socket_file_is_taken_over_and_a_live_one_never() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let path = dir.path().join("svc");
    for kind in ["stream", "datagram"] {
        // A binder that dies without cleaning up leaves its file.
        let mut dead = fork(|| {
            let _bound: Box<dyn std::any::Any> = if kind == "stream" {
                Box::new(StreamListener::bind(&name).unwrap())
            } else {
                Box::new(DatagramSocket::bind(&name).unwrap())
            };
            std::thread::sleep(Duration::from_secs(30));
        });
        while !path.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
        dead.kill();
        let _ = dead.wait();
        assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_socket(), "the stale file is there");
        let refuse = BindOptions { take_over_stale: false, ..BindOptions::default() };
        if kind == "stream" {
            assert!(matches!(StreamListener::bind_with(&name, &refuse), Err(Error::InUse { .. })));
            assert!(matches!(StreamSocket::connect(&name), Err(Error::Refused { .. })));
            let l = StreamListener::bind(&name).unwrap();
            let c = StreamSocket::connect(&name).unwrap();
            let s = l.accept_timeout(Duration::from_secs(5)).unwrap();
            (&c).write_all(b"hi").unwrap();
            let mut b = [0u8; 2];
            (&s).read_exact(&mut b).unwrap();
            drop(l);
        } else {
            assert!(matches!(DatagramSocket::bind_with(&name, &refuse), Err(Error::InUse { .. })));
            let d = DatagramSocket::bind(&name).unwrap();
            DatagramSocket::unbound().unwrap().send_to(b"hi", &name).unwrap();
            let mut b = [0u8; 2];
            assert_eq!(d.recv_from_timeout(&mut b, Duration::from_secs(5)).unwrap().0, 2);
        }
        assert!(!path.exists(), "{kind}: the taker's file went with it");
    }
    // A live listener in another process: refused, and its file still
    // reaches it.
    let (ready_r, ready_w) = ipc_kit::pipe::pipe().unwrap();
    let mut live = fork(|| {
        let l = StreamListener::bind(&name).unwrap();
        (&ready_w).write_all(b"r").unwrap();
        loop {
            let s = l.accept().unwrap();
            let _ = (&s).write_all(b"live");
        }
    });
    drop(ready_w);
    let mut r = [0u8; 1];
    (&ready_r).read_exact(&mut r).unwrap();
    assert!(matches!(StreamListener::bind(&name), Err(Error::InUse { .. })));
    assert!(matches!(SeqpacketListener::bind(&name), Err(Error::InUse { .. })), "another type is live too");
    let mut got = [0u8; 4];
    (&StreamSocket::connect(&name).unwrap()).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"live");
    live.kill();
    let _ = live.wait();
    let _ = std::fs::remove_file(&path);
}

// `Error::NotASocket` docs: "Something other than a socket is at the
// path; it was not touched" — a file, a directory, a symbolic link (also
// one to a stale socket).
fn something_else_at_the_path_is_left_alone() {
    let dir = ScratchDir::new();
    let path = dir.path().join("x");
    let name = SocketName::path(&path).unwrap();
    std::fs::write(&path, b"keep me").unwrap();
    assert!(matches!(StreamListener::bind(&name), Err(Error::NotASocket { found: "regular file", .. })));
    assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    assert!(matches!(DatagramSocket::bind(&name), Err(Error::NotASocket { found: "directory", .. })));
    std::fs::remove_dir(&path).unwrap();
    // A symbolic link to a stale socket file.
    let target = name_in(&dir, "stale");
    let mut l = StreamListener::bind(&target).unwrap();
    l.persist();
    drop(l);
    std::os::unix::fs::symlink(dir.path().join("stale"), &path).unwrap();
    assert!(matches!(StreamListener::bind(&name), Err(Error::NotASocket { found: "symbolic link", .. })));
    assert!(std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
    assert!(dir.path().join("stale").exists(), "the link's target was not touched");
}

// `BindOptions::mode` docs: the socket file's write permission decides who
// may connect or send; no one finds the socket with another mode.
fn the_socket_files_mode_keeps_others_out() {
    let dir = ScratchDir::new();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let refusal = Refusal::here();
    let (stream_name, dgram_name) = (name_in(&dir, "s"), name_in(&dir, "d"));
    let stream = StreamListener::bind(&stream_name).unwrap();
    let dgram = DatagramSocket::bind(&dgram_name).unwrap();
    for f in ["s", "d"] {
        let mode = std::fs::symlink_metadata(dir.path().join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}: the default mode, whatever the umask");
        refusal.apply_to_path(&dir.path().join(f));
    }
    let mut child = fork(|| {
        refusal.become_caller();
        assert!(matches!(StreamSocket::connect(&stream_name), Err(Error::PermissionDenied { .. })));
        let sender = DatagramSocket::unbound().unwrap();
        assert!(matches!(sender.send_to(b"x", &dgram_name), Err(Error::PermissionDenied { .. })));
    });
    assert_eq!(child.wait(), Exit::Code(0));
    assert!(matches!(stream.try_accept(), Err(Error::WouldBlock)));
    let mut b = [0u8; 1];
    assert!(matches!(dgram.try_recv_from(&mut b), Err(Error::WouldBlock)));
    drop((stream, dgram));
    if let Refusal::OtherUser = refusal {
        // Mode 0666 lets the other user in.
        let open = BindOptions { mode: 0o666, ..BindOptions::default() };
        let name = name_in(&dir, "open");
        let l = StreamListener::bind_with(&name, &open).unwrap();
        let mut child = fork(|| {
            ipc_kit_tests::become_nobody();
            let s = StreamSocket::connect(&name).unwrap();
            assert_eq!(s.peer_credentials().unwrap().uid, 0);
        });
        let s = l.accept_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(s.peer_credentials().unwrap().uid, 65534);
        assert_eq!(child.wait(), Exit::Code(0));
    }
}

// `SocketName::Abstract` docs: no file; the name is free again when the
// last socket bound to it closes; a second bind is `InUse`.
fn abstract_names_need_no_file() {
    let name: SocketName = format!("@{}", unique_name("ipc-kit-abstract")).parse().unwrap();
    let l = SeqpacketListener::bind(&name).unwrap();
    assert!(matches!(SeqpacketListener::bind(&name), Err(Error::InUse { .. })));
    let child = fork(|| {
        let s = SeqpacketSocket::connect(&name).unwrap();
        s.send(b"over an abstract name").unwrap();
    });
    let s = l.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(s.recv(&mut buf).unwrap(), 21);
    child.join();
    drop((l, s));
    assert!(matches!(SeqpacketSocket::connect(&name), Err(Error::Refused { .. } | Error::NotFound { .. })));
    drop(SeqpacketListener::bind(&name).unwrap());
    // Any bytes, a NUL among them, up to the limit.
    let odd = SocketName::abstract_name([b'\0', b'\n', 0xff, b'x']).unwrap();
    let d = DatagramSocket::bind(&odd).unwrap();
    let sender = DatagramSocket::bind(&SocketName::abstract_name(unique_name("ipc-kit-from")).unwrap()).unwrap();
    sender.send_to(b"1", &odd).unwrap();
    let (_, from) = d.recv_from(&mut buf).unwrap();
    assert_eq!(from.as_ref(), sender.name());
}

// `MAX_PATH` docs: at most 107 bytes — one of exactly 107 binds (its
// temporary name is longer, and still works) and takes connections; 108 is
// `InvalidName` before any call.
fn paths_at_the_limit_and_over_it() {
    let dir = ScratchDir::new();
    let base = dir.path().as_os_str().len() + 1;
    assert!(base + 8 < MAX_PATH, "the scratch directory's path is too long for this case");
    let at = dir.path().join("a".repeat(MAX_PATH - base));
    assert_eq!(at.as_os_str().len(), MAX_PATH);
    let name = SocketName::path(&at).unwrap();
    let l = StreamListener::bind(&name).unwrap();
    let c = StreamSocket::connect(&name).unwrap();
    drop(l.accept_timeout(Duration::from_secs(5)).unwrap());
    drop((c, l));
    assert!(!at.exists());
    let over = dir.path().join("a".repeat(MAX_PATH - base + 1));
    assert!(matches!(SocketName::path(&over), Err(Error::InvalidName { .. })));
    assert!(matches!(over.to_str().unwrap().parse::<SocketName>(), Err(Error::InvalidName { .. })));
    // A relative name binds in the working directory's terms.
    let rel = SocketName::path(dir.path().join("sub/../r")).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let l = StreamListener::bind(&rel).unwrap();
    assert!(dir.path().join("r").exists());
    drop(l);
    assert!(!dir.path().join("r").exists());
    // A missing directory.
    let missing = SocketName::path(dir.path().join("nope/s")).unwrap();
    assert!(matches!(StreamListener::bind(&missing), Err(Error::NotFound { .. })));
    assert!(matches!(StreamSocket::connect(&missing), Err(Error::NotFound { .. })));
}

// Every wait in its three forms: `try_*` is `WouldBlock` at once, a zero
// timeout tries once, a timeout fires neither early nor much late.
fn the_three_forms_wait_as_told() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "s");
    let l = StreamListener::bind(&name).unwrap();
    assert!(matches!(l.try_accept(), Err(Error::WouldBlock)));
    assert!(matches!(l.accept_timeout(Duration::ZERO), Err(Error::Timeout)));
    let t = Instant::now();
    assert!(matches!(l.accept_timeout(Duration::from_millis(100)), Err(Error::Timeout)));
    assert_fired_within(t.elapsed(), Duration::from_millis(100), ipc_kit_tests::SLACK);
    let past = Instant::now();
    assert!(matches!(l.accept_deadline(past), Err(Error::Timeout)));
    // A huge timeout is a wait without end: the connection ends it.
    let child = fork(|| drop(StreamSocket::connect(&name).unwrap()));
    let s = l.accept_timeout(Duration::MAX).unwrap();
    child.join();
    let mut buf = [0u8; 4];
    assert_eq!(s.recv_timeout(&mut buf, Duration::MAX).unwrap(), 0, "end of file: the peer went");
    let (a, b) = SeqpacketSocket::pair().unwrap();
    assert!(matches!(b.try_recv(&mut buf), Err(Error::WouldBlock)));
    let t = Instant::now();
    assert!(matches!(b.recv_timeout(&mut buf, Duration::from_millis(50)), Err(Error::Timeout)));
    assert_fired_within(t.elapsed(), Duration::from_millis(50), ipc_kit_tests::SLACK);
    // A full socket: try_send refuses, send_timeout times out.
    let chunk = vec![7u8; 4096];
    while a.try_send(&chunk).is_ok() {}
    assert!(matches!(a.try_send(&chunk), Err(Error::WouldBlock)));
    assert!(matches!(a.send_timeout(&chunk, Duration::from_millis(20)), Err(Error::Timeout)));
    let (c, _d) = DatagramSocket::pair().unwrap();
    while c.try_send(b"fill").is_ok() {}
    assert!(matches!(c.send_timeout(b"fill", Duration::ZERO), Err(Error::Timeout)));
    let mut big = vec![0u8; 8192];
    assert_eq!(b.recv(&mut big).unwrap(), 4096, "what was queued is there");
}

// A listener's backlog that is full: `try_connect` is `WouldBlock`,
// `connect_timeout` is `Timeout`, and `connect` waits until the listener
// accepts.
fn a_full_backlog_makes_connect_wait() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "s");
    let l = StreamListener::bind_with(&name, &BindOptions { backlog: 1, ..BindOptions::default() }).unwrap();
    let mut queued = Vec::new();
    let full = loop {
        match StreamSocket::try_connect(&name) {
            Ok(s) => queued.push(s),
            Err(e) => break e,
        }
        assert!(queued.len() < 64, "a backlog of 1 took {} connections", queued.len());
    };
    assert!(matches!(full, Error::WouldBlock), "{full:?}");
    assert!(matches!(StreamSocket::connect_timeout(&name, Duration::from_millis(50)), Err(Error::Timeout)));
    let child = fork(|| {
        std::thread::sleep(Duration::from_millis(200));
        let s = l.accept().unwrap();
        drop(s);
        std::thread::sleep(Duration::from_millis(500));
    });
    let t = Instant::now();
    let got = StreamSocket::connect(&name);
    assert!(got.is_ok(), "{got:?}");
    assert!(t.elapsed() >= Duration::from_millis(150), "it waited for the accept");
    child.join();
}

// `StreamSocket` docs: "Writes never raise `SIGPIPE`: a peer that is gone
// is `Error::Disconnected`"; a seqpacket receive after the peer went is
// `Disconnected`, after what it sent.
fn a_dead_peer_is_disconnected_never_a_signal() {
    let mut child = fork(|| {
        set_sigpipe_default();
        let (a, b) = StreamSocket::pair().unwrap();
        let (c, d) = SeqpacketSocket::pair().unwrap();
        let mut peer = fork(|| {
            b.send(b"last").unwrap();
            d.send(b"last").unwrap();
            std::thread::sleep(Duration::from_secs(30));
        });
        drop((b, d));
        std::thread::sleep(Duration::from_millis(100));
        peer.kill();
        let _ = peer.wait();
        let mut buf = [0u8; 8];
        assert_eq!(a.recv(&mut buf).unwrap(), 4);
        assert_eq!(a.recv(&mut buf).unwrap(), 0);
        for _ in 0..3 {
            assert!(matches!(a.send(b"x"), Err(Error::Disconnected)));
        }
        assert_eq!((&a).write(b"x").unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
        assert_eq!(c.recv(&mut buf).unwrap(), 4);
        assert!(matches!(c.recv(&mut buf), Err(Error::Disconnected)));
        assert!(matches!(c.recv_timeout(&mut buf, Duration::MAX), Err(Error::Disconnected)));
        assert!(matches!(c.send(b"x"), Err(Error::Disconnected)));
    });
    assert_eq!(child.wait(), Exit::Code(0), "killed by a signal?");
}

// Seqpacket keeps boundaries and order across processes: 10,000
// checksummed messages of varying length, both ways at once.
fn seqpacket_carries_checksummed_messages_in_order() {
    const N: u64 = 10_000;
    let (a, b) = SeqpacketSocket::pair().unwrap();
    let child = fork(|| {
        let mut buf = vec![0u8; 4096];
        for i in 0..N {
            let n = b.recv(&mut buf).unwrap();
            assert_eq!(checksum(&buf[..n]), checksum(&pattern(i, (i % 3000) as usize + 1)), "message {i}");
            b.send(&(i ^ 0x55).to_le_bytes()).unwrap();
        }
    });
    let sender = std::thread::scope(|s| {
        let h = s.spawn(|| {
            for i in 0..N {
                a.send(&pattern(i, (i % 3000) as usize + 1)).unwrap();
            }
        });
        let mut buf = [0u8; 8];
        for i in 0..N {
            assert_eq!(a.recv(&mut buf).unwrap(), 8);
            assert_eq!(u64::from_le_bytes(buf), i ^ 0x55);
        }
        h.join()
    });
    sender.unwrap();
    child.join();
}

// `DatagramSocket::recv_from` docs: the sender's name, `None` for one
// without a name (an unbound socket, a pair): a hostile sender's address
// cannot make it fail.
fn datagrams_name_their_sender() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "d");
    let d = DatagramSocket::bind(&name).unwrap();
    let from_name = name_in(&dir, "from");
    let child = fork(|| {
        let bound = DatagramSocket::bind(&from_name).unwrap();
        bound.send_to(b"named", &name).unwrap();
        DatagramSocket::unbound().unwrap().send_to(b"unnamed", &name).unwrap();
        let abs = SocketName::abstract_name(b"\0").unwrap();
        if let Ok(a) = DatagramSocket::bind(&abs) {
            a.send_to(b"abstract", &name).unwrap();
        }
        // Waits for the parent's reply on its name.
        let mut b = [0u8; 8];
        assert_eq!(bound.recv_from_timeout(&mut b, Duration::from_secs(10)).unwrap().0, 5);
    });
    let mut buf = [0u8; 16];
    let (n, from) = d.recv_from_timeout(&mut buf, Duration::from_secs(10)).unwrap();
    assert_eq!((&buf[..n], from.as_ref()), (&b"named"[..], Some(&from_name)));
    let (n, from) = d.recv_from_timeout(&mut buf, Duration::from_secs(10)).unwrap();
    assert_eq!((&buf[..n], from), (&b"unnamed"[..], None));
    if let Ok((n, from)) = d.recv_from_timeout(&mut buf, Duration::from_millis(200)) {
        assert_eq!((&buf[..n], from), (&b"abstract"[..], Some(SocketName::Abstract(vec![0]))));
    }
    d.send_to(b"reply", &from_name).unwrap();
    child.join();
    let (e, f) = DatagramSocket::pair().unwrap();
    e.send(b"p").unwrap();
    assert_eq!(f.recv_from(&mut buf).unwrap(), (1, None));
    // Connected: sends go to the peer; a gone peer is an error.
    let g = DatagramSocket::unbound().unwrap();
    g.connect(&name).unwrap();
    g.send(b"c").unwrap();
    assert_eq!(d.recv_from(&mut buf).unwrap(), (1, None));
    drop(d);
    assert!(g.send(b"c").is_err(), "nobody is bound there any more");
}

// `Listener` docs: the listener that made a socket file removes it when
// dropped, "if the path still names that file"; "a process forked from it
// does not"; `persist` leaves it.
fn a_listener_removes_its_own_file_only() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "s");
    let path = dir.path().join("s");
    let mut l = Some(StreamListener::bind(&name).unwrap());
    let child = fork(|| drop(l.take()));
    child.join();
    assert!(path.exists(), "a forked copy removed it");
    // Replaced under it: the new file stays.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"another").unwrap();
    drop(l);
    assert_eq!(std::fs::read(&path).unwrap(), b"another");
    std::fs::remove_file(&path).unwrap();
    let mut kept = StreamListener::bind(&name).unwrap();
    kept.persist();
    drop(kept);
    assert!(path.exists());
    // Now stale: the next bind takes it over.
    drop(StreamListener::bind(&name).unwrap());
    assert!(!path.exists());
    // No temporary file is left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

// The temporary names `.ipc-socket.new.PID.N` of binders that died
// mid-bind are swept by the next bind in their directory; those of live
// processes, and other names, are not.
fn leftovers_of_binders_that_died_are_swept() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    // A dead process's leftover: made by a child that exits at once.
    let mut dead = fork(|| {});
    let dead_pid = dead.pid().as_raw();
    assert_eq!(dead.wait(), Exit::Code(0));
    let leftover = dir.path().join(format!(".ipc-socket.new.{dead_pid}.0"));
    let mut made = DatagramSocket::bind(&SocketName::path(&leftover).unwrap()).unwrap();
    made.persist();
    drop(made);
    let live = dir.path().join(format!(".ipc-socket.new.{}.0", std::process::id()));
    let mut mine = DatagramSocket::bind(&SocketName::path(&live).unwrap()).unwrap();
    mine.persist();
    drop(mine);
    let other = dir.path().join(".ipc-socket.new.x.0");
    std::fs::write(&other, b"not ours").unwrap();
    drop(StreamListener::bind(&name).unwrap());
    assert!(!leftover.exists(), "a dead binder's temporary file was left");
    assert!(live.exists(), "a live process's was taken");
    assert!(other.exists(), "a file of another name was taken");
    let _ = std::fs::remove_file(&live);
}

// `TryFrom<OwnedFd>` docs: a descriptor handed over is "checked to be one"
// (a connected Unix socket of the type): a pipe, a datagram socket or an
// Internet socket is `WrongType`, and closed.
fn descriptors_handed_over_are_checked_for_their_kind() {
    let (seq, _peer) = SeqpacketSocket::pair().unwrap();
    let (st, _peer2) = StreamSocket::pair().unwrap();
    let (r, _w) = ipc_kit::pipe::pipe().unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").ok();
    let seq_fd: OwnedFd = seq.into();
    let st_fd: OwnedFd = st.into();
    assert!(matches!(
        StreamSocket::try_from(seq_fd.try_clone().unwrap()),
        Err(Error::WrongType { wanted: "stream", .. })
    ));
    assert!(matches!(SeqpacketSocket::try_from(st_fd.try_clone().unwrap()), Err(Error::WrongType { .. })));
    assert!(matches!(StreamSocket::try_from(OwnedFd::from(r)), Err(Error::WrongType { .. })));
    if let Some(tcp) = tcp {
        assert!(matches!(StreamSocket::try_from(OwnedFd::from(tcp)), Err(Error::WrongType { .. })));
    }
    let seq = SeqpacketSocket::try_from(seq_fd).unwrap();
    seq.send(b"still works").unwrap();
    let st = StreamSocket::try_from(st_fd).unwrap();
    assert_eq!(st.send(b"x").unwrap(), 1);
}
