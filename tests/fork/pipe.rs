//! Pipes across real processes: fork, exec, peers that die.

use std::cell::RefCell;
use std::io::{BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipc_kit::pipe::{
    ChildFds, Duplex, Error, FrameReader, FrameWriter, PIPE_BUF, PipeReader, PipeWriter, SigpipeGuard, duplex, pipe,
    splice, splice_all, tee,
};
use ipc_kit_tests::{
    Exit, Forked, ScratchDir, assert_fired_within, cases, checksum, close_inherited, fork, interrupt_on, is_pending,
    may_exceed_resource_limits, pattern, set_sigpipe_default,
};
use nix::sys::signal::Signal;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

cases!("pipe":
    parent_to_child,
    child_to_parent,
    duplex_round_trips,
    exec_stdin_and_stdout,
    exec_stdout_reaches_eof,
    exec_writer_at_fd3,
    exec_reader_at_fd3,
    exec_child_holds_no_stray_ends,
    exec_fd_numbers_may_swap,
    frames_proptest_echo,
    frame_bogus_length_from_peer,
    frame_truncated_at_eof,
    frame_clean_eof_is_none,
    frame_try_recv_keeps_partial_frames,
    write_atomic_many_writers,
    small_frames_many_writers_do_not_interleave,
    write_atomic_too_large_writes_nothing,
    sigpipe_default_is_not_fatal,
    sigpipe_guard_scopes_the_mask,
    sigpipe_disposition_read_when_writers_are_made,
    reader_killed_mid_stream,
    writer_killed_mid_stream,
    read_timeout_fires,
    write_timeout_fires,
    read_timeout_wakes_on_data,
    try_forms_never_block,
    nonblocking_mode_is_shared_across_fork,
    capacity_set_refused_and_shared,
    splice_and_tee_across_processes,
    vmsplice_to_child,
    std_pipe_interop,
    eintr_is_retried,
    sigpipe_guards_nest_in_any_drop_order,
    exec_fd_target_on_std_error_pipe,
    pipe_sender_checks_limits_before_writing,
    pipe_sender_timed_forms_never_block,
    zero_and_past_timeouts_try_once,
    exec_fd_target_freed_before_spawn_is_refused,
    pipe_and_fifo_pairs_refuse_what_they_cannot_deliver,
    frame_timed_sends_many_writers_do_not_interleave,
    frame_timed_sends_stalled_reader_get_whole_frames_or_nothing,
    frame_timed_sends_reader_killed_is_broken_pipe,
);

const MIB: usize = 1 << 20;

fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).expect("read to end");
    v
}

/// Starts `cmd`, then drops it: that closes this process's copies of the
/// pipe ends it was given, so that the child's end of file is its own.
fn spawned(mut cmd: Command) -> std::process::Child {
    let child = cmd.spawn().unwrap();
    drop(cmd);
    child
}

/// Runs `cmd` and returns the text it wrote into the pipe read by `out`,
/// read to its end; `cmd` must exit with success.
fn text_from(cmd: Command, out: impl Read) -> String {
    let mut child = spawned(cmd);
    let got = String::from_utf8(read_all(out)).unwrap();
    assert!(child.wait().unwrap().success());
    got
}

fn parent_to_child() {
    let (r, mut w) = pipe().unwrap();
    let wfd = w.as_raw_fd();
    let child = fork(move || {
        close_inherited(wfd); // else the child's own copy keeps EOF away
        let got = read_all(r);
        assert_eq!(got.len(), 4 * MIB);
        assert!(got == pattern(1, 4 * MIB), "data differs");
    });
    w.write_all(&pattern(1, 4 * MIB)).unwrap();
    drop(w);
    child.join();
}

fn child_to_parent() {
    let (r, w) = pipe().unwrap();
    let child = fork(move || {
        let mut w = w;
        w.write_all(&pattern(2, 3 * MIB + 17)).unwrap();
    });
    // The closure, with the parent's copy of `w`, was dropped here: EOF
    // arrives when the child exits.
    let got = read_all(r);
    assert!(got == pattern(2, 3 * MIB + 17), "data differs ({} bytes)", got.len());
    child.join();
}

/// A duplex pipe whose far end `peer` runs in a forked child, which closes
/// its copies of the near end first (so that the near end alone decides
/// when the peer sees end of file). Returns the near end and the child.
fn duplex_with_a_peer(peer: impl FnOnce(Duplex)) -> (Duplex, Forked) {
    let (a, b) = duplex().unwrap();
    let (ar, aw) = (a.reader().as_raw_fd(), a.writer().as_raw_fd());
    let child = fork(move || {
        close_inherited(ar);
        close_inherited(aw);
        peer(b);
    });
    (a, child)
}

fn duplex_round_trips() {
    let (a, child) = duplex_with_a_peer(|mut b| {
        let mut buf = [0u8; 8];
        loop {
            match b.read_exact(&mut buf) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
                Err(e) => panic!("{e}"),
            }
            let n = u64::from_le_bytes(buf) + 1;
            b.write_all(&n.to_le_bytes()).unwrap();
        }
    });
    let mut a = a;
    let mut buf = [0u8; 8];
    for i in 0..2000u64 {
        a.write_all(&(i * 3).to_le_bytes()).unwrap();
        a.read_exact(&mut buf).unwrap();
        assert_eq!(u64::from_le_bytes(buf), i * 3 + 1);
    }
    drop(a); // the child sees EOF and exits
    child.join();
}

fn exec_stdin_and_stdout() {
    let (child_in, to_child) = pipe().unwrap();
    let (from_child, child_out) = pipe().unwrap();
    let mut cmd = Command::new("cat");
    cmd.stdin(child_in).stdout(child_out);
    let mut child = spawned(cmd);
    let data = pattern(3, 2 * MIB);
    let expected = data.clone();
    // Write from a thread: cat's output pipe fills while we still write.
    let writer = std::thread::spawn(move || {
        let mut to_child = to_child;
        to_child.write_all(&data).unwrap();
    });
    let got = read_all(from_child);
    writer.join().unwrap();
    assert!(child.wait().unwrap().success());
    assert!(got == expected, "cat returned {} bytes that differ", got.len());
}

fn exec_stdout_reaches_eof() {
    let (r, w) = pipe().unwrap();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "printf first; sleep 0.05; printf ' second'"]).stdout(w);
    assert_eq!(text_from(cmd, r), "first second");
}

fn exec_writer_at_fd3() {
    let (r, w) = pipe().unwrap();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo through fd 3 >&3; echo not here"]).stdout(Stdio::null());
    let mut fds = ChildFds::new();
    fds.insert(3, w).unwrap();
    fds.apply(&mut cmd);
    assert_eq!(text_from(cmd, r), "through fd 3\n");
}

fn exec_reader_at_fd3() {
    let (r_in, mut w_in) = pipe().unwrap();
    let (r_out, w_out) = pipe().unwrap();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec cat <&3"]).stdout(w_out).stdin(Stdio::null());
    let mut fds = ChildFds::new();
    fds.insert(3, r_in).unwrap();
    // Numbers below 3 and duplicates are refused before anything happens.
    assert!(matches!(fds.insert(1, pipe().unwrap().0), Err(Error::InvalidChildFd { fd: 1, .. })));
    assert!(matches!(fds.insert(3, pipe().unwrap().0), Err(Error::InvalidChildFd { fd: 3, .. })));
    fds.apply(&mut cmd);
    let mut child = spawned(cmd);
    w_in.write_all(b"read from fd 3").unwrap();
    drop(w_in);
    assert_eq!(read_all(r_out), b"read from fd 3");
    assert!(child.wait().unwrap().success());
}

fn exec_child_holds_no_stray_ends() {
    let (r1, w1) = pipe().unwrap();
    let (r2, w2) = pipe().unwrap();
    let (r3, w3) = pipe().unwrap(); // stays in the parent: must not reach the child
    let ino = |fd: &dyn AsFd| {
        let f = std::fs::File::from(fd.as_fd().try_clone_to_owned().unwrap());
        f.metadata().unwrap().ino()
    };
    let (ino1, ino2, ino3) = (ino(&r1), ino(&r2), ino(&r3));
    let mut cmd = Command::new("ls");
    cmd.args(["-l", "/proc/self/fd/"]).stdout(w1).stdin(Stdio::null());
    let mut fds = ChildFds::new();
    fds.insert(3, r2).unwrap();
    fds.apply(&mut cmd);
    let listing = text_from(cmd, r1);
    let mut seen = Vec::new();
    for line in listing.lines() {
        let Some((left, target)) = line.split_once(" -> ") else { continue };
        let fd: i32 = left.rsplit(' ').next().unwrap().parse().unwrap();
        for (name, ino) in [("pipe 1", ino1), ("pipe 2", ino2), ("pipe 3", ino3)] {
            if target == format!("pipe:[{ino}]") {
                seen.push((fd, name));
            }
        }
    }
    seen.sort();
    assert_eq!(seen, vec![(1, "pipe 1"), (3, "pipe 2")], "child's fds:\n{listing}");
    drop((w2, r3, w3));
}

fn exec_fd_numbers_may_swap() {
    // Each end goes to the number the other end has in the parent: a
    // naive dup2 in order would overwrite the second source with the first.
    let (ra, wa) = pipe().unwrap();
    let (rb, wb) = pipe().unwrap();
    let (na, nb) = (wa.as_raw_fd(), wb.as_raw_fd());
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("echo to-a >&{nb}; echo to-b >&{na}")]).stdin(Stdio::null());
    let mut fds = ChildFds::new();
    fds.insert(nb, wa).unwrap();
    fds.insert(na, wb).unwrap();
    fds.apply(&mut cmd);
    let mut child = spawned(cmd);
    assert_eq!(read_all(ra), b"to-a\n");
    assert_eq!(read_all(rb), b"to-b\n");
    assert!(child.wait().unwrap().success());
}

fn frames_proptest_echo() {
    let (a, child) = duplex_with_a_peer(|b| {
        let (r, w) = b.split();
        let mut rx = FrameReader::new(r);
        let mut tx = FrameWriter::new(w);
        let mut buf = Vec::new();
        while rx.recv(&mut buf).unwrap().is_some() {
            tx.send(&buf).unwrap();
        }
    });
    let (r, w) = a.split();
    let rx = RefCell::new(FrameReader::new(r));
    let tx = RefCell::new(FrameWriter::new(w));
    let mut runner = TestRunner::new(Config { cases: 96, failure_persistence: None, ..Config::default() });
    let frames = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100_000), 0..6);
    runner
        .run(&frames, |frames| {
            let mut echo = Vec::new();
            for f in &frames {
                tx.borrow_mut().send(f).unwrap();
                prop_assert_eq!(rx.borrow_mut().recv(&mut echo).unwrap(), Some(f.len()));
                prop_assert!(&echo == f);
            }
            Ok(())
        })
        .unwrap();
    drop(tx);
    assert_eq!(rx.borrow_mut().recv(&mut Vec::new()).unwrap(), None);
    child.join();
}

fn frame_bogus_length_from_peer() {
    let (r, w) = pipe().unwrap();
    let child = fork(move || {
        let mut w = w;
        w.write_all(&0xFFFF_FFF0u32.to_le_bytes()).unwrap();
        w.write_all(b"a few bytes, nowhere near 4 GiB").unwrap();
    });
    let mut rx = FrameReader::with_max(r, MIB);
    let mut buf = Vec::new();
    match rx.recv(&mut buf) {
        Err(Error::FrameTooLarge { len, max }) => {
            assert_eq!(len, 0xFFFF_FFF0);
            assert_eq!(max, MIB);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert_eq!(buf.capacity(), 0, "nothing may be allocated for a bogus frame");
    let io: std::io::Error = Error::FrameTooLarge { len: 1, max: 0 }.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
    child.join();
}

fn frame_truncated_at_eof() {
    for (header, body_sent, expected, got) in [(1000u32, 10usize, 1000u64, 10u64), (0, 0, 4, 2)] {
        let (r, w) = pipe().unwrap();
        let child = fork(move || {
            let mut w = w;
            if expected == 4 {
                w.write_all(&[1, 2]).unwrap(); // half a header
            } else {
                w.write_all(&header.to_le_bytes()).unwrap();
                w.write_all(&vec![9; body_sent]).unwrap();
            }
        });
        let mut rx = FrameReader::new(r);
        match rx.recv(&mut Vec::new()) {
            Err(Error::TruncatedFrame { expected: e, got: g }) => assert_eq!((e, g), (expected, got)),
            other => panic!("expected TruncatedFrame, got {other:?}"),
        }
        child.join();
    }
}

fn frame_clean_eof_is_none() {
    let (r, w) = pipe().unwrap();
    let child = fork(move || {
        let mut tx = FrameWriter::new(w);
        for i in 0..3u8 {
            tx.send(&vec![i; usize::from(i) * 1000]).unwrap();
        }
    });
    let mut rx = FrameReader::new(r);
    let mut buf = Vec::new();
    for i in 0..3u8 {
        assert_eq!(rx.recv(&mut buf).unwrap(), Some(usize::from(i) * 1000));
        assert!(buf.iter().all(|&b| b == i));
    }
    assert_eq!(rx.recv(&mut buf).unwrap(), None);
    assert_eq!(rx.recv(&mut buf).unwrap(), None, "EOF stays EOF");
    child.join();
}

fn frame_try_recv_keeps_partial_frames() {
    let (r, w) = pipe().unwrap();
    let (go_r, go_w) = pipe().unwrap();
    let body = pattern(7, 200_000);
    let child_body = body.clone();
    let child = fork(move || {
        let mut w = w;
        let (mut go_r, _) = (go_r, ());
        w.write_all(&(child_body.len() as u32).to_le_bytes()).unwrap();
        w.write_all(&child_body[..30_000]).unwrap();
        let mut b = [0];
        go_r.read_exact(&mut b).unwrap();
        w.write_all(&child_body[30_000..]).unwrap();
    });
    let mut rx = FrameReader::new(r);
    let mut buf = Vec::new();
    // Wait until the first part is there, then find the frame incomplete.
    std::thread::sleep(Duration::from_millis(50));
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::WouldBlock)));
    let t = Instant::now();
    assert!(matches!(rx.recv_timeout(&mut buf, Duration::from_millis(100)), Err(Error::Timeout)));
    assert_fired_within(t.elapsed(), Duration::from_millis(100), Duration::from_secs(1));
    (&go_w).write_all(b"g").unwrap();
    assert_eq!(rx.recv_timeout(&mut buf, Duration::from_secs(10)).unwrap(), Some(body.len()));
    assert!(buf == body, "frame differs");
    assert_eq!(rx.recv_timeout(&mut buf, Duration::from_secs(10)).unwrap(), None);
    child.join();
}

/// A self-checking message of 15 to `max_len` bytes:
/// `[len u16][writer u8][seq u32][payload][sum u64]`.
fn message(writer: u8, seq: u32, max_len: usize) -> Vec<u8> {
    let len = 15 + (seq as usize * 7919 + usize::from(writer) * 104_729) % (max_len - 15 + 1);
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u16).to_le_bytes());
    m.push(writer);
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(&pattern(u64::from(seq) << 8 | u64::from(writer), len - 15));
    let sum = checksum(&m);
    m.extend_from_slice(&sum.to_le_bytes());
    m
}

/// Forks `writers` processes that share one pipe, each sending
/// `per_writer` messages of at most `max_len` bytes with `send`; reads them
/// all with `next` and checks that none is corrupted, interleaved, lost or
/// out of order.
fn many_writers<R>(
    writers: u8,
    per_writer: u32,
    max_len: usize,
    send: fn(&PipeWriter, &[u8]),
    reader: fn(PipeReader) -> R,
    mut next: impl FnMut(&mut R) -> Option<Vec<u8>>,
) {
    let (r, w) = pipe().unwrap();
    let rfd = r.as_raw_fd();
    let children: Vec<_> = (0..writers)
        .map(|id| {
            let w = w.try_clone().unwrap();
            fork(move || {
                close_inherited(rfd);
                for seq in 0..per_writer {
                    send(&w, &message(id, seq, max_len));
                }
            })
        })
        .collect();
    drop(w);
    let mut input = reader(r);
    let mut expected = vec![0u32; usize::from(writers)];
    while let Some(m) = next(&mut input) {
        let (body, sum) = m.split_at(m.len() - 8);
        assert_eq!(checksum(body).to_le_bytes(), sum, "a message arrived corrupted or interleaved");
        assert_eq!(usize::from(u16::from_le_bytes([body[0], body[1]])), m.len(), "message length");
        let writer = usize::from(body[2]);
        let seq = u32::from_le_bytes(body[3..7].try_into().unwrap());
        assert_eq!(seq, expected[writer], "writer {writer}: out of order or lost");
        expected[writer] += 1;
    }
    assert!(expected.iter().all(|&n| n == per_writer), "received per writer: {expected:?}");
    children.into_iter().for_each(|c| c.join());
}

fn write_atomic_many_writers() {
    let reader = |r| BufReader::with_capacity(64 << 10, r);
    many_writers(
        8,
        2000,
        PIPE_BUF,
        |w, m| w.write_atomic(m).unwrap(),
        reader,
        |input| {
            let mut len = [0u8; 2];
            match input.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
                Err(e) => panic!("{e}"),
            }
            let mut m = vec![0; usize::from(u16::from_le_bytes(len))];
            m[..2].copy_from_slice(&len);
            input.read_exact(&mut m[2..]).unwrap();
            Some(m)
        },
    );
}

fn small_frames_many_writers_do_not_interleave() {
    // Header and body together fit in PIPE_BUF: one atomic writev.
    let send = |w: &PipeWriter, m: &[u8]| FrameWriter::with_max(w, PIPE_BUF - 4).send(m).unwrap();
    many_writers(4, 2000, PIPE_BUF - 4, send, FrameReader::new, |rx| rx.recv_vec().unwrap());
}

fn write_atomic_too_large_writes_nothing() {
    let (r, w) = pipe().unwrap();
    let big = vec![1u8; PIPE_BUF + 1];
    match w.write_atomic(&big) {
        Err(e @ Error::MessageTooLarge { len, max }) => {
            assert_eq!((len, max), (PIPE_BUF + 1, PIPE_BUF));
            assert!(e.to_string().contains("PIPE_BUF"), "{e}");
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    assert!(matches!(w.try_write_atomic(&big), Err(Error::MessageTooLarge { .. })));
    assert!(matches!(w.write_atomic_timeout(&big, Duration::from_secs(1)), Err(Error::MessageTooLarge { .. })));
    assert_eq!(r.available().unwrap(), 0, "nothing may be written");
    let exact = pattern(8, PIPE_BUF);
    w.write_atomic(&exact).unwrap();
    drop(w);
    let child = fork(move || {
        assert!(read_all(r) == pattern(8, PIPE_BUF), "only the PIPE_BUF message may arrive");
    });
    child.join();
}

fn sigpipe_default_is_not_fatal() {
    // Control: with SIGPIPE at its default, a plain write kills the process.
    let mut control = fork(|| {
        set_sigpipe_default();
        let (r, w) = std::io::pipe().unwrap();
        drop(r);
        let _ = nix::unistd::write(&w, b"x");
        panic!("still alive after writing to a broken pipe");
    });
    assert_eq!(control.wait(), Exit::Signaled(Signal::SIGPIPE));

    let mut child = fork(|| {
        set_sigpipe_default();
        let (r, w) = pipe().unwrap();
        let (r2, w2) = pipe().unwrap();
        drop(r);
        w2.write_atomic(b"data for splice and tee").unwrap();
        let kind = |e: std::io::Error| e.kind();
        assert_eq!((&w).write(b"x").map_err(kind), Err(std::io::ErrorKind::BrokenPipe));
        assert_eq!((&w).write_all(&[0; 100_000]).map_err(kind), Err(std::io::ErrorKind::BrokenPipe));
        assert!(matches!(w.write_atomic(b"x"), Err(Error::BrokenPipe)));
        assert!(matches!(w.try_write(b"x"), Err(Error::BrokenPipe)));
        assert!(matches!(w.write_timeout(b"x", Duration::from_secs(5)), Err(Error::BrokenPipe)));
        assert!(matches!(w.vmsplice(&[1; 8192]), Err(Error::BrokenPipe)));
        assert!(matches!(tee(&r2, &w, 10), Err(Error::BrokenPipe)));
        assert!(matches!(splice(&r2, &w, 10), Err(Error::BrokenPipe)));
        assert!(matches!(FrameWriter::new(&w).send(b"frame"), Err(Error::BrokenPipe)));
        assert!(!is_pending(Signal::SIGPIPE), "a SIGPIPE was left pending");
        let mask = nix::sys::signal::SigSet::thread_get_mask().unwrap();
        assert!(!mask.contains(Signal::SIGPIPE), "SIGPIPE was left blocked");
        drop(w2);
    });
    assert_eq!(child.wait(), Exit::Code(0));
}

/// Runs `check` in a forked child whose SIGPIPE has its default action
/// (as in a C program), with the write end of a pipe whose read end is
/// closed and a probe that says whether the thread has SIGPIPE blocked;
/// the child must exit with 0.
fn with_sigpipe_default_and_a_broken_pipe(check: impl FnOnce(PipeWriter, &dyn Fn() -> bool)) {
    let mut child = fork(|| {
        set_sigpipe_default();
        let blocked = || nix::sys::signal::SigSet::thread_get_mask().unwrap().contains(Signal::SIGPIPE);
        let (r, w) = pipe().unwrap();
        drop(r);
        check(w, &blocked);
    });
    assert_eq!(child.wait(), Exit::Code(0));
}

fn sigpipe_guard_scopes_the_mask() {
    with_sigpipe_default_and_a_broken_pipe(|w, blocked| {
        {
            let _outer = SigpipeGuard::new();
            assert!(blocked());
            {
                let _inner = SigpipeGuard::new();
                assert!(matches!(w.write_atomic(b"x"), Err(Error::BrokenPipe)));
            }
            assert!(blocked(), "the outer guard still holds SIGPIPE off");
            assert_eq!((&w).write_all(&[0; 10_000]).unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
            // A write that is not ipc-pipe's leaves its SIGPIPE pending ...
            assert_eq!(nix::unistd::write(&w, b"raw"), Err(nix::errno::Errno::EPIPE));
            assert!(is_pending(Signal::SIGPIPE));
        }
        // ... and the guard discards it when it goes.
        assert!(!is_pending(Signal::SIGPIPE), "a SIGPIPE was left pending");
        assert!(!blocked(), "SIGPIPE was left blocked");
        // A thread that blocked SIGPIPE itself keeps it blocked.
        let mut set = nix::sys::signal::SigSet::empty();
        set.add(Signal::SIGPIPE);
        set.thread_block().unwrap();
        drop(SigpipeGuard::new());
        assert!(matches!(w.try_write(b"x"), Err(Error::BrokenPipe)));
        assert!(blocked());
    });
}

fn sigpipe_disposition_read_when_writers_are_made() {
    let mut child = fork(|| {
        // The suite is a Rust program: SIGPIPE starts ignored, and writes
        // to a broken pipe just fail.
        let (r, old) = pipe().unwrap();
        drop(r);
        assert!(matches!(old.try_write(b"x"), Err(Error::BrokenPipe)));
        assert_eq!((&old).write(b"x").unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
        // Back to the default, then a new writer: the writer made while
        // the signal was ignored is held off from then on too.
        set_sigpipe_default();
        let (r2, new) = pipe().unwrap();
        drop(r2);
        assert!(matches!(old.write_atomic(b"x"), Err(Error::BrokenPipe)));
        assert_eq!((&new).write_all(&[1; 10_000]).unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
        assert!(!is_pending(Signal::SIGPIPE), "a SIGPIPE was left pending");
    });
    assert_eq!(child.wait(), Exit::Code(0));
}

fn reader_killed_mid_stream() {
    set_sigpipe_default(); // the writer is this process: SIGPIPE must not kill it
    let (r, w) = pipe().unwrap();
    let mut reader = fork(move || {
        let mut r = r;
        let mut buf = vec![0; 65536];
        while r.read(&mut buf).unwrap() > 0 {}
    });
    let chunk = vec![5u8; 65536];
    let mut sent = 0usize;
    let err = loop {
        match (&w).write(&chunk) {
            Ok(n) => sent += n,
            Err(e) => break e,
        }
        if sent >= 4 * MIB {
            reader.kill(); // mid-stream: the pipe may hold unread data
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    assert!(sent >= 4 * MIB);
    assert_eq!(reader.wait(), Exit::Signaled(Signal::SIGKILL));
}

fn writer_killed_mid_stream() {
    let (r, w) = pipe().unwrap();
    let mut writer = fork(move || {
        let mut tx = FrameWriter::new(w);
        let frame = pattern(9, 100_000);
        loop {
            tx.send(&frame).unwrap();
        }
    });
    let mut rx = FrameReader::new(r);
    let mut buf = Vec::new();
    for _ in 0..20 {
        assert_eq!(rx.recv(&mut buf).unwrap(), Some(100_000));
    }
    writer.kill();
    assert_eq!(writer.wait(), Exit::Signaled(Signal::SIGKILL));
    let end = loop {
        match rx.recv(&mut buf) {
            Ok(Some(n)) => assert_eq!(n, 100_000),
            other => break other,
        }
    };
    assert!(matches!(end, Ok(None) | Err(Error::TruncatedFrame { .. })), "{end:?}");
}

fn read_timeout_fires() {
    let (r, w) = pipe().unwrap();
    let (done_r, done_w) = pipe().unwrap();
    let (rfd, done_wfd) = (r.as_raw_fd(), done_w.as_raw_fd());
    let child = fork(move || {
        close_inherited(rfd);
        close_inherited(done_wfd);
        let _keep_writer_open = w;
        read_all(done_r);
    });
    let mut buf = [0; 16];
    for timeout in [Duration::ZERO, Duration::from_millis(1), Duration::from_millis(150)] {
        let t = Instant::now();
        assert!(matches!(r.read_timeout(&mut buf, timeout), Err(Error::Timeout)));
        assert_fired_within(t.elapsed(), timeout, Duration::from_secs(1));
    }
    let t = Instant::now();
    let deadline = t + Duration::from_millis(120);
    assert!(matches!(r.read_deadline(&mut buf, deadline), Err(Error::Timeout)));
    assert!(Instant::now() >= deadline);
    assert_fired_within(t.elapsed(), Duration::from_millis(120), Duration::from_secs(1));
    let io: std::io::Error = Error::Timeout.into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    drop(done_w);
    child.join();
}

fn write_timeout_fires() {
    let (r, w) = pipe().unwrap();
    let (go_r, go_w) = pipe().unwrap();
    let wfd = w.as_raw_fd();
    let child = fork(move || {
        close_inherited(wfd);
        let mut go = [0];
        (&go_r).read_exact(&mut go).unwrap();
        let n = read_all(&r).len();
        assert!(n > 65536, "read {n}");
    });
    let chunk = [3u8; 4096];
    let mut filled = 0;
    while let Ok(n) = w.try_write(&chunk) {
        filled += n;
    }
    assert_eq!(filled, w.capacity().unwrap());
    let t = Instant::now();
    assert!(matches!(w.write_timeout(&chunk, Duration::from_millis(150)), Err(Error::Timeout)));
    assert_fired_within(t.elapsed(), Duration::from_millis(150), Duration::from_secs(1));
    let t = Instant::now();
    assert!(matches!(w.write_atomic_timeout(b"x", Duration::from_millis(100)), Err(Error::Timeout)));
    assert_fired_within(t.elapsed(), Duration::from_millis(100), Duration::from_secs(1));
    (&go_w).write_all(b"g").unwrap();
    // The reader drains: a generous timeout now succeeds.
    assert!(w.write_timeout(&chunk, Duration::from_secs(10)).unwrap() > 0);
    drop(w);
    child.join();
}

fn read_timeout_wakes_on_data() {
    let (r, w) = pipe().unwrap();
    let child = fork(move || {
        std::thread::sleep(Duration::from_millis(50));
        (&w).write_all(b"late").unwrap();
    });
    let mut buf = [0; 16];
    let t = Instant::now();
    let n = r.read_timeout(&mut buf, Duration::from_secs(20)).unwrap();
    assert_eq!(&buf[..n], b"late");
    assert!(t.elapsed() < Duration::from_secs(10), "woke only after {:?}", t.elapsed());
    assert_eq!(r.read_timeout(&mut buf, Duration::from_secs(20)).unwrap(), 0, "EOF after the writer exits");
    child.join();
}

fn try_forms_never_block() {
    let (r, w) = pipe().unwrap();
    assert!(!r.is_nonblocking().unwrap() && !w.is_nonblocking().unwrap());
    let mut buf = [0; 4096];
    assert!(matches!(r.try_read(&mut buf), Err(Error::WouldBlock)));
    let mut filled = 0;
    loop {
        match w.try_write(&pattern(filled as u64, 4096)) {
            Ok(n) => filled += n,
            Err(Error::WouldBlock) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(filled, w.capacity().unwrap());
    assert!(matches!(w.try_write_atomic(b"no room"), Err(Error::WouldBlock)));
    assert!(!r.is_nonblocking().unwrap(), "try forms must not change the mode");
    let io: std::io::Error = Error::WouldBlock.into();
    assert_eq!(io.kind(), std::io::ErrorKind::WouldBlock);
    drop(w);
    let child = fork(move || {
        let mut total = 0;
        let mut buf = [0; 4096];
        loop {
            match r.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    assert!(buf[..n] == pattern(total as u64, 4096)[..n]);
                    total += n;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(total, 65536);
    });
    child.join();
}

fn nonblocking_mode_is_shared_across_fork() {
    let (r, w) = pipe().unwrap();
    r.set_nonblocking(true).unwrap();
    let wfd = w.as_raw_fd();
    let (go_r, go_w) = pipe().unwrap();
    let child = fork(move || {
        close_inherited(wfd);
        assert!(r.is_nonblocking().unwrap(), "the flag belongs to the shared file description");
        let mut buf = [0; 8];
        assert_eq!((&r).read(&mut buf).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
        (&go_w).write_all(b"g").unwrap();
        r.set_nonblocking(false).unwrap();
        (&r).read_exact(&mut buf[..5]).unwrap();
        assert_eq!(&buf[..5], b"later");
    });
    let mut go = [0];
    (&go_r).read_exact(&mut go).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    (&w).write_all(b"later").unwrap();
    child.join();
}

fn capacity_set_refused_and_shared() {
    let (r, w) = pipe().unwrap();
    assert_eq!(w.capacity().unwrap(), 65536);
    let max = ipc_kit::pipe::pipe_max_size().expect("pipe-max-size readable");
    assert_eq!(w.set_capacity(max).unwrap(), max);
    assert_eq!(w.set_capacity(100_000).unwrap(), 131_072, "rounded up to a power of two pages");
    assert_eq!(w.set_capacity(max).unwrap(), max);
    match w.set_capacity(2 * max) {
        // pipe-max-size binds only a caller without CAP_SYS_RESOURCE.
        Ok(n) if may_exceed_resource_limits() => assert_eq!(n, 2 * max),
        Err(e @ Error::CapacityRefused { requested, max: Some(m) }) if !may_exceed_resource_limits() => {
            assert_eq!((requested, m), (2 * max, max));
            let text = e.to_string();
            assert!(text.contains("/proc/sys/fs/pipe-max-size") && text.contains(&max.to_string()), "{text}");
        }
        other => panic!("expected CapacityRefused, got {other:?}"),
    }
    assert!(matches!(w.set_capacity(usize::MAX), Err(Error::CapacityRefused { .. })));
    (&w).write_all(&[0; 200_000]).unwrap();
    assert!(matches!(w.set_capacity(4096), Err(Error::CapacityBelowContents { requested: 4096 })));
    let wfd = w.as_raw_fd();
    let child = fork(move || {
        close_inherited(wfd);
        assert_eq!(r.capacity().unwrap(), max, "the child sees the same pipe");
        assert_eq!(read_all(&r).len(), 200_000);
    });
    drop(w);
    child.join();
}

fn splice_and_tee_across_processes() {
    let (a_r, a_w) = pipe().unwrap();
    let total = 3 * MIB + 5;
    let child = fork(move || {
        let mut a_w = a_w;
        a_w.write_all(&pattern(10, total)).unwrap();
    });
    let (b_r, b_w) = pipe().unwrap();
    let (c_r, c_w) = pipe().unwrap();
    let (mut via_tee, mut via_splice) = (Vec::new(), Vec::new());
    let mut buf = vec![0; 65536];
    loop {
        let n = tee(&a_r, &b_w, 65536).unwrap();
        if n == 0 {
            break;
        }
        assert_eq!(splice(&a_r, &c_w, n).unwrap(), n, "tee left the data in the first pipe");
        (&b_r).read_exact(&mut buf[..n]).unwrap();
        via_tee.extend_from_slice(&buf[..n]);
        (&c_r).read_exact(&mut buf[..n]).unwrap();
        via_splice.extend_from_slice(&buf[..n]);
    }
    child.join();
    let expected = pattern(10, total);
    assert!(via_tee == expected && via_splice == expected, "{} {}", via_tee.len(), via_splice.len());

    // A file spliced into a pipe and read by another process.
    let dir = ScratchDir::new();
    let path = dir.path().join("data");
    std::fs::write(&path, &expected).unwrap();
    let (r, w) = pipe().unwrap();
    let wfd = w.as_raw_fd();
    let reader = fork(move || {
        close_inherited(wfd);
        assert!(read_all(r) == pattern(10, total));
    });
    let file = std::fs::File::open(&path).unwrap();
    assert_eq!(splice_all(&file, &w, u64::MAX).unwrap(), total as u64, "until end of file");
    drop(w);
    reader.join();
}

fn vmsplice_to_child() {
    let (r, w) = pipe().unwrap();
    let (sum_r, sum_w) = pipe().unwrap();
    w.set_capacity(MIB).unwrap();
    let data = pattern(11, 8 * MIB);
    let wfd = w.as_raw_fd();
    let child = fork(move || {
        close_inherited(wfd);
        let got = read_all(r);
        (&sum_w).write_all(&checksum(&got).to_le_bytes()).unwrap();
        (&sum_w).write_all(&(got.len() as u64).to_le_bytes()).unwrap();
    });
    w.vmsplice_all(&data).unwrap();
    drop(w);
    // `data` stays untouched until the child has read it all.
    let reply = read_all(sum_r);
    assert_eq!(reply.len(), 16);
    assert_eq!(u64::from_le_bytes(reply[8..].try_into().unwrap()), data.len() as u64);
    assert_eq!(u64::from_le_bytes(reply[..8].try_into().unwrap()), checksum(&data));
    child.join();
}

fn std_pipe_interop() {
    let (std_r, std_w) = std::io::pipe().unwrap();
    let ours_r = PipeReader::from(std_r);
    let ours_w = PipeWriter::from(std_w);
    let back_to_std: std::io::PipeWriter = ours_w.into();
    let child = fork(move || {
        let mut w = back_to_std;
        w.write_all(b"std writer, ipc-kit reader").unwrap();
    });
    assert_eq!(read_all(&ours_r), b"std writer, ipc-kit reader");
    child.join();

    let (r, w) = pipe().unwrap();
    let std_r: std::io::PipeReader = r.into();
    let child = fork(move || {
        let mut w = w;
        w.write_all(b"the other way").unwrap();
    });
    assert_eq!(read_all(std_r), b"the other way");
    child.join();
}

fn eintr_is_retried() {
    interrupt_on(Signal::SIGUSR1);
    let parent = nix::unistd::getpid();
    let (r, w) = pipe().unwrap();
    let (stop_r, stop_w) = pipe().unwrap();
    let rfd = r.as_raw_fd();
    let child = fork(move || {
        close_inherited(rfd);
        // Interrupt the parent every millisecond until told to stop,
        // writing data in between.
        let mut sent = 0;
        let mut buf = [0; 1];
        loop {
            let _ = nix::sys::signal::kill(parent, Signal::SIGUSR1);
            std::thread::sleep(Duration::from_millis(1));
            if sent < 200 {
                (&w).write_all(&[sent as u8]).unwrap();
                sent += 1;
            }
            if stop_r.try_read(&mut buf).is_ok() {
                break;
            }
        }
    });
    // Blocking reads see data, never EINTR.
    let mut got = Vec::new();
    let mut buf = [0; 16];
    while got.len() < 200 {
        let n = (&r).read(&mut buf).expect("read must retry EINTR");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, (0..200).map(|i| i as u8).collect::<Vec<_>>());
    // A timed read under a storm of signals neither fails nor ends early.
    let t = Instant::now();
    assert!(matches!(r.read_timeout(&mut buf, Duration::from_millis(200)), Err(Error::Timeout)));
    assert_fired_within(t.elapsed(), Duration::from_millis(200), Duration::from_secs(1));
    (&stop_w).write_all(b"s").unwrap();
    child.join();
}

fn sigpipe_guards_nest_in_any_drop_order() {
    with_sigpipe_default_and_a_broken_pipe(|w, blocked| {
        let g1 = SigpipeGuard::new();
        let g2 = SigpipeGuard::new();
        drop(g1);
        assert!(blocked(), "the second guard still holds SIGPIPE off");
        assert!(matches!(w.write_atomic(b"x"), Err(Error::BrokenPipe)));
        assert_eq!((&w).write_all(&[0; 10_000]).unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
        let g3 = SigpipeGuard::new();
        drop(g2);
        assert!(blocked(), "the third guard still holds SIGPIPE off");
        assert!(matches!(w.try_write(b"x"), Err(Error::BrokenPipe)));
        drop(g3);
        assert!(!blocked(), "SIGPIPE was left blocked after the last guard");
        assert!(!is_pending(Signal::SIGPIPE), "a SIGPIPE was left pending");
        // Without a guard, ipc-pipe's writes still hold it off themselves.
        assert!(matches!(w.write_atomic(b"x"), Err(Error::BrokenPipe)));
    });
}

/// The two lowest fd numbers free now: the ends a pipe made next would get.
fn next_two_free_fds() -> (i32, i32) {
    let (a, b) = nix::unistd::pipe().unwrap();
    let n = (a.as_raw_fd(), b.as_raw_fd());
    drop((a, b));
    n
}

fn exec_fd_target_on_std_error_pipe() {
    // std reports a failed exec through a close-on-exec pipe it makes at
    // spawn, whose writing end takes the second lowest free fd number. A
    // pipe end given to the child at exactly that number must not replace
    // it: the spawn fails, and nothing lands in the given pipe.
    let (r, w) = pipe().unwrap();
    let (_, target) = next_two_free_fds();
    let mut cmd = Command::new("/no/such/program");
    let mut fds = ChildFds::new();
    fds.insert(target, w).unwrap();
    fds.apply(&mut cmd);
    let spawned = cmd.spawn();
    drop(cmd);
    let err = match spawned {
        Ok(mut child) => {
            let status = child.wait().unwrap();
            panic!("spawning /no/such/program succeeded (child {status}), fd {target}");
        }
        Err(e) => e,
    };
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    assert_eq!(read_all(r), b"", "std's error report landed in the given pipe");
    // And the same number still works for a program that exists.
    let (r, w) = pipe().unwrap();
    let (_, target) = next_two_free_fds();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("echo at fd {target} >&{target}")]);
    let mut fds = ChildFds::new();
    fds.insert(target, w).unwrap();
    fds.apply(&mut cmd);
    assert_eq!(text_from(cmd, r), format!("at fd {target}\n"));
}

fn pipe_sender_checks_limits_before_writing() {
    use ipc_kit::{MessageReceiver, MessageSender, PipeSender, traits};
    let (r, w) = pipe().unwrap();
    let wfd = w.as_raw_fd();
    let child = fork(move || {
        close_inherited(wfd);
        let mut rx = FrameReader::new(r);
        let mut buf = Vec::new();
        // The frame over the receiver's limit never came: the next is the
        // small one, and the stream is intact.
        assert_eq!(MessageReceiver::recv(&mut rx, &mut buf).unwrap(), 5);
        assert_eq!(buf, b"after");
        assert_eq!(MessageReceiver::recv(&mut rx, &mut buf).unwrap(), ipc_kit::pipe::DEFAULT_MAX_FRAME);
        assert!(buf == pattern(2, ipc_kit::pipe::DEFAULT_MAX_FRAME), "the largest frame differs");
        assert!(matches!(MessageReceiver::recv(&mut rx, &mut buf), Err(traits::Error::Disconnected)));
    });
    let mut tx = PipeSender::new(w);
    let max = ipc_kit::pipe::DEFAULT_MAX_FRAME;
    let big = vec![1; max + 1];
    let r = tx.send(&big);
    assert!(matches!(r, Err(traits::Error::TooLarge { len, max: m }) if len == max + 1 && m == max), "{r:?}");
    tx.send(b"after").unwrap();
    tx.send(&pattern(2, max)).unwrap();
    drop(tx);
    child.join();
}

fn pipe_sender_timed_forms_never_block() {
    use ipc_kit::{MessageSender, PipeSender, traits};
    let (r, w) = pipe().unwrap();
    let capacity = w.capacity().unwrap();
    // Leave less room than one page and a bit.
    (&w).write_all(&vec![9; capacity - PIPE_BUF]).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = PipeSender::new(w);
        let big = vec![3; 2 * PIPE_BUF];
        let results = (
            tx.try_send(&big),
            tx.send_timeout(&big, Duration::from_millis(100)),
            tx.send_timeout(&big, Duration::ZERO),
            // Small ones fit and go whole, also with a zero timeout.
            tx.send_timeout(&[4; 100], Duration::ZERO),
            tx.try_send(&[5; 100]),
        );
        done_tx.send((results, tx)).unwrap();
    });
    let ((a, b, c, d, e), tx) = done_rx.recv_timeout(Duration::from_secs(5)).expect("a try_ or timeout form blocked");
    for res in [a, b, c] {
        assert!(matches!(res, Err(traits::Error::TooLarge { len, .. }) if len == 2 * PIPE_BUF), "{res:?}");
    }
    d.unwrap();
    e.unwrap();
    drop(tx);
    // Nothing of the refused frames went in: the filler, then two whole
    // frames.
    let mut got = vec![0; capacity - PIPE_BUF];
    (&r).read_exact(&mut got).unwrap();
    let mut rx = FrameReader::new(r);
    assert_eq!(rx.recv_vec().unwrap().unwrap(), vec![4; 100]);
    assert_eq!(rx.recv_vec().unwrap().unwrap(), vec![5; 100]);
    assert_eq!(rx.recv_vec().unwrap(), None);
}

fn zero_and_past_timeouts_try_once() {
    use ipc_kit::{MessageReceiver, MessageSender, PipeSender};
    let past = Instant::now();
    let (r, w) = pipe().unwrap();
    let wfd = w.as_raw_fd();
    // The data comes from another process and is there before each try;
    // each step waits for the one before it to be read.
    let (go_r, go_w) = pipe().unwrap();
    let (ack_r, ack_w) = pipe().unwrap();
    let child = fork(move || {
        close_inherited(wfd);
        let mut go = [0; 1];
        let mut step = || {
            (&go_r).read_exact(&mut go).unwrap();
        };
        let ack = || (&ack_w).write_all(b"a").unwrap();
        let (mut rx, mut buf) = (FrameReader::new(r), [0; 8]);
        step();
        assert_eq!(rx.get_ref().read_timeout(&mut buf, Duration::ZERO).unwrap(), 3);
        ack();
        step();
        assert_eq!(rx.get_ref().read_deadline(&mut buf, past).unwrap(), 3);
        ack();
        step();
        assert_eq!(rx.recv_timeout(&mut Vec::new(), Duration::ZERO).unwrap(), Some(5));
        ack();
        step();
        assert_eq!(rx.recv_deadline(&mut Vec::new(), past).unwrap(), Some(5));
        ack();
        step();
        let mut v = Vec::new();
        assert_eq!(MessageReceiver::recv_timeout(&mut rx, &mut v, Duration::ZERO).unwrap(), 6);
        assert_eq!(v, b"zero!!");
        // Nothing left: a zero timeout reports Timeout at once.
        assert!(matches!(rx.recv_timeout(&mut v, Duration::ZERO), Err(Error::Timeout)));
        ack();
    });
    let go = || {
        (&go_w).write_all(b"g").unwrap();
        let mut a = [0; 1];
        (&ack_r).read_exact(&mut a).unwrap();
    };
    // Writes with room: a zero or past timeout writes.
    assert_eq!(w.write_timeout(b"abc", Duration::ZERO).unwrap(), 3);
    go();
    assert_eq!(w.write_deadline(b"abc", past).unwrap(), 3);
    go();
    w.write_atomic_timeout(&[5, 0, 0, 0, 1, 2, 3, 4, 5], Duration::ZERO).unwrap();
    go();
    FrameWriter::new(&w).send(&[1; 5]).unwrap();
    go();
    let mut tx = PipeSender::new(w);
    tx.send_timeout(b"zero!!", Duration::ZERO).unwrap();
    go();
    drop(tx);
    child.join();
}

fn exec_fd_target_freed_before_spawn_is_refused() {
    // The target number is in use when the fds are applied, then freed, so
    // that std's exec-error pipe takes it at spawn: the child cannot tell
    // that pipe from a file of the parent's, and the spawn fails (EBUSY)
    // rather than report a failed exec as a success.
    let (r, w) = pipe().unwrap();
    let (a, b) = nix::unistd::pipe().unwrap();
    let target = b.as_raw_fd();
    let mut cmd = Command::new("/no/such/program");
    let mut fds = ChildFds::new();
    fds.insert(target, w).unwrap();
    fds.apply(&mut cmd);
    drop((a, b));
    let spawned = cmd.spawn();
    drop(cmd);
    match spawned {
        Ok(mut child) => panic!("spawn succeeded (child {})", child.wait().unwrap()),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EBUSY), "{e}"),
    }
    assert_eq!(read_all(r), b"", "std's error report landed in the given pipe");
}

fn pipe_and_fifo_pairs_refuse_what_they_cannot_deliver() {
    use ipc_kit::{Mechanism, PipeSender, traits};
    for m in [Mechanism::Pipe, Mechanism::Fifo] {
        let mut pair = m.pair().unwrap();
        let max = ipc_kit::pipe::DEFAULT_MAX_FRAME;
        let res = pair.sender.send(&vec![0; max + 1]);
        assert!(matches!(res, Err(traits::Error::TooLarge { max: m, .. }) if m == max), "{res:?}");
        for res in [
            pair.sender.try_send(&[1; PipeSender::MAX_TIMED + 1]),
            pair.sender.send_timeout(&[1; PipeSender::MAX_TIMED + 1], Duration::from_secs(1)),
        ] {
            assert!(matches!(res, Err(traits::Error::TooLarge { max, .. }) if max == PipeSender::MAX_TIMED), "{res:?}");
        }
        pair.sender.try_send(&[2; PipeSender::MAX_TIMED]).unwrap();
        pair.sender.send(b"last").unwrap();
        // The receiver keeps working: nothing of the refused sends went in.
        let mut buf = Vec::new();
        assert_eq!(pair.receiver.recv(&mut buf).unwrap(), PipeSender::MAX_TIMED);
        assert_eq!(buf, vec![2; PipeSender::MAX_TIMED]);
        assert_eq!(pair.receiver.recv(&mut buf).unwrap(), 4);
        assert_eq!(buf, b"last");
        assert!(matches!(pair.receiver.try_recv(&mut buf), Err(traits::Error::Empty)));
    }
}

fn frame_timed_sends_many_writers_do_not_interleave() {
    // Half of each writer's frames by try_send (falling back to a wait for
    // room), half by send_timeout: each frame is one atomic write.
    let send = |w: &PipeWriter, m: &[u8]| {
        let mut tx = FrameWriter::new(w);
        if m[3].is_multiple_of(2) {
            match tx.try_send(m) {
                Err(Error::WouldBlock) => {}
                other => return other.unwrap(),
            }
        }
        tx.send_timeout(m, Duration::from_secs(60)).unwrap();
    };
    many_writers(6, 1500, PIPE_BUF - 4, send, FrameReader::new, |rx| rx.recv_vec().unwrap());
}

fn frame_timed_sends_stalled_reader_get_whole_frames_or_nothing() {
    let (r, w) = pipe().unwrap();
    let wfd = w.as_raw_fd();
    let (go_r, go_w) = pipe().unwrap();
    let reader = fork(move || {
        close_inherited(wfd);
        // Stalled until told how many frames to expect.
        let mut count = [0; 4];
        (&go_r).read_exact(&mut count).unwrap();
        let count = u32::from_le_bytes(count);
        let mut rx = FrameReader::new(r);
        for seq in 0..count {
            let m = rx.recv_vec().unwrap().expect("a frame");
            assert_eq!(m, message(0, seq, PIPE_BUF - 4), "frame {seq}");
        }
        // A refused frame left no part behind: a clean end of file.
        assert!(matches!(rx.recv_vec(), Ok(None)), "bytes after the last frame");
    });
    let mut tx = FrameWriter::new(w);
    let mut sent = 0u32;
    let started = Instant::now();
    let refused = loop {
        match tx.try_send(&message(0, sent, PIPE_BUF - 4)) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 100_000, "a pipe without a reader never filled");
    };
    assert!(matches!(refused, Error::WouldBlock), "{refused:?}");
    let next = message(0, sent, PIPE_BUF - 4);
    let past = Instant::now() - Duration::from_secs(1);
    assert!(matches!(tx.send_timeout(&next, Duration::ZERO), Err(Error::Timeout)));
    assert!(matches!(tx.send_deadline(&next, past), Err(Error::Timeout)));
    let t = Instant::now();
    assert!(matches!(tx.send_timeout(&next, Duration::from_millis(200)), Err(Error::Timeout)));
    assert!(t.elapsed() >= Duration::from_millis(200), "gave up early: {:?}", t.elapsed());
    assert!(started.elapsed() < Duration::from_secs(30), "the sends must end");
    // Too large for one atomic write: refused before writing, whatever the room.
    let big = vec![1; PIPE_BUF - 3];
    assert!(
        matches!(tx.try_send(&big), Err(Error::FrameTooLarge { len, max }) if len == (PIPE_BUF - 3) as u64 && max == PIPE_BUF - 4)
    );
    drop(tx);
    (&go_w).write_all(&sent.to_le_bytes()).unwrap();
    reader.join();
}

fn frame_timed_sends_reader_killed_is_broken_pipe() {
    set_sigpipe_default(); // the writer is this process: SIGPIPE must not kill it
    let (r, w) = pipe().unwrap();
    let (_hold_r, hold_w) = pipe().unwrap();
    let mut reader = fork(move || {
        // Holds the read end and reads nothing until killed.
        let _r = r;
        let mut b = [0; 1];
        let _ = (&_hold_r).read(&mut b);
    });
    let mut tx = FrameWriter::new(w);
    tx.try_send(b"before").unwrap();
    reader.kill();
    assert_eq!(reader.wait(), Exit::Signaled(Signal::SIGKILL));
    drop(hold_w);
    assert!(matches!(tx.try_send(b"after"), Err(Error::BrokenPipe)));
    assert!(matches!(tx.send_timeout(b"after", Duration::ZERO), Err(Error::BrokenPipe)));
    assert!(matches!(tx.send_timeout(b"after", Duration::from_secs(30)), Err(Error::BrokenPipe)));
    assert!(matches!(tx.send_deadline(b"after", Instant::now() + Duration::from_secs(30)), Err(Error::BrokenPipe)));
}
