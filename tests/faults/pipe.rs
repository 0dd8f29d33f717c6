//! Pipes: a writer killed while it sends frames, a reader killed while it
//! takes records. The FIFO scenarios share the readers and writers here.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ipc_kit::pipe::{FrameReader, FrameWriter, PipeReader, PipeWriter};
use ipc_kit_tests::record::{FIXED, encode, encode_len};
use ipc_kit_tests::{Rng, close_inherited, fork};

use crate::harness::{
    BOUND, Board, Campaign, Failed, Hung, InOrder, Outcome, Survived, bury, bury_and_check, kill_after, noticed,
};

/// A writer sends frames (acknowledging each after `send` returns) and
/// dies; the reader gets every acknowledged frame intact, then end of
/// file or a truncated frame.
pub(crate) fn writer_killed(c: &mut Campaign, run: u32, delay: Duration, rng: &mut Rng) -> Outcome {
    let size = Size::pick(rng);
    let (r, w) = match ipc_kit::pipe::pipe() {
        Ok(p) => p,
        Err(e) => return Failed(format!("pipe: {e}")),
    };
    let board = &c.board;
    let victim = fork(|| {
        let mut frames = FrameWriter::new(&w);
        let mut msg = Vec::new();
        for seq in 0.. {
            message(run, seq, size, &mut msg);
            frames.send(&msg).expect("send a frame");
            board.ack(seq + 1);
        }
    });
    drop(w);
    let timer = kill_after(victim.pid(), delay);
    let mut frames = FrameReader::new(&r);
    let mut order = InOrder::new(run);
    let end = drain_frames(&mut frames, &mut order);
    bury_and_check(c, victim, timer, &order, end)
}

/// A reader takes records and dies; the writer gets `BrokenPipe`.
pub(crate) fn reader_killed(c: &mut Campaign, run: u32, delay: Duration, _: &mut Rng) -> Outcome {
    let (r, w) = match ipc_kit::pipe::pipe() {
        Ok(p) => p,
        Err(e) => return Failed(format!("pipe: {e}")),
    };
    let board = &c.board;
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

/// Reads frames into `order` until the end: end of file, or a frame the
/// dead writer left half-written.
pub(crate) fn drain_frames(
    frames: &mut FrameReader<&PipeReader>,
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
pub(crate) fn read_records_forever(r: &PipeReader, run: u32, board: &Board) -> ! {
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
pub(crate) fn write_until_broken(w: &PipeWriter, run: u32, kill: Instant) -> Outcome {
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

/// How large the messages of a pipe or FIFO are.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Size {
    /// Fixed 64-byte records.
    Small,
    /// Larger than a pipe's atomic write (4 KiB to 64 KiB), so that a
    /// kill can cut one in half.
    Big,
}

impl Size {
    /// Either, at even odds.
    pub(crate) fn pick(rng: &mut Rng) -> Size {
        if rng.below(2) == 0 { Size::Big } else { Size::Small }
    }
}

/// Message `seq` of `size`.
pub(crate) fn message(run: u32, seq: u64, size: Size, out: &mut Vec<u8>) {
    match size {
        Size::Big => encode_len(run, seq, 4096 + (seq % 3) as usize * 30_000, out),
        Size::Small => encode(run, seq, true, out),
    }
}
