//! The traits for each mechanism.
// Each mechanism's part is behind its feature: with none of them, the
// shared imports serve nothing.
#![cfg_attr(not(any(feature = "pipe", feature = "msgq", feature = "shm", feature = "socket")), allow(unused_imports))]

use std::time::Duration;

use crate::traits::{Error, MessageReceiver, MessageSender, Result, other};

/// A framed pipe (or FIFO) writer, for a receiver that is a `FrameReader`
/// with the default maximum.
///
/// [`send`](MessageSender::send) takes messages up to
/// [`DEFAULT_MAX_FRAME`](ipc_pipe::DEFAULT_MAX_FRAME) bytes, the most such
/// a receiver accepts, waiting for room as needed. [`try_send`](MessageSender::try_send)
/// and [`send_timeout`](MessageSender::send_timeout) take messages up to
/// [`PipeSender::MAX_TIMED`] bytes (a frame of `PIPE_BUF` bytes), which go in
/// one atomic write: all or nothing, so a refused or timed-out send leaves
/// no half frame behind and neither form waits past its promise. Anything
/// longer is [`Error::TooLarge`] before a byte is written.
#[cfg(feature = "pipe")]
#[derive(Debug)]
pub struct PipeSender {
    frames: ipc_pipe::FrameWriter<ipc_pipe::PipeWriter>,
}

#[cfg(feature = "pipe")]
impl PipeSender {
    /// The longest message [`try_send`](MessageSender::try_send) and
    /// [`send_timeout`](MessageSender::send_timeout) take: `PIPE_BUF` less
    /// the frame header.
    pub const MAX_TIMED: usize = ipc_pipe::PIPE_BUF - ipc_pipe::FRAME_HEADER;

    /// Frames messages onto `writer` through ipc-pipe's `FrameWriter`
    /// (with the default maximum). The sender holds the end
    /// [reopened](ipc_pipe::PipeWriter::reopen) on a description of its
    /// own where that can be done, so that its sends that must not wait
    /// cost one plain `write(2)`; else the end as it was.
    pub fn new(writer: ipc_pipe::PipeWriter) -> Self {
        let writer = writer.reopen().unwrap_or(writer);
        PipeSender { frames: ipc_pipe::FrameWriter::with_max(writer, ipc_pipe::DEFAULT_MAX_FRAME) }
    }

    fn pipe_err(e: ipc_pipe::Error) -> Error {
        match e {
            ipc_pipe::Error::FrameTooLarge { len, max } => Error::TooLarge { len: len as usize, max },
            ipc_pipe::Error::BrokenPipe => Error::Disconnected,
            ipc_pipe::Error::WouldBlock => Error::Full,
            ipc_pipe::Error::Timeout => Error::Timeout,
            other_err => other(other_err),
        }
    }
}

/// Writable when its pipe is (see ipc-pipe's `FrameWriter`).
#[cfg(feature = "pipe")]
impl ipc_sync::Pollable for PipeSender {
    fn source(&self, interest: ipc_sync::Interest) -> std::io::Result<Option<ipc_sync::Source<'_>>> {
        self.frames.source(interest)
    }
}

#[cfg(feature = "pipe")]
impl MessageSender for PipeSender {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        // Header and body in one writev, without copying the body; the
        // receiver's limit is checked before anything is written.
        self.frames.send(msg).map_err(Self::pipe_err)
    }

    fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.frames.try_send(msg).map_err(Self::pipe_err)
    }

    fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.frames.send_timeout(msg, timeout).map_err(Self::pipe_err)
    }
}

#[cfg(feature = "pipe")]
fn frame_result(r: ipc_pipe::Result<Option<usize>>) -> Result<usize> {
    match r {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(Error::Disconnected),
        Err(ipc_pipe::Error::WouldBlock) => Err(Error::Empty),
        Err(ipc_pipe::Error::Timeout) => Err(Error::Timeout),
        Err(e) => Err(other(e)),
    }
}

#[cfg(feature = "pipe")]
impl MessageReceiver for ipc_pipe::FrameReader<ipc_pipe::PipeReader> {
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        frame_result(ipc_pipe::FrameReader::recv(self, buf))
    }

    fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
        frame_result(ipc_pipe::FrameReader::try_recv(self, buf))
    }

    fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
        frame_result(ipc_pipe::FrameReader::recv_timeout(self, buf, timeout))
    }
}

#[cfg(feature = "msgq")]
mod queues {
    use super::*;
    use ipc_msgq::{PosixQueue, Selector, SysvQueue};

    fn msgq_err(e: ipc_msgq::Error) -> Error {
        match e {
            ipc_msgq::Error::Full => Error::Full,
            ipc_msgq::Error::Empty => Error::Empty,
            ipc_msgq::Error::Timeout => Error::Timeout,
            ipc_msgq::Error::Removed { .. } => Error::Disconnected,
            ipc_msgq::Error::MessageTooLarge { len, max, .. } => Error::TooLarge { len, max },
            other_err => other(other_err),
        }
    }

    /// The message type the traits use on a System V queue.
    const MTYPE: i64 = 1;

    impl MessageSender for SysvQueue {
        fn send(&mut self, msg: &[u8]) -> Result<()> {
            SysvQueue::send(self, MTYPE, msg).map_err(msgq_err)
        }

        fn try_send(&mut self, msg: &[u8]) -> Result<()> {
            SysvQueue::try_send(self, MTYPE, msg).map_err(msgq_err)
        }

        fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
            SysvQueue::send_timeout(self, MTYPE, msg, timeout).map_err(msgq_err)
        }
    }

    impl MessageReceiver for SysvQueue {
        fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
            SysvQueue::recv_vec(self, Selector::Any, buf).map(|_| buf.len()).map_err(msgq_err)
        }

        fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
            SysvQueue::try_recv_vec(self, Selector::Any, buf).map(|_| buf.len()).map_err(msgq_err)
        }

        fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
            SysvQueue::recv_vec_timeout(self, Selector::Any, buf, timeout).map(|_| buf.len()).map_err(msgq_err)
        }
    }

    impl MessageSender for PosixQueue {
        fn send(&mut self, msg: &[u8]) -> Result<()> {
            PosixQueue::send(self, msg, 0).map_err(msgq_err)
        }

        fn try_send(&mut self, msg: &[u8]) -> Result<()> {
            PosixQueue::try_send(self, msg, 0).map_err(msgq_err)
        }

        fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
            PosixQueue::send_timeout(self, msg, 0, timeout).map_err(msgq_err)
        }
    }

    // The traits carry no priority, so the kernel is not asked for it.
    impl MessageReceiver for PosixQueue {
        fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
            PosixQueue::recv_vec_no_priority(self, buf).map_err(msgq_err)
        }

        fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
            PosixQueue::try_recv_vec_no_priority(self, buf).map_err(msgq_err)
        }

        fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
            PosixQueue::recv_vec_timeout_no_priority(self, buf, timeout).map_err(msgq_err)
        }
    }
}

#[cfg(feature = "shm")]
mod channel {
    use super::*;
    use ipc_shm::{ByteChannel, ByteReceiver, ByteSender};
    use std::sync::OnceLock;

    fn shm_err(e: ipc_shm::Error) -> Error {
        match e {
            ipc_shm::Error::Full => Error::Full,
            ipc_shm::Error::Empty => Error::Empty,
            ipc_shm::Error::Timeout => Error::Timeout,
            ipc_shm::Error::Disconnected => Error::Disconnected,
            ipc_shm::Error::RecordTooLarge { len, max } => Error::TooLarge { len, max },
            other_err => other(other_err),
        }
    }

    /// A side of a byte channel, claimed by the process that first uses
    /// (or polls) it: a pair made before `fork` can go either way, and the
    /// copy a process does not use claims nothing.
    #[derive(Debug)]
    struct Lazy<S> {
        chan: ByteChannel,
        side: OnceLock<S>,
        claim: fn(&ByteChannel) -> ipc_shm::Result<S>,
    }

    impl<S> Lazy<S> {
        /// The side, claimed on first use. Inlined, with the claim out of
        /// line, so that a message costs no extra call.
        #[inline]
        fn get(&mut self) -> Result<&mut S> {
            if self.side.get().is_none() {
                self.fill().map_err(shm_err)?;
            }
            self.side.get_mut().ok_or(Error::Disconnected)
        }

        /// The side for a poller, claimed now if it was not.
        fn polled(&self) -> std::io::Result<&S> {
            if self.side.get().is_none() {
                self.fill()?;
            }
            self.side.get().ok_or_else(|| std::io::Error::other("the channel's side went missing"))
        }

        #[cold]
        #[inline(never)]
        fn fill(&self) -> ipc_shm::Result<()> {
            let side = (self.claim)(&self.chan)?;
            let _ = self.side.set(side);
            Ok(())
        }
    }

    /// Pollable once claimed: polling claims the side (see ipc-shm's
    /// channel docs, "Waiting on many endpoints").
    impl ipc_sync::Pollable for ChannelSender {
        fn source(&self, interest: ipc_sync::Interest) -> std::io::Result<Option<ipc_sync::Source<'_>>> {
            self.0.polled()?.source(interest)
        }

        fn polls_cheaply(&self) -> bool {
            true
        }
    }

    /// As [`ChannelSender`]'s.
    impl ipc_sync::Pollable for ChannelReceiver {
        fn source(&self, interest: ipc_sync::Interest) -> std::io::Result<Option<ipc_sync::Source<'_>>> {
            self.0.polled()?.source(interest)
        }

        fn polls_cheaply(&self) -> bool {
            true
        }
    }

    /// The sending side of a shared-memory byte channel, claimed by the
    /// process that first sends.
    #[derive(Debug)]
    pub struct ChannelSender(Lazy<ByteSender>);

    /// The receiving side, claimed by the process that first receives.
    #[derive(Debug)]
    pub struct ChannelReceiver(Lazy<ByteReceiver>);

    impl ChannelSender {
        // Made by `Mechanism::pair`, which needs every mechanism's feature.
        #[cfg_attr(
            not(all(feature = "pipe", feature = "fifo", feature = "msgq", feature = "socket")),
            allow(dead_code)
        )]
        pub(crate) fn new(chan: ByteChannel) -> Self {
            ChannelSender(Lazy { chan, side: OnceLock::new(), claim: ByteChannel::sender })
        }

        #[inline]
        fn side(&mut self) -> Result<&mut ByteSender> {
            self.0.get()
        }
    }

    impl ChannelReceiver {
        // Made by `Mechanism::pair`, which needs every mechanism's feature.
        #[cfg_attr(
            not(all(feature = "pipe", feature = "fifo", feature = "msgq", feature = "socket")),
            allow(dead_code)
        )]
        pub(crate) fn new(chan: ByteChannel) -> Self {
            ChannelReceiver(Lazy { chan, side: OnceLock::new(), claim: ByteChannel::receiver })
        }

        #[inline]
        fn side(&mut self) -> Result<&mut ByteReceiver> {
            self.0.get()
        }
    }

    /// A byte channel's sending side, however it was made (by name, in a
    /// memfd, or for fork): whole records.
    impl MessageSender for ByteSender {
        fn send(&mut self, msg: &[u8]) -> Result<()> {
            ByteSender::send(self, msg).map_err(shm_err)
        }

        fn try_send(&mut self, msg: &[u8]) -> Result<()> {
            ByteSender::try_send(self, msg).map_err(shm_err)
        }

        fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
            ByteSender::send_timeout(self, msg, timeout).map_err(shm_err)
        }
    }

    /// A byte channel's receiving side, however it was made.
    impl MessageReceiver for ByteReceiver {
        fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
            ByteReceiver::recv(self, buf).map_err(shm_err)
        }

        fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
            ByteReceiver::try_recv(self, buf).map_err(shm_err)
        }

        fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
            ByteReceiver::recv_timeout(self, buf, timeout).map_err(shm_err)
        }
    }

    impl MessageSender for ChannelSender {
        fn send(&mut self, msg: &[u8]) -> Result<()> {
            self.side()?.send(msg).map_err(shm_err)
        }

        fn try_send(&mut self, msg: &[u8]) -> Result<()> {
            self.side()?.try_send(msg).map_err(shm_err)
        }

        fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
            self.side()?.send_timeout(msg, timeout).map_err(shm_err)
        }
    }

    impl MessageReceiver for ChannelReceiver {
        fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
            self.side()?.recv(buf).map_err(shm_err)
        }

        fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
            self.side()?.try_recv(buf).map_err(shm_err)
        }

        fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
            self.side()?.recv_timeout(buf, timeout).map_err(shm_err)
        }
    }
}

#[cfg(feature = "shm")]
pub use channel::{ChannelReceiver, ChannelSender};

#[cfg(feature = "socket")]
mod socket {
    use super::*;
    use ipc_socket::SeqpacketSocket;

    fn socket_err(e: ipc_socket::Error, would_block: Error) -> Error {
        match e {
            ipc_socket::Error::Disconnected => Error::Disconnected,
            ipc_socket::Error::WouldBlock => would_block,
            ipc_socket::Error::Timeout => Error::Timeout,
            ipc_socket::Error::MessageTooLarge { len, max } => Error::TooLarge { len, max },
            other_err => other(other_err),
        }
    }

    /// A seqpacket socket sends whole messages, up to its send buffer
    /// (`SO_SNDBUF`, less the kernel's 32 bytes, and at most 4 MiB), in
    /// every form. An empty message is refused ([`Error::TooLarge`] with
    /// `len` 0): on a seqpacket socket it could not be told from the
    /// peer's going. (Typed values whose encoding is empty go as one zero
    /// byte: see `typed`.)
    impl MessageSender for SeqpacketSocket {
        fn send(&mut self, msg: &[u8]) -> Result<()> {
            SeqpacketSocket::send(self, msg).map_err(|e| socket_err(e, Error::Full))
        }

        fn try_send(&mut self, msg: &[u8]) -> Result<()> {
            SeqpacketSocket::try_send(self, msg).map_err(|e| socket_err(e, Error::Full))
        }

        fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
            SeqpacketSocket::send_timeout(self, msg, timeout).map_err(|e| socket_err(e, Error::Full))
        }
    }

    /// Whole messages, through `recv_vec`: `buf` grows to hold the largest
    /// message a peer may send.
    impl MessageReceiver for SeqpacketSocket {
        fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
            self.recv_vec(buf).map_err(|e| socket_err(e, Error::Empty))
        }

        fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
            self.try_recv_vec(buf).map_err(|e| socket_err(e, Error::Empty))
        }

        fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
            self.recv_vec_timeout(buf, timeout).map_err(|e| socket_err(e, Error::Empty))
        }
    }
}

#[cfg(feature = "service")]
mod service {
    use super::*;
    use ipc_service::{Receiver, Sender};

    fn service_err(e: ipc_service::Error, would_block: Error) -> Error {
        match e {
            ipc_service::Error::Disconnected => Error::Disconnected,
            ipc_service::Error::WouldBlock => would_block,
            ipc_service::Error::Timeout => Error::Timeout,
            ipc_service::Error::MessageTooLarge { len, max } => Error::TooLarge { len, max },
            other_err => other(other_err),
        }
    }

    /// The sending side of a service's connection: the client's requests,
    /// or the service's replies, as whole messages up to the ring's
    /// longest (half its capacity, less 8 bytes).
    impl MessageSender for Sender {
        fn send(&mut self, msg: &[u8]) -> Result<()> {
            Sender::send(self, msg).map_err(|e| service_err(e, Error::Full))
        }

        fn try_send(&mut self, msg: &[u8]) -> Result<()> {
            Sender::try_send(self, msg).map_err(|e| service_err(e, Error::Full))
        }

        fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
            Sender::send_timeout(self, msg, timeout).map_err(|e| service_err(e, Error::Full))
        }
    }

    /// The receiving side of a service's connection.
    impl MessageReceiver for Receiver {
        fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
            Receiver::recv(self, buf).map_err(|e| service_err(e, Error::Empty))
        }

        fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize> {
            Receiver::try_recv(self, buf).map_err(|e| service_err(e, Error::Empty))
        }

        fn recv_timeout(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize> {
            Receiver::recv_timeout(self, buf, timeout).map_err(|e| service_err(e, Error::Empty))
        }
    }
}
