//! ipc-sync's primitives between real processes, in anonymous shared
//! memory inherited across fork.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use ipc_kit::shm::Mapping;
use ipc_kit::sync::{
    Condvar, Deadline, Error, Event, EventFd, EventFdMode, Key, LockError, Mutex, NamedSemaphore, RobustMutex, SemOp,
    Semaphore, SemaphoreSet, futex,
};
use ipc_kit_tests::{
    Exit, Forked, Refusal, Rng, SLACK, ScratchDir, SysvKind, assert_fired_within, cases, fork, helper_command,
    unique_name,
};
use nix::sys::signal::Signal;

cases!("sync", helpers ["sysv-sem-by-path" => sysv_sem_by_path, "named-sem" => named_sem_helper]:
    mutex_four_processes_exact_total,
    condvar_producer_consumer_across_processes,
    event_wakes_another_process,
    event_auto_reset_lets_one_process_through_per_set,
    semaphore_hands_out_each_unit_once,
    futex_wakes_another_process,
    timeouts_fire_within_bounds,
    waiter_whose_waker_dies_times_out,
    robust_mutex_owner_died_then_repaired,
    robust_mutex_not_repaired_is_not_recoverable,
    semaphore_set_undo_after_kill,
    semaphore_set_by_path_key_in_exec_child,
    semaphore_set_removed_while_waiting,
    named_semaphore_across_exec,
    eventfd_wakes_across_fork,
    permission_denied_for_nobody,
    event_auto_reset_counts_every_set,
    event_hostile_peer_cannot_strand_or_break_waits,
    semaphore_hostile_peer_cannot_strand_or_break_waits,
    condvar_hostile_peer_cannot_strand_or_break_waits,
    eventfd_add_sleeps_while_the_counter_has_no_room,
    semaphore_set_zero_and_past_timeouts_try_once,
    semaphore_set_slow_creator_is_never_taken_over,
    semaphore_set_creator_killed_at_each_step,
    forked_child_dropping_inherited_owner_handles_removes_nothing,
);

fn mutex_four_processes_exact_total() {
    let map = Mapping::anonymous(4096).unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            fork(|| {
                let m = map.shared::<Mutex<u64>>(0).unwrap();
                for _ in 0..100_000 {
                    *m.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    children.into_iter().for_each(|c| c.join());
    assert_eq!(*map.shared::<Mutex<u64>>(0).unwrap().lock().unwrap(), 400_000);
}

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Ring {
    items: [u64; 8],
    head: u32,
    len: u32,
    done: u32,
    _pad: u32,
}

/// The layout of the shared page in the condvar case.
#[repr(C)]
struct Channel {
    ring: Mutex<Ring>,
    not_empty: Condvar,
    not_full: Condvar,
}

fn condvar_producer_consumer_across_processes() {
    const N: u64 = 50_000;
    let map = Mapping::anonymous(4096).unwrap();
    let ring = || map.shared::<Mutex<Ring>>(0).unwrap();
    let cond = |i: usize| map.shared::<Condvar>(size_of::<Mutex<Ring>>() + i * size_of::<Condvar>()).unwrap();
    assert_eq!(size_of::<Channel>(), size_of::<Mutex<Ring>>() + 2 * size_of::<Condvar>());
    let producer = fork(|| {
        let (ring, not_empty, not_full) = (ring(), cond(0), cond(1));
        for i in 1..=N {
            let mut r = not_full.wait_while(ring.lock().unwrap(), |r| r.len == 8).unwrap();
            let slot = ((r.head + r.len) % 8) as usize;
            r.items[slot] = i;
            r.len += 1;
            drop(r);
            not_empty.notify_one();
        }
        ring.lock().unwrap().done = 1;
        not_empty.notify_all();
    });
    let (ring, not_empty, not_full) = (ring(), cond(0), cond(1));
    let (mut sum, mut count, mut last) = (0u64, 0u64, 0u64);
    loop {
        let mut r = not_empty.wait_while(ring.lock().unwrap(), |r| r.len == 0 && r.done == 0).unwrap();
        if r.len == 0 {
            break;
        }
        let item = r.items[r.head as usize];
        r.head = (r.head + 1) % 8;
        r.len -= 1;
        drop(r);
        not_full.notify_one();
        assert_eq!(item, last + 1, "in order, nothing lost");
        last = item;
        sum += item;
        count += 1;
    }
    assert_eq!((count, sum), (N, N * (N + 1) / 2));
    producer.join();
}

fn event_wakes_another_process() {
    let map = Mapping::anonymous(4096).unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            fork(|| {
                let e = map.shared::<Event>(0).unwrap();
                e.wait_timeout(Duration::from_secs(20)).expect("woken by the parent");
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100)); // let them fall asleep
    map.shared::<Event>(0).unwrap().set();
    waiters.into_iter().for_each(|c| c.join());
}

fn event_auto_reset_lets_one_process_through_per_set() {
    let map = Mapping::anonymous(4096).unwrap();
    let passed = || map.shared::<AtomicU32>(64).unwrap();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            fork(|| {
                let e = map.shared::<Event>(0).unwrap();
                e.wait_reset_timeout(Duration::from_secs(20)).unwrap();
                passed().fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    let e = map.shared::<Event>(0).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    e.set();
    let t = Instant::now();
    while passed().load(Ordering::SeqCst) == 0 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(passed().load(Ordering::SeqCst), 1, "one set lets one waiter through");
    assert!(!e.is_set());
    e.set();
    waiters.into_iter().for_each(|c| c.join());
    assert_eq!(passed().load(Ordering::SeqCst), 2);
}

fn semaphore_hands_out_each_unit_once() {
    const UNITS: u64 = 30_000;
    let map = Mapping::anonymous(4096).unwrap();
    let sem = || map.shared::<Semaphore>(0).unwrap();
    let done = || map.shared::<Event>(64).unwrap();
    let taken = || map.shared::<AtomicU64>(128).unwrap();
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            fork(|| {
                loop {
                    match sem().wait_timeout(Duration::from_millis(20)) {
                        Ok(()) => {
                            taken().fetch_add(1, Ordering::SeqCst);
                        }
                        Err(Error::Timeout { .. }) if done().is_set() => return,
                        Err(Error::Timeout { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for _ in 0..UNITS {
        sem().post().unwrap();
    }
    while sem().value() > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    done().set();
    consumers.into_iter().for_each(|c| c.join());
    assert_eq!(taken().load(Ordering::SeqCst), UNITS);
}

fn futex_wakes_another_process() {
    let map = Mapping::anonymous(4096).unwrap();
    let word = || map.shared::<AtomicU32>(0).unwrap();
    let child = fork(|| {
        let w = word();
        let deadline = Deadline::after(Duration::from_secs(20));
        while w.load(Ordering::Acquire) == 0 {
            assert!(futex::wait_until(&w, 0, deadline), "never woken");
        }
    });
    std::thread::sleep(Duration::from_millis(50));
    word().store(1, Ordering::Release);
    futex::wake_all(&word());
    child.join();
}

fn timeouts_fire_within_bounds() {
    let map = Mapping::anonymous(4096).unwrap();
    let locked = || map.shared::<Event>(64).unwrap();
    // A peer that takes the mutex and keeps it.
    let mut holder = fork(|| {
        let _g = map.shared::<Mutex<u32>>(0).unwrap().get().lock().unwrap();
        locked().set();
        std::thread::sleep(Duration::from_secs(60));
    });
    locked().wait_timeout(Duration::from_secs(10)).unwrap();
    let m = map.shared::<Mutex<u32>>(0).unwrap();
    for timeout in [Duration::ZERO, Duration::from_millis(5), Duration::from_millis(150)] {
        let t = Instant::now();
        assert!(matches!(m.lock_timeout(timeout), Err(LockError::Timeout)));
        assert_fired_within(t.elapsed(), timeout, SLACK);
    }
    assert!(matches!(m.try_lock(), Err(LockError::WouldBlock)));
    let e = map.shared::<Event>(128).unwrap();
    let t = Instant::now();
    assert!(matches!(e.wait_timeout(Duration::from_millis(120)), Err(Error::Timeout { .. })));
    assert_fired_within(t.elapsed(), Duration::from_millis(120), SLACK);
    let s = map.shared::<Semaphore>(192).unwrap();
    let deadline = Instant::now() + Duration::from_millis(100);
    assert!(matches!(s.wait_deadline(deadline), Err(Error::Timeout { .. })));
    assert!(Instant::now() >= deadline);
    holder.kill();
    assert_eq!(holder.wait(), Exit::Signaled(Signal::SIGKILL));
}

fn waiter_whose_waker_dies_times_out() {
    let map = Mapping::anonymous(4096).unwrap();
    let mut waker = fork(|| {
        std::thread::sleep(Duration::from_secs(60));
        map.shared::<Event>(0).unwrap().set(); // never reached
    });
    std::thread::sleep(Duration::from_millis(20));
    waker.kill();
    assert_eq!(waker.wait(), Exit::Signaled(Signal::SIGKILL));
    let t = Instant::now();
    let e = map.shared::<Event>(0).unwrap();
    assert!(matches!(e.wait_timeout(Duration::from_millis(200)), Err(Error::Timeout { .. })));
    assert_fired_within(t.elapsed(), Duration::from_millis(200), SLACK);
}

/// The layout of the page in the robust mutex cases.
fn robust(map: &Mapping) -> &RobustMutex<[u64; 2]> {
    map.shared::<RobustMutex<[u64; 2]>>(0).unwrap().get()
}

fn robust_mutex_owner_died_then_repaired() {
    let map = Mapping::anonymous(4096).unwrap();
    let inside = || map.shared::<Event>(1024).unwrap();
    let mut holder = fork(|| {
        let mut g = robust(&map).lock().unwrap();
        g[0] = 1; // half an update: [1, 0] breaks the invariant a == b
        inside().set();
        std::thread::sleep(Duration::from_secs(60));
    });
    inside().wait_timeout(Duration::from_secs(10)).unwrap();
    holder.kill();
    assert_eq!(holder.wait(), Exit::Signaled(Signal::SIGKILL));
    match robust(&map).lock_timeout(Duration::from_secs(10)) {
        Err(LockError::OwnerDied(mut g)) => {
            assert!(!g.is_consistent());
            assert_eq!(*g, [1, 0], "the dead owner's half update is visible");
            g[1] = g[0]; // repair
            g.make_consistent().unwrap();
        }
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    // Repaired: business as usual, also for another process.
    let child = fork(|| {
        let mut g = robust(&map).lock().unwrap();
        assert_eq!(*g, [1, 1]);
        g[0] = 2;
        g[1] = 2;
    });
    child.join();
    assert_eq!(*robust(&map).try_lock().unwrap(), [2, 2]);
}

fn robust_mutex_not_repaired_is_not_recoverable() {
    let map = Mapping::anonymous(4096).unwrap();
    let holder = fork(|| {
        let g = robust(&map).lock().unwrap();
        std::mem::forget(g); // exits holding it
    });
    holder.join();
    match robust(&map).lock() {
        Err(LockError::OwnerDied(g)) => drop(g), // not made consistent
        other => panic!("expected OwnerDied, got {other:?}"),
    }
    assert!(matches!(robust(&map).lock(), Err(LockError::NotRecoverable)));
    let child = fork(|| assert!(matches!(robust(&map).try_lock(), Err(LockError::NotRecoverable))));
    child.join();
    let e = robust(&map).lock_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(e.to_string().contains("not recoverable"), "{e}");
}

fn semaphore_set_undo_after_kill() {
    let set = SemaphoreSet::create(Key::private(), &[1, 5], 0o600).unwrap();
    let id = set.id();
    let map = Mapping::anonymous(4096).unwrap();
    let took = || map.shared::<Event>(0).unwrap();
    let mut holder = fork(|| {
        // Take the lock and three of the five units in one operation.
        set.apply(&[SemOp::wait(0), SemOp::add(1, -3)]).unwrap();
        took().set();
        std::thread::sleep(Duration::from_secs(60));
    });
    took().wait_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!((set.value(0).unwrap(), set.value(1).unwrap()), (0, 2));
    assert!(matches!(set.try_wait(0), Err(Error::WouldBlock { .. })));
    holder.kill();
    assert_eq!(holder.wait(), Exit::Signaled(Signal::SIGKILL));
    assert_eq!((set.value(0).unwrap(), set.value(1).unwrap()), (1, 5), "SEM_UNDO gave everything back");
    set.wait_timeout(0, Duration::from_secs(1)).unwrap();
    drop(set);
    assert!(
        !std::fs::read_to_string("/proc/sysvipc/sem")
            .unwrap()
            .lines()
            .skip(1)
            .any(|l| { l.split_whitespace().nth(1) == Some(&id.to_string()) }),
        "the owner removed the set"
    );
}

fn sysv_sem_by_path(args: &[String]) {
    let key = Key::from_path(&args[0], b's').unwrap();
    let set = SemaphoreSet::open(key).unwrap();
    assert!(!set.is_owner());
    set.apply(&[SemOp::wait(0).no_undo(), SemOp::post(1).no_undo()]).unwrap();
}

fn semaphore_set_by_path_key_in_exec_child() {
    let dir = ScratchDir::new();
    let path = dir.path().join("rendezvous");
    std::fs::write(&path, b"").unwrap();
    let key = Key::from_path(&path, b's').unwrap();
    let set = SemaphoreSet::create(key, &[1, 0], 0o600).unwrap();
    let status = helper_command("sysv-sem-by-path", &[path.to_str().unwrap()]).status().unwrap();
    assert!(status.success(), "helper: {status}");
    assert_eq!((set.value(0).unwrap(), set.value(1).unwrap()), (0, 1), "the helper found the same set");
    assert!(matches!(SemaphoreSet::create(key, &[1], 0o600), Err(Error::AlreadyExists { .. })));
    let other = SemaphoreSet::open_or_create(key, &[9], 0o600).unwrap();
    assert_eq!((other.id(), other.is_owner()), (set.id(), false));
}

fn semaphore_set_removed_while_waiting() {
    let set = SemaphoreSet::create(Key::private(), &[0], 0o600).unwrap();
    let waiter = fork(|| match set.wait_timeout(0, Duration::from_secs(20)) {
        Err(Error::Removed { .. }) => {}
        other => panic!("expected Removed, got {other:?}"),
    });
    std::thread::sleep(Duration::from_millis(100));
    set.remove().unwrap();
    waiter.join();
}

fn named_sem_helper(args: &[String]) {
    let sem = NamedSemaphore::open(&args[0]).unwrap();
    sem.wait_timeout(Duration::from_secs(10)).unwrap();
    sem.post().unwrap();
    sem.post().unwrap();
}

fn named_semaphore_across_exec() {
    let name = format!("/{}", unique_name("ipc-kit-test-sem"));
    let sem = NamedSemaphore::create(&name, 0, 0o600).unwrap();
    let mut child = helper_command("named-sem", &[&name]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    sem.post().unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(sem.value().unwrap(), 2);
    assert!(matches!(NamedSemaphore::create(&name, 0, 0o600), Err(Error::AlreadyExists { .. })));
    drop(sem);
    assert!(matches!(NamedSemaphore::open(&name), Err(Error::NotFound { .. })), "the owner unlinked it");
    for bad in ["no-slash", "/", "/a/b", &format!("/{}", "x".repeat(252))] {
        assert!(matches!(NamedSemaphore::create(bad, 0, 0o600), Err(Error::InvalidArgument { .. })), "{bad}");
    }
}

fn eventfd_wakes_across_fork() {
    let efd = EventFd::new(0, EventFdMode::Semaphore).unwrap();
    let child = fork(|| {
        for _ in 0..3 {
            assert_eq!(efd.read_timeout(Duration::from_secs(10)).unwrap(), 1);
        }
        assert!(matches!(efd.try_read(), Err(Error::WouldBlock { .. })));
    });
    std::thread::sleep(Duration::from_millis(50));
    efd.add(3).unwrap();
    child.join();
    let t = Instant::now();
    assert!(matches!(efd.read_timeout(Duration::from_millis(100)), Err(Error::Timeout { .. })));
    assert_fired_within(t.elapsed(), Duration::from_millis(100), SLACK);
    let counter = EventFd::new(7, EventFdMode::Counter).unwrap();
    assert!(matches!(counter.add(u64::MAX), Err(Error::InvalidArgument { .. })));
    counter.add(ipc_kit::sync::EVENTFD_MAX - 7).unwrap();
    assert!(matches!(counter.try_add(1), Err(Error::WouldBlock { .. })), "the counter is full");
    assert_eq!(counter.read().unwrap(), ipc_kit::sync::EVENTFD_MAX);
}

/// A caller the sets' modes refuse (see [`Refusal`]) gets
/// `PermissionDenied`.
fn permission_denied_for_nobody() {
    let refusal = Refusal::here();
    let key = Key::new(0x1c00_0000 | (std::process::id() as i32 & 0xffff)).unwrap();
    let set = SemaphoreSet::create(key, &[1], 0o600).unwrap();
    refusal.apply_to_sysv(SysvKind::Semaphores, set.id());
    let name = format!("/{}", unique_name("ipc-kit-test-sem"));
    let sem = NamedSemaphore::create(&name, 1, 0o600).unwrap();
    refusal.apply_to_path(&std::path::Path::new("/dev/shm").join(format!("sem.{}", &name[1..])));
    let child = fork(|| {
        refusal.become_caller();
        assert!(matches!(SemaphoreSet::open(key), Err(Error::PermissionDenied { .. })));
        assert!(matches!(NamedSemaphore::open(&name), Err(Error::PermissionDenied { .. })));
    });
    child.join();
    drop((set, sem));
}

/// Forty sets let exactly forty of 48 waiting processes through, however
/// fast they come (here while every waiter is stopped); sets made while
/// nobody waits are kept, one pass each.
fn event_auto_reset_counts_every_set() {
    const WAITERS: u32 = 48;
    const SETS: u32 = 40;
    let map = Mapping::anonymous(4096).unwrap();
    let passed = || map.shared::<AtomicU32>(64).unwrap();
    let e = map.shared::<Event>(0).unwrap();
    for _ in 0..5 {
        e.set();
    }
    let child = fork(|| {
        let e = map.shared::<Event>(0).unwrap();
        for _ in 0..5 {
            e.try_wait_reset().expect("one pass per set");
        }
        assert!(matches!(e.try_wait_reset(), Err(Error::WouldBlock { .. })), "five sets, five passes");
    });
    child.join();
    assert!(!e.is_set());
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| {
            fork(|| {
                let e = map.shared::<Event>(0).unwrap();
                e.wait_reset_timeout(Duration::from_secs(25)).expect("a set for every waiter in the end");
                passed().fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200)); // let them fall asleep
    // The sets come faster than any waiter can run: all of them stopped.
    waiters.iter().for_each(|w| w.signal(Signal::SIGSTOP));
    for w in &waiters {
        wait_stopped(w.pid());
    }
    for _ in 0..SETS {
        e.set();
    }
    waiters.iter().for_each(|w| w.signal(Signal::SIGCONT));
    let t = Instant::now();
    while passed().load(Ordering::SeqCst) < SETS && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(passed().load(Ordering::SeqCst), SETS, "{SETS} sets, {SETS} waiters through");
    assert!(!e.is_set(), "every pass was taken");
    for _ in SETS..WAITERS {
        e.set();
    }
    for mut w in waiters {
        assert_eq!(w.wait_timeout(Duration::from_secs(20)), Some(Exit::Code(0)));
    }
    assert_eq!(passed().load(Ordering::SeqCst), WAITERS);
}

/// Waits (at most 10 s) until process `pid` is stopped.
fn wait_stopped(pid: nix::unistd::Pid) {
    let t = Instant::now();
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
        if state == Some("T") {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "process {pid} never stopped at its failpoint ({state:?})");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// For each primitive of 8 bytes (two `u32` words: the condition word and
/// the waiter count): a peer process that scribbles on them.
fn scribbler(map: &Mapping, offset: usize, cond: impl Fn(&mut Rng) -> u32, until: Instant) -> Forked {
    fork(|| {
        let (word, waiters) = (map.shared::<AtomicU32>(offset).unwrap(), map.shared::<AtomicU32>(offset + 4).unwrap());
        let mut rng = Rng::new(u64::from(std::process::id()));
        while Instant::now() < until {
            word.store(cond(&mut rng), Ordering::SeqCst);
            let n = match rng.below(3) {
                0 => 0,
                1 => u32::MAX,
                _ => rng.next_u64() as u32,
            };
            waiters.store(n, Ordering::SeqCst);
            futex::wake_all(&word);
            if rng.chance(8) {
                std::thread::yield_now();
            }
        }
    })
}

/// Asserts that a forked victim ends well within 5 s.
fn ends_soon(mut victim: Forked, what: &str) {
    match victim.wait_timeout(Duration::from_secs(5)) {
        Some(Exit::Code(0)) => {}
        other => panic!("{what}: the waiter ended with {other:?} (None: still waiting after 5 s)"),
    }
}

/// While a peer keeps the word at the start of `map` zero for 1.5 s and
/// wakes its waiters spuriously, a timed wait (`timed`) and a wait with a
/// deadline (`until`) end with `Timeout` at their bounds, for a zero
/// timeout and for 300 ms.
fn deadlines_hold_under_a_zeroing_peer<A, B>(
    map: &Mapping,
    timed: impl Fn(Duration) -> Result<A, Error>,
    until: impl Fn(Instant) -> Result<B, Error>,
) {
    let peer = scribbler(map, 0, |_| 0, Instant::now() + Duration::from_millis(1500));
    for timeout in [Duration::ZERO, Duration::from_millis(300)] {
        let t = Instant::now();
        assert!(matches!(timed(timeout), Err(Error::Timeout { .. })));
        assert_fired_within(t.elapsed(), timeout, SLACK);
        let t = Instant::now();
        assert!(matches!(until(t + timeout), Err(Error::Timeout { .. })));
        assert_fired_within(t.elapsed(), timeout, SLACK);
    }
    peer.join();
}

/// An `Event` in shared memory against a peer that writes its words: a
/// zeroed waiter count does not strand untimed waits (manual or auto
/// reset) after `set`; timed waits end at their deadline while the peer
/// scribbles; random words never make a call panic.
fn event_hostile_peer_cannot_strand_or_break_waits() {
    let map = Mapping::anonymous(4096).unwrap();
    assert_eq!(size_of::<Event>(), 8);
    let waiters = || map.shared::<AtomicU32>(4).unwrap();
    // Stranding: both kinds of untimed waiters asleep, the count zeroed
    // just before the set.
    let manual = fork(|| map.shared::<Event>(0).unwrap().wait());
    let auto = fork(|| map.shared::<Event>(0).unwrap().wait_reset());
    std::thread::sleep(Duration::from_millis(200));
    waiters().store(0, Ordering::SeqCst);
    let e = map.shared::<Event>(0).unwrap();
    e.set();
    e.set();
    waiters().store(0, Ordering::SeqCst);
    ends_soon(manual, "Event::wait");
    ends_soon(auto, "Event::wait_reset");
    e.reset();
    // Deadlines: the peer keeps the event unset and wakes us spuriously.
    deadlines_hold_under_a_zeroing_peer(&map, |t| e.wait_timeout(t), |d| e.wait_reset_deadline(d));
    // Random words: every call returns.
    let until = Instant::now() + Duration::from_millis(500);
    let peer = scribbler(&map, 0, |rng| rng.next_u64() as u32, until);
    while Instant::now() < until {
        e.set();
        let _ = (e.try_wait(), e.try_wait_reset(), e.is_set(), format!("{e:?}"));
        let _ = e.wait_reset_timeout(Duration::from_millis(1));
        let _ = e.wait_timeout(Duration::from_millis(1));
        e.reset();
    }
    peer.join();
}

/// A `Semaphore` against a peer that writes its words, as for `Event`.
fn semaphore_hostile_peer_cannot_strand_or_break_waits() {
    let map = Mapping::anonymous(4096).unwrap();
    assert_eq!(size_of::<Semaphore>(), 8);
    let waiters = || map.shared::<AtomicU32>(4).unwrap();
    let victims: Vec<_> = (0..2).map(|_| fork(|| map.shared::<Semaphore>(0).unwrap().wait())).collect();
    std::thread::sleep(Duration::from_millis(200));
    let s = map.shared::<Semaphore>(0).unwrap();
    waiters().store(0, Ordering::SeqCst);
    s.post().unwrap();
    waiters().store(0, Ordering::SeqCst);
    s.post().unwrap();
    waiters().store(0, Ordering::SeqCst);
    for v in victims {
        ends_soon(v, "Semaphore::wait");
    }
    assert_eq!(s.value(), 0);
    deadlines_hold_under_a_zeroing_peer(&map, |t| s.wait_timeout(t), |d| s.wait_deadline(d));
    let until = Instant::now() + Duration::from_millis(500);
    let peer = scribbler(&map, 0, |rng| if rng.chance(2) { u32::MAX } else { rng.next_u64() as u32 }, until);
    while Instant::now() < until {
        let _ = s.post();
        let _ = (s.try_wait(), s.value(), format!("{s:?}"));
        let _ = s.wait_timeout(Duration::from_millis(1));
    }
    peer.join();
}

/// A `Condvar` against a peer that writes its words: a zeroed waiter count
/// does not strand an untimed `wait_while` after the notification; a timed
/// wait ends at its deadline while the peer bumps the sequence and wakes
/// it; random words never make a call panic.
fn condvar_hostile_peer_cannot_strand_or_break_waits() {
    const CV: usize = 64;
    let map = Mapping::anonymous(4096).unwrap();
    assert_eq!(size_of::<Condvar>(), 8);
    let m = || map.shared::<Mutex<u32>>(0).unwrap().get();
    let cv = || map.shared::<Condvar>(CV).unwrap().get();
    let waiters = || map.shared::<AtomicU32>(CV + 4).unwrap();
    let victims: Vec<_> = (0..2)
        .map(|_| {
            fork(|| {
                let (m, cv) = (m(), cv());
                let g = cv.wait_while(m.lock().unwrap(), |v| *v == 0).unwrap();
                assert_eq!(*g, 1);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    *m().lock().unwrap() = 1;
    waiters().store(0, Ordering::SeqCst);
    cv().notify_all();
    for v in victims {
        ends_soon(v, "Condvar::wait_while");
    }
    let until = Instant::now() + Duration::from_millis(1500);
    let peer = scribbler(&map, CV, |rng| rng.next_u64() as u32, until);
    for timeout in [Duration::ZERO, Duration::from_millis(300)] {
        let t = Instant::now();
        let (g, r) = cv().wait_timeout_while(m().lock().unwrap(), timeout, |v| *v == 1).unwrap();
        assert!(r.timed_out());
        drop(g);
        assert_fired_within(t.elapsed(), timeout, SLACK);
    }
    peer.join();
    let until = Instant::now() + Duration::from_millis(500);
    let peer = scribbler(&map, CV, |rng| rng.next_u64() as u32, until);
    while Instant::now() < until {
        cv().notify_one();
        cv().notify_all();
        let _ = format!("{:?}", cv());
        let (g, _) = cv().wait_timeout(m().lock().unwrap(), Duration::from_millis(1)).unwrap();
        drop(g);
    }
    peer.join();
}

/// CPU time this process has used so far.
fn cpu_time() -> Duration {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID).unwrap();
    Duration::from(ts)
}

/// Asserts that a wait of `wall` used less than a fifth of it in CPU.
fn slept(cpu: Duration, wall: Duration, what: &str) {
    assert!(cpu < wall / 5, "{what}: {cpu:?} of CPU in a wait of {wall:?}");
}

/// `EventFd::add` of more than the counter has room for sleeps until a
/// reader makes room (POLLOUT means room for 1 only), in all three
/// forms; a zero timeout tries once.
fn eventfd_add_sleeps_while_the_counter_has_no_room() {
    use ipc_kit::sync::EVENTFD_MAX;
    let efd = EventFd::new(0, EventFdMode::Counter).unwrap();
    efd.add(EVENTFD_MAX - 5).unwrap();
    // A zero timeout tries once: it fits, or it does not.
    efd.add_timeout(1, Duration::ZERO).unwrap();
    assert!(matches!(efd.add_timeout(10, Duration::ZERO), Err(Error::Timeout { .. })));
    assert!(matches!(efd.add_deadline(10, Instant::now()), Err(Error::Timeout { .. })));
    // Room for 4, not for 10: the timed form sleeps to its deadline.
    let (cpu, t) = (cpu_time(), Instant::now());
    assert!(matches!(efd.add_timeout(10, Duration::from_millis(500)), Err(Error::Timeout { .. })));
    let (cpu, wall) = (cpu_time() - cpu, t.elapsed());
    assert_fired_within(wall, Duration::from_millis(500), SLACK);
    slept(cpu, wall, "add_timeout");
    // The untimed form sleeps until a reader in another process makes
    // room.
    let reader = fork(|| {
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(efd.read().unwrap(), EVENTFD_MAX - 4, "nothing was added before there was room");
    });
    let (cpu, t) = (cpu_time(), Instant::now());
    efd.add(10).unwrap();
    let (cpu, wall) = (cpu_time() - cpu, t.elapsed());
    reader.join();
    slept(cpu, wall, "add");
    assert_eq!(efd.try_read().unwrap(), 10);
    // Semaphore mode: each read takes 1 and makes room for 1 more, which
    // wakes the waiting adder; it sleeps again until there is room for 5.
    let sem = EventFd::new(0, EventFdMode::Semaphore).unwrap();
    sem.add(EVENTFD_MAX - 2).unwrap();
    let reader = fork(|| {
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(150));
            assert_eq!(sem.read().unwrap(), 1);
        }
    });
    let (cpu, t) = (cpu_time(), Instant::now());
    sem.add_deadline(5, Instant::now() + Duration::from_secs(10)).unwrap();
    let (cpu, wall) = (cpu_time() - cpu, t.elapsed());
    reader.join();
    slept(cpu, wall, "add_deadline");
    assert!(matches!(sem.try_add(1), Err(Error::WouldBlock { .. })), "full again");
}

/// A zero or past timeout tries the operation once: it succeeds when the
/// operation would, and is `Timeout` only when it would block.
fn semaphore_set_zero_and_past_timeouts_try_once() {
    let set = SemaphoreSet::create(Key::private(), &[1, 0], 0o600).unwrap();
    let child = fork(|| {
        set.wait_timeout(0, Duration::ZERO).expect("the unit is there: a zero timeout takes it");
        assert!(matches!(set.wait_timeout(0, Duration::ZERO), Err(Error::Timeout { .. })));
        set.apply_timeout(&[SemOp::post(0), SemOp::post(1).no_undo()], Duration::ZERO).unwrap();
        set.apply_deadline(&[SemOp::wait(1).no_undo()], Instant::now()).expect("a deadline of now tries once");
        let past = Instant::now().checked_sub(Duration::from_secs(1)).unwrap_or_else(Instant::now);
        let blocked = set.apply_deadline(&[SemOp::post(1).no_undo(), SemOp::add(0, 0).no_undo()], past);
        assert!(matches!(blocked, Err(Error::Timeout { .. })), "{blocked:?}");
        set.apply_deadline(&[SemOp::wait(0), SemOp::post(1).no_undo()], past).expect("a past deadline tries once");
        assert!(matches!(set.apply_deadline(&[SemOp::wait(0)], past), Err(Error::Timeout { .. })));
        assert!(matches!(set.apply_timeout(&[SemOp::add(1, -2)], Duration::ZERO), Err(Error::Timeout { .. })));
        assert!(matches!(set.apply_timeout(&[SemOp::add(1, 0)], Duration::ZERO), Err(Error::Timeout { .. })));
        set.apply_timeout(&[SemOp::add(1, -1).no_undo(), SemOp::add(1, 0)], Duration::ZERO).expect("to zero");
    });
    child.join();
    // SEM_UNDO gave the child's unit of semaphore 0 back when it exited.
    assert_eq!((set.value(0).unwrap(), set.value(1).unwrap()), (1, 0));
}

/// A key for one step of a System V case.
fn sem_key(case: i32, step: i32) -> Key {
    Key::new(0x1e40_0000 | (case << 20) | (step << 16) | (std::process::id() as i32 & 0xffff)).unwrap()
}

/// Removes every semaphore set under `key` when dropped, whatever state a
/// failed case left it in.
struct SetsUnder(Key);

impl Drop for SetsUnder {
    fn drop(&mut self) {
        let table = std::fs::read_to_string("/proc/sysvipc/sem").unwrap_or_default();
        for line in table.lines().skip(1) {
            let mut cols = line.split_whitespace();
            let (Some(key), Some(id)) = (cols.next(), cols.next()) else { continue };
            if key.parse::<i32>().ok() == Some(self.0.raw()) {
                let _ = SemaphoreSet::remove_id(id.parse().unwrap_or(-1));
            }
        }
    }
}

/// Takes the binary semaphore 0 of `set` a few times, holding it `hold`
/// each time, and counts the holders in `inside`: never more than one.
fn hold_binary(set: &SemaphoreSet, inside: &AtomicU32, hold: Duration) {
    for _ in 0..4 {
        set.wait_timeout(0, Duration::from_secs(10)).expect("take the binary semaphore");
        let was = inside.fetch_add(1, Ordering::SeqCst);
        assert_eq!(was, 0, "two processes hold the binary semaphore");
        std::thread::sleep(hold);
        inside.fetch_sub(1, Ordering::SeqCst);
        set.post(0).unwrap();
    }
}

/// A creator stopped 1.5 s inside `SemaphoreSet::create` (a failpoint that
/// stops it) while another process calls `open_or_create`. Once the
/// creator has claimed the making of the set, the opener waits for it and
/// never takes the set over: one initialization, one owner, the binary
/// semaphore never held twice, and the set outlives the opener's use. A
/// creator stopped before it claimed the making (right after `semget`) has
/// its set made by the opener instead: its own `create` then says
/// `AlreadyExists`, and it never removes the set.
fn semaphore_set_slow_creator_is_never_taken_over() {
    let map = Mapping::anonymous(4096).unwrap();
    let inside = || map.shared::<AtomicU32>(0).unwrap();
    let continued = || map.shared::<AtomicU32>(4).unwrap();
    let (opener_done, creator_done) = (|| map.shared::<Event>(64).unwrap(), || map.shared::<Event>(128).unwrap());
    for (step, (point, preempted)) in
        [("sysv-sem:created", true), ("sysv-sem:claimed", false), ("sysv-sem:valued", false)].into_iter().enumerate()
    {
        let key = sem_key(1, step as i32);
        let _cleanup = SetsUnder(key);
        continued().store(0, Ordering::SeqCst);
        opener_done().reset();
        creator_done().reset();
        let creator = fork(|| {
            ipc_kit::sync::failpoint::arm_stop(point);
            let set = match SemaphoreSet::create(key, &[1], 0o600) {
                Ok(set) => {
                    assert!(!preempted, "{point}: create succeeded after the opener made the set");
                    assert!(set.is_owner());
                    set
                }
                Err(Error::AlreadyExists { .. }) if preempted => {
                    let set = SemaphoreSet::open(key).expect("open the set the opener made");
                    assert!(!set.is_owner());
                    set
                }
                Err(e) => panic!("{point}: create: {e}"),
            };
            hold_binary(&set, &inside(), Duration::from_millis(50));
            creator_done().set();
            opener_done().wait_timeout(Duration::from_secs(20)).unwrap();
            drop(set);
        });
        wait_stopped(creator.pid());
        let opener = fork(|| {
            let set = SemaphoreSet::open_or_create(key, &[1], 0o600).expect("open_or_create");
            if !preempted {
                assert_eq!(continued().load(Ordering::SeqCst), 1, "{point}: took the set over from a stopped creator");
            }
            hold_binary(&set, &inside(), Duration::from_millis(200));
            assert_eq!(set.is_owner(), preempted, "{point}: the opener owns the set only if it made it");
            creator_done().wait_timeout(Duration::from_secs(20)).unwrap();
            assert_eq!(set.value(0).unwrap(), 1, "{point}: the unit is back");
            opener_done().set();
            drop(set);
        });
        std::thread::sleep(Duration::from_millis(1500));
        continued().store(1, Ordering::SeqCst);
        creator.signal(Signal::SIGCONT);
        let (mut creator, mut opener) = (creator, opener);
        assert_eq!(creator.wait_timeout(Duration::from_secs(20)), Some(Exit::Code(0)), "{point}: creator");
        assert_eq!(opener.wait_timeout(Duration::from_secs(20)), Some(Exit::Code(0)), "{point}: opener");
        assert!(matches!(SemaphoreSet::open(key), Err(Error::NotFound { .. })), "{point}: its owner removed it");
    }
}

/// A creator killed at each step of making a set (failpoints): a plain
/// `open` finds no finished set at once, and `open_or_create` finishes
/// making it at once (the kernel's undo of the dead creator's claim is the
/// proof that it is gone), owning it.
fn semaphore_set_creator_killed_at_each_step() {
    for (step, point) in ["sysv-sem:created", "sysv-sem:claimed", "sysv-sem:valued"].into_iter().enumerate() {
        let key = sem_key(2, step as i32);
        let _cleanup = SetsUnder(key);
        let mut creator = fork(|| {
            ipc_kit::sync::failpoint::arm(point);
            let _ = SemaphoreSet::create(key, &[2, 3], 0o600);
            panic!("{point}: the failpoint did not kill the creator");
        });
        assert_eq!(creator.wait(), Exit::Signaled(Signal::SIGKILL), "{point}");
        let t = Instant::now();
        assert!(matches!(SemaphoreSet::open(key), Err(Error::NotFound { .. })), "{point}: open");
        assert!(
            matches!(SemaphoreSet::open_or_create(key, &[2, 2, 2], 0o600), Err(Error::InvalidArgument { .. })),
            "{point}: another size"
        );
        let opener = fork(|| {
            let set = SemaphoreSet::open_or_create(key, &[2, 3], 0o600).unwrap();
            assert!(set.is_owner(), "{point}: the process that finished making it owns it");
            assert_eq!((set.value(0).unwrap(), set.value(1).unwrap()), (2, 3));
            let other = SemaphoreSet::open(key).unwrap();
            assert!(!other.is_owner());
            assert_eq!(other.len(), 2);
            drop(set);
            assert!(matches!(SemaphoreSet::open(key), Err(Error::NotFound { .. })), "{point}: its owner removed it");
        });
        opener.join();
        assert!(t.elapsed() < Duration::from_secs(5), "{point}: took {:?}", t.elapsed());
    }
}

/// A child forked after this process made a semaphore set and a named
/// semaphore drops its copies of both handles, each the owner's as
/// inherited: only the process that made an object removes it, so both
/// stay, usable, until their maker drops its own.
fn forked_child_dropping_inherited_owner_handles_removes_nothing() {
    use std::cell::RefCell;
    let key = sem_key(3, 0);
    let _cleanup = SetsUnder(key);
    let name = format!("/{}", unique_name("ipc-kit-test-sem"));
    let set = RefCell::new(Some(SemaphoreSet::create(key, &[1], 0o600).unwrap()));
    let sem = RefCell::new(Some(NamedSemaphore::create(&name, 0, 0o600).unwrap()));
    let child = fork(|| {
        let (s, n) = (set.borrow_mut().take().unwrap(), sem.borrow_mut().take().unwrap());
        assert!(!s.is_owner() && !n.is_owner(), "a forked copy of the maker's handle owns nothing");
        drop((s, n));
    });
    child.join();
    let other = SemaphoreSet::open(key).expect("the child's drop removed the maker's set");
    other.post(0).unwrap();
    assert_eq!(set.borrow().as_ref().unwrap().value(0).unwrap(), 2);
    NamedSemaphore::open(&name).expect("the child's drop unlinked the maker's semaphore").post().unwrap();
    assert_eq!(sem.borrow().as_ref().unwrap().value().unwrap(), 1);
    drop((set.borrow_mut().take(), sem.borrow_mut().take()));
    assert!(matches!(other.value(0), Err(Error::Removed { .. })), "the maker removed its set");
    assert!(matches!(NamedSemaphore::open(&name), Err(Error::NotFound { .. })), "the maker unlinked its semaphore");
}
