//! Locks: a robust mutex's holder killed (in anonymous memory, and in a
//! named segment whose creator is killed), and a System V semaphore's
//! holder or creator killed.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ipc_kit::shm::Mapping;
use ipc_kit::sync::{LockError, RobustMutex, SemaphoreSet};
use ipc_kit_tests::{Exit, Rng, fork};
use nix::sys::signal::Signal;

use crate::harness::{BOUND, Board, Campaign, Corrupted, Failed, Hung, Outcome, Survived, bury, hold, kill_after};

/// Which named segment.
#[derive(Clone, Copy, Debug)]
enum Segment {
    /// System V, by the campaign's key.
    Sysv,
    /// POSIX, by the campaign's name.
    Posix,
}

/// The victim locks, changes the first counter, then the second, and
/// unlocks, over and over, and dies. The survivor's lock returns
/// `OwnerDied` when the victim held it (the counters may then differ
/// by one, which it repairs) and a plain guard otherwise (they must be
/// equal).
pub(crate) fn robust_holder_killed(c: &mut Campaign, _: u32, delay: Duration, _: &mut Rng) -> Outcome {
    let m: &RobustMutex<[u64; 2]> = match c.robust.shared::<RobustMutex<[u64; 2]>>(0) {
        Ok(m) => m.get(),
        Err(e) => return Failed(format!("the mutex in shared memory: {e}")),
    };
    let board = &c.board;
    let victim = fork(|| update_forever(m, board));
    let timer = kill_after(victim.pid(), delay);
    if let Err(o) = bury(victim, timer) {
        return o;
    }
    survive_robust(m)
}

/// The victim opens or creates the campaign's one named segment (System
/// V by key, or POSIX by name), so that a kill can land in its making,
/// and updates two counters in it under a robust mutex until killed.
/// The survivor opens or creates the same segment (the documented way
/// back to a segment left by a dead creator, sized or not), and finds
/// the mutex and counters as after any holder's death.
pub(crate) fn segment_creator_killed(c: &mut Campaign, _: u32, delay: Duration, rng: &mut Rng) -> Outcome {
    let kind = if rng.below(2) == 0 { Segment::Posix } else { Segment::Sysv };
    let failpoint = (matches!(kind, Segment::Posix) && rng.below(8) == 0).then_some("posix-shm:opened");
    let (key, name) = (c.key, c.posix_name.as_str());
    let open = || -> Result<(Box<dyn std::any::Any>, Mapping), String> {
        if let Segment::Posix = kind {
            let shm = ipc_kit::shm::PosixShm::open_or_create(name, 4096, 0o600).map_err(|e| e.to_string())?;
            let map = shm.map_len(4096).map_err(|e| e.to_string())?;
            Ok((Box::new(shm), map))
        } else {
            let seg = ipc_kit::shm::SysvSegment::open_or_create(key, 4096, 0o600).map_err(|e| e.to_string())?;
            let map = seg.attach().map_err(|e| e.to_string())?;
            Ok((Box::new(seg), map))
        }
    };
    if failpoint.is_some()
        && let Ok(mut old) = ipc_kit::shm::PosixShm::open(name)
    {
        // So that the victim makes it, and reaches the failpoint.
        let _ = old.unlink();
    }
    let board = &c.board;
    let victim = fork(|| {
        if let Some(point) = failpoint {
            ipc_kit::sync::failpoint::arm(point);
        }
        let (_segment, map) = open().unwrap_or_else(|e| board.fail_setup(e));
        let m = map.shared::<RobustMutex<[u64; 2]>>(0).unwrap_or_else(|e| board.fail_setup(e.to_string()));
        board.set_ready();
        update_forever(m.get(), board);
    });
    let timer = kill_after(victim.pid(), delay);
    if let Err(o) = bury(victim, timer) {
        return o;
    }
    if board.setup_failed() {
        return Failed("the victim could not open or create the segment (its message is above)".into());
    }
    let (segment, map) = match open() {
        Ok(opened) => opened,
        Err(e) => return Failed(format!("the survivor could not open or create the segment: {e}")),
    };
    let outcome = match map.shared::<RobustMutex<[u64; 2]>>(0) {
        Ok(m) => survive_robust(m.get()),
        Err(e) => Failed(format!("the mutex in the segment: {e}")),
    };
    // The survivor's handle removes the segment only if it made it
    // (the victim died before); otherwise the next run reuses it.
    drop((map, segment));
    match outcome {
        Survived(_) if failpoint.is_some() => {
            Survived("killed inside its creation (a failpoint), which left nothing; made anew by the survivor")
        }
        Survived("not held when killed") if !board.ready() => Survived("killed while making the segment"),
        other => other,
    }
}

/// The campaign makes a one-semaphore set (value 1) under its key; the
/// victim opens it, takes and gives back the semaphore over and over
/// with SEM_UNDO, and dies. The survivor takes it within the bound,
/// and its value is 1 again after.
pub(crate) fn sem_holder_killed(c: &mut Campaign, _: u32, delay: Duration, rng: &mut Rng) -> Outcome {
    // One run in ten kills the set's creator instead.
    if rng.below(10) == 0 {
        return sem_creator_killed(c);
    }
    if c.sem.is_none() {
        match SemaphoreSet::create(c.key, &[1], 0o600) {
            Ok(s) => c.sem = Some(s),
            Err(e) => return Failed(format!("semget: {e}")),
        }
    }
    let key = c.key;
    let board = &c.board;
    let victim = fork(|| {
        let set = SemaphoreSet::open(key).expect("open the set");
        for n in 1.. {
            set.wait(0).expect("take the semaphore");
            board.set_ready();
            hold(Duration::from_micros(20));
            board.word(1).store(0, Ordering::Release);
            set.post(0).expect("give it back");
            board.ack(n);
            hold(Duration::from_micros(20));
        }
    });
    let timer = kill_after(victim.pid(), delay);
    if let Err(o) = bury(victim, timer) {
        return o;
    }
    let Some(set) = &c.sem else { return Failed("no set".into()) };
    let how = if c.board.ready() { "held when killed, given back" } else { "not held when killed" };
    match set.wait_timeout(0, BOUND) {
        Ok(()) => match set.post(0).and_then(|()| set.value(0)) {
            Ok(1) => Survived(how),
            Ok(v) => Corrupted(format!("the semaphore is {v} after a take and a give")),
            Err(e) => Failed(format!("semop: {e}")),
        },
        Err(ipc_kit::sync::Error::Timeout { .. }) => Hung("SEM_UNDO did not give the semaphore back".into()),
        Err(e) => Failed(format!("semop: {e}")),
    }
}

/// The victim makes the set itself and is killed (a failpoint) between
/// `semget` and setting its value; the survivor's `open_or_create`
/// takes the uninitialized set over after the grace, and later runs
/// use it.
fn sem_creator_killed(c: &mut Campaign) -> Outcome {
    if let Some(old) = c.sem.take()
        && let Err(e) = old.remove()
    {
        return Failed(format!("remove the set: {e}"));
    }
    let key = c.key;
    let mut victim = fork(|| {
        ipc_kit::sync::failpoint::arm("sysv-sem:created");
        let _ = SemaphoreSet::create(key, &[1], 0o600);
    });
    match victim.wait_timeout(BOUND) {
        Some(Exit::Signaled(Signal::SIGKILL)) => {}
        other => return Failed(format!("the creator ended with {other:?}, not at its failpoint")),
    }
    let start = Instant::now();
    let set = match SemaphoreSet::open_or_create(key, &[1], 0o600) {
        Ok(set) => c.sem.insert(set),
        Err(e) => return Failed(format!("open_or_create after the creator died: {e}")),
    };
    match set.value(0) {
        Ok(_) if start.elapsed() > BOUND => Hung(format!("taken over only after {:?}", start.elapsed())),
        Ok(1) => Survived("creator killed before initializing, taken over"),
        other => Corrupted(format!("the taken-over set holds {other:?}, not 1")),
    }
}

/// The victim's loop over a robust mutex: lock, change the first counter,
/// hold the lock mid-update a while (so that kills land there as often as
/// outside), change the second, unlock, acknowledge.
fn update_forever(m: &RobustMutex<[u64; 2]>, board: &Board) -> ! {
    for n in 1.. {
        let mut g = m.lock().unwrap_or_else(|_| panic!("the victim's lock"));
        g[0] += 1;
        hold(Duration::from_micros(20));
        g[1] += 1;
        drop(g);
        board.ack(n);
        hold(Duration::from_micros(20));
    }
    unreachable!("the counter runs out after 2^64 updates")
}

/// The survivor's lock after the victim's death: within the bound, clean
/// with equal counters, or `OwnerDied` with the counters equal or one
/// update apart, which it repairs.
fn survive_robust(m: &RobustMutex<[u64; 2]>) -> Outcome {
    match m.lock_timeout(BOUND) {
        Ok(g) if g[0] == g[1] => Survived("not held when killed"),
        Ok(g) => Corrupted(format!("counters {} and {} under a clean lock", g[0], g[1])),
        Err(LockError::OwnerDied(mut g)) => {
            if g[0] != g[1] && g[0] != g[1] + 1 {
                return Corrupted(format!("counters {} and {} after the holder died", g[0], g[1]));
            }
            let how = if g[0] == g[1] { "OwnerDied, data whole" } else { "OwnerDied mid-update, repaired" };
            g[1] = g[0];
            match g.make_consistent() {
                Ok(()) => Survived(how),
                Err(e) => Failed(format!("make_consistent: {e}")),
            }
        }
        Err(LockError::Timeout) => Hung("the mutex stayed locked after its holder died".into()),
        Err(_) => Failed("lock failed".into()),
    }
}
