use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ipc_sync::Deadline;

use crate::error::{Error, Result};
use crate::pipe::{PIPE_BUF, Wait, read_waiting, write_waiting};
use crate::writer::short_atomic;

mod poll;

/// The frame length used when none is given: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// Bytes in a frame header: the body length as a little-endian `u32`.
pub const FRAME_HEADER: usize = 4;

/// The longest body [`FrameWriter::try_send`] and
/// [`FrameWriter::send_timeout`] take: a whole frame fits in one atomic
/// write of at most [`PIPE_BUF`] bytes.
const MAX_ATOMIC_BODY: usize = PIPE_BUF - FRAME_HEADER;

/// Frames up to this long (header included) are written from one buffer.
const SMALL_FRAME: usize = 256;

/// The size of the reader's read-ahead buffer.
const READ_AHEAD: usize = 64 << 10;

/// Body bytes still to come from which the reader reads them straight
/// into the frame rather than through the read-ahead buffer; after a frame
/// this long, it reads the next header alone, so that the next body does
/// not pass through the buffer either (two reads per large frame, no extra
/// copy).
const DIRECT: usize = 32 << 10;

/// The most memory a frame body grows by before its bytes arrive.
const GROW_STEP: usize = 1 << 20;

/// Writes length-prefixed frames: a 4-byte little-endian length, then the
/// body.
///
/// A frame of at most [`PIPE_BUF`](crate::PIPE_BUF)` - 4` bytes goes into a
/// pipe with a single `write` (a `writev` of header and body, above 252
/// bytes), so frames from several writers sharing one pipe never
/// interleave; longer frames may.
///
/// # Examples
///
/// ```
/// use ipc_pipe::{FrameReader, FrameWriter};
///
/// let (r, w) = ipc_pipe::pipe()?;
/// let mut tx = FrameWriter::new(w);
/// tx.send(b"first")?;
/// tx.send(b"")?;
/// drop(tx);
///
/// let mut rx = FrameReader::new(r);
/// let mut frame = Vec::new();
/// assert_eq!(rx.recv(&mut frame)?, Some(5));
/// assert_eq!(frame, b"first");
/// assert_eq!(rx.recv(&mut frame)?, Some(0));
/// assert_eq!(rx.recv(&mut frame)?, None); // clean end of file
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
    max: usize,
}

impl<W: Write> FrameWriter<W> {
    /// A frame writer with the default maximum, [`DEFAULT_MAX_FRAME`].
    pub fn new(inner: W) -> Self {
        Self::with_max(inner, DEFAULT_MAX_FRAME)
    }

    /// A frame writer that refuses frames longer than `max` bytes (at most
    /// `u32::MAX`; larger values are lowered to it).
    pub fn with_max(inner: W, max: usize) -> Self {
        FrameWriter { inner, max: clamp_max(max) }
    }

    /// The longest frame body this writer sends.
    pub fn max_frame_len(&self) -> usize {
        self.max
    }

    /// Writes one frame, waiting for room as needed.
    ///
    /// # Errors
    ///
    /// [`Error::FrameTooLarge`] before anything is written when `body` is
    /// over the maximum; [`Error::BrokenPipe`] when the reader is gone;
    /// [`Error::Io`] otherwise. After an error in the middle of a frame the
    /// stream is no longer in step and should be closed.
    pub fn send(&mut self, body: &[u8]) -> Result<()> {
        let header = frame_header(body, self.max)?;
        let mut room = [0u8; SMALL_FRAME];
        if let Some(whole) = joined(&mut room, &header, body) {
            return self.inner.write_all(whole).map_err(|e| Error::from_io("write frame", e));
        }
        let mut bufs = [IoSlice::new(&header), IoSlice::new(body)];
        let mut bufs = &mut bufs[..];
        while !bufs.is_empty() {
            match self.inner.write_vectored(bufs) {
                Ok(0) => return Err(Error::from_io("write frame", io::ErrorKind::WriteZero.into())),
                Ok(n) => IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::from_io("write frame", e)),
            }
        }
        Ok(())
    }

    /// Flushes the underlying writer (needed when it buffers, as
    /// [`std::io::Stdout`] and [`std::io::BufWriter`] do; a pipe end does
    /// not).
    ///
    /// # Errors
    ///
    /// [`Error::BrokenPipe`] or [`Error::Io`] from the underlying writer.
    pub fn flush(&mut self) -> Result<()> {
        self.inner.flush().map_err(|e| Error::from_io("flush frames", e))
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The underlying writer, mutably. Writing to it directly breaks the
    /// framing.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Gives the underlying writer back.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write + AsFd> FrameWriter<W> {
    /// Writes one frame if it fits in the pipe now, without waiting: the
    /// header and body go in one write of at most [`PIPE_BUF`] bytes, which
    /// the kernel makes all or nothing, so a refused frame leaves nothing
    /// behind and frames of several writers never interleave.
    ///
    /// Takes bodies of at most [`PIPE_BUF`]` - `[`FRAME_HEADER`] bytes (and
    /// at most the writer's maximum). The frame goes straight to the
    /// underlying fd: a writer that buffers (such as [`std::io::Stdout`])
    /// must be flushed first. The fd's nonblocking mode is neither needed
    /// nor changed.
    ///
    /// # Errors
    ///
    /// [`Error::FrameTooLarge`] before anything is written when `body` is
    /// over the writer's maximum or over `PIPE_BUF - FRAME_HEADER` bytes
    /// (`max` is the smaller of the two); [`Error::WouldBlock`] when the
    /// frame does not fit now (nothing was written); [`Error::BrokenPipe`]
    /// when the reader is gone; [`Error::Io`] otherwise.
    ///
    /// # Examples
    ///
    /// ```
    /// use ipc_pipe::{Error, FrameWriter, PIPE_BUF, FRAME_HEADER};
    ///
    /// let (_r, w) = ipc_pipe::pipe()?;
    /// let mut tx = FrameWriter::new(w);
    /// tx.try_send(b"ping")?;
    /// assert!(matches!(tx.try_send(&[0; PIPE_BUF]), Err(Error::FrameTooLarge { max, .. }) if max == PIPE_BUF - FRAME_HEADER));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_send(&mut self, body: &[u8]) -> Result<()> {
        self.send_atomic(body, Wait::No)
    }

    /// Writes one frame, waiting at most `timeout` for room for all of it:
    /// the frame is written whole or not at all, as by
    /// [`try_send`](Self::try_send). A zero or past timeout tries once.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the frame did not fit in time (nothing was
    /// written), and as for [`try_send`](Self::try_send) except
    /// `WouldBlock`.
    pub fn send_timeout(&mut self, body: &[u8], timeout: Duration) -> Result<()> {
        self.send_atomic(body, Wait::Until(Deadline::after(timeout)))
    }

    /// Like [`send_timeout`](Self::send_timeout) with a deadline on the
    /// monotonic clock.
    ///
    /// # Errors
    ///
    /// As for [`send_timeout`](Self::send_timeout).
    pub fn send_deadline(&mut self, body: &[u8], deadline: Instant) -> Result<()> {
        self.send_atomic(body, Wait::Until(Deadline::at(deadline)))
    }

    fn send_atomic(&mut self, body: &[u8], wait: Wait) -> Result<()> {
        let header = frame_header(body, self.max.min(MAX_ATOMIC_BODY))?;
        let mut room = [0u8; SMALL_FRAME];
        let n = if let Some(whole) = joined(&mut room, &header, body) {
            write_waiting(self.inner.as_fd(), &[IoSlice::new(whole)], wait)?
        } else {
            write_waiting(self.inner.as_fd(), &[IoSlice::new(&header), IoSlice::new(body)], wait)?
        };
        short_atomic(n, FRAME_HEADER + body.len())
    }
}

/// A short frame, header and body copied into `room`, or `None` when it
/// does not fit: a short frame goes as one buffer, whose plain write is the
/// kernel's cheaper path, and a copy of this size costs less than a second
/// iovec.
fn joined<'a>(room: &'a mut [u8; SMALL_FRAME], header: &[u8; FRAME_HEADER], body: &[u8]) -> Option<&'a [u8]> {
    let whole = room.get_mut(..FRAME_HEADER + body.len())?;
    whole[..FRAME_HEADER].copy_from_slice(header);
    whole[FRAME_HEADER..].copy_from_slice(body);
    Some(whole)
}

fn clamp_max(max: usize) -> usize {
    max.min(u32::MAX as usize)
}

fn frame_header(body: &[u8], max: usize) -> Result<[u8; FRAME_HEADER]> {
    match u32::try_from(body.len()) {
        Ok(len) if body.len() <= max => Ok(len.to_le_bytes()),
        _ => Err(Error::FrameTooLarge { len: body.len() as u64, max }),
    }
}

/// Reads length-prefixed frames written by [`FrameWriter`].
///
/// The length comes from the peer and is not trusted: one over the maximum
/// is [`Error::FrameTooLarge`] before anything is allocated for it, and a
/// body's memory grows only as its bytes arrive. End of file between frames
/// is `Ok(None)`; end of file inside a frame is [`Error::TruncatedFrame`].
/// After either error the stream is out of step and should be closed.
///
/// The reader buffers what it reads ahead, so after the first frame, bytes
/// of the underlying reader belong to it.
///
/// Polled (through [`Pollable`](ipc_sync::Pollable), for example with `ipc_kit::Poller`), it is
/// readable while a whole frame waits in what it read ahead, not only when
/// its pipe is: a frame read ahead is never left waiting for the next
/// byte to arrive.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    max: usize,
    ahead: Box<[u8]>,
    pos: usize,
    end: usize,
    /// The body length while a body is being read.
    want: Option<usize>,
    /// The body so far: its first `got` bytes. Its length beyond them is
    /// initialized memory kept from earlier frames, so that refilling it
    /// costs no zeroing.
    body: Vec<u8>,
    got: usize,
    /// Whether the last frame was long (see [`DIRECT`]).
    last_large: bool,
    /// Made when the reader is first polled: whether a frame (or an error)
    /// waits in what was read ahead, set after every receive.
    ahead_ready: OnceLock<Arc<poll::AheadReady>>,
}

impl<R: Read> FrameReader<R> {
    /// A frame reader with the default maximum, [`DEFAULT_MAX_FRAME`].
    pub fn new(inner: R) -> Self {
        Self::with_max(inner, DEFAULT_MAX_FRAME)
    }

    /// A frame reader that rejects frames longer than `max` bytes.
    pub fn with_max(inner: R, max: usize) -> Self {
        FrameReader {
            inner,
            max: clamp_max(max),
            ahead: vec![0; READ_AHEAD].into_boxed_slice(),
            pos: 0,
            end: 0,
            want: None,
            body: Vec::new(),
            got: 0,
            last_large: false,
            ahead_ready: OnceLock::new(),
        }
    }

    /// The longest frame body this reader accepts.
    pub fn max_frame_len(&self) -> usize {
        self.max
    }

    /// Reads the next frame into `frame` (replacing its contents), waiting
    /// for it. Returns its length, or `None` at a clean end of file.
    ///
    /// # Errors
    ///
    /// [`Error::FrameTooLarge`], [`Error::TruncatedFrame`], or
    /// [`Error::Io`] from the underlying reader.
    pub fn recv(&mut self, frame: &mut Vec<u8>) -> Result<Option<usize>> {
        self.recv_with(frame, |inner, buf| {
            loop {
                match inner.read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => return other.map_err(|e| Error::from_io("read frame", e)),
                }
            }
        })
    }

    /// Reads the next frame into a new vector; `None` at a clean end of
    /// file.
    ///
    /// # Errors
    ///
    /// As for [`recv`](Self::recv).
    pub fn recv_vec(&mut self) -> Result<Option<Vec<u8>>> {
        let mut frame = Vec::new();
        Ok(self.recv(&mut frame)?.map(|_| frame))
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Gives the underlying reader back. Bytes read ahead are lost.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The frame engine: `fill` reads once from the underlying reader (and
    /// may fail with `WouldBlock` or `Timeout`, in which case the state so
    /// far is kept for the next call).
    fn recv_with(
        &mut self,
        frame: &mut Vec<u8>,
        fill: impl FnMut(&mut R, &mut [u8]) -> Result<usize>,
    ) -> Result<Option<usize>> {
        let r = self.next_frame(frame, fill);
        poll::note(self);
        r
    }

    /// [`recv_with`](Self::recv_with) but for the readiness it leaves.
    fn next_frame(
        &mut self,
        frame: &mut Vec<u8>,
        mut fill: impl FnMut(&mut R, &mut [u8]) -> Result<usize>,
    ) -> Result<Option<usize>> {
        loop {
            let Some(len) = self.want else {
                let have = self.end - self.pos;
                if have >= FRAME_HEADER {
                    let mut header = [0; FRAME_HEADER];
                    header.copy_from_slice(&self.ahead[self.pos..self.pos + FRAME_HEADER]);
                    let len = u32::from_le_bytes(header);
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    if len > self.max {
                        return Err(Error::FrameTooLarge { len: len as u64, max: self.max });
                    }
                    self.pos += FRAME_HEADER;
                    self.want = Some(len);
                    self.got = 0;
                    continue;
                }
                // Keep the partial header at the front and read more: only
                // the header's missing bytes after a large frame.
                self.ahead.copy_within(self.pos..self.end, 0);
                self.pos = 0;
                self.end = have;
                let upto = if self.last_large { FRAME_HEADER } else { self.ahead.len() };
                let n = fill(&mut self.inner, &mut self.ahead[have..upto])?;
                if n == 0 {
                    return if have == 0 {
                        Ok(None)
                    } else {
                        Err(Error::TruncatedFrame { expected: FRAME_HEADER as u64, got: have as u64 })
                    };
                }
                self.end += n;
                continue;
            };
            let take = (len - self.got).min(self.end - self.pos);
            if take > 0 {
                body_room(&mut self.body, self.got, take).copy_from_slice(&self.ahead[self.pos..self.pos + take]);
                self.got += take;
                self.pos += take;
            }
            if self.got == len {
                self.want = None;
                self.last_large = len >= DIRECT;
                self.body.truncate(len);
                std::mem::swap(frame, &mut self.body);
                return Ok(Some(len));
            }
            // The read-ahead buffer is empty here.
            self.pos = 0;
            self.end = 0;
            let need = len - self.got;
            let n = if need >= DIRECT {
                let r = fill(&mut self.inner, body_room(&mut self.body, self.got, need.min(GROW_STEP)));
                if let Ok(n) = r {
                    self.got += n;
                }
                r?
            } else {
                let n = fill(&mut self.inner, &mut self.ahead)?;
                self.end = n;
                n
            };
            if n == 0 {
                return Err(Error::TruncatedFrame { expected: len as u64, got: self.got as u64 });
            }
        }
    }
}

/// The `n` bytes of `body` after the `got` it has, grown (and zeroed) only
/// past what earlier frames left initialized.
fn body_room(body: &mut Vec<u8>, got: usize, n: usize) -> &mut [u8] {
    let end = got + n;
    if body.len() < end {
        body.resize(end, 0);
    }
    &mut body[got..end]
}

impl<R: Read + AsFd> FrameReader<R> {
    /// Reads the next frame if it can be done without waiting. A frame that
    /// has only partly arrived is kept and completed by a later call.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when no complete frame is there yet, and as for
    /// [`recv`](Self::recv).
    pub fn try_recv(&mut self, frame: &mut Vec<u8>) -> Result<Option<usize>> {
        self.recv_with(frame, |inner, buf| read_waiting(inner.as_fd(), buf, Wait::No))
    }

    /// Reads the next frame, waiting at most `timeout` for it to complete.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when it did not complete in time (what arrived is
    /// kept for the next call), and as for [`recv`](Self::recv).
    pub fn recv_timeout(&mut self, frame: &mut Vec<u8>, timeout: Duration) -> Result<Option<usize>> {
        self.recv_until(frame, Deadline::after(timeout))
    }

    /// Like [`recv_timeout`](Self::recv_timeout) with a deadline on the
    /// monotonic clock.
    ///
    /// # Errors
    ///
    /// As for [`recv_timeout`](Self::recv_timeout).
    pub fn recv_deadline(&mut self, frame: &mut Vec<u8>, deadline: Instant) -> Result<Option<usize>> {
        self.recv_until(frame, Deadline::at(deadline))
    }

    fn recv_until(&mut self, frame: &mut Vec<u8>, deadline: Deadline) -> Result<Option<usize>> {
        self.recv_with(frame, |inner, buf| read_waiting(inner.as_fd(), buf, Wait::Until(deadline)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A reader that hands out its bytes in chunks of the given sizes.
    struct Chunked {
        data: Vec<u8>,
        pos: usize,
        sizes: Vec<usize>,
        next: usize,
    }

    impl Read for Chunked {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let size = self.sizes.get(self.next % self.sizes.len().max(1)).copied().unwrap_or(usize::MAX).max(1);
            self.next += 1;
            let n = size.min(buf.len()).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn encode(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut w = FrameWriter::new(Vec::new());
        for f in frames {
            w.send(f).unwrap();
        }
        w.into_inner()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn frames_round_trip_whatever_the_read_sizes(
            frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..150_000), 0..6),
            sizes in prop::collection::vec(1usize..100_000, 1..6),
        ) {
            let data = encode(&frames);
            let mut r = FrameReader::new(Chunked { data, pos: 0, sizes, next: 0 });
            let mut got = Vec::new();
            let mut buf = Vec::new();
            while let Some(n) = r.recv(&mut buf).unwrap() {
                prop_assert_eq!(n, buf.len());
                got.push(buf.clone());
            }
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn any_cut_inside_a_frame_is_truncated(
            frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 1..5),
            cut in any::<prop::sample::Index>(),
        ) {
            let data = encode(&frames);
            let cut = cut.index(data.len());
            // Offsets where a frame starts are clean ends of file.
            let mut boundaries = vec![0];
            for f in &frames {
                boundaries.push(boundaries.last().unwrap() + FRAME_HEADER + f.len());
            }
            let mut r = FrameReader::new(&data[..cut]);
            let mut buf = Vec::new();
            let outcome = loop {
                match r.recv(&mut buf) {
                    Ok(Some(_)) => continue,
                    other => break other,
                }
            };
            if boundaries.contains(&cut) {
                prop_assert!(matches!(outcome, Ok(None)), "{:?}", outcome);
            } else {
                prop_assert!(matches!(outcome, Err(Error::TruncatedFrame { .. })), "{:?}", outcome);
            }
        }
    }

    #[test]
    fn bogus_length_is_rejected_before_allocating() {
        let mut data = u32::MAX.to_le_bytes().to_vec();
        data.extend_from_slice(b"tail");
        let mut r = FrameReader::with_max(&data[..], 1024);
        let mut buf = Vec::new();
        match r.recv(&mut buf) {
            Err(Error::FrameTooLarge { len, max }) => {
                assert_eq!(len, u64::from(u32::MAX));
                assert_eq!(max, 1024);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(buf.capacity(), 0);
    }

    #[test]
    fn truncated_body_reports_what_arrived() {
        let mut data = 100u32.to_le_bytes().to_vec();
        data.extend_from_slice(&[7; 10]);
        let mut r = FrameReader::new(&data[..]);
        match r.recv(&mut Vec::new()) {
            Err(Error::TruncatedFrame { expected: 100, got: 10 }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn writer_refuses_frames_over_its_maximum() {
        let mut w = FrameWriter::with_max(Vec::new(), 8);
        assert!(matches!(w.send(&[0; 9]), Err(Error::FrameTooLarge { len: 9, max: 8 })));
        assert!(w.get_ref().is_empty(), "nothing may be written");
        w.send(&[1; 8]).unwrap();
        assert_eq!(w.get_ref().len(), 12);
        assert_eq!(FrameWriter::with_max(Vec::new(), usize::MAX).max_frame_len(), u32::MAX as usize);
    }
}
