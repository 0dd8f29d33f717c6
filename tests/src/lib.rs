//! The harness of ipc-kit's cross-process test suite.
//!
//! Every case runs in a process of its own, forked from the single-threaded
//! runner, under a watchdog that kills it (and everything it started) when
//! it overruns. Cases fork further children with [`fork`] and exec real
//! programs; the runner reaps whatever they leave behind.
#![deny(unsafe_code)]

pub mod record;
mod runner;
mod sys;

use std::fmt;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

pub use runner::main;
pub use sys::SysvKind;

/// One test case: a function run in a forked process. It fails by
/// panicking.
#[derive(Clone, Copy)]
pub struct Case {
    /// `mechanism::what`, such as `pipe::parent_to_child`.
    pub name: &'static str,
    /// The test.
    pub run: fn(),
    /// How long the case may run before the watchdog kills it.
    pub timeout: Duration,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case").field("name", &self.name).field("timeout", &self.timeout).finish()
    }
}

/// A program the suite execs: the test binary itself, started with
/// `--helper NAME ARGS...`, runs `run(ARGS)` and exits with 0 when it
/// returns, 101 when it panics. Cases use it to play an unrelated process
/// that knows only what its arguments tell it.
#[derive(Clone, Copy)]
pub struct Helper {
    /// The name after `--helper`.
    pub name: &'static str,
    /// What it does.
    pub run: fn(&[String]),
}

impl fmt::Debug for Helper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Helper").field("name", &self.name).finish()
    }
}

/// A command that runs helper `name` of this test binary with `args`, as
/// a separate program (fork and exec).
///
/// # Panics
///
/// When the test binary's path is unknown.
pub fn helper_command(name: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("the test binary's path"));
    cmd.arg("--helper").arg(name).args(args);
    cmd
}

/// The watchdog's limit for a case that does not set its own.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Declares `CASES`, the cases of one module, named `prefix::function`;
/// `function(N s)` gives a case a watchdog of N seconds. A module whose
/// cases exec helpers of the test binary ([`helper_command`]) names them
/// first, `"prefix", helpers ["name" => function, ...]:`, which declares
/// `HELPERS` too.
#[macro_export]
macro_rules! cases {
    (
        $prefix:literal $(, helpers [$($helper:literal => $run:ident),+ $(,)?])?:
        $($f:ident $(($secs:literal s))?),* $(,)?
    ) => {
        pub(crate) const CASES: &[$crate::Case] = &[
            $($crate::Case {
                name: concat!($prefix, "::", stringify!($f)),
                run: $f,
                timeout: $crate::case_timeout(&[$($secs)?]),
            }),*
        ];
        $(pub(crate) const HELPERS: &[$crate::Helper] = &[$($crate::Helper { name: $helper, run: $run }),+];)?
    };
}

/// A case's watchdog: [`DEFAULT_TIMEOUT`], or the seconds the case's entry
/// in [`cases!`] gives (`name(120 s)`) for a case that runs a long program.
pub const fn case_timeout(secs: &[u64]) -> Duration {
    match secs {
        [s] => Duration::from_secs(*s),
        _ => DEFAULT_TIMEOUT,
    }
}

/// How a forked child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signaled(Signal),
}

/// A forked child process. Dropping it kills and reaps the child if it is
/// still there.
#[derive(Debug)]
pub struct Forked {
    pid: Pid,
    pidfd: OwnedFd,
    exit: Option<Exit>,
}

/// Runs `child` in a forked process, which exits with 0 when `child`
/// returns and 101 when it panics (the panic message goes to the case's
/// output).
///
/// The child has copies of every fd of the caller; the values `child`
/// captures by move are dropped in the parent, but values the parent keeps
/// stay open in the child unless it closes them with [`close_inherited`].
///
/// # Panics
///
/// When fork fails.
pub fn fork(child: impl FnOnce()) -> Forked {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    match sys::fork().expect("fork") {
        ForkResult::Child => {
            let ok = catch_unwind(AssertUnwindSafe(child)).is_ok();
            let _ = std::io::stdout().flush();
            sys::exit_now(if ok { 0 } else { 101 });
        }
        ForkResult::Parent { child } => {
            let pidfd = sys::pidfd_open(child).expect("pidfd_open");
            Forked { pid: child, pidfd, exit: None }
        }
    }
}

/// Runs `child` as process 1 of a new PID namespace: a forked go-between
/// calls `unshare(CLONE_NEWPID)` and forks it, then waits for it. Returns
/// the go-between and the child's pid as this process sees it (to signal
/// it), or `None` when this process may not make a PID namespace (it needs
/// root).
///
/// # Panics
///
/// When a fork or the pipe fails.
pub fn fork_in_new_pid_namespace(child: impl FnOnce()) -> Option<(Forked, Pid)> {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    let read_fd = std::os::fd::AsRawFd::as_raw_fd(&read);
    let write_ref = &write;
    let mut between = fork(move || {
        close_inherited(read_fd);
        let inner = match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID) {
            Ok(()) => Some(fork(child)),
            Err(_) => None,
        };
        let pid = inner.as_ref().map_or(0, |f| f.pid().as_raw());
        nix::unistd::write(write_ref, &pid.to_le_bytes()).expect("report the pid");
        // Passes on how the child ended: 0 only if it exited with 0.
        if inner.is_some_and(|mut inner| inner.wait() != Exit::Code(0)) {
            std::process::exit(1);
        }
    });
    drop(write);
    let mut pid = [0u8; 4];
    let n = nix::unistd::read(&read, &mut pid).expect("read the pid");
    let pid = i32::from_le_bytes(pid);
    if n != 4 || pid == 0 {
        let _ = between.wait();
        return None;
    }
    Some((between, Pid::from_raw(pid)))
}

/// Gives this process a mount namespace of its own, with every mount made
/// private, so that what it mounts or unmounts touches no other process.
/// `false` (and nothing changed) without root; `what` is printed then, as
/// the reason the case is passed over.
///
/// # Panics
///
/// When root cannot make the namespace.
pub fn private_mount_namespace(what: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: {what} needs root");
        return false;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
    let private = nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE;
    nix::mount::mount(None::<&str>, "/", None::<&str>, private, None::<&str>).expect("make every mount private");
    true
}

/// In a forked child: closes this process's copy of an fd the parent keeps
/// (say, the other end of a pipe), so that end of file and broken pipes
/// behave as if the child never had it.
pub fn close_inherited(fd: RawFd) {
    sys::close_raw(fd);
}

/// Sets `SIGPIPE` back to its default action (the process dies of it), as
/// in a C program.
pub fn set_sigpipe_default() {
    sys::set_sigpipe_default();
}

/// Makes `sig` interrupt blocking system calls (`EINTR`): a handler that
/// does nothing, installed without `SA_RESTART`.
pub fn interrupt_on(sig: Signal) {
    sys::interrupt_on(sig as i32);
}

/// Whether `sig` is pending.
pub fn is_pending(sig: Signal) -> bool {
    sys::is_pending(sig as i32)
}

/// Drops root: this process becomes the unprivileged user `nobody`
/// (uid and gid 65534), for cases that need a peer without privileges.
/// When the suite already runs as a user other than root, nothing
/// changes: the process has no privileges to drop, and no right to change
/// its ids (a case that needs another user asks [`Refusal`]).
///
/// # Panics
///
/// When root cannot change the ids.
pub fn become_nobody() {
    if !nix::unistd::geteuid().is_root() {
        return; // unprivileged already
    }
    nix::unistd::setgroups(&[]).expect("setgroups");
    nix::unistd::setgid(nix::unistd::Gid::from_raw(65534)).expect("setgid nobody");
    nix::unistd::setuid(nix::unistd::Uid::from_raw(65534)).expect("setuid nobody");
}

/// The `ipc-kit` binary next to this test binary (`cargo xtask test`
/// builds it first), or where `IPC_KIT_BIN` says.
///
/// # Panics
///
/// When it is not there.
pub fn ipc_kit_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("IPC_KIT_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target/debug/deps").join("ipc-kit");
    assert!(path.exists(), "{} is missing: build it with cargo build -p ipc-kit-cli", path.display());
    path
}

/// Whether this process has `CAP_SYS_RESOURCE`, with which the kernel
/// lets it go past msgmnb, the mqueue msg_max and msgsize_max, and
/// pipe-max-size (read from `CapEff` in /proc/self/status).
pub fn may_exceed_resource_limits() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim().to_owned();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// How a permission case gets a caller that an object refuses.
///
/// As root, the object keeps the mode it was made with (0600) and the
/// caller is a child that has become `nobody`, another user. Without root
/// there is no other user to become; then every permission bit is taken
/// off the object after it is made, which refuses its own owner too
/// (only `CAP_DAC_OVERRIDE` and `CAP_IPC_OWNER` pass mode 000, and only
/// root has them), and the caller is a child of the same user.
#[derive(Clone, Copy, Debug)]
pub enum Refusal {
    /// Mode 0600, caller `nobody`.
    OtherUser,
    /// Mode 000, caller the owner.
    NoPermissionBits,
}

impl Refusal {
    /// The one that this process's privileges allow.
    pub fn here() -> Refusal {
        if nix::unistd::geteuid().is_root() { Refusal::OtherUser } else { Refusal::NoPermissionBits }
    }

    /// Takes every permission bit off the file at `path` (a FIFO, or a
    /// /dev/shm entry), when that is how callers are refused.
    ///
    /// # Panics
    ///
    /// When the mode cannot be changed.
    pub fn apply_to_path(self, path: &Path) {
        if let Refusal::NoPermissionBits = self {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).expect("chmod 000");
        }
    }

    /// As [`apply_to_path`](Self::apply_to_path), for the object behind
    /// `fd` (a POSIX queue's descriptor).
    ///
    /// # Panics
    ///
    /// When the mode cannot be changed.
    pub fn apply_to_fd(self, fd: impl AsFd) {
        if let Refusal::NoPermissionBits = self {
            nix::sys::stat::fchmod(fd.as_fd(), nix::sys::stat::Mode::empty()).expect("fchmod 000");
        }
    }

    /// As [`apply_to_path`](Self::apply_to_path), for a System V object.
    ///
    /// # Panics
    ///
    /// When the mode cannot be changed.
    pub fn apply_to_sysv(self, kind: SysvKind, id: i32) {
        if let Refusal::NoPermissionBits = self {
            sys::sysv_set_mode(kind, id, 0).expect("IPC_SET mode 000");
        }
    }

    /// In the forked caller: becomes the caller the object refuses.
    pub fn become_caller(self) {
        if let Refusal::OtherUser = self {
            become_nobody();
        }
    }
}

/// `len` pseudo-random bytes that depend only on `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A small seeded random number generator (xorshift64*), for the stress,
/// fault and fuzz programs: a seed repeats a run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 for 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True one time in `n`.
    pub fn chance(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// A 64-bit FNV-1a checksum.
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

impl Forked {
    /// The child's pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Sends `sig` to the child.
    pub fn signal(&self, sig: Signal) {
        if self.exit.is_none() {
            let _ = kill(self.pid, sig);
        }
    }

    /// Kills the child with SIGKILL.
    pub fn kill(&self) {
        self.signal(Signal::SIGKILL);
    }

    /// Waits at most `timeout` for the child to end.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Exit> {
        if let Some(exit) = self.exit {
            return Some(exit);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = u16::try_from(left.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.pidfd.as_fd(), PollFlags::POLLIN)];
            let ready = poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0);
            if ready > 0 {
                return Some(self.reap(true));
            }
            if Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// Waits for the child to end.
    pub fn wait(&mut self) -> Exit {
        match self.exit {
            Some(exit) => exit,
            None => self.reap(false),
        }
    }

    /// Waits at most 20 s for the child and panics unless it exited with 0.
    pub fn join(mut self) {
        match self.wait_timeout(Duration::from_secs(20)) {
            Some(Exit::Code(0)) => {}
            Some(other) => panic!("child {} ended with {other:?}", self.pid),
            None => panic!("child {} still running after 20 s", self.pid),
        }
    }

    fn reap(&mut self, ready: bool) -> Exit {
        let flags = if ready { None } else { Some(WaitPidFlag::empty()) };
        let exit = loop {
            match waitpid(self.pid, flags) {
                Ok(WaitStatus::Exited(_, code)) => break Exit::Code(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => break Exit::Signaled(sig),
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => panic!("waitpid({}): {e}", self.pid),
            }
        };
        self.exit = Some(exit);
        exit
    }
}

impl Drop for Forked {
    fn drop(&mut self) {
        if self.exit.is_none() {
            self.kill();
            let _ = waitpid(self.pid, None);
        }
    }
}

/// A name no other case, run or process uses: `prefix-pid-counter`.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A fresh directory for one case's files, removed with everything in it
/// when dropped.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates it under the system's temporary directory.
    ///
    /// # Panics
    ///
    /// When the directory cannot be created.
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(unique_name("ipc-kit-test"));
        std::fs::create_dir(&dir).expect("create scratch dir");
        ScratchDir(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for ScratchDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How late a timeout may fire, for [`assert_fired_within`]: generous, as
/// the machine may be busy.
pub const SLACK: Duration = Duration::from_secs(1);

/// CPU time (user and system) the calling thread has used.
///
/// # Panics
///
/// When `getrusage` fails.
#[must_use]
pub fn thread_cpu() -> Duration {
    cpu_time(nix::sys::resource::UsageWho::RUSAGE_THREAD)
}

/// CPU time (user and system) the whole process has used.
///
/// # Panics
///
/// When `getrusage` fails.
#[must_use]
pub fn process_cpu() -> Duration {
    cpu_time(nix::sys::resource::UsageWho::RUSAGE_SELF)
}

fn cpu_time(who: nix::sys::resource::UsageWho) -> Duration {
    let usage = nix::sys::resource::getrusage(who).expect("getrusage");
    let time = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    time(usage.user_time()) + time(usage.system_time())
}

/// Asserts that `elapsed` is at least `timeout` and at most `timeout +
/// slack`: a timeout must never fire early, and must fire.
///
/// # Panics
///
/// When it is outside those bounds.
pub fn assert_fired_within(elapsed: Duration, timeout: Duration, slack: Duration) {
    assert!(elapsed >= timeout, "fired early: after {elapsed:?}, asked for {timeout:?}");
    assert!(elapsed <= timeout + slack, "fired late: after {elapsed:?}, asked for {timeout:?} (+{slack:?} allowed)");
}

/// Reads a page of a raw mapping (made here with `mmap`, not through
/// ipc-kit) of a file that was shrunk to nothing: the access raises
/// `SIGBUS`, which must kill the process, whatever handler ipc-kit
/// installed for its own mappings. Returns only if it did not.
///
/// # Errors
///
/// When the file cannot be made or mapped.
pub fn read_past_end_of_raw_shrunk_file() -> std::io::Result<u8> {
    sys::read_past_end_of_shrunk_file()
}

/// A current-thread tokio runtime with I/O and time, for one process of a
/// case.
///
/// # Panics
///
/// When the runtime cannot be made.
pub fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
}

/// The threads of this process (`/proc/self/task`).
///
/// # Panics
///
/// When /proc cannot be read.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").expect("/proc/self/task").count()
}

/// `memfd` handed over as a channel's memory, with two fresh doorbells:
/// what a peer that made (or forged) the memfd hands to a process that
/// opens it (`from_handoff`).
pub fn with_doorbells(memfd: ipc_kit::shm::Memfd) -> ipc_kit::shm::channel::Handoff {
    let bell = || ipc_kit::sync::EventFd::new(1, ipc_kit::sync::EventFdMode::Counter).expect("eventfd");
    ipc_kit::shm::channel::Handoff { memfd, doorbells: [bell(), bell()] }
}

/// Fd `n`, handed to this helper program at that number by the case that
/// started it (ipc-pipe's `ChildFds`), taken as owned. Call once per number.
///
/// # Panics
///
/// When nothing is open at `n`.
pub fn inherited_fd(n: RawFd) -> OwnedFd {
    sys::adopt_inherited(n).unwrap_or_else(|e| panic!("fd {n} was not handed over: {e}"))
}

/// A duplicate of `fd` (close-on-exec) at the lowest free number from `n`
/// up (`F_DUPFD_CLOEXEC`): in a forked child, to put a file at a number it
/// just closed.
///
/// # Panics
///
/// When out of file descriptors.
pub fn dup_at_least(fd: std::os::fd::BorrowedFd<'_>, n: RawFd) -> OwnedFd {
    sys::dup_at_least(fd, n).expect("F_DUPFD_CLOEXEC")
}

/// Duplicates of every eventfd open in this process (found through
/// `/proc/self/fd`): what a process that inherited a channel's doorbells
/// can reach of them.
pub fn copies_of_open_eventfds() -> Vec<OwnedFd> {
    let entries = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd");
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            let n: RawFd = e.file_name().to_str()?.parse().ok()?;
            let eventfd = std::fs::read_link(e.path()).ok()?.as_os_str() == "anon_inode:[eventfd]";
            eventfd.then(|| sys::dup_open(n).ok()).flatten()
        })
        .collect()
}
