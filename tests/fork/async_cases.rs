//! Every mechanism in async code on tokio, across real processes: a tokio
//! runtime in each process, checksummed streams, sync and async sides
//! mixed, `select!` over three mechanisms, peers that die, and futures
//! dropped at every point.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ipc_kit::pipe::pipe;
use ipc_kit::traits::Error;
use ipc_kit::{Async, AsyncMessageReceiver, AsyncMessageSender, Interest, Mechanism, MessageReceiver, MessageSender};
use ipc_kit_tests::{Exit, Rng, cases, checksum, close_inherited, fork, tokio_runtime};
use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

cases!("async":
    a_pipe_carries_10000_checksummed_messages,
    a_fifo_carries_10000_checksummed_messages,
    a_system_v_queue_carries_10000_checksummed_messages,
    a_posix_queue_carries_10000_checksummed_messages,
    a_channel_carries_10000_checksummed_messages,
    a_sync_sender_and_an_async_receiver,
    an_async_sender_and_a_sync_receiver,
    select_across_a_fifo_a_queue_and_a_channel,
    a_killed_peer_gives_an_error_not_a_hang,
    a_dropped_receive_loses_nothing,
    a_dropped_send_sends_all_or_nothing,
    pipe_ends_read_and_write_as_tokio_io,
    a_typed_channel_and_a_byte_channel_in_async_forms,
    a_posix_queue_in_async_form_keeps_priorities,
    a_system_v_queue_in_async_form_waits_for_its_type,
);

/// Message `n` of a stream: its number and bytes that depend on it, 8 to
/// 200 bytes long.
fn message(n: u64, rng: &mut Rng) -> Vec<u8> {
    let len = 8 + rng.below(193) as usize;
    let mut m = n.to_le_bytes().to_vec();
    m.extend((8..len).map(|i| (n as usize).wrapping_mul(7).wrapping_add(i) as u8));
    m
}

const N: u64 = 10_000;

/// Sends `N` messages through `tx` (async), and then the checksum of
/// them all as a last message of 16 bytes ("sum" and the sum).
async fn send_all(tx: &mut impl AsyncMessageSender) {
    let mut rng = Rng::new(11);
    let mut sum = 0u64;
    for n in 0..N {
        let m = message(n, &mut rng);
        sum = sum.wrapping_add(checksum(&m));
        tx.send(&m).await.unwrap();
    }
    let mut last = b"sum:\0\0\0\0".to_vec();
    last.extend_from_slice(&sum.to_le_bytes());
    tx.send(&last).await.unwrap();
}

/// Receives what [`send_all`] sends, checking each message and the sum.
async fn recv_all(rx: &mut impl AsyncMessageReceiver) {
    let mut buf = Vec::new();
    let mut sum = 0u64;
    for n in 0..N {
        let len = rx.recv(&mut buf).await.unwrap();
        assert_eq!(len, buf.len());
        assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), n, "out of order");
        for (i, &b) in buf.iter().enumerate().skip(8) {
            assert_eq!(b, (n as usize).wrapping_mul(7).wrapping_add(i) as u8, "message {n} byte {i}");
        }
        sum = sum.wrapping_add(checksum(&buf));
    }
    rx.recv(&mut buf).await.unwrap();
    assert_eq!(&buf[..8], b"sum:\0\0\0\0");
    assert_eq!(u64::from_le_bytes(buf[8..16].try_into().unwrap()), sum, "checksum");
}

/// A pair of `m` made here, its sender async in a child and its receiver
/// async here: `N` messages.
fn carries(m: Mechanism) {
    let pair = m.pair().unwrap();
    let ipc_kit::Pair { sender, receiver, .. } = pair;
    let child = fork(move || {
        tokio_runtime().block_on(async move {
            let mut tx = Async::new(sender, Interest::Writable).unwrap();
            send_all(&mut tx).await;
        });
    });
    tokio_runtime().block_on(async move {
        let mut rx = Async::new(receiver, Interest::Readable).unwrap();
        recv_all(&mut rx).await;
    });
    child.join();
}

fn a_pipe_carries_10000_checksummed_messages() {
    carries(Mechanism::Pipe);
}

fn a_fifo_carries_10000_checksummed_messages() {
    carries(Mechanism::Fifo);
}

fn a_system_v_queue_carries_10000_checksummed_messages() {
    carries(Mechanism::SysvQueue);
}

fn a_posix_queue_carries_10000_checksummed_messages() {
    carries(Mechanism::PosixQueue);
}

fn a_channel_carries_10000_checksummed_messages() {
    carries(Mechanism::ShmByteChannel);
}

fn a_sync_sender_and_an_async_receiver() {
    for m in [Mechanism::Pipe, Mechanism::ShmByteChannel, Mechanism::PosixQueue] {
        let pair = m.pair().unwrap();
        let ipc_kit::Pair { mut sender, receiver, .. } = pair;
        let child = fork(move || {
            let mut rng = Rng::new(11);
            for n in 0..N {
                sender.send(&message(n, &mut rng)).unwrap();
            }
            sender.send(b"sum:\0\0\0\0\0\0\0\0\0\0\0\0").unwrap();
        });
        tokio_runtime().block_on(async move {
            let mut rx = Async::new(receiver, Interest::Readable).unwrap();
            let mut buf = Vec::new();
            let mut rng = Rng::new(11);
            for n in 0..N {
                rx.recv(&mut buf).await.unwrap();
                assert_eq!(buf, message(n, &mut rng), "{}", m.name());
            }
        });
        child.join();
    }
}

fn an_async_sender_and_a_sync_receiver() {
    for m in [Mechanism::Fifo, Mechanism::ShmByteChannel, Mechanism::SysvQueue] {
        let pair = m.pair().unwrap();
        let ipc_kit::Pair { sender, mut receiver, .. } = pair;
        let child = fork(move || {
            tokio_runtime().block_on(async move {
                let mut tx = Async::new(sender, Interest::Writable).unwrap();
                let mut rng = Rng::new(11);
                for n in 0..N {
                    tx.send(&message(n, &mut rng)).await.unwrap();
                }
            });
        });
        let mut buf = Vec::new();
        let mut rng = Rng::new(11);
        for n in 0..N {
            receiver.recv_timeout(&mut buf, Duration::from_secs(10)).unwrap();
            assert_eq!(buf, message(n, &mut rng), "{}", m.name());
        }
        child.join();
    }
}

fn select_across_a_fifo_a_queue_and_a_channel() {
    const EACH: u64 = 3000;
    let mechanisms = [Mechanism::Fifo, Mechanism::PosixQueue, Mechanism::ShmByteChannel];
    // The pairs stay here (they keep what the mechanisms need); their sides
    // go to the processes that use them.
    let mut pairs: Vec<ipc_kit::Pair> = mechanisms.iter().map(|m| m.pair().unwrap()).collect();
    let taken = |p: &mut ipc_kit::Pair| {
        (std::mem::replace(&mut p.sender, Box::new(Gone)), std::mem::replace(&mut p.receiver, Box::new(Gone)))
    };
    let (senders, receivers): (Vec<_>, Vec<_>) = pairs.iter_mut().map(taken).unzip();
    let child = fork(move || {
        tokio_runtime().block_on(async move {
            let mut tx: Vec<_> = senders.into_iter().map(|s| Async::new(s, Interest::Writable).unwrap()).collect();
            let mut rng = Rng::new(3);
            let mut next = [0u64; 3];
            while next.iter().any(|&n| n < EACH) {
                let which = rng.below(3) as usize;
                if next[which] == EACH {
                    continue;
                }
                let m = message(next[which], &mut rng);
                tx[which].send(&m).await.unwrap();
                next[which] += 1;
            }
        });
    });
    tokio_runtime().block_on(async move {
        let mut rx = receivers.into_iter().map(|r| Async::new(r, Interest::Readable).unwrap());
        let (mut a, mut b, mut c) = (rx.next().unwrap(), rx.next().unwrap(), rx.next().unwrap());
        let (mut ba, mut bb, mut bc) = (Vec::new(), Vec::new(), Vec::new());
        let mut next = [0u64; 3];
        while next.iter().any(|&n| n < EACH) {
            let which = tokio::select! {
                r = a.recv(&mut ba), if next[0] < EACH => { r.unwrap(); 0 }
                r = b.recv(&mut bb), if next[1] < EACH => { r.unwrap(); 1 }
                r = c.recv(&mut bc), if next[2] < EACH => { r.unwrap(); 2 }
            };
            let got = [&ba, &bb, &bc][which];
            assert_eq!(
                u64::from_le_bytes(got[..8].try_into().unwrap()),
                next[which],
                "{} out of order",
                mechanisms[which].name()
            );
            next[which] += 1;
        }
    });
    child.join();
    drop(pairs);
}

fn a_killed_peer_gives_an_error_not_a_hang() {
    for m in [Mechanism::Pipe, Mechanism::Fifo, Mechanism::ShmByteChannel] {
        let pair = m.pair().unwrap();
        let ipc_kit::Pair { sender, receiver, .. } = pair;
        let mut peer = fork(move || {
            let _keep = sender;
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let pid = peer.pid();
        tokio_runtime().block_on(async move {
            let mut rx = Async::new(receiver, Interest::Readable).unwrap();
            let mut buf = Vec::new();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();
            });
            let got = tokio::time::timeout(Duration::from_secs(10), rx.recv(&mut buf)).await;
            assert!(matches!(got, Ok(Err(Error::Disconnected))), "{}: {got:?}", m.name());
        });
        assert_eq!(peer.wait(), Exit::Signaled(Signal::SIGKILL));
    }
}

/// Polls `fut` once with a waker that does nothing.
fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(Waker::noop()))
}

fn a_dropped_receive_loses_nothing() {
    for m in Mechanism::ALL.iter().copied() {
        let mut pair = m.pair().unwrap();
        let receiver = std::mem::replace(&mut pair.receiver, Box::new(Gone));
        let sender = &mut pair.sender;
        tokio_runtime().block_on(async {
            let mut rx = Async::new(receiver, Interest::Readable).unwrap();
            let mut buf = Vec::new();
            for i in 0..20u8 {
                {
                    // Waiting when the message arrives, then dropped
                    // without another poll.
                    let mut fut = pin!(rx.recv(&mut buf));
                    assert!(poll_once(fut.as_mut()).is_pending(), "{}: nothing sent yet", m.name());
                    sender.send(&[i; 3]).unwrap();
                }
                // A receive that a zero timeout drops, finished or not.
                let mut got = None;
                if let Ok(r) = tokio::time::timeout(Duration::ZERO, rx.recv(&mut buf)).await {
                    r.unwrap();
                    got = Some(buf.clone());
                }
                // What it did not take is still there, and nothing else.
                match rx.get_mut().recv_timeout(&mut buf, Duration::from_millis(if got.is_some() { 20 } else { 5000 }))
                {
                    Ok(_) => {
                        assert!(got.is_none(), "{}: message {i} twice", m.name());
                        got = Some(buf.clone());
                    }
                    Err(Error::Timeout) => {}
                    Err(e) => panic!("{}: {e}", m.name()),
                }
                assert_eq!(got, Some(vec![i; 3]), "{}: message {i}", m.name());
            }
        });
    }
}

fn a_dropped_send_sends_all_or_nothing() {
    // Fill each, start a send that must wait, drop it, drain: the dropped
    // message never appears, and a later one comes whole.
    for m in [Mechanism::ShmByteChannel, Mechanism::PosixQueue, Mechanism::SysvQueue, Mechanism::Pipe] {
        let mut pair = m.pair().unwrap();
        let sender = std::mem::replace(&mut pair.sender, Box::new(Gone));
        let receiver = &mut pair.receiver;
        tokio_runtime().block_on(async {
            let mut tx = Async::new(sender, Interest::Writable).unwrap();
            let mut n = 0u32;
            while tx.get_mut().try_send(&n.to_le_bytes()).is_ok() {
                n += 1;
            }
            {
                let mut fut = pin!(tx.send(&[0xEE; 100]));
                assert!(poll_once(fut.as_mut()).is_pending(), "{}: full", m.name());
            }
            let mut buf = Vec::new();
            for i in 0..n {
                receiver.try_recv(&mut buf).unwrap();
                assert_eq!(buf, i.to_le_bytes(), "{}", m.name());
            }
            assert!(matches!(receiver.try_recv(&mut buf), Err(Error::Empty)), "{}: the dropped send sent", m.name());
            tx.send(b"after").await.unwrap();
            receiver.try_recv(&mut buf).unwrap();
            assert_eq!(buf, b"after");
        });
    }
}

/// Stands in a `Pair` for a side taken out of it.
struct Gone;

impl ipc_kit::Pollable for Gone {
    fn source(&self, _: Interest) -> std::io::Result<Option<ipc_kit::sync::Source<'_>>> {
        Ok(None)
    }
}

impl MessageSender for Gone {
    fn send(&mut self, _: &[u8]) -> ipc_kit::traits::Result<()> {
        Err(Error::Disconnected)
    }
    fn try_send(&mut self, _: &[u8]) -> ipc_kit::traits::Result<()> {
        Err(Error::Disconnected)
    }
    fn send_timeout(&mut self, _: &[u8], _: Duration) -> ipc_kit::traits::Result<()> {
        Err(Error::Disconnected)
    }
}

impl MessageReceiver for Gone {
    fn recv(&mut self, _: &mut Vec<u8>) -> ipc_kit::traits::Result<usize> {
        Err(Error::Disconnected)
    }
    fn try_recv(&mut self, _: &mut Vec<u8>) -> ipc_kit::traits::Result<usize> {
        Err(Error::Disconnected)
    }
    fn recv_timeout(&mut self, _: &mut Vec<u8>, _: Duration) -> ipc_kit::traits::Result<usize> {
        Err(Error::Disconnected)
    }
}

fn pipe_ends_read_and_write_as_tokio_io() {
    let (r, w) = pipe().unwrap();
    let rfd = r.as_raw_fd();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let expected = checksum(&data);
    let writer = fork(move || {
        close_inherited(rfd);
        tokio_runtime().block_on(async move {
            let mut w = w.into_async().unwrap();
            w.write_all(&data).await.unwrap();
        });
    });
    tokio_runtime().block_on(async move {
        let mut r = r.into_async().unwrap();
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap(); // ends when the writer exits
        assert_eq!(got.len(), 1_000_000);
        assert_eq!(checksum(&got), expected);
    });
    writer.join();
}

fn a_typed_channel_and_a_byte_channel_in_async_forms() {
    let typed = ipc_kit::shm::channel::channel::<[u64; 4]>(64).unwrap();
    let bytes = ipc_kit::shm::channel::byte_channel(4096).unwrap();
    let child = fork(|| {
        let tx = typed.sender().unwrap();
        let btx = bytes.sender().unwrap();
        tokio_runtime().block_on(async move {
            let (mut tx, mut btx) = (tx.into_async().unwrap(), btx.into_async().unwrap());
            let mut rng = Rng::new(9);
            for n in 0..N {
                tx.send([n, !n, n.wrapping_mul(3), n ^ 0x55]).await.unwrap();
                btx.send(&message(n, &mut rng)).await.unwrap();
            }
        });
    });
    let rx = typed.receiver().unwrap();
    let brx = bytes.receiver().unwrap();
    tokio_runtime().block_on(async move {
        let (mut rx, mut brx) = (rx.into_async().unwrap(), brx.into_async().unwrap());
        let mut rng = Rng::new(9);
        let mut buf = Vec::new();
        for n in 0..N {
            assert_eq!(rx.recv().await.unwrap(), [n, !n, n.wrapping_mul(3), n ^ 0x55]);
            let expected = message(n, &mut rng);
            if n % 2 == 0 {
                brx.recv(&mut buf).await.unwrap();
                assert_eq!(buf, expected);
            } else {
                // In place.
                assert!(brx.recv_with(|r| r == expected.as_slice()).await.unwrap(), "record {n}");
            }
        }
        // The sender is gone: the end, not a hang.
        assert!(matches!(rx.recv().await, Err(ipc_kit::shm::Error::Disconnected)));
        assert!(matches!(brx.recv(&mut buf).await, Err(ipc_kit::shm::Error::Disconnected)));
    });
    child.join();
}

fn a_posix_queue_in_async_form_keeps_priorities() {
    let name = format!("/{}", ipc_kit_tests::unique_name("ipc-kit-async-mq"));
    let attr = ipc_kit::msgq::QueueAttr { max_messages: 10, message_size: 64 };
    let q = ipc_kit::msgq::PosixQueue::create(&name, attr, 0o600).unwrap();
    let child = fork(|| {
        let q = ipc_kit::msgq::PosixQueue::open(&name).unwrap();
        tokio_runtime().block_on(async move {
            let q = q.into_async().unwrap();
            for n in 0..N {
                q.send(&n.to_le_bytes(), 1).await.unwrap();
            }
        });
    });
    tokio_runtime().block_on(async {
        let q = q.into_async().unwrap();
        let mut buf = [0u8; 64];
        for n in 0..N {
            assert_eq!(q.recv(&mut buf).await.unwrap(), (8, 1));
            assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), n);
        }
        // Priorities: the highest first, whatever the order sent.
        for p in [3u32, 9, 1] {
            q.send(&[p as u8], p).await.unwrap();
        }
        for p in [9u32, 3, 1] {
            assert_eq!(q.recv(&mut buf).await.unwrap(), (1, p));
        }
    });
    child.join();
}

fn a_system_v_queue_in_async_form_waits_for_its_type() {
    let q = ipc_kit::msgq::SysvQueue::create(ipc_kit::msgq::Key::private(), 0o600).unwrap();
    q.send(1, b"type one").unwrap();
    let child = fork(|| {
        std::thread::sleep(Duration::from_millis(100));
        q.send(2, b"type two").unwrap();
    });
    tokio_runtime().block_on(async {
        let q = q.into_async().unwrap();
        let mut buf = [0u8; 64];
        // A message of another type waits all along: this receive waits
        // for its own.
        let (t, n) =
            tokio::time::timeout(Duration::from_secs(10), q.recv(ipc_kit::msgq::Selector::Exactly(2), &mut buf))
                .await
                .expect("the type-2 message never came")
                .unwrap();
        assert_eq!((t, &buf[..n]), (2, &b"type two"[..]));
        assert_eq!(q.recv(ipc_kit::msgq::Selector::Any, &mut buf).await.unwrap(), (1, 8));
        // Many through the watcher, in order.
        for i in 0..1000u32 {
            q.send(7, &i.to_le_bytes()).await.unwrap();
            assert_eq!(q.recv(ipc_kit::msgq::Selector::Exactly(7), &mut buf).await.unwrap(), (7, 4));
            assert_eq!(buf[..4], i.to_le_bytes());
        }
    });
    child.join();
}
