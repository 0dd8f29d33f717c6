//! In-process behaviour of ipc-pipe; the cross-process cases are in the
//! workspace's fork suite.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use ipc_pipe::{ChildFds, Error, FRAME_HEADER, FrameReader, FrameWriter, PIPE_BUF, duplex, pipe, splice, tee};

#[test]
fn errors_convert_to_fitting_io_kinds() {
    let cases = [
        (Error::WouldBlock, io::ErrorKind::WouldBlock),
        (Error::Timeout, io::ErrorKind::TimedOut),
        (Error::BrokenPipe, io::ErrorKind::BrokenPipe),
        (Error::CapacityRefused { requested: 1, max: None }, io::ErrorKind::PermissionDenied),
        (Error::MessageTooLarge { len: 5000, max: PIPE_BUF }, io::ErrorKind::InvalidInput),
        (Error::FrameTooLarge { len: 9, max: 8 }, io::ErrorKind::InvalidData),
        (Error::TruncatedFrame { expected: 4, got: 1 }, io::ErrorKind::UnexpectedEof),
    ];
    for (e, kind) in cases {
        assert_eq!(e.kind(), kind, "{e}");
        let text = e.to_string();
        let io: io::Error = e.into();
        assert_eq!(io.kind(), kind);
        assert_eq!(io.to_string(), text);
    }
    let refused = Error::CapacityRefused { requested: 4 << 20, max: Some(1 << 20) }.to_string();
    assert!(refused.contains("4194304") && refused.contains("pipe-max-size = 1048576 bytes"), "{refused}");
}

#[test]
fn os_errors_keep_their_errno() {
    let file = tempfile_in_proc();
    let e = splice(&file, &file, 10).unwrap_err();
    assert!(matches!(&e, Error::Io { op: "splice", .. }), "{e:?}");
    let io: io::Error = e.into();
    assert_eq!(io.raw_os_error(), Some(libc::EINVAL), "neither end is a pipe");
}

/// A regular file (not a pipe), created and unlinked at once.
fn tempfile_in_proc() -> std::fs::File {
    let path = std::env::temp_dir().join(format!("ipc-pipe-test-{}", std::process::id()));
    let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    f
}

#[test]
fn capacity_of_something_else_is_an_error() {
    let w = ipc_pipe::PipeWriter::from(std::os::fd::OwnedFd::from(tempfile_in_proc()));
    assert!(matches!(w.capacity(), Err(Error::Io { op: "F_GETPIPE_SZ", .. })));
}

#[test]
fn duplex_carries_both_ways_and_splits() {
    let (mut a, b) = duplex().unwrap();
    a.write_all(b"to b").unwrap();
    let (mut b_r, mut b_w) = b.split();
    let mut buf = [0; 4];
    b_r.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"to b");
    b_w.write_all(b"to a").unwrap();
    drop(b_w);
    let mut rest = Vec::new();
    a.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"to a");
    assert!(format!("{a:?}").contains("Duplex"));
}

#[test]
fn nonblocking_atomic_write_is_all_or_nothing() {
    let (r, w) = pipe().unwrap();
    w.set_nonblocking(true).unwrap();
    assert!(w.is_nonblocking().unwrap());
    // Fill all but 100 bytes of the 64 KiB pipe.
    let mut left = 65536 - 100;
    while left > 0 {
        left -= (&w).write(&vec![0; left.min(4096)]).unwrap();
    }
    assert!(matches!(w.write_atomic(&[1; 200]), Err(Error::WouldBlock)));
    assert_eq!(r.available().unwrap(), 65536 - 100, "nothing of the message may be written");
    assert_eq!((&w).write(&[1; 200]).unwrap_err().kind(), io::ErrorKind::WouldBlock);
}

#[test]
fn frames_resume_after_would_block() {
    let (r, w) = pipe().unwrap();
    let mut rx = FrameReader::new(r);
    let mut buf = Vec::new();
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::WouldBlock)));
    let mut raw = &w;
    raw.write_all(&5u32.to_le_bytes()[..3]).unwrap();
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::WouldBlock)));
    raw.write_all(&[0, b'h', b'e']).unwrap();
    assert!(matches!(rx.recv_timeout(&mut buf, Duration::from_millis(10)), Err(Error::Timeout)));
    raw.write_all(b"llo").unwrap();
    assert_eq!(rx.try_recv(&mut buf).unwrap(), Some(5));
    assert_eq!(buf, b"hello");
    drop(w);
    assert_eq!(rx.try_recv(&mut buf).unwrap(), None);
}

#[test]
fn frame_writer_and_reader_over_std_types() {
    let mut tx = FrameWriter::with_max(Vec::new(), 100);
    tx.send(b"abc").unwrap();
    tx.flush().unwrap();
    let bytes = tx.into_inner();
    let mut rx = FrameReader::with_max(&bytes[..], 2);
    assert!(matches!(rx.recv_vec(), Err(Error::FrameTooLarge { len: 3, max: 2 })));
    let mut rx = FrameReader::new(&bytes[..]);
    assert_eq!(rx.recv_vec().unwrap().as_deref(), Some(&b"abc"[..]));
    assert_eq!(rx.recv_vec().unwrap(), None);
}

#[test]
fn tee_copies_without_consuming() {
    let (r1, w1) = pipe().unwrap();
    let (r2, w2) = pipe().unwrap();
    (&w1).write_all(b"twice").unwrap();
    assert_eq!(tee(&r1, &w2, 100).unwrap(), 5);
    let mut a = [0; 5];
    (&r1).read_exact(&mut a).unwrap();
    let mut b = [0; 5];
    (&r2).read_exact(&mut b).unwrap();
    assert_eq!((&a, &b), (b"twice", b"twice"));
    drop(w1);
    assert_eq!(tee(&r1, &w2, 100).unwrap(), 0, "empty and no writers: end of file");
}

#[test]
fn child_fds_refuses_bad_numbers() {
    let mut fds = ChildFds::new();
    for bad in [-1, 0, 2] {
        let e = fds.insert(bad, pipe().unwrap().1).unwrap_err();
        assert!(matches!(e, Error::InvalidChildFd { fd, .. } if fd == bad));
    }
    fds.insert(7, pipe().unwrap().1).unwrap();
    fds.insert(3, pipe().unwrap().0).unwrap();
    assert_eq!(fds.child_fds().collect::<Vec<_>>(), vec![7, 3]);
}

#[test]
fn timeouts_accept_zero_and_huge_durations() {
    let (r, w) = pipe().unwrap();
    let mut buf = [0; 8];
    assert!(matches!(r.read_timeout(&mut buf, Duration::ZERO), Err(Error::Timeout)));
    (&w).write_all(b"x").unwrap();
    assert_eq!(r.read_timeout(&mut buf, Duration::MAX).unwrap(), 1);
    assert_eq!(w.write_timeout(b"y", Duration::MAX).unwrap(), 1);
    assert_eq!(w.write_timeout(b"z", Duration::ZERO).unwrap(), 1, "room now: no wait needed");
}

/// Fills the pipe behind `w` to `room` free bytes short of full (its
/// capacity less `room`), writing one byte at a time at the end.
fn fill_leaving(w: &ipc_pipe::PipeWriter, room: usize) {
    let cap = w.capacity().unwrap();
    let mut left = cap - room;
    while left > 0 {
        let n = w.try_write(&vec![9; left.min(PIPE_BUF)]).unwrap();
        left -= n;
    }
}

#[test]
fn timed_sends_refuse_bodies_over_pipe_buf_before_writing() {
    let (r, w) = pipe().unwrap();
    let mut tx = FrameWriter::new(&w);
    let max = PIPE_BUF - FRAME_HEADER;
    for res in [
        tx.try_send(&vec![1; max + 1]),
        tx.send_timeout(&vec![1; max + 1], Duration::from_secs(5)),
        tx.send_deadline(&vec![1; max + 1], Instant::now() + Duration::from_secs(5)),
    ] {
        assert!(
            matches!(res, Err(Error::FrameTooLarge { len, max: m }) if len == max as u64 + 1 && m == max),
            "{res:?}"
        );
    }
    // The writer's own smaller maximum wins.
    let mut small = FrameWriter::with_max(&w, 3);
    assert!(matches!(small.try_send(b"four"), Err(Error::FrameTooLarge { len: 4, max: 3 })));
    assert_eq!(r.available().unwrap(), 0, "nothing may be written");
    tx.try_send(&vec![2; max]).unwrap();
    small.send_timeout(b"abc", Duration::ZERO).unwrap();
    let mut rx = FrameReader::new(r);
    assert_eq!(rx.recv_vec().unwrap().unwrap(), vec![2; max]);
    assert_eq!(rx.recv_vec().unwrap().unwrap(), b"abc");
}

#[test]
fn timed_sends_on_a_full_pipe_write_nothing() {
    let (r, w) = pipe().unwrap();
    let mut tx = FrameWriter::new(&w);
    // Room for the header and 9 bytes of a 10-byte body: one short.
    fill_leaving(&w, FRAME_HEADER + 9);
    let before = r.available().unwrap();
    assert!(matches!(tx.try_send(&[5; 10]), Err(Error::WouldBlock)));
    let start = Instant::now();
    assert!(matches!(tx.send_timeout(&[5; 10], Duration::ZERO), Err(Error::Timeout)));
    assert!(matches!(tx.send_deadline(&[5; 10], start - Duration::from_secs(1)), Err(Error::Timeout)));
    assert!(matches!(tx.send_timeout(&[5; 10], Duration::from_millis(30)), Err(Error::Timeout)));
    assert!(start.elapsed() < Duration::from_secs(5), "the timeouts must end");
    assert_eq!(r.available().unwrap(), before, "a refused frame must leave nothing behind");
    // A frame that fits exactly goes in, even with a zero timeout.
    tx.send_timeout(&[6; 9], Duration::ZERO).unwrap();
    assert_eq!(r.available().unwrap(), before + FRAME_HEADER + 9);
}

#[test]
fn send_timeout_waits_for_the_reader_to_make_room() {
    let (r, w) = pipe().unwrap();
    let mut tx = FrameWriter::new(&w);
    fill_leaving(&w, 0);
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let mut buf = vec![0; 8192];
        let mut rx = r;
        rx.read_exact(&mut buf).unwrap();
        rx
    });
    tx.send_timeout(b"after room", Duration::from_secs(10)).unwrap();
    let r = reader.join().unwrap();
    assert!(r.available().unwrap() >= FRAME_HEADER + 10);
}

#[test]
fn timed_sends_report_the_reader_gone() {
    let (r, w) = pipe().unwrap();
    drop(r);
    let mut tx = FrameWriter::new(w);
    assert!(matches!(tx.try_send(b"x"), Err(Error::BrokenPipe)));
    assert!(matches!(tx.send_timeout(b"x", Duration::ZERO), Err(Error::BrokenPipe)));
    assert!(matches!(tx.send_timeout(b"x", Duration::from_secs(10)), Err(Error::BrokenPipe)));
}
