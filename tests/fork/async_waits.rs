//! How the async forms wait: they go on attempting between yields for a
//! while, then park, and a parked wait is registered with the reactor only
//! while it is parked.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ipc_kit::pipe::{FrameReader, PipeReader, pipe};
use ipc_kit::{Async, AsyncMessageReceiver, Interest, MessageReceiver, MessageSender, PipeSender, Pollable};
use ipc_kit_tests::{cases, close_inherited, fork, tokio_runtime, unique_name};

cases!("async_waits":
    a_wait_attempts_between_yields_then_parks_until_its_message,
    a_wait_without_yielding_parks_after_its_first_attempt,
    a_wait_is_registered_with_the_reactor_only_while_parked,
    tasks_parked_on_one_queue_share_one_registration,
);

/// A receiver that counts its `try_recv` calls: the async form's attempts.
struct Counting {
    inner: FrameReader<PipeReader>,
    attempts: Arc<AtomicUsize>,
}

impl Pollable for Counting {
    fn source(&self, interest: Interest) -> std::io::Result<Option<ipc_kit::sync::Source<'_>>> {
        self.inner.source(interest)
    }
}

impl MessageReceiver for Counting {
    fn recv(&mut self, buf: &mut Vec<u8>) -> ipc_kit::traits::Result<usize> {
        MessageReceiver::recv(&mut self.inner, buf)
    }

    fn try_recv(&mut self, buf: &mut Vec<u8>) -> ipc_kit::traits::Result<usize> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        MessageReceiver::try_recv(&mut self.inner, buf)
    }

    fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> ipc_kit::traits::Result<usize> {
        MessageReceiver::recv_timeout(&mut self.inner, buf, timeout)
    }
}

/// Waits in async form (with `yielding`, or the default) on a pipe whose
/// writer, a child process, sends one message after 300 ms: the attempts
/// made by 100 ms and by 250 ms, and the message.
fn wait_for_a_late_message(yielding: Option<Duration>) -> (usize, usize, Vec<u8>) {
    let (r, w) = pipe().unwrap();
    let rfd = r.as_raw_fd();
    let child = fork(|| {
        close_inherited(rfd);
        std::thread::sleep(Duration::from_millis(300));
        PipeSender::new(w).send(b"late").unwrap();
    });
    let attempts = Arc::new(AtomicUsize::new(0));
    let counting = Counting { inner: FrameReader::new(r), attempts: Arc::clone(&attempts) };
    let got = tokio_runtime().block_on(async {
        let mut rx = Async::new(counting, Interest::Readable).unwrap();
        if let Some(y) = yielding {
            rx = rx.with_yielding(y);
        }
        let waiting = tokio::spawn(async move {
            let mut buf = Vec::new();
            let n = tokio::time::timeout(Duration::from_secs(10), rx.recv(&mut buf)).await;
            n.map(|n| buf[..n.unwrap()].to_vec())
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let early = attempts.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let later = attempts.load(Ordering::Relaxed);
        (early, later, waiting.await.unwrap().expect("the late message within 10 s"))
    });
    child.join();
    got
}

// `Async` docs: the others "attempt between yields for up to 30 µs" before
// they park: more than one attempt before the message, none while parked.
// (A wait descheduled for all of its window attempts only once: tried up
// to three times.)
fn a_wait_attempts_between_yields_then_parks_until_its_message() {
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (early, later, msg) = wait_for_a_late_message(None);
        assert_eq!(msg, b"late");
        assert_eq!(early, later, "attempts went on while nothing came: {early} by 100 ms, {later} by 250 ms");
        seen.push(early);
        if early > 1 {
            return;
        }
    }
    panic!("one attempt only before each park, in three tries: {seen:?}");
}

// `Async::with_yielding` docs: "zero parks at once".
fn a_wait_without_yielding_parks_after_its_first_attempt() {
    let (early, later, msg) = wait_for_a_late_message(Some(Duration::ZERO));
    assert_eq!(msg, b"late");
    assert_eq!((early, later), (1, 1), "attempts by 100 ms and by 250 ms");
}

/// How many descriptors this process's epoll sets hold: the `tfd:` lines
/// of their fdinfo, each counted once (a set seen through two descriptors
/// lists the same lines twice).
fn registered() -> usize {
    let mut lines = std::collections::HashSet::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let is_epoll = std::fs::read_link(entry.path()).is_ok_and(|l| l.to_string_lossy() == "anon_inode:[eventpoll]");
        if is_epoll {
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", entry.file_name().to_string_lossy()));
            lines.extend(info.unwrap_or_default().lines().filter(|l| l.starts_with("tfd:")).map(str::to_owned));
        }
    }
    lines.len()
}

// `AsyncReady` docs: "registered with the tokio reactor of the runtime it
// parks in while a task is parked on it" — a pipe registered with an epoll
// set costs each write into it a wake-up call.
fn a_wait_is_registered_with_the_reactor_only_while_parked() {
    let (r, w) = pipe().unwrap();
    let rfd = r.as_raw_fd();
    let child = fork(|| {
        close_inherited(rfd);
        let mut tx = PipeSender::new(w);
        std::thread::sleep(Duration::from_millis(200));
        tx.send(b"one").unwrap();
    });
    let (idle, parked, after) = tokio_runtime().block_on(async {
        let mut rx = Async::new(FrameReader::new(r), Interest::Readable).unwrap();
        let idle = registered();
        let parked = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&parked);
        let look = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            seen.store(registered(), Ordering::Relaxed);
        });
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(10), rx.recv(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf[..n], b"one");
        look.await.unwrap();
        (idle, parked.load(Ordering::Relaxed), registered())
    });
    child.join();
    assert_eq!((parked, after), (idle + 1, idle), "registered while idle {idle}, parked {parked}, after {after}");
}

// Two tasks parked at once on one POSIX queue in async form (its methods
// take `&self`) hold one registration between them, and it goes when both
// are served.
fn tasks_parked_on_one_queue_share_one_registration() {
    let name = format!("/{}", unique_name("ipc-kit-waits-mq"));
    let attr = ipc_kit::msgq::QueueAttr { max_messages: 4, message_size: 64 };
    let mut q = ipc_kit::msgq::PosixQueue::create(&name, attr, 0o600).unwrap();
    let child = fork(|| {
        std::thread::sleep(Duration::from_millis(200));
        q.send(b"a", 0).unwrap();
        q.send(b"b", 0).unwrap();
    });
    q.unlink().unwrap();
    let (idle, parked, after, mut got) = tokio_runtime().block_on(async {
        let q = Arc::new(q.into_async().unwrap());
        let idle = registered();
        let takers: Vec<_> = (0..2)
            .map(|_| {
                let q = Arc::clone(&q);
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    let (n, _) =
                        tokio::time::timeout(Duration::from_secs(10), q.recv(&mut buf)).await.unwrap().unwrap();
                    buf[..n].to_vec()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let parked = registered();
        let mut got = Vec::new();
        for t in takers {
            got.push(t.await.unwrap());
        }
        (idle, parked, registered(), got)
    });
    child.join();
    got.sort();
    assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
    assert_eq!((parked, after), (idle + 1, idle), "registered while idle {idle}, parked {parked}, after {after}");
}
