//! Frame readers and writers for pollers: a frame reader is readable while
//! a whole frame waits in what it read ahead, whatever its pipe says.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ipc_sync::ready::{Interest, Pollable, Readiness, Source};

use super::{FRAME_HEADER, FrameReader, FrameWriter};

/// A frame reader's [`Readiness`]: ready while a whole frame, or a length
/// over the maximum, waits in what it read ahead.
#[derive(Debug, Default)]
pub(super) struct AheadReady(AtomicBool);

impl Readiness for AheadReady {
    fn arm(&self) -> bool {
        // Relaxed: the flag is written by the thread that receives, which
        // is the one that polls (or one that handed the reader over with
        // the synchronization that takes).
        self.0.load(Ordering::Relaxed)
    }
}

/// After every receive: what the reader's pollers are told.
pub(super) fn note<R>(reader: &FrameReader<R>) {
    if let Some(ready) = reader.ahead_ready.get() {
        // Relaxed: see `AheadReady::arm`.
        ready.0.store(reader.frame_ahead(), Ordering::Relaxed);
    }
}

impl<R> FrameReader<R> {
    /// Whether the next receive finds what it returns in the bytes read
    /// ahead: a whole frame, or a length over the maximum.
    pub(super) fn frame_ahead(&self) -> bool {
        let have = self.end - self.pos;
        match self.want {
            Some(len) => self.got + have >= len,
            None if have >= FRAME_HEADER => {
                let mut header = [0; FRAME_HEADER];
                header.copy_from_slice(&self.ahead[self.pos..self.pos + FRAME_HEADER]);
                let len = usize::try_from(u32::from_le_bytes(header)).unwrap_or(usize::MAX);
                len > self.max || have - FRAME_HEADER >= len
            }
            None => false,
        }
    }
}

/// Readable when the underlying reader is, or while a whole frame waits in
/// what was read ahead (see the type's docs); never writable.
impl<R: Read + Pollable> Pollable for FrameReader<R> {
    fn source(&self, interest: Interest) -> io::Result<Option<Source<'_>>> {
        let Some(mut source) = self.inner.source(interest)?.filter(|_| interest == Interest::Readable) else {
            return Ok(None);
        };
        let ready = self.ahead_ready.get_or_init(|| Arc::new(AheadReady(AtomicBool::new(self.frame_ahead()))));
        source.readiness = Some(Arc::clone(ready) as Arc<dyn Readiness>);
        Ok(Some(source))
    }
}

/// Writable when the underlying writer is; never readable.
impl<W: Write + Pollable> Pollable for FrameWriter<W> {
    fn source(&self, interest: Interest) -> io::Result<Option<Source<'_>>> {
        Ok(self.inner.source(interest)?.filter(|_| interest == Interest::Writable))
    }
}
