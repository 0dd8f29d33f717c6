//! `Mutex` and `RobustMutex` against dying, hostile and foreign peers:
//! holders killed while holding (also as pid 1 of another PID namespace),
//! peers that rewrite the lock and its robust-list links, stalled
//! initializers, glibc robust mutexes in the same thread's robust list.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipc_kit::shm::Mapping;
use ipc_kit::sync::{Condvar, Event, LockError, Mutex, RobustMutex};
use ipc_kit_tests::{Exit, Rng, become_nobody, cases, fork};
use nix::sys::signal::Signal;

cases!("locks":
    robust_mutex_fresh_and_held_by_a_stalled_peer_honours_deadlines,
    mutex_holder_killed_waiter_gets_owner_died,
    robust_mutex_holder_killed_waiter_gets_owner_died,
    holder_in_new_pid_namespace_live_then_killed,
    peer_rewriting_link_words_cannot_redirect_our_writes,
    hostile_writer_on_mutex_never_corrupts_and_waits_end,
    hostile_writer_on_robust_mutex_never_corrupts_and_waits_end,
    holder_killed_as_nobody_is_reported,
    glibc_robust_mutex_beside_ours_in_one_list,
    condvar_waiter_learns_that_a_holder_died,
    out_of_order_unlocks_leave_nothing_behind_and_death_marks_exactly_the_held,
    ours_released_under_a_glibc_robust_mutex_may_be_freed_at_once,
    a_mutex_at_the_address_of_a_leaked_and_freed_one_locks_and_is_reported,
);

/// How long a wait that must end may take, at most.
const BOUND: Duration = Duration::from_secs(5);

/// Where the events of a case live, past the mutexes.
const EVENTS: usize = 3072;

fn event(map: &Mapping, i: usize) -> &Event {
    map.shared::<Event>(EVENTS + 64 * i).unwrap().get()
}

/// The first lock of a never-used (zero-filled) robust mutex whose lock
/// word a live, stalled peer left non-zero (before: the lazily
/// initializing first lock waited for that peer without a deadline, so
/// `try_lock` and `lock_timeout` never returned).
fn robust_mutex_fresh_and_held_by_a_stalled_peer_honours_deadlines() {
    let map = Mapping::anonymous(4096).unwrap();
    let stalled = fork(|| std::thread::sleep(Duration::from_secs(60)));
    let pid = u32::try_from(stalled.pid().as_raw()).unwrap();
    // The peer's pid in the first word: a half-done initialization before,
    // a lock held by that id now; with the waiters bit too.
    for (offset, word) in [(0, pid), (512, pid | 0x8000_0000)] {
        map.write::<u32>(offset, &word).unwrap();
        let mut attempt = fork(|| {
            let m = map.shared::<RobustMutex<u64>>(offset).unwrap().get();
            assert!(matches!(m.try_lock(), Err(LockError::WouldBlock)));
            let t = Instant::now();
            assert!(matches!(m.lock_timeout(Duration::ZERO), Err(LockError::Timeout)));
            assert!(matches!(m.lock_deadline(Instant::now() - Duration::from_secs(1)), Err(LockError::Timeout)));
            assert!(t.elapsed() < BOUND);
            let t = Instant::now();
            assert!(matches!(m.lock_timeout(Duration::from_millis(200)), Err(LockError::Timeout)));
            ipc_kit_tests::assert_fired_within(t.elapsed(), Duration::from_millis(200), Duration::from_secs(2));
        });
        match attempt.wait_timeout(BOUND + BOUND) {
            Some(Exit::Code(0)) => {}
            other => panic!("the locks on a fresh, held robust mutex ended with {other:?} (None: still waiting)"),
        }
    }
    // The same for the plain mutex.
    map.write::<u32>(1024, &pid).unwrap();
    let m = map.shared::<Mutex<u64>>(1024).unwrap().get();
    assert!(matches!(m.try_lock(), Err(LockError::WouldBlock)));
    assert!(matches!(m.lock_timeout(Duration::ZERO), Err(LockError::Timeout)));
}

/// Kills `holder` once the caller waits, and measures from the kill.
fn kill_while_waiting(
    holder: ipc_kit_tests::Forked,
) -> (std::thread::JoinHandle<Exit>, std::sync::mpsc::Receiver<Instant>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut holder = holder;
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100)); // the waiter sleeps in the kernel by now
        let _ = tx.send(Instant::now());
        holder.kill();
        holder.wait()
    });
    (killer, rx)
}

/// A child locks with `lock` and writes half an update (`[1, 0]`)
/// through the guard; once it holds the lock, it is killed while this
/// process waits with `wait` (as [`kill_while_waiting`] does). Returns
/// what the wait gave. An `OwnerDied` must come within [`BOUND`] of the
/// kill (its delay is printed, for `what`), and the child must have died
/// of the SIGKILL.
fn killed_mid_update<G: std::ops::DerefMut<Target = [u64; 2]>>(
    what: &str,
    map: &Mapping,
    lock: impl FnOnce() -> G,
    wait: impl FnOnce() -> Result<G, LockError<G>>,
) -> Result<G, LockError<G>> {
    let holder = fork(|| {
        let mut g = lock();
        g[0] = 1; // half an update
        event(map, 0).set();
        std::thread::sleep(Duration::from_secs(60));
    });
    event(map, 0).wait_timeout(BOUND).unwrap();
    let (killer, killed_at) = kill_while_waiting(holder);
    let got = wait();
    if let Err(LockError::OwnerDied(_)) = &got {
        let after = killed_at.recv().unwrap().elapsed();
        println!("{what}: OwnerDied {after:?} after the holder's SIGKILL");
        assert!(after < BOUND, "{after:?}");
    }
    assert_eq!(killer.join().unwrap(), Exit::Signaled(Signal::SIGKILL));
    got
}

/// Before: the plain mutex stayed locked for good; a waiter got only
/// `Timeout`. Now: `OwnerDied` with the guard, at once.
fn mutex_holder_killed_waiter_gets_owner_died() {
    let map = Mapping::anonymous(4096).unwrap();
    let m = || map.shared::<Mutex<[u64; 2]>>(0).unwrap().get();
    match killed_mid_update("Mutex", &map, || m().lock().unwrap(), || m().lock_timeout(Duration::from_secs(20))) {
        Err(LockError::OwnerDied(mut g)) => {
            assert_eq!(*g, [1, 0], "the dead holder's half update");
            g[1] = 1;
        }
        Err(LockError::Timeout) => panic!("the dead holder's lock was never released"),
        Err(e) => panic!("expected OwnerDied, got {e:?}"),
        Ok(g) => panic!("a clean lock after the holder's death: {:?}", *g),
    }
    // Reported once: then as good as new.
    assert_eq!(*m().try_lock().unwrap(), [1, 1]);
}

/// As above for the robust mutex, whose death detection no longer rests
/// on glibc's links in shared memory.
fn robust_mutex_holder_killed_waiter_gets_owner_died() {
    let map = Mapping::anonymous(4096).unwrap();
    let m = || map.shared::<RobustMutex<[u64; 2]>>(0).unwrap().get();
    let timed = || m().lock_timeout(Duration::from_secs(20));
    match killed_mid_update("RobustMutex", &map, || m().lock().unwrap(), timed) {
        Err(LockError::OwnerDied(mut g)) => {
            assert_eq!(*g, [1, 0]);
            g[1] = 1;
            g.make_consistent().unwrap();
        }
        other => panic!("expected OwnerDied, got {:?}", other.map(|g| *g)),
    }
    let child = fork(|| assert_eq!(*m().lock_timeout(BOUND).unwrap(), [1, 1]));
    child.join();
}

/// A holder that is pid 1 of a new PID namespace: alive, it is not taken
/// for dead (its id means nothing here); SIGKILLed, its death is reported
/// (the kernel matches its id in its own namespace).
fn holder_in_new_pid_namespace_live_then_killed() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: unshare(CLONE_NEWPID) needs root");
        return;
    }
    let map = Mapping::anonymous(4096).unwrap();
    let m = || map.shared::<Mutex<u32>>(0).unwrap().get();
    let r = || map.shared::<RobustMutex<u32>>(512).unwrap().get();
    let pid1 = || map.shared::<AtomicU32>(1024).unwrap().get();
    let outer = fork(|| {
        sys::unshare_pid_namespace();
        let mut inner = fork(|| {
            pid1().store(std::process::id(), Ordering::Relaxed);
            let _g = m().lock().unwrap();
            let _r = r().lock().unwrap();
            event(&map, 0).set();
            std::thread::sleep(Duration::from_secs(60));
        });
        event(&map, 1).wait_timeout(Duration::from_secs(20)).unwrap();
        inner.kill();
        assert_eq!(inner.wait(), Exit::Signaled(Signal::SIGKILL));
    });
    event(&map, 0).wait_timeout(BOUND).unwrap();
    assert_eq!(pid1().load(Ordering::Relaxed), 1, "the holder is pid 1 of its namespace");
    // Alive: held, not dead, for as long as we wait.
    assert!(matches!(m().lock_timeout(Duration::from_millis(300)), Err(LockError::Timeout)));
    assert!(matches!(r().lock_timeout(Duration::from_millis(300)), Err(LockError::Timeout)));
    let child = fork(|| assert!(matches!(m().lock_timeout(Duration::from_millis(300)), Err(LockError::Timeout))));
    child.join();
    let killed_at = Instant::now();
    event(&map, 1).set();
    match m().lock_timeout(Duration::from_secs(20)) {
        Err(LockError::OwnerDied(_)) => println!("Mutex: pid 1 holder's death seen after {:?}", killed_at.elapsed()),
        other => panic!("expected OwnerDied, got {:?}", other.map(|g| *g)),
    }
    match r().lock_timeout(Duration::from_secs(20)) {
        Err(LockError::OwnerDied(mut g)) => g.make_consistent().unwrap(),
        other => panic!("expected OwnerDied, got {:?}", other.map(|g| *g)),
    }
    assert!(killed_at.elapsed() < BOUND + BOUND);
    outer.join();
}

/// A private page of known bytes; the address a peer plants in our links.
struct Canary(Box<[u64; 512]>);

impl Canary {
    const PATTERN: u64 = 0x5a5a_0123_4567_a5a5;

    fn new() -> Canary {
        Canary(Box::new([Self::PATTERN; 512]))
    }

    /// An address in the middle of the page, so that writes a little
    /// before or after it land in the page too.
    fn addr(&self) -> u64 {
        self.0.as_ptr() as u64 + 2048
    }

    fn assert_intact(&self, what: &str) {
        let changed: Vec<usize> = (0..512).filter(|&i| std::hint::black_box(self.0[i]) != Self::PATTERN).collect();
        assert!(changed.is_empty(), "{what}: the canary page changed at words {changed:?}");
    }
}

/// Before: our unlock (glibc's) wrote through the robust-list links in
/// the shared mutex, so a peer that pointed them at our memory made us
/// write there. Now the links are never read by us.
fn peer_rewriting_link_words_cannot_redirect_our_writes() {
    let map = Mapping::anonymous(4096).unwrap();
    let canary = Canary::new();
    let target = canary.addr();
    let header = size_of::<RobustMutex<u64>>() - size_of::<u64>();
    let (locked, scribbled) = (|| event(&map, 0), || event(&map, 1));
    // One round per 8-byte word of the header, each on a fresh mutex:
    // held, the peer rewrites that word, we unlock (robust mutex: at
    // 64 * word; plain mutex: 1536 + 64 * word).
    for word in 0..header / 8 {
        for base in [0, 1536] {
            let at = base + 64 * word;
            let peer = fork(|| {
                locked().wait_timeout(BOUND).unwrap();
                map.write::<u64>(at + 8 * word, &target).unwrap();
                scribbled().set();
            });
            if base == 0 {
                let m = map.shared::<RobustMutex<u64>>(at).unwrap().get();
                unlock_once_rewritten(m.lock().unwrap(), locked(), scribbled());
                let _ = m.lock_timeout(Duration::from_millis(50));
            } else {
                let m = map.shared::<Mutex<u64>>(at).unwrap().get();
                unlock_once_rewritten(m.lock().unwrap(), locked(), scribbled());
                let _ = m.lock_timeout(Duration::from_millis(50));
            }
            peer.join();
            canary.assert_intact(&format!(
                "header word {word} of the {} mutex",
                if base == 0 { "robust" } else { "plain" }
            ));
        }
    }
    // Two held at once, both rewritten, released oldest first (the newer
    // one's link is then rewritten by us, from what we know).
    for _ in 0..20 {
        let a = map.shared::<Mutex<u64>>(2048).unwrap();
        let b = map.shared::<RobustMutex<u64>>(2560).unwrap();
        let ga = a.lock().unwrap();
        let gb = b.lock().unwrap();
        for w in 0..5 {
            map.write::<u64>(2048 + 8 * w, &target).unwrap();
            map.write::<u64>(2560 + 8 * w, &target).unwrap();
        }
        drop(ga);
        drop(gb);
        canary.assert_intact("two held locks, both rewritten");
        map.write_bytes(2048, &[0; 1024]).unwrap();
    }
}

/// Holds `guard` while a peer rewrites a word of its mutex: says
/// `locked`, waits for `scribbled`, then unlocks.
fn unlock_once_rewritten<G>(guard: G, locked: &Event, scribbled: &Event) {
    locked.set();
    scribbled.wait_timeout(BOUND).unwrap();
    drop(guard);
}

/// A peer writes random values (and pointers into our memory) into the
/// lock word and link words of `offset` for `for_how_long`.
fn scribble(map: &Mapping, offset: usize, words: usize, target: u64, for_how_long: Duration) -> ipc_kit_tests::Forked {
    let map: &Mapping = map;
    fork(move || {
        let mut rng = Rng::new(u64::from(std::process::id()));
        let end = Instant::now() + for_how_long;
        while Instant::now() < end {
            let w = rng.below(words as u64) as usize;
            let v = match rng.below(6) {
                0 => 0,
                1 => target,
                2 => rng.next_u64() & 0xc000_0000,
                3 => u64::from(std::process::id()),
                _ => rng.next_u64(),
            };
            map.write::<u64>(offset + 8 * w, &v).unwrap();
            if rng.chance(4) {
                std::thread::yield_now();
            }
        }
    })
}

/// The lock calls a victim makes while a peer scribbles: every one ends
/// (the timed ones by their deadline), none crashes or writes elsewhere.
fn survive_scribbler<G>(
    mut lock: impl FnMut(Option<Duration>) -> Result<G, LockError<G>>,
    canary: &Canary,
) -> [u32; 4] {
    let mut outcomes = [0u32; 4]; // ok, owner died, timeout or would block, other
    let end = Instant::now() + Duration::from_millis(600);
    let mut rng = Rng::new(7);
    while Instant::now() < end {
        let timeout = match rng.below(3) {
            0 => None,
            1 => Some(Duration::ZERO),
            _ => Some(Duration::from_millis(rng.below(5))),
        };
        let t = Instant::now();
        let r = lock(timeout);
        assert!(
            t.elapsed() < timeout.unwrap_or_default() + Duration::from_secs(1),
            "a wait overran: {:?}",
            t.elapsed()
        );
        match r {
            Ok(g) => {
                outcomes[0] += 1;
                drop(g);
            }
            Err(LockError::OwnerDied(g)) => {
                outcomes[1] += 1;
                drop(g);
            }
            Err(LockError::Timeout | LockError::WouldBlock) => outcomes[2] += 1,
            Err(_) => outcomes[3] += 1,
        }
    }
    canary.assert_intact("after the scribbler");
    outcomes
}

/// A peer scribbles on the lock at the start of `map` while this process
/// locks it with `lock` (`None`: `try_lock`; `Some(t)`: `lock_timeout(t)`),
/// as [`survive_scribbler`] checks. What is left then is a state like any
/// other: a zeroed one is free again. `what` names the lock in the tally.
fn scribbled_lock_survives<G>(
    what: &str,
    map: &Mapping,
    mut lock: impl FnMut(Option<Duration>) -> Result<G, LockError<G>>,
) {
    let canary = Canary::new();
    let peer = scribble(map, 0, 5, canary.addr(), Duration::from_millis(800));
    let outcomes = survive_scribbler(&mut lock, &canary);
    println!("{what} under a scribbler: [ok, owner died, timeout/would block, other] = {outcomes:?}");
    peer.join();
    map.write_bytes(0, &[0; 40]).unwrap();
    drop(lock(Some(BOUND)).unwrap());
}

fn hostile_writer_on_mutex_never_corrupts_and_waits_end() {
    let map = Mapping::anonymous(4096).unwrap();
    let m = map.shared::<Mutex<u64>>(0).unwrap().get();
    scribbled_lock_survives("Mutex", &map, |t| t.map_or_else(|| m.try_lock(), |t| m.lock_timeout(t)));
}

fn hostile_writer_on_robust_mutex_never_corrupts_and_waits_end() {
    let map = Mapping::anonymous(4096).unwrap();
    let m = map.shared::<RobustMutex<u64>>(0).unwrap().get();
    scribbled_lock_survives("RobustMutex", &map, |t| t.map_or_else(|| m.try_lock(), |t| m.lock_timeout(t)));
}

/// The robust list needs no privilege: as nobody, a killed holder is
/// reported to a waiter of either kind.
fn holder_killed_as_nobody_is_reported() {
    let map = Mapping::anonymous(4096).unwrap();
    let case = fork(|| {
        become_nobody();
        let holder = fork(|| {
            let _g = map.shared::<Mutex<u32>>(0).unwrap().get().lock().unwrap();
            let _r = map.shared::<RobustMutex<u32>>(512).unwrap().get().lock().unwrap();
            event(&map, 0).set();
            std::thread::sleep(Duration::from_secs(60));
        });
        event(&map, 0).wait_timeout(BOUND).unwrap();
        let (killer, _) = kill_while_waiting(holder);
        assert!(matches!(map.shared::<Mutex<u32>>(0).unwrap().lock_timeout(BOUND), Err(LockError::OwnerDied(_))));
        assert!(matches!(
            map.shared::<RobustMutex<u32>>(512).unwrap().lock_timeout(BOUND),
            Err(LockError::OwnerDied(_))
        ));
        assert_eq!(killer.join().unwrap(), Exit::Signaled(Signal::SIGKILL));
    });
    case.join();
}

/// glibc's robust mutexes share the thread's robust list with ours:
/// nested use works and both deaths are reported; a glibc mutex in front
/// of ours makes our lock refuse, changing nothing; one released after
/// ours (out of order) leaves the list consistent.
fn glibc_robust_mutex_beside_ours_in_one_list() {
    let map = Mapping::anonymous(4096).unwrap();
    let m = |i: usize| map.shared::<Mutex<u32>>(64 * i).unwrap().get();
    let g = || sys::PthreadRobust::at(&map, 2048);
    g().init();
    // Nested: ours, glibc's, glibc's released, ours released.
    for _ in 0..3 {
        let a = m(0).lock().unwrap();
        g().lock().unwrap();
        g().unlock();
        drop(a);
    }
    // glibc's in front of ours: refused, nothing changed.
    g().lock().unwrap();
    assert!(matches!(m(0).lock(), Err(LockError::RobustListBusy)));
    assert!(matches!(m(0).try_lock(), Err(LockError::RobustListBusy)));
    g().unlock();
    drop(m(0).try_lock().unwrap());
    // Out of order: ours, glibc's, ours released first (it leaves the list
    // at once), glibc's released. Another process can take ours
    // meanwhile; ours works after.
    let a = m(0).lock().unwrap();
    g().lock().unwrap();
    drop(a);
    let child = fork(|| drop(m(0).try_lock().unwrap()));
    child.join();
    g().unlock();
    drop(m(0).lock().unwrap());
    drop(m(1).lock().unwrap());
    // Both deaths reported: a holder killed holding ours and glibc's, after
    // an out-of-order round, in nested order.
    let holder = fork(|| {
        let a = m(0).lock().unwrap();
        g().lock().unwrap();
        drop(a);
        g().unlock();
        let _b = m(1).lock().unwrap();
        let _c = m(2).lock().unwrap();
        g().lock().unwrap(); // in front of ours in the list
        assert!(matches!(m(3).lock(), Err(LockError::RobustListBusy)));
        event(&map, 0).set();
        std::thread::sleep(Duration::from_secs(60));
    });
    event(&map, 0).wait_timeout(BOUND).unwrap();
    let (killer, _) = kill_while_waiting(holder);
    assert!(matches!(m(2).lock_timeout(BOUND), Err(LockError::OwnerDied(_))));
    assert!(matches!(m(1).lock_timeout(BOUND), Err(LockError::OwnerDied(_))));
    assert_eq!(g().lock(), Err(libc::EOWNERDEAD));
    g().consistent();
    g().unlock();
    assert_eq!(killer.join().unwrap(), Exit::Signaled(Signal::SIGKILL));
    drop(m(0).try_lock().unwrap());
}

/// The raw calls of these cases: a glibc robust pthread mutex and a new
/// PID namespace.
mod sys {
    #![allow(unsafe_code)]

    use ipc_kit::shm::Mapping;

    /// `unshare(CLONE_NEWPID)`: the caller's next child is pid 1 of a new
    /// namespace.
    pub(super) fn unshare_pid_namespace() {
        // SAFETY: unshare takes flags and changes only the namespace of
        // this process's future children.
        let r = unsafe { libc::unshare(libc::CLONE_NEWPID) };
        assert_eq!(r, 0, "unshare(CLONE_NEWPID): {}", std::io::Error::last_os_error());
    }

    /// A process-shared robust pthread mutex at an offset of a mapping.
    pub(super) struct PthreadRobust(*mut libc::pthread_mutex_t);

    impl PthreadRobust {
        pub(super) fn at(map: &Mapping, offset: usize) -> PthreadRobust {
            assert!(offset + size_of::<libc::pthread_mutex_t>() <= map.len());
            PthreadRobust(map.as_ptr().wrapping_add(offset).cast())
        }

        pub(super) fn init(&self) {
            let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
            // SAFETY: initializes the attribute object in place.
            assert_eq!(unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) }, 0);
            // SAFETY: `attr` is initialized; valid constants.
            let r = unsafe { libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED) };
            assert_eq!(r, 0);
            // SAFETY: as above.
            assert_eq!(unsafe { libc::pthread_mutexattr_setrobust(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST) }, 0);
            // SAFETY: the mutex memory lies in the mapping (checked in
            // `at`), is aligned (offsets are multiples of 64 in a
            // page-aligned mapping) and is not in use.
            assert_eq!(unsafe { libc::pthread_mutex_init(self.0, attr.as_ptr()) }, 0);
        }

        pub(super) fn lock(&self) -> Result<(), i32> {
            // SAFETY: an initialized mutex in a live mapping.
            match unsafe { libc::pthread_mutex_lock(self.0) } {
                0 => Ok(()),
                e => Err(e),
            }
        }

        pub(super) fn consistent(&self) {
            // SAFETY: as in lock; held after EOWNERDEAD.
            assert_eq!(unsafe { libc::pthread_mutex_consistent(self.0) }, 0);
        }

        pub(super) fn unlock(&self) {
            // SAFETY: as in lock; held by this thread.
            assert_eq!(unsafe { libc::pthread_mutex_unlock(self.0) }, 0);
        }
    }
}

/// A thread waiting on a condition variable does not hold the mutex; a
/// peer that locks it and dies holding it is reported to the waiter when
/// its wait takes the lock back (`OwnerDied` with the guard), for the
/// untimed and the timed waits alike.
fn condvar_waiter_learns_that_a_holder_died() {
    for timed in [false, true] {
        let map = Mapping::anonymous(4096).unwrap();
        let m = || map.shared::<Mutex<u32>>(0).unwrap().get();
        let cv = || map.shared::<Condvar>(128).unwrap().get();
        let waiter = fork(|| {
            let g = m().lock().unwrap();
            event(&map, 0).set(); // waiting from now on (the lock is let go in the wait)
            let died = if timed {
                match cv().wait_timeout_while(g, Duration::from_secs(20), |v| *v == 0) {
                    Err(LockError::OwnerDied((g, r))) => Some((*g, r.timed_out())),
                    Ok(_) => None,
                    Err(e) => panic!("{:?}", e.map(drop)),
                }
            } else {
                match cv().wait_while(g, |v| *v == 0) {
                    Err(LockError::OwnerDied(g)) => Some((*g, false)),
                    Ok(_) => None,
                    Err(e) => panic!("{:?}", e.map(drop)),
                }
            };
            assert_eq!(died, Some((7, false)), "the waiter is told of the death, with the lock");
        });
        event(&map, 0).wait_timeout(BOUND).unwrap();
        // The waiter sleeps in the condition variable: its mutex is free.
        let mut holder = fork(|| {
            let mut g = m().lock().unwrap();
            *g = 7;
            cv().notify_all();
            event(&map, 1).set();
            std::thread::sleep(Duration::from_secs(60));
        });
        event(&map, 1).wait_timeout(BOUND).unwrap();
        holder.kill();
        assert_eq!(holder.wait(), Exit::Signaled(Signal::SIGKILL));
        waiter.join();
    }
}

/// Locks released out of order, over and over, while older ones stay
/// held: hand over hand along a ring under an outer lock, and batches
/// released in random order. Nothing is left behind (the thread can then
/// hold exactly 64 locks again, not 65); a released lock that another
/// process then takes (writing its link word) cuts nothing off the
/// holder's robust list; and when the holder dies (a SIGKILLed process,
/// then a thread that ends with leaked guards) exactly the locks it still
/// held are reported owner-died.
fn out_of_order_unlocks_leave_nothing_behind_and_death_marks_exactly_the_held() {
    const RING: usize = 8;
    let map = Mapping::anonymous(4096).unwrap();
    let m = |i: usize| map.shared::<Mutex<u64>>(64 * i).unwrap().get();
    // m(0): the outer lock; m(1..=RING): the ring; m(10..15): held and
    // released at the end; m(19..=25): the thread's.
    let mut holder = fork(|| {
        let _outer = m(0).lock().unwrap();
        let mut g = m(1).lock().unwrap();
        for step in 1..=20_000 {
            let next = m(1 + step % RING).lock().unwrap();
            drop(std::mem::replace(&mut g, next)); // the older of two held
        }
        drop(g);
        let mut rng = Rng::new(43);
        for _ in 0..2_000 {
            let n = 2 + rng.below(RING as u64 - 1) as usize;
            let mut batch: Vec<_> = (1..=n).map(|i| Some(m(i).lock().unwrap())).collect();
            for k in (1..n).rev() {
                batch.swap(k, rng.below(k as u64 + 1) as usize);
            }
            for g in &mut batch {
                g.take();
            }
        }
        // Nothing left behind: beside the outer lock, 63 more, not 64.
        let spare: Vec<Mutex<u8>> = (0..64).map(|_| Mutex::new(0)).collect();
        let mut held = Vec::new();
        let mut refused = None;
        for s in &spare {
            match s.lock() {
                Ok(g) => held.push(Some(g)),
                Err(e) => {
                    refused = Some(e.map(drop));
                    break;
                }
            }
        }
        assert_eq!(held.len(), 63, "after 22 000 out-of-order unlocks, refused with {refused:?}");
        assert!(matches!(refused, Some(LockError::TooManyHeld { max: 64 })), "{refused:?}");
        for k in (1..held.len()).rev() {
            held.swap(k, rng.below(k as u64 + 1) as usize);
        }
        for g in &mut held {
            g.take();
        }
        // The state to die in: 10, 12 and 14 held, 11 and 13 released
        // while newer locks are held.
        let gs: Vec<_> = (10..15).map(|i| m(i).lock().unwrap()).collect();
        let mut gs: Vec<_> = gs.into_iter().map(Some).collect();
        gs[1] = None;
        gs[3] = None;
        event(&map, 0).set();
        std::thread::sleep(Duration::from_secs(60));
    });
    event(&map, 0).wait_timeout(BOUND).unwrap();
    // Another process takes the two released locks, and so rewrites their
    // link words, and holds them.
    let mut taker = fork(|| {
        let _b = m(11).lock_timeout(BOUND).unwrap();
        let _d = m(13).lock_timeout(BOUND).unwrap();
        event(&map, 1).set();
        std::thread::sleep(Duration::from_secs(60));
    });
    event(&map, 1).wait_timeout(BOUND).unwrap();
    holder.kill();
    assert_eq!(holder.wait(), Exit::Signaled(Signal::SIGKILL));
    for i in [14, 12, 10, 0] {
        match m(i).lock_timeout(BOUND) {
            Err(LockError::OwnerDied(_)) => {}
            other => panic!("lock {i}, held by the killed holder: {:?}", other.map(|g| *g)),
        }
    }
    for i in 1..=RING {
        assert!(m(i).try_lock().is_ok(), "ring lock {i} was released, yet is not free");
    }
    for i in [11, 13] {
        assert!(matches!(m(i).try_lock(), Err(LockError::WouldBlock)), "lock {i} is the taker's");
    }
    taker.kill();
    assert_eq!(taker.wait(), Exit::Signaled(Signal::SIGKILL));
    for i in [11, 13] {
        assert!(matches!(m(i).lock_timeout(BOUND), Err(LockError::OwnerDied(_))), "lock {i}, the taker's");
    }
    // A thread of this process that does the same and ends with three
    // guards leaked.
    const SMALL: usize = 4;
    let last = 20 + 1000 % SMALL;
    std::thread::scope(|s| {
        s.spawn(|| {
            let outer = m(19).lock().unwrap();
            let mut g = m(20).lock().unwrap();
            for step in 1..=1000 {
                let next = m(20 + step % SMALL).lock().unwrap();
                drop(std::mem::replace(&mut g, next));
            }
            let x = m(24).lock().unwrap();
            let y = m(25).lock().unwrap();
            drop(x); // released while y is held
            std::mem::forget(outer);
            std::mem::forget(g);
            std::mem::forget(y);
        });
    });
    // The scope ends when the thread's closure returns; the kernel walks
    // the list a little later, when the thread itself ends: wait for it.
    for i in 19..=25 {
        let held = i == 19 || i == last || i == 25;
        match m(i).lock_timeout(BOUND) {
            Ok(_) => assert!(!held, "lock {i}, leaked by the ended thread, came back clean"),
            Err(LockError::OwnerDied(_)) => assert!(held, "lock {i} was released, yet owner-died"),
            Err(e) => panic!("lock {i}: {e}"),
        }
    }
}

/// A private block of known words where a freed mutex was.
const PATTERN: u64 = 0x5a5a_0123_4567_a5a5;

/// The address of a boxed value.
fn addr_of<T>(b: &T) -> usize {
    std::ptr::from_ref(b) as usize
}

/// A mutex of ours released while a glibc robust mutex locked after it is
/// held leaves the robust list at once: its memory may be freed and
/// reused before the glibc mutex is unlocked, and glibc's unlock (which
/// rewrites the back link of the entry behind its own) writes nothing
/// there. Before: ours stayed linked behind glibc's, and glibc's unlock
/// wrote into the freed memory.
fn ours_released_under_a_glibc_robust_mutex_may_be_freed_at_once() {
    let map = Mapping::anonymous(4096).unwrap();
    let g = || sys::PthreadRobust::at(&map, 2048);
    g().init();
    let m = |i: usize| map.shared::<Mutex<u64>>(64 * i).unwrap().get();
    let ours = Box::new(Mutex::new(0u64));
    let at = addr_of(&*ours);
    let guard = ours.lock().unwrap();
    g().lock().unwrap();
    drop(guard);
    drop(ours);
    // The allocator hands the freed block to the next allocation of its
    // size (glibc's thread cache is last in, first out).
    let victim = Box::new([PATTERN; size_of::<Mutex<u64>>() / 8]);
    assert_eq!(addr_of(&*victim), at, "precondition: the freed block is reused");
    g().unlock();
    drop(m(0).lock().unwrap());
    let after = **std::hint::black_box(&victim);
    assert!(after.iter().all(|&w| w == PATTERN), "memory of a released, freed mutex was written: {after:x?}");
    // The list is whole: a holder killed holding ours behind glibc's, after
    // the same round, is reported for both.
    let mut holder = fork(|| {
        let ours = Box::new(Mutex::new(0u64));
        let guard = ours.lock().unwrap();
        g().lock().unwrap();
        drop(guard);
        drop(ours);
        g().unlock();
        let _a = m(0).lock().unwrap();
        g().lock().unwrap();
        assert!(matches!(m(1).lock(), Err(LockError::RobustListBusy)));
        event(&map, 0).set();
        std::thread::sleep(Duration::from_secs(60));
    });
    event(&map, 0).wait_timeout(BOUND).unwrap();
    holder.kill();
    assert_eq!(holder.wait(), Exit::Signaled(Signal::SIGKILL));
    assert!(matches!(m(0).lock_timeout(BOUND), Err(LockError::OwnerDied(_))));
    assert_eq!(g().lock(), Err(libc::EOWNERDEAD));
    g().consistent();
    g().unlock();
    // Locking ours in front of glibc's was refused, and took nothing.
    drop(m(1).try_lock().unwrap());
}

/// A guard leaked with `mem::forget`, its mutex freed, and a new mutex put
/// at the same address: this thread locks the new one like any other (not
/// `WouldDeadlock`), and the leaked entry no longer stands in the way of
/// the thread's older locks: killed, the holder is reported for all it
/// held.
fn a_mutex_at_the_address_of_a_leaked_and_freed_one_locks_and_is_reported() {
    let map = Mapping::anonymous(4096).unwrap();
    let m = |i: usize| map.shared::<Mutex<u64>>(64 * i).unwrap().get();
    let mut holder = fork(|| {
        let _a = m(0).lock().unwrap();
        let leaked = Box::new(Mutex::new(0u64));
        let at = addr_of(&*leaked);
        std::mem::forget(leaked.lock().unwrap());
        drop(leaked);
        let new = Box::new(Mutex::new(0u64));
        assert_eq!(addr_of(&*new), at, "precondition: the freed block is reused");
        match new.try_lock() {
            Ok(g) => drop(g),
            Err(e) => panic!("a new mutex where a leaked one was: {e}"),
        }
        drop(new.lock().unwrap());
        let _b = m(1).lock().unwrap();
        event(&map, 0).set();
        std::thread::sleep(Duration::from_secs(60));
    });
    event(&map, 0).wait_timeout(BOUND).unwrap();
    holder.kill();
    assert_eq!(holder.wait(), Exit::Signaled(Signal::SIGKILL));
    for i in [1, 0] {
        assert!(matches!(m(i).lock_timeout(BOUND), Err(LockError::OwnerDied(_))), "lock {i} of the killed holder");
    }
}
