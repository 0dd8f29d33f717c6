//! How the async forms wait: they go on attempting between yields for a
//! while, then park, and a parked wait is registered with the reactor only
//! while it is parked.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ipc_kit::pipe::{FrameReader, PipeReader, pipe};
use ipc_kit::{Async, AsyncMessageReceiver, Interest, MessageReceiver, MessageSender, PipeSender, Pollable};
use ipc_kit_tests::{cases, close_inherited, fork, thread_cpu, tokio_runtime, unique_name};

cases!("async_waits":
    a_wait_attempts_between_yields_then_parks_until_its_message,
    a_wait_without_yielding_parks_after_its_first_attempt,
    a_wait_is_registered_with_the_reactor_only_while_parked,
    tasks_parked_on_one_queue_share_one_registration,
    a_parked_channel_receiver_sleeps,
    a_parked_system_v_receiver_sleeps,
    a_parked_posix_queue_receiver_sleeps,
    a_channel_receiver_parked_hears_its_sender_die,
    a_queue_shared_by_two_runtimes_outlives_the_first,
    many_tasks_on_two_workers_share_a_small_queue(60 s),
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

// `AsyncReady` docs: "An endpoint's own descriptor (a pipe's, a FIFO's, a
// queue's) is registered only while a task is parked on it".
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

/// Removes a System V queue when dropped (also on a failed assertion).
struct RemoveSysv(i32);

impl Drop for RemoveSysv {
    fn drop(&mut self) {
        if let Ok(q) = ipc_kit::msgq::SysvQueue::open_id(self.0) {
            let _ = q.remove();
        }
    }
}

/// Asserts that a wait of `waited` cost the runtime's thread little CPU.
fn assert_slept(what: &str, cpu: Duration, waited: Duration) {
    assert!(
        cpu < Duration::from_millis(100),
        "{what}: the parked wait burnt {cpu:?} of CPU in {waited:?} (a busy loop, not a park)"
    );
}

// A shared-memory channel's receiver in async form waits 500 ms for its
// message: once parked it sleeps (the `Async` docs: the spin and the
// yielding are bounded, then it parks).
fn a_parked_channel_receiver_sleeps() {
    let ch = ipc_kit::shm::channel::channel::<u64>(16).unwrap();
    let child = fork(|| {
        let tx = ch.sender().unwrap();
        let mut tx = tx;
        std::thread::sleep(Duration::from_millis(100));
        tx.send(1).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        tx.send(2).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    });
    let rx = ch.receiver().unwrap();
    let (cpu, waited) = tokio_runtime().block_on(async move {
        let mut rx = rx.into_async().unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        assert_eq!(first, 1);
        let (c0, t0) = (thread_cpu(), Instant::now());
        let second = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        assert_eq!(second, 2);
        (thread_cpu() - c0, t0.elapsed())
    });
    child.join();
    assert_slept("channel receiver", cpu, waited);
}

// A System V queue's receiver in async form (its watcher thread rings a
// doorbell) waits 500 ms for its message and sleeps meanwhile.
fn a_parked_system_v_receiver_sleeps() {
    let q = ipc_kit::msgq::SysvQueue::create(ipc_kit::msgq::Key::private(), 0o600).unwrap();
    let _rm = RemoveSysv(q.id());
    let child = fork(|| {
        std::thread::sleep(Duration::from_millis(100));
        q.send(1, b"one").unwrap();
        std::thread::sleep(Duration::from_millis(500));
        q.send(1, b"two").unwrap();
    });
    let (cpu, waited, q) = tokio_runtime().block_on(async move {
        let aq = q.into_async().unwrap();
        let mut buf = [0u8; 64];
        let any = ipc_kit::msgq::Selector::Any;
        tokio::time::timeout(Duration::from_secs(10), aq.recv(any, &mut buf)).await.unwrap().unwrap();
        let (c0, t0) = (thread_cpu(), Instant::now());
        let (_, n) = tokio::time::timeout(Duration::from_secs(10), aq.recv(any, &mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf[..n], b"two");
        (thread_cpu() - c0, t0.elapsed(), aq)
    });
    child.join();
    drop(q);
    assert_slept("System V queue receiver", cpu, waited);
}

// Control: a POSIX queue's receiver (its own descriptor, no doorbell).
fn a_parked_posix_queue_receiver_sleeps() {
    let name = format!("/{}", unique_name("ipc-kit-review-mq"));
    let attr = ipc_kit::msgq::QueueAttr { max_messages: 4, message_size: 64 };
    let mut q = ipc_kit::msgq::PosixQueue::create(&name, attr, 0o600).unwrap();
    let child = fork(|| {
        std::thread::sleep(Duration::from_millis(100));
        q.send(b"one", 0).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        q.send(b"two", 0).unwrap();
    });
    q.unlink().unwrap();
    let (cpu, waited) = tokio_runtime().block_on(async move {
        let q = q.into_async().unwrap();
        let mut buf = [0u8; 64];
        tokio::time::timeout(Duration::from_secs(10), q.recv(&mut buf)).await.unwrap().unwrap();
        let (c0, t0) = (thread_cpu(), Instant::now());
        let (n, _) = tokio::time::timeout(Duration::from_secs(10), q.recv(&mut buf)).await.unwrap().unwrap();
        assert_eq!(&buf[..n], b"two");
        (thread_cpu() - c0, t0.elapsed())
    });
    child.join();
    assert_slept("POSIX queue receiver", cpu, waited);
}

// A channel receiver parked in async form hears its sender's process die
// (killed, no close): Disconnected within a few seconds, not a hang.
fn a_channel_receiver_parked_hears_its_sender_die() {
    let ch = ipc_kit::shm::channel::channel::<u64>(16).unwrap();
    let child = fork(|| {
        let mut tx = ch.sender().unwrap();
        tx.send(1).unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    let rx = ch.receiver().unwrap();
    tokio_runtime().block_on(async move {
        let mut rx = rx.into_async().unwrap();
        assert_eq!(rx.recv().await.unwrap(), 1);
        let waiting = tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(10), rx.recv()).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        child.kill();
        let got = waiting.await.unwrap().expect("the sender's death went unheard for 10 s");
        assert!(matches!(got, Err(ipc_kit::shm::Error::Disconnected)), "{got:?}");
    });
}

// `AsyncReady` docs: registered "while a task is parked on it with the
// reactor of the tokio runtime that task runs in". A POSIX queue in async
// form shared by a task of runtime A (parked first) and one of runtime B:
// A goes away (dropped, with its task), and B's task still gets its message.
fn a_queue_shared_by_two_runtimes_outlives_the_first() {
    let name = format!("/{}", unique_name("ipc-kit-review-mq"));
    let attr = ipc_kit::msgq::QueueAttr { max_messages: 4, message_size: 64 };
    let mut q = ipc_kit::msgq::PosixQueue::create(&name, attr, 0o600).unwrap();
    let child = fork(|| {
        std::thread::sleep(Duration::from_millis(600));
        q.send(b"for b", 0).unwrap();
    });
    q.unlink().unwrap();
    let rt_b = tokio_runtime();
    let q = Arc::new(rt_b.block_on(async { q.into_async().unwrap() }));
    let qa = Arc::clone(&q);
    let a = std::thread::spawn(move || {
        let rt_a = tokio_runtime();
        rt_a.block_on(async move {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let _ = qa.recv(&mut buf).await;
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
        });
        drop(rt_a); // its parked task with it
    });
    let got = rt_b.block_on(async {
        tokio::time::sleep(Duration::from_millis(150)).await; // A's task parked first
        let mut buf = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(3), q.recv(&mut buf)).await;
        r.map(|r| r.map(|(n, _)| buf[..n].to_vec()))
    });
    a.join().unwrap();
    child.join();
    let got = got.expect("runtime B's wait never woke");
    assert_eq!(got.unwrap(), b"for b");
}

// Tasks on two workers of a multi-thread runtime: receivers and senders
// parked at once on one small POSIX queue (shared registrations, made and
// dropped concurrently), and tasks cancelled while parked. Every message
// arrives, no wait errs (no EEXIST/ENOENT) and none hangs.
fn many_tasks_on_two_workers_share_a_small_queue() {
    const PER: u32 = 3000;
    const SENDERS: u32 = 3;
    let name = format!("/{}", unique_name("ipc-kit-review-mq"));
    let attr = ipc_kit::msgq::QueueAttr { max_messages: 2, message_size: 64 };
    let mut q = ipc_kit::msgq::PosixQueue::create(&name, attr, 0o600).unwrap();
    let theirs = ipc_kit::msgq::PosixQueue::open(&name).unwrap();
    let child = fork(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let q = Arc::new(theirs.into_async().unwrap());
            let senders: Vec<_> = (0..SENDERS)
                .map(|s| {
                    let q = Arc::clone(&q);
                    tokio::spawn(async move {
                        for i in 0..PER {
                            let v = s * PER + i;
                            tokio::time::timeout(Duration::from_secs(5), q.send(&v.to_le_bytes(), 0))
                                .await
                                .expect("a send hung 5 s")
                                .unwrap();
                            if i % 97 == 0 {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                        }
                    })
                })
                .collect();
            for s in senders {
                s.await.unwrap();
            }
        });
    });
    q.unlink().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let total = rt.block_on(async move {
        let q = Arc::new(q.into_async().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let want = (PER * SENDERS) as usize;
        // Cancelled while parked, again and again.
        let cancellers: Vec<_> = (0..2)
            .map(|_| {
                let q = Arc::clone(&q);
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while count.load(Ordering::Relaxed) < want {
                        if let Ok(r) = tokio::time::timeout(Duration::from_micros(300), q.recv(&mut buf)).await {
                            r.unwrap();
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        let receivers: Vec<_> = (0..3)
            .map(|_| {
                let q = Arc::clone(&q);
                let count = Arc::clone(&count);
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    loop {
                        let c = count.load(Ordering::Relaxed);
                        if c >= want {
                            return;
                        }
                        match tokio::time::timeout(Duration::from_secs(5), q.recv(&mut buf)).await {
                            Ok(r) => {
                                r.unwrap();
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                            // All taken by others (and no more to come) or a lost wake-up.
                            Err(_) => assert!(count.load(Ordering::Relaxed) >= want, "a receive hung 5 s at {c}"),
                        }
                    }
                })
            })
            .collect();
        for t in cancellers.into_iter().chain(receivers) {
            t.await.unwrap();
        }
        count.load(Ordering::Relaxed)
    });
    child.join();
    assert_eq!(total, (PER * SENDERS) as usize);
}
