//! Sockets for pollers (`ipc_sync::Poller`, and async forms): a connected
//! or datagram socket is readable when a receive would not wait (also when
//! its peer is gone: the receive says so) and writable when a send would
//! not; a listener is readable when a connection waits.

use std::io;
use std::os::fd::AsFd;

use ipc_sync::ready::{Interest, Pollable, Source};

use crate::{DatagramSocket, Listener, SeqpacketSocket, StreamSocket};

macro_rules! both_ways {
    ($($ty:ty),*) => {$(
        impl Pollable for $ty {
            fn source(&self, _interest: Interest) -> io::Result<Option<Source<'_>>> {
                Ok(Some(Source::fd(self.as_fd())))
            }
        }
    )*};
}

both_ways!(StreamSocket, SeqpacketSocket, DatagramSocket);

/// Readable when a connection waits to be accepted; never writable.
impl<S> Pollable for Listener<S> {
    fn source(&self, interest: Interest) -> io::Result<Option<Source<'_>>> {
        Ok((interest == Interest::Readable).then(|| Source::fd(self.as_fd())))
    }
}
