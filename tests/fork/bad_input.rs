//! The bad-input table: the public constructors and operations, each given
//! the inputs users get wrong (and the stale or foreign objects they meet),
//! each row checked here and printed in docs/reliability.md between the
//! `bad-input` markers. Calls that take no input that can be wrong are left
//! out. `IPC_KIT_BLESS=1` rewrites that table from these rows.

use std::fmt::Display;
use std::fs;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use ipc_kit::fifo::{self, Fifo, FifoClient, FifoServer};
use ipc_kit::msgq::{self, PosixQueue, QueueAttr, Selector, SysvQueue};
use ipc_kit::pipe::{self, ChildFds, FrameReader, FrameWriter, PIPE_BUF, PipeReader, PipeWriter};
use ipc_kit::shm::channel::Handoff;
use ipc_kit::shm::{self, ByteChannel, Channel, Mapping, Memfd, PosixShm, SysvSegment};
use ipc_kit::sync::{
    self, EVENTFD_MAX, Event, EventFd, EventFdMode, Key, LockError, Mutex, NamedSemaphore, RobustMutex, SEM_VALUE_MAX,
    SemOp, Semaphore, SemaphoreSet,
};
use ipc_kit::{MessageSender, PipeSender};
use ipc_kit_tests::{
    Exit, Refusal, ScratchDir, SysvKind, cases, fork, may_exceed_resource_limits, unique_name, with_doorbells,
};

cases!("bad_input":
    every_row_gets_its_documented_result,
    the_documented_table_is_these_rows,
);

/// One bad input to one call, and what it must get.
struct Row {
    api: &'static str,
    input: &'static str,
    /// The pattern the result must match, as written in the check.
    expect: &'static str,
    check: fn() -> Result<(), String>,
}

/// What a result that did not match was.
fn describe<T, E: Display>(result: Result<T, E>) -> String {
    match result {
        Ok(_) => "it succeeded".to_owned(),
        Err(e) => format!("error: {e}"),
    }
}

/// `row!(api, input, setup { … } call => pattern)`: runs the setup, then the
/// call, and checks its result against the pattern. With `as nobody`, the
/// call runs in a forked child that the object refuses (see [`as_nobody`]).
/// With `=> pattern, privileged => pattern`, a caller with
/// `CAP_SYS_RESOURCE` (who may go past the limit the row is about) gets
/// the second.
macro_rules! row {
    ($api:literal, $input:literal, { $($setup:tt)* } $call:expr => $pat:pat, privileged => $ppat:pat) => {
        row!(@row $api, $input, $pat, {
            $($setup)*
            if may_exceed_resource_limits() { row!(@match $call => $ppat) } else { row!(@match $call => $pat) }
        })
    };
    ($api:literal, $input:literal, { $($setup:tt)* } as nobody $call:expr => $pat:pat) => {
        row!(@row $api, $input, $pat, { $($setup)* as_nobody(|| row!(@match $call => $pat)) })
    };
    ($api:literal, $input:literal, { $($setup:tt)* } $call:expr => $pat:pat) => {
        row!(@row $api, $input, $pat, { $($setup)* row!(@match $call => $pat) })
    };
    ($api:literal, $input:literal, $call:expr => $pat:pat) => {
        row!($api, $input, {} $call => $pat)
    };
    (@row $api:literal, $input:literal, $pat:pat, $check:block) => {
        Row { api: $api, input: $input, expect: stringify!($pat), check: || $check }
    };
    (@match $call:expr => $pat:pat) => {{
        #[allow(unreachable_patterns)]
        let outcome = match $call {
            $pat => Ok(()),
            other => Err(describe(other)),
        };
        outcome
    }};
}

/// Runs `check` in a forked child that the row's object refuses: one that
/// has become `nobody`, or without root the owner of an object whose
/// permission bits the setup took off (see [`Refusal`]).
fn as_nobody(check: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let mut child = fork(|| {
        Refusal::here().become_caller();
        if let Err(e) = check() {
            panic!("as the refused caller: {e}");
        }
    });
    match child.wait() {
        Exit::Code(0) => Ok(()),
        other => Err(format!("the refused caller's child ended with {other:?} (its message is above)")),
    }
}

/// The /dev/shm entry of a POSIX name (without its `/`).
fn shm_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/dev/shm").join(name)
}

/// A System V key for one row, unused by other cases and runs.
fn key(row: i32) -> Key {
    Key::new(0x1e20_0000 | (row << 16) | (std::process::id() as i32 & 0xffff)).unwrap()
}

fn name() -> String {
    format!("/{}", unique_name("ipc-kit-bad-input"))
}

fn long_name() -> String {
    format!("/{}", "n".repeat(300))
}

/// Runs `f` on another thread after 20 ms: the peer that ends a long wait.
fn later(f: impl FnOnce() + Send + 'static) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        f();
    })
}

/// A deadline that passed a second ago.
fn past() -> Instant {
    Instant::now() - Duration::from_secs(1)
}

const WAIT: Duration = Duration::from_millis(1);

fn rows() -> Vec<Row> {
    vec![
        // ---- ipc-sync
        row!("Key::new", "0 (IPC_PRIVATE)", Key::new(0) => Err(sync::Error::InvalidKey { .. })),
        row!("Key::from_path", "a path that does not exist",
            Key::from_path("/nonexistent/ipc-kit", b'k') => Err(sync::Error::KeyPath { .. })),
        row!("Key::from_path", "a path with NUL", Key::from_path("/tmp/a\0b", b'k') => Err(sync::Error::KeyPath { .. })),
        row!("Key::from_path", "project id 0", Key::from_path("/", 0) => Err(sync::Error::InvalidKey { .. })),
        row!("SemaphoreSet::create", "no semaphores",
            SemaphoreSet::create(Key::private(), &[], 0o600) => Err(sync::Error::InvalidArgument { .. })),
        row!("SemaphoreSet::create", "40,000 semaphores (over SEMMSL)",
            SemaphoreSet::create(Key::private(), &[0; 40_000], 0o600) => Err(sync::Error::InvalidArgument { .. })),
        row!("SemaphoreSet::create", "a value over SEM_VALUE_MAX",
            SemaphoreSet::create(Key::private(), &[SEM_VALUE_MAX + 1], 0o600) => Err(sync::Error::InvalidArgument { .. })),
        row!("SemaphoreSet::create", "a key in use", { let _s = SemaphoreSet::create(key(1), &[0], 0o600).unwrap(); }
            SemaphoreSet::create(key(1), &[0], 0o600) => Err(sync::Error::AlreadyExists { .. })),
        row!("SemaphoreSet::open", "a key nobody made", SemaphoreSet::open(key(2)) => Err(sync::Error::NotFound { .. })),
        row!("SemaphoreSet::open", "mode 0600, caller nobody (without root: mode 000, caller the owner)", { let k = key(3); let s = SemaphoreSet::create(k, &[0], 0o600).unwrap(); Refusal::here().apply_to_sysv(SysvKind::Semaphores, s.id()); }
            as nobody SemaphoreSet::open(k) => Err(sync::Error::PermissionDenied { .. })),
        row!("SemaphoreSet::wait", "an index past the set", { let s = SemaphoreSet::create(Key::private(), &[1], 0o600).unwrap(); }
            s.wait(1) => Err(sync::Error::InvalidArgument { .. })),
        row!("SemaphoreSet::apply", "no operations", { let s = SemaphoreSet::create(Key::private(), &[1], 0o600).unwrap(); }
            s.apply(&[]) => Err(sync::Error::InvalidArgument { .. })),
        row!("SemaphoreSet::apply", "a post past SEM_VALUE_MAX",
            { let s = SemaphoreSet::create(Key::private(), &[SEM_VALUE_MAX], 0o600).unwrap(); }
            s.apply(&[SemOp::post(0)]) => Err(sync::Error::Overflow { .. })),
        row!("SemaphoreSet::set_value", "a value over SEM_VALUE_MAX",
            { let s = SemaphoreSet::create(Key::private(), &[0], 0o600).unwrap(); }
            s.set_value(0, SEM_VALUE_MAX + 1) => Err(sync::Error::InvalidArgument { .. })),
        row!("SemaphoreSet::try_wait", "value 0", { let s = SemaphoreSet::create(Key::private(), &[0], 0o600).unwrap(); }
            s.try_wait(0) => Err(sync::Error::WouldBlock { .. })),
        row!("SemaphoreSet::wait_timeout", "timeout 0, value 0", { let s = SemaphoreSet::create(Key::private(), &[0], 0o600).unwrap(); }
            s.wait_timeout(0, Duration::ZERO) => Err(sync::Error::Timeout { .. })),
        row!("SemaphoreSet::wait_timeout", "timeout Duration::MAX, posted 20 ms later",
            { let s = std::sync::Arc::new(SemaphoreSet::create(Key::private(), &[0], 0o600).unwrap()); let p = s.clone();
              let _p = later(move || p.post(0).unwrap()); }
            s.wait_timeout(0, Duration::MAX) => Ok(())),
        row!("SemaphoreSet::wait", "the set removed meanwhile",
            { let s = SemaphoreSet::create(Key::private(), &[0], 0o600).unwrap(); let id = s.id();
              let _r = later(move || SemaphoreSet::remove_id(id).unwrap()); }
            s.wait(0) => Err(sync::Error::Removed { .. })),
        row!("NamedSemaphore::create", "a name without '/'",
            NamedSemaphore::create("no-slash", 0, 0o600) => Err(sync::Error::InvalidArgument { .. })),
        row!("NamedSemaphore::create", "a name with a second '/'",
            NamedSemaphore::create("/a/b", 0, 0o600) => Err(sync::Error::InvalidArgument { .. })),
        row!("NamedSemaphore::create", "a name of 300 bytes",
            NamedSemaphore::create(&long_name(), 0, 0o600) => Err(sync::Error::InvalidArgument { .. })),
        row!("NamedSemaphore::create", "a name with NUL",
            NamedSemaphore::create("/a\0b", 0, 0o600) => Err(sync::Error::InvalidArgument { .. })),
        row!("NamedSemaphore::create", "a value over SEM_VALUE_MAX",
            NamedSemaphore::create(&name(), u32::MAX, 0o600) => Err(sync::Error::InvalidArgument { .. })),
        row!("NamedSemaphore::create", "a name in use", { let n = name(); let _s = NamedSemaphore::create(&n, 0, 0o600).unwrap(); }
            NamedSemaphore::create(&n, 0, 0o600) => Err(sync::Error::AlreadyExists { .. })),
        row!("NamedSemaphore::open", "a name nobody made", NamedSemaphore::open(&name()) => Err(sync::Error::NotFound { .. })),
        row!("NamedSemaphore::open", "mode 0600, caller nobody (without root: mode 000, caller the owner)", { let n = name(); let _s = NamedSemaphore::create(&n, 0, 0o600).unwrap(); Refusal::here().apply_to_path(&shm_path(&format!("sem.{}", &n[1..]))); }
            as nobody NamedSemaphore::open(&n) => Err(sync::Error::PermissionDenied { .. })),
        row!("SemaphoreSet::remove", "a set removed already",
            { let s = SemaphoreSet::create(Key::private(), &[0], 0o600).unwrap(); SemaphoreSet::remove_id(s.id()).unwrap(); }
            s.remove() => Err(sync::Error::Removed { .. })),
        row!("NamedSemaphore::unlink", "a name unlinked already",
            { let mut s = NamedSemaphore::create(&name(), 0, 0o600).unwrap(); s.unlink().unwrap(); }
            s.unlink() => Err(sync::Error::NotFound { .. })),
        row!("NamedSemaphore::wait_timeout", "timeout 0, value 0", { let s = NamedSemaphore::create(&name(), 0, 0o600).unwrap(); }
            s.wait_timeout(Duration::ZERO) => Err(sync::Error::Timeout { .. })),
        row!("NamedSemaphore::post", "at SEM_VALUE_MAX",
            { let s = NamedSemaphore::create(&name(), i32::MAX as u32, 0o600).unwrap(); }
            s.post() => Err(sync::Error::Overflow { .. })),
        row!("Semaphore::post", "at u32::MAX", Semaphore::new(u32::MAX).post() => Err(sync::Error::Overflow { .. })),
        row!("Semaphore::wait_timeout", "timeout 0, count 0",
            Semaphore::new(0).wait_timeout(Duration::ZERO) => Err(sync::Error::Timeout { .. })),
        row!("Semaphore::wait_timeout", "timeout Duration::MAX, posted 20 ms later",
            { let s = std::sync::Arc::new(Semaphore::new(0)); let p = s.clone();
              let _p = later(move || p.post().unwrap()); }
            s.wait_timeout(Duration::MAX) => Ok(())),
        row!("Semaphore::wait_deadline", "a deadline 1 s ago, count 0",
            Semaphore::new(0).wait_deadline(past()) => Err(sync::Error::Timeout { .. })),
        row!("Mutex::try_lock", "held", { let m = Mutex::new(0u32); let _g = m.lock().unwrap(); }
            m.try_lock().map(drop) => Err(LockError::WouldBlock)),
        row!("Mutex::lock_timeout", "timeout 0, held by another thread",
            { let m = Mutex::new(0u32); let _g = m.lock().unwrap(); }
            thread::scope(|s| s.spawn(|| m.lock_timeout(Duration::ZERO).map(drop).map_err(|e| e.map(drop))).join().unwrap()) => Err(LockError::Timeout)),
        row!("Mutex::lock", "held by this thread", { let m = Mutex::new(0u32); let _g = m.lock().unwrap(); }
            m.lock().map(drop) => Err(LockError::WouldDeadlock)),
        row!("RobustMutex::lock_timeout", "timeout 0, held by another thread",
            { let map = Mapping::anonymous(4096).unwrap(); let m = map.shared::<RobustMutex<u32>>(0).unwrap().get();
              let _g = m.lock().ok().unwrap(); }
            thread::scope(|s| s.spawn(|| m.lock_timeout(Duration::ZERO).map(drop).map_err(|e| e.map(drop))).join().unwrap()) => Err(LockError::Timeout)),
        row!("Event::wait_timeout", "timeout 0, not set", Event::new().wait_timeout(Duration::ZERO) => Err(sync::Error::Timeout { .. })),
        row!("EventFd::add", "n over EVENTFD_MAX", { let e = EventFd::new(0, EventFdMode::Counter).unwrap(); }
            e.add(EVENTFD_MAX + 1) => Err(sync::Error::InvalidArgument { .. })),
        row!("EventFd::try_add", "a full counter", { let e = EventFd::new(0, EventFdMode::Counter).unwrap(); e.add(EVENTFD_MAX).unwrap(); }
            e.try_add(1) => Err(sync::Error::WouldBlock { .. })),
        row!("EventFd::read_timeout", "timeout 0, counter 0", { let e = EventFd::new(0, EventFdMode::Counter).unwrap(); }
            e.read_timeout(Duration::ZERO) => Err(sync::Error::Timeout { .. })),
        // ---- ipc-shm
        row!("SysvSegment::create", "size 0", SysvSegment::create(Key::private(), 0, 0o600) => Err(shm::Error::InvalidSize { .. })),
        row!("SysvSegment::create", "size 2^60", SysvSegment::create(Key::private(), 1 << 60, 0o600) => Err(shm::Error::InvalidSize { .. })),
        row!("SysvSegment::create", "a key in use", { let _s = SysvSegment::create(key(4), 4096, 0o600).unwrap(); }
            SysvSegment::create(key(4), 4096, 0o600) => Err(shm::Error::AlreadyExists { .. })),
        row!("SysvSegment::open", "a key nobody made", SysvSegment::open(key(5), 0) => Err(shm::Error::NotFound { .. })),
        row!("SysvSegment::open", "a minimum size over the segment's", { let _s = SysvSegment::create(key(6), 4096, 0o600).unwrap(); }
            SysvSegment::open(key(6), 8192) => Err(shm::Error::TooSmall { .. })),
        row!("SysvSegment::open", "mode 0600, caller nobody (without root: mode 000, caller the owner)", { let k = key(7); let s = SysvSegment::create(k, 4096, 0o600).unwrap(); Refusal::here().apply_to_sysv(SysvKind::Segment, s.id()); }
            as nobody SysvSegment::open(k, 0) => Err(shm::Error::PermissionDenied { .. })),
        row!("SysvSegment::open_id", "id -1", SysvSegment::open_id(-1, 0) => Err(shm::Error::NotFound { .. })),
        row!("PosixShm::create", "a name without '/'", PosixShm::create("no-slash", 4096, 0o600) => Err(shm::Error::InvalidName { .. })),
        row!("PosixShm::create", "a name with a second '/'", PosixShm::create("/a/b", 4096, 0o600) => Err(shm::Error::InvalidName { .. })),
        row!("PosixShm::create", "the name \"/\"", PosixShm::create("/", 4096, 0o600) => Err(shm::Error::InvalidName { .. })),
        row!("PosixShm::create", "a name of 300 bytes", PosixShm::create(&long_name(), 4096, 0o600) => Err(shm::Error::InvalidName { .. })),
        row!("PosixShm::create", "a name with NUL", PosixShm::create("/a\0b", 4096, 0o600) => Err(shm::Error::InvalidName { .. })),
        row!("PosixShm::create", "size 0", PosixShm::create(&name(), 0, 0o600) => Err(shm::Error::InvalidSize { .. })),
        row!("PosixShm::create", "size 2^62 (more than /dev/shm holds)", PosixShm::create(&name(), 1 << 62, 0o600) => Err(shm::Error::InvalidSize { .. })),
        row!("PosixShm::create", "a name in use", { let n = name(); let _s = PosixShm::create(&n, 4096, 0o600).unwrap(); }
            PosixShm::create(&n, 4096, 0o600) => Err(shm::Error::AlreadyExists { .. })),
        row!("PosixShm::open", "a name nobody made", PosixShm::open(&name()) => Err(shm::Error::NotFound { .. })),
        row!("PosixShm::open", "mode 0600, caller nobody (without root: mode 000, caller the owner)", { let n = name(); let _s = PosixShm::create(&n, 4096, 0o600).unwrap(); Refusal::here().apply_to_path(&shm_path(&n[1..])); }
            as nobody PosixShm::open(&n) => Err(shm::Error::PermissionDenied { .. })),
        row!("PosixShm::map_len", "more than the object holds", { let s = PosixShm::create(&name(), 4096, 0o600).unwrap(); }
            s.map_len(8192) => Err(shm::Error::TooSmall { .. })),
        row!("PosixShm::map_len", "0 bytes", { let s = PosixShm::create(&name(), 4096, 0o600).unwrap(); }
            s.map_len(0) => Err(shm::Error::InvalidSize { .. })),
        row!("PosixShm::set_size", "opened read-only",
            { let n = name(); let _s = PosixShm::create(&n, 4096, 0o600).unwrap(); let ro = PosixShm::open_read_only(&n).unwrap(); }
            ro.set_size(8192) => Err(shm::Error::ReadOnly)),
        row!("PosixShm::set_size", "2^62 (more than /dev/shm holds)", { let s = PosixShm::create(&name(), 4096, 0o600).unwrap(); }
            s.set_size(1 << 62) => Err(shm::Error::InvalidSize { .. })),
        row!("PosixShm::unlink", "a name unlinked already",
            { let mut s = PosixShm::create(&name(), 4096, 0o600).unwrap(); s.unlink().unwrap(); }
            s.unlink() => Err(shm::Error::NotFound { .. })),
        row!("SysvSegment::attach", "a segment removed meanwhile",
            { let s = SysvSegment::create(Key::private(), 4096, 0o600).unwrap(); SysvSegment::open_id(s.id(), 0).unwrap().remove().unwrap(); }
            s.attach() => Err(shm::Error::Removed { .. })),
        row!("SysvSegment::attach_read_only", "then a write",
            { let s = SysvSegment::create(Key::private(), 4096, 0o600).unwrap(); let m = s.attach_read_only().unwrap(); }
            m.write_bytes(0, b"x") => Err(shm::Error::ReadOnly)),
        row!("Memfd::create", "a name with NUL", Memfd::create("a\0b", 4096) => Err(shm::Error::InvalidName { .. })),
        row!("Memfd::create", "a name of 300 bytes", Memfd::create(&"n".repeat(300), 4096) => Err(shm::Error::InvalidName { .. })),
        row!("Memfd::create", "size 0", Memfd::create("m", 0) => Err(shm::Error::InvalidSize { .. })),
        row!("Memfd::create", "size 2^62 (more than memory and swap)", Memfd::create("m", 1 << 62) => Err(shm::Error::InvalidSize { .. })),
        row!("Memfd::from_fd", "an fd not sealed against shrinking", { let fd = unsealed_memfd(); }
            Memfd::from_fd(fd) => Err(shm::Error::NotSealed)),
        row!("Memfd::from_fd", "a regular file",
            { let d = ScratchDir::new(); let p = d.path().join("f"); fs::write(&p, [0; 4096]).unwrap(); let fd = OwnedFd::from(fs::File::open(&p).unwrap()); }
            Memfd::from_fd(fd) => Err(shm::Error::NotSealed)),
        row!("Mapping::anonymous", "size 0", Mapping::anonymous(0) => Err(shm::Error::InvalidSize { .. })),
        row!("Mapping::read_bytes", "a range past the end", { let m = Mapping::anonymous(4096).unwrap(); }
            m.read_bytes(4090, &mut [0; 8]) => Err(shm::Error::OutOfBounds { .. })),
        row!("Mapping::read_bytes", "offset usize::MAX", { let m = Mapping::anonymous(4096).unwrap(); }
            m.read_bytes(usize::MAX, &mut [0; 8]) => Err(shm::Error::OutOfBounds { .. })),
        row!("Mapping::write_bytes", "a range past the end", { let m = Mapping::anonymous(4096).unwrap(); }
            m.write_bytes(4095, &[0; 2]) => Err(shm::Error::OutOfBounds { .. })),
        row!("Mapping::shared", "an AtomicU64 at offset 4",
            { let m = Mapping::anonymous(4096).unwrap(); }
            m.shared::<std::sync::atomic::AtomicU64>(4).map(drop) => Err(shm::Error::Misaligned { .. })),
        row!("Mapping::shared", "an AtomicU64 past the end",
            { let m = Mapping::anonymous(4096).unwrap(); }
            m.shared::<std::sync::atomic::AtomicU64>(4096).map(drop) => Err(shm::Error::OutOfBounds { .. })),
        row!("Mapping::read", "a u64 at offset 3", { let m = Mapping::anonymous(4096).unwrap(); }
            m.read::<u64>(3) => Err(shm::Error::Misaligned { .. })),
        row!("Mapping::write_bytes", "a read-only mapping", { let m = read_only_mapping(); }
            m.write_bytes(0, &[1]) => Err(shm::Error::ReadOnly)),
        row!("Channel::anonymous", "capacity 0", Channel::<u64>::anonymous(0) => Err(shm::Error::InvalidSize { .. })),
        row!("Channel::anonymous", "capacity 3 (not a power of two)", Channel::<u64>::anonymous(3) => Err(shm::Error::InvalidSize { .. })),
        row!("Channel::anonymous", "capacity 2^62", Channel::<u64>::anonymous(1 << 62) => Err(shm::Error::InvalidSize { .. })),
        row!("Channel::anonymous", "2^34 slots of u64 (128 GiB, more than memory)",
            Channel::<u64>::anonymous(1 << 34) => Err(shm::Error::InvalidSize { .. })),
        row!("Channel::new_memfd", "2^34 slots of u64 (128 GiB, more than memory)",
            Channel::<u64>::new_memfd(1 << 34) => Err(shm::Error::InvalidSize { .. })),
        row!("Mapping::anonymous", "2^40 bytes (more than memory)", Mapping::anonymous(1 << 40) => Err(shm::Error::InvalidSize { .. })),
        row!("Channel::anonymous", "a zero-sized message type", Channel::<()>::anonymous(4) => Err(shm::Error::InvalidSize { .. })),
        row!("Channel::create", "a name without '/'", Channel::<u64>::create("no-slash", 4) => Err(shm::Error::InvalidName { .. })),
        row!("Channel::create", "a name in use", { let n = name(); let _c = Channel::<u64>::create(&n, 4).unwrap(); }
            Channel::<u64>::create(&n, 4) => Err(shm::Error::AlreadyExists { .. })),
        row!("Channel::open", "a name nobody made", Channel::<u64>::open(&name()) => Err(shm::Error::NotFound { .. })),
        row!("Channel::open", "a channel of another message type", { let n = name(); let _c = Channel::<u32>::create(&n, 4).unwrap(); }
            Channel::<u64>::open(&n) => Err(shm::Error::LayoutMismatch { .. })),
        row!("Channel::open", "a byte channel", { let n = name(); let _c = ByteChannel::create(&n, 4096).unwrap(); }
            Channel::<u64>::open(&n) => Err(shm::Error::LayoutMismatch { .. })),
        row!("Channel::open", "a shared memory object of zeros", { let n = name(); let _s = PosixShm::create(&n, 65536, 0o600).unwrap(); }
            Channel::<u64>::open(&n) => Err(shm::Error::LayoutMismatch { .. })),
        row!("Channel::open", "mode 0600, caller nobody (without root: mode 000, caller the owner)", { let n = name(); let _c = Channel::<u64>::create(&n, 4).unwrap(); Refusal::here().apply_to_path(&shm_path(&n[1..])); }
            as nobody Channel::<u64>::open(&n) => Err(shm::Error::PermissionDenied { .. })),
        row!("Channel::from_handoff", "a memfd of zeros", { let m = Memfd::create("zeros", 65536).unwrap(); }
            Channel::<u64>::from_handoff(with_doorbells(m)) => Err(shm::Error::LayoutMismatch { .. })),
        row!("ByteChannel::from_handoff", "a slot channel's handoff",
            { let h = Channel::<u64>::new_memfd(4).unwrap().handoff().unwrap(); }
            ByteChannel::from_handoff(h) => Err(shm::Error::LayoutMismatch { .. })),
        row!("Handoff::from_fds", "a pipe's end as a doorbell",
            { let c = Channel::<u64>::new_memfd(4).unwrap(); let (m, [a, _]) = c.handoff().unwrap().into_fds(); let (r, _w) = ipc_kit::pipe::pipe().unwrap(); }
            Handoff::from_fds(m, [a, r.into()]) => Err(shm::Error::Io { .. })),
        row!("Handoff::from_fds", "a file as the memfd",
            { let c = Channel::<u64>::new_memfd(4).unwrap(); let (_, bells) = c.handoff().unwrap().into_fds(); let f = std::fs::File::open("/proc/self/stat").unwrap(); }
            Handoff::from_fds(f.into(), bells) => Err(shm::Error::NotSealed | shm::Error::Io { .. })),
        row!("Channel::create_or_reclaim", "a name a live process holds",
            { let n = name(); let _c = Channel::<u64>::create(&n, 4).unwrap(); }
            Channel::<u64>::create_or_reclaim(&n, 4) => Err(shm::Error::AlreadyExists { .. })),
        row!("Channel::create_or_reclaim", "a name holding something else",
            { let n = name(); let s = PosixShm::create(&n, 4096, 0o600).unwrap(); s.map().unwrap().write_bytes(0, b"data").unwrap(); }
            Channel::<u64>::create_or_reclaim(&n, 4) => Err(shm::Error::LayoutMismatch { .. })),
        row!("Channel::sender", "a side claimed before", { let c = Channel::<u64>::anonymous(4).unwrap(); let _tx = c.sender().unwrap(); }
            c.sender() => Err(shm::Error::AlreadyConnected { .. })),
        row!("Sender::try_send", "a full channel",
            { let c = Channel::<u64>::anonymous(2).unwrap(); let _rx = c.receiver().unwrap(); let mut tx = c.sender().unwrap();
              tx.send(1).unwrap(); tx.send(2).unwrap(); }
            tx.try_send(3) => Err(shm::Error::Full)),
        row!("Receiver::try_recv", "an empty channel",
            { let c = Channel::<u64>::anonymous(2).unwrap(); let _tx = c.sender().unwrap(); let mut rx = c.receiver().unwrap(); }
            rx.try_recv() => Err(shm::Error::Empty)),
        row!("Receiver::recv_timeout", "timeout 0, empty",
            { let c = Channel::<u64>::anonymous(2).unwrap(); let _tx = c.sender().unwrap(); let mut rx = c.receiver().unwrap(); }
            rx.recv_timeout(Duration::ZERO) => Err(shm::Error::Timeout)),
        row!("Receiver::recv_timeout", "timeout Duration::MAX, sent 20 ms later",
            { let c = Channel::<u64>::anonymous(2).unwrap(); let mut tx = c.sender().unwrap(); let mut rx = c.receiver().unwrap();
              let _s = later(move || tx.send(7).unwrap()); }
            rx.recv_timeout(Duration::MAX) => Ok(7)),
        row!("Receiver::recv_deadline", "a deadline 1 s ago, empty",
            { let c = Channel::<u64>::anonymous(2).unwrap(); let _tx = c.sender().unwrap(); let mut rx = c.receiver().unwrap(); }
            rx.recv_deadline(past()) => Err(shm::Error::Timeout)),
        row!("Receiver::recv", "a sender gone", { let c = Channel::<u64>::anonymous(2).unwrap(); drop(c.sender().unwrap()); let mut rx = c.receiver().unwrap(); }
            rx.recv() => Err(shm::Error::Disconnected)),
        row!("Sender::send", "a receiver gone", { let c = Channel::<u64>::anonymous(2).unwrap(); drop(c.receiver().unwrap()); let mut tx = c.sender().unwrap(); }
            tx.send(1) => Err(shm::Error::Disconnected)),
        row!("ByteChannel::anonymous", "capacity 0", ByteChannel::anonymous(0) => Err(shm::Error::InvalidSize { .. })),
        row!("ByteChannel::anonymous", "capacity 100 (not a power of two)", ByteChannel::anonymous(100) => Err(shm::Error::InvalidSize { .. })),
        row!("ByteChannel::anonymous", "capacity 32 (under 64)", ByteChannel::anonymous(32) => Err(shm::Error::InvalidSize { .. })),
        row!("ByteChannel::anonymous", "capacity 2^62", ByteChannel::anonymous(1 << 62) => Err(shm::Error::InvalidSize { .. })),
        row!("ByteChannel::open", "a channel of fixed-size messages", { let n = name(); let _c = Channel::<u64>::create(&n, 4).unwrap(); }
            ByteChannel::open(&n) => Err(shm::Error::LayoutMismatch { .. })),
        row!("ByteSender::send", "a record over max_record",
            { let c = ByteChannel::anonymous(4096).unwrap(); let _rx = c.receiver().unwrap(); let mut tx = c.sender().unwrap(); }
            tx.send(&vec![0; c.max_record() + 1]) => Err(shm::Error::RecordTooLarge { .. })),
        row!("ByteSender::reserve", "a record over max_record",
            { let c = ByteChannel::anonymous(4096).unwrap(); let _rx = c.receiver().unwrap(); let mut tx = c.sender().unwrap(); }
            tx.reserve(c.max_record() + 1).map(drop) => Err(shm::Error::RecordTooLarge { .. })),
        row!("ByteSender::try_send", "a full channel",
            { let c = ByteChannel::anonymous(4096).unwrap(); let _rx = c.receiver().unwrap(); let mut tx = c.sender().unwrap();
              while tx.try_send(&[0; 1000]).is_ok() {}; }
            tx.try_send(&[0; 1000]) => Err(shm::Error::Full)),
        row!("ByteReceiver::try_recv", "an empty channel",
            { let c = ByteChannel::anonymous(4096).unwrap(); let _tx = c.sender().unwrap(); let mut rx = c.receiver().unwrap(); }
            rx.try_recv(&mut Vec::new()) => Err(shm::Error::Empty)),
        row!("ByteReceiver::recv", "a sender gone",
            { let c = ByteChannel::anonymous(4096).unwrap(); drop(c.sender().unwrap()); let mut rx = c.receiver().unwrap(); }
            rx.recv(&mut Vec::new()) => Err(shm::Error::Disconnected)),
        row!("ByteReceiver::recv_timeout", "timeout 0, empty",
            { let c = ByteChannel::anonymous(4096).unwrap(); let _tx = c.sender().unwrap(); let mut rx = c.receiver().unwrap(); }
            rx.recv_timeout(&mut Vec::new(), Duration::ZERO) => Err(shm::Error::Timeout)),
        // ---- ipc-msgq
        row!("SysvQueue::create", "a key in use", { let _q = SysvQueue::create(key(8), 0o600).unwrap(); }
            SysvQueue::create(key(8), 0o600) => Err(msgq::Error::AlreadyExists { .. })),
        row!("SysvQueue::open", "a key nobody made", SysvQueue::open(key(9)) => Err(msgq::Error::NotFound { .. })),
        row!("SysvQueue::open", "mode 0600, caller nobody (without root: mode 000, caller the owner)", { let k = key(10); let q = SysvQueue::create(k, 0o600).unwrap(); Refusal::here().apply_to_sysv(SysvKind::Queue, q.id()); }
            as nobody SysvQueue::open(k) => Err(msgq::Error::PermissionDenied { .. })),
        row!("SysvQueue::open_id", "id -1", SysvQueue::open_id(-1) => Err(msgq::Error::NotFound { .. })),
        row!("SysvQueue::send", "type 0", { let q = SysvQueue::create(Key::private(), 0o600).unwrap(); }
            q.send(0, b"x") => Err(msgq::Error::InvalidType { .. })),
        row!("SysvQueue::send", "type -5", { let q = SysvQueue::create(Key::private(), 0o600).unwrap(); }
            q.send(-5, b"x") => Err(msgq::Error::InvalidType { .. })),
        row!("SysvQueue::send", "a message over msgmax", { let q = SysvQueue::create(Key::private(), 0o600).unwrap(); }
            q.send(1, &vec![0; msgq::sysv_max_message() + 1]) => Err(msgq::Error::MessageTooLarge { .. })),
        row!("SysvQueue::try_send", "a full queue",
            { let q = SysvQueue::create(Key::private(), 0o600).unwrap(); q.set_capacity(64).unwrap(); q.send(1, &[0; 64]).unwrap(); }
            q.try_send(1, &[0; 1]) => Err(msgq::Error::Full)),
        row!("SysvQueue::recv", "selector Exactly(0)", { let q = SysvQueue::create(Key::private(), 0o600).unwrap(); }
            q.recv(Selector::Exactly(0), &mut [0; 8]) => Err(msgq::Error::InvalidType { .. })),
        row!("SysvQueue::recv", "selector AtMost(-1)", { let q = SysvQueue::create(Key::private(), 0o600).unwrap(); }
            q.recv(Selector::AtMost(-1), &mut [0; 8]) => Err(msgq::Error::InvalidType { .. })),
        row!("SysvQueue::recv", "a buffer smaller than the message",
            { let q = SysvQueue::create(Key::private(), 0o600).unwrap(); q.send(1, &[0; 16]).unwrap(); }
            q.recv(Selector::Any, &mut [0; 8]) => Err(msgq::Error::BufferTooSmall { .. })),
        row!("SysvQueue::recv_pod", "a message shorter than T",
            { let q = SysvQueue::create(Key::private(), 0o600).unwrap(); q.send(1, &[0; 4]).unwrap(); }
            q.recv_pod::<u64>(Selector::Any) => Err(msgq::Error::WrongSize { .. })),
        row!("SysvQueue::recv_pod", "a message longer than T",
            { let q = SysvQueue::create(Key::private(), 0o600).unwrap(); q.send(1, &[0; 16]).unwrap(); }
            q.recv_pod::<u64>(Selector::Any) => Err(msgq::Error::BufferTooSmall { .. })),
        row!("SysvQueue::recv_truncating", "a buffer smaller than the message",
            { let q = SysvQueue::create(Key::private(), 0o600).unwrap(); q.send(2, &[0; 16]).unwrap(); }
            q.recv_truncating(Selector::Any, &mut [0; 8]) => Ok((2, 8))),
        row!("SysvQueue::try_recv", "an empty queue", { let q = SysvQueue::create(Key::private(), 0o600).unwrap(); }
            q.try_recv(Selector::Any, &mut [0; 8]) => Err(msgq::Error::Empty)),
        row!("SysvQueue::recv_timeout", "timeout 0, empty", { let q = SysvQueue::create(Key::private(), 0o600).unwrap(); }
            q.recv_timeout(Selector::Any, &mut [0; 8], Duration::ZERO) => Err(msgq::Error::Timeout)),
        row!("SysvQueue::recv_timeout", "timeout Duration::MAX, sent 20 ms later",
            { let q = SysvQueue::create(Key::private(), 0o600).unwrap(); let id = q.id();
              let _s = later(move || SysvQueue::open_id(id).unwrap().send(1, b"x").unwrap()); }
            q.recv_timeout(Selector::Any, &mut [0; 8], Duration::MAX) => Ok((1, 1))),
        row!("SysvQueue::recv_deadline", "a deadline 1 s ago, empty", { let q = SysvQueue::create(Key::private(), 0o600).unwrap(); }
            q.recv_deadline(Selector::Any, &mut [0; 8], past()) => Err(msgq::Error::Timeout)),
        row!("SysvQueue::recv", "the queue removed meanwhile",
            { let q = SysvQueue::create(Key::private(), 0o600).unwrap(); let id = q.id();
              let _r = later(move || SysvQueue::open_id(id).unwrap().remove().unwrap()); }
            q.recv(Selector::Any, &mut [0; 8]) => Err(msgq::Error::Removed { .. })),
        row!("SysvQueue::set_capacity", "over msgmnb (allowed with CAP_SYS_RESOURCE)", { let q = SysvQueue::create(Key::private(), 0o600).unwrap(); }
            q.set_capacity(1 << 30) => Err(msgq::Error::LimitExceeded { .. }), privileged => Ok(())),
        row!("PosixQueue::create", "a name without '/'",
            PosixQueue::create("no-slash", QueueAttr::default(), 0o600) => Err(msgq::Error::InvalidName { .. })),
        row!("PosixQueue::create", "a name with a second '/'",
            PosixQueue::create("/a/b", QueueAttr::default(), 0o600) => Err(msgq::Error::InvalidName { .. })),
        row!("PosixQueue::create", "the name \"/\"", PosixQueue::create("/", QueueAttr::default(), 0o600) => Err(msgq::Error::InvalidName { .. })),
        row!("PosixQueue::create", "a name of 300 bytes",
            PosixQueue::create(&long_name(), QueueAttr::default(), 0o600) => Err(msgq::Error::InvalidName { .. })),
        row!("PosixQueue::create", "a name with NUL",
            PosixQueue::create("/a\0b", QueueAttr::default(), 0o600) => Err(msgq::Error::InvalidName { .. })),
        row!("PosixQueue::create", "0 messages",
            PosixQueue::create(&name(), QueueAttr { max_messages: 0, message_size: 8 }, 0o600) => Err(msgq::Error::LimitExceeded { .. })),
        row!("PosixQueue::create", "message size 0",
            PosixQueue::create(&name(), QueueAttr { max_messages: 1, message_size: 0 }, 0o600) => Err(msgq::Error::LimitExceeded { .. })),
        row!("PosixQueue::create", "1000 messages (over msg_max; allowed with CAP_SYS_RESOURCE)", {}
            PosixQueue::create(&name(), QueueAttr { max_messages: 1000, message_size: 8 }, 0o600) => Err(msgq::Error::LimitExceeded { .. }),
            privileged => Ok(_)),
        row!("PosixQueue::create", "100000 messages (over msg_max and the kernel's 65536)",
            PosixQueue::create(&name(), QueueAttr { max_messages: 100_000, message_size: 8 }, 0o600) => Err(msgq::Error::LimitExceeded { .. })),
        row!("PosixQueue::create", "message size 32 MiB (over msgsize_max and the kernel's 16 MiB)",
            PosixQueue::create(&name(), QueueAttr { max_messages: 1, message_size: 32 << 20 }, 0o600) => Err(msgq::Error::LimitExceeded { .. })),
        row!("PosixQueue::create", "a name in use", { let n = name(); let _q = PosixQueue::create(&n, QueueAttr::default(), 0o600).unwrap(); }
            PosixQueue::create(&n, QueueAttr::default(), 0o600) => Err(msgq::Error::AlreadyExists { .. })),
        row!("PosixQueue::open", "a name nobody made", PosixQueue::open(&name()) => Err(msgq::Error::NotFound { .. })),
        row!("PosixQueue::open", "mode 0600, caller nobody (without root: mode 000, caller the owner)",
            { let n = name(); let q = PosixQueue::create(&n, QueueAttr::default(), 0o600).unwrap(); Refusal::here().apply_to_fd(&q); }
            as nobody PosixQueue::open(&n) => Err(msgq::Error::PermissionDenied { .. })),
        row!("PosixQueue::send", "a message over message_size", { let q = small_posix_queue(); }
            q.send(&[0; 33], 0) => Err(msgq::Error::MessageTooLarge { .. })),
        row!("PosixQueue::send", "priority 32768 (MQ_PRIO_MAX)", { let q = small_posix_queue(); }
            q.send(b"x", 32768) => Err(msgq::Error::LimitExceeded { .. })),
        row!("PosixQueue::send_pod", "a T over message_size", { let q = small_posix_queue(); }
            q.send_pod(&[0u8; 64], 0) => Err(msgq::Error::MessageTooLarge { .. })),
        row!("PosixQueue::recv_pod", "a message of another length", { let q = small_posix_queue(); q.send(&[0; 4], 0).unwrap(); }
            q.recv_pod::<u64>() => Err(msgq::Error::WrongSize { .. })),
        row!("PosixQueue::unlink", "a name unlinked already", { let mut q = small_posix_queue(); q.unlink().unwrap(); }
            q.unlink() => Err(msgq::Error::NotFound { .. })),
        row!("PosixQueue::try_send", "a full queue", { let q = small_posix_queue(); q.send(b"x", 0).unwrap(); q.send(b"x", 0).unwrap(); }
            q.try_send(b"x", 0) => Err(msgq::Error::Full)),
        row!("PosixQueue::recv", "a buffer under message_size", { let q = small_posix_queue(); }
            q.recv(&mut [0; 31]) => Err(msgq::Error::BufferTooSmall { .. })),
        row!("PosixQueue::try_recv", "an empty queue", { let q = small_posix_queue(); }
            q.try_recv(&mut [0; 32]) => Err(msgq::Error::Empty)),
        row!("PosixQueue::recv_timeout", "timeout 0, empty", { let q = small_posix_queue(); }
            q.recv_timeout(&mut [0; 32], Duration::ZERO) => Err(msgq::Error::Timeout)),
        row!("PosixQueue::recv_deadline", "a deadline 1 s ago, empty", { let q = small_posix_queue(); }
            q.recv_deadline(&mut [0; 32], past()) => Err(msgq::Error::Timeout)),
        row!("PosixQueue::recv_timeout", "timeout Duration::MAX, sent 20 ms later",
            { let q = small_posix_queue(); let n = q.name().to_owned();
              let _s = later(move || PosixQueue::open(&n).unwrap().send(b"x", 3).unwrap()); }
            q.recv_timeout(&mut [0; 32], Duration::MAX) => Ok((1, 3))),
        // ---- ipc-pipe
        row!("PipeWriter::set_capacity", "2 MiB (over pipe-max-size; allowed with CAP_SYS_RESOURCE)", { let (_r, w) = pipe::pipe().unwrap(); }
            w.set_capacity(2 << 20) => Err(pipe::Error::CapacityRefused { .. }), privileged => Ok(2097152)),
        row!("PipeWriter::set_capacity", "usize::MAX", { let (_r, w) = pipe::pipe().unwrap(); }
            w.set_capacity(usize::MAX) => Err(pipe::Error::CapacityRefused { .. })),
        row!("PipeWriter::set_capacity", "under what the pipe holds", { let (_r, w) = pipe::pipe().unwrap(); w.try_write(&[0; 8192]).unwrap(); }
            w.set_capacity(4096) => Err(pipe::Error::CapacityBelowContents { .. })),
        row!("PipeWriter::set_capacity", "0 (rounded up to a page)", { let (_r, w) = pipe::pipe().unwrap(); }
            w.set_capacity(0) => Ok(4096)),
        row!("PipeWriter::write_atomic", "PIPE_BUF + 1 bytes", { let (_r, w) = pipe::pipe().unwrap(); }
            w.write_atomic(&[0; PIPE_BUF + 1]) => Err(pipe::Error::MessageTooLarge { .. })),
        row!("PipeWriter::write_atomic", "the reader gone", { let (r, w) = pipe::pipe().unwrap(); drop(r); let _g = pipe::SigpipeGuard::new(); }
            w.write_atomic(b"x") => Err(pipe::Error::BrokenPipe)),
        row!("PipeReader::try_read", "an empty pipe", { let (r, _w) = pipe::pipe().unwrap(); }
            r.try_read(&mut [0; 8]) => Err(pipe::Error::WouldBlock)),
        row!("PipeReader::read_timeout", "timeout 0, empty", { let (r, _w) = pipe::pipe().unwrap(); }
            r.read_timeout(&mut [0; 8], Duration::ZERO) => Err(pipe::Error::Timeout)),
        row!("PipeReader::read_deadline", "a deadline 1 s ago, empty", { let (r, _w) = pipe::pipe().unwrap(); }
            r.read_deadline(&mut [0; 8], past()) => Err(pipe::Error::Timeout)),
        row!("PipeReader::read_timeout", "timeout Duration::MAX, written 20 ms later",
            { let (r, w) = pipe::pipe().unwrap(); let _s = later(move || w.write_atomic(b"x").unwrap()); }
            r.read_timeout(&mut [0; 8], Duration::MAX) => Ok(1)),
        row!("FrameWriter::send", "a body over the maximum frame", { let (_r, w) = pipe::pipe().unwrap(); let mut fw = FrameWriter::with_max(w, 16); }
            fw.send(&[0; 17]) => Err(pipe::Error::FrameTooLarge { .. })),
        row!("FrameWriter::with_max", "maximum 0, a 1-byte body", { let (_r, w) = pipe::pipe().unwrap(); let mut fw = FrameWriter::with_max(w, 0); }
            fw.send(b"x") => Err(pipe::Error::FrameTooLarge { .. })),
        row!("FrameWriter::send", "the reader gone", { let (r, w) = pipe::pipe().unwrap(); drop(r); let mut fw = FrameWriter::new(w); }
            fw.send(b"x") => Err(pipe::Error::BrokenPipe)),
        row!("FrameReader::recv", "a header claiming 4 GiB − 1 bytes", { let mut fr = frame_reader_fed(&u32::MAX.to_le_bytes()); }
            fr.recv(&mut Vec::new()) => Err(pipe::Error::FrameTooLarge { .. })),
        row!("FrameReader::recv", "the writer gone mid-frame", { let mut fr = frame_reader_fed(&[16, 0, 0, 0, 1, 2]); }
            fr.recv(&mut Vec::new()) => Err(pipe::Error::TruncatedFrame { .. })),
        row!("FrameReader::recv_timeout", "timeout 0, empty", { let (r, _w) = pipe::pipe().unwrap(); let mut fr = FrameReader::new(r); }
            fr.recv_timeout(&mut Vec::new(), Duration::ZERO) => Err(pipe::Error::Timeout)),
        row!("PipeSender::try_send", "PipeSender::MAX_TIMED + 1 bytes", { let (_r, w) = pipe::pipe().unwrap(); let mut tx = PipeSender::new(w); }
            tx.try_send(&[0; PipeSender::MAX_TIMED + 1]) => Err(ipc_kit::traits::Error::TooLarge { .. })),
        row!("PipeSender::send_timeout", "PipeSender::MAX_TIMED + 1 bytes", { let (_r, w) = pipe::pipe().unwrap(); let mut tx = PipeSender::new(w); }
            tx.send_timeout(&[0; PipeSender::MAX_TIMED + 1], WAIT) => Err(ipc_kit::traits::Error::TooLarge { .. })),
        row!("PipeSender::send", "DEFAULT_MAX_FRAME + 1 bytes (over what the receiver takes)",
            { let (_r, w) = pipe::pipe().unwrap(); let mut tx = PipeSender::new(w); }
            tx.send(&vec![0; pipe::DEFAULT_MAX_FRAME + 1]) => Err(ipc_kit::traits::Error::TooLarge { .. })),
        row!("ChildFds::insert", "fd 1 (a standard stream)", { let (r, _w) = pipe::pipe().unwrap(); }
            ChildFds::new().insert(1, r) => Err(pipe::Error::InvalidChildFd { .. })),
        row!("ChildFds::insert", "fd i32::MAX (over RLIMIT_NOFILE)", { let (r, _w) = pipe::pipe().unwrap(); }
            ChildFds::new().insert(i32::MAX, r) => Err(pipe::Error::InvalidChildFd { .. })),
        row!("ChildFds::insert", "fd -1", { let (r, _w) = pipe::pipe().unwrap(); }
            ChildFds::new().insert(-1, r) => Err(pipe::Error::InvalidChildFd { .. })),
        row!("ChildFds::insert", "a number given twice", { let (r, w) = pipe::pipe().unwrap(); let mut fds = ChildFds::new(); fds.insert(5, r).unwrap(); }
            fds.insert(5, w) => Err(pipe::Error::InvalidChildFd { .. })),
        // ---- ipc-fifo
        row!("Fifo::create", "a path in use", { let d = ScratchDir::new(); let p = d.path().join("f"); fs::write(&p, b"").unwrap(); }
            Fifo::create(&p, 0o600) => Err(fifo::Error::AlreadyExists { .. })),
        row!("Fifo::create", "a path with NUL", Fifo::create("/tmp/a\0b", 0o600) => Err(fifo::Error::InvalidPath { .. })),
        row!("Fifo::create", "an empty path", Fifo::create("", 0o600) => Err(fifo::Error::InvalidPath { .. })),
        row!("Fifo::create", "a path of 5000 bytes", Fifo::create(format!("/tmp/{}", "p".repeat(5000)), 0o600) => Err(fifo::Error::InvalidPath { .. })),
        row!("Fifo::create", "a missing directory", Fifo::create("/nonexistent/ipc-kit/f", 0o600) => Err(fifo::Error::NotFound { .. })),
        row!("Fifo::open", "a path nobody made", { let d = ScratchDir::new(); }
            Fifo::open(d.path().join("f")) => Err(fifo::Error::NotFound { .. })),
        row!("Fifo::open", "a regular file", { let d = ScratchDir::new(); let p = d.path().join("f"); fs::write(&p, b"").unwrap(); }
            Fifo::open(&p) => Err(fifo::Error::NotAFifo { .. })),
        row!("Fifo::open", "a directory", { let d = ScratchDir::new(); }
            Fifo::open(d.path()) => Err(fifo::Error::NotAFifo { .. })),
        row!("Fifo::open_writer", "mode 0600, caller nobody (without root: mode 000, caller the owner)",
            { let d = ScratchDir::new(); let f = Fifo::create(d.path().join("f"), 0o600).unwrap(); let _r = f.try_open_reader().unwrap(); Refusal::here().apply_to_path(f.path()); }
            as nobody f.open_writer() => Err(fifo::Error::PermissionDenied { .. })),
        row!("Fifo::try_open_writer", "no reader", { let d = ScratchDir::new(); let f = Fifo::create(d.path().join("f"), 0o600).unwrap(); }
            f.try_open_writer() => Err(fifo::Error::NoReader { .. })),
        row!("Fifo::open_reader_timeout", "timeout 0, no writer", { let d = ScratchDir::new(); let f = Fifo::create(d.path().join("f"), 0o600).unwrap(); }
            f.open_reader_timeout(Duration::ZERO) => Err(fifo::Error::Timeout { .. })),
        row!("Fifo::open_reader_deadline", "a deadline 1 s ago, no writer",
            { let d = ScratchDir::new(); let f = Fifo::create(d.path().join("f"), 0o600).unwrap(); }
            f.open_reader_deadline(past()) => Err(fifo::Error::Timeout { .. })),
        row!("Fifo::open_writer_timeout", "timeout Duration::MAX, reader 20 ms later",
            { let d = ScratchDir::new(); let p = d.path().join("f"); let f = Fifo::create(&p, 0o600).unwrap();
              let _r = later(move || { let r = Fifo::open(&p).unwrap().open_reader().unwrap(); thread::sleep(WAIT); drop(r); }); }
            f.open_writer_timeout(Duration::MAX) => Ok(_)),
        row!("Fifo::unlink", "a FIFO removed by someone else",
            { let d = ScratchDir::new(); let p = d.path().join("f"); let mut f = Fifo::create(&p, 0o600).unwrap(); fs::remove_file(&p).unwrap(); }
            f.unlink() => Err(fifo::Error::NotFound { .. })),
        row!("Fifo::unlink", "a regular file in its place",
            { let d = ScratchDir::new(); let p = d.path().join("f"); let mut f = Fifo::create(&p, 0o600).unwrap(); fs::remove_file(&p).unwrap(); fs::write(&p, b"").unwrap(); }
            f.unlink() => Err(fifo::Error::NotAFifo { .. })),
        row!("Fifo::create_replacing", "a FIFO a reader has open",
            { let d = ScratchDir::new(); let f = Fifo::create(d.path().join("f"), 0o600).unwrap(); let _r = f.try_open_reader().unwrap(); }
            Fifo::create_replacing(f.path(), 0o600) => Err(fifo::Error::InUse { .. })),
        row!("Fifo::open", "a Unix socket", { let d = ScratchDir::new(); let p = d.path().join("f"); let _l = std::os::unix::net::UnixListener::bind(&p).unwrap(); }
            Fifo::open(&p) => Err(fifo::Error::NotAFifo { .. })),
        row!("FifoServer::create_replacing", "a live server's path",
            { let d = ScratchDir::new(); let p = d.path().join("s"); let _s = FifoServer::create(&p, 0o600).unwrap(); }
            FifoServer::create_replacing(&p, 0o600) => Err(fifo::Error::InUse { .. })),
        row!("FifoServer::create", "a path in use", { let d = ScratchDir::new(); let p = d.path().join("s"); let _s = FifoServer::create(&p, 0o600).unwrap(); }
            FifoServer::create(&p, 0o600) => Err(fifo::Error::AlreadyExists { .. })),
        row!("FifoClient::connect", "no server there", { let d = ScratchDir::new(); }
            FifoClient::connect(d.path().join("s")) => Err(fifo::Error::NotFound { .. })),
        row!("FifoClient::connect", "a server FIFO without a reader",
            { let d = ScratchDir::new(); let p = d.path().join("s"); let _f = Fifo::create(&p, 0o600).unwrap(); }
            FifoClient::connect(&p) => Err(fifo::Error::ServerGone { .. })),
        row!("FifoServer::recv_timeout", "timeout 0, no request",
            { let d = ScratchDir::new(); let mut s = FifoServer::create(d.path().join("s"), 0o600).unwrap(); }
            s.recv_timeout(Duration::ZERO) => Err(fifo::Error::Timeout { .. })),
        row!("FifoClient::request_timeout", "timeout 0, the server not answering",
            { let d = ScratchDir::new(); let p = d.path().join("s"); let _s = FifoServer::create(&p, 0o600).unwrap();
              let mut c = FifoClient::connect(&p).unwrap(); }
            c.request_timeout(b"x", Duration::ZERO) => Err(fifo::Error::Timeout { .. })),
        row!("FifoClient::request", "a payload over max_request",
            { let d = ScratchDir::new(); let p = d.path().join("s"); let _s = FifoServer::create(&p, 0o600).unwrap();
              let mut c = FifoClient::connect(&p).unwrap(); }
            c.request(&vec![0; c.max_request() + 1]) => Err(fifo::Error::RequestTooLarge { .. })),
    ]
}

fn unsealed_memfd() -> OwnedFd {
    let fd = nix::sys::memfd::memfd_create(c"ipc-kit-unsealed", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
    nix::unistd::ftruncate(&fd, 4096).unwrap();
    fd
}

fn read_only_mapping() -> Mapping {
    let n = name();
    let mut shm = PosixShm::create(&n, 4096, 0o600).unwrap();
    let ro = PosixShm::open_read_only(&n).unwrap().map().unwrap();
    shm.unlink().unwrap();
    ro
}

fn small_posix_queue() -> PosixQueue {
    PosixQueue::create(&name(), QueueAttr { max_messages: 2, message_size: 32 }, 0o600).unwrap()
}

/// A frame reader on a pipe that holds `bytes` and whose writer is gone.
fn frame_reader_fed(bytes: &[u8]) -> FrameReader<PipeReader> {
    let (r, w): (PipeReader, PipeWriter) = pipe::pipe().unwrap();
    w.write_atomic(bytes).unwrap();
    drop(w);
    FrameReader::new(r)
}

fn every_row_gets_its_documented_result() {
    let rows = rows();
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let got = match std::panic::catch_unwind(row.check) {
                Ok(result) => result.err()?,
                Err(_) => "its setup panicked (the message is above)".to_owned(),
            };
            Some(format!("{} with {}: expected {}, {got}", row.api, row.input, row.expect))
        })
        .collect();
    assert!(failures.is_empty(), "{} of {} rows failed:\n{}", failures.len(), rows.len(), failures.join("\n"));
}

const BEGIN: &str = "<!-- bad-input:begin -->";
const END: &str = "<!-- bad-input:end -->";

/// The table of docs/reliability.md these rows make.
fn table(rows: &[Row]) -> String {
    let mut out = String::from("| Call | Bad input | Result |\n|---|---|---|\n");
    for row in rows {
        let expect = row.expect.replace(" { .. }", "");
        let expect = match expect.strip_prefix("Err(").and_then(|e| e.strip_suffix(')')) {
            Some(err) => format!("`{err}`"),
            None => format!("`{expect}`"),
        };
        out += &format!("| `{}` | {} | {expect} |\n", row.api, row.input);
    }
    out
}

fn the_documented_table_is_these_rows() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reliability.md");
    let doc = fs::read_to_string(&doc_path).unwrap();
    let (Some(begin), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/reliability.md lacks the {BEGIN} … {END} markers");
    };
    let start = begin + BEGIN.len() + 1;
    let want = table(&rows());
    if doc[start..end] != want {
        if std::env::var_os("IPC_KIT_BLESS").is_some() {
            fs::write(&doc_path, format!("{}{want}{}", &doc[..start], &doc[end..])).unwrap();
            return;
        }
        panic!("the table in docs/reliability.md differs from these rows; rerun with IPC_KIT_BLESS=1");
    }
}
