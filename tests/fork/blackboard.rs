//! The latest value across processes: readers that check every value
//! they read while the writer writes at full speed, a hostile writer,
//! readers that wait for newer values and see the writer go, and the
//! limits.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipc_kit::service::{Blackboard, BlackboardOptions, BlackboardReader, Error, READ_TRIES, Refusal};
use ipc_kit::shm::Memfd;
use ipc_kit::socket::{SeqpacketListener, SocketName};
use ipc_kit::sync::{EventFd, EventFdMode, Interest, Poller};
use ipc_kit_tests::{Exit, Rng, SLACK, ScratchDir, assert_fired_within, cases, checksum, fork};
use nix::sys::signal::Signal;

use crate::service::name_in;

cases!("blackboard":
    readers_never_see_a_torn_value_while_the_writer_writes_at_full_speed(60 s),
    a_hostile_writer_gets_a_typed_error_never_a_hang_or_a_torn_value(60 s),
    readers_wait_for_newer_values_in_a_poller_and_see_the_writer_go,
    the_three_forms_wait_as_told_and_every_limit_holds,
);

/// A value of `len` bytes for version `v`: the version, a pattern, and
/// the checksum of the rest at the end.
fn value(v: u64, len: usize) -> Vec<u8> {
    let mut b: Vec<u8> = (0..len - 8).map(|i| (v as usize).wrapping_mul(31).wrapping_add(i * 7) as u8).collect();
    b[..8].copy_from_slice(&v.to_le_bytes());
    let sum = checksum(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

/// Whether `b` is a whole value; its version.
fn whole(b: &[u8]) -> Option<u64> {
    if b.len() < 16 {
        return None;
    }
    let (body, sum) = b.split_at(b.len() - 8);
    (checksum(body).to_le_bytes() == sum).then(|| u64::from_le_bytes(body[..8].try_into().unwrap()))
}

// Issue: "readers check a checksum carried in the value while the writer
// writes at full speed; no torn read".
fn readers_never_see_a_torn_value_while_the_writer_writes_at_full_speed() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "board");
    let options = BlackboardOptions { max_size: 4096, ..BlackboardOptions::default() };
    let mut board = Blackboard::bind(&name, options).unwrap();
    let readers: Vec<_> = (0..4)
        .map(|i| {
            let name = name.clone();
            fork(move || {
                let mut reader = BlackboardReader::connect(&name).unwrap();
                let (mut buf, mut last, mut reads, mut newer) = (Vec::new(), 0, 0u64, 0u64);
                loop {
                    // Half read whatever is there, half wait for newer.
                    let got = if i % 2 == 0 {
                        reader.read(&mut buf).map(|v| v.unwrap_or(0))
                    } else {
                        reader.wait_newer_timeout(&mut buf, Duration::from_secs(20)).inspect(|_| newer += 1)
                    };
                    match got {
                        Ok(0) => continue,
                        Ok(v) => {
                            assert_eq!(whole(&buf), Some(v), "a torn value at version {v}");
                            assert!(v >= last, "version {v} after {last}");
                            if i % 2 == 1 {
                                assert!(v > last, "wait_newer gave version {v} again");
                            }
                            last = v;
                            reads += 1;
                        }
                        Err(Error::Disconnected) => break,
                        Err(e) => panic!("{e}"),
                    }
                    if reader.writer_gone() && i % 2 == 0 {
                        break;
                    }
                }
                println!("reader {i}: {reads} reads, last version {last}");
                assert!(reads > 100, "reader {i} read {reads} values");
                assert!(i % 2 == 0 || newer > 0);
            })
        })
        .collect();
    let start = Instant::now();
    while board.readers() < 4 {
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut rng = Rng::new(3);
    let started = Instant::now();
    let mut v = 0;
    while started.elapsed() < Duration::from_secs(2) {
        v += 1;
        // Every size, up to the largest, at full speed.
        let len = 16 + rng.below(4096 - 16 + 1) as usize;
        assert_eq!(board.write(&value(v, len)).unwrap(), v);
    }
    drop(board);
    for mut r in readers {
        assert_eq!(r.wait_timeout(Duration::from_secs(30)), Some(Exit::Code(0)));
    }
}

/// The layout of a board (ipc_shm::board's docs), as a writer in another
/// language would make it: 4 copies of up to 64 bytes.
fn forge_board(copies: u64, max: u64) -> (Memfd, ipc_kit::shm::Mapping) {
    let slot = (16 + max).next_multiple_of(64);
    let memfd = Memfd::create("forged-board", (256 + copies * slot) as usize).unwrap();
    let map = memfd.map().unwrap();
    map.write(0, b"ipcboard").unwrap();
    map.write(8, &copies).unwrap();
    map.write(16, &max).unwrap();
    map.write(24, &slot).unwrap();
    (memfd, map)
}

// Issue: "a hostile writer can make a reader return an error after
// bounded retries, but never hang it or hand it a torn value".
fn a_hostile_writer_gets_a_typed_error_never_a_hang_or_a_torn_value() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "board");
    let listener = SeqpacketListener::bind(&name).unwrap();
    let (memfd, map) = forge_board(4, 64);
    let mut reader_proc = fork(|| {
        let mut reader = BlackboardReader::connect_timeout(&name, Duration::from_secs(10)).unwrap();
        let mut buf = Vec::new();
        let (mut ok, mut unsettled) = (0, 0);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            let t = Instant::now();
            match reader.read(&mut buf) {
                // Whatever comes out was whole by its stamps: the forger
                // writes whole values (checksummed) into even-stamped copies
                // only, and garbage into odd-stamped ones.
                Ok(Some(v)) => {
                    assert_eq!(whole(&buf), Some(v), "a torn or garbage value handed over");
                    ok += 1;
                }
                Ok(None) => {}
                Err(Error::Unsettled { tries }) => {
                    assert_eq!(tries, READ_TRIES);
                    unsettled += 1;
                }
                Err(e) => panic!("{e}"),
            }
            assert!(t.elapsed() < Duration::from_secs(2), "a read took {:?}", t.elapsed());
            // A wait for newer values ends by its deadline, whatever the
            // forger does.
            let t = Instant::now();
            match reader.wait_newer_timeout(&mut buf, Duration::from_millis(50)) {
                Ok(v) => assert_eq!(whole(&buf), Some(v)),
                Err(Error::Timeout | Error::Unsettled { .. }) => {}
                Err(e) => panic!("{e}"),
            }
            assert!(t.elapsed() < Duration::from_millis(50) + SLACK);
        }
        println!("{ok} whole values, {unsettled} unsettled reads");
        assert!(unsettled > 0, "the forger's scribbles never showed");
    });
    // The forged hub's side of the handshake: the board, a cell, two doorbells.
    let socket = listener.accept_timeout(Duration::from_secs(10)).unwrap();
    let mut hello = [0u8; 64];
    assert_eq!(socket.recv_timeout(&mut hello, Duration::from_secs(10)).unwrap(), 16);
    let cell = Memfd::create("forged-cell", 4096).unwrap();
    cell.seal_grow().unwrap();
    let bells = [EventFd::new(0, EventFdMode::Counter).unwrap(), EventFd::new(0, EventFdMode::Counter).unwrap()];
    let mut answer = [0u8; 32];
    answer[..8].copy_from_slice(b"ipc-hub\0");
    answer[8..12].copy_from_slice(&1u32.to_le_bytes());
    answer[16..20].copy_from_slice(&2u32.to_le_bytes());
    socket.send_with_fds(&answer, &[memfd.as_fd(), cell.as_fd(), bells[0].as_fd(), bells[1].as_fd()]).unwrap();
    let latest = map.shared::<AtomicU64>(64).unwrap();
    let started = Instant::now();
    let mut rng = Rng::new(11);
    let mut v = 0u64;
    while started.elapsed() < Duration::from_secs(3) {
        v += 1;
        let at = 256 + (v % 4) as usize * 128;
        let stamp = map.shared::<AtomicU64>(at).unwrap();
        let len = map.shared::<AtomicU32>(at + 8).unwrap();
        match rng.below(5) {
            // An honest write.
            0 => {
                stamp.store(2 * v + 1, Ordering::SeqCst);
                let val = value(v, 16 + rng.below(49) as usize);
                map.write_bytes(at + 16, &val).unwrap();
                len.store(val.len() as u32, Ordering::SeqCst);
                stamp.store(2 * v + 2, Ordering::SeqCst);
                latest.store(v, Ordering::SeqCst);
            }
            // A copy left half written (odd stamp) and named the latest.
            1 => {
                stamp.store(2 * v + 1, Ordering::SeqCst);
                map.write_bytes(at + 16, &rng.bytes(64)).unwrap();
                latest.store(v, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
            // A length over the largest value, under a good stamp.
            2 => {
                len.store(u32::MAX, Ordering::SeqCst);
                stamp.store(2 * v + 2, Ordering::SeqCst);
                latest.store(v, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
            // A latest that names nothing, or goes back.
            3 => latest.store(rng.next_u64(), Ordering::SeqCst),
            // Rings the reader's doorbell for nothing.
            _ => bells[0].add(1).unwrap(),
        }
    }
    assert_eq!(reader_proc.wait_timeout(Duration::from_secs(30)), Some(Exit::Code(0)));
}

// Readers connected before the first value, waiting in a poller for
// newer ones; the writer killed: waits end at once, the value stays.
fn readers_wait_for_newer_values_in_a_poller_and_see_the_writer_go() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "board");
    let (ready_r, ready_w) = std::io::pipe().unwrap();
    let mut writer = fork(|| {
        let mut board = Blackboard::bind(&name, BlackboardOptions::default()).unwrap();
        nix::unistd::write(&ready_w, b"b").unwrap();
        while board.readers() < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for v in 1..=50u64 {
            board.write_pod(&v).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        nix::unistd::write(&ready_w, b"w").unwrap();
        std::thread::sleep(Duration::from_secs(60));
    });
    drop(ready_w);
    let mut b = [0u8; 1];
    nix::unistd::read(&ready_r, &mut b).unwrap();
    let mut readers = [BlackboardReader::connect(&name).unwrap(), BlackboardReader::connect(&name).unwrap()];
    assert_eq!(readers[0].read(&mut Vec::new()).unwrap(), None, "a value before any was written");
    let mut poller = Poller::new().unwrap();
    for (i, r) in readers.iter().enumerate() {
        poller.add(r, Interest::Readable, i as u64).unwrap();
    }
    let mut last = [0u64; 2];
    while last.iter().any(|&v| v < 50) {
        let ready = poller.wait_timeout(Duration::from_secs(20)).unwrap().to_vec();
        assert!(!ready.is_empty(), "no wake-up");
        for t in ready {
            let r = &mut readers[t as usize];
            match r.try_newer(&mut Vec::new()) {
                Ok(v) => {
                    assert!(v > last[t as usize]);
                    last[t as usize] = v;
                    assert_eq!(r.read_pod::<u64>().unwrap(), Some(v));
                }
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
    nix::unistd::read(&ready_r, &mut b).unwrap();
    let waiting = std::thread::spawn({
        let mut r = BlackboardReader::connect(&name).unwrap();
        move || {
            // It read nothing yet: the latest value is news to it.
            assert_eq!(r.wait_newer(&mut Vec::new()).unwrap(), 50);
            let t = Instant::now();
            let got = r.wait_newer_timeout(&mut Vec::new(), Duration::from_secs(20));
            (got, t.elapsed())
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    writer.kill();
    assert_eq!(writer.wait(), Exit::Signaled(Signal::SIGKILL));
    let (got, took) = waiting.join().unwrap();
    assert!(matches!(got, Err(Error::Disconnected)), "{got:?}");
    assert!(took < Duration::from_secs(10), "woken by the death, not the deadline");
    for r in &mut readers {
        assert!(r.writer_gone());
        assert_eq!(r.read_pod::<u64>().unwrap(), Some(50), "the last value stays");
        assert!(matches!(r.try_newer(&mut Vec::new()), Err(Error::Disconnected)));
    }
}

// The three forms, zero and long timeouts, each limit and one more.
fn the_three_forms_wait_as_told_and_every_limit_holds() {
    let dir = ScratchDir::new();
    let name = name_in(&dir, "board");
    let options = BlackboardOptions { max_size: 100, max_readers: 1, ..BlackboardOptions::default() };
    let mut board = Blackboard::bind(&name, options.clone()).unwrap();
    let mut reader = BlackboardReader::connect(&name).unwrap();
    let second = BlackboardReader::connect(&name);
    assert!(matches!(second, Err(Error::Refused { reason: Refusal::Full, .. })), "{second:?}");
    let mut buf = Vec::new();
    assert!(matches!(reader.try_newer(&mut buf), Err(Error::WouldBlock)));
    assert!(matches!(reader.wait_newer_timeout(&mut buf, Duration::ZERO), Err(Error::Timeout)));
    let t = Instant::now();
    assert!(matches!(reader.wait_newer_timeout(&mut buf, Duration::from_millis(200)), Err(Error::Timeout)));
    assert_fired_within(t.elapsed(), Duration::from_millis(200), SLACK);
    assert_eq!(board.write(&[1; 100]).unwrap(), 1);
    assert!(matches!(board.write(&[1; 101]), Err(Error::MessageTooLarge { len: 101, max: 100 })));
    assert_eq!(board.version(), 1);
    assert_eq!(reader.wait_newer_timeout(&mut buf, Duration::from_secs(3600)).unwrap(), 1);
    assert_eq!(buf, [1; 100]);
    assert_eq!(board.write(b"").unwrap(), 2);
    assert_eq!(reader.read_with(<[u8]>::len).unwrap(), Some((2, 0)));
    assert!(matches!(reader.read_pod::<u32>(), Err(Error::Malformed { .. })));
    assert!(matches!(reader.try_newer(&mut buf), Err(Error::WouldBlock)), "the version read is not news");
    board.write_with(3, |b| b.copy_from_slice(b"abc")).unwrap();
    assert_eq!(reader.try_newer(&mut buf).unwrap(), 3);
    assert_eq!(buf, b"abc");
    for bad in [
        BlackboardOptions { max_size: 0, ..options.clone() },
        BlackboardOptions { max_size: (1 << 26) + 1, ..options.clone() },
        BlackboardOptions { copies: 1, ..options.clone() },
        BlackboardOptions { copies: 65, ..options.clone() },
        BlackboardOptions { max_readers: 0, ..options.clone() },
        BlackboardOptions { mode: 0o4600, ..options.clone() },
    ] {
        assert!(matches!(Blackboard::bind(&name_in(&dir, "bad"), bad), Err(Error::InvalidOptions { .. })));
        assert!(!dir.path().join("bad").exists());
    }
    // A subscriber or a listener at a blackboard is refused.
    let wrong = ipc_kit::service::Subscriber::connect_timeout(&name, Duration::from_secs(5));
    assert!(matches!(wrong, Err(Error::Refused { reason: Refusal::Protocol | Refusal::Full, .. })), "{wrong:?}");
    drop(board);
    assert!(!dir.path().join("board").exists());
    let gone: SocketName = name;
    assert!(BlackboardReader::connect_timeout(&gone, Duration::from_secs(1)).is_err());
}
