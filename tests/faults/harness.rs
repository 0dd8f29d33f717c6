//! The harness every scenario runs in: the board of counters shared with
//! the victim, the kill timer, burying the victim, the in-order check of
//! what the survivor received, and what a scenario keeps from run to run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipc_kit::MessageReceiver;
use ipc_kit::msgq::{PosixQueue, SysvQueue};
use ipc_kit::shm::Mapping;
use ipc_kit::sync::{Key, SemaphoreSet};
use ipc_kit_tests::record::decode;
use ipc_kit_tests::{Exit, Forked, Rng, ScratchDir, unique_name};
use nix::sys::signal::{Signal, kill};

/// How long a survivor may take to see the outcome after the kill.
pub(crate) const BOUND: Duration = Duration::from_secs(3);

/// A run's verdict.
pub(crate) enum Outcome {
    /// Survived, and how: what the survivor saw.
    Survived(&'static str),
    Hung(String),
    Corrupted(String),
    Failed(String),
}

pub(crate) use Outcome::{Corrupted, Failed, Hung, Survived};

/// A kill delay: at once one time in eight (the victim is still setting
/// up), mostly under 3 ms, sometimes up to 20 ms.
pub(crate) fn kill_delay(rng: &mut Rng) -> Duration {
    match rng.below(8) {
        0 => Duration::ZERO,
        1 => Duration::from_micros(rng.below(20_000)),
        _ => Duration::from_micros(rng.below(3_000)),
    }
}

/// Counters shared with the victim: what it has acknowledged, and
/// whether it is ready (has claimed its side or opened its end).
pub(crate) struct Board {
    map: Mapping,
}

impl Board {
    pub(crate) fn new() -> Board {
        Board { map: Mapping::anonymous(4096).expect("a shared page for the counters") }
    }

    pub(crate) fn word(&self, i: usize) -> &AtomicU64 {
        self.map.shared::<AtomicU64>(i * 8).expect("a counter inside the page").get()
    }

    /// How many messages the victim has sent or received and checked.
    pub(crate) fn acked(&self) -> u64 {
        self.word(0).load(Ordering::Acquire)
    }

    pub(crate) fn ack(&self, n: u64) {
        self.word(0).store(n, Ordering::Release);
    }

    pub(crate) fn ready(&self) -> bool {
        self.word(1).load(Ordering::Acquire) != 0
    }

    pub(crate) fn set_ready(&self) {
        self.word(1).store(1, Ordering::Release);
    }

    /// Marks the victim's set-up as failed (before it panics), so that a
    /// kill landing during the panic does not pass for one in the set-up.
    pub(crate) fn fail_setup(&self, why: String) -> ! {
        self.word(2).store(1, Ordering::Release);
        panic!("{why}");
    }

    /// The victim made its object (and it is the one under the name now).
    pub(crate) fn set_made(&self) {
        self.word(3).store(1, Ordering::Release);
    }

    pub(crate) fn made(&self) -> bool {
        self.word(3).load(Ordering::Acquire) != 0
    }

    pub(crate) fn setup_failed(&self) -> bool {
        self.word(2).load(Ordering::Acquire) != 0
    }

    pub(crate) fn reset(&self) {
        self.ack(0);
        self.word(1).store(0, Ordering::Release);
        self.word(2).store(0, Ordering::Release);
        self.word(3).store(0, Ordering::Release);
    }
}

/// Busy-waits for `d`: work that takes time without a system call.
pub(crate) fn hold(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// When the last kill was sent, and the slowest a survivor has taken since
/// a kill to see its outcome, in this scenario.
pub(crate) static KILLED_AT: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
pub(crate) static SLOWEST: std::sync::Mutex<Duration> = std::sync::Mutex::new(Duration::ZERO);

/// Kills `pid` after `delay`, from a thread, while the survivor works.
pub(crate) fn kill_after(pid: nix::unistd::Pid, delay: Duration) -> std::thread::JoinHandle<()> {
    if let Ok(mut at) = KILLED_AT.lock() {
        *at = None;
    }
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let _ = kill(pid, Signal::SIGKILL);
        if let Ok(mut at) = KILLED_AT.lock() {
            *at = Some(Instant::now());
        }
    })
}

/// Notes that the survivor saw the victim's death now (its end of file,
/// broken pipe or disconnection).
pub(crate) fn noticed() {
    let since = KILLED_AT.lock().ok().and_then(|at| *at).map(|at| at.elapsed());
    if let (Some(since), Ok(mut slowest)) = (since, SLOWEST.lock()) {
        *slowest = (*slowest).max(since);
    }
}

/// Waits for the victim to be ready (its side claimed, its end open), at
/// most `BOUND`; false if it never was.
pub(crate) fn wait_ready(board: &Board, victim: &mut Forked) -> bool {
    let t = Instant::now();
    while !board.ready() {
        if t.elapsed() > BOUND || victim.wait_timeout(Duration::ZERO).is_some() {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// Waits (at most `BOUND`) until process `pid` is stopped (state `T` in
/// /proc/PID/stat); false if it never is.
pub(crate) fn wait_stopped(pid: nix::unistd::Pid) -> bool {
    let t = Instant::now();
    while t.elapsed() < BOUND {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state follows the command name, which ends with the last ')'.
        if stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('T')) {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    false
}

/// Kills the victim (if the timer has not) and reaps it, then returns what
/// it had acknowledged.
pub(crate) fn bury(mut victim: Forked, timer: std::thread::JoinHandle<()>) -> Result<u64, Outcome> {
    let _ = timer.join();
    victim.kill();
    match victim.wait_timeout(BOUND) {
        Some(Exit::Signaled(Signal::SIGKILL)) => Ok(0),
        Some(other) => Err(Failed(format!("the victim ended with {other:?} before the kill"))),
        None => Err(Hung("the victim could not be reaped".into())),
    }
}

/// Buries the victim, then gives the verdict on what the survivor
/// received into `order` and how the stream ended (`end`).
pub(crate) fn bury_and_check(
    c: &Campaign,
    victim: Forked,
    timer: std::thread::JoinHandle<()>,
    order: &InOrder,
    end: Result<&'static str, Outcome>,
) -> Outcome {
    if let Err(o) = bury(victim, timer) {
        return o;
    }
    match end {
        Ok(how) => order.check(c.board.acked(), how),
        Err(o) => o,
    }
}

/// Checks a survivor's received sequence numbers: `0..n` in order, each
/// message intact, at least `acked` of them.
pub(crate) struct InOrder {
    run: u32,
    pub(crate) next: u64,
}

impl InOrder {
    pub(crate) fn new(run: u32) -> InOrder {
        InOrder { run, next: 0 }
    }

    pub(crate) fn take(&mut self, msg: &[u8]) -> Result<(), Outcome> {
        match decode(msg) {
            Some((p, _)) if p != self.run => Err(Corrupted(format!("a message of run {p} in run {}", self.run))),
            Some((_, seq)) if seq == self.next => {
                self.next += 1;
                Ok(())
            }
            Some((_, seq)) => Err(Corrupted(format!("message {seq} where {} was due", self.next))),
            None => Err(Corrupted(format!("a damaged message of {} bytes after {}", msg.len(), self.next))),
        }
    }

    /// The verdict at the end: `how` ended the stream.
    pub(crate) fn check(&self, acked: u64, how: &'static str) -> Outcome {
        if self.next < acked {
            Corrupted(format!("{acked} acknowledged, {} received", self.next))
        } else if self.next == 0 {
            Survived("killed before sending anything")
        } else {
            Survived(how)
        }
    }
}

/// The victim's loop as a receiver of records through any mechanism:
/// each in order and intact, acknowledged as it arrives, each waited for
/// at most `wait`.
pub(crate) fn receive_forever(rx: &mut dyn MessageReceiver, run: u32, board: &Board, wait: Duration) -> ! {
    let mut order = InOrder::new(run);
    let mut buf = Vec::new();
    loop {
        rx.recv_timeout(&mut buf, wait).unwrap_or_else(|_| panic!("receive"));
        assert!(order.take(&buf).is_ok(), "a wrong message");
        board.ack(order.next);
    }
}

/// Reaps a victim that was sent SIGKILL.
pub(crate) fn reap_killed(mut victim: Forked) -> Result<(), Outcome> {
    match victim.wait_timeout(BOUND) {
        Some(Exit::Signaled(Signal::SIGKILL)) => Ok(()),
        Some(other) => Err(Failed(format!("a victim ended with {other:?} before the kill"))),
        None => Err(Hung("a victim could not be reaped".into())),
    }
}

/// What a scenario keeps from run to run: the shared counters, and the
/// names and objects that every run reuses.
pub(crate) struct Campaign {
    /// The counters shared with the victim.
    pub(crate) board: Board,
    /// Where the FIFOs are, and what the key is made from.
    pub(crate) dir: ScratchDir,
    /// The System V key of the queue, segment and semaphore set.
    pub(crate) key: Key,
    /// The POSIX name of the queue, shared memory and named channel.
    pub(crate) posix_name: String,
    /// The robust mutex's memory (two counters that must stay equal).
    pub(crate) robust: Mapping,
    /// The semaphore set, made by the campaign and opened by each victim.
    pub(crate) sem: Option<SemaphoreSet>,
}

impl Campaign {
    pub(crate) fn new() -> Campaign {
        // A key of our own: ftok of the scratch directory.
        let dir = ScratchDir::new();
        let key = Key::from_path(dir.path(), 7).expect("ftok of the scratch directory");
        Campaign {
            board: Board::new(),
            dir,
            key,
            posix_name: format!("/{}", unique_name("ipc-kit-faults")),
            robust: Mapping::anonymous(4096).expect("a page for the robust mutex"),
            sem: None,
        }
    }

    /// The verdict when the victim never got ready: survived if the early
    /// kill timer killed it in its set-up, failed if the set-up failed.
    pub(crate) fn killed_setting_up(
        &self,
        victim: Forked,
        early: Option<std::thread::JoinHandle<()>>,
        how: &'static str,
    ) -> Outcome {
        match early {
            Some(timer) => match bury(victim, timer) {
                Ok(_) if self.board.setup_failed() => {
                    Failed("the victim's set-up failed (its message is above)".into())
                }
                Ok(_) => Survived(how),
                Err(o) => o,
            },
            None => Failed("the victim never claimed its side".into()),
        }
    }

    /// After the last run: the queues that killed victims made are still
    /// there (nobody owned them at the end); take them over and remove
    /// them, as `ipc-kit rm` would.
    pub(crate) fn clean_up(&mut self) -> Result<(), String> {
        if let Ok(q) = SysvQueue::open(self.key) {
            q.remove().map_err(|e| format!("remove the System V queue: {e}"))?;
        }
        if let Ok(mut q) = PosixQueue::open(&self.posix_name) {
            q.unlink().map_err(|e| format!("unlink the POSIX queue: {e}"))?;
        }
        if let Some(set) = self.sem.take() {
            // Removed explicitly: a set taken over is not this handle's.
            set.remove().map_err(|e| format!("remove the semaphore set: {e}"))?;
        }
        // What the last killed creator of a named channel or segment left.
        if let Ok(mut shm) = ipc_kit::shm::PosixShm::open(&self.posix_name) {
            shm.unlink().map_err(|e| format!("unlink the POSIX shared memory: {e}"))?;
        }
        if let Ok(seg) = ipc_kit::shm::SysvSegment::open(self.key, 0) {
            seg.remove().map_err(|e| format!("remove the System V segment: {e}"))?;
        }
        Ok(())
    }
}
