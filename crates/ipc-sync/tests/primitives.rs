//! The shared-memory primitives between threads of one process; the
//! cross-process cases are in the workspace's fork suite.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytemuck::Zeroable;
use ipc_sync::{Condvar, Deadline, Error, Event, Key, LockError, Mutex, RobustMutex, Semaphore, futex};

fn within(elapsed: Duration, timeout: Duration) {
    assert!(elapsed >= timeout, "early: {elapsed:?} < {timeout:?}");
    assert!(elapsed < timeout + Duration::from_secs(1), "late: {elapsed:?}");
}

#[test]
fn zeroed_primitives_are_ready() {
    let m: Mutex<[u64; 4]> = Mutex::zeroed();
    assert_eq!(*m.try_lock().unwrap(), [0; 4]);
    let s = Semaphore::zeroed();
    assert_eq!(s.value(), 0);
    assert!(matches!(s.try_wait(), Err(Error::WouldBlock { what: "semaphore" })));
    let e = Event::zeroed();
    assert!(!e.is_set());
    let c = Condvar::zeroed();
    c.notify_all();
}

#[test]
fn mutex_counts_exactly_under_contention() {
    let m = Mutex::new(0u64);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50_000 {
                    *m.lock().unwrap() += 1;
                }
            });
        }
    });
    assert_eq!(m.into_inner(), 200_000);
}

#[test]
fn mutex_try_and_timeout() {
    let m = Mutex::new(1u32);
    let g = m.lock().unwrap();
    assert!(matches!(m.try_lock(), Err(LockError::WouldBlock)));
    // This thread holds it: a blocking form says so instead of hanging.
    assert!(matches!(m.lock(), Err(LockError::WouldDeadlock)));
    assert!(matches!(m.lock_timeout(Duration::ZERO), Err(LockError::WouldDeadlock)));
    std::thread::scope(|s| {
        s.spawn(|| {
            let t = Instant::now();
            assert!(matches!(m.lock_timeout(Duration::from_millis(50)), Err(LockError::Timeout)));
            within(t.elapsed(), Duration::from_millis(50));
            let t = Instant::now();
            assert!(matches!(m.lock_timeout(Duration::ZERO), Err(LockError::Timeout)));
            assert!(matches!(m.lock_deadline(Instant::now() - Duration::from_secs(1)), Err(LockError::Timeout)));
            assert!(t.elapsed() < Duration::from_secs(1));
        });
    });
    drop(g);
    assert_eq!(*m.lock_timeout(Duration::from_millis(50)).unwrap(), 1);
    assert!(format!("{m:?}").contains("unlocked"));
}

#[test]
fn mutex_wakes_a_sleeping_waiter() {
    let m = Mutex::new(0u32);
    std::thread::scope(|s| {
        let g = m.lock().unwrap();
        let h = s.spawn(|| *m.lock_timeout(Duration::from_secs(10)).unwrap());
        std::thread::sleep(Duration::from_millis(50)); // long enough to sleep in the kernel
        drop(g);
        assert_eq!(h.join().unwrap(), 0);
    });
}

#[test]
fn condvar_producer_consumer_loses_nothing() {
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Queue {
        items: [u32; 4],
        len: u32,
        done: u32,
    }
    let q = Mutex::new(Queue::zeroed());
    let not_empty = Condvar::new();
    let not_full = Condvar::new();
    let total = std::thread::scope(|s| {
        s.spawn(|| {
            for i in 1..=20_000u32 {
                let mut g = not_full.wait_while(q.lock().unwrap(), |q| q.len == 4).unwrap();
                let n = g.len as usize;
                g.items[n] = i;
                g.len += 1;
                drop(g);
                not_empty.notify_one();
            }
            q.lock().unwrap().done = 1;
            not_empty.notify_all();
        });
        let mut sum = 0u64;
        loop {
            let mut g = not_empty.wait_while(q.lock().unwrap(), |q| q.len == 0 && q.done == 0).unwrap();
            if g.len == 0 {
                break sum;
            }
            g.len -= 1;
            let n = g.len as usize;
            sum += u64::from(g.items[n]);
            drop(g);
            not_full.notify_one();
        }
    });
    assert_eq!(total, 20_000 * 20_001 / 2);
}

#[test]
fn condvar_timeouts() {
    let m = Mutex::new(0u32);
    let c = Condvar::new();
    let t = Instant::now();
    let (g, r) = c.wait_timeout(m.lock().unwrap(), Duration::from_millis(40)).unwrap();
    assert!(r.timed_out());
    within(t.elapsed(), Duration::from_millis(40));
    drop(g);
    let (g, r) = c.wait_timeout_while(m.lock().unwrap(), Duration::from_millis(20), |v| *v == 0).unwrap();
    assert!(r.timed_out());
    assert_eq!(*g, 0);
}

#[test]
fn semaphore_counts_and_times_out() {
    let s = Semaphore::new(2);
    s.wait();
    s.try_wait().unwrap();
    let t = Instant::now();
    assert!(matches!(s.wait_timeout(Duration::from_millis(30)), Err(Error::Timeout { .. })));
    within(t.elapsed(), Duration::from_millis(30));
    let full = Semaphore::new(u32::MAX);
    assert!(matches!(full.post(), Err(Error::Overflow { max, .. }) if max == u64::from(u32::MAX)));
    std::thread::scope(|sc| {
        let h = sc.spawn(|| s.wait_timeout(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(30));
        s.post().unwrap();
        h.join().unwrap().unwrap();
    });
    assert_eq!(s.value(), 0);
}

#[test]
fn event_manual_and_auto_reset() {
    let e = Event::new();
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..3).map(|_| s.spawn(|| e.wait_timeout(Duration::from_secs(10)))).collect();
        std::thread::sleep(Duration::from_millis(20));
        e.set();
        for w in waiters {
            w.join().unwrap().unwrap();
        }
    });
    assert!(e.is_set(), "manual reset: it stays set");
    e.try_wait_reset().unwrap();
    assert!(matches!(e.try_wait_reset(), Err(Error::WouldBlock { .. })));
    // Auto reset: two waiters, one set each.
    let passed = AtomicU32::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                e.wait_reset_timeout(Duration::from_secs(10)).unwrap();
                passed.fetch_add(1, Ordering::SeqCst);
            });
        }
        std::thread::sleep(Duration::from_millis(20));
        e.set();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(passed.load(Ordering::SeqCst), 1, "one set, one waiter through");
        e.set();
    });
    assert_eq!(passed.load(Ordering::SeqCst), 2);
    let t = Instant::now();
    assert!(matches!(e.wait_timeout(Duration::from_millis(30)), Err(Error::Timeout { what: "event" })));
    within(t.elapsed(), Duration::from_millis(30));
}

#[test]
fn futex_wait_and_wake() {
    let word = AtomicU32::new(0);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            while word.load(Ordering::Acquire) == 0 {
                assert!(futex::wait_until(&word, 0, Deadline::after(Duration::from_secs(10))));
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        word.store(1, Ordering::Release);
        futex::wake_all(&word);
        h.join().unwrap();
    });
    let t = Instant::now();
    assert!(!futex::wait_until(&word, 1, Deadline::after(Duration::from_millis(30))));
    within(t.elapsed(), Duration::from_millis(30));
}

#[test]
fn keys() {
    assert!(matches!(Key::new(0), Err(Error::InvalidKey { key: 0, .. })));
    assert_eq!(Key::new(42).unwrap().raw(), 42);
    assert!(matches!(Key::from_path("/", 0), Err(Error::InvalidKey { .. })));
    match Key::from_path("/definitely/missing", 1) {
        Err(e @ Error::KeyPath { .. }) => assert!(e.to_string().contains("/definitely/missing"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_ne!(Key::from_path("/", 1).unwrap(), Key::from_path("/", 2).unwrap());
    assert_eq!(format!("{}", Key::private()), "IPC_PRIVATE");
}

#[test]
fn locks_released_out_of_order_keep_working() {
    let ms: Vec<Mutex<u32>> = (0..5).map(Mutex::new).collect();
    let rs: Vec<RobustMutex<u32>> = (0..3).map(RobustMutex::new).collect();
    for round in 0..50usize {
        let mut gs: Vec<_> = ms.iter().map(|m| Some(m.lock().unwrap())).collect();
        let mut rg: Vec<_> = rs.iter().map(|m| Some(m.lock().unwrap())).collect();
        // Release in an order that changes every round.
        let (n, nr) = (gs.len(), rg.len());
        for k in 0..n {
            gs[(k * 3 + round) % n].take();
            if k < nr {
                rg[(k + round) % nr].take();
            }
        }
    }
    // Every one is free, for this thread and for another.
    std::thread::scope(|s| {
        s.spawn(|| {
            for m in &ms {
                drop(m.try_lock().unwrap());
            }
            for m in &rs {
                drop(m.try_lock().unwrap());
            }
        });
    });
}

#[test]
fn a_thread_that_exits_holding_a_mutex_is_reported_dead() {
    let m = Mutex::new(0u32);
    let r = RobustMutex::new(0u32);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut g = m.lock().unwrap();
            *g = 7;
            std::mem::forget(g); // the thread ends holding both
            let mut g = r.lock().unwrap();
            *g = 8;
            std::mem::forget(g);
        });
    });
    match m.lock_timeout(Duration::from_secs(5)) {
        Err(LockError::OwnerDied(g)) => assert_eq!(*g, 7),
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    // Reported once; then as good as new.
    assert_eq!(*m.try_lock().unwrap(), 7);
    match r.lock_timeout(Duration::from_secs(5)) {
        Err(LockError::OwnerDied(mut g)) => {
            assert_eq!(*g, 8);
            g.make_consistent().unwrap();
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert_eq!(*r.try_lock().unwrap(), 8);
}

#[test]
fn a_sleeping_waiter_learns_of_the_death_at_once() {
    let m = &Mutex::new(0u32);
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let (locked_tx, locked) = std::sync::mpsc::channel();
        s.spawn(move || {
            std::mem::forget(m.lock().unwrap());
            locked_tx.send(()).unwrap();
            rx.recv().unwrap(); // until the waiter sleeps
        });
        locked.recv().unwrap();
        let waiter = s.spawn(move || {
            let t = Instant::now();
            let died = matches!(m.lock_timeout(Duration::from_secs(10)), Err(LockError::OwnerDied(_)));
            (died, t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(100));
        tx.send(()).unwrap();
        let (died, after) = waiter.join().unwrap();
        assert!(died);
        assert!(after < Duration::from_secs(5), "{after:?}");
    });
}

#[test]
fn too_many_held_is_an_error_not_a_hang() {
    let ms: Vec<Mutex<u8>> = (0..80).map(|_| Mutex::new(0)).collect();
    let mut gs = Vec::new();
    let mut refused = None;
    for m in &ms {
        match m.lock() {
            Ok(g) => gs.push(g),
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
        }
    }
    assert_eq!(gs.len(), 64);
    assert!(refused.unwrap().contains("64"));
    gs.clear();
    assert!(ms.iter().all(|m| m.try_lock().is_ok()));
}
