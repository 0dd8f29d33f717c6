//! `ipc-kit-faults`: peers killed with SIGKILL at random points, and what
//! the survivor sees.
//!
//! Every scenario runs many times (200 by default, 20 with `--quick`). In
//! each run a victim process works the mechanism in a loop — sending,
//! receiving, holding a lock, or opening and creating the object — and is
//! killed after a random delay (sometimes at once, so that the kill lands
//! in its set-up), or at a failpoint between the two steps of making a
//! named object (ipc-sync's `failpoints` feature). Then the survivor
//! checks, within a bound:
//!
//! - that it gets the documented outcome: end of file or a truncated
//!   frame from a pipe whose writer died, `BrokenPipe` writing to one
//!   whose reader died, `Disconnected` from a channel, `OwnerDied` from a
//!   robust mutex, the semaphore given back by `SEM_UNDO`; queues, which
//!   know no peers, keep every message;
//! - that nothing the victim acknowledged is lost, and nothing arrives
//!   twice, out of order or damaged;
//! - that a FIFO server answers every honest client's request, once, in
//!   order and intact, while garbage writers killed mid-write pour bytes
//!   into its request FIFO, and that its reply to a client killed
//!   mid-request finds the client gone;
//! - that the next run can open or create the same-named object again:
//!   the FIFO, the queues, the semaphore set and the named channel keep
//!   one name or key for all runs of a scenario, taken over with
//!   `open_or_create`, `create_replacing` or `create_or_reclaim`.
//!
//! The report counts, per scenario, runs, survived, hung (the survivor's
//! bound passed) and corrupted (data lost, doubled or damaged), and any
//! other failure. At the end, nothing may be left: the last owner removes
//! each object when it exits normally.
//!
//! `ipc-kit-faults [--quick] [--runs N] [--seed S] [--only TEXT]`

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipc_kit::fifo::{Fifo, FifoClient, FifoServer};
use ipc_kit::msgq::{PosixQueue, QueueAttr, Selector, SysvQueue};
use ipc_kit::pipe::{FrameReader, FrameWriter};
use ipc_kit::shm::{ByteChannel, Channel, Mapping};
use ipc_kit::sync::{Key, LockError, RobustMutex, SemaphoreSet};
use ipc_kit_tests::record::{FIXED, decode, encode, encode_len};
use ipc_kit_tests::{Exit, Forked, Rng, ScratchDir, checksum, close_inherited, fork, unique_name};
use nix::sys::signal::{Signal, kill};

/// How long a survivor may take to see the outcome after the kill.
const BOUND: Duration = Duration::from_secs(3);

/// A run's verdict.
enum Outcome {
    /// Survived, and how: what the survivor saw.
    Survived(&'static str),
    Hung(String),
    Corrupted(String),
    Failed(String),
}

use Outcome::{Corrupted, Failed, Hung, Survived};

/// A kill delay: at once one time in eight (the victim is still setting
/// up), mostly under 3 ms, sometimes up to 20 ms.
fn kill_delay(rng: &mut Rng) -> Duration {
    match rng.below(8) {
        0 => Duration::ZERO,
        1 => Duration::from_micros(rng.below(20_000)),
        _ => Duration::from_micros(rng.below(3_000)),
    }
}

/// Counters shared with the victim: what it has acknowledged, and
/// whether it is ready (has claimed its side or opened its end).
struct Board {
    map: Mapping,
}

impl Board {
    fn new() -> Board {
        Board { map: Mapping::anonymous(4096).expect("a shared page for the counters") }
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        self.map.shared::<AtomicU64>(i * 8).expect("a counter inside the page").get()
    }

    /// How many messages the victim has sent or received and checked.
    fn acked(&self) -> u64 {
        self.word(0).load(Ordering::Acquire)
    }

    fn ack(&self, n: u64) {
        self.word(0).store(n, Ordering::Release);
    }

    fn ready(&self) -> bool {
        self.word(1).load(Ordering::Acquire) != 0
    }

    fn set_ready(&self) {
        self.word(1).store(1, Ordering::Release);
    }

    /// Marks the victim's set-up as failed (before it panics), so that a
    /// kill landing during the panic does not pass for one in the set-up.
    fn fail_setup(&self, why: String) -> ! {
        self.word(2).store(1, Ordering::Release);
        panic!("{why}");
    }

    /// The victim made its object (and it is the one under the name now).
    fn set_made(&self) {
        self.word(3).store(1, Ordering::Release);
    }

    fn made(&self) -> bool {
        self.word(3).load(Ordering::Acquire) != 0
    }

    fn setup_failed(&self) -> bool {
        self.word(2).load(Ordering::Acquire) != 0
    }

    fn reset(&self) {
        self.ack(0);
        self.word(1).store(0, Ordering::Release);
        self.word(2).store(0, Ordering::Release);
        self.word(3).store(0, Ordering::Release);
    }
}

/// Busy-waits for `d`: work that takes time without a system call.
fn hold(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// When the last kill was sent, and the slowest a survivor has taken since
/// a kill to see its outcome, in this scenario.
static KILLED_AT: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);
static SLOWEST: std::sync::Mutex<Duration> = std::sync::Mutex::new(Duration::ZERO);

/// Kills `pid` after `delay`, from a thread, while the survivor works.
fn kill_after(pid: nix::unistd::Pid, delay: Duration) -> std::thread::JoinHandle<()> {
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
fn noticed() {
    let since = KILLED_AT.lock().ok().and_then(|at| *at).map(|at| at.elapsed());
    if let (Some(since), Ok(mut slowest)) = (since, SLOWEST.lock()) {
        *slowest = (*slowest).max(since);
    }
}

/// Waits for the victim to be ready (its side claimed, its end open), at
/// most `BOUND`; false if it never was.
fn wait_ready(board: &Board, victim: &mut Forked) -> bool {
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
fn wait_stopped(pid: nix::unistd::Pid) -> bool {
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
fn bury(mut victim: Forked, timer: std::thread::JoinHandle<()>) -> Result<u64, Outcome> {
    let _ = timer.join();
    victim.kill();
    match victim.wait_timeout(BOUND) {
        Some(Exit::Signaled(Signal::SIGKILL)) => Ok(0),
        Some(other) => Err(Failed(format!("the victim ended with {other:?} before the kill"))),
        None => Err(Hung("the victim could not be reaped".into())),
    }
}

/// Checks a survivor's received sequence numbers: `0..n` in order, each
/// message intact, at least `acked` of them.
struct InOrder {
    run: u32,
    next: u64,
}

impl InOrder {
    fn new(run: u32) -> InOrder {
        InOrder { run, next: 0 }
    }

    fn take(&mut self, msg: &[u8]) -> Result<(), Outcome> {
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
    fn check(&self, acked: u64, how: &'static str) -> Outcome {
        if self.next < acked {
            Corrupted(format!("{acked} acknowledged, {} received", self.next))
        } else if self.next == 0 {
            Survived("killed before sending anything")
        } else {
            Survived(how)
        }
    }
}

/// Reads frames into `order` until the end: end of file, or a frame the
/// dead writer left half-written.
fn drain_frames(
    frames: &mut FrameReader<&ipc_kit::pipe::PipeReader>,
    order: &mut InOrder,
) -> Result<&'static str, Outcome> {
    let mut buf = Vec::new();
    loop {
        match frames.recv_timeout(&mut buf, BOUND) {
            Ok(Some(_)) => order.take(&buf)?,
            Ok(None) => {
                noticed();
                return Ok("end of file");
            }
            Err(ipc_kit::pipe::Error::TruncatedFrame { .. }) => {
                noticed();
                return Ok("end of file inside a frame");
            }
            Err(ipc_kit::pipe::Error::Timeout) => return Err(Hung("no end of file after the writer died".into())),
            Err(e) => return Err(Failed(format!("read: {e}"))),
        }
    }
}

/// The victim's loop as the reader of a pipe or FIFO: 64-byte records,
/// each whole and in order, acknowledged as they arrive.
fn read_records_forever(r: &ipc_kit::pipe::PipeReader, run: u32, board: &Board) -> ! {
    let mut rec = [0u8; FIXED];
    let mut order = InOrder::new(run);
    loop {
        let n = r.read_timeout(&mut rec, BOUND).expect("read a record");
        assert!(n == FIXED && order.take(&rec).is_ok(), "a torn or wrong record");
        board.ack(order.next);
    }
}

/// Writes 64-byte records to a pipe or FIFO whose reader is to be killed
/// at `kill`, until the write fails: `BrokenPipe` within the bound after
/// the kill is the documented outcome.
fn write_until_broken(w: &ipc_kit::pipe::PipeWriter, run: u32, kill: Instant) -> Outcome {
    let mut msg = Vec::new();
    let end = (0..)
        .map(|seq| {
            encode(run, seq, true, &mut msg);
            w.write_atomic_timeout(&msg, BOUND)
        })
        .find_map(Result::err);
    noticed();
    let late = Instant::now().saturating_duration_since(kill);
    match end {
        Some(ipc_kit::pipe::Error::BrokenPipe) if late < BOUND => Survived("BrokenPipe"),
        Some(ipc_kit::pipe::Error::BrokenPipe) => Hung(format!("BrokenPipe only {late:?} after the kill")),
        Some(ipc_kit::pipe::Error::Timeout) => Hung("a write blocked on a dead reader".into()),
        other => Failed(format!("write: {other:?}")),
    }
}

/// Receives from a channel into `order` until it says `Disconnected`; a
/// receive that waits out the bound is `Hung(hung)`.
fn drain_channel(rx: &mut AnyReceiver, order: &mut InOrder, hung: &str) -> Result<(), Outcome> {
    let mut buf = Vec::new();
    loop {
        match rx.recv(&mut buf, BOUND) {
            Ok(()) => order.take(&buf)?,
            Err(ChannelEnd::Disconnected) => return Ok(()),
            Err(ChannelEnd::Timeout) => return Err(Hung(hung.into())),
            Err(ChannelEnd::Other(e)) => return Err(Failed(e)),
        }
    }
}

/// Message `seq`: small (fixed 64 bytes), or larger than a pipe's atomic
/// write (4 KiB to 64 KiB), so that a kill can cut one in half.
fn message(run: u32, seq: u64, big: bool, out: &mut Vec<u8>) {
    if big {
        encode_len(run, seq, 4096 + (seq % 3) as usize * 30_000, out);
    } else {
        encode(run, seq, true, out);
    }
}

/// The scenarios, by the process that is killed.
#[derive(Clone, Copy, Debug)]
enum Scenario {
    PipeWriter,
    PipeReader,
    FifoWriter,
    FifoReader,
    SysvSender,
    SysvReceiver,
    PosixSender,
    PosixReceiver,
    SlotSender,
    SlotReceiver,
    ByteSender,
    ByteReceiver,
    NamedCreator,
    NamedOpener,
    RobustHolder,
    SegmentCreator,
    SemHolder,
    UnclaimedSender,
    UnclaimedReceiver,
    NamespacedSender,
    NamespacedReceiver,
    NamedCreatorStalled,
    FifoServerGarbage,
}

impl Scenario {
    const ALL: [Scenario; 23] = [
        Scenario::PipeWriter,
        Scenario::PipeReader,
        Scenario::FifoWriter,
        Scenario::FifoReader,
        Scenario::SysvSender,
        Scenario::SysvReceiver,
        Scenario::PosixSender,
        Scenario::PosixReceiver,
        Scenario::SlotSender,
        Scenario::SlotReceiver,
        Scenario::ByteSender,
        Scenario::ByteReceiver,
        Scenario::NamedCreator,
        Scenario::NamedOpener,
        Scenario::RobustHolder,
        Scenario::SegmentCreator,
        Scenario::SemHolder,
        Scenario::UnclaimedSender,
        Scenario::UnclaimedReceiver,
        Scenario::NamespacedSender,
        Scenario::NamespacedReceiver,
        Scenario::NamedCreatorStalled,
        Scenario::FifoServerGarbage,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::PipeWriter => "pipe: writer killed",
            Scenario::PipeReader => "pipe: reader killed",
            Scenario::FifoWriter => "fifo: creator and writer killed",
            Scenario::FifoReader => "fifo: reader killed",
            Scenario::SysvSender => "sysv-msgq: creator and sender killed",
            Scenario::SysvReceiver => "sysv-msgq: receiver killed",
            Scenario::PosixSender => "posix-mq: creator and sender killed",
            Scenario::PosixReceiver => "posix-mq: receiver killed",
            Scenario::SlotSender => "shm-channel: sender killed",
            Scenario::SlotReceiver => "shm-channel: receiver killed",
            Scenario::ByteSender => "shm-byte-channel: sender killed",
            Scenario::ByteReceiver => "shm-byte-channel: receiver killed",
            Scenario::NamedCreator => "shm channel, named: creator killed",
            Scenario::NamedOpener => "shm channel, named: opener killed",
            Scenario::RobustHolder => "robust-mutex: holder killed",
            Scenario::SegmentCreator => "shm segment, named: creator killed",
            Scenario::SemHolder => "sysv-semaphore: holder killed",
            Scenario::UnclaimedSender => "shm channel: sender killed early",
            Scenario::UnclaimedReceiver => "shm channel: receiver killed early",
            Scenario::NamespacedSender => "shm channel: sender in a PID namespace",
            Scenario::NamespacedReceiver => "shm channel: receiver in a PID namespace",
            Scenario::NamedCreatorStalled => "shm channel, named: creator stalled",
            Scenario::FifoServerGarbage => "fifo-server: garbage writers killed",
        }
    }

    /// Whether this process can run the scenario (a PID namespace needs
    /// root); the reason when not.
    fn unavailable(self) -> Option<&'static str> {
        let namespaced = matches!(self, Scenario::NamespacedSender | Scenario::NamespacedReceiver);
        (namespaced && !nix::unistd::geteuid().is_root()).then_some("a new PID namespace needs root")
    }
}

/// What a scenario keeps from run to run: the shared counters, and the
/// names and objects that every run reuses.
struct Campaign {
    board: Board,
    dir: ScratchDir,
    key: Key,
    posix_name: String,
    /// The robust mutex's memory (two counters that must stay equal).
    robust: Mapping,
    /// The semaphore set, made by the campaign and opened by each victim.
    sem: Option<SemaphoreSet>,
}

impl Campaign {
    fn new() -> Campaign {
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

    fn run(&mut self, scenario: Scenario, run: u32, rng: &mut Rng) -> Outcome {
        self.board.reset();
        let delay = kill_delay(rng);
        match scenario {
            Scenario::PipeWriter => self.pipe_writer_killed(run, delay, rng.below(2) == 0),
            Scenario::PipeReader => self.pipe_reader_killed(run, delay),
            Scenario::FifoWriter => self.fifo_writer_killed(run, delay, rng.below(4) == 0),
            Scenario::FifoReader => self.fifo_reader_killed(run, delay),
            Scenario::SysvSender => self.queue_sender_killed(run, delay, true),
            Scenario::PosixSender => self.queue_sender_killed(run, delay, false),
            Scenario::SysvReceiver => self.queue_receiver_killed(run, delay, true),
            Scenario::PosixReceiver => self.queue_receiver_killed(run, delay, false),
            Scenario::SlotSender => self.channel_sender_killed(run, delay, false, false, None),
            Scenario::ByteSender => self.channel_sender_killed(run, delay, true, false, None),
            Scenario::SlotReceiver => self.channel_receiver_killed(run, delay, false, false),
            Scenario::ByteReceiver => self.channel_receiver_killed(run, delay, true, false),
            Scenario::NamedCreator => {
                let failpoint = match rng.below(16) {
                    0 => Some("posix-shm:opened"),
                    1 => Some("channel:mapped"),
                    _ => None,
                };
                self.channel_sender_killed(run, delay, rng.below(2) == 0, true, failpoint)
            }
            Scenario::NamedOpener => self.channel_receiver_killed(run, delay, rng.below(2) == 0, true),
            Scenario::RobustHolder => self.robust_holder_killed(delay),
            Scenario::SegmentCreator => {
                let posix = rng.below(2) == 0;
                let failpoint = (posix && rng.below(8) == 0).then_some("posix-shm:opened");
                self.segment_creator_killed(delay, posix, failpoint)
            }
            Scenario::SemHolder => self.sem_holder_killed(delay, rng.below(10) == 0),
            Scenario::UnclaimedSender | Scenario::UnclaimedReceiver => {
                let claim_after = Duration::from_micros(rng.below(3_000));
                let sends = matches!(scenario, Scenario::UnclaimedSender);
                self.channel_peer_killed_early(run, delay, claim_after, rng.below(2) == 0, sends, false)
            }
            Scenario::NamedCreatorStalled => {
                let point = ["posix-shm:opened", "channel:mapped", "posix-shm:prepared"][rng.below(3) as usize];
                let stall = Duration::from_micros(rng.below(300_000));
                self.named_creator_stalled(run, point, stall, rng.below(2) == 0)
            }
            Scenario::NamespacedSender | Scenario::NamespacedReceiver => {
                let claim_after = Duration::from_micros(rng.below(3_000));
                let sends = matches!(scenario, Scenario::NamespacedSender);
                self.channel_peer_killed_early(run, delay, claim_after, rng.below(2) == 0, sends, true)
            }
            Scenario::FifoServerGarbage => {
                let doomed = rng.below(2) == 0;
                self.fifo_server_garbage(run, rng, doomed)
            }
        }
    }

    /// A writer sends frames (acknowledging each after `send` returns) and
    /// dies; the reader gets every acknowledged frame intact, then end of
    /// file or a truncated frame.
    fn pipe_writer_killed(&self, run: u32, delay: Duration, big: bool) -> Outcome {
        let (r, w) = match ipc_kit::pipe::pipe() {
            Ok(p) => p,
            Err(e) => return Failed(format!("pipe: {e}")),
        };
        let board = &self.board;
        let victim = fork(|| {
            let mut frames = FrameWriter::new(&w);
            let mut msg = Vec::new();
            for seq in 0.. {
                message(run, seq, big, &mut msg);
                frames.send(&msg).expect("send a frame");
                board.ack(seq + 1);
            }
        });
        drop(w);
        let timer = kill_after(victim.pid(), delay);
        let mut frames = FrameReader::new(&r);
        let mut order = InOrder::new(run);
        let end = drain_frames(&mut frames, &mut order);
        if let Err(o) = bury(victim, timer) {
            return o;
        }
        match end {
            Ok(how) => order.check(self.board.acked(), how),
            Err(o) => o,
        }
    }

    /// A reader takes records and dies; the writer gets `BrokenPipe`.
    fn pipe_reader_killed(&self, run: u32, delay: Duration) -> Outcome {
        let (r, w) = match ipc_kit::pipe::pipe() {
            Ok(p) => p,
            Err(e) => return Failed(format!("pipe: {e}")),
        };
        let board = &self.board;
        let victim = fork(|| {
            close_inherited(w.as_raw_fd());
            read_records_forever(&r, run, board);
        });
        drop(r);
        let timer = kill_after(victim.pid(), delay);
        let outcome = write_until_broken(&w, run, Instant::now() + delay);
        match bury(victim, timer) {
            Ok(_) => outcome,
            Err(o) => o,
        }
    }

    /// The victim makes the FIFO under the campaign's one path (replacing
    /// what a killed predecessor left), opens it and writes frames; the
    /// survivor opens it by path and reads. A victim killed before making
    /// or opening it leaves the survivor nothing to read, which it learns
    /// within the bound.
    fn fifo_writer_killed(&self, run: u32, delay: Duration, early: bool) -> Outcome {
        let path = self.dir.path().join("fifo");
        let board = &self.board;
        let mut victim = fork(|| {
            let fifo = Fifo::create_replacing(&path, 0o600).expect("make the FIFO");
            board.set_made();
            let w = fifo.open_writer_timeout(BOUND).expect("open the FIFO for writing");
            board.set_ready();
            let mut frames = FrameWriter::new(&w);
            let mut msg = Vec::new();
            for seq in 0.. {
                message(run, seq, seq % 2 == 1, &mut msg);
                frames.send(&msg).expect("send a frame");
                board.ack(seq + 1);
            }
        });
        // One run in four kills the victim counting from its start (so
        // that the kill may land in making or opening the FIFO); the others
        // from when both ends are open.
        let early_timer = early.then(|| kill_after(victim.pid(), delay));
        let t = Instant::now();
        let reader = loop {
            // Only the victim's FIFO: a reader of the one a killed
            // predecessor left would keep it in use, and the victim's
            // `create_replacing` must then leave it alone.
            if board.made()
                && let Ok(fifo) = Fifo::open(&path)
                && let Ok(r) = fifo.open_reader_timeout(Duration::from_millis(2))
            {
                break Some(r);
            }
            if victim.wait_timeout(Duration::ZERO).is_some() || t.elapsed() > delay + BOUND {
                break None;
            }
        };
        let timer = match early_timer {
            Some(timer) => timer,
            None => {
                if reader.is_some() && !wait_ready(board, &mut victim) {
                    return Failed("the victim never opened its end".into());
                }
                kill_after(victim.pid(), delay)
            }
        };
        let mut order = InOrder::new(run);
        let end = match reader {
            None if board.ready() => Err(Hung("the FIFO's writer was there but the reader could not open".into())),
            None => Ok("killed before opening the FIFO"),
            Some(r) => drain_frames(&mut FrameReader::new(&r), &mut order),
        };
        if let Err(o) = bury(victim, timer) {
            return o;
        }
        match end {
            Ok(how) => order.check(self.board.acked(), how),
            Err(o) => o,
        }
    }

    /// The survivor makes the FIFO under the campaign's one path (plain
    /// `create`: the previous run's must be gone) and writes records; the
    /// victim opens it by path, reads and checks them, and is killed (from
    /// its start, so that the kill may land in its open). The survivor's
    /// writes end in `BrokenPipe`, or it finds nobody ever opened the FIFO.
    fn fifo_reader_killed(&self, run: u32, delay: Duration) -> Outcome {
        let path = self.dir.path().join("fifo-r");
        let fifo = match Fifo::create(&path, 0o600) {
            Ok(f) => f,
            Err(e) => return Failed(format!("make the FIFO: {e}")),
        };
        let board = &self.board;
        let mut victim = fork(|| {
            let r = Fifo::open(&path)
                .and_then(|f| f.open_reader_timeout(BOUND))
                .unwrap_or_else(|e| board.fail_setup(e.to_string()));
            board.set_ready();
            read_records_forever(&r, run, board);
        });
        let timer = kill_after(victim.pid(), delay);
        let t = Instant::now();
        let writer = loop {
            if let Ok(w) = fifo.try_open_writer() {
                break Some(w);
            }
            if victim.wait_timeout(Duration::ZERO).is_some() || t.elapsed() > delay + BOUND {
                break None;
            }
            std::thread::yield_now();
        };
        let outcome = match writer {
            None if t.elapsed() > delay + BOUND => Hung("the reader never opened and was not killed".into()),
            None => Survived("killed before the FIFO was open at both ends"),
            Some(w) => write_until_broken(&w, run, t + delay),
        };
        if let Err(o) = bury(victim, timer) {
            return o;
        }
        if board.setup_failed() {
            return Failed("the victim could not open the FIFO (its message is above)".into());
        }
        outcome
    }

    /// A FIFO server (the survivor, under the campaign's one path) and
    /// three honest clients, each making `FIFO_REQUESTS` checksummed
    /// requests, while garbage writers pour random bytes, frame starts
    /// with huge lengths, frames cut short and well-checked frames with
    /// malformed requests into the request FIFO, in writes of up to 64 KiB
    /// that are not atomic, and are killed at random points (mid-write,
    /// mostly). With `doomed`, a fourth client makes requests until it is
    /// killed, often between sending a request and reading its reply: the
    /// server's reply then finds it gone. Every honest request must be
    /// answered once, in order, with the right reply, within the bound;
    /// after the run, the next server's start must leave the directory
    /// empty of everything the run made (request, reply and temporary
    /// FIFOs).
    fn fifo_server_garbage(&self, run: u32, rng: &mut Rng, doomed: bool) -> Outcome {
        const CLIENTS: u32 = 3;
        let path = self.dir.path().join("service");
        let mut server = match FifoServer::create_replacing(&path, 0o600) {
            Ok(s) => s,
            Err(e) => return Failed(format!("start the server: {e}")),
        };
        let board = &self.board;
        for c in 0..=CLIENTS as usize {
            board.word(16 + c).store(0, Ordering::Release);
        }
        let path = path.as_path();
        let writers: Vec<(Forked, Instant)> = (0..3)
            .map(|_| {
                let seed = rng.next_u64();
                // At once one time in eight (the kill lands in its open),
                // else at any time in the first 60 ms of the run (which
                // the honest clients take about).
                let delay = if rng.chance(8) { Duration::ZERO } else { Duration::from_micros(rng.below(60_000)) };
                let at = Instant::now() + delay;
                (fork(move || write_garbage_forever(path, seed, board)), at)
            })
            .collect();
        let mut clients: Vec<Forked> =
            (0..CLIENTS).map(|c| fork(move || honest_client(path, run, c, Some(FIFO_REQUESTS), board))).collect();
        let doomed = doomed.then(|| {
            let at = Instant::now() + Duration::from_micros(rng.below(40_000));
            (fork(move || honest_client(path, run, CLIENTS, None, board)), at)
        });
        let was_doomed = doomed.is_some();
        let mut next = [0u64; CLIENTS as usize + 1];
        let mut gone_replies = 0u32;
        let end = Instant::now() + 4 * BOUND;
        // Serve until the honest clients are done, killing each victim
        // when its time comes.
        let verdict = loop {
            let now = Instant::now();
            for (victim, at) in writers.iter().chain(&doomed) {
                if now >= *at {
                    victim.kill();
                }
            }
            if now > end {
                break Hung(format!("the honest clients were not done after {:?}", 4 * BOUND));
            }
            let req = match server.recv_timeout(Duration::from_millis(1)) {
                Ok(req) => req,
                Err(ipc_kit::fifo::Error::BadRequest { .. }) => continue,
                Err(ipc_kit::fifo::Error::Timeout { .. }) => {
                    if clients.iter_mut().all(|c| c.wait_timeout(Duration::ZERO).is_some()) {
                        break Survived("");
                    }
                    continue;
                }
                Err(e) => break Failed(format!("receive a request: {e}")),
            };
            // Only honest clients' requests decode: the garbage writers
            // send no well-formed request.
            let Some((p, seq)) = decode(&req.payload) else {
                break Corrupted(format!("a request of {} bytes that no honest client sent", req.payload.len()));
            };
            let c = (p % 16) as usize;
            if p / 16 != run || c > CLIENTS as usize {
                break Corrupted(format!("a request of producer {p} in run {run}"));
            }
            if seq != next[c] {
                break Corrupted(format!("client {c}'s request {seq} where {} was due", next[c]));
            }
            next[c] += 1;
            let mut reply = req.payload.clone();
            reply.reverse();
            match server.reply(&req, &reply) {
                Ok(()) => {}
                Err(ipc_kit::fifo::Error::ClientGone { .. }) if c == CLIENTS as usize => gone_replies += 1,
                Err(e) => break Failed(format!("reply to client {c}: {e}")),
            }
        };
        // Reap everyone: the writers and the doomed client by SIGKILL, the
        // honest clients by their own exit.
        for (victim, _) in writers.into_iter().chain(doomed) {
            victim.kill();
            if let Err(o) = reap_killed(victim) {
                return o;
            }
        }
        for (c, client) in clients.iter_mut().enumerate() {
            match client.wait_timeout(BOUND) {
                Some(Exit::Code(0)) => {}
                Some(other) => return Failed(format!("honest client {c} ended with {other:?} (its message is above)")),
                None => return Hung(format!("honest client {c} still running")),
            }
            match board.word(16 + c).load(Ordering::Acquire) {
                CLIENT_DONE => {}
                CLIENT_TIMED_OUT => return Hung(format!("client {c}: a request timed out")),
                CLIENT_WRONG_REPLY => return Corrupted(format!("client {c}: a wrong reply")),
                other => return Failed(format!("client {c}: state {other}")),
            }
        }
        if board.setup_failed() {
            return Failed("a garbage writer could not open the FIFO (its message is above)".into());
        }
        if !matches!(verdict, Survived(_)) {
            return verdict;
        }
        if let Some(n) = next[..CLIENTS as usize].iter().find(|&&n| n != FIFO_REQUESTS) {
            return Corrupted(format!("{n} requests of a client served, not {FIFO_REQUESTS}"));
        }
        // Nothing left: the server removes its FIFO, and the next one's
        // start what a killed client left.
        drop(server);
        match FifoServer::create_replacing(path, 0o600) {
            Ok(next) => drop(next),
            Err(e) => return Failed(format!("restart the server: {e}")),
        }
        let left: Vec<String> = match std::fs::read_dir(self.dir.path()) {
            Ok(d) => d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
            Err(e) => return Failed(format!("list the directory: {e}")),
        };
        if !left.is_empty() {
            return Failed(format!("left behind: {}", left.join(", ")));
        }
        Survived(match (was_doomed, gone_replies, next[CLIENTS as usize]) {
            (false, _, _) => "all answered",
            (true, 1.., _) => "all answered, a client killed mid-request (its reply: ClientGone)",
            (true, 0, 1..) => "all answered, a client killed between requests",
            (true, 0, 0) => "all answered, a client killed before its first request",
        })
    }

    /// Opens (or makes) the campaign's queue: System V under its key, or
    /// POSIX under its name.
    fn queue(&self, sysv: bool) -> Result<Queue, String> {
        if sysv {
            SysvQueue::open_or_create(self.key, 0o600).map(Queue::Sysv).map_err(|e| format!("msgget: {e}"))
        } else {
            let attr = QueueAttr::default();
            PosixQueue::open_or_create(&self.posix_name, attr, 0o600)
                .map(Queue::Posix)
                .map_err(|e| format!("mq_open: {e}"))
        }
    }

    /// The victim opens or makes the queue (it is the owner when it made
    /// it, and dies without removing it) and sends; the survivor takes it
    /// over and finds every acknowledged message, in order, then nothing.
    fn queue_sender_killed(&self, run: u32, delay: Duration, sysv: bool) -> Outcome {
        let board = &self.board;
        let victim = fork(|| {
            let q = self.queue(sysv).expect("open or make the queue");
            let mut msg = Vec::new();
            for seq in 0.. {
                encode(run, seq, false, &mut msg);
                q.send(&msg).expect("send");
                board.ack(seq + 1);
            }
        });
        let timer = kill_after(victim.pid(), delay);
        let q = match self.queue(sysv) {
            Ok(q) => q,
            Err(e) => return Failed(e),
        };
        let mut order = InOrder::new(run);
        let mut buf = Vec::new();
        // Receive while the victim lives, then drain: a queue has no
        // notion of its peers, so "nothing more" is a short quiet spell
        // after the victim is gone.
        let mut gone = false;
        let mut victim = Some(victim);
        let mut timer = Some(timer);
        loop {
            match q.recv(&mut buf, Duration::from_millis(if gone { 50 } else { 5 })) {
                Ok(()) => {
                    if let Err(o) = order.take(&buf) {
                        return o;
                    }
                }
                Err(QueueError::Timeout) if gone => break,
                Err(QueueError::Timeout) => {
                    if victim.as_mut().is_some_and(|v| v.wait_timeout(Duration::ZERO).is_some()) {
                        if let (Some(v), Some(t)) = (victim.take(), timer.take())
                            && let Err(o) = bury(v, t)
                        {
                            return o;
                        }
                        gone = true;
                    }
                }
                Err(QueueError::Other(e)) => return Failed(e),
            }
        }
        order.check(self.board.acked(), "every acknowledged message kept")
    }

    /// The survivor owns the queue and sends; the victim receives and
    /// dies. What the victim did not acknowledge is still queued, but for
    /// the one message it may have taken in the instant it died.
    fn queue_receiver_killed(&self, run: u32, delay: Duration, sysv: bool) -> Outcome {
        let q = match self.queue(sysv) {
            Ok(q) => q,
            Err(e) => return Failed(e),
        };
        let board = &self.board;
        let victim = fork(|| {
            let mut order = InOrder::new(run);
            let mut buf = Vec::new();
            loop {
                q.recv(&mut buf, BOUND).unwrap_or_else(|_| panic!("receive"));
                assert!(order.take(&buf).is_ok(), "a wrong message");
                board.ack(order.next);
            }
        });
        let timer = kill_after(victim.pid(), delay);
        let mut victim = Some(victim);
        let mut timer = Some(timer);
        let mut msg = Vec::new();
        let mut sent = 0;
        // Send until the victim is gone and the queue has filled up.
        loop {
            encode(run, sent, false, &mut msg);
            match q.send_timeout(&msg, Duration::from_millis(5)) {
                Ok(()) => sent += 1,
                Err(QueueError::Timeout) => {
                    if let Some(v) = victim.as_mut()
                        && v.wait_timeout(Duration::ZERO).is_some()
                    {
                        if let (Some(v), Some(t)) = (victim.take(), timer.take())
                            && let Err(o) = bury(v, t)
                        {
                            return o;
                        }
                        break;
                    }
                }
                Err(QueueError::Other(e)) => return Failed(e),
            }
            if sent > 1_000_000 {
                return Failed("the victim outlived a million messages".into());
            }
        }
        let acked = self.board.acked();
        let mut buf = Vec::new();
        let mut first = None;
        let mut order = InOrder::new(run);
        loop {
            match q.recv(&mut buf, Duration::from_millis(50)) {
                Ok(()) => {
                    let Some((_, seq)) = decode(&buf) else { return Corrupted("a damaged message".into()) };
                    if first.is_none() {
                        // The victim acknowledged `acked`; it may have taken
                        // one more when it died.
                        if seq != acked && seq != acked + 1 {
                            return Corrupted(format!("{seq} first after {acked} acknowledged"));
                        }
                        first = Some(seq);
                        order.next = seq;
                    }
                    if let Err(o) = order.take(&buf) {
                        return o;
                    }
                }
                Err(QueueError::Timeout) => break,
                Err(QueueError::Other(e)) => return Failed(e),
            }
        }
        let left = sent - acked;
        match first {
            _ if order.next != sent && first.is_some() => {
                Corrupted(format!("sent {sent}, the queue held up to {}", order.next))
            }
            None if left > 1 => Corrupted(format!("{left} unacknowledged messages vanished")),
            Some(seq) if seq > acked => Survived("the rest kept, but one taken as it died"),
            _ => Survived("every unacknowledged message kept"),
        }
    }

    /// The victim claims the sending side and sends until killed; the
    /// survivor receives everything acknowledged, then `Disconnected`.
    /// Named: the victim makes the channel under the campaign's one name
    /// with `create_or_reclaim` (taking over what a predecessor killed
    /// mid-creation left) and may be killed while it does (at random, or
    /// exactly at `failpoint`); the survivor opens it by name.
    fn channel_sender_killed(
        &self,
        run: u32,
        delay: Duration,
        bytes: bool,
        named: bool,
        failpoint: Option<&'static str>,
    ) -> Outcome {
        let anonymous = if named {
            None
        } else {
            match AnyChannel::new(bytes) {
                Ok(c) => Some(c),
                Err(e) => return Failed(e),
            }
        };
        let (board, name) = (&self.board, self.posix_name.as_str());
        let mut victim = fork(|| {
            let made;
            if let Some(point) = failpoint {
                ipc_kit::sync::failpoint::arm(point);
            }
            let chan = match &anonymous {
                Some(c) => c,
                None => {
                    made = AnyChannel::named(bytes, name, Make::Reclaim).unwrap_or_else(|e| board.fail_setup(e));
                    &made
                }
            };
            let mut tx = chan.sender().expect("claim the sender");
            board.set_ready();
            let mut msg = Vec::new();
            for seq in 0.. {
                encode(run, seq, true, &mut msg);
                if tx.send(&msg, Duration::from_secs(60)).is_err() {
                    panic!("send");
                }
                board.ack(seq + 1);
            }
        });
        let early = named.then(|| kill_after(victim.pid(), delay));
        if !wait_ready(board, &mut victim) {
            let how = match failpoint {
                Some(_) => "killed at a failpoint while making the channel",
                None => "killed while making the channel",
            };
            return self.killed_setting_up(victim, early, how);
        }
        let chan = match anonymous.map_or_else(|| AnyChannel::named(bytes, name, Make::Open), Ok) {
            Ok(c) => c,
            Err(e) => return Failed(e),
        };
        let mut rx = match chan.receiver() {
            Ok(rx) => rx,
            Err(e) => return Failed(e),
        };
        let timer = early.unwrap_or_else(|| kill_after(victim.pid(), delay));
        let mut order = InOrder::new(run);
        let end = drain_channel(&mut rx, &mut order, "no Disconnected after the sender died").map(|()| {
            noticed();
            "Disconnected"
        });
        if let Err(o) = bury(victim, timer) {
            return o;
        }
        match end {
            Ok(how) => order.check(self.board.acked(), how),
            Err(o) => o,
        }
    }

    /// The victim claims the receiving side and dies; the survivor's sends
    /// end in `Disconnected` once the ring is full. Named: the survivor
    /// makes the channel with plain `create` (so the name must be free
    /// again after every run) and the victim opens it by name, and may be
    /// killed while it does.
    fn channel_receiver_killed(&self, run: u32, delay: Duration, bytes: bool, named: bool) -> Outcome {
        let made =
            if named { AnyChannel::named(bytes, &self.posix_name, Make::Create) } else { AnyChannel::new(bytes) };
        let chan = match made {
            Ok(c) => c,
            Err(e) => return Failed(e),
        };
        let (board, name) = (&self.board, self.posix_name.as_str());
        let mut victim = fork(|| {
            let opened;
            let chan = if named {
                opened = AnyChannel::named(bytes, name, Make::Open).unwrap_or_else(|e| board.fail_setup(e));
                &opened
            } else {
                &chan
            };
            let mut rx = chan.receiver().expect("claim the receiver");
            board.set_ready();
            let mut order = InOrder::new(run);
            let mut buf = Vec::new();
            loop {
                rx.recv(&mut buf, BOUND).unwrap_or_else(|_| panic!("receive"));
                assert!(order.take(&buf).is_ok(), "a wrong message");
                board.ack(order.next);
            }
        });
        let mut tx = match chan.sender() {
            Ok(tx) => tx,
            Err(e) => return Failed(e),
        };
        let early = named.then(|| kill_after(victim.pid(), delay));
        if !wait_ready(board, &mut victim) {
            return self.killed_setting_up(victim, early, "killed while opening the channel");
        }
        let timer = early.unwrap_or_else(|| kill_after(victim.pid(), delay));
        let mut msg = Vec::new();
        let t = Instant::now();
        let outcome = (0..).find_map(|seq| {
            encode(run, seq, true, &mut msg);
            tx.send(&msg, BOUND).err()
        });
        noticed();
        let outcome = match outcome {
            None => Failed("unreachable: sends never end".into()),
            Some(end) => match end {
                ChannelEnd::Disconnected if t.elapsed() < delay + BOUND => Survived("Disconnected"),
                ChannelEnd::Disconnected => Hung(format!("Disconnected only after {:?}", t.elapsed())),
                ChannelEnd::Timeout => Hung("a send blocked on a dead receiver".into()),
                ChannelEnd::Other(e) => Failed(e),
            },
        };
        match bury(victim, timer) {
            Ok(_) => outcome,
            Err(o) => o,
        }
    }

    /// A channel made before `fork`: the victim starts claiming its side
    /// after `claim_after` and is killed after `delay`, so the kill lands
    /// before, during or after its claim. The survivor claims the other side
    /// at once and waits on it (receiving everything acknowledged, or
    /// sending into a ring that fills): it must end in `Disconnected` within
    /// the bound after the kill, also when the victim never claimed.
    /// `namespaced`: the victim is process 1 of a new PID namespace, whose
    /// pid means nothing here.
    fn channel_peer_killed_early(
        &self,
        run: u32,
        delay: Duration,
        claim_after: Duration,
        bytes: bool,
        victim_sends: bool,
        namespaced: bool,
    ) -> Outcome {
        let chan = match AnyChannel::new(bytes) {
            Ok(c) => c,
            Err(e) => return Failed(e),
        };
        let board = &self.board;
        let body = || {
            hold(claim_after);
            let mut msg = Vec::new();
            if victim_sends {
                let mut tx = chan.sender().expect("claim the sender");
                board.set_ready();
                for seq in 0.. {
                    encode(run, seq, true, &mut msg);
                    if tx.send(&msg, Duration::from_secs(60)).is_err() {
                        panic!("send");
                    }
                    board.ack(seq + 1);
                }
            } else {
                let mut rx = chan.receiver().expect("claim the receiver");
                board.set_ready();
                let mut order = InOrder::new(run);
                loop {
                    rx.recv(&mut msg, Duration::from_secs(60)).unwrap_or_else(|_| panic!("receive"));
                    assert!(order.take(&msg).is_ok(), "a wrong message");
                    board.ack(order.next);
                }
            }
        };
        let (mut victim, target) = if namespaced {
            match ipc_kit_tests::fork_in_new_pid_namespace(body) {
                Some(started) => started,
                None => return Failed("no PID namespace could be made".into()),
            }
        } else {
            let victim = fork(body);
            let pid = victim.pid();
            (victim, pid)
        };
        let timer = kill_after(target, delay);
        let t = Instant::now();
        let end = if victim_sends {
            let mut rx = match chan.receiver() {
                Ok(rx) => rx,
                Err(e) => return Failed(e),
            };
            let mut order = InOrder::new(run);
            drain_channel(&mut rx, &mut order, "no Disconnected after the sender died")
                .map(|()| order.check(self.board.acked(), "Disconnected"))
        } else {
            let mut tx = match chan.sender() {
                Ok(tx) => tx,
                Err(e) => return Failed(e),
            };
            let mut msg = Vec::new();
            let end = (0..).find_map(|seq| {
                encode(run, seq, true, &mut msg);
                tx.send(&msg, BOUND).err()
            });
            match end {
                Some(ChannelEnd::Disconnected) => Ok(Survived("Disconnected")),
                Some(ChannelEnd::Timeout) => Err(Hung("a send blocked on a dead receiver".into())),
                Some(ChannelEnd::Other(e)) => Err(Failed(e)),
                None => Err(Failed("unreachable: sends never end".into())),
            }
        };
        noticed();
        let _ = timer.join();
        let _ = kill(target, Signal::SIGKILL);
        let reaped = victim.wait_timeout(BOUND);
        let outcome = match end {
            Ok(_) if t.elapsed() > delay + BOUND => Hung(format!("Disconnected only after {:?}", t.elapsed())),
            Ok(Survived(_)) if !board.ready() => Survived("Disconnected, the victim killed before it claimed"),
            Ok(o) | Err(o) => o,
        };
        match (reaped, namespaced) {
            (None, _) => Hung("the victim could not be reaped".into()),
            (Some(Exit::Signaled(Signal::SIGKILL)), _) | (Some(_), true) => outcome,
            (Some(other), false) => Failed(format!("the victim ended with {other:?} before the kill")),
        }
    }

    /// The victim makes a named channel and stops itself (SIGSTOP) at
    /// `point` inside the making, for `stall`; meanwhile the survivor tries
    /// to open it by name, over and over. It must never find it half made
    /// (only "not found" until the creator goes on), and once the creator
    /// is continued both use the one channel: everything sent arrives, in
    /// order, then `Disconnected`.
    fn named_creator_stalled(&self, run: u32, point: &'static str, stall: Duration, bytes: bool) -> Outcome {
        const N: u64 = 200;
        let (board, name) = (&self.board, self.posix_name.as_str());
        let mut victim = fork(|| {
            ipc_kit::sync::failpoint::arm_stop(point);
            let chan = AnyChannel::named(bytes, name, Make::Create).unwrap_or_else(|e| board.fail_setup(e));
            let mut tx = chan.sender().expect("claim the sender");
            board.set_ready();
            let mut msg = Vec::new();
            for seq in 0..N {
                encode(run, seq, true, &mut msg);
                if tx.send(&msg, BOUND).is_err() {
                    panic!("send");
                }
                board.ack(seq + 1);
            }
        });
        if !wait_stopped(victim.pid()) {
            return Failed(format!("the creator never stopped at {point}"));
        }
        let stopped = Instant::now();
        let mut continued = false;
        let chan = loop {
            if !continued && stopped.elapsed() >= stall {
                let _ = kill(victim.pid(), Signal::SIGCONT);
                continued = true;
            }
            let named = !matches!(ipc_kit::shm::PosixShm::open(name), Err(ipc_kit::shm::Error::NotFound { .. }));
            match named.then(|| AnyChannel::named(bytes, name, Make::Open)) {
                None => {}
                Some(Ok(chan)) if continued => break chan,
                Some(Ok(_)) => return Corrupted(format!("opened while its creator was stopped at {point}")),
                Some(Err(e)) => return Corrupted(format!("found it half made at {point}: {e}")),
            }
            if stopped.elapsed() > stall + BOUND {
                return Hung(format!("not there {:?} after the creator went on", stopped.elapsed()));
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let mut rx = match chan.receiver() {
            Ok(rx) => rx,
            Err(e) => return Failed(e),
        };
        let mut order = InOrder::new(run);
        let end = match drain_channel(&mut rx, &mut order, "the creator's messages stopped") {
            Ok(()) if order.next == N => Survived("waited for; nothing half made seen"),
            Ok(()) => Corrupted(format!("{} of {N} messages", order.next)),
            Err(o) => o,
        };
        match victim.wait_timeout(BOUND) {
            Some(Exit::Code(0)) => end,
            Some(other) => Failed(format!("the creator ended with {other:?}")),
            None => Hung("the creator did not finish".into()),
        }
    }

    /// The verdict when the victim never got ready: survived if the early
    /// kill timer killed it in its set-up, failed if the set-up failed.
    fn killed_setting_up(
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

    /// The victim locks, changes the first counter, then the second, and
    /// unlocks, over and over, and dies. The survivor's lock returns
    /// `OwnerDied` when the victim held it (the counters may then differ
    /// by one, which it repairs) and a plain guard otherwise (they must be
    /// equal).
    fn robust_holder_killed(&self, delay: Duration) -> Outcome {
        let m: &RobustMutex<[u64; 2]> = match self.robust.shared::<RobustMutex<[u64; 2]>>(0) {
            Ok(m) => m.get(),
            Err(e) => return Failed(format!("the mutex in shared memory: {e}")),
        };
        let board = &self.board;
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
    fn segment_creator_killed(&self, delay: Duration, posix: bool, failpoint: Option<&'static str>) -> Outcome {
        let (key, name) = (self.key, self.posix_name.as_str());
        let open = || -> Result<(Box<dyn std::any::Any>, Mapping), String> {
            if posix {
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
        let board = &self.board;
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
    fn sem_holder_killed(&mut self, delay: Duration, in_creation: bool) -> Outcome {
        if in_creation {
            return self.sem_creator_killed();
        }
        if self.sem.is_none() {
            match SemaphoreSet::create(self.key, &[1], 0o600) {
                Ok(s) => self.sem = Some(s),
                Err(e) => return Failed(format!("semget: {e}")),
            }
        }
        let key = self.key;
        let board = &self.board;
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
        let Some(set) = &self.sem else { return Failed("no set".into()) };
        let how = if self.board.ready() { "held when killed, given back" } else { "not held when killed" };
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
    fn sem_creator_killed(&mut self) -> Outcome {
        if let Some(old) = self.sem.take()
            && let Err(e) = old.remove()
        {
            return Failed(format!("remove the set: {e}"));
        }
        let key = self.key;
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
            Ok(set) => self.sem.insert(set),
            Err(e) => return Failed(format!("open_or_create after the creator died: {e}")),
        };
        match set.value(0) {
            Ok(_) if start.elapsed() > BOUND => Hung(format!("taken over only after {:?}", start.elapsed())),
            Ok(1) => Survived("creator killed before initializing, taken over"),
            other => Corrupted(format!("the taken-over set holds {other:?}, not 1")),
        }
    }

    /// After the last run: the queues that killed victims made are still
    /// there (nobody owned them at the end); take them over and remove
    /// them, as `ipc-kit rm` would.
    fn clean_up(&mut self) -> Result<(), String> {
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

/// How many requests each honest client of the FIFO server makes per run.
const FIFO_REQUESTS: u64 = 40;

/// An honest FIFO client's state, in board word 16 + its number.
const CLIENT_STARTED: u64 = 1;
const CLIENT_DONE: u64 = 2;
const CLIENT_TIMED_OUT: u64 = 3;
const CLIENT_WRONG_REPLY: u64 = 4;

/// An honest client of the FIFO server at `path`, number `c`: `count`
/// checksummed requests (without a count, requests until it is killed),
/// each waiting at most the bound for its reply, the request reversed.
fn honest_client(path: &Path, run: u32, c: u32, count: Option<u64>, board: &Board) {
    let state = board.word(16 + c as usize);
    state.store(CLIENT_STARTED, Ordering::Release);
    let mut client = FifoClient::connect(path).expect("connect to the server");
    let max = client.max_request();
    let mut msg = Vec::new();
    for seq in 0..count.unwrap_or(u64::MAX) {
        let len = if seq % 7 == 3 { max } else { 24 + ((seq * 373 + u64::from(c) * 97) % 1500) as usize };
        encode_len(run * 16 + c, seq, len.min(max), &mut msg);
        match client.request_timeout(&msg, BOUND) {
            Ok(reply) if reply.iter().rev().eq(msg.iter()) => {}
            Ok(_) => return state.store(CLIENT_WRONG_REPLY, Ordering::Release),
            Err(ipc_kit::fifo::Error::Timeout { .. }) => return state.store(CLIENT_TIMED_OUT, Ordering::Release),
            Err(e) => panic!("client {c}, request {seq}: {e}"),
        }
    }
    state.store(CLIENT_DONE, Ordering::Release);
}

/// A request frame (magic, length, FNV-1a check of the length and the
/// body, body) with a well-formed check around a malformed request: a
/// reply FIFO not named after the server's, or a path longer than the
/// body.
fn malformed_request_frame(rng: &mut Rng) -> Vec<u8> {
    let path: &[u8] = b"/tmp/another-server.reply.1.2";
    let mut body = rng.next_u64().to_le_bytes()[..4].to_vec();
    body.extend_from_slice(&rng.next_u64().to_le_bytes()); // a ticket
    let claimed = if rng.chance(2) { path.len() as u16 } else { u16::MAX };
    body.extend_from_slice(&claimed.to_le_bytes());
    body.extend_from_slice(path);
    let n = rng.below(100) as usize;
    body.extend(rng.bytes(n));
    let len = (body.len() as u32).to_le_bytes();
    let mut frame = b"IKfq".to_vec();
    frame.extend_from_slice(&len);
    frame.extend_from_slice(&checksum(&[&len[..], &body].concat()).to_le_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// A garbage writer on the FIFO server's request FIFO at `path`, until
/// killed: random bytes, frame starts claiming lengths past the limit,
/// frames cut short and well-checked frames with malformed requests, in
/// writes of up to 64 KiB, which are not atomic and may be cut anywhere by
/// the kill.
fn write_garbage_forever(path: &Path, seed: u64, board: &Board) {
    let w = Fifo::open(path).and_then(|f| f.try_open_writer()).unwrap_or_else(|e| board.fail_setup(e.to_string()));
    let mut rng = Rng::new(seed);
    let mut junk = Vec::new();
    loop {
        junk.clear();
        let size = 1 + rng.below(1 << 16) as usize;
        while junk.len() < size {
            match rng.below(4) {
                0 => {
                    let n = 1 + rng.below(4096) as usize;
                    junk.extend(rng.bytes(n));
                }
                1 => {
                    junk.extend_from_slice(b"IKfq");
                    let len = [u32::MAX, 4081, 1 << 31, rng.next_u64() as u32][rng.below(4) as usize];
                    junk.extend_from_slice(&len.to_le_bytes());
                    junk.extend(rng.bytes(8));
                }
                2 => {
                    let frame = malformed_request_frame(&mut rng);
                    let cut = rng.below(frame.len() as u64) as usize;
                    junk.extend_from_slice(&frame[..cut]);
                }
                _ => junk.extend(malformed_request_frame(&mut rng)),
            }
        }
        (&w).write_all(&junk).expect("write garbage");
    }
}

/// Reaps a victim that was sent SIGKILL.
fn reap_killed(mut victim: Forked) -> Result<(), Outcome> {
    match victim.wait_timeout(BOUND) {
        Some(Exit::Signaled(Signal::SIGKILL)) => Ok(()),
        Some(other) => Err(Failed(format!("a victim ended with {other:?} before the kill"))),
        None => Err(Hung("a victim could not be reaped".into())),
    }
}

/// Either queue, with the operations the scenarios need.
enum Queue {
    Sysv(SysvQueue),
    Posix(PosixQueue),
}

enum QueueError {
    Timeout,
    Other(String),
}

impl Queue {
    fn send(&self, msg: &[u8]) -> Result<(), String> {
        match self {
            Queue::Sysv(q) => q.send(1, msg).map_err(|e| format!("msgsnd: {e}")),
            Queue::Posix(q) => q.send(msg, 0).map_err(|e| format!("mq_send: {e}")),
        }
    }

    fn send_timeout(&self, msg: &[u8], t: Duration) -> Result<(), QueueError> {
        let r = match self {
            Queue::Sysv(q) => q.send_timeout(1, msg, t),
            Queue::Posix(q) => q.send_timeout(msg, 0, t),
        };
        r.map_err(QueueError::from)
    }

    fn recv(&self, buf: &mut Vec<u8>, t: Duration) -> Result<(), QueueError> {
        let r = match self {
            Queue::Sysv(q) => q.recv_vec_timeout(Selector::Any, buf, t).map(drop),
            Queue::Posix(q) => q.recv_vec_timeout(buf, t).map(drop),
        };
        r.map_err(QueueError::from)
    }
}

impl From<ipc_kit::msgq::Error> for QueueError {
    fn from(e: ipc_kit::msgq::Error) -> QueueError {
        match e {
            ipc_kit::msgq::Error::Timeout => QueueError::Timeout,
            other => QueueError::Other(other.to_string()),
        }
    }
}

/// Either shared-memory channel, carrying 64-byte records.
enum AnyChannel {
    Slots(Channel<[u8; FIXED]>),
    Bytes(ByteChannel),
}

enum AnySender {
    Slots(ipc_kit::shm::Sender<[u8; FIXED]>),
    Bytes(ipc_kit::shm::ByteSender),
}

enum AnyReceiver {
    Slots(ipc_kit::shm::Receiver<[u8; FIXED]>),
    Bytes(ipc_kit::shm::ByteReceiver),
}

enum ChannelEnd {
    Disconnected,
    Timeout,
    Other(String),
}

impl From<ipc_kit::shm::Error> for ChannelEnd {
    fn from(e: ipc_kit::shm::Error) -> ChannelEnd {
        match e {
            ipc_kit::shm::Error::Disconnected => ChannelEnd::Disconnected,
            ipc_kit::shm::Error::Timeout => ChannelEnd::Timeout,
            other => ChannelEnd::Other(other.to_string()),
        }
    }
}

/// How a victim or survivor comes to a named channel.
#[derive(Clone, Copy)]
enum Make {
    Create,
    Reclaim,
    Open,
}

impl AnyChannel {
    fn named(bytes: bool, name: &str, make: Make) -> Result<AnyChannel, String> {
        let made = match (make, bytes) {
            (Make::Create, false) => Channel::create(name, 16).map(AnyChannel::Slots),
            (Make::Create, true) => ByteChannel::create(name, 4096).map(AnyChannel::Bytes),
            (Make::Reclaim, false) => Channel::create_or_reclaim(name, 16).map(AnyChannel::Slots),
            (Make::Reclaim, true) => ByteChannel::create_or_reclaim(name, 4096).map(AnyChannel::Bytes),
            (Make::Open, false) => Channel::open(name).map(AnyChannel::Slots),
            (Make::Open, true) => ByteChannel::open(name).map(AnyChannel::Bytes),
        };
        made.map_err(|e| format!("named channel {name}: {e}"))
    }

    fn new(bytes: bool) -> Result<AnyChannel, String> {
        if bytes {
            ByteChannel::anonymous(4096).map(AnyChannel::Bytes).map_err(|e| format!("byte channel: {e}"))
        } else {
            Channel::anonymous(16).map(AnyChannel::Slots).map_err(|e| format!("channel: {e}"))
        }
    }

    fn sender(&self) -> Result<AnySender, String> {
        match self {
            AnyChannel::Slots(c) => c.sender().map(AnySender::Slots),
            AnyChannel::Bytes(c) => c.sender().map(AnySender::Bytes),
        }
        .map_err(|e| format!("claim the sender: {e}"))
    }

    fn receiver(&self) -> Result<AnyReceiver, String> {
        match self {
            AnyChannel::Slots(c) => c.receiver().map(AnyReceiver::Slots),
            AnyChannel::Bytes(c) => c.receiver().map(AnyReceiver::Bytes),
        }
        .map_err(|e| format!("claim the receiver: {e}"))
    }
}

impl AnySender {
    fn send(&mut self, msg: &[u8], t: Duration) -> Result<(), ChannelEnd> {
        match self {
            AnySender::Slots(tx) => {
                let v: [u8; FIXED] = msg.try_into().map_err(|_| ChannelEnd::Other("record size".into()))?;
                tx.send_timeout(v, t)
            }
            AnySender::Bytes(tx) => tx.send_timeout(msg, t),
        }
        .map_err(ChannelEnd::from)
    }
}

impl AnyReceiver {
    fn recv(&mut self, buf: &mut Vec<u8>, t: Duration) -> Result<(), ChannelEnd> {
        match self {
            AnyReceiver::Slots(rx) => rx.recv_timeout(t).map(|v| {
                buf.clear();
                buf.extend_from_slice(&v);
            }),
            AnyReceiver::Bytes(rx) => rx.recv_timeout(buf, t).map(drop),
        }
        .map_err(ChannelEnd::from)
    }
}

#[derive(Default)]
struct Tally {
    runs: u32,
    survived: u32,
    /// How the survivals went, by what the survivor saw.
    how: std::collections::BTreeMap<&'static str, u32>,
    hung: u32,
    corrupted: u32,
    failed: u32,
    notes: Vec<String>,
}

struct Options {
    runs: u32,
    seed: u64,
    only: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let mut opts = Options { runs: 200, seed, only: None };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |what: &str| args.next().ok_or(format!("{arg} needs {what}"));
        match arg.as_str() {
            "--quick" => opts.runs = 20,
            "--runs" => opts.runs = value("a number")?.parse().map_err(|_| "--runs: not a number")?,
            "--seed" => opts.seed = value("a number")?.parse().map_err(|_| "--seed: not a number")?,
            "--only" => opts.only = Some(value("a text")?),
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ipc-kit-faults: {e}");
            return ExitCode::from(2);
        }
    };
    println!("seed {} (repeat with --seed {})", opts.seed, opts.seed);
    println!(
        "{:<40} {:>5} {:>8} {:>5} {:>9} {:>6} {:>8}",
        "scenario", "runs", "survived", "hung", "corrupted", "failed", "wall"
    );
    let mut rng = Rng::new(opts.seed);
    let mut all = Tally::default();
    let mut bad = false;
    for scenario in Scenario::ALL {
        if opts.only.as_ref().is_some_and(|o| !scenario.name().contains(o.as_str())) {
            continue;
        }
        if let Some(why) = scenario.unavailable() {
            println!("{:<40} skipped: {why}", scenario.name());
            continue;
        }
        let mut campaign = Campaign::new();
        if let Ok(mut slowest) = SLOWEST.lock() {
            *slowest = Duration::ZERO;
        }
        let mut t = Tally::default();
        let start = Instant::now();
        for run in 0..opts.runs {
            t.runs += 1;
            match campaign.run(scenario, run, &mut rng) {
                Survived(how) => {
                    t.survived += 1;
                    *t.how.entry(how).or_default() += 1;
                }
                Hung(why) => {
                    t.hung += 1;
                    t.notes.push(format!("run {run}: hung: {why}"));
                }
                Corrupted(why) => {
                    t.corrupted += 1;
                    t.notes.push(format!("run {run}: corrupted: {why}"));
                }
                Failed(why) => {
                    t.failed += 1;
                    t.notes.push(format!("run {run}: failed: {why}"));
                }
            }
        }
        if let Err(e) = campaign.clean_up() {
            t.failed += 1;
            t.notes.push(format!("clean-up: {e}"));
        }
        println!(
            "{:<40} {:>5} {:>8} {:>5} {:>9} {:>6} {:>6.1} s",
            scenario.name(),
            t.runs,
            t.survived,
            t.hung,
            t.corrupted,
            t.failed,
            start.elapsed().as_secs_f64()
        );
        let how: Vec<String> = t.how.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("    {}", how.join(", "));
        let slowest = SLOWEST.lock().map_or(Duration::ZERO, |s| *s);
        if !slowest.is_zero() {
            println!("    slowest to see the death after the kill: {:.1} ms", slowest.as_secs_f64() * 1e3);
        }
        for note in t.notes.iter().take(5) {
            println!("    {note}");
        }
        bad |= t.survived != t.runs;
        all.runs += t.runs;
        all.survived += t.survived;
        all.hung += t.hung;
        all.corrupted += t.corrupted;
        all.failed += t.failed;
    }
    println!(
        "{} runs: {} survived, {} hung, {} corrupted, {} failed otherwise",
        all.runs, all.survived, all.hung, all.corrupted, all.failed
    );
    if bad { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
