//! `Poller` and the pollable channel sides at their corners: peers that
//! forge indices, two pollers on one side, a polled named channel let go,
//! descriptors closed before they were removed, a byte sender's wanted
//! room after it was found.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipc_kit::pipe::pipe;
use ipc_kit::shm::Error as ShmError;
use ipc_kit::shm::channel::layout::{HEAD, TAIL};
use ipc_kit::shm::channel::{Channel, Receiver, Sender, channel};
use ipc_kit::{Interest, Poller};
use ipc_kit_tests::{Exit, cases, close_inherited, fork, unique_name};

cases!("poll_corners":
    a_forged_receiver_index_hides_no_message,
    a_forged_receiver_index_makes_no_false_reports,
    a_forged_sender_index_makes_no_false_reports,
    two_pollers_on_one_side_are_both_woken,
    a_polled_named_channel_goes_with_its_last_handle,
    a_descriptor_closed_before_removal_leaves_the_poller_quiet,
    a_byte_senders_want_ends_with_the_record_it_sent,
    a_peer_that_fills_its_doorbell_in_blocking_mode_cannot_stall_sends,
    a_peer_that_takes_the_doorbell_down_to_zero_only_delays_pollers_until_they_look_again,
);

/// Blocks until the other process writes a byte (or panics after 10 s).
fn await_byte(r: &mut impl Read) {
    let mut b = [0u8];
    assert_eq!(r.read(&mut b).unwrap(), 1, "the other process went away");
}

// A hostile sender writes the receiver's published index (HEAD) as if the
// message it just sent had been received. The receiver's readiness goes
// by its own index, kept in private memory: the message is reported.
fn a_forged_receiver_index_hides_no_message() {
    let chan = channel::<u64>(16).unwrap();
    let (go_r, go_w) = pipe().unwrap();
    let go_rfd = go_r.as_raw_fd();
    let (done_r, done_w) = pipe().unwrap();
    let done_wfd = done_w.as_raw_fd();
    let (claimed_r, claimed_w) = pipe().unwrap();
    let claimed_wfd = claimed_w.as_raw_fd();
    let sender = fork(|| {
        close_inherited(go_rfd);
        close_inherited(done_wfd);
        close_inherited(claimed_wfd);
        // Only once the receiver is claimed (a receiver claimed after the
        // forgery would start from the forged index).
        let mut claimed = claimed_r;
        await_byte(&mut claimed);
        let mut tx = chan.sender().unwrap();
        tx.send(7).unwrap();
        // The receiver's index, forged: as if message 0 had been taken.
        chan.mapping().write(HEAD, &1u64).unwrap();
        let mut go = go_w;
        go.write_all(b"+").unwrap();
        // Stay connected until the parent is done.
        let mut done = done_r;
        let _ = done.read(&mut [0]);
        drop(tx);
    });
    let mut rx: Receiver<u64> = chan.receiver().unwrap();
    let mut claimed = claimed_w;
    claimed.write_all(b"+").unwrap();
    let mut go = go_r;
    await_byte(&mut go);
    let mut poller = Poller::new().unwrap();
    poller.add(&rx, Interest::Readable, 1).unwrap();
    let ready = poller.wait_timeout(Duration::from_millis(500)).unwrap().to_vec();
    let got = rx.try_recv();
    drop(done_w);
    sender.join();
    assert_eq!(got.unwrap(), 7, "the message is there");
    assert_eq!(ready, [1], "a message waited, and the poller slept for 500 ms without reporting it");
}

// The same forgery the other way: after the receiver took the only
// message, the sender writes HEAD back to 0. Nothing is there to take,
// and nothing is reported: no poll loop spins on it.
fn a_forged_receiver_index_makes_no_false_reports() {
    let chan = channel::<u64>(16).unwrap();
    let (go_r, go_w) = pipe().unwrap();
    let (back_r, back_w) = pipe().unwrap();
    let (go_rfd, back_wfd) = (go_r.as_raw_fd(), back_w.as_raw_fd());
    let sender = fork(|| {
        close_inherited(go_rfd);
        close_inherited(back_wfd);
        let mut tx = chan.sender().unwrap();
        tx.send(7).unwrap();
        let mut back = back_r;
        await_byte(&mut back); // received
        chan.mapping().write(HEAD, &0u64).unwrap();
        let mut go = go_w;
        go.write_all(b"+").unwrap();
        await_byte(&mut back); // the parent is done (or the pipe closed)
    });
    let mut rx: Receiver<u64> = chan.receiver().unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 7);
    let mut back = back_w;
    back.write_all(b"+").unwrap();
    let mut go = go_r;
    await_byte(&mut go);
    let mut poller = Poller::new().unwrap();
    poller.add(&rx, Interest::Readable, 1).unwrap();
    let (mut reports, mut empty) = (0, 0);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(200) {
        if poller.wait_timeout(Duration::from_millis(100)).unwrap() == [1] {
            reports += 1;
            match rx.try_recv() {
                Err(ShmError::Empty) => empty += 1,
                other => panic!("{other:?}"),
            }
        }
    }
    back.write_all(b"+").unwrap();
    sender.join();
    assert!(empty <= 1, "{reports} reports in 200 ms, {empty} of them found the ring empty (and no error)");
}

// A hostile receiver writes the sender's published index (TAIL) back to
// its own: the sender's ring is full by the sender's own index, and the
// sender is not reported writable.
fn a_forged_sender_index_makes_no_false_reports() {
    let chan = channel::<u64>(16).unwrap();
    let for_rx = chan.clone();
    let mut tx: Sender<u64> = chan.sender().unwrap();
    for i in 0..16 {
        tx.try_send(i).unwrap();
    }
    assert!(matches!(tx.try_send(16), Err(ShmError::Full)));
    let (go_r, go_w) = pipe().unwrap();
    let (back_r, back_w) = pipe().unwrap();
    let (go_rfd, back_wfd) = (go_r.as_raw_fd(), back_w.as_raw_fd());
    let receiver = fork(move || {
        close_inherited(go_rfd);
        close_inherited(back_wfd);
        let _rx = for_rx.receiver().unwrap();
        // HEAD is 0: TAIL forged to 0, an empty ring by the shared words.
        for_rx.mapping().write(TAIL, &0u64).unwrap();
        let mut go = go_w;
        go.write_all(b"+").unwrap();
        let mut back = back_r;
        await_byte(&mut back);
    });
    let mut go = go_r;
    await_byte(&mut go);
    let mut poller = Poller::new().unwrap();
    poller.add(&tx, Interest::Writable, 1).unwrap();
    let (mut reports, mut full) = (0, 0);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(200) {
        if poller.wait_timeout(Duration::from_millis(100)).unwrap() == [1] {
            reports += 1;
            match tx.try_send(99) {
                Err(ShmError::Full) => full += 1,
                other => panic!("{other:?}"),
            }
        }
    }
    let mut back = back_w;
    back.write_all(b"+").unwrap();
    receiver.join();
    assert!(full <= 1, "{reports} reports in 200 ms, {full} of them found the ring full (and no error)");
}

/// How long poller `a`, asleep on `rx`, takes to report a message sent
/// 3 ms after it started waiting; with `second`, a second poller on the
/// same receiver makes one `try_wait` 2 ms in (before the message).
fn latency(a: &mut Poller, b: &mut Poller, tx: &mut Sender<u64>, rx: &mut Receiver<u64>, second: bool) -> Duration {
    let sent = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let r = a.wait_timeout(Duration::from_secs(2)).unwrap().to_vec();
            (r, Instant::now())
        });
        std::thread::sleep(Duration::from_millis(2));
        if second {
            assert!(b.try_wait().unwrap().is_empty());
        }
        std::thread::sleep(Duration::from_millis(1));
        let sent = Instant::now();
        tx.send(1).unwrap();
        let (r, woke) = waiter.join().unwrap();
        assert_eq!(r, [1]);
        woke.saturating_duration_since(sent)
    });
    assert_eq!(rx.try_recv().unwrap(), 1);
    sent
}

// Two pollers on one receiver (two threads of a process, each with its own
// event loop): one that looks (`try_wait`) while the other sleeps leaves
// the sleeper armed, and the message wakes it at once, not at its 20 ms
// recheck; for a channel made for fork and for a named one.
fn two_pollers_on_one_side_are_both_woken() {
    let name = format!("/{}", unique_name("ipc-kit-pollrev"));
    let mut medians = Vec::new();
    for named in [false, true] {
        let (chan, other) = if named {
            let c = Channel::<u64>::create(&name, 64).unwrap();
            let o = Channel::<u64>::open(&name).unwrap();
            (c, o)
        } else {
            let c = channel::<u64>(64).unwrap();
            let o = c.clone();
            (c, o)
        };
        let mut tx = other.sender().unwrap();
        let mut rx = chan.receiver().unwrap();
        let (mut a, mut b) = (Poller::new().unwrap(), Poller::new().unwrap());
        a.add(&rx, Interest::Readable, 1).unwrap();
        b.add(&rx, Interest::Readable, 2).unwrap();
        let mut alone: Vec<Duration> = (0..7).map(|_| latency(&mut a, &mut b, &mut tx, &mut rx, false)).collect();
        let mut shared: Vec<Duration> = (0..7).map(|_| latency(&mut a, &mut b, &mut tx, &mut rx, true)).collect();
        alone.sort();
        shared.sort();
        eprintln!("named {named}: alone {alone:?}\n  with a second poller's try_wait {shared:?}");
        assert!(alone[3] < Duration::from_millis(10), "the control: named {named}, {alone:?}");
        medians.push((named, alone[3], shared[3]));
    }
    assert!(
        medians.iter().all(|m| m.2 < Duration::from_millis(10)),
        "a message sent to a sleeping poller was reported after (named?, median alone, median with a second \
         poller's try_wait): {medians:?}"
    );
}

// A named channel that was polled: its last handles are dropped. The
// watching thread is joined when its side's readiness goes, so the name
// goes with the handles: made again at once, and nothing is left when the
// process exits right after.
fn a_polled_named_channel_goes_with_its_last_handle() {
    const ROUNDS: usize = 20;
    let mut results = Vec::new();
    for polled in [false, true] {
        let (mut leaked, mut recreate_refused) = (0, 0);
        for _ in 0..ROUNDS {
            let name = format!("/{}", unique_name("ipc-kit-pollrev"));
            let path = PathBuf::from("/dev/shm").join(&name[1..]);
            let (res_r, res_w) = pipe().unwrap();
            let res_rfd = res_r.as_raw_fd();
            let mut child = fork(|| {
                close_inherited(res_rfd);
                let chan = Channel::<u64>::create(&name, 64).unwrap();
                let rx = chan.receiver().unwrap();
                if polled {
                    let mut poller = Poller::new().unwrap();
                    poller.add(&rx, Interest::Readable, 1).unwrap();
                    assert!(poller.try_wait().unwrap().is_empty());
                    poller.remove(1).unwrap();
                    drop(poller);
                }
                drop(rx);
                drop(chan);
                // Create it again at once: it was the only handle.
                let again = Channel::<u64>::create(&name, 64);
                let refused = matches!(again, Err(ShmError::AlreadyExists { .. }));
                drop(again);
                nix::unistd::write(&res_w, &[u8::from(refused)]).unwrap();
                // ... and the process ends here, as a program whose main returns.
            });
            drop(res_w);
            assert_eq!(child.wait(), Exit::Code(0));
            let mut r = res_r;
            let mut b = [0u8];
            r.read_exact(&mut b).unwrap();
            recreate_refused += usize::from(b[0]);
            if path.exists() {
                leaked += 1;
                let _ = std::fs::remove_file(&path);
            }
        }
        results.push((polled, recreate_refused, leaked));
    }
    // How long the name outlives the handles, in a process that stays.
    let name = format!("/{}", unique_name("ipc-kit-pollrev"));
    let path = PathBuf::from("/dev/shm").join(&name[1..]);
    let chan = Channel::<u64>::create(&name, 64).unwrap();
    let rx = chan.receiver().unwrap();
    let mut poller = Poller::new().unwrap();
    poller.add(&rx, Interest::Readable, 1).unwrap();
    assert!(poller.try_wait().unwrap().is_empty());
    drop((poller, rx, chan));
    let start = Instant::now();
    while path.exists() && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_micros(200));
    }
    eprintln!("the name outlived the last handle by {:?} (still there: {})", start.elapsed(), path.exists());
    assert_eq!(results[0], (false, 0, 0), "the control, without a poller");
    let (_, recreate_refused, leaked) = results[1];
    assert!(
        leaked == 0 && recreate_refused == 0,
        "of {ROUNDS} processes that polled a named channel then dropped it: {recreate_refused} could not create \
         it again at once (AlreadyExists), {leaked} left it in /dev/shm after exiting (without polling: none)"
    );
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    Duration::from_nanos(s.split_whitespace().next().unwrap().parse().unwrap())
}

// A pipe reader closed before it was removed, while its file lives on
// under another descriptor (a dup, or a forked child's copy): epoll would
// keep its registration until the file is released. `remove` (and a wait
// that hears from it) starts epoll afresh without it: no wait spins on it.
fn a_descriptor_closed_before_removal_leaves_the_poller_quiet() {
    let (r, w) = pipe().unwrap();
    // Open elsewhere: as in a child forked after the pipe was made.
    let elsewhere = nix::unistd::dup(&r).unwrap();
    let mut poller = Poller::new().unwrap();
    poller.add(&r, Interest::Readable, 1).unwrap();
    drop(r);
    poller.remove(1).unwrap();
    assert!(poller.is_empty());
    let mut w = w;
    w.write_all(b"x").unwrap();
    let (wall, cpu) = (Instant::now(), thread_cpu());
    let ready = poller.wait_timeout(Duration::from_millis(300)).unwrap().to_vec();
    let (wall, cpu) = (wall.elapsed(), thread_cpu() - cpu);
    drop(elsewhere);
    assert!(ready.is_empty());
    assert!(
        cpu < Duration::from_millis(30),
        "a poller with nothing registered burned {cpu:?} of CPU in a {wall:?} wait"
    );
}

// A byte sender is writable when the record it was refused fits; once it
// sent that record, any record that fits makes it writable again.
fn a_byte_senders_want_ends_with_the_record_it_sent() {
    let (for_rx, mut tx, big, mut poller) = crate::poll::a_refused_byte_sender();
    let mut rx = for_rx.receiver().unwrap();
    let mut buf = Vec::new();
    for _ in 0..30 {
        assert_eq!(rx.try_recv(&mut buf).unwrap(), 56);
    }
    assert_eq!(poller.try_wait().unwrap(), [3], "room for the refused record");
    tx.try_send(&big).unwrap();
    // Room for small records is left; the next one is small.
    let ready = poller.wait_timeout(Duration::from_millis(100)).unwrap().to_vec();
    let small = tx.try_send(&[3; 8]);
    assert!(small.is_ok(), "{small:?}");
    assert_eq!(ready, [3], "a sender with room for its next record, not reported writable for 100 ms");
}

// A hostile receiver makes its doorbell's description blocking (the flag
// is shared across fork), fills the eventfd's counter to its maximum, and
// keeps a poller armed on it: a sender that rang by adding 1 would wait
// for ever in the write. Every send returns, and the messages arrive.
fn a_peer_that_fills_its_doorbell_in_blocking_mode_cannot_stall_sends() {
    use ipc_kit::Pollable;
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    const MESSAGES: u64 = 200;
    let chan = channel::<u64>(4).unwrap();
    let (go_r, go_w) = pipe().unwrap();
    let go_rfd = go_r.as_raw_fd();
    let child = fork(|| {
        close_inherited(go_rfd);
        let mut rx = chan.receiver().unwrap();
        {
            let source = rx.source(Interest::Readable).unwrap().expect("a fork channel's receiver has a doorbell");
            fcntl(source.fd, FcntlArg::F_SETFL(OFlag::empty())).unwrap();
            // The counter starts at 1 or more: this takes it to the maximum.
            let fill = (u64::MAX - 1) - 1;
            let _ = nix::unistd::write(source.fd, &fill.to_ne_bytes());
        }
        let mut poller = Poller::new().unwrap();
        poller.add(&rx, Interest::Readable, 1).unwrap();
        (&go_w).write_all(b"g").unwrap();
        // Armed again and again while the sender sends into a full ring.
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(500) {
            let _ = poller.wait_timeout(Duration::from_millis(20)).unwrap();
        }
        for i in 0..MESSAGES {
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), i);
        }
    });
    drop(go_w);
    let mut go_r = go_r;
    await_byte(&mut go_r);
    let mut tx = chan.sender().unwrap();
    for i in 0..MESSAGES {
        tx.send_timeout(i, Duration::from_secs(10)).unwrap();
    }
    child.join();
}

// A hostile sender reads the receiver's doorbell (inherited with the
// channel) down to 0, again and again while it sends: a ring then wakes
// no poller, and the receiver's poller still reports every message when
// it looks again.
fn a_peer_that_takes_the_doorbell_down_to_zero_only_delays_pollers_until_they_look_again() {
    const MESSAGES: u64 = 50;
    let chan = channel::<u64>(4).unwrap();
    let child = fork(|| {
        // Every eventfd it holds: the channel's doorbells among them.
        let bells = ipc_kit_tests::copies_of_open_eventfds();
        assert!(bells.len() >= 2, "the doorbells are inherited");
        let drain = || {
            for b in &bells {
                while nix::unistd::read(b, &mut [0u8; 8]).is_ok() {}
            }
        };
        let mut tx = chan.sender().unwrap();
        for i in 0..MESSAGES {
            drain();
            std::thread::sleep(Duration::from_millis(3));
            drain();
            tx.send_timeout(i, Duration::from_secs(10)).unwrap();
            drain();
        }
    });
    let mut rx = chan.receiver().unwrap();
    let mut poller = Poller::new().unwrap();
    poller.add(&rx, Interest::Readable, 1).unwrap();
    let mut i = 0;
    while i < MESSAGES {
        match rx.try_recv() {
            Ok(v) => {
                assert_eq!(v, i);
                i += 1;
            }
            Err(ShmError::Empty) => assert_eq!(poller.wait_timeout(Duration::from_secs(10)).unwrap(), [1]),
            Err(e) => panic!("{e}"),
        }
    }
    child.join();
}
