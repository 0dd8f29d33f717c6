//! Named events across processes: listeners that count every
//! notification by id, in pollers, and see the notifier die; the limits.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ipc_kit::service::{Error, EventOptions, Listener, Notifier, Refusal};
use ipc_kit::sync::{Interest, Poller};
use ipc_kit_tests::{Exit, Rng, SLACK, ScratchDir, assert_fired_within, cases, fork};
use nix::sys::signal::Signal;

use crate::service::name_in;

cases!("event":
    listeners_learn_every_id_that_fired_and_how_often(60 s),
    listeners_in_a_poller_see_the_notifier_die_at_once,
    the_three_forms_wait_as_told_and_every_limit_holds,
);

// Each listener process adds up what it is told until the notifier is
// gone; the sums match what was notified, id by id.
fn listeners_learn_every_id_that_fired_and_how_often() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "events");
    let options = EventOptions { ids: 300, ..EventOptions::default() };
    let mut notifier = Notifier::bind(&name, options).unwrap();
    let (sums_r, sums_w) = std::io::pipe().unwrap();
    let listeners: Vec<_> = (0..3)
        .map(|i| {
            let sums_w = sums_w.try_clone().unwrap();
            let name = name.clone();
            fork(move || {
                let mut listener = Listener::connect(&name).unwrap();
                assert_eq!(listener.ids(), 300);
                let mut sums = BTreeMap::new();
                let mut slow = Rng::new(i);
                loop {
                    match listener.wait_timeout(Duration::from_secs(20)) {
                        Ok(fired) => {
                            assert!(!fired.is_empty());
                            for (id, n) in fired.iter() {
                                assert!(id < 300 && n > 0);
                                assert_eq!(fired.count(id), n);
                                *sums.entry(id).or_insert(0u64) += n;
                            }
                            // Some listeners look seldom: counts add up.
                            if i == 2 && slow.chance(4) {
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                        Err(Error::Disconnected) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                let line: Vec<String> = sums.iter().map(|(id, n)| format!("{id}:{n}")).collect();
                nix::unistd::write(&sums_w, format!("{}\n", line.join(" ")).as_bytes()).unwrap();
            })
        })
        .collect();
    drop(sums_w);
    let start = Instant::now();
    while notifier.listeners() < 3 {
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut rng = Rng::new(99);
    let mut expected = BTreeMap::new();
    for k in 0..200_000u32 {
        // Some ids often, most seldom, a few never.
        let id = if rng.chance(2) { rng.below(5) as u32 } else { 5 + rng.below(290) as u32 };
        notifier.notify(id).unwrap();
        *expected.entry(id).or_insert(0u64) += 1;
        if k % 10_000 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    drop(notifier);
    let want: Vec<String> = expected.iter().map(|(id, n)| format!("{id}:{n}")).collect();
    let want = want.join(" ");
    for mut l in listeners {
        assert_eq!(l.wait_timeout(Duration::from_secs(30)), Some(Exit::Code(0)));
    }
    let mut all = String::new();
    std::io::Read::read_to_string(&mut &sums_r, &mut all).unwrap();
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 3);
    for line in lines {
        assert_eq!(line, want, "a listener's counts");
    }
}

fn listeners_in_a_poller_see_the_notifier_die_at_once() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "events");
    let (ready_r, ready_w) = std::io::pipe().unwrap();
    let mut notifier = fork(|| {
        let mut n = Notifier::bind(&name, EventOptions::default()).unwrap();
        nix::unistd::write(&ready_w, b"b").unwrap();
        while n.listeners() < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for id in [1, 2, 3, 2] {
            n.notify(id).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        nix::unistd::write(&ready_w, b"n").unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    drop(ready_w);
    let mut b = [0u8; 1];
    nix::unistd::read(&ready_r, &mut b).unwrap();
    let mut listeners = [Listener::connect(&name).unwrap(), Listener::connect(&name).unwrap()];
    let mut poller = Poller::new().unwrap();
    for (i, l) in listeners.iter().enumerate() {
        poller.add(l, Interest::Readable, i as u64).unwrap();
    }
    let mut seen = [BTreeMap::new(), BTreeMap::new()];
    while seen.iter().any(|s| s.values().sum::<u64>() < 4) {
        let ready = poller.wait_timeout(Duration::from_secs(20)).unwrap().to_vec();
        assert!(!ready.is_empty(), "no wake-up");
        for t in ready {
            match listeners[t as usize].try_wait() {
                Ok(fired) => {
                    for (id, n) in fired.iter() {
                        *seen[t as usize].entry(id).or_insert(0) += n;
                    }
                }
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
    for s in &seen {
        assert_eq!(s.iter().map(|(a, b)| (*a, *b)).collect::<Vec<_>>(), [(1, 1), (2, 2), (3, 1)]);
    }
    nix::unistd::read(&ready_r, &mut b).unwrap();
    let waiting = std::thread::spawn({
        let mut l = Listener::connect(&name).unwrap();
        move || {
            let t = Instant::now();
            (l.wait_timeout(Duration::from_secs(20)), t.elapsed())
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    notifier.kill();
    assert_eq!(notifier.wait(), Exit::Signaled(Signal::SIGKILL));
    let (got, took) = waiting.join().unwrap();
    assert!(matches!(got, Err(Error::Disconnected)), "{got:?}");
    assert!(took < Duration::from_secs(10), "woken by the death, not the deadline");
    // The poller reports the death too.
    let ready = poller.wait_timeout(Duration::from_secs(10)).unwrap().to_vec();
    assert!(!ready.is_empty());
    for l in &mut listeners {
        assert!(matches!(l.try_wait(), Err(Error::Disconnected)));
    }
}

fn the_three_forms_wait_as_told_and_every_limit_holds() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "events");
    let options = EventOptions { ids: 1, max_listeners: 1, ..EventOptions::default() };
    let mut notifier = Notifier::bind(&name, options.clone()).unwrap();
    let mut listener = Listener::connect(&name).unwrap();
    let second = Listener::connect(&name);
    assert!(matches!(second, Err(Error::Refused { reason: Refusal::Full, .. })), "{second:?}");
    assert!(matches!(listener.try_wait(), Err(Error::WouldBlock)));
    assert!(matches!(listener.wait_timeout(Duration::ZERO), Err(Error::Timeout)));
    let t = Instant::now();
    assert!(matches!(listener.wait_timeout(Duration::from_millis(200)), Err(Error::Timeout)));
    assert_fired_within(t.elapsed(), Duration::from_millis(200), SLACK);
    notifier.notify(0).unwrap();
    assert!(matches!(notifier.notify(1), Err(Error::UnknownEvent { id: 1, ids: 1 })));
    assert!(matches!(notifier.notify(u32::MAX), Err(Error::UnknownEvent { .. })));
    notifier.notify(0).unwrap();
    let fired = listener.wait_timeout(Duration::from_secs(3600)).unwrap();
    assert_eq!((fired.len(), fired.count(0), fired.contains(1)), (1, 2, false));
    assert!(matches!(listener.try_wait(), Err(Error::WouldBlock)));
    for bad in [
        EventOptions { ids: 0, ..options.clone() },
        EventOptions { ids: 65537, ..options.clone() },
        EventOptions { max_listeners: 0, ..options.clone() },
        EventOptions { max_listeners: 4097, ..options.clone() },
    ] {
        assert!(matches!(Notifier::bind(&name_in(&dir, "bad"), bad), Err(Error::InvalidOptions { .. })));
    }
    // The most ids, and the last of them.
    let big_name = name_in(&dir, "big");
    let mut big = Notifier::bind(&big_name, EventOptions { ids: 65536, ..options }).unwrap();
    let mut big_listener = Listener::connect(&big_name).unwrap();
    while big.listeners() < 1 {
        std::thread::sleep(Duration::from_millis(1));
    }
    big.notify(65535).unwrap();
    assert!(matches!(big.notify(65536), Err(Error::UnknownEvent { .. })));
    assert_eq!(big_listener.wait_timeout(Duration::from_secs(10)).unwrap().iter().collect::<Vec<_>>(), [(65535, 1)]);
    drop(notifier);
    assert!(matches!(listener.wait_timeout(Duration::from_secs(10)), Err(Error::Disconnected)));
}
