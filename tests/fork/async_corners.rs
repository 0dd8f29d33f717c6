//! The async (tokio) layer at its corners: tasks that share one endpoint,
//! peers that go while a task is parked, forks after an endpoint was
//! polled, large frames, dropped async forms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipc_kit::msgq::{Key, Selector, SysvQueue};
use ipc_kit::pipe::pipe;
use ipc_kit::shm::Error as ShmError;
use ipc_kit::shm::channel::{Channel, channel};
use ipc_kit_tests::{cases, close_inherited, fork, thread_count, tokio_runtime, unique_name};
use nix::sys::signal::Signal;
use std::io::Read;
use std::os::fd::AsRawFd;

cases!("async_corners":
    a_system_v_queue_shared_by_two_receiving_tasks_wakes_the_second,
    a_parked_channel_side_sees_its_peer_go,
    an_async_pipe_receiver_takes_large_messages_from_a_sync_sender,
    a_small_async_send_to_a_system_v_queue_is_not_held_up_by_a_large_one,
    a_child_drops_what_its_parent_used_in_async_form,
    a_parked_wait_ends_when_its_other_end_can_never_come,
    dropped_async_forms_leave_no_threads_or_descriptors,
    two_workers_share_a_queue_in_async_form,
    a_receive_loop_over_a_full_channel_lets_other_tasks_run,
    tokio_pipe_ends_see_a_killed_peer,
    an_async_pipe_writer_never_raises_sigpipe,
    a_child_waits_in_async_form_on_a_queue_its_parent_polled,
    a_child_waits_in_async_form_on_a_named_channel_its_parent_polled,
);

/// Waits (polling, up to `limit`) until `done()`; whether it came.
async fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done()
}

// `AsyncSysvQueue::recv` takes `&self`: two tasks may wait on one queue
// (one `AsyncReady`, one watcher). Both park; one message comes, the
// watcher rings, and one task takes it; a second message sent later
// reaches the task still waiting.
fn a_system_v_queue_shared_by_two_receiving_tasks_wakes_the_second() {
    let q = SysvQueue::create(Key::private(), 0o600).unwrap();
    tokio_runtime().block_on(async {
        let q = Arc::new(q.into_async().unwrap());
        let task = |q: Arc<ipc_kit::msgq::AsyncSysvQueue>| async move {
            let mut buf = [0u8; 16];
            let (t, n) = q.recv(Selector::Any, &mut buf).await.unwrap();
            (t, buf[..n].to_vec())
        };
        let a = tokio::spawn(task(Arc::clone(&q)));
        let b = tokio::spawn(task(Arc::clone(&q)));
        // Both parked.
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.get_ref().send(1, b"first").unwrap();
        assert!(
            wait_for(Duration::from_secs(2), || a.is_finished() || b.is_finished()).await,
            "neither task took the first message"
        );
        // The first taker is done and waits no more; the other still waits.
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.get_ref().send(1, b"second").unwrap();
        let both = wait_for(Duration::from_secs(3), || a.is_finished() && b.is_finished()).await;
        let left = q.get_ref().try_recv(Selector::Any, &mut [0u8; 16]).is_ok();
        a.abort();
        b.abort();
        let _ = a.await;
        let _ = b.await;
        let q = Arc::try_unwrap(q).unwrap().into_inner();
        q.remove().unwrap();
        assert!(both, "the second task never woke for the second message (still in the queue: {left})");
    });
}

// A side parked in its async wait (a receiver on an empty channel, a
// sender on a full one) while its peer, in another process, is killed or
// drops its side: the wait ends with `Disconnected` soon, for channels
// made for fork (doorbells), named ones and ones in a memfd (a watching
// thread).
fn a_parked_channel_side_sees_its_peer_go() {
    let mut failures = Vec::new();
    for kind in ["fork", "named", "memfd"] {
        let named = kind == "named";
        for parked_recv in [true, false] {
            for kill in [true, false] {
                let what = format!(
                    "{} channel, {} parked, peer {}",
                    kind,
                    if parked_recv { "receiver" } else { "sender" },
                    if kill { "killed" } else { "dropped its side" }
                );
                let name = format!("/{}", unique_name("ipc-kit-acorner"));
                let chan = match kind {
                    "named" => Channel::<u64>::create(&name, 4).unwrap(),
                    "memfd" => Channel::<u64>::new_memfd(4).unwrap(),
                    _ => channel::<u64>(4).unwrap(),
                };
                let (mut go_r, go_w) = pipe().unwrap();
                let go_rfd = go_r.as_raw_fd();
                let peer = fork(|| {
                    close_inherited(go_rfd);
                    let opened;
                    let chan = if named {
                        opened = Channel::<u64>::open(&name).unwrap();
                        &opened
                    } else {
                        &chan
                    };
                    let side: Box<dyn std::any::Any> =
                        if parked_recv { Box::new(chan.sender().unwrap()) } else { Box::new(chan.receiver().unwrap()) };
                    nix::unistd::write(&go_w, b"!").unwrap();
                    std::thread::sleep(Duration::from_millis(200));
                    if !kill {
                        drop(side);
                    }
                    std::thread::sleep(Duration::from_secs(30));
                });
                drop(go_w);
                let mut peer = peer;
                let mut b = [0u8];
                go_r.read_exact(&mut b).unwrap();
                let got = tokio_runtime().block_on(async {
                    let pid = peer.pid();
                    if kill {
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();
                        });
                    }
                    let limit = Duration::from_secs(5);
                    if parked_recv {
                        let mut rx = chan.receiver().unwrap().into_async().unwrap();
                        tokio::time::timeout(limit, rx.recv()).await.map(|r| r.map(|_| ()))
                    } else {
                        let mut tx = chan.sender().unwrap().into_async().unwrap();
                        while tx.get_mut().try_send(7).is_ok() {}
                        tokio::time::timeout(limit, tx.send(8)).await
                    }
                });
                let _ = nix::sys::signal::kill(peer.pid(), Signal::SIGKILL);
                let _ = peer.wait();
                drop(chan);
                if named {
                    let _ = std::fs::remove_file(format!("/dev/shm{name}"));
                }
                match got {
                    Ok(Err(ShmError::Disconnected)) => {}
                    other => failures.push(format!("{what}: {other:?}")),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// A sync sender writes messages larger than the pipe holds (written in
// several writes), mixed with small ones and pauses, to an async receiver:
// every message arrives, none waits for a later write.
fn an_async_pipe_receiver_takes_large_messages_from_a_sync_sender() {
    const SIZES: [usize; 8] = [3, 70_000, 1, 200_000, 4096, 65_536, 5, 131_079];
    for m in [ipc_kit::Mechanism::Pipe, ipc_kit::Mechanism::Fifo] {
        let ipc_kit::Pair { mut sender, receiver, .. } = m.pair().unwrap();
        let child = fork(move || {
            use ipc_kit::MessageSender;
            for round in 0..4usize {
                for (i, &len) in SIZES.iter().enumerate() {
                    let msg: Vec<u8> = (0..len).map(|k| (k * 31 + i + round) as u8).collect();
                    sender.send(&msg).unwrap();
                    if (i + round) % 3 == 0 {
                        std::thread::sleep(Duration::from_millis(30));
                    }
                }
            }
            std::thread::sleep(Duration::from_secs(2));
        });
        let got = tokio_runtime().block_on(async move {
            use ipc_kit::AsyncMessageReceiver;
            let mut rx = ipc_kit::Async::new(receiver, ipc_kit::Interest::Readable).unwrap();
            let mut buf = Vec::new();
            for round in 0..4usize {
                for (i, &len) in SIZES.iter().enumerate() {
                    match tokio::time::timeout(Duration::from_secs(1), rx.recv(&mut buf)).await {
                        Ok(Ok(n)) => {
                            assert_eq!(n, len, "{}", m.name());
                            assert!(
                                buf.iter().enumerate().all(|(k, &b)| b == (k * 31 + i + round) as u8),
                                "{}",
                                m.name()
                            );
                        }
                        other => {
                            return Err(format!("{}: round {round} message {i} ({len} bytes): {other:?}", m.name()));
                        }
                    }
                }
            }
            Ok(())
        });
        child.join();
        got.unwrap();
    }
}

/// Compile-time: every async method's future can go to `tokio::spawn`.
#[allow(dead_code, clippy::too_many_arguments)]
fn futures_are_send(
    a: &mut ipc_kit::shm::channel::AsyncSender<u64>,
    b: &mut ipc_kit::shm::channel::AsyncReceiver<u64>,
    c: &mut ipc_kit::shm::channel::AsyncByteSender,
    d: &mut ipc_kit::shm::channel::AsyncByteReceiver,
    e: &ipc_kit::msgq::AsyncPosixQueue,
    f: &ipc_kit::msgq::AsyncSysvQueue,
    buf: &mut Vec<u8>,
    arr: &mut [u8],
) {
    fn send<F: Send>(_: F) {}
    send(a.send(1));
    send(b.recv());
    send(c.send(b"x"));
    send(d.recv(buf));
    send(d.recv_with(|r| r.len()));
    send(e.send(b"x", 1));
    send(e.recv(arr));
    send(f.send(1, b"x"));
    send(f.recv(Selector::Any, arr));
}

// `AsyncSysvQueue::send` takes `&self`: two tasks send on one queue, which
// is full. Task A wants room for 10 bytes, then task B for 8000; one
// 1 KiB message is taken, so A's message fits now (B's does not): A's send
// goes in (the shortest message waiting for room decides when the queue is
// writable).
fn a_small_async_send_to_a_system_v_queue_is_not_held_up_by_a_large_one() {
    let q = SysvQueue::create(Key::private(), 0o600).unwrap();
    let mut filled = 0;
    while q.try_send(1, &[0u8; 1024]).is_ok() {
        filled += 1;
    }
    assert!(filled > 0);
    tokio_runtime().block_on(async {
        let q = Arc::new(q.into_async().unwrap());
        let q1 = Arc::clone(&q);
        let a = tokio::spawn(async move { q1.send(2, &[1u8; 10]).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let q2 = Arc::clone(&q);
        let b = tokio::spawn(async move { q2.send(3, &[2u8; 8000]).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!a.is_finished() && !b.is_finished(), "the queue was full");
        // Room for 1024 bytes: A's message fits.
        q.get_ref().try_recv(Selector::Exactly(1), &mut [0u8; 1024]).unwrap();
        let sent = wait_for(Duration::from_secs(3), || a.is_finished()).await;
        // What the kernel would have taken: A's message alone, sent by hand.
        let fits = !sent && q.get_ref().try_send(4, &[1u8; 10]).is_ok();
        a.abort();
        b.abort();
        let _ = a.await;
        let _ = b.await;
        Arc::try_unwrap(q).unwrap().into_inner().remove().unwrap();
        assert!(sent, "the 10-byte send still waits 3 s after room for 1024 bytes was made (a sync try_send of it succeeded: {fits})");
    });
}

// A process uses a System V queue and a named channel's receiver in async
// form, takes them back (`into_inner`), ends its runtime, and forks. The
// child (a worker that inherited them) drops its copies and exits cleanly:
// their watching threads are the parent's, not joined in the child.
fn a_child_drops_what_its_parent_used_in_async_form() {
    let mut failures = Vec::new();
    for what in ["System V queue", "named channel receiver"] {
        let name = format!("/{}", unique_name("ipc-kit-acorner"));
        let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
        let item: Box<dyn std::any::Any> = {
            let rt = tokio_runtime();
            if what.starts_with("System V") {
                let q = SysvQueue::create(Key::private(), 0o600).unwrap();
                let q = rt.block_on(async { q.into_async().unwrap() }).into_inner();
                Box::new(q)
            } else {
                let chan = Channel::<u64>::create(&name, 4).unwrap();
                let rx = rt.block_on(async { chan.receiver().unwrap().into_async().unwrap() }).into_inner();
                keep.push(Box::new(chan));
                Box::new(rx)
            }
        };
        let mut child = fork(move || {
            drop(item);
        });
        let exit = child.wait_timeout(Duration::from_secs(5));
        if exit.is_none() {
            child.kill();
            let _ = child.wait();
        }
        drop(keep);
        let _ = std::fs::remove_file(format!("/dev/shm{name}"));
        if exit != Some(ipc_kit_tests::Exit::Code(0)) {
            failures.push(format!("{what}: the child that dropped it: {exit:?} after 5 s"));
        }
    }
    // (The parent's own copies go when the process ends.)
    assert!(failures.is_empty(), "{failures:#?}");
}

// Parked waits whose other end can never come: a fork-made channel whose
// only other possible claimer (a child) exits without claiming, after the
// parent let its own handle go; a System V queue removed by another
// process. Each wait ends with an error within seconds.
fn a_parked_wait_ends_when_its_other_end_can_never_come() {
    let mut failures = Vec::new();
    for parked_recv in [true, false] {
        let chan = channel::<u64>(4).unwrap();
        let side: Box<dyn std::any::Any> =
            if parked_recv { Box::new(chan.receiver().unwrap()) } else { Box::new(chan.sender().unwrap()) };
        let mut child = fork(|| std::thread::sleep(Duration::from_millis(300)));
        drop(chan);
        let got = tokio_runtime().block_on(async move {
            let limit = Duration::from_secs(5);
            if parked_recv {
                let mut rx = side.downcast::<ipc_kit::shm::channel::Receiver<u64>>().unwrap().into_async().unwrap();
                tokio::time::timeout(limit, rx.recv()).await.map(|r| r.map(|_| ()))
            } else {
                let mut tx = side.downcast::<ipc_kit::shm::channel::Sender<u64>>().unwrap().into_async().unwrap();
                while tx.get_mut().try_send(7).is_ok() {}
                tokio::time::timeout(limit, tx.send(8)).await
            }
        });
        assert_eq!(child.wait(), ipc_kit_tests::Exit::Code(0));
        if !matches!(got, Ok(Err(ShmError::Disconnected))) {
            failures
                .push(format!("unclaimed peer, {} parked: {got:?}", if parked_recv { "receiver" } else { "sender" }));
        }
    }
    for parked_recv in [true, false] {
        let q = SysvQueue::create(Key::private(), 0o600).unwrap();
        let id = q.id();
        if !parked_recv {
            while q.try_send(1, &[0u8; 1024]).is_ok() {}
        }
        let mut child = fork(|| {
            std::thread::sleep(Duration::from_millis(200));
            // SAFETY: removes the queue by id.
            assert_eq!(unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) }, 0);
        });
        let got = tokio_runtime().block_on(async {
            let q = q.into_async().unwrap();
            let limit = Duration::from_secs(5);
            let r = if parked_recv {
                tokio::time::timeout(limit, q.recv(Selector::Any, &mut [0u8; 64])).await.map(|r| r.map(|_| ()))
            } else {
                tokio::time::timeout(limit, q.send(1, &[0u8; 1024])).await
            };
            std::mem::forget(q.into_inner()); // removed already
            r
        });
        assert_eq!(child.wait(), ipc_kit_tests::Exit::Code(0));
        if !matches!(got, Ok(Err(_))) {
            failures.push(format!(
                "System V queue removed, {} parked: {got:?}",
                if parked_recv { "receiver" } else { "sender" }
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

fn counts() -> (usize, usize) {
    (std::fs::read_dir("/proc/self/task").unwrap().count(), std::fs::read_dir("/proc/self/fd").unwrap().count())
}

// Async forms used (a wait that parked) and dropped, 20 times each, in a
// runtime that stays: the process's threads and descriptors are as before.
fn dropped_async_forms_leave_no_threads_or_descriptors() {
    let rt = tokio_runtime();
    let mut report = Vec::new();
    let before = counts();
    for _ in 0..20 {
        let q = SysvQueue::create(Key::private(), 0o600).unwrap();
        rt.block_on(async {
            let q = q.into_async().unwrap();
            let _ = tokio::time::timeout(Duration::from_millis(5), q.recv(Selector::Any, &mut [0u8; 8])).await;
            q.into_inner().remove().unwrap();
        });
    }
    report.push(("System V queue", before, counts()));
    let before = counts();
    for _ in 0..20 {
        let name = format!("/{}", unique_name("ipc-kit-acorner"));
        let chan = Channel::<u64>::create(&name, 4).unwrap();
        let tx = chan.sender().unwrap();
        rt.block_on(async {
            let mut rx = chan.receiver().unwrap().into_async().unwrap();
            let mut tx = tx.into_async().unwrap();
            let _ = tokio::time::timeout(Duration::from_millis(5), rx.recv()).await;
            tx.send(1).await.unwrap();
            assert_eq!(rx.recv().await.unwrap(), 1);
        });
        drop(chan);
        let _ = std::fs::remove_file(format!("/dev/shm{name}"));
    }
    report.push(("named channel", before, counts()));
    let before = counts();
    for _ in 0..20 {
        let ipc_kit::Pair { sender, receiver, .. } = ipc_kit::Mechanism::Fifo.pair().unwrap();
        rt.block_on(async {
            use ipc_kit::{AsyncMessageReceiver, AsyncMessageSender};
            let mut rx = ipc_kit::Async::new(receiver, ipc_kit::Interest::Readable).unwrap();
            let mut tx = ipc_kit::Async::new(sender, ipc_kit::Interest::Writable).unwrap();
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(Duration::from_millis(5), rx.recv(&mut buf)).await;
            tx.send(b"x").await.unwrap();
            rx.recv(&mut buf).await.unwrap();
        });
    }
    report.push(("FIFO", before, counts()));
    let bad: Vec<_> = report.iter().filter(|(_, b, a)| a.0 > b.0 || a.1 > b.1).collect();
    assert!(bad.is_empty(), "(threads, fds) before and after: {bad:?}");
}

// A queue in async form shared (its methods take `&self`) by two sending
// and two receiving tasks on a two-worker runtime, the queue small enough
// that both directions park: every message arrives, none twice, without a
// stall.
fn two_workers_share_a_queue_in_async_form() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const N: usize = 4000;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut failures = Vec::new();
    for kind in ["POSIX", "System V"] {
        let name = format!("/{}", unique_name("ipc-kit-acorner-mq"));
        let seen: Arc<Vec<AtomicUsize>> = Arc::new((0..N).map(|_| AtomicUsize::new(0)).collect());
        let total = Arc::new(AtomicUsize::new(0));
        let done = rt.block_on(async {
            enum Q {
                P(ipc_kit::msgq::AsyncPosixQueue),
                S(ipc_kit::msgq::AsyncSysvQueue),
            }
            let q = Arc::new(if kind == "POSIX" {
                let attr = ipc_kit::msgq::QueueAttr { max_messages: 4, message_size: 1024 };
                Q::P(ipc_kit::msgq::PosixQueue::create(&name, attr, 0o600).unwrap().into_async().unwrap())
            } else {
                Q::S(SysvQueue::create(Key::private(), 0o600).unwrap().into_async().unwrap())
            });
            let mut tasks = Vec::new();
            for s in 0..2usize {
                let q = Arc::clone(&q);
                tasks.push(tokio::spawn(async move {
                    for i in (s..N).step_by(2) {
                        let mut msg = [0u8; 1000];
                        msg[..8].copy_from_slice(&(i as u64).to_le_bytes());
                        match &*q {
                            Q::P(q) => q.send(&msg, 1).await.unwrap(),
                            Q::S(q) => q.send(1, &msg).await.unwrap(),
                        }
                    }
                }));
            }
            for _ in 0..2 {
                let (q, seen, total) = (Arc::clone(&q), Arc::clone(&seen), Arc::clone(&total));
                tasks.push(tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    loop {
                        match &*q {
                            Q::P(q) => {
                                q.recv(&mut buf).await.unwrap();
                            }
                            Q::S(q) => {
                                q.recv(Selector::Any, &mut buf).await.unwrap();
                            }
                        }
                        let i = u64::from_le_bytes(buf[..8].try_into().unwrap()) as usize;
                        seen[i].fetch_add(1, Ordering::Relaxed);
                        total.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            let mut last = (0, Instant::now());
            let ok = loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let t = total.load(Ordering::Relaxed);
                if t >= N {
                    break Ok(());
                }
                if t != last.0 {
                    last = (t, Instant::now());
                } else if last.1.elapsed() > Duration::from_secs(3) {
                    break Err(format!("{kind}: stalled 3 s at {t} of {N} received"));
                }
            };
            for t in &tasks {
                t.abort();
            }
            for t in tasks {
                let _ = t.await;
            }
            if let Q::S(q) = Arc::try_unwrap(q).ok().unwrap() {
                q.into_inner().remove().unwrap();
            }
            ok
        });
        if let Err(e) = done {
            failures.push(e);
        }
        let twice = seen.iter().filter(|c| c.load(Ordering::Relaxed) > 1).count();
        if twice > 0 {
            failures.push(format!("{kind}: {twice} messages received twice"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// A task drains a channel that holds many messages with `recv().await` in
// a loop, while a second task of the same current-thread runtime ticks
// every millisecond: the ticker runs during the drain (the loop does not
// hold the thread for its whole length).
fn a_receive_loop_over_a_full_channel_lets_other_tasks_run() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const N: usize = 1 << 21;
    let chan = channel::<u64>(N).unwrap();
    let mut tx = chan.sender().unwrap();
    for i in 0..N as u64 {
        tx.try_send(i).unwrap();
    }
    let rx = chan.receiver().unwrap();
    let ticks = Arc::new(AtomicUsize::new(0));
    let (elapsed, ticked) = tokio_runtime().block_on(async {
        let mut rx = rx.into_async().unwrap();
        let t = Arc::clone(&ticks);
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                t.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Let the ticker start.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let before = ticks.load(Ordering::Relaxed);
        let drain = tokio::spawn(async move {
            let start = Instant::now();
            for i in 0..N as u64 {
                assert_eq!(rx.recv().await.unwrap(), i);
            }
            start.elapsed()
        });
        let elapsed = drain.await.unwrap();
        let ticked = ticks.load(Ordering::Relaxed) - before;
        ticker.abort();
        (elapsed, ticked)
    });
    drop(tx);
    eprintln!("{N} receives took {elapsed:?}; ticks meanwhile: {ticked}");
    assert!(
        elapsed < Duration::from_millis(20) || ticked > 0,
        "the ticker never ran while {N} receives took {elapsed:?} (ticks: {ticked})"
    );
}

// `AsyncPipeWriter` parked on a full pipe whose reading process is killed
// ends with `BrokenPipe`; `AsyncPipeReader` parked on an empty pipe whose
// writing process is killed reads end of file.
fn tokio_pipe_ends_see_a_killed_peer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for parked_writer in [true, false] {
        let (r, w) = pipe().unwrap();
        let (rfd, wfd) = (r.as_raw_fd(), w.as_raw_fd());
        let mut peer = fork(|| {
            close_inherited(if parked_writer { wfd } else { rfd });
            std::thread::sleep(Duration::from_secs(30));
        });
        let got = tokio_runtime().block_on(async {
            let pid = peer.pid();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();
            });
            let limit = Duration::from_secs(5);
            if parked_writer {
                drop(r);
                let mut w = w.into_async().unwrap();
                let big = vec![7u8; 1 << 20];
                format!("{:?}", tokio::time::timeout(limit, w.write_all(&big)).await.map(|r| r.map_err(|e| e.kind())))
            } else {
                drop(w);
                let mut r = r.into_async().unwrap();
                let mut buf = [0u8; 16];
                format!("{:?}", tokio::time::timeout(limit, r.read(&mut buf)).await.map(|r| r.map_err(|e| e.kind())))
            }
        });
        let _ = peer.wait();
        let want = if parked_writer { "Ok(Err(BrokenPipe))" } else { "Ok(Ok(0))" };
        assert_eq!(got, want, "parked writer: {parked_writer}");
    }
}

// `AsyncPipeWriter` docs: "A write to a pipe whose readers all closed fails
// with `BrokenPipe` (never `SIGPIPE`)", in a process whose SIGPIPE has its
// default disposition (a C host, or `-Zon-broken-pipe=kill`).
fn an_async_pipe_writer_never_raises_sigpipe() {
    use tokio::io::AsyncWriteExt;
    let mut child = fork(|| {
        // SAFETY: resets SIGPIPE to its default.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let (r, w) = pipe().unwrap();
        drop(r);
        let got = tokio_runtime().block_on(async {
            let mut w = w.into_async().unwrap();
            w.write_all(b"x").await.map_err(|e| e.kind())
        });
        assert_eq!(got, Err(std::io::ErrorKind::BrokenPipe));
    });
    assert_eq!(child.wait(), ipc_kit_tests::Exit::Code(0));
}

// A process uses a System V queue in async form, takes it back and forks;
// the child (a worker that inherited it) waits on it in async form in a
// runtime of its own, and the parent sends. The queue's watchers were
// started in the parent; the child's first arming starts their thread
// there (a fork copies no thread), and the child receives.
fn a_child_waits_in_async_form_on_a_queue_its_parent_polled() {
    let q = SysvQueue::create(Key::private(), 0o600).unwrap();
    let q = tokio_runtime().block_on(async { q.into_async().unwrap() }).into_inner();
    let id = q.id();
    let inherited = &q;
    let mut child = fork(|| {
        // SAFETY: the child's own copy of the parent's queue (its memory is
        // the child's after fork); the parent's is never touched here.
        let q = unsafe { std::ptr::read(inherited) };
        tokio_runtime().block_on(async {
            let q = q.into_async().unwrap();
            let got = tokio::time::timeout(Duration::from_secs(3), q.recv(Selector::Any, &mut [0u8; 16])).await;
            let exit = if got.is_ok() { 0 } else { 7 };
            std::mem::forget(q);
            std::process::exit(exit);
        });
    });
    std::thread::sleep(Duration::from_millis(200));
    let msg: [libc::c_long; 2] = [1, 0];
    // SAFETY: a 4-byte message of type 1 to queue `id`.
    assert_eq!(unsafe { libc::msgsnd(id, msg.as_ptr().cast(), 4, 0) }, 0);
    let exit = child.wait_timeout(Duration::from_secs(10));
    if exit.is_none() {
        child.kill();
    }
    let mut buf: [libc::c_long; 2] = [0, 0];
    // SAFETY: receives into `buf`, then removes queue `id`.
    let left = unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), 8, 0, libc::IPC_NOWAIT) } >= 0;
    q.remove().unwrap();
    assert_eq!(
        exit,
        Some(ipc_kit_tests::Exit::Code(0)),
        "the child's receive never returned (message still queued: {left})"
    );
}

// As above for a named channel's receiver, polled by the parent: in the
// child it forks, the side's watcher starts a thread of its own when the
// child's poller arms it (a fork copies no thread), and the child hears of
// the parent's message.
fn a_child_waits_in_async_form_on_a_named_channel_its_parent_polled() {
    let name = format!("/{}", unique_name("ipc-kit-acorner"));
    let chan = Channel::<u64>::create(&name, 16).unwrap();
    let mut tx = chan.sender().unwrap();
    let rx = chan.receiver().unwrap();
    let mut poller = ipc_kit::Poller::new().unwrap();
    poller.add(&rx, ipc_kit::Interest::Readable, 1).unwrap();
    assert!(poller.try_wait().unwrap().is_empty());
    let (mut go_r, go_w) = pipe().unwrap();
    let child = fork(|| {
        let before = thread_count();
        let mut poller = ipc_kit::Poller::new().unwrap();
        poller.add(&rx, ipc_kit::Interest::Readable, 2).unwrap();
        assert!(poller.try_wait().unwrap().is_empty());
        assert_eq!(thread_count(), before + 1, "no watching thread in the child");
        nix::unistd::write(&go_w, b"!").unwrap();
        assert_eq!(poller.wait_timeout(Duration::from_secs(10)).unwrap(), [2]);
    });
    let mut b = [0u8];
    go_r.read_exact(&mut b).unwrap();
    tx.send(7).unwrap();
    child.join();
    poller.remove(1).unwrap();
    drop((tx, rx, chan));
}
