//! Publish/subscribe, the blackboard and events in async code on tokio,
//! across processes: every message under `Block` with a publisher that
//! waits for room, futures cancelled midway losing nothing, and the
//! owner's death waking every wait.

use std::time::{Duration, Instant};

use ipc_kit::service::{
    Blackboard, BlackboardOptions, BlackboardReader, Error, EventOptions, Listener, Notifier, PubSubOptions, Publisher,
    Subscriber,
};
use ipc_kit_tests::{Exit, ScratchDir, cases, fork, tokio_runtime};
use nix::sys::signal::Signal;

use crate::service::name_in;

cases!("hub_async":
    async_subscribers_get_every_message_and_cancelled_receives_lose_nothing(60 s),
    async_readers_and_listeners_wake_for_news_and_for_the_owners_death,
);

fn async_subscribers_get_every_message_and_cancelled_receives_lose_nothing() {
    const N: u64 = 100_000;
    let dir = ScratchDir::new();
    let name = name_in(&dir, "pub");
    let subs: Vec<_> = (0..3)
        .map(|_| {
            let name = name.clone();
            fork(move || {
                let rt = tokio_runtime();
                rt.block_on(async {
                    let start = Instant::now();
                    let sub = loop {
                        match Subscriber::connect(&name) {
                            Ok(s) => break s,
                            Err(_) if start.elapsed() < Duration::from_secs(10) => {
                                tokio::time::sleep(Duration::from_millis(2)).await;
                            }
                            Err(e) => panic!("{e}"),
                        }
                    };
                    let mut sub = sub.into_async().unwrap();
                    let mut want = 0;
                    while want < N {
                        // Now and then a receive cancelled by a very short
                        // timeout: nothing may be lost by it.
                        let v = match tokio::time::timeout(Duration::from_micros(1), sub.recv_pod::<u64>()).await {
                            Ok(v) => v.unwrap(),
                            Err(_) => sub.recv_pod::<u64>().await.unwrap(),
                        };
                        assert_eq!(v, want, "lost or reordered");
                        want += 1;
                    }
                    assert!(matches!(sub.recv(&mut Vec::new()).await, Err(Error::Disconnected)));
                });
            })
        })
        .collect();
    let rt = tokio_runtime();
    rt.block_on(async {
        let options = PubSubOptions { capacity: 64, max_message: 8, ..PubSubOptions::default() };
        let publisher = Publisher::bind(&name, options).unwrap();
        while publisher.subscribers() < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut publisher = publisher.into_async().unwrap();
        let mut n = 0;
        while n < N {
            // A publish cancelled while it waits for room publishes nothing.
            match tokio::time::timeout(Duration::from_micros(5), publisher.publish_pod(&n)).await {
                Ok(got) => {
                    assert_eq!(got.unwrap(), n);
                    n += 1;
                }
                Err(_) => assert_eq!(publisher.get_mut().published(), n),
            }
        }
    });
    for mut s in subs {
        assert_eq!(s.wait_timeout(Duration::from_secs(40)), Some(Exit::Code(0)));
    }
}

fn async_readers_and_listeners_wake_for_news_and_for_the_owners_death() {
    let dir = ScratchDir::new();
    let (board_name, events_name) = (name_in(&dir, "board"), name_in(&dir, "events"));
    let (ready_r, ready_w) = std::io::pipe().unwrap();
    let mut owner = fork(|| {
        let mut board = Blackboard::bind(&board_name, BlackboardOptions::default()).unwrap();
        let mut notifier = Notifier::bind(&events_name, EventOptions::default()).unwrap();
        nix::unistd::write(&ready_w, b"b").unwrap();
        while board.readers() < 1 || notifier.listeners() < 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for v in 1..=20u64 {
            board.write_pod(&v).unwrap();
            notifier.notify((v % 3) as u32).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    drop(ready_w);
    let mut b = [0u8; 1];
    nix::unistd::read(&ready_r, &mut b).unwrap();
    let rt = tokio_runtime();
    rt.block_on(async {
        let mut reader = BlackboardReader::connect(&board_name).unwrap().into_async().unwrap();
        let mut listener = Listener::connect(&events_name).unwrap().into_async().unwrap();
        let (mut last, mut fired, mut buf) = (0, 0, Vec::new());
        while last < 20 || fired < 20 {
            tokio::select! {
                v = reader.wait_newer(&mut buf), if last < 20 => {
                    let v = v.unwrap();
                    assert!(v > last);
                    last = v;
                }
                f = listener.wait(), if fired < 20 => {
                    fired += f.unwrap().iter().map(|(_, n)| n).sum::<u64>();
                }
            }
        }
        assert_eq!((last, fired), (20, 20));
        let killer = tokio::task::spawn_blocking({
            let pid = owner.pid();
            move || {
                std::thread::sleep(Duration::from_millis(100));
                nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();
            }
        });
        let t = Instant::now();
        let (a, l) = tokio::join!(reader.wait_newer(&mut buf), listener.wait());
        assert!(matches!(a, Err(Error::Disconnected)), "{a:?}");
        assert!(matches!(l, Err(Error::Disconnected)), "{l:?}");
        assert!(t.elapsed() < Duration::from_secs(10));
        killer.await.unwrap();
    });
    assert_eq!(owner.wait(), Exit::Signaled(Signal::SIGKILL));
}
