//! FIFOs: the creator and writer killed, and the reader killed, with the
//! one path of a scenario made again in every run.

use std::time::{Duration, Instant};

use ipc_kit::fifo::Fifo;
use ipc_kit::pipe::{FrameReader, FrameWriter};
use ipc_kit_tests::{Rng, fork};

use crate::harness::{
    BOUND, Campaign, Failed, Hung, InOrder, Outcome, Survived, bury, bury_and_check, kill_after, wait_ready,
};
use crate::pipe::{Size, drain_frames, message, read_records_forever, write_until_broken};

/// When the writer's kill timer starts.
#[derive(Clone, Copy, Debug)]
enum KillFrom {
    /// At the victim's start: the kill may land in making or opening.
    Start,
    /// Once both ends are open.
    BothOpen,
}

/// The victim makes the FIFO under the campaign's one path (replacing
/// what a killed predecessor left), opens it and writes frames; the
/// survivor opens it by path and reads. A victim killed before making
/// or opening it leaves the survivor nothing to read, which it learns
/// within the bound.
pub(crate) fn writer_killed(c: &mut Campaign, run: u32, delay: Duration, rng: &mut Rng) -> Outcome {
    // One run in four kills the victim counting from its start (so that
    // the kill may land in making or opening the FIFO); the others from
    // when both ends are open.
    let from = if rng.below(4) == 0 { KillFrom::Start } else { KillFrom::BothOpen };
    let path = c.dir.path().join("fifo");
    let board = &c.board;
    let mut victim = fork(|| {
        let fifo = Fifo::create_replacing(&path, 0o600).expect("make the FIFO");
        board.set_made();
        let w = fifo.open_writer_timeout(BOUND).expect("open the FIFO for writing");
        board.set_ready();
        let mut frames = FrameWriter::new(&w);
        let mut msg = Vec::new();
        for seq in 0.. {
            message(run, seq, if seq % 2 == 1 { Size::Big } else { Size::Small }, &mut msg);
            frames.send(&msg).expect("send a frame");
            board.ack(seq + 1);
        }
    });
    let early_timer = matches!(from, KillFrom::Start).then(|| kill_after(victim.pid(), delay));
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
    bury_and_check(c, victim, timer, &order, end)
}

/// The survivor makes the FIFO under the campaign's one path (plain
/// `create`: the previous run's must be gone) and writes records; the
/// victim opens it by path, reads and checks them, and is killed (from
/// its start, so that the kill may land in its open). The survivor's
/// writes end in `BrokenPipe`, or it finds nobody ever opened the FIFO.
pub(crate) fn reader_killed(c: &mut Campaign, run: u32, delay: Duration, _: &mut Rng) -> Outcome {
    let path = c.dir.path().join("fifo-r");
    let fifo = match Fifo::create(&path, 0o600) {
        Ok(f) => f,
        Err(e) => return Failed(format!("make the FIFO: {e}")),
    };
    let board = &c.board;
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
