//! Shared memory across real processes: System V segments, POSIX objects,
//! memfds and anonymous mappings; hostile peers and bad input.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use ipc_kit::pipe::ChildFds;
use ipc_kit::shm::{Error, Key, Mapping, Memfd, PosixShm, SysvSegment};
use ipc_kit::sync::{Event, Mutex};
use ipc_kit_tests::{Refusal, ScratchDir, SysvKind, cases, checksum, fork, helper_command, pattern, unique_name};

cases!("shm", helpers [
    "sysv-shm-by-path" => sysv_shm_helper,
    "posix-shm-by-name" => posix_shm_helper,
    "memfd-at-fd3" => memfd_helper,
]:
    sysv_segment_by_path_key_in_exec_child,
    posix_shm_by_name_in_exec_child,
    memfd_inherited_across_exec,
    anonymous_mapping_across_fork,
    segment_marked_for_removal_stays_usable,
    segment_stat_counts_attachments,
    posix_shm_shrunk_by_peer,
    memfd_seal_refuses_truncation,
    wrong_sizes_and_bad_input,
    permission_denied_for_nobody,
    posix_open_or_create_leaves_a_small_object_alone,
    posix_names_dot_and_dotdot_are_invalid,
    posix_shm_shrunk_during_copies_gives_truncated_not_sigbus,
    named_channel_shrunk_while_streaming_gives_truncated,
    sigbus_outside_ipc_kit_mappings_still_kills,
    posix_creator_stalled_inside_creation_is_not_taken_over,
    posix_creator_killed_inside_creation_leaves_nothing,
    sigbus_sent_by_a_process_still_kills,
    sigbus_sent_goes_to_the_handler_installed_before,
    named_objects_and_their_sides_hold_only_close_on_exec_fds,
    forked_child_dropping_inherited_owner_handles_removes_nothing,
);

const SIZE: usize = 1 << 20;

/// What the helpers do with a mapping: check the parent's pattern in the
/// first half, write their own into the second half.
fn check_and_answer(map: &Mapping) {
    let mut got = vec![0; SIZE / 2];
    map.read_bytes(0, &mut got).unwrap();
    assert!(got == pattern(1, SIZE / 2), "the helper saw other bytes");
    map.write_bytes(SIZE / 2, &pattern(2, SIZE / 2)).unwrap();
}

fn answered(map: &Mapping) -> bool {
    let mut got = vec![0; SIZE / 2];
    map.read_bytes(SIZE / 2, &mut got).unwrap();
    checksum(&got) == checksum(&pattern(2, SIZE / 2))
}

fn sysv_shm_helper(args: &[String]) {
    let key = Key::from_path(&args[0], b'm').unwrap();
    let seg = SysvSegment::open(key, SIZE).unwrap();
    assert!(!seg.is_owner());
    check_and_answer(&seg.attach().unwrap());
}

fn sysv_segment_by_path_key_in_exec_child() {
    let dir = ScratchDir::new();
    let path = dir.path().join("rendezvous");
    std::fs::write(&path, b"").unwrap();
    let seg = SysvSegment::create(Key::from_path(&path, b'm').unwrap(), SIZE, 0o600).unwrap();
    let map = seg.attach().unwrap();
    map.write_bytes(0, &pattern(1, SIZE / 2)).unwrap();
    let status = helper_command("sysv-shm-by-path", &[path.to_str().unwrap()]).status().unwrap();
    assert!(status.success(), "helper: {status}");
    assert!(answered(&map));
}

fn posix_shm_helper(args: &[String]) {
    let shm = PosixShm::open(&args[0]).unwrap();
    check_and_answer(&shm.map().unwrap());
}

fn posix_shm_by_name_in_exec_child() {
    let name = format!("/{}", unique_name("ipc-kit-test-shm"));
    let shm = PosixShm::create(&name, SIZE, 0o600).unwrap();
    let map = shm.map().unwrap();
    map.write_bytes(0, &pattern(1, SIZE / 2)).unwrap();
    let status = helper_command("posix-shm-by-name", &[&name]).status().unwrap();
    assert!(status.success(), "helper: {status}");
    assert!(answered(&map));
    drop(shm);
    assert!(matches!(PosixShm::open(&name), Err(Error::NotFound { .. })), "the owner unlinked it");
    assert!(answered(&map), "the mapping outlives the name");
}

fn memfd_helper(_: &[String]) {
    // Fd 3 was given to us; reopening it through /proc gives an fd of our
    // own to the same memory, and no fd number is taken over unchecked.
    let fd: OwnedFd = std::fs::File::options().read(true).write(true).open("/proc/self/fd/3").unwrap().into();
    let mem = Memfd::from_fd(fd).unwrap();
    assert_eq!(mem.len(), SIZE);
    check_and_answer(&mem.map().unwrap());
}

fn memfd_inherited_across_exec() {
    let mem = Memfd::create("ipc-kit-test", SIZE).unwrap();
    let map = mem.map().unwrap();
    map.write_bytes(0, &pattern(1, SIZE / 2)).unwrap();
    let mut cmd = helper_command("memfd-at-fd3", &[]);
    let mut fds = ChildFds::new();
    fds.insert(3, mem.try_clone_fd().unwrap()).unwrap();
    fds.apply(&mut cmd);
    let status = cmd.status().unwrap();
    assert!(status.success(), "helper: {status}");
    assert!(answered(&map));
}

fn anonymous_mapping_across_fork() {
    let map = Mapping::anonymous(SIZE).unwrap();
    map.write_bytes(0, &pattern(1, SIZE / 2)).unwrap();
    let child = fork(|| check_and_answer(&map));
    child.join();
    assert!(answered(&map));
}

fn segment_marked_for_removal_stays_usable() {
    let dir = ScratchDir::new();
    let key = Key::from_path(dir.path(), b'r').unwrap();
    let seg = SysvSegment::create(key, 4096, 0o600).unwrap();
    let id = seg.id();
    let map = seg.attach().unwrap();
    let listed = || {
        std::fs::read_to_string("/proc/sysvipc/shm")
            .unwrap()
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1) == Some(&id.to_string()))
    };
    seg.remove().unwrap();
    assert!(listed(), "still there while attached");
    assert!(matches!(SysvSegment::open(key, 0), Err(Error::NotFound { .. })), "the key finds it no more");
    assert!(SysvSegment::open_id(id, 0).unwrap().stat().unwrap().marked_for_removal);
    // Both processes keep using it, coordinating through it.
    let child = fork(|| {
        let m = map.shared::<Mutex<u64>>(0).unwrap();
        *m.lock().unwrap() += 1;
        map.shared::<Event>(64).unwrap().set();
    });
    map.shared::<Event>(64).unwrap().wait_timeout(Duration::from_secs(10)).unwrap();
    child.join();
    assert_eq!(*map.shared::<Mutex<u64>>(0).unwrap().lock().unwrap(), 1);
    drop(map);
    assert!(!listed(), "gone with the last attachment");
}

fn segment_stat_counts_attachments() {
    let seg = SysvSegment::create(Key::private(), 8192, 0o640).unwrap();
    let st = seg.stat().unwrap();
    assert_eq!((st.size, st.attach_count, st.mode), (8192, 0, 0o640));
    assert_eq!(st.creator_pid, std::process::id() as i32);
    assert!(st.attached_at.is_none());
    let map = seg.attach().unwrap();
    let go = || map.shared::<Event>(0).unwrap();
    let child = fork(|| {
        let other = seg.attach_read_only().unwrap();
        assert_eq!(other.read::<u32>(1024).unwrap(), 0);
        go().wait_timeout(Duration::from_secs(10)).unwrap();
    });
    std::thread::sleep(Duration::from_millis(50));
    // Ours, the child's inherited copy of ours, and the child's own.
    assert_eq!(seg.stat().unwrap().attach_count, 3);
    go().set();
    child.join();
    let st = seg.stat().unwrap();
    assert_eq!(st.attach_count, 1);
    assert!(st.attached_at.is_some() && st.detached_at.is_some());
}

fn posix_shm_shrunk_by_peer() {
    let name = format!("/{}", unique_name("ipc-kit-test-shm"));
    let shm = PosixShm::create(&name, 4 * 4096, 0o600).unwrap();
    let map = shm.map().unwrap();
    map.write(0, &1u64).unwrap();
    let peer = fork(|| {
        let p = PosixShm::open(&name).unwrap();
        p.set_size(4096).unwrap(); // hostile: shrink it under the creator
    });
    peer.join();
    // What is left still reads; what is gone is an error, not SIGBUS.
    assert_eq!(map.read::<u64>(0).unwrap(), 1);
    match map.read::<u64>(3 * 4096) {
        Err(Error::Truncated { size: 4096, needed }) => assert_eq!(needed, 3 * 4096 + 8),
        other => panic!("expected Truncated, got {other:?}"),
    }
    assert!(matches!(map.write_bytes(8000, &[1; 200]), Err(Error::Truncated { .. })));
    let mut buf = [0; 16];
    assert!(matches!(map.read_bytes(4 * 4096 - 16, &mut buf), Err(Error::Truncated { .. })));
    assert!(matches!(shm.map_len(2 * 4096), Err(Error::TooSmall { size: 4096, .. })));
}

fn memfd_seal_refuses_truncation() {
    let mem = Memfd::create("ipc-kit-test", 4 * 4096).unwrap();
    let map = mem.map().unwrap();
    map.write(3 * 4096, &5u64).unwrap();
    let fd = mem.try_clone_fd().unwrap();
    let peer = fork(move || {
        let file = std::fs::File::from(fd);
        let e = file.set_len(0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "the seal refuses shrinking");
        file.set_len(8 * 4096).unwrap(); // growing is allowed
    });
    peer.join();
    assert_eq!(map.read::<u64>(3 * 4096).unwrap(), 5);
    // A memfd without the seal is refused: a peer could shrink it.
    let unsealed = nix::sys::memfd::memfd_create("unsealed", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
    nix::unistd::ftruncate(&unsealed, 4096).unwrap();
    assert!(matches!(Memfd::from_fd(unsealed), Err(Error::NotSealed)));
    let file: OwnedFd = std::fs::File::open("/proc/self/exe").unwrap().into();
    assert!(matches!(Memfd::from_fd(file), Err(Error::NotSealed)), "not a memfd at all");
}

fn wrong_sizes_and_bad_input() {
    let dir = ScratchDir::new();
    let path = dir.path().join("key");
    std::fs::write(&path, b"").unwrap();
    let key = Key::from_path(&path, b'w').unwrap();
    let seg = SysvSegment::create(key, 4096, 0o600).unwrap();
    match SysvSegment::open(key, 8192) {
        Err(Error::TooSmall { size: 4096, needed: 8192, .. }) => {}
        other => panic!("expected TooSmall, got {other:?}"),
    }
    assert!(matches!(SysvSegment::create(key, 4096, 0o600), Err(Error::AlreadyExists { .. })));
    assert!(matches!(SysvSegment::open(Key::private(), 1), Err(Error::InvalidKey { .. })));
    assert!(matches!(SysvSegment::create(Key::private(), 0, 0o600), Err(Error::InvalidSize { .. })));
    let ro = seg.attach_read_only().unwrap();
    assert!(matches!(ro.write(0, &1u8), Err(Error::ReadOnly)));
    assert!(matches!(ro.shared::<Event>(0), Err(Error::ReadOnly)));
    let rw = seg.attach().unwrap();
    assert!(matches!(rw.read::<u64>(4090), Err(Error::OutOfBounds { offset: 4090, len: 8, size: 4096 })));
    assert!(matches!(rw.read::<u64>(usize::MAX), Err(Error::OutOfBounds { .. })));
    assert!(matches!(rw.read::<u32>(2), Err(Error::Misaligned { offset: 2, align: 4, .. })));
    assert!(matches!(rw.shared::<Event>(4092), Err(Error::OutOfBounds { .. })));
    let long = format!("/{}", "x".repeat(256));
    for bad in ["no-slash", "/", "/a/b", "/nul\0", long.as_str()] {
        assert!(matches!(PosixShm::create(bad, 4096, 0o600), Err(Error::InvalidName { .. })), "{bad:?}");
    }
    let name = format!("/{}", unique_name("ipc-kit-test-shm"));
    assert!(matches!(PosixShm::create(&name, 0, 0o600), Err(Error::InvalidSize { .. })));
    assert!(matches!(PosixShm::open(&name), Err(Error::NotFound { .. })));
    let shm = PosixShm::create(&name, 4096, 0o600).unwrap();
    assert!(matches!(shm.map_len(8192), Err(Error::TooSmall { .. })));
    let ro = PosixShm::open_read_only(&name).unwrap();
    assert!(matches!(ro.map().unwrap().write(0, &1u8), Err(Error::ReadOnly)));
    assert!(matches!(ro.set_size(1), Err(Error::ReadOnly)));
    assert!(matches!(Memfd::create("x", 0), Err(Error::InvalidSize { .. })));
    assert!(matches!(Memfd::create("nul\0", 1), Err(Error::InvalidName { .. })));
    assert!(matches!(Mapping::anonymous(0), Err(Error::InvalidSize { .. })));
}

/// A caller the objects' modes refuse (see [`Refusal`]) gets
/// `PermissionDenied`, by key, by id and by name.
fn permission_denied_for_nobody() {
    let refusal = Refusal::here();
    let key = Key::new(0x1d00_0000 | (std::process::id() as i32 & 0xffff)).unwrap();
    let seg = SysvSegment::create(key, 4096, 0o600).unwrap();
    refusal.apply_to_sysv(SysvKind::Segment, seg.id());
    let name = format!("/{}", unique_name("ipc-kit-test-shm"));
    let shm = PosixShm::create(&name, 4096, 0o600).unwrap();
    refusal.apply_to_path(&std::path::Path::new("/dev/shm").join(&name[1..]));
    let id = seg.id();
    let child = fork(|| {
        refusal.become_caller();
        assert!(matches!(SysvSegment::open(key, 1), Err(Error::PermissionDenied { .. })));
        assert!(matches!(SysvSegment::open_id(id, 1), Err(Error::PermissionDenied { .. })));
        assert!(matches!(PosixShm::open(&name), Err(Error::PermissionDenied { .. })));
        assert!(matches!(PosixShm::open_read_only(&name), Err(Error::PermissionDenied { .. })));
    });
    child.join();
    drop((seg, shm));
}

/// An object found by `open_or_create` that is empty or smaller than
/// asked (made by a process that is slow to size it, or that died before
/// it could) is left alone: no grace period ends in taking it over, and
/// the call says at once that it is too small. Once its maker sizes it,
/// `open_or_create` opens it.
fn posix_open_or_create_leaves_a_small_object_alone() {
    let name = format!("/{}", unique_name("ipc-kit-test-shm"));
    let mut slow = PosixShm::create(&name, 4096, 0o600).unwrap();
    slow.set_size(0).unwrap(); // as if between its shm_open and ftruncate
    match PosixShm::open_or_create(&name, 8192, 0o600) {
        Err(Error::TooSmall { size: 0, needed: 8192, .. }) => {}
        other => panic!("expected TooSmall, got {other:?}"),
    }
    assert_eq!(slow.size().unwrap(), 0, "nobody sized it but its maker");
    let sizer = fork(|| PosixShm::open(&name).unwrap().set_size(12288).unwrap());
    sizer.join();
    let opened = PosixShm::open_or_create(&name, 8192, 0o600).unwrap();
    assert!(!opened.is_owner());
    assert_eq!(opened.map().unwrap().len(), 12288);
    assert!(matches!(PosixShm::open_or_create(&name, 16384, 0o600), Err(Error::TooSmall { size: 12288, .. })));
    slow.unlink().unwrap();
}

/// `/.` and `/..` name directories (glibc opens POSIX names as paths under
/// /dev/shm; `/..` is /dev itself): every POSIX object refuses them as
/// names, in every spelling the public API takes, before any system call.
fn posix_names_dot_and_dotdot_are_invalid() {
    use ipc_kit::msgq::{Error as MqError, PosixQueue, QueueAttr};
    use ipc_kit::shm::{ByteChannel, Channel};
    use ipc_kit::sync::{Error as SyncError, NamedSemaphore};
    for bad in ["/.", "/.."] {
        let shm_invalid = |r: Result<PosixShm, Error>| matches!(r, Err(Error::InvalidName { .. }));
        assert!(
            shm_invalid(PosixShm::open_read_only(bad)),
            "PosixShm::open_read_only({bad:?}) must not open a directory"
        );
        assert!(shm_invalid(PosixShm::open(bad)), "PosixShm::open({bad:?})");
        assert!(shm_invalid(PosixShm::create(bad, 4096, 0o600)), "PosixShm::create({bad:?})");
        assert!(shm_invalid(PosixShm::open_or_create(bad, 4096, 0o600)), "PosixShm::open_or_create({bad:?})");
        assert!(matches!(Channel::<u64>::open(bad), Err(Error::InvalidName { .. })), "Channel::open({bad:?})");
        assert!(matches!(Channel::<u64>::create(bad, 64), Err(Error::InvalidName { .. })), "Channel::create");
        assert!(matches!(ByteChannel::open(bad), Err(Error::InvalidName { .. })), "ByteChannel::open({bad:?})");
        let sem_invalid = |r: Result<NamedSemaphore, SyncError>| matches!(r, Err(SyncError::InvalidArgument { .. }));
        assert!(sem_invalid(NamedSemaphore::open(bad)), "NamedSemaphore::open({bad:?})");
        assert!(sem_invalid(NamedSemaphore::create(bad, 0, 0o600)), "NamedSemaphore::create({bad:?})");
        assert!(sem_invalid(NamedSemaphore::open_or_create(bad, 0, 0o600)), "NamedSemaphore::open_or_create");
        let mq_invalid = |r: Result<PosixQueue, MqError>| matches!(r, Err(MqError::InvalidName { .. }));
        assert!(mq_invalid(PosixQueue::open(bad)), "PosixQueue::open({bad:?})");
        assert!(mq_invalid(PosixQueue::create(bad, QueueAttr::default(), 0o600)), "PosixQueue::create({bad:?})");
        assert!(mq_invalid(PosixQueue::open_or_create(bad, QueueAttr::default(), 0o600)), "PosixQueue::open_or_create");
    }
    // Dots inside a longer name are ordinary characters.
    for good in ["/...", "/.x", "/x.."] {
        let name = format!("{good}{}", unique_name("-ipc-kit-test-shm"));
        let shm = PosixShm::create(&name, 4096, 0o600).unwrap();
        assert_eq!(PosixShm::open_read_only(&name).unwrap().size().unwrap(), 4096, "{name:?}");
        drop(shm);
    }
}

/// A peer shrinks a POSIX object to nothing while the victim copies 8 MiB
/// in and out of its mapping, again and again: the shrink lands between
/// the size check and the end of a copy, where the victim's access meets
/// pages past the end of the file. The victim gets `Truncated` (and keeps
/// getting it from that mapping), never dies of SIGBUS, and goes on to map
/// and use the object again once it has grown back.
fn posix_shm_shrunk_during_copies_gives_truncated_not_sigbus() {
    use std::sync::atomic::{AtomicU64, Ordering};
    const BIG: usize = 8 << 20;
    let mut rng = ipc_kit_tests::Rng::new(u64::from(std::process::id()));
    let progress = Mapping::anonymous(4096).unwrap();
    let copied = progress.shared::<AtomicU64>(0).unwrap();
    for round in 0..6 {
        let name = format!("/{}", unique_name("ipc-kit-test-shm"));
        let shm = PosixShm::create(&name, BIG, 0o600).unwrap();
        copied.store(0, Ordering::SeqCst);
        let mut victim = fork(|| {
            let map = shm.map().unwrap();
            let data = pattern(round, BIG);
            let mut buf = vec![0; BIG];
            let give_up = Instant::now() + Duration::from_secs(10);
            let mut copies = 0u64;
            loop {
                let r = if copies.is_multiple_of(2) { map.write_bytes(0, &data) } else { map.read_bytes(0, &mut buf) };
                match r {
                    Ok(()) => {
                        copies += 1;
                        copied.store(copies, Ordering::SeqCst);
                    }
                    Err(Error::Truncated { needed, .. }) => {
                        assert!(needed > 0 && needed <= BIG as u64, "needed {needed}");
                        break;
                    }
                    Err(e) => panic!("copy {copies}: expected Ok or Truncated, got {e:?}"),
                }
                assert!(Instant::now() < give_up, "the shrink was never noticed");
            }
            // The mapping met the shrink: it keeps refusing.
            assert!(matches!(map.read_bytes(0, &mut buf[..8]), Err(Error::Truncated { .. })));
            assert!(matches!(map.write(0, &1u64), Err(Error::Truncated { .. })));
            // The process runs on: once the object has grown again, a new
            // mapping of it works.
            shm.set_size(4096).unwrap();
            let again = shm.map().unwrap();
            again.write(0, &0x5eed_u64).unwrap();
            assert_eq!(again.read::<u64>(0).unwrap(), 0x5eed);
        });
        // Once it copies in full swing, at a random moment.
        let give_up = Instant::now() + Duration::from_secs(10);
        while copied.load(Ordering::SeqCst) < 2 && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(rng.below(5000)));
        shm.set_size(0).unwrap(); // hostile: shrink it under the copier
        match victim.wait_timeout(Duration::from_secs(20)) {
            Some(ipc_kit_tests::Exit::Code(0)) => {}
            other => panic!("round {round}: the victim ended with {other:?} (SIGBUS is the bug)"),
        }
    }
}

/// A third process shrinks a named channel's object to nothing while a
/// sender streams into it and this process receives: the receiver gets
/// `Truncated` (every message it got before is whole and in order), keeps
/// getting it, and lives; the sender lives too. Both kinds of channel.
fn named_channel_shrunk_while_streaming_gives_truncated() {
    use ipc_kit::shm::{ByteChannel, Channel};
    type Msg = [u64; 64];
    let shrink_soon = |name: String| {
        fork(move || {
            std::thread::sleep(Duration::from_millis(30));
            PosixShm::open(&name).unwrap().set_size(0).unwrap();
        })
    };
    let sender_lived = |mut sender: ipc_kit_tests::Forked| match sender.wait_timeout(Duration::from_secs(20)) {
        Some(ipc_kit_tests::Exit::Code(0)) => {}
        other => panic!("the sender ended with {other:?}"),
    };

    // Fixed slots.
    let name = format!("/{}", unique_name("ipc-kit-test-chan"));
    let chan = Channel::<Msg>::create(&name, 64).unwrap();
    let sender = fork(|| {
        let c = Channel::<Msg>::open(&name).unwrap();
        let mut tx = c.sender().unwrap();
        let mut i = 0;
        while tx.send_timeout([i; 64], Duration::from_secs(5)).is_ok() {
            i += 1;
        }
    });
    let mut rx = chan.receiver().unwrap();
    // The shrinking starts once the stream flows (the first message is
    // in), so a slow start of the sender cannot meet a file already empty.
    let mut shrinker = None;
    let mut got = 0;
    let e = loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(m) => {
                assert!(m.iter().all(|&x| x == got), "message {got} is {:?}...", &m[..4]);
                got += 1;
                shrinker.get_or_insert_with(|| shrink_soon(name.clone()));
            }
            Err(e) => break e,
        }
    };
    assert!(matches!(e, Error::Truncated { .. }), "slots: expected Truncated after {got} messages, got {e:?}");
    assert!(matches!(rx.try_recv(), Err(Error::Truncated { .. })), "it stays truncated");
    shrinker.expect("a message came before the shrink").join();
    sender_lived(sender);
    drop((rx, chan));

    // Byte records.
    let name = format!("/{}", unique_name("ipc-kit-test-chan"));
    let chan = ByteChannel::create(&name, 1 << 16).unwrap();
    let sender = fork(|| {
        let c = ByteChannel::open(&name).unwrap();
        let mut tx = c.sender().unwrap();
        let mut i = 0u64;
        while tx.send_timeout(&pattern(i, 1000 + (i % 7) as usize * 100), Duration::from_secs(5)).is_ok() {
            i += 1;
        }
    });
    let mut rx = chan.receiver().unwrap();
    let mut shrinker = None;
    let mut got = 0u64;
    let mut buf = Vec::new();
    let e = loop {
        match rx.recv_timeout(&mut buf, Duration::from_secs(10)) {
            Ok(_) => {
                assert!(buf == pattern(got, 1000 + (got % 7) as usize * 100), "record {got} differs");
                got += 1;
                shrinker.get_or_insert_with(|| shrink_soon(name.clone()));
            }
            Err(e) => break e,
        }
    };
    assert!(matches!(e, Error::Truncated { .. }), "bytes: expected Truncated after {got} records, got {e:?}");
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::Truncated { .. })), "it stays truncated");
    shrinker.expect("a record came before the shrink").join();
    sender_lived(sender);
}

/// ipc-kit's SIGBUS handler takes only faults inside its own mappings of
/// POSIX objects. In a process where it is installed (and has just handled
/// a fault in such a mapping, through a view), a fault in a raw mapping
/// of a shrunk file made without ipc-kit still kills the process with
/// SIGBUS, as it would without ipc-kit.
fn sigbus_outside_ipc_kit_mappings_still_kills() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let name = format!("/{}", unique_name("ipc-kit-test-shm"));
    let shm = PosixShm::create(&name, 4 * 4096, 0o600).unwrap();
    let steps = Mapping::anonymous(4096).unwrap();
    let step = steps.shared::<AtomicU64>(0).unwrap();
    let mut child = fork(|| {
        let map = shm.map().unwrap();
        let word = map.shared::<AtomicU64>(2 * 4096).unwrap();
        word.store(7, Ordering::Relaxed);
        shm.set_size(4096).unwrap();
        // A view has no check of its own: the access faults, and the
        // handler puts zeros of our own under it.
        assert_eq!(word.load(Ordering::Relaxed), 0);
        assert!(matches!(map.read::<u64>(0), Err(Error::Truncated { .. })), "the mapping is marked");
        step.store(1, Ordering::SeqCst);
        let byte = ipc_kit_tests::read_past_end_of_raw_shrunk_file().unwrap();
        step.store(2, Ordering::SeqCst);
        panic!("read {byte} past the end of a shrunk file and lived");
    });
    match child.wait_timeout(Duration::from_secs(20)) {
        Some(ipc_kit_tests::Exit::Signaled(nix::sys::signal::Signal::SIGBUS)) => {}
        other => panic!("the child ended with {other:?}, not by SIGBUS"),
    }
    assert_eq!(step.load(Ordering::SeqCst), 1, "the fault in ipc-kit's mapping was survived; the raw one killed");
}

/// Stops a forked creator at `point` inside `PosixShm` creation and waits
/// until it has stopped.
fn stalled_creator(point: &'static str, create: impl FnOnce()) -> ipc_kit_tests::Forked {
    let creator = fork(|| {
        ipc_kit::sync::failpoint::arm_stop(point);
        create();
    });
    match nix::sys::wait::waitpid(creator.pid(), Some(nix::sys::wait::WaitPidFlag::WUNTRACED)) {
        Ok(nix::sys::wait::WaitStatus::Stopped(_, nix::sys::signal::Signal::SIGSTOP)) => {}
        other => panic!("the creator did not stop at {point}: {other:?}"),
    }
    creator
}

/// A creator stalled (SIGSTOP) inside `PosixShm` creation, at either of
/// its failpoints: meanwhile nobody can open a half-made object, and an
/// opener's `open_or_create` neither waits for it nor takes anything
/// over: it makes the object itself. When the creator resumes, both agree
/// on that one object: an exclusive `create` gets `AlreadyExists`, an
/// `open_or_create` opens the opener's object, bytes and all.
fn posix_creator_stalled_inside_creation_is_not_taken_over() {
    for point in ["posix-shm:opened", "posix-shm:prepared"] {
        for exclusive in [false, true] {
            let name = format!("/{}", unique_name("ipc-kit-test-shm"));
            let mut creator = stalled_creator(point, || {
                if exclusive {
                    match PosixShm::create(&name, 4096, 0o600) {
                        Err(Error::AlreadyExists { .. }) => {}
                        other => panic!("the resumed creator got {other:?}, not AlreadyExists"),
                    }
                } else {
                    let shm = PosixShm::open_or_create(&name, 4096, 0o600).unwrap();
                    assert!(!shm.is_owner(), "the resumed creator took the name over");
                    assert_eq!(shm.size().unwrap(), 8192, "the opener's object, unresized");
                    assert_eq!(shm.map().unwrap().read::<u64>(0).unwrap(), 0x0bec7, "the opener's bytes");
                }
            });
            assert!(
                matches!(PosixShm::open(&name), Err(Error::NotFound { .. })),
                "{point}: a half-made object is visible under its name"
            );
            let opened = PosixShm::open_or_create(&name, 8192, 0o600).unwrap();
            assert!(opened.is_owner(), "{point}: the opener made it itself");
            assert_eq!(opened.size().unwrap(), 8192);
            let map = opened.map().unwrap();
            map.write(0, &0x0bec7_u64).unwrap();
            creator.signal(nix::sys::signal::Signal::SIGCONT);
            match creator.wait_timeout(Duration::from_secs(20)) {
                Some(ipc_kit_tests::Exit::Code(0)) => {}
                other => panic!("{point}, exclusive {exclusive}: the creator ended with {other:?}"),
            }
            assert_eq!(opened.size().unwrap(), 8192, "{point}: the creator did not resize it");
            assert_eq!(map.read::<u64>(0).unwrap(), 0x0bec7);
        }
    }
}

/// A creator SIGKILLed inside `PosixShm` creation, at either failpoint,
/// leaves nothing under the name (nor in /dev/shm): the next `create`
/// and `open_or_create` make the object afresh.
fn posix_creator_killed_inside_creation_leaves_nothing() {
    for point in ["posix-shm:opened", "posix-shm:prepared"] {
        let name = format!("/{}", unique_name("ipc-kit-test-shm"));
        let mut creator = fork(|| {
            ipc_kit::sync::failpoint::arm(point);
            let _ = PosixShm::create(&name, 4096, 0o600);
            unreachable!("the failpoint kills the creator");
        });
        assert_eq!(creator.wait(), ipc_kit_tests::Exit::Signaled(nix::sys::signal::Signal::SIGKILL), "{point}");
        assert!(matches!(PosixShm::open(&name), Err(Error::NotFound { .. })), "{point}: it left an object");
        let file = std::path::Path::new("/dev/shm").join(&name[1..]);
        assert!(!file.exists(), "{point}: it left {}", file.display());
        let shm = PosixShm::create(&name, 4096, 0o600).unwrap();
        assert_eq!(shm.size().unwrap(), 4096);
        drop(shm);
        let shm = PosixShm::open_or_create(&name, 8192, 0o600).unwrap();
        assert!(shm.is_owner());
        assert_eq!(shm.size().unwrap(), 8192);
    }
}

/// A `SIGBUS` that a process sends (not a fault) is not ipc-kit's to
/// handle: in a process where ipc-kit's handler is installed over the
/// default action, it kills as it would without ipc-kit (the handler
/// hands it on by sending it again).
fn sigbus_sent_by_a_process_still_kills() {
    #![allow(unsafe_code)]
    use nix::sys::signal::{SigHandler, Signal, raise, signal};
    let name = format!("/{}", unique_name("ipc-kit-test-shm"));
    let shm = PosixShm::create(&name, 4096, 0o600).unwrap();
    let mut child = fork(|| {
        // std's own SIGBUS handler (for stack overflows) is there first in
        // a Rust program: put the default back under ipc-kit's.
        // SAFETY: SIG_DFL installs no handler code; this process has one
        // thread.
        unsafe { signal(Signal::SIGBUS, SigHandler::SigDfl) }.unwrap();
        let _map = shm.map().unwrap();
        let _ = raise(Signal::SIGBUS);
        panic!("lived through a SIGBUS sent to it");
    });
    match child.wait_timeout(Duration::from_secs(20)) {
        Some(ipc_kit_tests::Exit::Signaled(nix::sys::signal::Signal::SIGBUS)) => {}
        other => panic!("the child ended with {other:?}, not by SIGBUS"),
    }
}

/// How often the handlers that [`sigbus_sent_goes_to_the_handler_installed_before`]
/// installs before ipc-kit's were called, in the child that installs them.
static PREVIOUS_CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn plain_sigbus_handler(_: libc::c_int) {
    PREVIOUS_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

extern "C" fn siginfo_sigbus_handler(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    if !info.is_null() {
        PREVIOUS_CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A `SIGBUS` that a process sends goes on to the handler the program had
/// installed before ipc-kit's, a plain one or one with `SA_SIGINFO`, once
/// for each signal, with the siginfo: the process lives on, its mapping
/// unmarked.
fn sigbus_sent_goes_to_the_handler_installed_before() {
    #![allow(unsafe_code)]
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, raise, sigaction};
    use std::sync::atomic::Ordering;
    let handlers = [SigHandler::Handler(plain_sigbus_handler), SigHandler::SigAction(siginfo_sigbus_handler)];
    for handler in handlers {
        let name = format!("/{}", unique_name("ipc-kit-test-shm"));
        let shm = PosixShm::create(&name, 4096, 0o600).unwrap();
        let mut child = fork(|| {
            let action = SigAction::new(handler, SaFlags::empty(), SigSet::empty());
            // SAFETY: the handler only adds to an atomic; this process has
            // one thread.
            unsafe { sigaction(Signal::SIGBUS, &action) }.unwrap();
            let map = shm.map().unwrap();
            for i in 0..3u64 {
                raise(Signal::SIGBUS).unwrap();
                map.write(0, &i).unwrap();
                assert_eq!(map.read::<u64>(0).unwrap(), i, "the mapping is not marked truncated");
            }
            assert_eq!(PREVIOUS_CALLS.load(Ordering::SeqCst), 3, "the previous handler ran for each signal");
        });
        assert_eq!(child.wait_timeout(Duration::from_secs(20)), Some(ipc_kit_tests::Exit::Code(0)), "{handler:?}");
    }
}

/// The fds open in this process, each with whether it is close-on-exec
/// (the `O_CLOEXEC` bit of the flags /proc/self/fdinfo shows). The fd that
/// listed the directory is closed by then, and left out.
fn fds_and_cloexec() -> Vec<(i32, bool)> {
    let listed: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    let cloexec = |fd: i32| {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
        Some(u32::from_str_radix(flags.trim(), 8).unwrap() & libc::O_CLOEXEC as u32 != 0)
    };
    listed.into_iter().filter_map(|fd| Some((fd, cloexec(fd)?))).collect()
}

/// Every fd that POSIX objects (made unnamed with `O_TMPFILE` and linked,
/// opened with `shm_open`), a named channel with both sides claimed (each
/// side's own description, opened through /proc/self/fd/N) and an eventfd
/// hold is close-on-exec: an exec'd program inherits none of them unasked.
fn named_objects_and_their_sides_hold_only_close_on_exec_fds() {
    use ipc_kit::shm::Channel;
    use ipc_kit::sync::{EventFd, EventFdMode};
    let before: Vec<i32> = fds_and_cloexec().into_iter().map(|(fd, _)| fd).collect();
    let name = format!("/{}", unique_name("ipc-kit-test-shm"));
    let made = PosixShm::create(&name, 4096, 0o600).unwrap();
    let opened = PosixShm::open(&name).unwrap();
    let read_only = PosixShm::open_read_only(&name).unwrap();
    let chan_name = format!("/{}", unique_name("ipc-kit-test-chan"));
    let chan = Channel::<u64>::create(&chan_name, 8).unwrap();
    let mut tx = chan.sender().unwrap();
    let peer = Channel::<u64>::open(&chan_name).unwrap();
    let mut rx = peer.receiver().unwrap();
    tx.send(7).unwrap();
    assert_eq!(rx.recv().unwrap(), 7);
    let efd = EventFd::new(0, EventFdMode::Counter).unwrap();
    let new: Vec<_> = fds_and_cloexec().into_iter().filter(|(fd, _)| !before.contains(fd)).collect();
    // Three objects, two channel handles' objects, two sides' descriptions
    // and the eventfd.
    assert!(new.len() >= 8, "fewer new fds than handles: {new:?}");
    for (fd, cloexec) in new {
        assert!(cloexec, "fd {fd} ({:?}) is inherited across exec", std::fs::read_link(format!("/proc/self/fd/{fd}")));
    }
    drop((made, opened, read_only, tx, rx, chan, peer, efd));
}

/// A child forked after this process made a POSIX object, a System V
/// segment and a named channel drops its copies of the handles, each the
/// owner's as inherited: only the process that made an object removes it,
/// so all three stay, usable, until their maker drops its own.
fn forked_child_dropping_inherited_owner_handles_removes_nothing() {
    use ipc_kit::shm::Channel;
    use std::cell::RefCell;
    let name = format!("/{}", unique_name("ipc-kit-test-shm"));
    let chan_name = format!("/{}", unique_name("ipc-kit-test-chan"));
    let shm = RefCell::new(Some(PosixShm::create(&name, 4096, 0o600).unwrap()));
    let seg = RefCell::new(Some(SysvSegment::create(Key::private(), 4096, 0o600).unwrap()));
    let chan = RefCell::new(Some(Channel::<u64>::create(&chan_name, 8).unwrap()));
    let child = fork(|| {
        let (s, g) = (shm.borrow_mut().take().unwrap(), seg.borrow_mut().take().unwrap());
        assert!(!s.is_owner() && !g.is_owner(), "a forked copy of the maker's handle owns nothing");
        drop((s, g, chan.borrow_mut().take()));
    });
    child.join();
    assert!(PosixShm::open(&name).is_ok(), "the child's drop unlinked the maker's object");
    let seg_id = seg.borrow().as_ref().unwrap().id();
    assert!(seg.borrow().as_ref().unwrap().stat().is_ok(), "the child's drop removed segment {seg_id}");
    let mut tx = Channel::<u64>::open(&chan_name).expect("the child's drop unlinked the channel").sender().unwrap();
    tx.send(1).unwrap();
    let shm = shm.borrow_mut().take().unwrap();
    assert!(shm.is_owner());
    drop((shm, seg.borrow_mut().take(), chan.borrow_mut().take(), tx));
    assert!(matches!(PosixShm::open(&name), Err(Error::NotFound { .. })), "the maker unlinked its object");
    assert!(matches!(PosixShm::open(&chan_name), Err(Error::NotFound { .. })), "the maker unlinked its channel");
    assert!(SysvSegment::open_id(seg_id, 0).is_err(), "the maker removed its segment");
}
