//! One thread waiting on many endpoints with `Poller`, across real
//! processes: readiness of each mechanism, level-triggered reports, peers
//! that die, deadlines.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ipc_kit::fifo::Fifo;
use ipc_kit::msgq::{Key, PosixQueue, QueueAttr, Selector, SysvQueue};
use ipc_kit::pipe::{Error as PipeError, FrameReader, FrameWriter, PIPE_BUF, PipeReader, pipe};
use ipc_kit::shm::Error as ShmError;
use ipc_kit::shm::channel::{ByteChannel, WaitPolicy, byte_channel, channel};
use ipc_kit::sync::{EventFd, EventFdMode};
use ipc_kit::{Interest, PollError, Poller};
use ipc_kit_tests::{
    Exit, Rng, SLACK, ScratchDir, assert_fired_within, cases, checksum, close_inherited, fork, interrupt_on,
    thread_count, unique_name,
};
use nix::sys::signal::Signal;

cases!("poll":
    a_pipe_a_fifo_and_a_queue_from_one_thread,
    reports_are_level_triggered,
    frames_read_ahead_are_reported,
    a_killed_writer_wakes_the_poller,
    a_killed_reader_wakes_a_waiting_writer,
    room_wakes_a_waiting_writer,
    the_deadline_is_honoured,
    signals_do_not_end_a_wait_early,
    an_eventfd_across_fork,
    registrations_are_checked,
    a_channel_rings_its_doorbell_only_when_armed,
    a_channel_sender_is_woken_by_room,
    a_byte_sender_is_writable_when_its_record_fits,
    a_killed_channel_peer_wakes_the_poller,
    a_peer_that_never_comes_wakes_the_poller,
    a_named_channel_is_watched_by_a_thread,
    hostile_waiting_bits_cost_only_wake_ups,
    a_system_v_queue_through_a_watcher,
);

/// A queue of 10 messages of 64 bytes under a fresh name, unlinked on drop.
fn queue() -> PosixQueue {
    let name = format!("/{}", unique_name("ipc-kit-poll"));
    PosixQueue::create(&name, QueueAttr { max_messages: 10, message_size: 64 }, 0o600).unwrap()
}

/// Message `seq` of a stream: its number, then bytes that depend on it.
fn message(seq: u64, rng: &mut Rng) -> Vec<u8> {
    let len = 8 + rng.below(48) as usize;
    let mut m = seq.to_le_bytes().to_vec();
    m.extend((8..len).map(|i| (seq as usize * 31 + i) as u8));
    m
}

/// Checks message `expected` of a stream and adds it to `sum`.
fn check(msg: &[u8], expected: u64, sum: &mut u64) {
    assert!(msg.len() >= 8, "a message of {} bytes", msg.len());
    let seq = u64::from_le_bytes(msg[..8].try_into().unwrap());
    assert_eq!(seq, expected, "out of order");
    for (i, &b) in msg.iter().enumerate().skip(8) {
        assert_eq!(b, (seq as usize * 31 + i) as u8, "message {seq} byte {i}");
    }
    *sum = sum.wrapping_add(checksum(msg));
}

const PIPE: u64 = 1;
const FIFO: u64 = 2;
const QUEUE: u64 = 3;

fn a_pipe_a_fifo_and_a_queue_from_one_thread() {
    const EACH: u64 = 3000;
    let dir = ScratchDir::new();
    let fifo = Fifo::create(dir.path().join("fifo"), 0o600).unwrap();
    let q = queue();
    let (r, w) = pipe().unwrap();
    let rfd = r.as_raw_fd();
    let (sums_r, sums_w) = pipe().unwrap();
    let sums_rfd = sums_r.as_raw_fd();
    let writer = fork(|| {
        close_inherited(rfd);
        close_inherited(sums_rfd);
        let mut to_pipe = FrameWriter::new(w);
        let mut to_fifo = FrameWriter::new(fifo.open_writer_timeout(Duration::from_secs(10)).unwrap());
        let mut rng = Rng::new(7);
        let (mut next, mut sums) = ([0u64; 3], [0u64; 3]);
        while next.iter().any(|&n| n < EACH) {
            let which = rng.below(3) as usize;
            if next[which] == EACH {
                continue;
            }
            let m = message(next[which], &mut rng);
            match which {
                0 => to_pipe.send(&m).unwrap(),
                1 => to_fifo.send(&m).unwrap(),
                _ => q.send(&m, 0).unwrap(),
            }
            sums[which] = sums[which].wrapping_add(checksum(&m));
            next[which] += 1;
            if rng.chance(500) {
                std::thread::sleep(Duration::from_millis(2)); // let the reader sleep
            }
        }
        q.send(b"end", 0).unwrap();
        let mut out = sums_w;
        for s in sums {
            out.write_all(&s.to_le_bytes()).unwrap();
        }
    });
    let mut from_pipe = FrameReader::new(r);
    let mut from_fifo = FrameReader::new(fifo.open_reader_timeout(Duration::from_secs(10)).unwrap());
    let mut poller = Poller::new().unwrap();
    poller.add(&from_pipe, Interest::Readable, PIPE).unwrap();
    poller.add(&from_fifo, Interest::Readable, FIFO).unwrap();
    poller.add(&q, Interest::Readable, QUEUE).unwrap();
    let (mut next, mut sums, mut open) = ([0u64; 3], [0u64; 3], 3);
    let mut buf = Vec::new();
    let mut waits = 0u64;
    while open > 0 {
        let ready = poller.wait_timeout(Duration::from_secs(10)).unwrap().to_vec();
        assert!(!ready.is_empty(), "nothing for 10 s with {open} endpoints open: {next:?}");
        waits += 1;
        for token in ready {
            let at = (token - 1) as usize;
            let mut took = 0;
            loop {
                let got = match token {
                    PIPE => from_pipe.try_recv(&mut buf),
                    FIFO => from_fifo.try_recv(&mut buf),
                    _ => match q.try_recv_vec(&mut buf) {
                        Ok(_) if buf == b"end" => Ok(None),
                        Ok(_) => Ok(Some(buf.len())),
                        Err(ipc_kit::msgq::Error::Empty) => Err(PipeError::WouldBlock),
                        Err(e) => panic!("queue: {e}"),
                    },
                };
                match got {
                    Ok(Some(_)) => {
                        check(&buf, next[at], &mut sums[at]);
                        next[at] += 1;
                        took += 1;
                    }
                    Ok(None) => {
                        poller.remove(token).unwrap();
                        open -= 1;
                        break;
                    }
                    Err(PipeError::WouldBlock) => break,
                    Err(e) => panic!("{token}: {e}"),
                }
            }
            assert!(took > 0 || open < 3 || next[at] == EACH, "token {token} reported with nothing to take");
        }
    }
    assert_eq!(next, [EACH; 3]);
    let mut sent = [0u8; 24];
    let mut sums_r = sums_r;
    std::io::Read::read_exact(&mut sums_r, &mut sent).unwrap();
    let sent: Vec<u64> = sent.chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(sums.to_vec(), sent, "checksums");
    assert!(waits > 1, "every message in one wait");
    writer.join();
}

fn reports_are_level_triggered() {
    let q = queue();
    let (r, mut w) = pipe().unwrap();
    let mut poller = Poller::new().unwrap();
    poller.add(&q, Interest::Readable, QUEUE).unwrap();
    poller.add(&r, Interest::Readable, PIPE).unwrap();
    assert!(poller.try_wait().unwrap().is_empty());
    let child = fork(|| {
        q.send(b"one", 0).unwrap();
        q.send(b"two", 0).unwrap();
        w.write_all(b"ab").unwrap();
    });
    child.join();
    let mut buf = [0u8; 64];
    let mut pipe_r = r;
    // Reported at every wait while something is there, and only then.
    for left in (0..2).rev() {
        assert_eq!(poller.wait_timeout(Duration::from_secs(5)).unwrap(), [PIPE, QUEUE]);
        assert_eq!(poller.try_wait().unwrap(), [PIPE, QUEUE], "reported again: nothing was taken");
        q.try_recv(&mut buf).unwrap();
        std::io::Read::read_exact(&mut pipe_r, &mut buf[..1]).unwrap();
        let expected: &[u64] = if left > 0 { &[PIPE, QUEUE] } else { &[] };
        assert_eq!(poller.try_wait().unwrap(), expected);
    }
    assert!(poller.wait_timeout(Duration::from_millis(20)).unwrap().is_empty());
}

fn frames_read_ahead_are_reported() {
    // Three frames arrive at once; the reader reads them all ahead with
    // the first: the pipe is empty, the frames are still there to take,
    // while the writer keeps the pipe open.
    let (r, w) = pipe().unwrap();
    let (go_r, go_w) = pipe().unwrap();
    let (rfd, go_wfd) = (r.as_raw_fd(), go_w.as_raw_fd());
    let child = fork(move || {
        close_inherited(rfd);
        close_inherited(go_wfd);
        let mut tx = FrameWriter::new(w);
        for i in 0..3u8 {
            tx.send(&[i; 100]).unwrap();
        }
        tx.send(&[9; 2]).unwrap();
        tx.get_mut().write_all(&[50, 0]).unwrap(); // half a header after them
        let mut go = go_r;
        let _ = std::io::Read::read(&mut go, &mut [0]); // until the parent says
    });
    let mut rx = FrameReader::new(r);
    let mut poller = Poller::new().unwrap();
    poller.add(&rx, Interest::Readable, PIPE).unwrap();
    // Everything has arrived once the half header has.
    let start = Instant::now();
    while pipe_len(rx.get_ref()) < 3 * 104 + 6 + 2 {
        assert!(start.elapsed() < Duration::from_secs(10), "the frames never came");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut buf = Vec::new();
    for i in 0..4u8 {
        assert_eq!(poller.wait_timeout(Duration::from_secs(5)).unwrap(), [PIPE], "frame {i}");
        assert!(rx.try_recv(&mut buf).unwrap().is_some(), "frame {i}");
        assert_eq!(pipe_len(rx.get_ref()), 0, "all read ahead with the first");
    }
    // Half a header: nothing to take, nothing reported.
    assert!(poller.wait_timeout(Duration::from_millis(30)).unwrap().is_empty());
    assert!(matches!(rx.try_recv(&mut buf), Err(PipeError::WouldBlock)));
    // The writer goes: the end is news, and the frame was cut short.
    drop(go_w);
    child.join();
    assert_eq!(poller.wait_timeout(Duration::from_secs(5)).unwrap(), [PIPE]);
    assert!(matches!(rx.try_recv(&mut buf), Err(PipeError::TruncatedFrame { .. })));
}

/// The bytes waiting in the pipe of `r` (`FIONREAD`).
fn pipe_len(r: &PipeReader) -> usize {
    #![allow(unsafe_code)]
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, to `n`.
    let rc = unsafe { libc::ioctl(r.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD");
    n as usize
}

/// Waits on `poller` for `token`, which some process makes ready after
/// about `after`; returns how long that took.
fn woken_by(poller: &mut Poller, token: u64) -> Duration {
    let start = Instant::now();
    let ready = poller.wait_timeout(Duration::from_secs(10)).unwrap().to_vec();
    assert_eq!(ready, [token], "after {:?}", start.elapsed());
    start.elapsed()
}

fn a_killed_writer_wakes_the_poller() {
    let dir = ScratchDir::new();
    let fifo = Fifo::create(dir.path().join("fifo"), 0o600).unwrap();
    let (r, w) = pipe().unwrap();
    let rfd = r.as_raw_fd();
    // The FIFO's reader is open before its writer comes: no hang-up yet.
    let from_fifo = fifo.try_open_reader().unwrap();
    let ffd = from_fifo.as_raw_fd();
    let mut writers = fork(|| {
        close_inherited(rfd);
        close_inherited(ffd);
        let to_fifo = fifo.open_writer_timeout(Duration::from_secs(10)).unwrap();
        let mut w = w;
        w.write_all(b"!").unwrap(); // both ends open
        let _keep = (w, to_fifo);
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let mut poller = Poller::new().unwrap();
    poller.add(&r, Interest::Readable, PIPE).unwrap();
    poller.add(&from_fifo, Interest::Readable, FIFO).unwrap();
    assert_eq!(poller.wait_timeout(Duration::from_secs(10)).unwrap(), [PIPE]);
    let mut r = r;
    std::io::Read::read_exact(&mut r, &mut [0]).unwrap();
    assert!(poller.wait_timeout(Duration::from_millis(50)).unwrap().is_empty());
    let pid = writers.pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();
    });
    let start = Instant::now();
    let ready = poller.wait_timeout(Duration::from_secs(10)).unwrap().to_vec();
    assert!(start.elapsed() < Duration::from_secs(5), "woken after {:?}", start.elapsed());
    killer.join().unwrap();
    assert_eq!(writers.wait(), Exit::Signaled(Signal::SIGKILL));
    // Both ends hung up at once (or one a moment after the other).
    let mut ready = ready;
    if ready.len() < 2 {
        ready.extend(poller.wait_timeout(Duration::from_secs(5)).unwrap());
        ready.sort_unstable();
        ready.dedup();
    }
    assert_eq!(ready, [PIPE, FIFO]);
    let mut buf = Vec::new();
    assert_eq!(FrameReader::new(r).try_recv(&mut buf).unwrap(), None, "end of file");
    assert_eq!(FrameReader::new(from_fifo).try_recv(&mut buf).unwrap(), None, "end of file");
}

/// Fills `w` (made nonblocking) until a write of `PIPE_BUF` bytes no
/// longer fits.
fn fill(w: &ipc_kit::pipe::PipeWriter) {
    w.set_nonblocking(true).unwrap();
    let chunk = [7u8; PIPE_BUF];
    while let Ok(n) = (&*w).write(&chunk) {
        assert!(n > 0);
    }
}

fn a_killed_reader_wakes_a_waiting_writer() {
    let (r, w) = pipe().unwrap();
    let wfd = w.as_raw_fd();
    fill(&w);
    let mut reader = fork(|| {
        close_inherited(wfd);
        let _keep = r;
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    let mut poller = Poller::new().unwrap();
    poller.add(&w, Interest::Writable, PIPE).unwrap();
    assert!(poller.wait_timeout(Duration::from_millis(50)).unwrap().is_empty(), "a full pipe");
    let pid = reader.pid();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();
    });
    let took = woken_by(&mut poller, PIPE);
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(reader.wait(), Exit::Signaled(Signal::SIGKILL));
    assert_eq!((&w).write(b"x").unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
}

fn room_wakes_a_waiting_writer() {
    let (r, w) = pipe().unwrap();
    let _r_here = r.try_clone().unwrap(); // the pipe outlives the child's reader
    let wfd = w.as_raw_fd();
    fill(&w);
    let mut poller = Poller::new().unwrap();
    poller.add(&w, Interest::Writable, PIPE).unwrap();
    poller.add(&r, Interest::Writable, 9).unwrap_err(); // a reader is never writable
    assert!(poller.try_wait().unwrap().is_empty());
    let reader = fork(move || {
        close_inherited(wfd);
        std::thread::sleep(Duration::from_millis(100));
        let mut r: PipeReader = r;
        let mut buf = vec![0; 1 << 16];
        let _ = std::io::Read::read(&mut r, &mut buf).unwrap();
    });
    let took = woken_by(&mut poller, PIPE);
    assert!(took < Duration::from_secs(5), "{took:?}");
    (&w).write_all(&[1; PIPE_BUF]).unwrap();
    reader.join();
}

fn the_deadline_is_honoured() {
    let (r, mut w) = pipe().unwrap();
    let mut poller = Poller::new().unwrap();
    poller.add(&r, Interest::Readable, PIPE).unwrap();
    for timeout in [Duration::from_millis(1), Duration::from_millis(30), Duration::from_millis(250)] {
        let start = Instant::now();
        assert!(poller.wait_timeout(timeout).unwrap().is_empty());
        assert_fired_within(start.elapsed(), timeout, SLACK);
        let start = Instant::now();
        assert!(poller.wait_deadline(Instant::now() + timeout).unwrap().is_empty());
        assert_fired_within(start.elapsed(), timeout, SLACK);
    }
    // Zero, or a deadline that has passed: a look, no wait.
    let start = Instant::now();
    assert!(poller.wait_timeout(Duration::ZERO).unwrap().is_empty());
    assert!(poller.wait_deadline(Instant::now() - Duration::from_secs(1)).unwrap().is_empty());
    assert!(start.elapsed() < SLACK);
    // A ready endpoint is reported by a look, and by the longest waits.
    w.write_all(b"x").unwrap();
    assert_eq!(poller.wait_timeout(Duration::ZERO).unwrap(), [PIPE]);
    assert_eq!(poller.wait_deadline(Instant::now() - Duration::from_secs(1)).unwrap(), [PIPE]);
    assert_eq!(poller.wait_timeout(Duration::MAX).unwrap(), [PIPE]);
    // A huge timeout waits for what comes.
    let (r2, w2) = pipe().unwrap();
    poller.add(&r2, Interest::Readable, 2).unwrap();
    poller.remove(PIPE).unwrap();
    let r2fd = r2.as_raw_fd();
    let child = fork(move || {
        close_inherited(r2fd);
        std::thread::sleep(Duration::from_millis(50));
        let mut w2 = w2;
        w2.write_all(b"y").unwrap();
    });
    assert_eq!(poller.wait_timeout(Duration::from_secs(u64::MAX)).unwrap(), [2]);
    child.join();
}

fn signals_do_not_end_a_wait_early() {
    interrupt_on(Signal::SIGUSR1);
    let (r, _w) = pipe().unwrap();
    let mut poller = Poller::new().unwrap();
    poller.add(&r, Interest::Readable, PIPE).unwrap();
    let me = nix::unistd::getpid();
    let pinger = fork(move || {
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(20));
            let _ = nix::sys::signal::kill(me, Signal::SIGUSR1);
        }
    });
    let timeout = Duration::from_millis(400);
    let start = Instant::now();
    assert!(poller.wait_timeout(timeout).unwrap().is_empty());
    assert_fired_within(start.elapsed(), timeout, SLACK);
    pinger.join();
}

fn an_eventfd_across_fork() {
    let efd = EventFd::new(0, EventFdMode::Counter).unwrap();
    let mut poller = Poller::new().unwrap();
    poller.add(&efd, Interest::Readable, 5).unwrap();
    poller.add(&efd, Interest::Writable, 6).unwrap();
    assert_eq!(poller.try_wait().unwrap(), [6], "room, nothing to read");
    let child = fork(|| {
        std::thread::sleep(Duration::from_millis(50));
        efd.add(3).unwrap();
    });
    let start = Instant::now();
    let mut ready = poller.wait_timeout(Duration::from_secs(10)).unwrap().to_vec();
    while ready == [6] && start.elapsed() < Duration::from_secs(10) {
        poller.remove(6).unwrap(); // always writable: stop asking
        ready = poller.wait_timeout(Duration::from_secs(10)).unwrap().to_vec();
    }
    assert_eq!(ready, [5]);
    assert_eq!(efd.read().unwrap(), 3);
    child.join();
}

fn registrations_are_checked() {
    let q = queue();
    let (r, w) = pipe().unwrap();
    let mut poller = Poller::new().unwrap();
    assert!(poller.is_empty());
    poller.add(&q, Interest::Readable, 1).unwrap();
    poller.add(&q, Interest::Writable, 2).unwrap();
    assert_eq!(poller.len(), 2);
    assert!(matches!(poller.add(&r, Interest::Readable, 1), Err(PollError::TokenInUse { token: 1 })));
    assert!(matches!(poller.add(&q, Interest::Readable, 3), Err(PollError::AlreadyRegistered { token: 1 })));
    assert!(matches!(poller.add(&r, Interest::Writable, 3), Err(PollError::NotPollable { .. })));
    assert!(matches!(poller.add(&w, Interest::Readable, 3), Err(PollError::NotPollable { .. })));
    assert!(matches!(poller.remove(7), Err(PollError::UnknownToken { token: 7 })));
    // An empty queue: writable only; then readable too.
    assert_eq!(poller.try_wait().unwrap(), [2]);
    q.send(b"m", 0).unwrap();
    assert_eq!(poller.try_wait().unwrap(), [1, 2]);
    poller.remove(2).unwrap();
    assert_eq!(poller.try_wait().unwrap(), [1]);
    let e: std::io::Error = PollError::TokenInUse { token: 1 }.into();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    // An endpoint dropped while registered: removing it still works, and
    // its number, reused, registers afresh.
    poller.add(&r, Interest::Readable, 4).unwrap();
    let number = r.as_raw_fd();
    drop(r);
    drop(w);
    let (r2, mut w2) = pipe().unwrap();
    let reused = r2.as_raw_fd() == number;
    poller.add(&r2, Interest::Readable, 5).unwrap();
    w2.write_all(b"z").unwrap();
    let ready = poller.try_wait().unwrap().to_vec();
    assert!(ready.contains(&5) && ready.contains(&1), "{ready:?} (number reused: {reused})");
    if reused {
        // The registration of the closed descriptor went with its number.
        assert!(matches!(poller.remove(4), Err(PollError::UnknownToken { token: 4 })));
    } else {
        poller.remove(4).unwrap();
    }
    poller.remove(5).unwrap();
    assert_eq!(poller.try_wait().unwrap(), [1]);
}

/// Waits for `token` on `poller` at most 10 s; panics when something else,
/// or nothing, comes.
fn expect(poller: &mut Poller, token: u64) {
    let ready = poller.wait_timeout(Duration::from_secs(10)).unwrap().to_vec();
    assert_eq!(ready, [token]);
}

fn a_channel_rings_its_doorbell_only_when_armed() {
    const N: u64 = 20_000;
    let chan = channel::<[u64; 4]>(256).unwrap();
    let (stats_r, stats_w) = pipe().unwrap();
    let stats_rfd = stats_r.as_raw_fd();
    let sender = fork(|| {
        close_inherited(stats_rfd);
        let mut tx = chan.sender().unwrap();
        let mut rng = Rng::new(3);
        for i in 0..N {
            tx.send([i, i ^ 0xAB, !i, i.wrapping_mul(31)]).unwrap();
            if rng.chance(1000) {
                std::thread::sleep(Duration::from_millis(3)); // the poller sleeps
            }
        }
        let mut out = stats_w;
        out.write_all(&tx.stats().wakes.to_le_bytes()).unwrap();
    });
    let mut rx = chan.receiver().unwrap();
    rx.set_wait_policy(WaitPolicy::Block);
    let mut poller = Poller::new().unwrap();
    poller.add(&rx, Interest::Readable, 1).unwrap();
    assert!(matches!(poller.add(&rx, Interest::Writable, 2), Err(PollError::NotPollable { .. })));
    let (mut next, mut waits, mut empty) = (0u64, 0u64, 0u64);
    while next < N {
        let ready = poller.wait_timeout(Duration::from_secs(10)).unwrap().to_vec();
        assert_eq!(ready, [1], "after {next} messages");
        waits += 1;
        let mut took = 0;
        loop {
            match rx.try_recv() {
                Ok(m) => {
                    assert_eq!(m, [next, next ^ 0xAB, !next, next.wrapping_mul(31)]);
                    next += 1;
                    took += 1;
                }
                Err(ShmError::Empty) => break,
                Err(ShmError::Disconnected) if next == N => break,
                Err(e) => panic!("{e} after {next} messages"),
            }
        }
        empty += u64::from(took == 0);
    }
    // The sender closed: the end is reported, and received.
    expect(&mut poller, 1);
    assert!(matches!(rx.try_recv(), Err(ShmError::Disconnected)));
    let mut wakes = [0u8; 8];
    let mut stats_r = stats_r;
    std::io::Read::read_exact(&mut stats_r, &mut wakes).unwrap();
    let wakes = u64::from_le_bytes(wakes);
    sender.join();
    // Rung at most once per arming, and armed only to sleep: about once
    // per wait (a wait that a ring woke for nothing arms again), never per
    // message. The receiver itself never slept: it only polled.
    assert!(wakes <= 2 * waits, "{wakes} rings for {waits} waits");
    assert!(wakes < N / 10, "{wakes} rings for {N} messages");
    assert!(empty * 10 <= waits, "{empty} of {waits} reports found nothing");
    assert!(waits < N, "a wait per message: {waits}");
    eprintln!("{N} messages, {waits} waits, {wakes} rings, {empty} empty reports");
}

fn a_channel_sender_is_woken_by_room() {
    let chan = channel::<u64>(64).unwrap();
    // A handle for the receiver's child, kept apart from the one that
    // claims (see "A peer that never comes" in the channel docs).
    let for_rx = chan.clone();
    let mut tx = chan.sender().unwrap();
    for i in 0..64 {
        tx.try_send(i).unwrap();
    }
    assert!(matches!(tx.try_send(64), Err(ShmError::Full)));
    let mut poller = Poller::new().unwrap();
    poller.add(&tx, Interest::Writable, 7).unwrap();
    assert!(poller.wait_timeout(Duration::from_millis(30)).unwrap().is_empty(), "a full ring");
    let receiver = fork(move || {
        let mut rx = for_rx.receiver().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        for i in 0..64 {
            assert_eq!(rx.recv().unwrap(), i);
        }
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 64);
    });
    expect(&mut poller, 7);
    // Level-triggered: room stays reported while there is room (the
    // receiver only makes more; once this sender fills a slot, the ring
    // may be full again until the receiver reads on).
    assert_eq!(poller.try_wait().unwrap(), [7]);
    tx.try_send(64).unwrap();
    receiver.join();
    // The receiver closed: the sender is reported, and its send fails.
    assert_eq!(poller.try_wait().unwrap(), [7]);
    assert!(matches!(tx.try_send(65), Err(ShmError::Disconnected)));
}

/// A byte channel of 4 KiB filled with 64-byte records (56 and the
/// header), whose sender was refused a record of 1,500 bytes and is
/// registered writable under token 3 on the poller returned: a handle for
/// the receiver, the sender, the refused record and the poller.
pub(crate) fn a_refused_byte_sender() -> (ByteChannel, ipc_kit::shm::ByteSender, Vec<u8>, Poller) {
    let chan: ByteChannel = byte_channel(4096).unwrap();
    let for_rx = chan.clone();
    let mut tx = chan.sender().unwrap();
    while tx.try_send(&[1; 56]).is_ok() {}
    let big = vec![2u8; 1500];
    assert!(matches!(tx.try_send(&big), Err(ShmError::Full)));
    let mut poller = Poller::new().unwrap();
    poller.add(&tx, Interest::Writable, 3).unwrap();
    assert!(poller.try_wait().unwrap().is_empty(), "full: not writable");
    (for_rx, tx, big, poller)
}

fn a_byte_sender_is_writable_when_its_record_fits() {
    let (for_rx, mut tx, big, mut poller) = a_refused_byte_sender();
    let (go_r, go_w) = pipe().unwrap();
    let go_wfd = go_w.as_raw_fd();
    let receiver = fork(move || {
        close_inherited(go_wfd);
        let mut rx = for_rx.receiver().unwrap();
        let mut go = go_r;
        let mut buf = Vec::new();
        // One record at a time, each after the parent looked: room for the
        // big record comes only after about 24 of them.
        while std::io::Read::read(&mut go, &mut [0]).unwrap() == 1 {
            assert_eq!(rx.recv(&mut buf).unwrap(), 56);
        }
        while rx.recv(&mut buf).is_ok() {}
    });
    let mut go_w = go_w;
    let mut freed = 0;
    loop {
        go_w.write_all(b"+").unwrap();
        freed += 1;
        // A record freed: reported only when the big one fits.
        let ready = poller.wait_timeout(Duration::from_millis(40)).unwrap().to_vec();
        if ready == [3] {
            break;
        }
        assert!(ready.is_empty() && freed < 64, "{ready:?} after {freed}");
    }
    tx.try_send(&big).unwrap();
    assert!(freed >= 20, "writable after {freed} records of 64 bytes freed, for 1,508 bytes");
    drop(go_w);
    drop(tx);
    receiver.join();
}

fn a_killed_channel_peer_wakes_the_poller() {
    for kill_sender in [true, false] {
        let chan = byte_channel(1 << 12).unwrap();
        let mut peer = fork(|| {
            let _side: Box<dyn std::any::Any> =
                if kill_sender { Box::new(chan.sender().unwrap()) } else { Box::new(chan.receiver().unwrap()) };
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let mut poller = Poller::new().unwrap();
        let (mut rx, mut tx) = (None, None);
        if kill_sender {
            let r = chan.receiver().unwrap();
            poller.add(&r, Interest::Readable, 1).unwrap();
            rx = Some(r);
        } else {
            let mut t = chan.sender().unwrap();
            while t.try_send(&[0; 100]).is_ok() {}
            poller.add(&t, Interest::Writable, 1).unwrap();
            tx = Some(t);
        }
        assert!(poller.wait_timeout(Duration::from_millis(100)).unwrap().is_empty(), "the peer is there");
        let pid = peer.pid();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();
        });
        let start = Instant::now();
        expect(&mut poller, 1);
        assert!(start.elapsed() < Duration::from_secs(2), "noticed after {:?}", start.elapsed());
        assert_eq!(peer.wait(), Exit::Signaled(Signal::SIGKILL));
        let mut buf = Vec::new();
        match (rx.as_mut(), tx.as_mut()) {
            (Some(r), _) => assert!(matches!(r.try_recv(&mut buf), Err(ShmError::Disconnected))),
            (_, Some(t)) => assert!(matches!(t.try_send(&[0; 100]), Err(ShmError::Disconnected))),
            _ => unreachable!(),
        }
    }
}

fn a_peer_that_never_comes_wakes_the_poller() {
    // The sender's only possible claimer exits without claiming.
    let chan = channel::<u32>(16).unwrap();
    // A second handle may still claim the sender: it goes to a child that
    // exits without claiming.
    let other = chan.clone();
    let child = fork(move || {
        std::thread::sleep(Duration::from_millis(150));
        drop(other);
    });
    let mut rx = chan.receiver().unwrap();
    let mut poller = Poller::new().unwrap();
    poller.add(&rx, Interest::Readable, 1).unwrap();
    assert!(poller.wait_timeout(Duration::from_millis(50)).unwrap().is_empty(), "a claimer is left");
    expect(&mut poller, 1);
    child.join();
    assert!(matches!(rx.try_recv(), Err(ShmError::Disconnected)));
}

fn a_named_channel_is_watched_by_a_thread() {
    const N: u64 = 5000;
    let name = format!("/{}", unique_name("ipc-kit-poll-chan"));
    let chan = ipc_kit::shm::channel::Channel::<u64>::create(&name, 64).unwrap();
    let before = thread_count();
    let sender = fork(|| {
        let chan = ipc_kit::shm::channel::Channel::<u64>::open(&name).unwrap();
        let mut tx = chan.sender().unwrap();
        let mut rng = Rng::new(5);
        for i in 0..N {
            tx.send(i).unwrap();
            if rng.chance(200) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let mut rx = chan.receiver().unwrap();
    {
        let mut poller = Poller::new().unwrap();
        poller.add(&rx, Interest::Readable, 1).unwrap();
        assert_eq!(thread_count(), before + 1, "one watching thread");
        let mut next = 0;
        while next < N {
            expect(&mut poller, 1);
            while let Ok(v) = rx.try_recv() {
                assert_eq!(v, next);
                next += 1;
            }
        }
        expect(&mut poller, 1);
        assert!(matches!(rx.try_recv(), Err(ShmError::Disconnected)));
        poller.remove(1).unwrap();
    }
    sender.join();
    drop(rx);
    // The watcher goes with the last handle on the side's readiness.
    let start = Instant::now();
    while thread_count() > before {
        assert!(start.elapsed() < Duration::from_secs(5), "the watching thread stayed");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn hostile_waiting_bits_cost_only_wake_ups() {
    // A peer that sets every bit of both sleep words, again and again,
    // makes the sides ring and wake for nothing, and nothing else.
    let chan = channel::<u64>(1024).unwrap();
    let map = chan.mapping();
    let scribbler = fork(|| {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(300) {
            for line in [ipc_kit::shm::channel::layout::RX_SLEEP, ipc_kit::shm::channel::layout::TX_SLEEP] {
                // `signal`, then `waiting`, after the 8-byte index word.
                map.write(line + 8, &u64::MAX).unwrap();
            }
            std::thread::yield_now();
        }
    });
    let sender = fork(|| {
        let mut tx = chan.sender().unwrap();
        let mut poller = Poller::new().unwrap();
        poller.add(&tx, Interest::Writable, 2).unwrap();
        let mut i = 0u64;
        while i < 100_000 {
            match tx.try_send(i) {
                Ok(()) => i += 1,
                Err(ShmError::Full) => {
                    let _ = poller.wait_timeout(Duration::from_secs(10)).unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
    });
    let mut rx = chan.receiver().unwrap();
    let mut poller = Poller::new().unwrap();
    poller.add(&rx, Interest::Readable, 1).unwrap();
    let mut next = 0;
    let start = Instant::now();
    while next < 100_000 {
        assert!(start.elapsed() < Duration::from_secs(20), "stuck at {next}");
        let _ = poller.wait_timeout(Duration::from_secs(10)).unwrap();
        while let Ok(v) = rx.try_recv() {
            assert_eq!(v, next);
            next += 1;
        }
    }
    sender.join();
    scribbler.join();
}

fn a_system_v_queue_through_a_watcher() {
    let q = SysvQueue::create(Key::private(), 0o600).unwrap();
    let before = thread_count();
    let mut poller = Poller::new().unwrap();
    poller.add(&q, Interest::Readable, 1).unwrap();
    assert_eq!(thread_count(), before + 1, "a watching thread");
    assert!(poller.wait_timeout(Duration::from_millis(30)).unwrap().is_empty());
    let sender = fork(|| {
        std::thread::sleep(Duration::from_millis(50));
        q.send(5, b"one").unwrap();
        q.send(6, b"two").unwrap();
    });
    expect(&mut poller, 1);
    sender.join();
    let mut buf = [0u8; 16];
    assert_eq!(q.try_recv(Selector::Any, &mut buf).unwrap(), (5, 3));
    assert_eq!(poller.try_wait().unwrap(), [1], "level-triggered: one is left");
    assert_eq!(q.try_recv(Selector::Any, &mut buf).unwrap(), (6, 3));
    assert!(poller.wait_timeout(Duration::from_millis(30)).unwrap().is_empty());
    // Writable: only when the message found no room for fits.
    let big = vec![7u8; 4000];
    while q.try_send(1, &big).is_ok() {}
    poller.add(&q, Interest::Writable, 2).unwrap();
    assert!(poller.wait_timeout(Duration::from_millis(30)).unwrap() == [1], "full: readable only");
    poller.remove(1).unwrap();
    let receiver = fork(|| {
        std::thread::sleep(Duration::from_millis(50));
        let mut buf = vec![0u8; 4000];
        q.recv(Selector::Any, &mut buf).unwrap();
    });
    expect(&mut poller, 2);
    receiver.join();
    q.try_send(1, &big).unwrap();
    // Removed under the poller: reported, and the next call says so.
    poller.add(&q, Interest::Readable, 3).unwrap();
    let other = SysvQueue::open_id(q.id()).unwrap();
    other.remove().unwrap();
    let ready = poller.wait_timeout(Duration::from_secs(5)).unwrap().to_vec();
    assert!(ready.contains(&3), "{ready:?}");
    assert!(q.try_recv(Selector::Any, &mut vec![0u8; 4000]).is_err());
    poller.remove(2).unwrap();
    poller.remove(3).unwrap();
    drop(q);
    let start = Instant::now();
    while thread_count() > before {
        assert!(start.elapsed() < Duration::from_secs(5), "the watching threads stayed");
        std::thread::sleep(Duration::from_millis(5));
    }
}
