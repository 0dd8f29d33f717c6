//! The reader of two unrelated programs that share a System V segment,
//! found through an `ftok` key, guarded by a System V semaphore set. It
//! prints each message the writer sends, one a line.
//!
//! ```text
//! touch /tmp/ftok-demo
//! cargo run -p ipc-shm --example ftok_writer /tmp/ftok-demo hello world &
//! cargo run -p ipc-shm --example ftok_reader /tmp/ftok-demo
//! ```
//!
//! Either may start first. The reader makes the segment and the set under
//! the path's key and removes both when it ends, whichever way it ends but
//! by a kill: when the writer has closed (exit 0), when the writer died
//! (exit 1: the kernel adds a unit to `READY` when the writer dies, and
//! its `WRITER` hold goes back to 0), or when nothing came for 30 s (exit
//! 1). Leftovers of a reader that was killed are removed by the next
//! reader of the path (or by a writer, which removes them when it finds
//! the reader dead). One reader per path at a time: a second one is
//! refused while the first lives; one that comes in the moment between the
//! first's making the set and taking its place there takes the objects
//! over as leftovers, and the first ends with an error.

use std::io::Write;
use std::process::ExitCode;

use ipc_shm::{Mapping, SysvSegment};
use ipc_sync::{Error, Key, SemOp, SemaphoreSet};

#[path = "ftok/protocol.rs"]
mod protocol;

use protocol::{CLOSED, COUNT, LOCK, PATIENCE, READER, READY, SIZE, WRITER};

/// The values the set is made with: every one 0, so the lock is held (by
/// this process, until it has taken its place).
const VALUES: [u16; 4] = [0; 4];

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path] = args.as_slice() else {
        eprintln!("usage: ftok_reader PATH");
        return ExitCode::from(2);
    };
    match read(path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ftok_reader: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read(path: &str) -> Result<()> {
    let key = protocol::key(path)?;
    remove_leftovers(key)?;
    // This process made both, so dropping the handles removes them, on
    // every way out of this function: the set first (its removal ends a
    // waiting writer), then the segment.
    let segment = SysvSegment::create(key, SIZE, 0o600)?;
    let set = SemaphoreSet::create(key, &VALUES, 0o600)?;
    // The reader's place, held with SEM_UNDO, and the lock let go: a writer
    // gets the lock only once the reader is known to be there.
    set.apply(&[SemOp::add(READER, 1), SemOp::add(LOCK, 1).no_undo()])?;
    let map = segment.attach()?;
    let mut next = 0;
    let mut out = std::io::stdout().lock();
    loop {
        // A unit and the lock, together.
        match set.apply_timeout(&[SemOp::wait(READY).no_undo(), SemOp::wait(LOCK)], PATIENCE) {
            Err(Error::Timeout { .. }) => return Err("nothing came within 30 s".into()),
            other => other?,
        }
        let taken = take_new(&map, &mut next);
        let closed = map.read::<u32>(CLOSED)? != 0;
        set.post(LOCK)?;
        for message in taken? {
            writeln!(out, "{}", String::from_utf8_lossy(&message))?;
        }
        out.flush()?;
        if closed {
            return Ok(());
        }
        // A unit and no close: the writer died, if it is no longer there
        // (it gave the unit, and its place back, as it died).
        if set.value(WRITER)? == 0 {
            return Err(format!("the writer died after {next} messages").into());
        }
    }
}

/// The whole messages from `next` on, checked against the segment's
/// bounds: the writer is another program, and need not be this one.
fn take_new(map: &Mapping, next: &mut usize) -> Result<Vec<Vec<u8>>> {
    let count = map.read::<u32>(COUNT)? as usize;
    if count > protocol::CAPACITY {
        return Err(format!("the segment claims {count} messages, more than it holds").into());
    }
    let mut taken = Vec::new();
    while *next < count {
        let len = map.read::<u32>(protocol::slot(*next))? as usize;
        if len > protocol::MAX_MESSAGE {
            return Err(format!("message {} claims {len} bytes", *next).into());
        }
        let mut message = vec![0; len];
        map.read_bytes(protocol::slot(*next) + 4, &mut message)?;
        taken.push(message);
        *next += 1;
    }
    Ok(taken)
}

/// Removes what a killed reader left under `key`: a set whose reader's
/// place is free (the kernel gave it back at the death), and a segment.
/// A live reader's set is left alone, and this one refused.
fn remove_leftovers(key: Key) -> Result<()> {
    match SemaphoreSet::open(key) {
        Ok(set) => match set.try_apply(&[SemOp::add(READER, 0), SemOp::add(READER, 1)]) {
            Err(Error::WouldBlock { .. }) => return Err("another reader of this path is running".into()),
            Err(e) => return Err(e.into()),
            Ok(()) => set.remove()?,
        },
        Err(Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    match SysvSegment::open(key, 0) {
        Ok(segment) => Ok(segment.remove()?),
        Err(ipc_shm::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
