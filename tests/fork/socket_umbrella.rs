//! `Mechanism::UnixSocket` through the umbrella's traits, pollable
//! sockets and typed messages, against hostile peers written in raw libc.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use ipc_kit::socket::SeqpacketSocket;
use ipc_kit::traits::Error;
use ipc_kit::typed::{RecvValue, SendValue};
use ipc_kit::{Async, AsyncMessageReceiver, Interest, Mechanism, MessageReceiver, MessageSender, Poller};
use ipc_kit_tests::{Exit, cases, fork, process_cpu, tokio_runtime};

cases!("socket_umbrella":
    too_large_max_is_what_the_socket_carries,
    typed_value_exactly_at_the_limit_and_one_over,
    recv_vec_replaces_contents_of_a_big_buffer,
    empty_message_through_every_mechanism,
    unit_value_through_every_mechanism,
    raw_empty_message_then_data_then_close,
    shutdown_write_vs_death,
    send_after_peer_death_variants,
    raised_sndbuf_message_below_max_is_too_large_or_goes,
    largest_message_the_kernel_takes_with_a_forced_buffer(60 s),
    blocking_recv_in_the_kernel_wakes_on_peer_death,
    async_parked_recv_wakes_on_peer_death,
    blocking_recv_with_o_nonblock_from_another_holder_waits_without_spinning,
    blocking_send_with_o_nonblock_from_another_holder_waits_without_spinning,
    poller_wakes_on_peer_death_readable_and_writable,
    async_recv_cancellation_loses_nothing_and_peer_death_ends_it,
    typed_hostile_bytes_are_malformed,
);

fn raw_send(fd: RawFd, data: &[u8]) -> isize {
    // SAFETY: `data` is valid for its length; MSG_NOSIGNAL avoids SIGPIPE.
    unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn setsockopt_int(fd: RawFd, opt: i32, v: i32) -> i32 {
    // SAFETY: a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&v as *const i32).cast(), std::mem::size_of::<i32>() as u32)
    };
    if r < 0 { -errno() } else { 0 }
}

fn getsockopt_int(fd: RawFd, opt: i32) -> i32 {
    let mut v: i32 = 0;
    let mut l = std::mem::size_of::<i32>() as u32;
    // SAFETY: a c_int option value and its length.
    unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&mut v as *mut i32).cast(), &mut l) };
    v
}

fn set_nonblock(fd: RawFd) {
    // SAFETY: fcntl on a descriptor this process holds.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        assert!(fl >= 0);
        assert_eq!(libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK), 0);
    }
}

// Error::TooLarge: "max: the most the mechanism carries". A message of
// exactly `max` bytes must go.
fn too_large_max_is_what_the_socket_carries() {
    let (mut tx, mut rx) = SeqpacketSocket::pair().unwrap();
    let sndbuf = getsockopt_int(tx.as_raw_fd(), libc::SO_SNDBUF) as usize;
    let max = match MessageSender::send(&mut tx, &vec![7u8; 64 << 20]) {
        Err(Error::TooLarge { max, .. }) => max,
        other => panic!("{other:?}"),
    };
    eprintln!("SO_SNDBUF {sndbuf}, TooLarge.max {max}");
    let mut buf = Vec::new();
    for len in [max - 32, max - 31, max] {
        let r = MessageSender::try_send(&mut tx, &vec![1u8; len]);
        eprintln!("try_send of {len} bytes: {r:?}");
        if r.is_ok() {
            assert_eq!(MessageReceiver::recv_timeout(&mut rx, &mut buf, Duration::from_secs(5)).unwrap(), len);
        }
    }
    assert!(MessageSender::try_send(&mut tx, &vec![1u8; max]).is_ok(), "a message of TooLarge.max bytes is refused");
}

// typed: a value whose encoding is exactly what the socket carries goes;
// one byte more is TooLarge with the encoding's length.
fn typed_value_exactly_at_the_limit_and_one_over() {
    let (mut tx, mut rx) = SeqpacketSocket::pair().unwrap();
    let carried = getsockopt_int(tx.as_raw_fd(), libc::SO_SNDBUF) as usize - 32; // the kernel's limit
    // Vec<u8> of n bytes: varint(n) + n. Find n with an encoding of exactly `carried`.
    let n = (0..carried).rev().find(|&n| postcard::to_allocvec(&n).unwrap().len() + n == carried).unwrap();
    let v = vec![9u8; n];
    let mut buf = Vec::new();
    tx.send_value(&v).expect("encoding of exactly the limit");
    let got: Vec<u8> = rx.recv_value_timeout(&mut buf, Duration::from_secs(5)).unwrap();
    assert_eq!(got, v);
    let v = vec![9u8; n + 1];
    let enc = postcard::to_allocvec(&v).unwrap().len();
    match tx.send_value(&v) {
        Err(Error::TooLarge { len, max }) => {
            eprintln!("one over: TooLarge {{ len: {len}, max: {max} }} (encoding {enc}, carried {carried})");
            assert_eq!(len, enc);
        }
        other => panic!("{other:?}"),
    }
}

// recv_vec: "replacing its contents"; only the bytes received are there.
fn recv_vec_replaces_contents_of_a_big_buffer() {
    let (tx, rx) = SeqpacketSocket::pair().unwrap();
    let mut buf = vec![0xAAu8; 20 << 20];
    tx.send(b"abc").unwrap();
    assert_eq!(rx.recv_vec(&mut buf).unwrap(), 3);
    assert_eq!(buf, b"abc");
    // An empty message from a raw peer that stays: Ok(0), empty buf.
    assert_eq!(raw_send(tx.as_raw_fd(), b""), 0);
    assert_eq!(rx.recv_vec_timeout(&mut buf, Duration::from_secs(1)).unwrap(), 0);
    assert!(buf.is_empty());
    assert!(matches!(rx.try_recv_vec(&mut buf), Err(ipc_kit::socket::Error::WouldBlock)));
    assert!(buf.is_empty());
}

// Zero-length messages through the umbrella: what each mechanism does.
fn empty_message_through_every_mechanism() {
    let mut odd = Vec::new();
    for &m in Mechanism::ALL {
        let mut pair = m.pair().unwrap();
        let sent = pair.sender.send_timeout(b"", Duration::from_secs(1));
        let got = match &sent {
            Ok(()) => {
                let mut buf = vec![1u8; 3];
                format!("{:?}", pair.receiver.recv_timeout(&mut buf, Duration::from_secs(1)).map(|n| (n, buf.len())))
            }
            Err(_) => "-".into(),
        };
        eprintln!("{m}: send(\"\") = {sent:?}; recv = {got}");
        if sent.is_err() {
            assert!(matches!(sent, Err(Error::TooLarge { len: 0, .. })), "{m}");
            odd.push(m);
        }
    }
    eprintln!("mechanisms refusing an empty message: {odd:?}");
    assert_eq!(odd, [Mechanism::UnixSocket]);
}

// typed: `()` (and unit structs) encode to zero bytes. SendValue docs:
// TooLarge only for an encoding "longer than the mechanism carries".
fn unit_value_through_every_mechanism() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Ping;
    assert!(postcard::to_allocvec(&Ping).unwrap().is_empty());
    let mut failed = Vec::new();
    for &m in Mechanism::ALL {
        let mut pair = m.pair().unwrap();
        let r = pair.sender.send_value_timeout(&Ping, Duration::from_secs(1));
        let back = r.as_ref().ok().map(|()| {
            let mut buf = Vec::new();
            pair.receiver.recv_value_timeout::<Ping>(&mut buf, Duration::from_secs(1))
        });
        eprintln!("{m}: send_value(&Ping) = {r:?}; recv_value = {back:?}");
        if !matches!(back, Some(Ok(Ping))) {
            failed.push(m);
        }
    }
    assert!(failed.is_empty(), "a unit value does not go through {failed:?}");
}

// A raw peer sends "", "a" and closes: recv docs say Disconnected only when
// "every message it sent was received".
fn raw_empty_message_then_data_then_close() {
    let (tx, mut rx) = SeqpacketSocket::pair().unwrap();
    assert_eq!(raw_send(tx.as_raw_fd(), b""), 0);
    assert_eq!(raw_send(tx.as_raw_fd(), b"a"), 1);
    drop(tx);
    let mut buf = Vec::new();
    let mut seq = Vec::new();
    for _ in 0..3 {
        let r = MessageReceiver::recv_timeout(&mut rx, &mut buf, Duration::from_secs(1));
        seq.push(format!("{:?}", r.map(|n| buf[..n].to_vec())));
    }
    eprintln!("after \"\", \"a\", close: {seq:?}");
    assert_eq!(seq, ["Ok([])", "Ok([97])", "Err(Disconnected)"], "Disconnected before every message was received");
}

// A peer that shuts down writing (alive) vs one that dies: both end with
// Disconnected after every message; the shut-down peer can still receive.
fn shutdown_write_vs_death() {
    let (tx, mut rx) = SeqpacketSocket::pair().unwrap();
    let child = fork(move || {
        tx.send(b"one").unwrap();
        tx.shutdown(std::net::Shutdown::Write).unwrap();
        let mut b = [0u8; 8];
        assert_eq!(tx.recv_timeout(&mut b, Duration::from_secs(5)).unwrap(), 4);
        assert_eq!(&b[..4], b"back");
    });
    let mut buf = Vec::new();
    assert_eq!(MessageReceiver::recv_timeout(&mut rx, &mut buf, Duration::from_secs(5)).unwrap(), 3);
    let t = Instant::now();
    let r = MessageReceiver::recv(&mut rx, &mut buf);
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    MessageSender::send(&mut rx, b"back").unwrap();
    child.join();
    let r = MessageSender::send(&mut rx, b"x");
    eprintln!("send after the peer died: {r:?}");

    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
}

// call.rs Wait::flag: a description made nonblocking by another holder
// still waits (polls), without spinning.
fn blocking_recv_with_o_nonblock_from_another_holder_waits_without_spinning() {
    let (tx, mut rx) = SeqpacketSocket::pair().unwrap();
    let rfd = rx.as_raw_fd();
    let child = fork(move || {
        set_nonblock(rfd); // the shared description
        std::thread::sleep(Duration::from_millis(600));
        tx.send(b"late").unwrap();
    });
    std::thread::sleep(Duration::from_millis(100));
    let c0 = process_cpu();
    let t = Instant::now();
    let mut buf = Vec::new();
    let n = MessageReceiver::recv(&mut rx, &mut buf).unwrap();
    let (wall, used) = (t.elapsed(), process_cpu() - c0);
    eprintln!("blocking recv on an O_NONBLOCK description: waited {wall:?}, cpu {used:?}");
    assert_eq!(&buf[..n], b"late");
    assert!(used < Duration::from_millis(100), "spun: {used:?}");
    child.join();
}

fn blocking_send_with_o_nonblock_from_another_holder_waits_without_spinning() {
    let (mut tx, rx) = SeqpacketSocket::pair().unwrap();
    let mut k = 0;
    while MessageSender::try_send(&mut tx, &[1u8; 1000]).is_ok() {
        k += 1;
    }
    let tfd = tx.as_raw_fd();
    let child = fork(move || {
        set_nonblock(tfd);
        std::thread::sleep(Duration::from_millis(600));
        let mut b = [0u8; 2000];
        for _ in 0..k {
            rx.recv_timeout(&mut b, Duration::from_secs(5)).unwrap();
        }
        assert_eq!(rx.recv_timeout(&mut b, Duration::from_secs(5)).unwrap(), 5);
    });
    std::thread::sleep(Duration::from_millis(100));
    let c0 = process_cpu();
    let t = Instant::now();
    MessageSender::send(&mut tx, b"final").unwrap();
    let (wall, used) = (t.elapsed(), process_cpu() - c0);
    eprintln!("blocking send ({k} queued) on an O_NONBLOCK description: waited {wall:?}, cpu {used:?}");
    assert!(used < Duration::from_millis(100), "spun: {used:?}");
    child.join();
}

// Poller: a parked wait wakes when the peer dies, for a receiver
// (readable) and for a sender with a full queue (writable).
fn poller_wakes_on_peer_death_readable_and_writable() {
    // Readable.
    let (tx, mut rx) = SeqpacketSocket::pair().unwrap();
    let mut peer = fork(move || {
        let _keep = &tx;
        std::thread::sleep(Duration::from_secs(60));
    });
    let mut p = Poller::new().unwrap();
    p.add(&rx, Interest::Readable, 1).unwrap();
    assert!(p.wait_timeout(Duration::from_millis(200)).unwrap().is_empty());
    let killer = std::thread::spawn({
        let pid = peer.pid();
        move || {
            std::thread::sleep(Duration::from_millis(200));
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        }
    });
    let t = Instant::now();
    let woke = p.wait_timeout(Duration::from_secs(10)).unwrap().to_vec();
    eprintln!("readable: woke with {woke:?} after {:?}", t.elapsed());
    assert_eq!(woke, [1]);
    killer.join().unwrap();
    assert_eq!(peer.wait(), Exit::Signaled(nix::sys::signal::Signal::SIGKILL));
    let mut buf = Vec::new();
    assert!(matches!(MessageReceiver::try_recv(&mut rx, &mut buf), Err(Error::Disconnected)));

    // Writable, with a full queue.
    let (mut tx, rx) = SeqpacketSocket::pair().unwrap();
    while MessageSender::try_send(&mut tx, &[1u8; 1000]).is_ok() {}
    let mut peer = fork(move || {
        let _keep = &rx;
        std::thread::sleep(Duration::from_secs(60));
    });
    let mut p = Poller::new().unwrap();
    p.add(&tx, Interest::Writable, 2).unwrap();
    assert!(p.wait_timeout(Duration::from_millis(200)).unwrap().is_empty(), "writable with a full queue");
    let pid = peer.pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    });
    let t = Instant::now();
    let woke = p.wait_timeout(Duration::from_secs(10)).unwrap().to_vec();
    eprintln!("writable: woke with {woke:?} after {:?}", t.elapsed());
    assert_eq!(woke, [2]);
    killer.join().unwrap();
    peer.wait();
    let r = MessageSender::try_send(&mut tx, b"x");
    assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
}

// Async<Box<dyn MessageReceiver>> over UnixSocket: recv futures dropped
// by a select at any point lose nothing; peer death ends it.
fn async_recv_cancellation_loses_nothing_and_peer_death_ends_it() {
    const N: u32 = 2000;
    let pair = Mechanism::UnixSocket.pair().unwrap();
    let (mut sender, receiver) = (pair.sender, pair.receiver);
    let child = fork(move || {
        for i in 0..N {
            sender.send(&i.to_le_bytes()).unwrap();
            if i % 64 == 0 {
                std::thread::sleep(Duration::from_micros(300));
            }
        }
        // then exit: the receiver sees Disconnected
    });
    tokio_runtime().block_on(async move {
        let mut rx = Async::new(receiver, Interest::Readable).unwrap();
        let mut buf = Vec::new();
        let (mut next, mut cancelled) = (0u32, 0u32);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "stuck at {next}");
            tokio::select! {
                biased;
                r = rx.recv(&mut buf) => match r {
                    Ok(n) => {
                        assert_eq!(n, 4);
                        assert_eq!(u32::from_le_bytes(buf[..4].try_into().unwrap()), next, "lost or reordered");
                        next += 1;
                    }
                    Err(Error::Disconnected) => break,
                    Err(e) => panic!("{e:?}"),
                },
                () = tokio::task::yield_now() => cancelled += 1,
            }
        }
        eprintln!("async: {next} messages, {cancelled} recv futures dropped");
        assert_eq!(next, N);
    });
    child.join();
}

fn typed_hostile_bytes_are_malformed() {
    use std::collections::HashMap;
    let (tx, mut rx) = SeqpacketSocket::pair().unwrap();
    let fd = tx.as_raw_fd();
    let mut buf = Vec::new();
    let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    macro_rules! expect_malformed {
        ($t:ty, $bytes:expr) => {{
            let b: &[u8] = &$bytes;
            assert_eq!(raw_send(fd, b), b.len() as isize);
            let t = Instant::now();
            let r = rx.recv_value_timeout::<$t>(&mut buf, Duration::from_secs(1));
            eprintln!(
                "{} <- {:02x?}: {:?} in {:?}",
                stringify!($t),
                &b[..b.len().min(12)],
                r.as_ref().map(|_| ()),
                t.elapsed()
            );
            assert!(matches!(r, Err(Error::Malformed { .. })), "{}", stringify!($t));
        }};
    }
    expect_malformed!(Vec<u64>, huge);
    expect_malformed!(String, huge);
    expect_malformed!(Vec<u8>, huge);
    expect_malformed!(HashMap<u64, String>, huge);
    expect_malformed!(String, [2, 0xff, 0xfe]);
    expect_malformed!(bool, [2]);
    expect_malformed!(Option<u8>, [5, 1]);
    expect_malformed!(char, [4, 0xff, 0xff, 0xff, 0xff]);
    expect_malformed!(u8, [1, 2]);
    expect_malformed!(u16, [0xff, 0xff, 0xff, 0x0f]);
    expect_malformed!(u64, [0xff; 11]);
    expect_malformed!((u8, u8), [1]);
    // The next value arrives as usual.
    tx.send(&postcard::to_allocvec(&7u32).unwrap()).unwrap();
    assert_eq!(rx.recv_value_timeout::<u32>(&mut buf, Duration::from_secs(1)).unwrap(), 7);
}

// Diagnostic: send to a dead peer, after the peer's shutdown(Write) or
// not, with a message from the peer first or not, and an exchange.
fn send_after_peer_death_variants() {
    for shut in [false, true] {
        for first in [false, true] {
            for exchange in [false, true] {
                let (tx, mut rx) = SeqpacketSocket::pair().unwrap();
                let child = fork(move || {
                    if first {
                        tx.send(b"one").unwrap();
                    }
                    if shut {
                        tx.shutdown(std::net::Shutdown::Write).unwrap();
                    }
                    if exchange {
                        let mut b = [0u8; 8];
                        tx.recv_timeout(&mut b, Duration::from_secs(5)).unwrap();
                    }
                });
                let mut buf = Vec::new();
                if first {
                    MessageReceiver::recv_timeout(&mut rx, &mut buf, Duration::from_secs(5)).unwrap();
                }
                if exchange {
                    MessageSender::send(&mut rx, b"back").unwrap();
                }
                child.join();
                let r2 = MessageSender::send(&mut rx, b"y");
                let r1 = MessageSender::try_send(&mut rx, b"x");
                let r3 = MessageReceiver::try_recv(&mut rx, &mut buf);
                let raw = raw_send(rx.as_raw_fd(), b"z");
                let e = if raw < 0 { errno() } else { 0 };
                eprintln!(
                    "shut {shut} first {first} exchange {exchange}: send first {r2:?}, then try_send {r1:?}, try_recv {r3:?}, raw send {raw} errno {e}"
                );
                assert!(matches!(
                    (r1, r2, r3),
                    (Err(Error::Disconnected), Err(Error::Disconnected), Err(Error::Disconnected))
                ));
                assert_eq!((raw, e), (-1, libc::EPIPE));
            }
        }
    }
}

// A sender that raised SO_SNDBUF (unprivileged, to wmem_max: the kernel
// doubles it): every message up to TooLarge.max must go, or be TooLarge.
fn raised_sndbuf_message_below_max_is_too_large_or_goes() {
    let (mut tx, rx) = SeqpacketSocket::pair().unwrap();
    let wmem_max: i32 = std::fs::read_to_string("/proc/sys/net/core/wmem_max").unwrap().trim().parse().unwrap();
    assert_eq!(setsockopt_int(tx.as_raw_fd(), libc::SO_SNDBUF, wmem_max), 0);
    let sndbuf = getsockopt_int(tx.as_raw_fd(), libc::SO_SNDBUF) as usize;
    let child = fork(move || {
        let mut buf = Vec::new();
        while rx.recv_vec_timeout(&mut buf, Duration::from_secs(5)).is_ok() {}
    });
    let mut bad = Vec::new();
    for len in [sndbuf / 4, sndbuf / 2, sndbuf / 2 + (1 << 20), sndbuf * 3 / 4, sndbuf - 32] {
        let r = MessageSender::send_timeout(&mut tx, &vec![3u8; len], Duration::from_secs(5));
        eprintln!("sndbuf {sndbuf}: send of {len} bytes: {r:?}");
        match r {
            Ok(()) => {}
            Err(Error::TooLarge { len, max }) if len > max => {}
            _ => bad.push(len),
        }
    }
    drop(tx);
    child.join();
    assert!(bad.is_empty(), "messages refused other than as TooLarge {{ len > max }}: {bad:?}");
}

// recv_vec's Truncated path needs a message over largest_message: can a
// peer with a forced buffer (root) send one on this kernel?
fn largest_message_the_kernel_takes_with_a_forced_buffer() {
    let (tx, rx) = SeqpacketSocket::pair().unwrap();
    if setsockopt_int(tx.as_raw_fd(), libc::SO_SNDBUFFORCE, 256 << 20) != 0 {
        eprintln!("not privileged: skipped");
        return;
    }
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_max").unwrap().trim().parse().unwrap();
    let largest = (wmem_max * 2).max(256 << 10);
    let (mut lo, mut hi) = (1usize, 128 << 20); // lo goes, hi does not
    let mut buf = Vec::new();
    let mut last_err = 0;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let n = raw_send(tx.as_raw_fd(), &vec![5u8; mid]);
        if n == mid as isize {
            lo = mid;
            let r = rx.recv_vec_timeout(&mut buf, Duration::from_secs(5));
            assert!(mid <= largest || r.is_err(), "{mid}: {r:?}");
        } else {
            last_err = errno();
            hi = mid;
        }
    }
    eprintln!("largest message the kernel takes: {lo} (over it: errno {last_err}); largest_message {largest}");
}

// Blocking recv (in the kernel, no MSG_DONTWAIT) wakes with Disconnected
// when the peer is killed, and blocking send with a full queue too.
fn blocking_recv_in_the_kernel_wakes_on_peer_death() {
    let (tx, mut rx) = SeqpacketSocket::pair().unwrap();
    let peer = fork(move || {
        let _keep = &tx;
        std::thread::sleep(Duration::from_secs(60));
    });
    let pid = peer.pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    });
    let t = Instant::now();
    let mut buf = Vec::new();
    let r = MessageReceiver::recv(&mut rx, &mut buf);
    eprintln!("blocking recv: {r:?} after {:?}", t.elapsed());
    assert!(matches!(r, Err(Error::Disconnected)));
    killer.join().unwrap();
    drop(peer);

    let (mut tx, rx) = SeqpacketSocket::pair().unwrap();
    while MessageSender::try_send(&mut tx, &[1u8; 1000]).is_ok() {}
    let peer = fork(move || {
        let _keep = &rx;
        std::thread::sleep(Duration::from_secs(60));
    });
    let pid = peer.pid();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    });
    let t = Instant::now();
    let r = MessageSender::send(&mut tx, b"more");
    eprintln!("blocking send on a full queue: {r:?} after {:?}", t.elapsed());
    assert!(matches!(r, Err(Error::Disconnected)));
    killer.join().unwrap();
    drop(peer);
}

// Async (tokio) over Mechanism::UnixSocket: a parked recv wakes with
// Disconnected when the peer is killed; a parked send (full queue) too.
fn async_parked_recv_wakes_on_peer_death() {
    let pair = Mechanism::UnixSocket.pair().unwrap();
    let (sender, receiver) = (pair.sender, pair.receiver);
    let peer = fork(move || {
        let _keep = &sender;
        std::thread::sleep(Duration::from_secs(60));
    });
    let pid = peer.pid();
    tokio_runtime().block_on(async move {
        let mut rx = Async::new(receiver, Interest::Readable).unwrap();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        });
        let mut buf = Vec::new();
        let t = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(10), rx.recv(&mut buf)).await;
        eprintln!("async parked recv: {r:?} after {:?}", t.elapsed());
        assert!(matches!(r, Ok(Err(Error::Disconnected))));
    });
    drop(peer);

    let pair = Mechanism::UnixSocket.pair().unwrap();
    let (mut sender, receiver) = (pair.sender, pair.receiver);
    while sender.try_send(&[1u8; 1000]).is_ok() {}
    let peer = fork(move || {
        let _keep = &receiver;
        std::thread::sleep(Duration::from_secs(60));
    });
    let pid = peer.pid();
    tokio_runtime().block_on(async move {
        use ipc_kit::AsyncMessageSender;
        let mut tx = Async::new(sender, Interest::Writable).unwrap();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        });
        let t = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(10), tx.send(b"more")).await;
        eprintln!("async parked send: {r:?} after {:?}", t.elapsed());
        assert!(matches!(r, Ok(Err(Error::Disconnected))));
    });
    drop(peer);
}
