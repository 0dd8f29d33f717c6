//! ipc-socket against hostile peers and racing binders, through its public API;
//! peers written in raw libc where the API cannot express them.
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ipc_kit::socket::{
    DatagramSocket, Error, SeqpacketListener, SeqpacketSocket, SocketName, StreamListener, StreamSocket,
};
use ipc_kit_tests::{Exit, ScratchDir, cases, fork, process_cpu};

cases!("socket_hostile":
    dgram_file_never_visible_with_a_wider_mode(60 s),
    listener_file_never_visible_with_a_wider_mode(60 s),
    dgram_sender_connected_in_the_mode_window_is_not_heard(60 s),
    racing_binders_over_a_stale_file_exactly_one_wins(120 s),
    racing_binders_on_a_fresh_path_exactly_one_wins(60 s),
    killed_binders_leave_no_temp_after_the_next_bind(60 s),
    a_path_with_a_trailing_slash_is_refused_or_cleaned_up,
    fds_over_rlimit_are_out_of_descriptors_and_none_leak,
    passcred_and_rights_together_leak_nothing,
    raw_peer_fds_to_plain_recv_leak_nothing,
    stream_reads_spanning_messages_with_fds,
    truncated_messages_with_fds_close_them,
    hostile_datagram_sender_names,
    zero_length_messages,
    extreme_timeouts_on_every_timed_call,
    long_names_exact_limits_and_relative_paths,
    symlinked_directory_and_unwritable_directory,
    connect_to_something_that_is_not_a_socket,
    peers_that_die_at_every_step,
    passpidfd_leaks_no_pidfd,
    passcred_does_not_cut_descriptors_that_fit,
    accept_out_of_descriptors_is_typed_and_keeps_the_connection,
    send_to_a_full_receiver_waits_without_spinning,
);

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn name_in(dir: &ScratchDir, file: &str) -> SocketName {
    SocketName::path(dir.path().join(file)).unwrap()
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".new."))
        .collect()
}

/// Sends `data` with `fds` (SCM_RIGHTS) and, optionally, an explicit
/// SCM_CREDENTIALS cmsg, on a raw socket.
fn raw_send(sock: RawFd, data: &[u8], fds: &[RawFd], creds: bool) -> isize {
    let mut control = vec![0u8; 256];
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
    // SAFETY: msghdr is plain data; every pointer in it points into live
    // buffers above, sized as said; the CMSG_* macros walk `control`.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        let mut len = 0usize;
        if creds {
            len += libc::CMSG_SPACE(std::mem::size_of::<libc::ucred>() as u32) as usize;
        }
        if !fds.is_empty() {
            len += libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) as usize;
        }
        msg.msg_controllen = len;
        if len == 0 {
            msg.msg_control = std::ptr::null_mut();
        } else {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            if creds {
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_CREDENTIALS;
                (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::ucred>() as u32) as usize;
                let u = libc::ucred { pid: libc::getpid(), uid: libc::getuid(), gid: libc::getgid() };
                std::ptr::copy_nonoverlapping(&u, libc::CMSG_DATA(c).cast::<libc::ucred>(), 1);
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            if !fds.is_empty() {
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as usize;
                std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast::<RawFd>(), fds.len());
            }
        }
        libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL)
    }
}

fn set_passcred(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value.
    let r = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_PASSCRED, (&raw const one).cast(), 4) };
    assert_eq!(r, 0);
}

fn fresh_fds(n: usize) -> Vec<OwnedFd> {
    (0..n).map(|_| std::fs::File::open("/dev/null").unwrap().into()).collect()
}

fn raws(fds: &[OwnedFd]) -> Vec<RawFd> {
    fds.iter().map(AsRawFd::as_raw_fd).collect()
}

/// Races a stat loop against `bind_and_drop` under umask 0: every mode
/// seen at the final path that is not 0o600.
fn wrong_modes_seen(path: &std::path::Path, rounds: usize, bind_and_drop: impl Fn()) -> Vec<u32> {
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let stop = Arc::new(AtomicBool::new(false));
    let seen = {
        let (stop, path) = (stop.clone(), path.to_owned());
        std::thread::spawn(move || {
            let mut bad = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(m) = std::fs::symlink_metadata(&path)
                    && m.file_type().is_socket()
                    && m.mode() & 0o7777 != 0o600
                {
                    bad.push(m.mode() & 0o7777);
                }
            }
            bad
        })
    };
    for _ in 0..rounds {
        bind_and_drop();
    }
    stop.store(true, Ordering::Relaxed);
    let bad = seen.join().unwrap();
    nix::sys::stat::umask(old);
    bad
}

fn dgram_file_never_visible_with_a_wider_mode() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "d");
    let bad = wrong_modes_seen(dir.path().join("d").as_path(), 3000, || {
        drop(DatagramSocket::bind(&name).unwrap());
    });
    let shown: Vec<String> = bad.iter().take(5).map(|m| format!("{m:o}")).collect();
    assert!(bad.is_empty(), "datagram socket file seen at its path with mode(s) {shown:?} ({} times)", bad.len());
}

fn listener_file_never_visible_with_a_wider_mode() {
    let dir = ScratchDir::new();
    let (s, q) = (name_in(&dir, "s"), name_in(&dir, "q"));
    let bad = wrong_modes_seen(dir.path().join("s").as_path(), 1500, || {
        drop(StreamListener::bind(&s).unwrap());
    });
    assert!(bad.is_empty(), "stream: {bad:?}");
    let bad = wrong_modes_seen(dir.path().join("q").as_path(), 1500, || {
        drop(SeqpacketListener::bind(&q).unwrap());
    });
    assert!(bad.is_empty(), "seqpacket: {bad:?}");
    assert!(leftovers(dir.path()).is_empty());
}

// A process of another user that connects its datagram socket in the
// window when the file still has the umask's mode keeps sending after the
// mode is set and after bind's drain: the owner hears it.
fn dgram_sender_connected_in_the_mode_window_is_not_heard() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("needs root to have a peer of another user: passed over");
        return;
    }
    let dir = ScratchDir::new();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let name = name_in(&dir, "d");
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let hostile = fork(|| {
        ipc_kit_tests::become_nobody();
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            let s = DatagramSocket::unbound().unwrap();
            if s.connect(&name).is_ok() {
                for _ in 0..200 {
                    let _ = s.try_send(b"sneak");
                    std::thread::sleep(Duration::from_micros(20));
                }
            }
        }
    });
    let mut heard = 0;
    let mut rounds = 0;
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end && heard == 0 {
        rounds += 1;
        let d = DatagramSocket::bind(&name).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let mut buf = [0u8; 16];
        while let Ok((n, _)) = d.try_recv_from(&mut buf) {
            assert_eq!(&buf[..n], b"sneak");
            heard += 1;
        }
    }
    hostile.kill();
    drop(hostile);
    nix::sys::stat::umask(old);
    assert_eq!(heard, 0, "after {rounds} binds, the owner of a 0o600 socket heard {heard} datagrams from user nobody");
}

/// One round of two binders racing: how many won, and whether the winner
/// got the connection made to the path. Each binder reports on a pipe and
/// holds its listener until killed (so that no winner's exit makes its
/// file stale for a slow loser to take over legitimately).
fn race_two_binders(name: &SocketName, stale: bool) -> (usize, usize, bool) {
    if stale {
        let mut l = StreamListener::bind(name).unwrap();
        l.persist();
        drop(l);
    }
    let go = nix::unistd::pipe().unwrap();
    let done = nix::unistd::pipe().unwrap();
    let child = |go_r: RawFd, done_w: RawFd| {
        let name = name.clone();
        fork(move || {
            let report = |c: u8| {
                // SAFETY: writing one byte to the inherited pipe end.
                unsafe { libc::write(done_w, (&raw const c).cast(), 1) };
            };
            let mut b = [0u8; 1];
            // SAFETY: reading one byte from the inherited pipe end.
            unsafe { libc::read(go_r, b.as_mut_ptr().cast(), 1) };
            match StreamListener::bind(&name) {
                Ok(l) => {
                    // Wins: wait for the parent's connection (it says "P").
                    let end = Instant::now() + Duration::from_secs(3);
                    let mut served = false;
                    while Instant::now() < end && !served {
                        if let Ok(s) = l.accept_timeout(Duration::from_millis(500)) {
                            let mut b = [0u8; 1];
                            served = s.recv_timeout(&mut b, Duration::from_millis(500)).ok() == Some(1) && b[0] == b'P';
                        }
                    }
                    report(if served { 10 } else { 11 });
                    std::thread::sleep(Duration::from_secs(30));
                }
                Err(Error::InUse { .. }) => report(20),
                Err(e) => {
                    eprintln!("binder: {e:?}");
                    report(30);
                }
            }
        })
    };
    let a = child(go.0.as_raw_fd(), done.1.as_raw_fd());
    let b = child(go.0.as_raw_fd(), done.1.as_raw_fd());
    drop(done.1);
    nix::unistd::write(&go.1, b"xx").unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if StreamSocket::connect_timeout(name, Duration::from_secs(1)).and_then(|s| s.send(b"P")).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut codes = Vec::new();
    let mut file = std::fs::File::from(done.0);
    let mut byte = [0u8; 1];
    while codes.len() < 2 {
        use std::io::Read;
        match file.read(&mut byte) {
            Ok(1) => codes.push(byte[0]),
            other => panic!("a binder died without a report: {other:?}"),
        }
    }
    drop((a, b)); // killed and reaped
    assert!(!codes.contains(&30), "a binder failed with another error");
    let won = codes.iter().filter(|&&c| c == 10 || c == 11).count();
    let lost = codes.iter().filter(|&&c| c == 20).count();
    let served = codes.contains(&10);
    // The winner's file (left by the kill): removed here.
    let _ = std::fs::remove_file(name.as_path().unwrap());
    (won, lost, served)
}

fn racing_binders_over_a_stale_file_exactly_one_wins() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut bad = Vec::new();
    let end = Instant::now() + Duration::from_secs(80);
    let mut rounds = 0;
    while rounds < 1500 && Instant::now() < end {
        rounds += 1;
        let (won, lost, served) = race_two_binders(&name, true);
        if won != 1 || lost != 1 || !served {
            bad.push((rounds, won, lost, served));
        }
    }
    assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
    assert!(bad.is_empty(), "of {rounds} rounds, (round, winners, losers, winner served): {bad:?}");
}

fn racing_binders_on_a_fresh_path_exactly_one_wins() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut bad = Vec::new();
    for round in 0..300 {
        let (won, lost, served) = race_two_binders(&name, false);
        if won != 1 || lost != 1 || !served {
            bad.push((round, won, lost, served));
        }
    }
    assert!(leftovers(dir.path()).is_empty());
    assert!(bad.is_empty(), "(round, winners, losers, winner served): {bad:?}");
}

fn killed_binders_leave_no_temp_after_the_next_bind() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "svc");
    let mut seen_temp = 0;
    for i in 0..200u64 {
        let child = {
            let name = name.clone();
            fork(move || {
                loop {
                    drop(StreamListener::bind(&name));
                }
            })
        };
        std::thread::sleep(Duration::from_micros(100 + (i * 37) % 900));
        child.kill();
        drop(child);
        if !leftovers(dir.path()).is_empty() {
            seen_temp += 1;
        }
        // The next bind sweeps what the killed one left.
        let l = StreamListener::bind(&name).unwrap();
        assert!(leftovers(dir.path()).is_empty(), "after a bind: {:?}", leftovers(dir.path()));
        drop(l);
        assert!(!dir.path().join("svc").exists());
    }
    eprintln!("temporary files left by a killed binder (then swept): {seen_temp} of 200");
}

fn a_path_with_a_trailing_slash_is_refused_or_cleaned_up() {
    let dir = ScratchDir::new();
    let path = format!("{}/svc/", dir.path().display());
    let name = SocketName::path(&path).unwrap();
    match StreamListener::bind(&name) {
        Err(Error::InvalidName { .. } | Error::NotFound { .. }) => {}
        Err(e) => panic!("bind {path}: {e:?}"),
        Ok(l) => {
            let connect = StreamSocket::connect(&name).map(drop);
            drop(l);
            let left = dir.path().join("svc");
            let exists = std::fs::symlink_metadata(&left).is_ok();
            panic!(
                "bind({path:?}) succeeded; connect to the same name: {connect:?}; after the listener's drop, \
                 {} still exists: {exists}",
                left.display()
            );
        }
    }
}

fn fds_over_rlimit_are_out_of_descriptors_and_none_leak() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (a, b) = SeqpacketSocket::pair().unwrap();
    let (sa, sb) = StreamSocket::pair().unwrap();
    let (da, db) = DatagramSocket::pair().unwrap();
    let to_send = fresh_fds(8);
    let borrowed: Vec<_> = to_send.iter().map(AsFd::as_fd).collect();
    a.send_with_fds(b"eight", &borrowed).unwrap();
    sa.send_with_fds(b"eight", &borrowed).unwrap();
    da.send_with_fds(b"eight", &borrowed).unwrap();
    let before = open_fds();
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    // Fill every free slot under a limit, then free exactly 3.
    setrlimit(Resource::RLIMIT_NOFILE, 256, hard).unwrap();
    let mut filler: Vec<OwnedFd> = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        filler.push(f.into());
    }
    filler.truncate(filler.len() - 3);
    let mut buf = [0u8; 16];
    let r1 = b.recv_with_fds(&mut buf, 16).map(|(n, f)| (n, f.len()));
    let r2 = sb.recv_with_fds(&mut buf, 16).map(|(n, f)| (n, f.len()));
    let r3 = db.recv_from_with_fds(&mut buf, 16).map(|(n, f, _)| (n, f.len()));
    drop(filler);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    assert_eq!(open_fds(), before, "descriptors leaked");
    let ok = |r: &ipc_kit::socket::Result<(usize, usize)>| matches!(r, Err(Error::OutOfDescriptors { .. }));
    assert!(
        ok(&r1) && ok(&r2) && ok(&r3),
        "8 descriptors sent, 16 asked for, room for 3: seqpacket {r1:?}; stream {r2:?}; datagram {r3:?}"
    );
}

fn passcred_and_rights_together_leak_nothing() {
    let mut report = Vec::new();
    for explicit in [false, true] {
        let (a, b) = SeqpacketSocket::pair().unwrap();
        set_passcred(b.as_raw_fd());
        let before = open_fds();
        let fds = fresh_fds(2);
        assert!(raw_send(a.as_raw_fd(), b"x", &raws(&fds), explicit) > 0);
        drop(fds);
        let mut buf = [0u8; 4];
        for max in [1usize, 2, 8] {
            let fds = fresh_fds(2);
            assert!(raw_send(a.as_raw_fd(), b"x", &raws(&fds), explicit) > 0);
            drop(fds);
            let r = b.recv_with_fds(&mut buf, max).map(|(n, f)| (n, f.len()));
            report.push(format!("explicit creds {explicit}, max_fds {max}: {r:?}"));
        }
        let mut drain = [0u8; 4];
        let _ = b.try_recv_with_fds(&mut drain, 8);
        assert_eq!(open_fds(), before, "leak; {report:?}");
        // Stream too: creds split reads.
        let (sa, sb) = StreamSocket::pair().unwrap();
        set_passcred(sb.as_raw_fd());
        let before = open_fds();
        for _ in 0..3 {
            let fds = fresh_fds(3);
            assert!(raw_send(sa.as_raw_fd(), b"abc", &raws(&fds), explicit) > 0);
        }
        let mut got = 0;
        while got < 9 {
            match sb.recv_with_fds_timeout(&mut buf, 8, Duration::from_secs(1)) {
                Ok((n, f)) => {
                    got += n;
                    drop(f);
                }
                Err(Error::FdsTruncated { len, .. }) => got += len,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(open_fds(), before, "stream leak");
    }
    // Credentials take the room of the descriptors asked for: with
    // SO_PASSCRED set, one descriptor sent and one asked for is cut.
    eprintln!("{report:#?}");
}

fn raw_peer_fds_to_plain_recv_leak_nothing() {
    let before = open_fds();
    {
        let (a, b) = SeqpacketSocket::pair().unwrap();
        let (sa, sb) = StreamSocket::pair().unwrap();
        let (da, db) = DatagramSocket::pair().unwrap();
        let mut buf = [0u8; 8];
        for round in 0..50 {
            let fds = fresh_fds(1 + round % 5);
            assert!(raw_send(a.as_raw_fd(), b"m", &raws(&fds), false) > 0);
            assert!(raw_send(sa.as_raw_fd(), b"m", &raws(&fds), false) > 0);
            assert!(raw_send(da.as_raw_fd(), b"m", &raws(&fds), false) > 0);
            drop(fds);
            assert_eq!(b.recv(&mut buf).unwrap(), 1);
            assert_eq!(sb.recv(&mut buf).unwrap(), 1);
            assert_eq!(db.recv_from(&mut buf).unwrap().0, 1);
        }
        // A zero-length seqpacket/datagram message with fds.
        let fds = fresh_fds(3);
        assert!(raw_send(a.as_raw_fd(), b"", &raws(&fds), false) >= 0);
        assert!(raw_send(da.as_raw_fd(), b"", &raws(&fds), false) >= 0);
        drop(fds);
        assert_eq!(b.recv_with_fds_timeout(&mut buf, 4, Duration::from_secs(1)).unwrap().1.len(), 3);
        assert_eq!(db.try_recv_from_with_fds(&mut buf, 4).unwrap().1.len(), 3);
    }
    assert_eq!(open_fds(), before);
}

fn stream_reads_spanning_messages_with_fds() {
    let (a, b) = StreamSocket::pair().unwrap();
    let before = open_fds();
    let f1 = fresh_fds(1);
    let f2 = fresh_fds(2);
    a.send(b"plain").unwrap();
    a.send_with_fds(b"ab", &[f1[0].as_fd()]).unwrap();
    a.send(b"more").unwrap();
    a.send_with_fds(b"cd", &[f2[0].as_fd(), f2[1].as_fd()]).unwrap();
    drop((f1, f2));
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.iter().map(|(s, _): &(Vec<u8>, usize)| s.len()).sum::<usize>() < 13 {
        let (n, fds) = b.recv_with_fds_timeout(&mut buf, 4, Duration::from_secs(1)).unwrap();
        got.push((buf[..n].to_vec(), fds.len()));
    }
    // Every descriptor arrives with a read that holds its bytes.
    let total: usize = got.iter().map(|g| g.1).sum();
    assert_eq!(total, 3, "{got:?}");
    for (bytes, n) in &got {
        if *n == 1 {
            assert!(bytes.windows(2).any(|w| w == b"ab"), "{got:?}");
        }
        if *n == 2 {
            assert!(bytes.windows(2).any(|w| w == b"cd"), "{got:?}");
        }
    }
    assert_eq!(open_fds(), before);
    // A plain read of bytes with fds attached closes them.
    let f = fresh_fds(3);
    a.send_with_fds(b"xyz", &f.iter().map(AsFd::as_fd).collect::<Vec<_>>()).unwrap();
    drop(f);
    assert_eq!(b.recv(&mut buf).unwrap(), 3);
    assert_eq!(open_fds(), before);
}

fn truncated_messages_with_fds_close_them() {
    let (a, b) = SeqpacketSocket::pair().unwrap();
    let (da, db) = DatagramSocket::pair().unwrap();
    let before = open_fds();
    for round in 0..20 {
        let f = fresh_fds(1 + round % 4);
        let fds: Vec<_> = f.iter().map(AsFd::as_fd).collect();
        a.send_with_fds(&[7u8; 100], &fds).unwrap();
        da.send_with_fds(&[7u8; 100], &fds).unwrap();
        drop(f);
        let mut small = [0u8; 10];
        assert!(matches!(b.recv_with_fds(&mut small, 8), Err(Error::Truncated { len: 100, capacity: 10 })));
        assert!(matches!(db.recv_from_with_fds(&mut small, 8), Err(Error::Truncated { len: 100, capacity: 10 })));
        // Both cut at once.
        let f = fresh_fds(5);
        let fds: Vec<_> = f.iter().map(AsFd::as_fd).collect();
        a.send_with_fds(&[7u8; 100], &fds).unwrap();
        drop(f);
        let r = b.recv_with_fds(&mut small, 1);
        assert!(matches!(r, Err(Error::FdsTruncated { .. }) | Err(Error::Truncated { .. })), "{r:?}");
    }
    assert_eq!(open_fds(), before);
}

/// A datagram socket bound, with raw libc, to `addr` (`len` bytes).
fn raw_dgram_bound(addr: &libc::sockaddr_un, len: usize) -> OwnedFd {
    // SAFETY: a new socket, bound to an address of the size said; the
    // descriptor is owned at once.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let owned = <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd);
        let r = libc::bind(fd, (addr as *const libc::sockaddr_un).cast(), len as libc::socklen_t);
        assert_eq!(r, 0, "raw bind: {}", std::io::Error::last_os_error());
        owned
    }
}

fn hostile_datagram_sender_names() {
    let dir = ScratchDir::new();
    let me = DatagramSocket::bind(&name_in(&dir, "me")).unwrap();
    let my_name = me.name().unwrap().clone();
    let my_path = std::ffi::CString::new(my_name.as_path().unwrap().as_os_str().as_bytes()).unwrap();
    let send_from = |fd: &OwnedFd| {
        // SAFETY: a sockaddr_un for our path, and a 3-byte message.
        unsafe {
            let mut to: libc::sockaddr_un = std::mem::zeroed();
            to.sun_family = libc::AF_UNIX as u16;
            for (i, &b) in my_path.as_bytes().iter().enumerate() {
                to.sun_path[i] = b as libc::c_char;
            }
            let r = libc::sendto(
                fd.as_raw_fd(),
                b"hey".as_ptr().cast(),
                3,
                0,
                (&raw const to).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as u32,
            );
            assert_eq!(r, 3, "{}", std::io::Error::last_os_error());
        }
    };
    let mut buf = [0u8; 8];
    let mut seen = Vec::new();
    // 1: a path of all 108 bytes, no NUL (relative, in a forked child
    // that changed its directory).
    let long = "p".repeat(108);
    let sub = dir.path().to_owned();
    let l2 = long.clone();
    let send_long = move |send: &dyn Fn(&OwnedFd)| {
        std::env::set_current_dir(&sub).unwrap();
        // SAFETY: plain data.
        let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        a.sun_family = libc::AF_UNIX as u16;
        for (i, b) in l2.bytes().enumerate() {
            a.sun_path[i] = b as libc::c_char;
        }
        let s = raw_dgram_bound(&a, std::mem::size_of::<libc::sockaddr_un>());
        send(&s);
    };
    send_long(&send_from);
    std::env::set_current_dir("/").unwrap();
    let (n, from) = me.recv_from_timeout(&mut buf, Duration::from_secs(2)).unwrap();
    seen.push(from.clone());
    assert_eq!(n, 3);
    let _ = std::fs::remove_file(dir.path().join(&long));
    // 2: abstract names of 107 bytes of odd bytes; of one NUL byte.
    for name in [vec![0xffu8; 107], vec![0u8; 107], vec![0u8], b"\n\\\x01".to_vec()] {
        // SAFETY: plain data.
        let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        a.sun_family = libc::AF_UNIX as u16;
        for (i, &b) in name.iter().enumerate() {
            a.sun_path[i + 1] = b as libc::c_char;
        }
        let s = raw_dgram_bound(&a, 2 + 1 + name.len());
        send_from(&s);
        let (n, from) = me.recv_from_timeout(&mut buf, Duration::from_secs(2)).unwrap();
        assert_eq!(n, 3);
        assert_eq!(from, Some(SocketName::Abstract(name.clone())));
        // A reply reaches it.
        me.send_to(b"re", from.as_ref().unwrap()).unwrap();
        let _ = from.as_ref().unwrap().to_string();
    }
    // 3: an unbound sender.
    let u = DatagramSocket::unbound().unwrap();
    u.send_to(b"hey", &my_name).unwrap();
    let (_, from) = me.recv_from_timeout(&mut buf, Duration::from_secs(2)).unwrap();
    assert_eq!(from, None);
    // 4: an autobound sender (SO_PASSCRED autobinds an abstract name).
    let u = DatagramSocket::unbound().unwrap();
    set_passcred(u.as_raw_fd());
    u.send_to(b"hey", &my_name).unwrap();
    let (_, from) = me.recv_from_timeout(&mut buf, Duration::from_secs(2)).unwrap();
    assert!(matches!(from, Some(SocketName::Abstract(ref n)) if n.len() == 5), "{from:?}");
    // The 108-byte name: what came, and whether a reply to it works.
    let reply = seen[0].as_ref().map(|n| me.send_to(b"re", n));
    eprintln!("108-byte sender: {:?}; reply: {reply:?}", seen[0].as_ref().map(|n| n.to_string().len()));
}

fn zero_length_messages() {
    // Seqpacket: an empty message from a live peer is Ok(0), not the end.
    let (a, b) = SeqpacketSocket::pair().unwrap();
    assert!(matches!(a.send(b""), Err(Error::MessageTooLarge { len: 0, .. })));
    assert_eq!(raw_send(a.as_raw_fd(), b"", &[], false), 0);
    let mut buf = [0u8; 4];
    assert_eq!(b.recv_timeout(&mut buf, Duration::from_secs(1)).unwrap(), 0);
    drop(a);
    assert!(matches!(b.recv_timeout(&mut buf, Duration::from_secs(1)), Err(Error::Disconnected)));
    // Datagram: empty messages are messages.
    let dir = ScratchDir::new();
    let d = DatagramSocket::bind(&name_in(&dir, "d")).unwrap();
    let u = DatagramSocket::unbound().unwrap();
    for _ in 0..3 {
        u.send_to(b"", d.name().unwrap()).unwrap();
    }
    for _ in 0..3 {
        assert_eq!(d.recv_from_timeout(&mut buf, Duration::from_secs(1)).unwrap(), (0, None));
    }
    assert!(matches!(d.try_recv_from(&mut buf), Err(Error::WouldBlock)));
    // Stream: an empty send is 0 and nothing arrives.
    let (sa, sb) = StreamSocket::pair().unwrap();
    assert_eq!(sa.send(b"").unwrap(), 0);
    assert!(matches!(sb.try_recv(&mut buf), Err(Error::WouldBlock)));
    assert!(matches!(sa.send_with_fds(b"", &[sa.as_fd()]), Err(Error::FdsWithoutData)));
}

fn extreme_timeouts_on_every_timed_call() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "s");
    let l = StreamListener::bind(&name).unwrap();
    let t0 = Instant::now();
    assert!(matches!(l.accept_timeout(Duration::ZERO), Err(Error::Timeout)));
    let c = StreamSocket::connect_timeout(&name, Duration::MAX).unwrap();
    let _c0 = StreamSocket::connect_timeout(&name, Duration::ZERO).unwrap();
    let s = l.accept_timeout(Duration::MAX).unwrap();
    let _s0 = l.accept_timeout(Duration::ZERO).unwrap(); // ready: taken at once
    let mut buf = [0u8; 4];
    assert!(matches!(s.recv_timeout(&mut buf, Duration::ZERO), Err(Error::Timeout)));
    assert_eq!(c.send_timeout(b"a", Duration::ZERO).unwrap(), 1);
    assert_eq!(s.recv_timeout(&mut buf, Duration::ZERO).unwrap(), 1);
    assert_eq!(c.send_timeout(b"a", Duration::MAX).unwrap(), 1);
    assert_eq!(s.recv_timeout(&mut buf, Duration::MAX).unwrap(), 1);
    assert_eq!(c.send_with_fds_timeout(b"a", &[c.as_fd()], Duration::MAX).unwrap(), 1);
    assert_eq!(s.recv_with_fds_timeout(&mut buf, 1, Duration::MAX).unwrap().1.len(), 1);
    assert!(matches!(s.recv_with_fds_timeout(&mut buf, 1, Duration::ZERO), Err(Error::Timeout)));
    let past = Instant::now() - Duration::from_millis(1);
    assert!(matches!(l.accept_deadline(past), Err(Error::Timeout)));
    let (qa, qb) = SeqpacketSocket::pair().unwrap();
    assert_eq!(qa.send_timeout(b"q", Duration::MAX).unwrap(), ());
    assert_eq!(qb.recv_timeout(&mut buf, Duration::MAX).unwrap(), 1);
    assert!(matches!(qb.recv_timeout(&mut buf, Duration::ZERO), Err(Error::Timeout)));
    let d = DatagramSocket::bind(&name_in(&dir, "d")).unwrap();
    let u = DatagramSocket::unbound().unwrap();
    u.send_to_timeout(b"d", d.name().unwrap(), Duration::MAX).unwrap();
    assert_eq!(d.recv_from_timeout(&mut buf, Duration::MAX).unwrap().0, 1);
    assert!(matches!(d.recv_from_timeout(&mut buf, Duration::ZERO), Err(Error::Timeout)));
    assert!(matches!(d.recv_from_deadline(&mut buf, past), Err(Error::Timeout)));
    assert!(t0.elapsed() < Duration::from_secs(2));
    // A sender to a full stream with a zero timeout: Timeout, not a hang.
    let (fa, _fb) = StreamSocket::pair().unwrap();
    let big = vec![0u8; 1 << 16];
    let mut err = None;
    for _ in 0..1000 {
        if let Err(e) = fa.send_timeout(&big, Duration::ZERO) {
            err = Some(e);
            break;
        }
    }
    assert!(matches!(err, Some(Error::Timeout)), "{err:?}");
    assert!(matches!(fa.send_timeout(&big, Duration::from_millis(50)), Err(Error::Timeout)));
}

fn long_names_exact_limits_and_relative_paths() {
    let dir = ScratchDir::new();
    let base = dir.path().as_os_str().len() + 1;
    // A path of exactly 107 bytes binds (through the directory's descriptor
    // for the temporary name), accepts, and is removed.
    let file = "f".repeat(107 - base);
    let name = name_in(&dir, &file);
    let l = StreamListener::bind(&name).unwrap();
    let c = StreamSocket::connect(&name).unwrap();
    let _s = l.accept_timeout(Duration::from_secs(2)).unwrap();
    drop((c, l));
    assert!(!dir.path().join(&file).exists());
    let d = DatagramSocket::bind(&name).unwrap();
    drop(d);
    assert!(!dir.path().join(&file).exists());
    // A file name so long that its temporary name cannot fit anywhere.
    let sub = dir.path().join("x");
    std::fs::create_dir(&sub).unwrap();
    let rel_before = std::env::current_dir().unwrap();
    std::env::set_current_dir(&sub).unwrap();
    for len in [90usize, 100, 105, 107] {
        let n = SocketName::path("g".repeat(len)).unwrap();
        match StreamListener::bind(&n) {
            Err(Error::InvalidName { .. }) => {}
            Ok(l) => {
                assert!(StreamSocket::connect(&n).is_ok());
                drop(l);
            }
            Err(e) => panic!("relative {len}: {e:?}"),
        }
    }
    // A relative path in a subdirectory, and one with "..".
    std::fs::create_dir("y").unwrap();
    for rel in ["y/s", "./y/../s", "s"] {
        let n = SocketName::path(rel).unwrap();
        let l = StreamListener::bind(&n).unwrap();
        StreamSocket::connect(&n).unwrap();
        drop(l);
        assert!(std::fs::symlink_metadata(rel).is_err(), "{rel} left");
    }
    assert!(leftovers(&sub).is_empty());
    std::env::set_current_dir(rel_before).unwrap();
    // "/" and "dir/.." have no file name.
    for bad in ["/", "/tmp/..", "."] {
        let r = StreamListener::bind(&SocketName::path(bad).unwrap());
        assert!(matches!(r, Err(Error::InvalidName { .. })), "{bad}: {r:?}");
    }
}

fn symlinked_directory_and_unwritable_directory() {
    let dir = ScratchDir::new();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
    let name = SocketName::path(dir.path().join("link/s")).unwrap();
    let l = StreamListener::bind(&name).unwrap();
    StreamSocket::connect(&name).unwrap();
    drop(l);
    assert!(!real.join("s").exists());
    // The socket's path itself a symlink to a live socket: not taken.
    let l = StreamListener::bind(&SocketName::path(real.join("t")).unwrap()).unwrap();
    std::os::unix::fs::symlink(real.join("t"), real.join("u")).unwrap();
    let r = StreamListener::bind(&SocketName::path(real.join("u")).unwrap());
    assert!(matches!(r, Err(Error::NotASocket { .. })), "{r:?}");
    drop(l);
    // A directory this user cannot write or search.
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let _ = nix::unistd::chown(&ro, Some(nix::unistd::Uid::from_raw(65534)), Some(nix::unistd::Gid::from_raw(65534)));
    let mut child = fork(move || {
        ipc_kit_tests::become_nobody();
        for (mode, what) in [(0o500, "unwritable"), (0o300, "unreadable"), (0o600, "unsearchable")] {
            std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
            let n = SocketName::path(ro.join("s")).unwrap();
            let r = StreamListener::bind(&n).map(drop);
            let d = DatagramSocket::bind(&n).map(drop);
            eprintln!("{what}: listener {r:?}, datagram {d:?}");
            if mode != 0o300 {
                assert!(matches!(r, Err(Error::PermissionDenied { .. })), "{what}: {r:?}");
                assert!(matches!(d, Err(Error::PermissionDenied { .. })), "{what}: {d:?}");
            }
        }
        std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let left = std::fs::read_dir(&ro).unwrap().count();
        assert_eq!(left, 0, "files left in the directory");
    });
    assert_eq!(child.wait_timeout(Duration::from_secs(20)), Some(Exit::Code(0)));
}

fn connect_to_something_that_is_not_a_socket() {
    let dir = ScratchDir::new();
    std::fs::write(dir.path().join("file"), b"x").unwrap();
    std::fs::create_dir(dir.path().join("dir")).unwrap();
    let mut got = Vec::new();
    for what in ["file", "dir", "file/s"] {
        let n = name_in(&dir, what);
        got.push((what, StreamSocket::connect(&n).map(drop), DatagramSocket::unbound().unwrap().send_to(b"x", &n)));
    }
    for (what, c, s) in &got {
        let ok = |r: &ipc_kit::socket::Result<()>| match *what {
            "file/s" => matches!(r, Err(Error::NotFound { .. })),
            _ => matches!(r, Err(Error::NotASocket { .. })),
        };
        assert!(ok(c) && ok(s), "{what}: connect {c:?}, send_to {s:?}");
    }
}

fn peers_that_die_at_every_step() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "s");
    let l = StreamListener::bind(&name).unwrap();
    let ql = SeqpacketListener::bind(&name_in(&dir, "q")).unwrap();
    let qname = ql.name().clone();
    let before = open_fds();
    let step = AtomicUsize::new(0);
    for kind in 0..5 {
        step.store(kind, Ordering::Relaxed);
        let (n, qn) = (name.clone(), qname.clone());
        let mut child = fork(move || {
            let s = StreamSocket::connect(&n).unwrap();
            let q = SeqpacketSocket::connect(&qn).unwrap();
            match kind {
                0 => {}                                 // dies before accept
                1 => drop(s.send(&vec![1u8; 300_000])), // mid-send (killed)
                2 => {
                    s.send(b"unread").unwrap(); // unread data, then gone
                    q.send(b"unread").unwrap();
                }
                3 => {
                    let f = fresh_fds(3);
                    let b: Vec<_> = f.iter().map(AsFd::as_fd).collect();
                    s.send_with_fds(b"f", &b).unwrap();
                    q.send_with_fds(b"f", &b).unwrap();
                }
                _ => std::thread::sleep(Duration::from_secs(30)), // killed while idle
            }
            if kind == 1 || kind == 4 {
                std::thread::sleep(Duration::from_secs(30));
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        child.kill();
        let _ = child.wait_timeout(Duration::from_secs(5));
        let s = l.accept_timeout(Duration::from_secs(2)).unwrap();
        let q = ql.accept_timeout(Duration::from_secs(2)).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            match s.recv_with_fds_timeout(&mut buf, 1, Duration::from_secs(2)) {
                Ok((0, _)) => break,
                Ok((n, _)) => total += n,
                Err(Error::FdsTruncated { len, .. }) => total += len,
                Err(Error::Disconnected) => break,
                Err(e) => panic!("stream, step {kind}: {e:?}"),
            }
        }
        let mut qres = Vec::new();
        loop {
            match q.recv_with_fds_timeout(&mut buf, 8, Duration::from_secs(2)) {
                Err(Error::Disconnected) => break,
                other => qres.push(format!("{other:?}")),
            }
            assert!(qres.len() < 5, "{qres:?}");
        }
        assert!(matches!(s.send(b"x"), Err(Error::Disconnected)));
        assert!(matches!(q.send(b"x"), Err(Error::Disconnected)));
        let _ = total;
    }
    assert_eq!(open_fds(), before);
}

const SO_PASSPIDFD: libc::c_int = 76;

// A socket with SO_PASSPIDFD set (by its user, or inherited so from
// another program, e.g. a socket handed over by systemd): the kernel
// installs a pidfd (SCM_PIDFD) with every message received with a control
// buffer. Only SCM_RIGHTS descriptors are owned: the pidfds leak.
fn passpidfd_leaks_no_pidfd() {
    let (a, b) = StreamSocket::pair().unwrap();
    let (qa, qb) = SeqpacketSocket::pair().unwrap();
    let (da, db) = DatagramSocket::pair().unwrap();
    for fd in [b.as_raw_fd(), qb.as_raw_fd(), db.as_raw_fd()] {
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option value.
        let r = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, SO_PASSPIDFD, (&raw const one).cast(), 4) };
        if r != 0 {
            eprintln!("no SO_PASSPIDFD here: passed over");
            return;
        }
    }
    let before = open_fds();
    let mut buf = [0u8; 8];
    let mut results = Vec::new();
    for _ in 0..10 {
        let f = fresh_fds(1);
        a.send_with_fds(b"x", &[f[0].as_fd()]).unwrap();
        qa.send_with_fds(b"x", &[f[0].as_fd()]).unwrap();
        da.send_with_fds(b"x", &[f[0].as_fd()]).unwrap();
        drop(f);
        results.push(format!("{:?}", b.recv_with_fds(&mut buf, 16).map(|(n, f)| (n, f.len()))));
        results.push(format!("{:?}", qb.recv_with_fds(&mut buf, 16).map(|(n, f)| (n, f.len()))));
        results.push(format!("{:?}", db.recv_from_with_fds(&mut buf, 16).map(|(n, f, _)| (n, f.len()))));
        a.send(b"y").unwrap();
        qa.send(b"y").unwrap();
        da.send(b"y").unwrap();
        b.recv(&mut buf).unwrap();
        qb.recv(&mut buf).unwrap();
        db.recv_from(&mut buf).unwrap();
    }
    let after = open_fds();
    eprintln!("with SO_PASSPIDFD, 1 descriptor sent, 16 asked for: {:?}", &results[..3]);
    let pidfds = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().contains("pidfd")))
        .count();
    assert_eq!(
        after,
        before,
        "{} descriptors leaked ({pidfds} of them pidfds); results: {:?}",
        after - before,
        &results[..3]
    );
}

// SO_PASSCRED set on the receiving socket: the credentials take the room
// of the descriptors asked for, and descriptors that were within
// `max_fds` are closed and reported as FdsTruncated.
fn passcred_does_not_cut_descriptors_that_fit() {
    let (a, b) = SeqpacketSocket::pair().unwrap();
    set_passcred(b.as_raw_fd());
    let f = fresh_fds(2);
    a.send_with_fds(b"x", &[f[0].as_fd(), f[1].as_fd()]).unwrap();
    let mut buf = [0u8; 4];
    let r = b.recv_with_fds(&mut buf, 8).map(|(n, f)| (n, f.len()));
    assert!(matches!(r, Ok((1, 2))), "2 descriptors sent, 8 asked for, SO_PASSCRED set: {r:?}");
}

fn accept_out_of_descriptors_is_typed_and_keeps_the_connection() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let dir = ScratchDir::new();
    let name = name_in(&dir, "s");
    let l = StreamListener::bind(&name).unwrap();
    let c = StreamSocket::connect(&name).unwrap();
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 256, hard).unwrap();
    let mut filler: Vec<OwnedFd> = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        filler.push(f.into());
    }
    let r = l.accept_timeout(Duration::from_secs(1)).map(drop);
    let r2 = StreamSocket::connect(&name).map(drop);
    drop(filler);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    assert!(matches!(r, Err(Error::OutOfDescriptors { .. })), "{r:?}");
    assert!(matches!(r2, Err(Error::OutOfDescriptors { .. })), "{r2:?}");
    let s = l.accept_timeout(Duration::from_secs(1)).unwrap();
    c.send(b"k").unwrap();
    let mut b = [0u8; 1];
    assert_eq!(s.recv(&mut b).unwrap(), 1);
}

// A receiver that never reads: an unconnected sender's timed send_to must
// wait for room, not spin (poll on an unconnected datagram socket says
// "writable" whatever the receiver's queue).
fn send_to_a_full_receiver_waits_without_spinning() {
    let dir = ScratchDir::new();
    let r = DatagramSocket::bind(&name_in(&dir, "r")).unwrap();
    let to = r.name().unwrap().clone();
    let u = DatagramSocket::unbound().unwrap();
    let mut n = 0;
    while u.try_send_to(b"fill", &to).is_ok() {
        n += 1;
        assert!(n < 1_000_000);
    }
    // Connected: the same wait, for comparison.
    let c = DatagramSocket::unbound().unwrap();
    c.connect(&to).unwrap();
    let (cpu0, t0) = (process_cpu(), Instant::now());
    let connected = c.send_timeout(b"x", Duration::from_secs(1));
    let (cpu_connected, wall_connected) = (process_cpu() - cpu0, t0.elapsed());
    let (cpu0, t0) = (process_cpu(), Instant::now());
    let unconnected = u.send_to_timeout(b"x", &to, Duration::from_secs(1));
    let (cpu_unconnected, wall) = (process_cpu() - cpu0, t0.elapsed());
    assert!(matches!(connected, Err(Error::Timeout)), "{connected:?}");
    assert!(matches!(unconnected, Err(Error::Timeout)), "{unconnected:?}");
    assert!(
        cpu_unconnected < Duration::from_millis(200),
        "send_to_timeout(1 s) to a full receiver: {cpu_unconnected:?} of CPU in {wall:?} \
         (connected send_timeout: {cpu_connected:?} of CPU in {wall_connected:?})"
    );
    drop(r);
}
