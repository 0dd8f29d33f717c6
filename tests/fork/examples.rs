//! The examples, run as the programs they are: built by `cargo xtask
//! test` (`cargo build --examples`), found beside this test binary, and
//! started as separate processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ipc_kit::shm::{Error as ShmError, SysvSegment};
use ipc_kit::sync::{Error as SyncError, Key, SemOp, SemaphoreSet};
use ipc_kit_tests::{ScratchDir, cases};

cases!("examples":
    ftok_reader_first_then_writer(90 s),
    ftok_writer_first_then_reader(90 s),
    ftok_reader_killed_then_the_writer_removes_both(90 s),
    ftok_second_reader_is_refused_while_the_first_lives(90 s),
    ftok_writer_refuses_a_message_over_the_limit_and_makes_nothing(90 s),
    ftok_writer_killed_is_noticed_and_the_reader_removes_both(90 s),
    poll_server_serves_a_fifo_a_queue_and_a_channel(90 s),
    tokio_server_serves_a_fifo_a_queue_and_a_channel(90 s),
    service_server_serves_client_programs_by_name(90 s),
    publisher_blackboard_and_notifier_reach_separate_programs_by_name(90 s),
);

/// An example program of the workspace, built by `cargo build --examples`
/// into `target/debug/examples` (beside this binary's `deps`).
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().expect("the test binary's path");
    let path = exe.parent().and_then(Path::parent).expect("target/debug/deps").join("examples").join(name);
    assert!(path.exists(), "{} is missing: build it with cargo build --examples -p ipc-shm", path.display());
    Command::new(path)
}

/// The messages the cases send: plain, with spaces, not ASCII, empty, and
/// one of the longest (60 bytes).
fn messages() -> Vec<String> {
    vec!["hello".into(), "two words".into(), "grüße, 世界".into(), String::new(), "x".repeat(60)]
}

/// A path for `ftok`, in a fresh directory; the key the examples make
/// from it; and, when dropped, the removal of anything still under the
/// key, so that a failing case leaves nothing either.
struct Place {
    _dir: ScratchDir,
    path: PathBuf,
    key: Key,
}

impl Place {
    fn new() -> Place {
        let dir = ScratchDir::new();
        let path = dir.path().join("ftok-demo");
        std::fs::write(&path, b"").unwrap();
        // The examples' project id: b'F'.
        let key = Key::from_path(&path, b'F').unwrap();
        Place { _dir: dir, path, key }
    }

    fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Whether a semaphore set and a segment exist under the key.
    fn objects(&self) -> (bool, bool) {
        let set = match SemaphoreSet::open_timeout(self.key, Duration::from_secs(5)) {
            Ok(_) => true,
            Err(SyncError::NotFound { .. }) => false,
            Err(e) => panic!("open the set: {e}"),
        };
        let segment = match SysvSegment::open(self.key, 0) {
            Ok(_) => true,
            Err(ShmError::NotFound { .. }) => false,
            Err(e) => panic!("open the segment: {e}"),
        };
        (set, segment)
    }

    /// Waits (at most 20 s) until a reader has made the set and taken its
    /// place (semaphore 2, `READER`, at 1; the semaphores are listed in
    /// crates/ipc-shm/examples/ftok/protocol.rs).
    fn wait_for_a_reader(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(set) = SemaphoreSet::open(self.key)
                && set.value(2).unwrap_or(0) == 1
            {
                return;
            }
            assert!(Instant::now() < deadline, "no reader made the set within 20 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Ok(set) = SemaphoreSet::open_timeout(self.key, Duration::ZERO) {
            let _ = set.remove();
        }
        if let Ok(segment) = SysvSegment::open(self.key, 0) {
            let _ = segment.remove();
        }
    }
}

fn reader(place: &Place) -> Child {
    example("ftok_reader").arg(place.arg()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

fn writer(place: &Place, messages: &[String]) -> Child {
    example("ftok_writer").arg(place.arg()).args(messages).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

fn finished(child: Child, who: &str) -> Output {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{who} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

/// The reader printed exactly the messages, one a line, and nothing is
/// left under the key.
fn check_delivered(place: &Place, reader_out: &Output, sent: &[String]) {
    let printed = String::from_utf8(reader_out.stdout.clone()).unwrap();
    let want: String = sent.iter().map(|m| format!("{m}\n")).collect();
    assert_eq!(printed, want, "the reader printed what the writer wrote");
    assert_eq!(place.objects(), (false, false), "no set and no segment left");
}

fn ftok_reader_first_then_writer() {
    let place = Place::new();
    let r = reader(&place);
    place.wait_for_a_reader();
    let w = writer(&place, &messages());
    finished(w, "the writer");
    let out = finished(r, "the reader");
    check_delivered(&place, &out, &messages());
}

fn ftok_writer_first_then_reader() {
    let place = Place::new();
    let mut w = writer(&place, &messages());
    // The reader starts only once the writer is seen waiting for it.
    wait_until_sleeping(&mut w, "the writer");
    assert_eq!(place.objects(), (false, false), "the writer makes nothing");
    let r = reader(&place);
    let out = finished(r, "the reader");
    finished(w, "the writer");
    check_delivered(&place, &out, &messages());
}

fn ftok_reader_killed_then_the_writer_removes_both() {
    let place = Place::new();
    let mut r = reader(&place);
    place.wait_for_a_reader();
    r.kill().unwrap();
    r.wait().unwrap();
    assert_eq!(place.objects(), (true, true), "a killed reader removes nothing itself");
    let w = writer(&place, &messages());
    let out = w.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the writer reports the dead reader: {err}");
    assert!(err.contains("the reader died"), "{err}");
    assert_eq!(place.objects(), (false, false), "the writer removed the set and the segment");
}

fn ftok_second_reader_is_refused_while_the_first_lives() {
    let place = Place::new();
    let first = reader(&place);
    place.wait_for_a_reader();
    let second = example("ftok_reader").arg(place.arg()).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains("another reader"), "{err}");
    // The first is untouched: a writer still reaches it.
    let w = writer(&place, &messages()[..2]);
    finished(w, "the writer");
    let out = finished(first, "the first reader");
    check_delivered(&place, &out, &messages()[..2]);
}

fn ftok_writer_refuses_a_message_over_the_limit_and_makes_nothing() {
    let place = Place::new();
    let out = example("ftok_writer").arg(place.arg()).arg("x".repeat(61)).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("longer than 60 bytes"), "{err}");
    let too_many: Vec<String> = (0..64).map(|i| i.to_string()).collect();
    let out = example("ftok_writer").arg(place.arg()).args(&too_many).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("at most 63 messages"), "{err}");
    assert_eq!(place.objects(), (false, false));
}

fn ftok_writer_killed_is_noticed_and_the_reader_removes_both() {
    const LOCK: u16 = 0;
    const WRITER: u16 = 3;
    let place = Place::new();
    let r = reader(&place);
    place.wait_for_a_reader();
    let set = SemaphoreSet::open(place.key).unwrap();
    // Takes the lock as soon as a writer is there and has let it go once:
    // the writer is then armed, and waits for the lock to send. The taker
    // waits before the writer starts.
    let (tx, rx) = std::sync::mpsc::channel();
    let key = place.key;
    let taker = std::thread::spawn(move || {
        let set = SemaphoreSet::open(key).unwrap();
        let taken = set.apply_timeout(
            &[SemOp::add(WRITER, -1).no_undo(), SemOp::add(WRITER, 1).no_undo(), SemOp::wait(LOCK)],
            Duration::from_secs(20),
        );
        tx.send(()).unwrap();
        taken
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while waiting_for_increase(set.id(), WRITER) < 1 {
        assert!(Instant::now() < deadline, "the lock taker never waited");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut w = writer(&place, &messages());
    rx.recv_timeout(Duration::from_secs(25)).expect("the lock taken while the writer lives");
    taker.join().unwrap().unwrap();
    assert_eq!(set.value(WRITER).unwrap(), 1, "the writer is there");
    w.kill().unwrap();
    w.wait().unwrap();
    set.post(LOCK).unwrap();
    let out = r.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the reader reports the dead writer: {err}");
    assert!(err.contains("the writer died after 0 messages"), "{err}");
    assert!(out.stdout.is_empty(), "nothing was sent");
    drop(set);
    assert_eq!(place.objects(), (false, false), "the reader removed the set and the segment");
}

/// Waits (at most 20 s) until `child` sleeps in `nanosleep` or
/// `clock_nanosleep` (as /proc/PID/syscall shows), which a writer does only
/// in its wait for a reader; where that file cannot be read, until its
/// state in /proc/PID/stat is `S` (sleeping). Panics if the child ends or
/// never sleeps.
fn wait_until_sleeping(child: &mut Child, who: &str) {
    let sleeps = [libc::SYS_nanosleep.to_string(), libc::SYS_clock_nanosleep.to_string()];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{who} ended ({status}) instead of waiting");
        }
        let pid = child.id();
        let sleeping = match std::fs::read_to_string(format!("/proc/{pid}/syscall")) {
            Ok(call) => call.split_whitespace().next().is_some_and(|nr| sleeps.iter().any(|s| s == nr)),
            Err(_) => std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('S'))),
        };
        if sleeping {
            return;
        }
        assert!(Instant::now() < deadline, "{who} was not seen waiting within 20 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How many processes wait for semaphore `index` of set `id` to rise
/// (`GETNCNT`), or -1 on an error.
fn waiting_for_increase(id: i32, index: u16) -> i32 {
    #![allow(unsafe_code)]
    // SAFETY: semctl with GETNCNT takes no fourth argument and only reads
    // the set's state.
    unsafe { libc::semctl(id, i32::from(index), libc::GETNCNT) }
}

fn poll_server_serves_a_fifo_a_queue_and_a_channel() {
    let dir = ScratchDir::new();
    let out = example("poll_server").arg("2000").env("TMPDIR", dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("served fifo 2000 queue 2000 channel 2000 messages in "), "{stdout}");
    // Its FIFO's directory is gone (the queue and the channel are checked
    // by the suite's leak check).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "left in TMPDIR");
}

fn tokio_server_serves_a_fifo_a_queue_and_a_channel() {
    let dir = ScratchDir::new();
    let out = example("tokio_server").arg("2000").env("TMPDIR", dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), "served fifo 2000 queue 2000 channel 2000 messages");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "left in TMPDIR");
}

fn service_server_serves_client_programs_by_name() {
    let dir = ScratchDir::new();
    let socket = dir.path().join("upper.sock");
    let socket = socket.to_str().unwrap();
    let server = example("service_server").args([socket, "3"]).stdout(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while !Path::new(socket).exists() {
        assert!(started.elapsed() < Duration::from_secs(30), "the service never bound");
        std::thread::sleep(Duration::from_millis(10));
    }
    let clients: Vec<Child> = [&["hello", "world"][..], &["grüße"], &["x"; 100]]
        .iter()
        .map(|words| example("service_client").arg(socket).args(*words).stdout(Stdio::piped()).spawn().unwrap())
        .collect();
    let outputs: Vec<Output> = clients.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for (out, want) in outputs.iter().zip(["HELLO\nWORLD\n".to_owned(), "GRüßE\n".to_owned(), "X\n".repeat(100)]) {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    }
    let out = server.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.ends_with("served 103 requests from 3 clients\n"), "{stdout}");
    assert_eq!(stdout.matches("client ").count(), 3, "{stdout}");
    assert!(!Path::new(socket).exists(), "the socket file went with the service");
}

/// Runs `owner` and its `members` (each its own program, all at once),
/// and returns their outputs, the owner's first; each must succeed.
fn owner_and_members(owner: Command, members: Vec<Command>) -> Vec<String> {
    let mut all = vec![owner];
    all.extend(members);
    let children: Vec<Child> =
        all.iter_mut().map(|c| c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()).collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect()
}

// Issue: "The README gains a section for the three patterns, each with an
// example of separate programs": a publisher and three subscribers, a
// blackboard and two readers, a notifier and two listeners, each program
// started on its own and finding the other by the socket's name.
fn publisher_blackboard_and_notifier_reach_separate_programs_by_name() {
    let dir = ScratchDir::new();
    let sock = |f: &str| dir.path().join(f).to_str().unwrap().to_owned();
    let (p, b, e) = (sock("ticks.sock"), sock("board.sock"), sock("events.sock"));
    let members = |program: &str, n: usize, socket: &str| -> Vec<Command> {
        (0..n)
            .map(|_| {
                let mut c = example(program);
                c.arg(socket);
                c
            })
            .collect()
    };
    let mut publisher = example("pubsub_publisher");
    publisher.args([p.as_str(), "50000", "3"]);
    let out = owner_and_members(publisher, members("pubsub_subscriber", 3, &p));
    assert_eq!(out[0], "published 50000 ticks to 3 subscribers\n");
    for o in &out[1..] {
        assert_eq!(o, "received 50000 ticks in order\n");
    }
    let mut writer = example("blackboard_writer");
    writer.args([b.as_str(), "200", "2"]);
    let out = owner_and_members(writer, members("blackboard_reader", 2, &b));
    assert_eq!(out[0], "wrote 200 readings for 2 readers\n");
    for o in &out[1..] {
        assert!(o.starts_with("last reading 200 ("), "{o}");
    }
    let mut notifier = example("event_notifier");
    notifier.args([e.as_str(), "2", "1", "2", "2", "3", "15"]);
    let out = owner_and_members(notifier, members("event_listener", 2, &e));
    assert_eq!(out[0], "notified 5 events to 2 listeners\n");
    for o in &out[1..] {
        assert_eq!(o, "fired 1x1 2x2 3x1 15x1\n");
    }
    for f in [p, b, e] {
        assert!(!Path::new(&f).exists(), "{f} left behind");
    }
}
