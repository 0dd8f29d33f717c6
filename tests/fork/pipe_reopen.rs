//! Pipe ends reopened on a description of their own (`reopen`, which the
//! async ends and the umbrella's pipe and FIFO pairs use): the same pipe,
//! a mode nobody else can change, blocking calls that still wait, calls
//! that must not wait that never do, and ends that leave as ordinary ones.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Duration;

use ipc_kit::pipe::{Error, FrameReader, FrameWriter, PipeReader, PipeWriter, pipe, splice, tee};
use ipc_kit_tests::{ScratchDir, cases, close_inherited, fork, pattern, tokio_runtime};
use nix::fcntl::{FcntlArg, OFlag, fcntl};

cases!("pipe_reopen":
    a_reopened_end_is_the_same_pipe_on_a_description_of_its_own,
    blocking_calls_of_reopened_ends_still_wait,
    calls_that_must_not_wait_never_do_whatever_others_do_to_the_shared_mode,
    async_ends_leave_the_shared_mode_alone,
    reopened_ends_leave_as_ordinary_ones,
    clones_of_reopened_ends_have_their_own_descriptions,
    reopen_refuses_what_it_cannot_open_and_the_end_stays_usable,
    a_fifo_end_reopens_after_its_name_is_gone,
    fds_above_the_tracked_range_are_refused,
);

/// Whether `O_NONBLOCK` is set on the description itself.
fn raw_nonblocking(fd: impl AsFd) -> bool {
    OFlag::from_bits_retain(fcntl(fd.as_fd(), FcntlArg::F_GETFL).unwrap()).contains(OFlag::O_NONBLOCK)
}

/// Device and inode.
fn file_id(fd: impl AsFd) -> (u64, u64) {
    let st = nix::sys::stat::fstat(fd.as_fd()).unwrap();
    (st.st_dev, st.st_ino)
}

/// Fills the pipe through `w`'s calls that must not wait; the bytes written.
fn fill(w: &PipeWriter) -> usize {
    let mut filled = 0;
    loop {
        match w.try_write(&[7; 4096]) {
            Ok(n) => filled += n,
            Err(Error::WouldBlock) => return filled,
            Err(e) => panic!("{e}"),
        }
    }
}

fn a_reopened_end_is_the_same_pipe_on_a_description_of_its_own() {
    let (r, w) = pipe().unwrap();
    let (r2, w2) = (r.reopen().unwrap(), w.reopen().unwrap());
    assert_eq!(file_id(&w2), file_id(&w));
    assert_eq!(file_id(&r2), file_id(&r));
    assert!(raw_nonblocking(&w2) && raw_nonblocking(&r2), "the new descriptions are nonblocking");
    assert!(!raw_nonblocking(&w) && !raw_nonblocking(&r), "the old ones are left as they were");
    assert!(!w2.is_nonblocking().unwrap() && !r2.is_nonblocking().unwrap(), "their calls wait as on any end");
    // The old and new ends are the same pipe, both ways round.
    (&w2).write_all(b"new to old").unwrap();
    let mut buf = [0; 10];
    (&r).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"new to old");
    (&w).write_all(b"old to new").unwrap();
    (&r2).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"old to new");
    // End of file comes when every writer, old and new, is gone.
    drop(w);
    assert!(matches!(r2.try_read(&mut buf), Err(Error::WouldBlock)), "the reopened writer still counts");
    drop(w2);
    assert_eq!(r2.try_read(&mut buf).unwrap(), 0);
    assert_eq!((&r2).read(&mut buf).unwrap(), 0);
}

/// A new pipe's ends, reopened; the first ends are closed.
fn reopened_pipe() -> (PipeReader, PipeWriter) {
    let (r, w) = pipe().unwrap();
    (r.reopen().unwrap(), w.reopen().unwrap())
}

fn blocking_calls_of_reopened_ends_still_wait() {
    let (r, w) = reopened_pipe();
    let capacity = w.capacity().unwrap();
    // A peer that reads everything, starting late: each blocking write
    // below finds the pipe full and must wait for it, not fail.
    let total = capacity * 4 + 3 * 4096 + 4 * 100 + 64;
    let wfd = w.as_raw_fd();
    let peer = fork(move || {
        close_inherited(wfd);
        std::thread::sleep(Duration::from_millis(100));
        let mut got = Vec::new();
        (&r).read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), total, "every byte of every blocking write arrived");
    });
    assert_eq!(fill(&w), capacity);
    (&w).write_all(&pattern(1, capacity * 2)).unwrap();
    w.write_atomic(&[1; 4096]).unwrap();
    w.vmsplice_all(&pattern(2, capacity)).unwrap();
    let mut frames = FrameWriter::new(&w);
    for _ in 0..4 {
        frames.send(&[3; 96]).unwrap();
    }
    (&w).write_all(&[4; 2 * 4096 + 64]).unwrap();
    drop(w);
    peer.join();

    // Reads, splice and tee wait for data on reopened ends too.
    let (r, w) = pipe().unwrap();
    let (r, keep_w) = (r.reopen().unwrap(), w);
    let (b_r, b_w) = reopened_pipe();
    let late = keep_w.try_clone().unwrap();
    let peer = fork(move || {
        for i in 0..3u8 {
            std::thread::sleep(Duration::from_millis(60));
            (&late).write_all(&[i; 8]).unwrap();
        }
    });
    drop(keep_w);
    let mut buf = [0; 8];
    (&r).read_exact(&mut buf).unwrap();
    assert_eq!(buf, [0; 8], "read waited for the first write");
    assert_eq!(tee(&r, &b_w, 8).unwrap(), 8, "tee waited for the second write");
    assert_eq!(splice(&r, &b_w, 8).unwrap(), 8);
    (&b_r).read_exact(&mut buf).unwrap();
    assert_eq!(buf, [1; 8]);
    (&b_r).read_exact(&mut buf).unwrap();
    assert_eq!(buf, [1; 8]);
    assert_eq!(splice(&r, &b_w, 8).unwrap(), 8, "splice waited for the third write");
    (&b_r).read_exact(&mut buf).unwrap();
    assert_eq!(buf, [2; 8]);
    peer.join();
    assert_eq!((&r).read(&mut buf).unwrap(), 0, "end of file once the writer is gone");

    // A frame reader on a reopened end waits for frames.
    let (r, w) = pipe().unwrap();
    let r = r.reopen().unwrap();
    let peer = fork(move || {
        std::thread::sleep(Duration::from_millis(50));
        FrameWriter::new(w).send(b"late frame").unwrap();
    });
    let mut frame = Vec::new();
    assert_eq!(FrameReader::new(&r).recv(&mut frame).unwrap(), Some(10));
    assert_eq!(frame, b"late frame");
    peer.join();
}

// A process that holds the pipe's old description (inherited across
// fork) flips its O_NONBLOCK all the time and never reads: the reopened
// end's calls that must not wait return at once, and its timed calls
// return by their deadline.
fn calls_that_must_not_wait_never_do_whatever_others_do_to_the_shared_mode() {
    let (r, w) = pipe().unwrap();
    let (r_old, w_old) = (r.try_clone().unwrap(), w.try_clone().unwrap());
    let hostile = fork(move || {
        loop {
            for end in [w_old.as_fd(), r_old.as_fd()] {
                let _ = fcntl(end, FcntlArg::F_SETFL(OFlag::empty()));
                let _ = fcntl(end, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
            }
        }
    });
    let (r, w) = (r.reopen().unwrap(), w.reopen().unwrap());
    let mut buf = [0; 64];
    for _ in 0..1000 {
        assert!(matches!(r.try_read(&mut buf), Err(Error::WouldBlock)));
    }
    let full = fill(&w);
    assert_eq!(full, w.capacity().unwrap());
    for _ in 0..1000 {
        assert!(matches!(w.try_write(b"x"), Err(Error::WouldBlock)));
        assert!(matches!(w.try_write_atomic(b"x"), Err(Error::WouldBlock)));
    }
    assert!(matches!(w.write_timeout(b"x", Duration::from_millis(20)), Err(Error::Timeout)));
    let mut frames = FrameWriter::new(&w);
    assert!(matches!(frames.try_send(b"frame"), Err(Error::WouldBlock)));
    assert!(matches!(frames.send_timeout(b"frame", Duration::from_millis(20)), Err(Error::Timeout)));
    // Async ends on a full pipe: a write that waited in the kernel would
    // hold the runtime's only thread, and the timeout could never fire.
    tokio_runtime().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut aw = w.into_async().unwrap();
        let written = tokio::time::timeout(Duration::from_millis(50), aw.write_all(b"more")).await;
        assert!(written.is_err(), "the write waits for room without holding the thread");
        let (r2, w2) = pipe().unwrap();
        let mut ar = r2.into_async().unwrap();
        let read = tokio::time::timeout(Duration::from_millis(50), ar.read(&mut buf)).await;
        assert!(read.is_err(), "the read waits for data without holding the thread");
        drop(w2);
    });
    drop(hostile);
    drop(r);
}

fn async_ends_leave_the_shared_mode_alone() {
    let (r, w) = pipe().unwrap();
    let (r_old, w_old) = (r.try_clone().unwrap(), w.try_clone().unwrap());
    tokio_runtime().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut aw = w.into_async().unwrap();
        let mut ar = r.into_async().unwrap();
        assert!(!raw_nonblocking(&w_old) && !raw_nonblocking(&r_old), "the shared descriptions stay blocking");
        aw.write_all(b"through the async ends").await.unwrap();
        let mut buf = [0; 22];
        ar.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"through the async ends");
        // Back from the async forms: ends whose blocking calls wait.
        let (r, w) = (ar.into_inner(), aw.into_inner());
        assert!(!r.is_nonblocking().unwrap() && !w.is_nonblocking().unwrap());
        let late = w_old.try_clone().unwrap();
        let peer = fork(move || {
            std::thread::sleep(Duration::from_millis(50));
            (&late).write_all(b"late").unwrap();
        });
        let mut four = [0; 4];
        (&r).read_exact(&mut four).unwrap();
        assert_eq!(&four, b"late");
        peer.join();
        drop(w);
    });
    // A child of another program sees a blocking stdin.
    let (r, w) = pipe().unwrap();
    let w_old = w.try_clone().unwrap();
    let child_stdin = tokio_runtime().block_on(async { r.into_async().unwrap().into_inner() });
    check_program_reads_late_input(child_stdin, w_old);
    drop(w);
}

/// Runs `head -c 5` with `stdin` and writes its input late: a program that
/// got a nonblocking stdin would fail with `EAGAIN` instead of waiting.
fn check_program_reads_late_input(stdin: PipeReader, w: PipeWriter) {
    let child = Command::new("head")
        .args(["-c", "5"])
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    (&w).write_all(b"hello").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"hello");
}

fn reopened_ends_leave_as_ordinary_ones() {
    let (r, w) = pipe().unwrap();
    let (r2, w2) = (r.reopen().unwrap(), w.reopen().unwrap());
    let (rn, wn) = (r2.as_raw_fd(), w2.as_raw_fd());
    let (fd_r, fd_w): (OwnedFd, OwnedFd) = (r2.into(), w2.into());
    assert_eq!((fd_r.as_raw_fd(), fd_w.as_raw_fd()), (rn, wn), "the same fds");
    assert!(!raw_nonblocking(&fd_r) && !raw_nonblocking(&fd_w), "handed out in blocking mode");
    // Taken back, they are ordinary ends; the numbers no longer count as
    // reopened (a blocking pipe made at a reused number must not be taken
    // for a nonblocking one by the calls that must not wait).
    drop((fd_r, fd_w));
    let (r3, w3) = pipe().unwrap();
    let mut buf = [0; 8];
    assert!(matches!(r3.try_read(&mut buf), Err(Error::WouldBlock)));
    assert_eq!(fill(&w3), w3.capacity().unwrap());
    assert!(matches!(w3.try_write(b"x"), Err(Error::WouldBlock)));
    drop((r3, w3));

    // As a program's stdin.
    let (r, w) = pipe().unwrap();
    check_program_reads_late_input(r.reopen().unwrap(), w.try_clone().unwrap());
    drop((r, w));

    // Made nonblocking explicitly: an ordinary nonblocking end.
    let (r, w) = pipe().unwrap();
    let w2 = w.reopen().unwrap();
    w2.set_nonblocking(true).unwrap();
    assert!(w2.is_nonblocking().unwrap());
    let mut filled = 0;
    let err = loop {
        match (&w2).write(&[0; 4096]) {
            Ok(n) => filled += n,
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "Write no longer waits");
    assert_eq!(filled, w2.capacity().unwrap());
    w2.set_nonblocking(false).unwrap();
    assert!(!raw_nonblocking(&w2) && !w2.is_nonblocking().unwrap());
    drop((r, w, w2));
}

fn clones_of_reopened_ends_have_their_own_descriptions() {
    let (r, w) = pipe().unwrap();
    let w2 = w.reopen().unwrap();
    let w3 = w2.try_clone().unwrap();
    assert_eq!(file_id(&w3), file_id(&w));
    assert!(raw_nonblocking(&w3) && !w3.is_nonblocking().unwrap());
    // Making one ordinary leaves the other as it was.
    w3.set_nonblocking(false).unwrap();
    assert!(raw_nonblocking(&w2), "the clone's mode is its own");
    let fd: OwnedFd = w3.into();
    assert!(!raw_nonblocking(&fd));
    assert!(raw_nonblocking(&w2));
    assert_eq!(fill(&w2), w2.capacity().unwrap(), "and its calls still never wait");
    drop((r, w, w2, fd));
}

fn reopen_refuses_what_it_cannot_open_and_the_end_stays_usable() {
    // A FIFO's writing end whose readers are all gone: the open is
    // refused (ENXIO), and the end reports the broken pipe as before.
    let dir = ScratchDir::new();
    let fifo = ipc_kit::fifo::Fifo::create(dir.path().join("f"), 0o600).unwrap();
    let r = fifo.try_open_reader().unwrap();
    let w = fifo.try_open_writer().unwrap();
    drop(r);
    match w.reopen() {
        Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(libc::ENXIO), "{source}"),
        other => panic!("expected ENXIO, got {other:?}"),
    }
    assert!(matches!(w.try_write(b"x"), Err(Error::BrokenPipe)));
    // An anonymous pipe's writing end opens again without readers (the
    // kernel checks readers only for FIFOs) and reports the broken pipe.
    let (r, w) = pipe().unwrap();
    drop(r);
    let w2 = w.reopen().unwrap();
    assert!(matches!(w2.try_write(b"x"), Err(Error::BrokenPipe)));
    assert!(matches!((&w2).write(b"x").map_err(|e| e.kind()), Err(std::io::ErrorKind::BrokenPipe)));
    // Not a pipe at all.
    let file = std::fs::File::open("/proc/self/stat").unwrap();
    let not_a_pipe = PipeReader::from(OwnedFd::from(file));
    match not_a_pipe.reopen() {
        Err(Error::Io { source, .. }) => assert_eq!(source.kind(), std::io::ErrorKind::InvalidData, "{source}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn a_fifo_end_reopens_after_its_name_is_gone() {
    let dir = ScratchDir::new();
    let fifo = ipc_kit::fifo::Fifo::create(dir.path().join("f"), 0o600).unwrap();
    let r = fifo.try_open_reader().unwrap();
    let w = fifo.try_open_writer().unwrap();
    drop(fifo);
    assert!(!dir.path().join("f").exists(), "the name is gone");
    let (r2, w2) = (r.reopen().unwrap(), w.reopen().unwrap());
    assert_eq!(file_id(&r2), file_id(&r));
    drop((r, w));
    let mut frames = FrameWriter::new(&w2);
    frames.try_send(b"through a nameless FIFO").unwrap();
    let mut frame = Vec::new();
    assert_eq!(FrameReader::new(&r2).try_recv(&mut frame).unwrap(), Some(23));
    drop(w2);
    assert_eq!(FrameReader::new(&r2).recv(&mut frame).unwrap(), None);
}

// Ends are kept track of below fd 4096: a reopening that lands higher is
// refused and closes what it opened.
fn fds_above_the_tracked_range_are_refused() {
    let child = fork(|| {
        let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
        if hard < 4200 {
            println!("RLIMIT_NOFILE's hard limit is {hard}: cannot reach fd 4096; checked below it only");
        } else {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 4200, hard).unwrap();
        }
        let (r, w) = pipe().unwrap();
        let mut held = Vec::new();
        // Take every number below 4096 (or the limit).
        while let Ok(fd) = nix::fcntl::fcntl(r.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(0)) {
            if fd >= 4096 {
                let _ = nix::unistd::close(fd);
                break;
            }
            held.push(fd);
        }
        if hard >= 4200 {
            let before = std::fs::read_dir("/proc/self/fd").unwrap().count();
            match w.reopen() {
                Err(Error::Io { source, .. }) => assert!(source.to_string().contains("4096"), "{source}"),
                other => panic!("expected a refusal above the tracked range, got {other:?}"),
            }
            assert_eq!(std::fs::read_dir("/proc/self/fd").unwrap().count(), before, "nothing left open");
        }
        for fd in held {
            close_inherited(fd);
        }
        let w2 = w.reopen().unwrap();
        assert!(raw_nonblocking(&w2));
    });
    child.join();
}
