//! The writer of two unrelated programs that share a System V segment,
//! found through an `ftok` key, guarded by a System V semaphore set.
//!
//! ```text
//! touch /tmp/ftok-demo
//! cargo run -p ipc-shm --example ftok_reader /tmp/ftok-demo &
//! cargo run -p ipc-shm --example ftok_writer /tmp/ftok-demo hello world
//! ```
//!
//! Either may start first: the writer waits up to 30 s for the reader to
//! make the segment and the set. It sends each MESSAGE (at most 63, of at
//! most 60 bytes each), closes, and waits until the reader has taken them
//! all.
//!
//! Who removes what: the reader makes both objects and removes them when
//! it ends. The writer removes them only when the kernel shows that the
//! reader died (its `SEM_UNDO` hold on the `READER` semaphore gone back to
//! 0). A reader killed while no writer is there leaves them for the next
//! reader of that path to remove, or the next writer (unless the reader
//! died before it let the lock go: that writer gives up after 30 s), or
//! `ipc-kit rm`.
//!
//! Killed at any point, the writer leaves nothing wrong behind: the kernel
//! gives back its lock, and adds the unit to `READY` that tells the reader
//! the writer is gone (see `arm` below).

use std::process::ExitCode;

use ipc_shm::{Mapping, SysvSegment};
use ipc_sync::{Error, SemOp, SemaphoreSet};

#[path = "ftok/protocol.rs"]
mod protocol;

use protocol::{CLOSED, COUNT, LOCK, PATIENCE, READER, READY, SIZE, WRITER};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((path, messages)) = args.split_first() else {
        eprintln!("usage: ftok_writer PATH MESSAGE...");
        return ExitCode::from(2);
    };
    match write(path, messages) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ftok_writer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write(path: &str, messages: &[String]) -> Result<()> {
    if messages.len() > protocol::CAPACITY {
        return Err(format!("at most {} messages", protocol::CAPACITY).into());
    }
    if let Some(m) = messages.iter().find(|m| m.len() > protocol::MAX_MESSAGE) {
        return Err(format!("{m:?} is longer than {} bytes", protocol::MAX_MESSAGE).into());
    }
    let key = protocol::key(path)?;
    let set = wait_for_the_reader(key)?;
    // The reader makes the segment before the set: it is there unless the
    // reader has removed both since.
    let segment = SysvSegment::open(key, SIZE).map_err(|e| format!("the reader is gone: {e}"))?;
    let map = segment.attach()?;
    arm(&set)?;
    let closed = map.read::<u32>(CLOSED)? != 0;
    set.post(LOCK)?;
    if closed {
        return Err("the reader has had a whole stream already and is ending".into());
    }
    for message in messages {
        send(&set, &map, message.as_bytes())?;
    }
    // Close: mark the stream ended, let the lock go, and give the reader
    // its last unit. That unit carries `SEM_UNDO`, which cancels the
    // adjustment `arm` made: from here on, this process's death adds
    // nothing.
    set.wait_timeout(LOCK, PATIENCE)?;
    map.write(CLOSED, &1u32)?;
    set.apply(&[SemOp::post(LOCK), SemOp::add(READY, 1)])?;
    eprintln!("ftok_writer: sent {} messages", messages.len());
    wait_for_the_reader_to_finish(set, segment)
}

/// Opens the set, waiting up to `PATIENCE` for a reader to make it.
fn wait_for_the_reader(key: ipc_sync::Key) -> Result<SemaphoreSet> {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match SemaphoreSet::open(key) {
            Err(Error::NotFound { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(Error::NotFound { .. }) => return Err("no reader came within 30 s".into()),
            other => return Ok(other?),
        }
    }
}

/// Takes the lock and the writer's place, and arms the kernel to tell the
/// reader if this process dies, all in one operation: it adds 1 to
/// `READY` without `SEM_UNDO` and takes 1 with it, so `READY` is as
/// before and the kernel will add 1 when this process exits. Waits while
/// another writer is there.
fn arm(set: &SemaphoreSet) -> Result<()> {
    let ops = [
        SemOp::wait(LOCK),
        SemOp::add(WRITER, 0),
        SemOp::add(WRITER, 1),
        SemOp::add(READY, 1).no_undo(),
        SemOp::add(READY, -1),
    ];
    match set.apply_timeout(&ops, PATIENCE) {
        Err(Error::Removed { .. }) => Err("the reader is gone".into()),
        other => Ok(other?),
    }
}

/// Appends one message under the lock, then lets the lock go and gives
/// the reader a unit, in one operation.
fn send(set: &SemaphoreSet, map: &Mapping, message: &[u8]) -> Result<()> {
    set.wait_timeout(LOCK, PATIENCE)?;
    let index = map.read::<u32>(COUNT)? as usize;
    if index >= protocol::CAPACITY {
        set.post(LOCK)?;
        return Err("the segment is full".into());
    }
    map.write(protocol::slot(index), &(message.len() as u32))?;
    map.write_bytes(protocol::slot(index) + 4, message)?;
    // The count last: a writer killed before this line left no message.
    map.write(COUNT, &(index as u32 + 1))?;
    set.apply(&[SemOp::post(LOCK), SemOp::post(READY).no_undo()])?;
    Ok(())
}

/// Waits until the reader ends: it removes the set when it has taken
/// everything, and its death gives `READER` back to 0, in which case the
/// objects are this process's to remove.
fn wait_for_the_reader_to_finish(set: SemaphoreSet, segment: SysvSegment) -> Result<()> {
    match set.apply_timeout(&[SemOp::add(READER, 0)], PATIENCE) {
        Err(Error::Removed { .. }) => Ok(()),
        Err(Error::Timeout { .. }) => {
            Err("the reader has not finished within 30 s; it removes the objects when it ends".into())
        }
        Err(e) => Err(e.into()),
        Ok(()) => {
            set.remove()?;
            segment.remove()?;
            Err("the reader died; the segment and the set are removed".into())
        }
    }
}
