//! Publish/subscribe against hostile peers: hostile subscribers (at the
//! socket level), hostile publishers (a fake hub that hands out a ring it
//! scribbles on), option extremes, stalls and descriptor counts. Each case
//! fails when the promise it names is broken.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use ipc_kit::service::{Error, Policy, PubSubOptions, Publisher, Refusal, SocketName, Subscriber};
use ipc_kit::shm::Memfd;
use ipc_kit::socket::{SeqpacketListener, SeqpacketSocket};
use ipc_kit::sync::{Interest, Poller};
use ipc_kit_tests::{Exit, Rng, ScratchDir, cases, fork, process_cpu, thread_cpu};

use crate::service::name_in;

cases!("pubsub_hostile":
    a_hostile_subscriber_that_fills_the_owner_doorbell_does_not_stall_a_blocked_publisher(60 s),
    a_hostile_subscriber_that_fills_the_owner_doorbell_does_not_silence_a_poller_for_room,
    a_huge_handshake_timeout_still_lets_subscribers_in,
    a_zero_handshake_timeout_is_refused_or_works,
    clients_that_never_greet_do_not_keep_others_out,
    a_dead_subscriber_under_block_is_dropped_at_once,
    a_dead_subscriber_is_dropped_at_once_even_with_the_owner_doorbell_filled,
    the_publisher_keeps_no_descriptor_of_members_gone(60 s),
    garbage_on_member_sockets_changes_nothing(30 s),
    a_hostile_publisher_cannot_make_a_subscriber_overflow_its_lag_count,
    a_hostile_publisher_scribbling_never_panics_or_hangs_a_subscriber(60 s),
    a_hostile_publisher_with_bad_handshakes_gets_typed_errors_and_no_leak(60 s),
    huge_and_zero_timeouts_are_honoured,
    a_subscriber_waiting_for_its_start_at_an_idle_publisher_does_not_spin(30 s),
    no_wake_up_is_lost_under_either_policy(90 s),
);

/// Waits until the publisher counts `n` subscribers.
fn until_subscribers(publisher: &Publisher, n: usize) {
    let start = Instant::now();
    while publisher.subscribers() != n {
        assert!(start.elapsed() < Duration::from_secs(20), "{} subscribers, not {n}", publisher.subscribers());
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A subscriber at the socket level (see `pubsub::raw_join`).
fn raw_join(name: &SocketName) -> (u32, Vec<OwnedFd>, SeqpacketSocket) {
    crate::pubsub::raw_join(name, 1)
}

/// A line of figures, in the case's output.
fn note(line: &str) {
    println!("{line}");
}

fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn eventfd() -> OwnedFd {
    // SAFETY: a new descriptor, owned from here on.
    unsafe { OwnedFd::from_raw_fd(libc::eventfd(0, libc::EFD_CLOEXEC)) }
}

/// Fills an eventfd's counter to its maximum (0xffff_ffff_ffff_fffe).
fn saturate(bell: &OwnedFd) {
    // Greedy, from the largest power of two down: whatever it held, the
    // counter ends at the maximum.
    let mut v = 1u64 << 63;
    while v > 0 {
        let _ = nix::unistd::write(bell, &v.min(0xffff_ffff_ffff_fffe).to_ne_bytes());
        v >>= 1;
    }
    assert!(nix::unistd::write(bell, &1u64.to_ne_bytes()).is_err(), "not full");
}

/// Publisher of `Block`, capacity 8; one honest subscriber child that
/// reads `n` messages when told through a pipe; one hostile raw member
/// that (if `fill`) fills the owner's doorbell. Returns how long the
/// publisher took to publish `n` more once the ring was full.
fn blocked_publisher_timing(fill: bool, n: u64) -> Duration {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let options = PubSubOptions { capacity: 8, max_message: 8, ..PubSubOptions::default() };
    let mut publisher = Publisher::bind(&name, options).unwrap();
    let (go_r, go_w) = std::io::pipe().unwrap();
    let mut honest = fork(|| {
        let mut sub = Subscriber::connect(&name).unwrap();
        let mut b = [0u8; 1];
        nix::unistd::read(&go_r, &mut b).unwrap();
        for want in 0..8 + n {
            assert_eq!(sub.recv_pod_timeout::<u64>(Duration::from_secs(30)).unwrap(), want);
            // A little slow: the publisher waits for room now and then.
            if want % 4 == 3 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    until_subscribers(&publisher, 1);
    // Sync the honest one's start at 0 before the hostile joins.
    publisher.publish_pod(&0u64).unwrap();
    let (status, fds, _socket) = raw_join(&name);
    assert_eq!(status, 0);
    until_subscribers(&publisher, 2);
    for i in 1..8u64 {
        publisher.publish_pod(&i).unwrap();
    }
    // The hostile one reports a cursor at the head (clamped): it holds
    // nothing up. It only fills the owner's doorbell.
    let cell = Memfd::from_fd(fds[1].try_clone().unwrap()).unwrap().map().unwrap();
    cell.write::<u64>(0, &u64::MAX).unwrap();
    if fill {
        saturate(&fds[3]);
    }
    assert!(matches!(publisher.try_publish_pod(&8u64), Err(Error::WouldBlock)));
    nix::unistd::write(&go_w, b"g").unwrap();
    let started = Instant::now();
    for i in 8..8 + n {
        publisher.publish_pod_timeout(&i, Duration::from_secs(30)).unwrap();
    }
    let took = started.elapsed();
    assert_eq!(honest.wait_timeout(Duration::from_secs(60)), Some(Exit::Code(0)));
    took
}

// Promise: a hostile subscriber cannot make the publisher misbehave. It
// holds the owner's doorbell, an eventfd: one write of
// 0xffff_ffff_ffff_fffe fills it, so that every try_add(1) of an honest
// subscriber (and of the hub's thread) fails and an edge-triggered epoll
// would see no edge. The publisher empties its doorbell before each wait,
// so it must not be left to its 100 ms recheck: 200 messages past a full
// ring go about as fast as without the attack.
fn a_hostile_subscriber_that_fills_the_owner_doorbell_does_not_stall_a_blocked_publisher() {
    let base = blocked_publisher_timing(false, 200);
    let filled = blocked_publisher_timing(true, 200);
    note(&format!("200 messages past a full ring of 8: {base:?} honest, {filled:?} with the owner's doorbell filled"));
    assert!(
        filled < base * 5 + Duration::from_millis(500),
        "the publisher crawls once a subscriber fills its doorbell: {filled:?} against {base:?}"
    );
}

// As above, through a Poller waiting for the publisher's room: room is
// reported as soon as the honest subscriber read the whole ring, well
// before the 100 ms recheck would find it.
fn a_hostile_subscriber_that_fills_the_owner_doorbell_does_not_silence_a_poller_for_room() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let options = PubSubOptions { capacity: 8, max_message: 8, ..PubSubOptions::default() };
    let mut publisher = Publisher::bind(&name, options).unwrap();
    let (go_r, go_w) = std::io::pipe().unwrap();
    let mut honest = fork(|| {
        let mut sub = Subscriber::connect(&name).unwrap();
        let mut b = [0u8; 1];
        nix::unistd::read(&go_r, &mut b).unwrap();
        for want in 0..8u64 {
            assert_eq!(sub.recv_pod_timeout::<u64>(Duration::from_secs(10)).unwrap(), want);
        }
        std::thread::sleep(Duration::from_secs(5));
    });
    until_subscribers(&publisher, 1);
    publisher.publish_pod(&0u64).unwrap();
    let (_, fds, _socket) = raw_join(&name);
    until_subscribers(&publisher, 2);
    for i in 1..8u64 {
        publisher.publish_pod(&i).unwrap();
    }
    let cell = Memfd::from_fd(fds[1].try_clone().unwrap()).unwrap().map().unwrap();
    cell.write::<u64>(0, &u64::MAX).unwrap();
    saturate(&fds[3]);
    assert!(matches!(publisher.try_publish_pod(&8u64), Err(Error::WouldBlock)));
    let mut poller = Poller::new().unwrap();
    poller.add(&publisher, Interest::Writable, 9).unwrap();
    // Armed once (not ready): then the honest one reads the whole ring.
    let first = poller.wait_timeout(Duration::from_millis(50)).unwrap().to_vec();
    assert!(first.is_empty(), "{first:?}");
    nix::unistd::write(&go_w, b"g").unwrap();
    let started = Instant::now();
    let ready = poller.wait_timeout(Duration::from_secs(3)).unwrap().to_vec();
    let took = started.elapsed();
    note(&format!("poller took {took:?}"));
    assert_eq!(ready, [9], "no room reported in {took:?} though the only honest subscriber read everything");
    assert!(took < Duration::from_millis(50), "room reported only after {took:?}");
    honest.kill();
    let _ = honest.wait();
}

// Promise: every wait honours huge timeouts; options that bind must work.
// A handshake_timeout of Duration::MAX binds, then the hub's thread
// computes Instant::now() + handshake_timeout for the first member.
fn a_huge_handshake_timeout_still_lets_subscribers_in() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let options = PubSubOptions { handshake_timeout: Duration::MAX, ..PubSubOptions::default() };
    let Ok(mut publisher) = Publisher::bind(&name, options) else { return };
    let first = Subscriber::connect_timeout(&name, Duration::from_secs(5));
    assert!(first.is_ok(), "the first subscriber: {first:?}");
    let second = Subscriber::connect_timeout(&name, Duration::from_secs(5));
    assert!(second.is_ok(), "the second subscriber: {second:?}");
    publisher.publish(b"x").unwrap();
}

// A handshake_timeout of zero binds (check() takes it) but then no member
// can ever greet in time: it should be refused as an option, or work.
fn a_zero_handshake_timeout_is_refused_or_works() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let options = PubSubOptions { handshake_timeout: Duration::ZERO, ..PubSubOptions::default() };
    match Publisher::bind(&name, options) {
        Err(Error::InvalidOptions { .. }) => {}
        Err(e) => panic!("{e}"),
        Ok(_publisher) => {
            let got = Subscriber::connect_timeout(&name, Duration::from_secs(5));
            assert!(got.is_ok(), "bound with a zero handshake timeout, no one joins: {got:?}");
        }
    }
}

// Promise: a client that connects and never greets must not block others.
// Pending clients count against max_subscribers until handshake_timeout.
fn clients_that_never_greet_do_not_keep_others_out() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let options = PubSubOptions { max_subscribers: 2, ..PubSubOptions::default() };
    let publisher = Publisher::bind(&name, options).unwrap();
    let _mute: Vec<_> =
        (0..2).map(|_| SeqpacketSocket::connect_timeout(&name, Duration::from_secs(5)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let got = Subscriber::connect_timeout(&name, Duration::from_secs(5));
    let took = started.elapsed();
    assert!(got.is_ok(), "two silent clients keep a subscriber out for {took:?}: {got:?}");
    assert!(took < Duration::from_millis(500), "waited {took:?} behind silent clients");
    drop(publisher);
}

// Promise: a dead subscriber is dropped at once under Block.
fn a_dead_subscriber_under_block_is_dropped_at_once() {
    dead_subscriber(false);
}

// The same, with a hostile member that filled the owner's doorbell: the
// hub's thread's ring for the departure is lost too (try_add fails).
fn a_dead_subscriber_is_dropped_at_once_even_with_the_owner_doorbell_filled() {
    dead_subscriber(true);
}

fn dead_subscriber(fill: bool) {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let options = PubSubOptions { capacity: 4, max_message: 8, ..PubSubOptions::default() };
    let mut publisher = Publisher::bind(&name, options).unwrap();
    let child = fork(|| {
        let mut sub = Subscriber::connect(&name).unwrap();
        assert_eq!(sub.recv_pod::<u64>().unwrap(), 0);
        std::thread::sleep(Duration::from_secs(60));
    });
    until_subscribers(&publisher, 1);
    // The ring full: four messages past the honest one's cursor (1).
    for i in 0..5u64 {
        publisher.publish_pod(&i).unwrap();
    }
    let _hostile = fill.then(|| {
        let (_, fds, socket) = raw_join(&name);
        until_subscribers(&publisher, 2);
        let cell = Memfd::from_fd(fds[1].try_clone().unwrap()).unwrap().map().unwrap();
        cell.write::<u64>(0, &u64::MAX).unwrap();
        saturate(&fds[3]);
        (fds, socket, cell)
    });
    let pid = child.pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        Instant::now()
    });
    assert!(matches!(publisher.try_publish_pod(&5u64), Err(Error::WouldBlock)));
    publisher.publish_pod_timeout(&5u64, Duration::from_secs(10)).unwrap();
    let done = Instant::now();
    let killed = killer.join().unwrap();
    assert!(done > killed, "published before the death");
    let after = done.duration_since(killed);
    note(&format!("dead subscriber (doorbell filled: {fill}): dropped after {after:?}"));
    assert!(after < Duration::from_millis(50), "the publisher went on {after:?} after the death");
    let mut child = child;
    let _ = child.wait();
}

// Promise: no descriptor leaks in the publisher's process after many joins
// and leaves (raw members, full subscribers, members killed).
fn the_publisher_keeps_no_descriptor_of_members_gone() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let options = PubSubOptions { capacity: 16, max_message: 8, max_subscribers: 8, ..PubSubOptions::default() };
    let mut publisher = Publisher::bind(&name, options).unwrap();
    publisher.publish_pod(&0u64).unwrap();
    let before = count_fds();
    for round in 0..60 {
        let mut children: Vec<_> = (0..4)
            .map(|k| {
                let name = name.clone();
                fork(move || match k {
                    0 => drop(Subscriber::connect(&name).unwrap()),
                    1 => drop(raw_join(&name)),
                    2 => drop(SeqpacketSocket::connect_timeout(&name, Duration::from_secs(5)).unwrap()),
                    _ => {
                        let _s = Subscriber::connect(&name).unwrap();
                        std::thread::sleep(Duration::from_secs(30));
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(5));
        publisher.publish_pod(&(round as u64)).unwrap();
        children[3].kill();
        for c in &mut children {
            let _ = c.wait_timeout(Duration::from_secs(10));
        }
    }
    until_subscribers(&publisher, 0);
    publisher.publish_pod(&0u64).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let after = count_fds();
    assert!(after <= before, "descriptors: {before} before, {after} after 240 joins and leaves");
}

// Promise: garbage a member sends (bytes, descriptors, a half shutdown)
// changes nothing for the others and leaks nothing in the publisher.
fn garbage_on_member_sockets_changes_nothing() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let options = PubSubOptions { capacity: 16, max_message: 8, ..PubSubOptions::default() };
    let mut publisher = Publisher::bind(&name, options).unwrap();
    let mut honest = fork(|| {
        let mut sub = Subscriber::connect(&name).unwrap();
        for want in 0..5000u64 {
            assert_eq!(sub.recv_pod_timeout::<u64>(Duration::from_secs(10)).unwrap(), want);
        }
    });
    until_subscribers(&publisher, 1);
    publisher.publish_pod(&0u64).unwrap();
    let before = count_fds();
    let mut hostile = fork(|| {
        let (_, fds, s) = raw_join(&name);
        // Its cursor at the head (clamped): it holds nothing up.
        let cell = Memfd::from_fd(fds[1].try_clone().unwrap()).unwrap().map().unwrap();
        cell.write::<u64>(0, &u64::MAX).unwrap();
        let fd_refs: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        for _ in 0..200 {
            let _ = s.try_send_with_fds(&[0xAA; 48], &fd_refs);
            let _ = s.try_send(&[0x55; 4000]);
        }
        let _ = nix::sys::socket::shutdown(std::os::fd::AsRawFd::as_raw_fd(&s), nix::sys::socket::Shutdown::Write);
        std::thread::sleep(Duration::from_secs(30));
    });
    until_subscribers(&publisher, 2);
    for i in 1..5000u64 {
        publisher.publish_pod_timeout(&i, Duration::from_secs(10)).unwrap();
    }
    assert_eq!(honest.wait_timeout(Duration::from_secs(20)), Some(Exit::Code(0)));
    hostile.kill();
    let _ = hostile.wait();
    until_subscribers(&publisher, 0);
    publisher.publish_pod(&0u64).unwrap();
    let after = count_fds();
    assert!(after <= before, "descriptors: {before} before, {after} after");
}

const RING_MAGIC: &[u8; 8] = b"ipcbcst\x01";

/// A ring in a memfd sealed against shrinking (as the subscriber wants),
/// writable by its maker: header filled for `cap` slots of `max` bytes.
fn fake_ring(cap: u64, max: u64) -> (Memfd, ipc_kit::shm::Mapping, u64) {
    let slot = (16 + max).next_multiple_of(64);
    let memfd = Memfd::create("fake-ring", (256 + cap * slot) as usize).unwrap();
    let map = memfd.map().unwrap();
    map.write_bytes(0, RING_MAGIC).unwrap();
    map.write::<u64>(8, &cap).unwrap();
    map.write::<u64>(16, &slot).unwrap();
    map.write::<u64>(24, &max).unwrap();
    map.write::<u64>(136, &u64::MAX).unwrap();
    (memfd, map, slot)
}

/// A fake hub at `name`: answers one member with `answer` (status 0 and
/// policy code `flags` unless given) and `fds`, then keeps the socket.
fn fake_hub_answer(
    listener: &SeqpacketListener,
    answer: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> SeqpacketSocket {
    let s: SeqpacketSocket = listener.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut buf = [0u8; 64];
    let _ = s.recv_timeout(&mut buf, Duration::from_secs(10));
    let _ = s.send_with_fds(answer, fds);
    s
}

fn welcome(flags: u32) -> [u8; 32] {
    let mut m = [0u8; 32];
    m[..8].copy_from_slice(b"ipc-hub\0");
    m[8..12].copy_from_slice(&1u32.to_le_bytes());
    m[16..20].copy_from_slice(&1u32.to_le_bytes());
    m[20..24].copy_from_slice(&flags.to_le_bytes());
    m
}

// Promise: a hostile publisher never makes a subscriber panic. The head at
// u64::MAX and stamps at u64::MAX make the subscriber lag to u64::MAX - 1,
// then to u64::MAX, which is its NOT_STARTED: it starts over at the cell's
// start (0) and is told it lagged u64::MAX - 1 again: `self.lagged +=
// missed` overflows (a panic in a build with overflow checks).
fn a_hostile_publisher_cannot_make_a_subscriber_overflow_its_lag_count() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "fake");
    let listener = SeqpacketListener::bind(&name).unwrap();
    let (ring, map, slot) = fake_ring(2, 8);
    map.write::<u64>(64, &u64::MAX).unwrap();
    map.write::<u64>(256, &u64::MAX).unwrap();
    map.write::<u64>(256 + slot as usize, &u64::MAX).unwrap();
    let cell = Memfd::create("fake-cell", 4096).unwrap();
    cell.map().unwrap().write::<u64>(128, &0).unwrap();
    let (bell, owner) = (eventfd(), eventfd());
    let mut child = fork(|| {
        let mut sub = Subscriber::connect_timeout(&name, Duration::from_secs(10)).unwrap();
        for _ in 0..8 {
            match sub.try_recv(&mut Vec::new()) {
                Ok(_) | Err(Error::Lagged { .. } | Error::WouldBlock | Error::Channel(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
    });
    let _s = fake_hub_answer(&listener, &welcome(1), &[ring.as_fd(), cell.as_fd(), bell.as_fd(), owner.as_fd()]);
    let exit = child.wait_timeout(Duration::from_secs(10));
    assert_eq!(exit, Some(Exit::Code(0)), "the subscriber did not come through the publisher's garbage");
}

// Promise: a publisher writing garbage into its ring (stamps, lengths,
// head back and forth, closed flag, start) never makes a subscriber panic,
// read out of bounds or overstay its deadline.
fn a_hostile_publisher_scribbling_never_panics_or_hangs_a_subscriber() {
    for (cap, max) in [(2u64, 8u64), (8, 100), (64, 1)] {
        let dir = ScratchDir::new();
        let name = name_in(&dir, "fake");
        let listener = SeqpacketListener::bind(&name).unwrap();
        let (ring, map, slot) = fake_ring(cap, max);
        let cell_fd = Memfd::create("fake-cell", 4096).unwrap();
        let cell = cell_fd.map().unwrap();
        cell.write::<u64>(128, &0).unwrap();
        let (bell, owner) = (eventfd(), eventfd());
        for flags in [0u32, 1] {
            let mut child = fork(|| {
                let mut sub = Subscriber::connect_timeout(&name, Duration::from_secs(10)).unwrap();
                let mut buf = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(4);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match sub.recv_timeout(&mut buf, Duration::from_millis(3)) {
                        Ok(n) => assert!(n <= max as usize && buf.len() == n),
                        Err(Error::Lagged { .. } | Error::Timeout | Error::Channel(_) | Error::Disconnected) => {}
                        Err(e) => panic!("{e}"),
                    }
                    assert!(t.elapsed() < Duration::from_millis(500), "a 3 ms wait took {:?}", t.elapsed());
                    let _ = sub.pending();
                }
            });
            let _s = fake_hub_answer(
                &listener,
                &welcome(flags),
                &[ring.as_fd(), cell_fd.as_fd(), bell.as_fd(), owner.as_fd()],
            );
            let mut rng = Rng::new(u64::from(flags) * 31 + cap);
            let extreme = std::env::var_os("IPC_KIT_NO_EXTREME").is_none();
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(3) {
                let v = match rng.below(8) {
                    0 => 0,
                    1 if extreme => u64::MAX,
                    2 if extreme => u64::MAX - 1,
                    3 if extreme => rng.next_u64(),
                    4 if extreme => 1 << 63,
                    1..=4 => rng.below(1 << 40),
                    _ => rng.below(64),
                };
                match rng.below(6) {
                    0 => map.write::<u64>(64, &v).unwrap(),
                    1 => map.write::<u32>(128, &(v as u32 & 1)).unwrap(),
                    2 => cell.write::<u64>(128, &v).unwrap(),
                    3 => {
                        let s = rng.below(cap) as usize;
                        map.write::<u32>(256 + s * slot as usize + 8, &(v as u32)).unwrap();
                    }
                    _ => {
                        let s = rng.below(cap) as usize;
                        map.write::<u64>(256 + s * slot as usize, &v).unwrap();
                    }
                }
                if rng.chance(4) {
                    let _ = nix::unistd::write(&bell, &1u64.to_ne_bytes());
                }
            }
            let exit = child.wait_timeout(Duration::from_secs(10));
            assert_eq!(exit, Some(Exit::Code(0)), "cap {cap} max {max} policy {flags}");
        }
    }
}

// Promise: bad handshakes from a publisher give typed errors, within the
// deadline, and leave no descriptor behind in the subscriber.
fn a_hostile_publisher_with_bad_handshakes_gets_typed_errors_and_no_leak() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "fake");
    let listener = SeqpacketListener::bind(&name).unwrap();
    let (ring, _map, _) = fake_ring(4, 8);
    let cell = Memfd::create("fake-cell", 4096).unwrap();
    let small_cell = Memfd::create("fake-cell", 100).unwrap();
    let (bell, owner) = (eventfd(), eventfd());
    // SAFETY: new descriptors, owned from here on.
    let unsealed = unsafe {
        let fd = libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_CLOEXEC);
        libc::ftruncate(fd, 4096);
        OwnedFd::from_raw_fd(fd)
    };
    let (tiny, tiny_map, _) = {
        let m = Memfd::create("tiny", 256).unwrap();
        let map = m.map().unwrap();
        map.write_bytes(0, RING_MAGIC).unwrap();
        map.write::<u64>(8, &1024).unwrap();
        map.write::<u64>(16, &64).unwrap();
        map.write::<u64>(24, &8).unwrap();
        (m, map, 0)
    };
    let _ = &tiny_map;
    let (pipe_r, _pipe_w) = nix::unistd::pipe().unwrap();
    let w = welcome(0);
    let mut bad_version = w;
    bad_version[8] = 2;
    let mut bad_policy = w;
    bad_policy[20] = 7;
    type Case<'a> = (&'static str, Vec<u8>, Vec<std::os::fd::BorrowedFd<'a>>);
    let all = |r: std::os::fd::BorrowedFd<'static>| vec![r];
    let _ = all;
    let cases: Vec<Case<'_>> = vec![
        ("three fds", w.to_vec(), vec![ring.as_fd(), cell.as_fd(), bell.as_fd()]),
        ("five fds", w.to_vec(), vec![ring.as_fd(), cell.as_fd(), bell.as_fd(), owner.as_fd(), owner.as_fd()]),
        ("unsealed ring", w.to_vec(), vec![unsealed.as_fd(), cell.as_fd(), bell.as_fd(), owner.as_fd()]),
        ("ring too small", w.to_vec(), vec![tiny.as_fd(), cell.as_fd(), bell.as_fd(), owner.as_fd()]),
        ("cell not a page", w.to_vec(), vec![ring.as_fd(), small_cell.as_fd(), bell.as_fd(), owner.as_fd()]),
        ("pipe as doorbell", w.to_vec(), vec![ring.as_fd(), cell.as_fd(), pipe_r.as_fd(), owner.as_fd()]),
        ("ring as owner bell", w.to_vec(), vec![ring.as_fd(), cell.as_fd(), bell.as_fd(), ring.as_fd()]),
        ("cell as ring", w.to_vec(), vec![cell.as_fd(), cell.as_fd(), bell.as_fd(), owner.as_fd()]),
        ("version 2", bad_version.to_vec(), vec![ring.as_fd(), cell.as_fd(), bell.as_fd(), owner.as_fd()]),
        ("policy 7", bad_policy.to_vec(), vec![ring.as_fd(), cell.as_fd(), bell.as_fd(), owner.as_fd()]),
        ("33 bytes", [&w[..], &[0][..]].concat(), vec![ring.as_fd(), cell.as_fd(), bell.as_fd(), owner.as_fd()]),
        ("100 bytes", vec![0; 100], vec![ring.as_fd(), cell.as_fd(), bell.as_fd(), owner.as_fd()]),
        ("31 bytes", w[..31].to_vec(), vec![ring.as_fd(), cell.as_fd(), bell.as_fd(), owner.as_fd()]),
        ("no answer", Vec::new(), Vec::new()),
    ];
    for (what, answer, fds) in &cases {
        let mut child = fork(|| {
            // Warm up whatever is lazily opened.
            let _ = Subscriber::connect_timeout(&name, Duration::from_millis(300));
            let before = count_fds();
            for _ in 0..5 {
                let started = Instant::now();
                let got = Subscriber::connect_timeout(&name, Duration::from_millis(300));
                assert!(got.is_err(), "{what}: taken");
                assert!(started.elapsed() < Duration::from_secs(2), "{what}: {:?}", started.elapsed());
            }
            let after = count_fds();
            assert_eq!(before, after, "{what}: descriptors leaked");
        });
        let mut held = Vec::new();
        for _ in 0..6 {
            let s: SeqpacketSocket = listener.accept_timeout(Duration::from_secs(10)).unwrap();
            let mut buf = [0u8; 64];
            let _ = s.recv_timeout(&mut buf, Duration::from_secs(10));
            if !answer.is_empty() {
                let _ = s.send_with_fds(answer, fds);
            }
            held.push(s);
        }
        assert_eq!(child.wait_timeout(Duration::from_secs(20)), Some(Exit::Code(0)), "{what}");
    }
}

// Promise: every wait has try/timeout forms that honour zero and huge
// timeouts.
fn huge_and_zero_timeouts_are_honoured() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let options = PubSubOptions { capacity: 2, max_message: 8, ..PubSubOptions::default() };
    let mut publisher = Publisher::bind(&name, options).unwrap();
    let mut sub = Subscriber::connect_timeout(&name, Duration::MAX).unwrap();
    until_subscribers(&publisher, 1);
    assert!(matches!(sub.recv_timeout(&mut Vec::new(), Duration::ZERO), Err(Error::Timeout)));
    publisher.publish_timeout(b"a", Duration::MAX).unwrap();
    publisher.publish_timeout(b"b", Duration::ZERO).unwrap();
    assert!(matches!(publisher.publish_timeout(b"c", Duration::ZERO), Err(Error::Timeout)));
    assert!(matches!(publisher.loan_timeout(Duration::ZERO), Err(Error::Timeout)));
    let far = Instant::now() + Duration::from_secs(100 * 365 * 86400);
    let mut buf = Vec::new();
    assert_eq!(sub.recv_timeout(&mut buf, Duration::MAX).unwrap(), 1);
    assert_eq!(sub.recv_deadline(&mut buf, far).unwrap(), 1);
    publisher.publish_deadline(b"c", far).unwrap();
    assert_eq!(sub.recv_with_timeout(Duration::ZERO, <[u8]>::to_vec).unwrap(), b"c");
    let past = Instant::now() - Duration::from_secs(1);
    assert!(matches!(sub.recv_deadline(&mut buf, past), Err(Error::Timeout)));
    let t = Instant::now();
    let got = sub.recv_timeout(&mut buf, Duration::from_millis(100));
    assert!(matches!(got, Err(Error::Timeout)), "{got:?}");
    assert!(t.elapsed() >= Duration::from_millis(100) && t.elapsed() < Duration::from_millis(1100));
    let _ = Refusal::Full;
}

// Promise (Ordering): no wake-up is lost. A lost one is hidden by the
// 100 ms recheck, so a wait of ~100 ms while messages keep coming shows
// it. The publisher publishes with short random pauses; each subscriber
// notes its longest wait for a message.
fn no_wake_up_is_lost_under_either_policy() {
    for policy in [ipc_kit::service::Policy::Block, ipc_kit::service::Policy::Overwrite] {
        let dir = ScratchDir::new();
        let name = name_in(&dir, "pub");
        let options = PubSubOptions { policy, capacity: 16, max_message: 8, ..PubSubOptions::default() };
        let mut publisher = Publisher::bind(&name, options).unwrap();
        const N: u64 = 20_000;
        let subs: Vec<_> = (0..2)
            .map(|k| {
                let name = name.clone();
                fork(move || {
                    let mut sub = Subscriber::connect(&name).unwrap();
                    let (mut got, mut slow) = (0u64, 0u32);
                    let mut rng = Rng::new(k);
                    loop {
                        let t = Instant::now();
                        match sub.recv_pod_timeout::<u64>(Duration::from_secs(10)) {
                            Ok(_) => got += 1,
                            Err(Error::Lagged { missed }) => got += missed,
                            Err(Error::Disconnected) => break,
                            Err(e) => panic!("{e}"),
                        }
                        if t.elapsed() > Duration::from_millis(90) && got < N {
                            slow += 1;
                        }
                        if rng.chance(50) {
                            std::thread::sleep(Duration::from_micros(rng.below(300)));
                        }
                    }
                    note(&format!("{policy:?} subscriber {k}: {got} messages, {slow} waits over 90 ms"));
                    assert_eq!(got, N);
                    assert!(slow <= 1, "{slow} waits of over 90 ms while messages kept coming: lost wake-ups");
                })
            })
            .collect();
        until_subscribers(&publisher, 2);
        let mut rng = Rng::new(99);
        for i in 0..N {
            publisher.publish_pod_timeout(&i, Duration::from_secs(10)).unwrap();
            if rng.chance(20) {
                std::thread::sleep(Duration::from_micros(rng.below(200)));
            }
        }
        drop(publisher);
        for mut s in subs {
            assert_eq!(s.wait_timeout(Duration::from_secs(30)), Some(Exit::Code(0)), "{policy:?}");
        }
    }
}

// Promise (crate docs, a member's cell): until a publisher sets a new
// subscriber's start, at its next publish, the subscriber has nothing to
// read, and waits without being rung. A publisher that published before
// and is idle now once rang it back on every nap: the subscriber and the
// hub's thread spun for as long as the publisher stayed idle.
fn a_subscriber_waiting_for_its_start_at_an_idle_publisher_does_not_spin() {
    for policy in [Policy::Block, Policy::Overwrite] {
        let dir = ScratchDir::new();
        let name = name_in(&dir, "pub");
        let options = PubSubOptions { policy, capacity: 64, max_message: 8, ..PubSubOptions::default() };
        let mut publisher = Publisher::bind(&name, options).unwrap();
        for i in 0..20u64 {
            publisher.publish_pod(&i).unwrap();
        }
        let (waited_r, waited_w) = std::io::pipe().unwrap();
        let mut sub = fork(|| {
            let mut sub = Subscriber::connect(&name).unwrap();
            let before = thread_cpu();
            let got = sub.recv_pod_timeout::<u64>(Duration::from_secs(1));
            let used = thread_cpu() - before;
            assert!(matches!(got, Err(Error::Timeout)), "{got:?}");
            note(&format!("{policy:?}: a subscriber waiting for its start used {used:?} of CPU in 1 s"));
            assert!(used < Duration::from_millis(150), "a subscriber waiting for its start spun: {used:?} in 1 s");
            nix::unistd::write(&waited_w, b"w").unwrap();
            // Its start is where the publisher next publishes.
            assert_eq!(sub.recv_pod_timeout::<u64>(Duration::from_secs(10)).unwrap(), 20);
        });
        drop(waited_w);
        until_subscribers(&publisher, 1);
        let before = process_cpu();
        let mut b = [0u8; 1];
        // Nothing read: the subscriber failed (its exit says why).
        if nix::unistd::read(&waited_r, &mut b).unwrap() == 0 {
            panic!("{policy:?}: the subscriber ended with {:?}", sub.wait());
        }
        let used = process_cpu() - before;
        note(&format!("{policy:?}: the idle publisher's process used {used:?} of CPU meanwhile"));
        assert!(used < Duration::from_millis(150), "the idle publisher's hub thread spun: {used:?}");
        publisher.publish_pod(&20u64).unwrap();
        assert_eq!(sub.wait_timeout(Duration::from_secs(20)), Some(Exit::Code(0)), "{policy:?}");
    }
}
