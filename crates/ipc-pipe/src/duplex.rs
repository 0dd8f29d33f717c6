use std::io::{self, IoSlice, IoSliceMut, Read, Write};

use crate::error::Result;
use crate::pipe::{PipeReader, PipeWriter, pipe};

/// One end of a two-way connection made of two pipes: it reads what the
/// other end writes and writes what the other end reads.
///
/// Made by [`duplex`]; typically one end stays in the parent and the other
/// goes to a child after `fork` (each process drops the end it does not
/// use). [`split`](Self::split) gives the two halves for use from two
/// threads.
#[derive(Debug)]
pub struct Duplex {
    reader: PipeReader,
    writer: PipeWriter,
}

/// Readable through its reading pipe, writable through its writing one.
impl ipc_sync::ready::Pollable for Duplex {
    fn source(&self, interest: ipc_sync::ready::Interest) -> io::Result<Option<ipc_sync::ready::Source<'_>>> {
        match interest {
            ipc_sync::ready::Interest::Readable => self.reader.source(interest),
            ipc_sync::ready::Interest::Writable => self.writer.source(interest),
        }
    }
}

/// Creates two connected [`Duplex`] ends.
///
/// # Errors
///
/// As for [`pipe`].
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
///
/// let (mut a, mut b) = ipc_pipe::duplex()?;
/// a.write_all(b"ping")?;
/// let mut buf = [0; 4];
/// b.read_exact(&mut buf)?;
/// b.write_all(b"pong")?;
/// a.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"pong");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn duplex() -> Result<(Duplex, Duplex)> {
    let (r1, w1) = pipe()?;
    let (r2, w2) = pipe()?;
    Ok((Duplex { reader: r1, writer: w2 }, Duplex { reader: r2, writer: w1 }))
}

impl Duplex {
    /// The half that reads what the other end writes.
    pub fn reader(&self) -> &PipeReader {
        &self.reader
    }

    /// The half that writes to the other end.
    pub fn writer(&self) -> &PipeWriter {
        &self.writer
    }

    /// The two halves, to use separately (say, from two threads, or to
    /// close the writing half and let the peer see end of file).
    pub fn split(self) -> (PipeReader, PipeWriter) {
        (self.reader, self.writer)
    }
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.reader.read_vectored(bufs)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.writer.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
