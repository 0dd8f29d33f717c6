//! Attacks on channel liveness and on the mutexes' owner-death core
//! through the public API: sides of one process on two threads, forked
//! copies of a side in nested PID namespaces, and guards leaked with
//! `mem::forget` over memory that is then freed.

use std::cell::RefCell;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use ipc_kit::shm::{ByteChannel, Channel, Error as ShmError, Mapping};
use ipc_kit::sync::{Event, Mutex};
use ipc_kit::traits::Error as KitError;
use ipc_kit::{Mechanism, Pair};
use ipc_kit_tests::{cases, fork, fork_in_new_pid_namespace};

cases!("review":
    one_process_two_threads_pair_is_not_disconnected,
    one_process_two_threads_full_ring_is_not_disconnected,
    forked_copy_with_the_same_pid_does_not_close_the_side,
    unlock_never_writes_into_a_freed_mutex_whose_guard_was_leaked,
    making_and_dropping_channels_leaks_no_fd_and_every_new_fd_is_cloexec,
    claimer_killed_while_a_child_it_forked_lives_is_noticed,
    claimer_killed_without_proc_is_noticed,
    sixty_four_held_scrambled_unlocks_then_death_marks_exactly_the_held,
);

/// How long a wait that must end may take, at most.
const BOUND: Duration = Duration::from_secs(5);

/// A `Mechanism::ShmByteChannel` pair used by two threads of one process
/// (both sides are `Send`): the receiving thread starts waiting before the
/// sending thread's first send claims the sender. The process that waits
/// may still claim the sender (it does, on the other thread), so the wait
/// must not end in `Disconnected`.
fn one_process_two_threads_pair_is_not_disconnected() {
    let pair = Mechanism::ShmByteChannel.pair().unwrap();
    let Pair { mut sender, mut receiver, .. } = pair;
    std::thread::scope(|s| {
        let got = s.spawn(move || {
            let mut buf = Vec::new();
            receiver.recv_timeout(&mut buf, BOUND).map(|n| buf[..n].to_vec())
        });
        std::thread::sleep(Duration::from_millis(200)); // the receiver waits by now
        let sent = sender.send(b"hello");
        match got.join().unwrap() {
            Ok(msg) => assert_eq!(msg, b"hello"),
            Err(KitError::Disconnected) => {
                panic!("a live sender on another thread of this process was taken for gone (send: {sent:?})")
            }
            Err(e) => panic!("recv: {e:?}"),
        }
    });
}

/// The same with a slot channel: one thread claims the sender and fills
/// the ring; another thread of the same process claims the receiver a
/// little later, through a handle of its own (a clone: each handle stands
/// for a side still to be claimed), and drains it. The full sender must
/// wait, not give up.
fn one_process_two_threads_full_ring_is_not_disconnected() {
    const N: u64 = 32;
    let ch = Channel::<u64>::anonymous(4).unwrap();
    let for_receiver = ch.clone();
    let mut tx = ch.sender().unwrap();
    std::thread::scope(|s| {
        let drained = s.spawn(|| {
            std::thread::sleep(Duration::from_millis(200)); // the sender waits on a full ring by now
            let mut rx = for_receiver.receiver().unwrap();
            (0..N).map(|_| rx.recv_timeout(BOUND)).collect::<Vec<_>>()
        });
        let sent: Vec<_> = (0..N).map(|i| tx.send_timeout(i, BOUND)).collect();
        drop(tx);
        let got = drained.join().unwrap();
        assert!(
            sent.iter().all(Result::is_ok),
            "a full sender gave up while its receiver was still to be claimed by this process: {:?}",
            sent.iter().find(|r| r.is_err())
        );
        assert!(got.iter().enumerate().all(|(i, r)| matches!(r, Ok(v) if *v == i as u64)), "{got:?}");
    });
}

/// A side's copy in a process forked after the claim is not that process's
/// to close; the side must tell the copies apart without pid numbers. Here
/// the claimer is pid 1 of one PID namespace and forks, into a nested one,
/// a child that is pid 1 too; the child drops its copy of the sender and
/// exits. The claimer is alive and still holds the sender: its receiver
/// must see a live, silent sender (`Timeout`), not `Disconnected`.
fn forked_copy_with_the_same_pid_does_not_close_the_side() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: unshare(CLONE_NEWPID) needs root");
        return;
    }
    let map = Mapping::anonymous(4096).unwrap();
    let event = |i: usize| map.shared::<Event>(64 * i).unwrap().get();
    let ch = Channel::<u64>::anonymous(8).unwrap();
    let started = fork_in_new_pid_namespace(|| {
        assert_eq!(std::process::id(), 1);
        let tx = RefCell::new(Some(ch.sender().unwrap()));
        // This process's next child is pid 1 of a nested namespace.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID).unwrap();
        let copy = fork(|| {
            assert_eq!(std::process::id(), 1, "pid 1 of the nested namespace");
            drop(tx.borrow_mut().take()); // the forked copy goes
        });
        copy.join();
        event(0).set();
        // Alive, holding the sender, until the parent has looked.
        event(1).wait_timeout(Duration::from_secs(20)).unwrap();
        tx.borrow_mut().as_mut().unwrap().send(7).unwrap();
    });
    let Some((mut between, _)) = started else {
        println!("skipped: no new PID namespace");
        return;
    };
    let mut rx = ch.receiver().unwrap();
    event(0).wait_timeout(BOUND).unwrap();
    let silent = rx.recv_timeout(Duration::from_millis(300));
    event(1).set();
    let later = rx.recv_timeout(BOUND);
    let _ = between.wait_timeout(BOUND);
    assert!(
        matches!(silent, Err(ShmError::Timeout)),
        "the sender's claimer is alive and silent, yet recv said {silent:?} (a forked copy with the same pid \
         closed the side)"
    );
    assert_eq!(later.unwrap(), 7);
}

/// `mem::forget` of a guard is safe code, and so is freeing the mutex's
/// memory afterwards (the borrow ended with the guard). Unlocking another
/// mutex locked before it must not write into that freed memory (here
/// reused by a new allocation of the same size).
fn unlock_never_writes_into_a_freed_mutex_whose_guard_was_leaked() {
    const PATTERN: u64 = 0x5a5a_0123_4567_a5a5;
    let a = Mutex::new(0u64);
    let guard_a = a.lock().unwrap();
    let b = Box::new(Mutex::new(0u64));
    let b_at = std::ptr::from_ref(&*b) as usize;
    std::mem::forget(b.lock().unwrap());
    drop(b);
    // The allocator hands the freed block to the next allocation of its
    // size (glibc's thread cache is last in, first out).
    let victim = Box::new([PATTERN; size_of::<Mutex<u64>>() / 8]);
    assert_eq!(std::ptr::from_ref(&*victim) as usize, b_at, "precondition: the freed block is reused");
    drop(guard_a);
    let after = **std::hint::black_box(&victim);
    assert!(
        after.iter().all(|&w| w == PATTERN),
        "unlocking a mutex wrote into memory freed after a leaked guard: {after:x?}"
    );
}

/// The fds this process has open.
fn open_fds() -> Vec<RawFd> {
    let dir = std::fs::read_dir("/proc/self/fd").unwrap();
    dir.map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap()).collect()
}

/// A thousand channels of each kind made, claimed and dropped in every
/// order leave no fd behind; the fds a live channel and its sides hold are
/// all close-on-exec (an exec'd program gets none of them unasked).
fn making_and_dropping_channels_leaks_no_fd_and_every_new_fd_is_cloexec() {
    let before = open_fds().len();
    for i in 0..1000 {
        let ch = Channel::<u64>::anonymous(8).unwrap();
        let tx = ch.sender().unwrap();
        let rx = ch.receiver().unwrap();
        if i % 2 == 0 {
            drop(ch);
            drop(rx);
            drop(tx);
        } else {
            drop(tx);
            drop(rx);
            drop(ch);
        }
        let b = ByteChannel::new_memfd(4096).unwrap();
        let s = b.sender().unwrap();
        drop(b);
        drop(s);
    }
    assert_eq!(open_fds().len(), before, "fds left behind by 2000 channels");
    let old = open_fds();
    let ch = Channel::<u64>::anonymous(8).unwrap();
    let _tx = ch.sender().unwrap();
    let b = ByteChannel::new_memfd(4096).unwrap();
    let _rx = b.receiver().unwrap();
    let new: Vec<_> = open_fds().into_iter().filter(|fd| !old.contains(fd)).collect();
    assert!(new.len() >= 4, "{new:?}");
    for fd in new {
        let Ok(flags) = nix::fcntl::fcntl(borrow(fd), nix::fcntl::FcntlArg::F_GETFD) else { continue };
        assert_ne!(
            flags & libc::FD_CLOEXEC,
            0,
            "fd {fd} ({:?}) is inherited across exec",
            std::fs::read_link(format!("/proc/self/fd/{fd}"))
        );
    }
}

/// An fd of this process that stays open for the duration of the call.
fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    sys::borrow(fd)
}

/// A child claims the sender of `ch`, does `then`, sets `ready` and
/// stays; once it is SIGKILLed, the receiver here waits up to 2 s.
/// Returns what `recv_timeout` said and how long it took.
fn recv_once_the_sender_is_killed(
    ch: &Channel<u64>,
    ready: &Event,
    then: impl FnOnce(),
) -> (Result<u64, ShmError>, Duration) {
    let claimer = fork(|| {
        let _tx = ch.sender().unwrap();
        then();
        ready.set();
        std::thread::sleep(Duration::from_secs(60));
    });
    let mut rx = ch.receiver().unwrap();
    ready.wait_timeout(BOUND).unwrap();
    claimer.kill();
    let t = Instant::now();
    let r = rx.recv_timeout(Duration::from_secs(2));
    (r, t.elapsed())
}

/// The claimer of the sender forks a worker (which never touches the
/// channel) and is then SIGKILLed. The docs promise that a side whose
/// process dies is noticed within about 20 ms; the worker's inherited copy
/// of the claimer's lock description must not keep the dead claimer alive.
fn claimer_killed_while_a_child_it_forked_lives_is_noticed() {
    let map = Mapping::anonymous(4096).unwrap();
    let event = |i: usize| map.shared::<Event>(64 * i).unwrap().get();
    let worker = map.shared::<AtomicI32>(1024).unwrap().get();
    let ch = Channel::<u64>::anonymous(8).unwrap();
    let (r, waited) = recv_once_the_sender_is_killed(&ch, event(0), || {
        let w = fork(|| std::thread::sleep(Duration::from_secs(60)));
        worker.store(w.pid().as_raw(), Ordering::Relaxed);
        std::mem::forget(w); // outlives the claimer
    });
    let worker = nix::unistd::Pid::from_raw(worker.load(Ordering::Relaxed));
    let _ = nix::sys::signal::kill(worker, nix::sys::signal::Signal::SIGKILL);
    // The kill lands asynchronously: wait (boundedly) until the worker is a
    // zombie or gone, so that the runner does not count it as left running.
    let dead = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |s| s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])))
    };
    let t = Instant::now();
    while !dead(worker.as_raw()) && t.elapsed() < BOUND {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        matches!(r, Err(ShmError::Disconnected)),
        "the sender's claimer was SIGKILLed; with a child it forked still alive, recv said {r:?} after {waited:?}"
    );
}

/// Without /proc (a container or chroot that does not mount it), a side
/// cannot reopen the channel's file for its liveness lock; the docs still
/// promise that a killed peer is noticed.
fn claimer_killed_without_proc_is_noticed() {
    if !ipc_kit_tests::private_mount_namespace("unmounting /proc in a mount namespace") {
        return;
    }
    nix::mount::umount2("/proc", nix::mount::MntFlags::MNT_DETACH).unwrap();
    assert!(std::fs::metadata("/proc/self").is_err(), "precondition: no /proc");
    let map = Mapping::anonymous(4096).unwrap();
    let event = |i: usize| map.shared::<Event>(64 * i).unwrap().get();
    let ch = Channel::<u64>::anonymous(8).unwrap();
    let (r, waited) = recv_once_the_sender_is_killed(&ch, event(0), || {});
    assert!(
        matches!(r, Err(ShmError::Disconnected)),
        "without /proc, the sender's claimer was SIGKILLed and recv said {r:?} after {waited:?}"
    );
}

/// The 64-lock limit and its limit + 1, unlocks in a scrambled order (each
/// one rewrites a neighbour's robust-list link), then the holder is killed:
/// exactly the locks it still held are reported as owner-died, the others
/// are clean, and every one can be taken again.
fn sixty_four_held_scrambled_unlocks_then_death_marks_exactly_the_held() {
    const N: usize = 64;
    let map = Mapping::anonymous(8192).unwrap();
    let m = |i: usize| map.shared::<Mutex<u64>>(64 * i).unwrap().get();
    let event = |i: usize| map.shared::<Event>(64 * (N + 2 + i)).unwrap().get();
    let released = |i: usize| !i.is_multiple_of(3);
    let holder = fork(|| {
        let mut guards: Vec<_> = (0..N).map(|i| Some(m(i).lock().unwrap())).collect();
        assert!(matches!(m(N).lock(), Err(ipc_kit::sync::LockError::TooManyHeld { max: 64 })));
        let mut rng = ipc_kit_tests::Rng::new(16);
        let mut order: Vec<usize> = (0..N).filter(|&i| released(i)).collect();
        for k in (1..order.len()).rev() {
            order.swap(k, rng.below(k as u64 + 1) as usize);
        }
        for i in order {
            guards[i] = None;
        }
        // Room again: one more, released at once.
        drop(m(N).lock().unwrap());
        event(0).set();
        std::thread::sleep(Duration::from_secs(60));
    });
    event(0).wait_timeout(BOUND).unwrap();
    holder.kill();
    for i in 0..N {
        match m(i).lock_timeout(BOUND) {
            Ok(_) => assert!(released(i), "lock {i} was held by the killed holder, yet came back clean"),
            Err(ipc_kit::sync::LockError::OwnerDied(_)) => {
                assert!(!released(i), "lock {i} was released, yet owner-died")
            }
            Err(e) => panic!("lock {i}: {e}"),
        }
    }
}

mod sys {
    #![allow(unsafe_code)]

    use std::os::fd::{BorrowedFd, RawFd};

    /// An fd of this process, open for the duration of the caller's use.
    pub(super) fn borrow(fd: RawFd) -> BorrowedFd<'static> {
        // SAFETY: the caller passes an fd it just listed as open and
        // closes nothing while it uses the borrow.
        unsafe { BorrowedFd::borrow_raw(fd) }
    }
}
