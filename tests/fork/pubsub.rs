//! Publish/subscribe across processes: eight subscriber processes under
//! `Block`, a slow subscriber under `Overwrite`, subscribers that join,
//! leave and die at random, a publisher that dies, hostile subscribers,
//! pollers, the three forms of each wait and every limit.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipc_kit::service::{Access, Error, Policy, PubSubOptions, Publisher, Refusal, Subscriber};
use ipc_kit::shm::Memfd;
use ipc_kit::socket::SeqpacketSocket;
use ipc_kit::sync::{Interest, Poller};
use ipc_kit_tests::{Exit, Rng, SLACK, ScratchDir, assert_fired_within, cases, fork};
use nix::sys::signal::Signal;

use crate::service::name_in;

cases!("pubsub":
    eight_subscriber_processes_each_receive_a_million_messages_in_order(180 s),
    a_slow_subscriber_under_overwrite_counts_every_message_it_lost(60 s),
    subscribers_join_leave_and_die_at_random_and_the_publisher_goes_on(90 s),
    when_the_publisher_dies_subscribers_drain_and_then_are_disconnected,
    a_hostile_subscriber_scribbling_on_its_cell_changes_nothing_for_the_others(60 s),
    the_ring_cannot_be_written_by_a_subscriber,
    pollers_wait_on_subscribers_and_on_a_publisher_for_room,
    the_three_forms_wait_as_told_and_every_limit_holds,
    a_subscriber_beyond_the_cap_or_of_another_kind_is_refused,
);

/// A message: its number, and the number again scrambled, in 64 bytes.
fn message(n: u64) -> [u64; 8] {
    let mut m = [n; 8];
    for (i, w) in m.iter_mut().enumerate().skip(1) {
        *w = n.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(i as u32) ^ i as u64;
    }
    m
}

/// The number a message carries, after checking that it is whole.
fn number(m: &[u64; 8]) -> u64 {
    assert_eq!(*m, message(m[0]), "a torn or foreign message");
    m[0]
}

/// Waits until the publisher counts `n` subscribers.
fn until_subscribers(publisher: &Publisher, n: usize) {
    let start = Instant::now();
    while publisher.subscribers() != n {
        assert!(start.elapsed() < Duration::from_secs(20), "{} subscribers, not {n}", publisher.subscribers());
        std::thread::sleep(Duration::from_millis(1));
    }
}

// Issue: "1 publisher and 8 subscriber processes, 1,000,000 messages under
// Block: every subscriber sees all of them, in order".
fn eight_subscriber_processes_each_receive_a_million_messages_in_order() {
    const N: u64 = 1_000_000;
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let options = PubSubOptions { capacity: 4096, max_message: 64, ..PubSubOptions::default() };
    let mut publisher = Publisher::bind(&name, options).unwrap();
    let subs: Vec<_> = (0..8)
        .map(|_| {
            fork(|| {
                let mut sub = Subscriber::connect(&name).unwrap();
                assert_eq!(sub.policy(), Policy::Block);
                for want in 0..N {
                    let m = sub.recv_pod::<[u64; 8]>().unwrap();
                    assert_eq!(number(&m), want);
                }
                assert!(matches!(sub.recv_timeout(&mut Vec::new(), Duration::from_secs(20)), Err(Error::Disconnected)));
                assert_eq!(sub.lagged(), 0);
            })
        })
        .collect();
    until_subscribers(&publisher, 8);
    for n in 0..N {
        assert_eq!(publisher.publish_pod(&message(n)).unwrap(), n);
    }
    assert_eq!(publisher.published(), N);
    drop(publisher);
    for mut s in subs {
        assert_eq!(s.wait_timeout(Duration::from_secs(60)), Some(Exit::Code(0)));
    }
}

// Issue: "Overwrite with one deliberately slow subscriber: received +
// lagged = sent, and order holds".
fn a_slow_subscriber_under_overwrite_counts_every_message_it_lost() {
    const N: u64 = 300_000;
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let options =
        PubSubOptions { policy: Policy::Overwrite, capacity: 64, max_message: 64, ..PubSubOptions::default() };
    let mut publisher = Publisher::bind(&name, options).unwrap();
    let subscriber = |slow: bool| {
        let name = name.clone();
        fork(move || {
            let mut sub = Subscriber::connect(&name).unwrap();
            let (mut received, mut lagged, mut last) = (0u64, 0u64, None::<u64>);
            loop {
                match sub.recv_with_timeout(Duration::from_secs(20), bytemuck::pod_read_unaligned::<[u64; 8]>) {
                    Ok(m) => {
                        let n = number(&m);
                        // In order, and after a loss exactly where the loss ends.
                        assert_eq!(n, last.map_or(n, |l| l + 1), "out of order");
                        last = Some(n);
                        received += 1;
                        if slow && received % 500 == 0 {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                    }
                    Err(Error::Lagged { missed }) => {
                        assert!(missed > 0);
                        lagged += missed;
                        last = last.map(|l| l + missed);
                    }
                    Err(Error::Disconnected) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(received + lagged, N, "received {received} + lagged {lagged}");
            assert_eq!(sub.lagged(), lagged);
            if slow {
                assert!(lagged > 0, "the slow one lost nothing");
            }
            std::process::exit(0);
        })
    };
    let subs = [subscriber(true), subscriber(false)];
    until_subscribers(&publisher, 2);
    for n in 0..N {
        // Never waits, whatever the subscribers do.
        assert_eq!(publisher.try_publish_pod(&message(n)).unwrap(), n);
    }
    drop(publisher);
    for mut s in subs {
        assert_eq!(s.wait_timeout(Duration::from_secs(30)), Some(Exit::Code(0)));
    }
}

// Issue: "subscribers join, leave and die at random" (under Block, where a
// subscriber that stops reading holds the publisher up until it dies).
fn subscribers_join_leave_and_die_at_random_and_the_publisher_goes_on() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let options = PubSubOptions { capacity: 256, max_message: 64, max_subscribers: 8, ..PubSubOptions::default() };
    let publisher = Publisher::bind(&name, options).unwrap();
    let stop = std::sync::Arc::new(AtomicU64::new(0));
    let pumping = std::thread::spawn({
        let stop = std::sync::Arc::clone(&stop);
        let mut publisher = publisher;
        move || {
            let mut n = 0;
            while stop.load(Ordering::Relaxed) == 0 {
                // A dead subscriber is dropped at once: never 20 s.
                match publisher.publish_pod_timeout(&message(n), Duration::from_secs(20)) {
                    Ok(_) => n += 1,
                    Err(e) => panic!("publish {n}: {e} with {} subscribers", publisher.subscribers()),
                }
            }
            (publisher, n)
        }
    });
    let mut rng = Rng::new(0x5b5);
    let mut live = Vec::new();
    let (mut left, mut killed, mut stalled) = (0, 0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        let reads = rng.below(50_000);
        let how = rng.below(3);
        let seed = rng.next_u64();
        let name = name.clone();
        live.push((
            how,
            fork(move || {
                let mut sub = Subscriber::connect_timeout(&name, Duration::from_secs(20)).unwrap();
                let first = number(&sub.recv_pod::<[u64; 8]>().unwrap());
                for i in 1..reads {
                    assert_eq!(number(&sub.recv_pod::<[u64; 8]>().unwrap()), first + i);
                }
                match how {
                    // Leaves: dropped.
                    0 => drop(sub),
                    // Stops reading, holding the publisher up, until killed.
                    1 => std::thread::sleep(Duration::from_secs(60)),
                    // Dies in the middle of reading.
                    _ => {
                        let mut more = Rng::new(seed).below(1000);
                        while more > 0 {
                            number(&sub.recv_pod::<[u64; 8]>().unwrap());
                            more -= 1;
                        }
                        // SAFETY: ends this forked child at once, as a kill would.
                        unsafe { libc::_exit(0) };
                    }
                }
            }),
        ));
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        // Kill one at random now and then, whatever it is doing.
        if live.len() > 4 || rng.chance(3) {
            let (how, mut child) = live.remove(rng.below(live.len() as u64) as usize);
            child.kill();
            let exit = child.wait();
            match exit {
                Exit::Signaled(Signal::SIGKILL) if how == 1 => stalled += 1,
                Exit::Signaled(Signal::SIGKILL) => killed += 1,
                Exit::Code(0) => left += 1,
                other => panic!("a subscriber ended with {other:?}"),
            }
        }
    }
    for (_, child) in &live {
        child.kill();
    }
    for (_, mut child) in live {
        let exit = child.wait();
        assert!(matches!(exit, Exit::Code(0) | Exit::Signaled(Signal::SIGKILL)), "{exit:?}");
    }
    stop.store(1, Ordering::Relaxed);
    let (publisher, published) = pumping.join().unwrap();
    println!("published {published}; subscribers that left {left}, killed {killed}, killed while stalled {stalled}");
    assert!(published > 0);
    let start = Instant::now();
    while publisher.subscribers() != 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "{} subscribers left over", publisher.subscribers());
        std::thread::sleep(Duration::from_millis(1));
    }
}

// Issue: "when the publisher dies, subscribers drain what remains and then
// get Disconnected".
fn when_the_publisher_dies_subscribers_drain_and_then_are_disconnected() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let (ready_r, ready_w) = std::io::pipe().unwrap();
    let mut publisher = fork(|| {
        let options = PubSubOptions { capacity: 1024, max_message: 64, ..PubSubOptions::default() };
        let mut publisher = Publisher::bind(&name, options).unwrap();
        nix::unistd::write(&ready_w, b"b").unwrap();
        until_subscribers(&publisher, 2);
        for n in 0..500 {
            publisher.publish_pod(&message(n)).unwrap();
        }
        nix::unistd::write(&ready_w, b"p").unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    drop(ready_w);
    let mut b = [0u8; 1];
    nix::unistd::read(&ready_r, &mut b).unwrap();
    let mut draining = Subscriber::connect(&name).unwrap();
    let mut waiting = Subscriber::connect(&name).unwrap();
    nix::unistd::read(&ready_r, &mut b).unwrap();
    for n in 0..500 {
        assert_eq!(number(&waiting.recv_pod::<[u64; 8]>().unwrap()), n);
    }
    // One waits in `recv` when the publisher is killed; the other has
    // read nothing yet.
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let got = waiting.recv_timeout(&mut Vec::new(), Duration::from_secs(20));
        (got, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    publisher.kill();
    assert_eq!(publisher.wait(), Exit::Signaled(Signal::SIGKILL));
    let (got, took) = waiter.join().unwrap();
    assert!(matches!(got, Err(Error::Disconnected)), "{got:?}");
    assert!(took < Duration::from_secs(10), "woken by the death, not the deadline");
    for n in 0..500 {
        assert_eq!(number(&draining.try_recv_pod::<[u64; 8]>().unwrap()), n);
    }
    assert!(matches!(draining.try_recv(&mut Vec::new()), Err(Error::Disconnected)));
    assert!(matches!(draining.recv(&mut Vec::new()), Err(Error::Disconnected)));
}

/// A subscriber at the socket level: the answer's status and the four
/// descriptors (ring, cell, own doorbell, publisher's doorbell), having
/// said that it took its place.
pub(crate) fn raw_join(name: &ipc_kit::service::SocketName, kind: u32) -> (u32, Vec<OwnedFd>, SeqpacketSocket) {
    let s = SeqpacketSocket::connect_timeout(name, Duration::from_secs(10)).unwrap();
    let mut hello = *b"ipc-hub\0\x01\0\0\0\0\0\0\0";
    hello[12..16].copy_from_slice(&kind.to_le_bytes());
    s.send(&hello).unwrap();
    let mut buf = [0u8; 64];
    let (n, fds) = s.recv_with_fds_timeout(&mut buf, 8, Duration::from_secs(10)).unwrap();
    assert_eq!(n, 32);
    let status = u32::from_le_bytes(buf[12..16].try_into().unwrap());
    if status == 0 {
        // Takes its place: counted among the members from now on.
        s.send(b"joined\0\0").unwrap();
    }
    (status, fds, s)
}

// Issue: "a hostile subscriber scribbles on its cursor": the others still
// read every message in order, and the publisher, held up at most as by a
// subscriber that reads slowly, goes on once the hostile one is gone.
fn a_hostile_subscriber_scribbling_on_its_cell_changes_nothing_for_the_others() {
    const N: u64 = 200_000;
    for policy in [Policy::Block, Policy::Overwrite] {
        let dir = ScratchDir::new();
        let name = name_in(&dir, "pub");
        let options = PubSubOptions { policy, capacity: 512, max_message: 64, ..PubSubOptions::default() };
        let mut publisher = Publisher::bind(&name, options).unwrap();
        let honest: Vec<_> = (0..2)
            .map(|_| {
                fork(|| {
                    let mut sub = Subscriber::connect(&name).unwrap();
                    let mut want = 0;
                    while want < N {
                        match sub.recv_pod_timeout::<[u64; 8]>(Duration::from_secs(30)) {
                            Ok(m) => {
                                assert_eq!(number(&m), want);
                                want += 1;
                            }
                            // Under Overwrite an honest subscriber may fall behind too.
                            Err(Error::Lagged { missed }) if policy == Policy::Overwrite => want += missed,
                            Err(e) => panic!("at {want}: {e}"),
                        }
                    }
                })
            })
            .collect();
        let hostile = fork(|| {
            let (status, fds, _socket) = raw_join(&name, 1);
            assert_eq!((status, fds.len()), (0, 4));
            let mut fds = fds.into_iter();
            let _ring = fds.next().unwrap();
            let cell = Memfd::from_fd(fds.next().unwrap()).unwrap().map().unwrap();
            let owner_bell = fds.nth(1).unwrap();
            let mut rng = Rng::new(7);
            let cursor = cell.shared::<AtomicU64>(0).unwrap();
            let asleep = cell.shared::<std::sync::atomic::AtomicU32>(64).unwrap();
            let start = cell.shared::<AtomicU64>(128).unwrap();
            loop {
                let v = match rng.below(6) {
                    0 => 0,
                    1 => u64::MAX,
                    2 => rng.next_u64(),
                    3 => start.load(Ordering::Relaxed).wrapping_add(rng.below(4096)),
                    4 => cursor.load(Ordering::Relaxed).wrapping_sub(rng.below(1024)),
                    _ => 1 << 63,
                };
                cursor.store(v, Ordering::SeqCst);
                asleep.store(rng.next_u64() as u32, Ordering::SeqCst);
                if rng.chance(8) {
                    start.store(rng.next_u64(), Ordering::SeqCst);
                }
                let _ = nix::unistd::write(&owner_bell, &1u64.to_ne_bytes());
            }
        });
        until_subscribers(&publisher, 3);
        let killer = std::thread::spawn({
            let pid = hostile.pid();
            move || {
                std::thread::sleep(Duration::from_millis(1500));
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            }
        });
        let started = Instant::now();
        for n in 0..N {
            assert_eq!(publisher.publish_pod_timeout(&message(n), Duration::from_secs(30)).unwrap(), n);
        }
        if policy == Policy::Overwrite {
            // Nothing held it up.
            assert!(started.elapsed() < Duration::from_secs(20));
        }
        killer.join().unwrap();
        drop(publisher);
        for mut h in honest {
            assert_eq!(h.wait_timeout(Duration::from_secs(40)), Some(Exit::Code(0)), "{policy:?}");
        }
        let mut hostile = hostile;
        assert_eq!(hostile.wait(), Exit::Signaled(Signal::SIGKILL));
    }
}

// The ring is sealed against every way of writing it that a subscriber
// holding its descriptor could try: a writable mapping (also after
// reopening it through /proc), write(2), a hole punched, a new size.
fn the_ring_cannot_be_written_by_a_subscriber() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let mut publisher =
        Publisher::bind(&name, PubSubOptions { capacity: 4, max_message: 8, ..PubSubOptions::default() }).unwrap();
    let mut child = fork(|| {
        let (status, fds, _socket) = raw_join(&name, 1);
        assert_eq!(status, 0);
        let ring = fds.into_iter().next().unwrap();
        let memfd = Memfd::from_fd(ring.try_clone().unwrap()).unwrap();
        assert!(memfd.map().is_err(), "a writable mapping");
        let reopened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&ring)));
        if let Ok(file) = reopened {
            assert!(Memfd::from_fd(file.into()).unwrap().map().is_err(), "a writable mapping after reopening");
        }
        assert!(nix::sys::uio::pwrite(&ring, &[1u8; 8], 256).is_err(), "pwrite");
        assert!(nix::unistd::ftruncate(&ring, 0).is_err(), "ftruncate");
        let punch = nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
        assert!(nix::fcntl::fallocate(ring.as_fd(), punch, 0, 4096).is_err(), "a hole punched");
        std::thread::sleep(Duration::from_millis(300));
    });
    until_subscribers(&publisher, 1);
    publisher.publish(b"still me").unwrap();
    assert_eq!(child.wait_timeout(Duration::from_secs(20)), Some(Exit::Code(0)));
}

// Issue: "All three work with Poller": a poller wakes for a subscriber's
// message and for the publisher's room under Block.
fn pollers_wait_on_subscribers_and_on_a_publisher_for_room() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let options = PubSubOptions { capacity: 4, max_message: 64, ..PubSubOptions::default() };
    let mut publisher = Publisher::bind(&name, options).unwrap();
    let mut child = fork(|| {
        let subs: Vec<_> = (0..3).map(|_| Subscriber::connect(&name).unwrap()).collect();
        let mut subs = subs;
        let mut poller = Poller::new().unwrap();
        for (i, s) in subs.iter().enumerate() {
            poller.add(s, Interest::Readable, i as u64).unwrap();
        }
        let mut next = [0u64; 3];
        while next.iter().any(|&n| n < 100) {
            let ready = poller.wait_timeout(Duration::from_secs(20)).unwrap().to_vec();
            assert!(!ready.is_empty(), "no wake-up");
            for t in ready {
                let i = t as usize;
                loop {
                    match subs[i].try_recv_pod::<[u64; 8]>() {
                        Ok(m) => {
                            assert_eq!(number(&m), next[i]);
                            next[i] += 1;
                        }
                        Err(Error::WouldBlock) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }
    });
    until_subscribers(&publisher, 3);
    let mut poller = Poller::new().unwrap();
    poller.add(&publisher, Interest::Writable, 9).unwrap();
    let mut n = 0;
    while n < 100 {
        match publisher.try_publish_pod(&message(n)) {
            Ok(_) => n += 1,
            Err(Error::WouldBlock) => {
                let ready = poller.wait_timeout(Duration::from_secs(20)).unwrap().to_vec();
                assert_eq!(ready, [9], "no room reported");
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(child.wait_timeout(Duration::from_secs(30)), Some(Exit::Code(0)));
}

// Every wait in its three forms, zero and long timeouts, and each limit
// with one more.
fn the_three_forms_wait_as_told_and_every_limit_holds() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let options = PubSubOptions { capacity: 2, max_message: 100, ..PubSubOptions::default() };
    let mut publisher = Publisher::bind(&name, options.clone()).unwrap();
    let mut sub = Subscriber::connect(&name).unwrap();
    until_subscribers(&publisher, 1);
    assert!(matches!(sub.try_recv(&mut Vec::new()), Err(Error::WouldBlock)));
    assert!(matches!(sub.recv_timeout(&mut Vec::new(), Duration::ZERO), Err(Error::Timeout)));
    let started = Instant::now();
    assert!(matches!(sub.recv_timeout(&mut Vec::new(), Duration::from_millis(200)), Err(Error::Timeout)));
    assert_fired_within(started.elapsed(), Duration::from_millis(200), SLACK);
    // The longest message and one byte more.
    publisher.publish(&[5u8; 100]).unwrap();
    assert!(matches!(publisher.publish(&[5u8; 101]), Err(Error::MessageTooLarge { len: 101, max: 100 })));
    publisher.publish(b"").unwrap();
    // Full (two slots, one subscriber that read nothing): the three forms.
    assert!(matches!(publisher.try_publish(b"x"), Err(Error::WouldBlock)));
    assert!(matches!(publisher.publish_timeout(b"x", Duration::ZERO), Err(Error::Timeout)));
    let started = Instant::now();
    assert!(matches!(publisher.publish_timeout(b"x", Duration::from_millis(200)), Err(Error::Timeout)));
    assert_fired_within(started.elapsed(), Duration::from_millis(200), SLACK);
    assert!(matches!(publisher.try_loan(), Err(Error::WouldBlock)));
    let mut buf = Vec::new();
    assert_eq!(sub.recv_timeout(&mut buf, Duration::from_secs(3600)).unwrap(), 100);
    assert_eq!(buf, [5u8; 100]);
    // A loan, filled in place and published.
    let mut loan = publisher.loan_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(loan.len(), 100);
    loan[..3].copy_from_slice(b"abc");
    assert!(matches!(loan.publish(101), Err(Error::MessageTooLarge { .. })));
    // A loan dropped unpublished publishes nothing.
    let _unpublished = publisher.try_loan().unwrap();
    assert_eq!(sub.try_recv(&mut buf).unwrap(), 0);
    assert!(matches!(sub.try_recv(&mut buf), Err(Error::WouldBlock)));
    let mut loan = publisher.try_loan().unwrap();
    loan[..3].copy_from_slice(b"abc");
    assert_eq!(loan.publish(3).unwrap(), 2);
    assert_eq!(sub.recv_with(<[u8]>::to_vec).unwrap(), b"abc");
    // A Pod of the wrong size is Malformed, and taken.
    publisher.publish_pod(&7u32).unwrap();
    assert!(matches!(sub.try_recv_pod::<u64>(), Err(Error::Malformed { .. })));
    assert!(matches!(sub.try_recv(&mut buf), Err(Error::WouldBlock)));
    // Options out of range bind nothing.
    for bad in [
        PubSubOptions { capacity: 3, ..options.clone() },
        PubSubOptions { capacity: 1, ..options.clone() },
        PubSubOptions { capacity: 1 << 25, ..options.clone() },
        PubSubOptions { max_message: 0, ..options.clone() },
        PubSubOptions { max_message: (1 << 24) + 1, ..options.clone() },
        PubSubOptions { capacity: 1 << 16, max_message: 1 << 16, ..options.clone() },
        PubSubOptions { max_subscribers: 0, ..options.clone() },
        PubSubOptions { max_subscribers: 4097, ..options.clone() },
        PubSubOptions { mode: 0o1777, ..options.clone() },
    ] {
        let other = name_in(&dir, "bad");
        assert!(matches!(Publisher::bind(&other, bad), Err(Error::InvalidOptions { .. })));
        assert!(!dir.path().join("bad").exists());
    }
    // The name is taken while the publisher lives.
    assert!(matches!(Publisher::bind(&name, options), Err(Error::Socket(_))));
}

// The cap on subscribers with one more; a subscriber at a service, and a
// client at a publisher; access by credentials.
fn a_subscriber_beyond_the_cap_or_of_another_kind_is_refused() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let options = PubSubOptions { max_subscribers: 2, ..PubSubOptions::default() };
    let publisher = Publisher::bind(&name, options).unwrap();
    let a = Subscriber::connect(&name).unwrap();
    let _b = Subscriber::connect(&name).unwrap();
    let third = Subscriber::connect(&name);
    assert!(matches!(third, Err(Error::Refused { reason: Refusal::Full, .. })), "{third:?}");
    drop(a);
    let start = Instant::now();
    loop {
        match Subscriber::connect(&name) {
            Ok(_) => break,
            Err(Error::Refused { reason: Refusal::Full, .. }) => {
                assert!(start.elapsed() < Duration::from_secs(10), "the seat of one that left stays taken");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("{e}"),
        }
    }
    // A service's client greets in another way: refused.
    let client = ipc_kit::service::connect_timeout(&name, Duration::from_secs(10));
    assert!(matches!(client, Err(Error::Handshake { .. })), "{client:?}");
    // A hub of another kind is refused too.
    let (status, fds, _s) = raw_join(&name, 2);
    assert_eq!((status, fds.len()), (3, 0));
    // A subscriber at a service gets an answer it does not take.
    let svc_name = name_in(&dir, "svc");
    let _service = ipc_kit::service::Service::bind(&svc_name, Default::default()).unwrap();
    let wrong = Subscriber::connect_timeout(&svc_name, Duration::from_secs(5));
    assert!(wrong.is_err(), "a subscriber at a service");
    drop(publisher);
    assert!(!dir.path().join("pub").exists(), "the socket file stays");
    // Access: a list without this user turns it away, with no descriptor.
    let me = nix::unistd::geteuid().as_raw();
    let denied =
        PubSubOptions { access: Access::Only { uids: vec![me.wrapping_add(1)], gids: vec![] }, ..Default::default() };
    let _publisher = Publisher::bind(&name, denied).unwrap();
    let (status, fds, _s) = raw_join(&name, 1);
    assert_eq!((status, fds.len()), (1, 0));
}
