//! The FIFO service that the `fifo` and `probe` cases set up: a server in
//! a scratch directory, clients in forked children, and the waits around
//! them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipc_kit::fifo::{FifoClient, FifoServer};
use ipc_kit::pipe::PipeWriter;
use ipc_kit_tests::{Exit, Forked, ScratchDir, fork};

/// A server at `service` in a fresh scratch directory: the directory
/// (removed with everything in it when dropped), the server's path, and
/// the server.
pub(crate) fn service() -> (ScratchDir, PathBuf, FifoServer) {
    let dir = ScratchDir::new();
    let path = dir.path().join("service");
    let server = FifoServer::create(&path, 0o600).unwrap();
    (dir, path, server)
}

/// A client of the server at `path`, in a forked child: it connects, then
/// does `then`.
pub(crate) fn forked_client(path: &Path, then: impl FnOnce(&mut FifoClient)) -> Forked {
    fork(|| {
        let mut client = FifoClient::connect(path).unwrap();
        then(&mut client);
    })
}

/// The server's loop on a thread of its own, so that the server stays in
/// this process and the case ends whether or not the thread is stuck.
/// The server is never dropped: the scratch directory goes with the case.
pub(crate) fn serve_on_a_thread(mut server: FifoServer, serve: impl FnOnce(&mut FifoServer) + Send + 'static) {
    std::thread::spawn(move || {
        serve(&mut server);
        std::mem::forget(server);
    });
}

/// Writes blocks of `byte` into `w` until it would block: the FIFO behind
/// it is full. `what` names the FIFO in the panic of any other error.
pub(crate) fn fill(w: &PipeWriter, byte: u8, what: &str) {
    loop {
        match w.try_write(&[byte; 4096]) {
            Ok(_) => {}
            Err(ipc_kit::pipe::Error::WouldBlock) => break,
            Err(e) => panic!("filling {what}: {e}"),
        }
    }
}

/// Waits at most `limit` for `child`, and panics unless it exited with 0:
/// `who` names it, `stuck` says what it means that it is still running.
pub(crate) fn exits_well(child: &mut Forked, limit: Duration, who: &str, stuck: &str) {
    match child.wait_timeout(limit) {
        Some(Exit::Code(0)) => {}
        Some(other) => panic!("{who} ended with {other:?}"),
        None => panic!("{stuck}"),
    }
}

/// Waits up to 10 s for the file at `path` to appear.
pub(crate) fn wait_for_file(path: &Path) {
    let t = Instant::now();
    while !path.exists() {
        assert!(t.elapsed() < Duration::from_secs(10), "{} did not appear", path.display());
        std::thread::sleep(Duration::from_millis(2));
    }
}
