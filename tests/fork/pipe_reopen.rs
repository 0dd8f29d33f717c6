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
    splice_and_tee_between_an_ordinary_end_and_a_reopened_one_wait,
    splice_with_a_nonblocking_end_returns_would_block_as_with_an_ordinary_end,
    a_reused_fd_number_is_not_taken_for_a_reopened_end,
    the_mark_of_a_reopened_end_closed_in_a_forked_child_does_not_outlive_it,
    try_clone_of_a_reopened_end_works_wherever_a_dup_would,
    blocking_calls_of_reopened_ends_wait_through_signals,
    marks_stay_right_when_threads_reopen_and_close_ends_at_once,
    a_fifo_reader_whose_writers_left_stays_as_it_is_and_sees_end_of_file,
    try_read_never_waits_while_another_thread_sets_the_mode,
    a_reused_fd_number_holding_a_nonblocking_pipe_is_not_taken_for_a_reopened_end,
    an_end_leaving_as_an_ordinary_one_frees_its_mark_before_its_number,
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

/// A FIFO in `dir` and its two ends (removed when the `Fifo` is dropped).
fn fifo_ends(dir: &ScratchDir) -> (ipc_kit::fifo::Fifo, PipeReader, PipeWriter) {
    let fifo = ipc_kit::fifo::Fifo::create(dir.path().join("f"), 0o600).unwrap();
    let r = fifo.try_open_reader().unwrap();
    let w = fifo.try_open_writer().unwrap();
    (fifo, r, w)
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
    let (fd_r, fd_w): (OwnedFd, OwnedFd) = (r2.into(), w2.into());
    assert!(!raw_nonblocking(&fd_r) && !raw_nonblocking(&fd_w), "handed out in blocking mode");
    assert_eq!((file_id(&fd_r), file_id(&fd_w)), (file_id(&r), file_id(&w)), "the same pipe");
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

    // Made nonblocking explicitly: its calls follow nonblocking mode (its
    // description stays nonblocking whatever the mode).
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
    assert!(raw_nonblocking(&w2) && !w2.is_nonblocking().unwrap());
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
    let (_fifo, r, w) = fifo_ends(&dir);
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
    let (fifo, r, w) = fifo_ends(&dir);
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

/// A pipe whose ends are both ordinary and blocking, `w` full.
fn full_ordinary_pipe() -> (PipeReader, PipeWriter) {
    let (r, w) = pipe().unwrap();
    assert_eq!(fill(&w), w.capacity().unwrap());
    (r, w)
}

// A splice or tee with a reopened end on one side and an ordinary
// blocking end on the other waits for whichever side stops it, as
// between two ordinary blocking ends: the ordinary side being empty or
// full is no reason to return `WouldBlock`.
fn splice_and_tee_between_an_ordinary_end_and_a_reopened_one_wait() {
    // From an ordinary empty pipe into a reopened writer: waits for data.
    let (from, late) = pipe().unwrap();
    let (to_r, to_w) = reopened_pipe();
    let peer = fork(move || {
        std::thread::sleep(Duration::from_millis(60));
        (&late).write_all(&[1; 8]).unwrap();
    });
    assert_eq!(splice(&from, &to_w, 8).map_err(|e| e.to_string()), Ok(8), "splice waited for data");
    peer.join();
    let mut buf = [0; 8];
    (&to_r).read_exact(&mut buf).unwrap();
    assert_eq!(buf, [1; 8]);

    // The same with tee.
    let (from, late) = pipe().unwrap();
    let peer = fork(move || {
        std::thread::sleep(Duration::from_millis(60));
        (&late).write_all(&[2; 8]).unwrap();
    });
    assert_eq!(tee(&from, &to_w, 8).map_err(|e| e.to_string()), Ok(8), "tee waited for data");
    peer.join();
    (&to_r).read_exact(&mut buf).unwrap();
    assert_eq!(buf, [2; 8]);

    // From a reopened reader that has data into an ordinary full pipe:
    // waits for room.
    let (to_r, to_w) = full_ordinary_pipe();
    // A reader stays after the drainer ends.
    let _keep = to_r.try_clone().unwrap();
    let (from_r, from_w) = reopened_pipe();
    (&from_w).write_all(&[3; 8]).unwrap();
    let drain = fork(move || {
        std::thread::sleep(Duration::from_millis(60));
        let mut page = vec![0; 4096];
        (&to_r).read_exact(&mut page).unwrap();
    });
    assert_eq!(splice(&from_r, &to_w, 8).map_err(|e| e.to_string()), Ok(8), "splice waited for room");
    drain.join();

    // From a blocking socket with nothing in it into a reopened writer.
    let (sock, late) = std::os::unix::net::UnixStream::pair().unwrap();
    let (to_r, to_w) = reopened_pipe();
    let peer = fork(move || {
        std::thread::sleep(Duration::from_millis(60));
        (&late).write_all(&[4; 8]).unwrap();
    });
    assert_eq!(splice(&sock, &to_w, 8).map_err(|e| e.to_string()), Ok(8), "splice waited for the socket");
    peer.join();
    (&to_r).read_exact(&mut buf).unwrap();
    assert_eq!(buf, [4; 8]);
}

// With the other side made nonblocking by its user, a splice or tee
// returns `WouldBlock` at once, as it does when the reopened side is an
// ordinary blocking end: a late peer only keeps the case from hanging.
fn splice_with_a_nonblocking_end_returns_would_block_as_with_an_ordinary_end() {
    // The kernel's answer between ordinary ends, one of them nonblocking.
    let (plain_r, plain_w) = pipe().unwrap();
    let (nb_r, nb_w) = pipe().unwrap();
    nb_w.set_nonblocking(true).unwrap();
    assert!(matches!(splice(&plain_r, &nb_w, 8), Err(Error::WouldBlock)), "ordinary empty into nonblocking");
    drop((plain_w, nb_r));

    // A reopened empty reader into a nonblocking writer.
    let (from_r, from_w) = pipe().unwrap();
    let from_r = from_r.reopen().unwrap();
    let (_nb_r, nb_w) = pipe().unwrap();
    nb_w.set_nonblocking(true).unwrap();
    let peer = fork(move || {
        std::thread::sleep(Duration::from_millis(200));
        (&from_w).write_all(&[1; 8]).unwrap();
    });
    let got = splice(&from_r, &nb_w, 8);
    peer.join();
    assert!(matches!(got, Err(Error::WouldBlock)), "splice into a nonblocking end: {got:?}");
    let got = tee(&from_r, &nb_w, 8);
    assert!(got.is_ok(), "data is there now: {got:?}");

    // A nonblocking reader with data into a reopened full writer.
    let (nb_r, nb_w) = pipe().unwrap();
    (&nb_w).write_all(&[2; 8]).unwrap();
    nb_r.set_nonblocking(true).unwrap();
    let (to_r, to_w) = pipe().unwrap();
    let to_w = to_w.reopen().unwrap();
    fill(&to_w);
    let drain = fork(move || {
        std::thread::sleep(Duration::from_millis(200));
        let mut page = vec![0; 4096];
        (&to_r).read_exact(&mut page).unwrap();
    });
    let got = splice(&nb_r, &to_w, 8);
    drain.join();
    assert!(matches!(got, Err(Error::WouldBlock)), "splice from a nonblocking end: {got:?}");
}

/// In a forked child: `fd` moved to the number `n` (free, just closed).
fn at_number(fd: OwnedFd, n: i32) -> OwnedFd {
    let moved = ipc_kit_tests::dup_at_least(fd.as_fd(), n);
    assert_eq!(moved.as_raw_fd(), n, "the freed number is taken again");
    moved
}

/// In a forked child: a new ordinary pipe whose reading end takes the
/// number `n` (free, just closed).
fn pipe_reading_at(n: i32) -> (PipeReader, PipeWriter) {
    let (r, w) = pipe().unwrap();
    (PipeReader::from(at_number(r.into(), n)), w)
}

/// `then` run on a thread after 200 ms: the late peer that keeps a call
/// that wrongly waits from hanging a case.
fn later<T: Send + 'static>(then: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        then()
    })
}

// A forked child closes its copies of the reopened ends its parent keeps
// (as `close_inherited` does, the only way to reach them there); a pipe
// it makes afterwards at the same numbers is an ordinary one.
fn a_reused_fd_number_is_not_taken_for_a_reopened_end() {
    let (r, w) = reopened_pipe();
    let rn = r.as_raw_fd();
    let child = fork(move || {
        close_inherited(rn);
        let (r3, w3) = pipe_reading_at(rn);
        // try_read on the blocking, empty pipe must not wait: a late
        // write keeps a wrong wait from hanging the case.
        let mut buf = [0; 8];
        let late = later(move || {
            (&w3).write_all(b"late").unwrap();
            w3
        });
        let got = r3.try_read(&mut buf);
        let w3 = late.join().unwrap();
        assert!(matches!(got, Err(Error::WouldBlock)), "try_read did not wait: {got:?}");
        // Made nonblocking by its user, it says so, and Read does not wait.
        let _ = r3.try_read(&mut buf);
        r3.set_nonblocking(true).unwrap();
        assert!(r3.is_nonblocking().unwrap(), "an ordinary end in nonblocking mode reports it");
        assert_eq!(
            (&r3).read(&mut buf).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "Read on a nonblocking end returns WouldBlock",
        );
        drop(w3);
    });
    child.join();
    drop((r, w));
}

// The same, for a writing end reused as the writing end of a full
// ordinary pipe: try_write must not wait for room.
fn the_mark_of_a_reopened_end_closed_in_a_forked_child_does_not_outlive_it() {
    let (r, w) = reopened_pipe();
    let (rn, wn) = (r.as_raw_fd(), w.as_raw_fd());
    let child = fork(move || {
        close_inherited(rn);
        close_inherited(wn);
        let (r3, w3) = pipe().unwrap();
        let (r3, w3) = (PipeReader::from(at_number(r3.into(), rn)), PipeWriter::from(at_number(w3.into(), wn)));
        let capacity = w3.capacity().unwrap();
        (&w3).write_all(&vec![0; capacity]).unwrap();
        let late = later(move || {
            let mut all = vec![0; capacity];
            (&r3).read_exact(&mut all).unwrap();
            r3
        });
        let got = w3.try_write(b"x");
        let _r3 = late.join().unwrap();
        assert!(matches!(got, Err(Error::WouldBlock)), "try_write did not wait: {got:?}");
        w3.set_nonblocking(true).unwrap();
        assert!(w3.is_nonblocking().unwrap(), "an ordinary end in nonblocking mode reports it");
    });
    child.join();
    drop((r, w));
}

// try_clone of a reopened end succeeds where a dup of an ordinary end
// does: a FIFO's writing end whose readers are gone, and a process that
// dropped privileges after the pipe was made.
fn try_clone_of_a_reopened_end_works_wherever_a_dup_would() {
    let dir = ScratchDir::new();
    let (fifo, r, w) = fifo_ends(&dir);
    let w2 = w.reopen().unwrap();
    drop(r);
    assert!(w.try_clone().is_ok(), "an ordinary end clones");
    let clone = w2.try_clone();
    drop((w, w2, fifo));

    let (r, w) = reopened_pipe();
    let child = fork(move || {
        ipc_kit_tests::become_nobody();
        let clone = r.try_clone();
        assert!(clone.is_ok(), "a reopened end clones after dropping privileges: {clone:?}");
        let clone = w.try_clone();
        assert!(clone.is_ok(), "a reopened end clones after dropping privileges: {clone:?}");
    });
    child.join();
    assert!(clone.is_ok(), "a reopened FIFO end without readers clones too: {clone:?}");
}

// Signals that interrupt system calls (a handler without SA_RESTART) do
// not end the waits of a reopened end's blocking calls: they go on
// waiting, and never return `Interrupted` or `WouldBlock`.
fn blocking_calls_of_reopened_ends_wait_through_signals() {
    ipc_kit_tests::interrupt_on(nix::sys::signal::Signal::SIGUSR1);
    let parent = nix::unistd::getpid();
    let (r, w) = pipe().unwrap();
    let r = r.reopen().unwrap();
    let (b_r, b_w) = reopened_pipe();
    let b_rn = b_r.as_raw_fd();
    let peer = fork(move || {
        close_inherited(b_rn);
        for round in 0..3u8 {
            for _ in 0..10 {
                std::thread::sleep(Duration::from_millis(5));
                let _ = nix::sys::signal::kill(parent, nix::sys::signal::Signal::SIGUSR1);
            }
            (&w).write_all(&[round; 8]).unwrap();
        }
    });
    let mut buf = [0; 8];
    (&r).read_exact(&mut buf).unwrap();
    assert_eq!(buf, [0; 8]);
    let mut frame = [0; 8];
    assert_eq!(splice(&r, &b_w, 8).unwrap(), 8, "splice waited through the signals");
    (&b_r).read_exact(&mut frame).unwrap();
    assert_eq!(frame, [1; 8]);
    assert_eq!(tee(&r, &b_w, 8).unwrap(), 8, "tee waited through the signals");
    peer.join();
}

// Threads that reopen and drop ends side by side leave no mark behind:
// afterwards every ordinary end made in the process reports its own mode.
fn marks_stay_right_when_threads_reopen_and_close_ends_at_once() {
    let (r, w) = pipe().unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..300 {
                    let a = r.reopen().unwrap();
                    let b = w.reopen().unwrap();
                    let (c, d) = pipe().unwrap();
                    assert!(!c.is_nonblocking().unwrap());
                    c.set_nonblocking(true).unwrap();
                    assert!(c.is_nonblocking().unwrap(), "an ordinary end is never taken for a reopened one");
                    drop((a, b, c, d));
                }
            });
        }
    });
    let mut ends = Vec::new();
    for _ in 0..64 {
        let (c, d) = pipe().unwrap();
        c.set_nonblocking(true).unwrap();
        d.set_nonblocking(true).unwrap();
        assert!(c.is_nonblocking().unwrap() && d.is_nonblocking().unwrap(), "no mark left at {}", c.as_raw_fd());
        ends.push((c, d));
    }
}

// A FIFO's reading end whose writers all closed is at end of file
// (POLLHUP); a new description of it would not say so to a poll, so it is
// not reopened, and its async end reads `Ok(0)`, not a wait for a writer
// that may never come.
fn a_fifo_reader_whose_writers_left_stays_as_it_is_and_sees_end_of_file() {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let dir = ScratchDir::new();
    let (_fifo, r, w) = fifo_ends(&dir);
    drop(w);
    let revents = |end: &PipeReader| {
        let mut fds = [PollFd::new(end.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).unwrap();
        fds[0].revents().unwrap()
    };
    assert!(revents(&r).contains(PollFlags::POLLHUP), "the first end is at end of file");
    // A new description would not report it: the reopening is refused,
    // and the async form keeps the first end.
    assert!(matches!(r.reopen(), Err(Error::Io { .. }) | Err(Error::BrokenPipe)), "{:?}", r.reopen());
    let mut buf = [0; 8];
    assert_eq!(r.try_read(&mut buf).unwrap(), 0);
    tokio_runtime().block_on(async {
        use tokio::io::AsyncReadExt;
        let mut ar = r.into_async().unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), ar.read(&mut buf)).await;
        assert!(matches!(got, Ok(Ok(0))), "the async end reads end of file: {got:?}");
    });
}

// One thread calls try_read on an empty pipe while another sets the
// reopened end's mode (set_nonblocking, which takes `&self`): each
// try_read still returns at once. A write after a generous grace keeps a
// try_read that waits from hanging the case.
fn try_read_never_waits_while_another_thread_sets_the_mode() {
    for round in 0..200 {
        let (r, w) = pipe().unwrap();
        let r = r.reopen().unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut buf = [0; 8];
                let mut calls = 0u64;
                let got = loop {
                    match r.try_read(&mut buf) {
                        Err(Error::WouldBlock) => calls += 1,
                        other => break Some(format!("{other:?}")),
                    }
                    if calls == 1 {
                        tx.send(None).unwrap();
                    }
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break None;
                    }
                };
                tx.send(got).unwrap();
            });
            assert_eq!(rx.recv().unwrap(), None, "the thread is calling try_read");
            r.set_nonblocking(round % 2 == 1).unwrap();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let got = rx.recv_timeout(Duration::from_secs(5));
            if got.is_err() {
                (&w).write_all(b"x").unwrap();
            }
            assert_eq!(got, Ok(None), "round {round}: every try_read returned WouldBlock at once");
        });
    }
}

// As `a_reused_fd_number_is_not_taken_for_a_reopened_end`, with the pipe
// made at the reused number nonblocking by its user before any call: the
// number holds a nonblocking pipe, as a reopened end's does, and Read on
// it still returns WouldBlock rather than wait.
fn a_reused_fd_number_holding_a_nonblocking_pipe_is_not_taken_for_a_reopened_end() {
    let (r, w) = reopened_pipe();
    let rn = r.as_raw_fd();
    let child = fork(move || {
        close_inherited(rn);
        let (r3, w3) = pipe_reading_at(rn);
        r3.set_nonblocking(true).unwrap();
        // A late write keeps a wrong wait from hanging the case.
        let late = later(move || {
            (&w3).write_all(b"late").unwrap();
            w3
        });
        let mut buf = [0; 8];
        let got = (&r3).read(&mut buf).map_err(|e| e.kind());
        let _w3 = late.join().unwrap();
        assert_eq!(got, Err(std::io::ErrorKind::WouldBlock), "Read on a nonblocking end returns WouldBlock");
    });
    child.join();
    drop((r, w));
}

// A reopened end that leaves as an ordinary one (into an OwnedFd) clears
// its mark before its fd number can be taken again: a clone of a
// reopened end made on another thread at that number (a FIFO's writing
// end without readers, which clones by dup) keeps its own mark.
fn an_end_leaving_as_an_ordinary_one_frees_its_mark_before_its_number() {
    let dir = ScratchDir::new();
    let (_fifo, reader, writer) = fifo_ends(&dir);
    let writer = writer.reopen().unwrap();
    drop(reader);
    let (r, _w) = pipe().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..20_000 {
                let end = r.reopen().unwrap();
                drop(OwnedFd::from(end));
            }
        });
        s.spawn(|| {
            for _ in 0..20_000 {
                let end = writer.try_clone().unwrap();
                assert!(!end.is_nonblocking().unwrap(), "a clone lost its mark at {}", end.as_raw_fd());
            }
        });
    });
}
