//! What IPC objects exist on the machine, to compare before and after the
//! tests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::errno::Errno;
use nix::mqueue::{MQ_OFlag, MqAttr, mq_close, mq_open, mq_unlink};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::stat::Mode;

/// The IPC objects visible at one moment, each as a line that names it.
pub(crate) struct Snapshot {
    objects: BTreeSet<String>,
    notes: Vec<String>,
}

impl Snapshot {
    pub(crate) fn take() -> Self {
        let mut s = Snapshot { objects: BTreeSet::new(), notes: Vec::new() };
        for (kind, file) in [
            ("System V shared memory", "/proc/sysvipc/shm"),
            ("System V message queue", "/proc/sysvipc/msg"),
            ("System V semaphore set", "/proc/sysvipc/sem"),
        ] {
            s.sysv(kind, file);
        }
        s.dir("POSIX shared memory or named semaphore", Path::new("/dev/shm"), |_| true);
        s.posix_queues();
        let tmp = std::env::temp_dir();
        s.dir("test scratch directory", &tmp, |name| name.starts_with("ipc-kit-test"));
        s
    }

    /// Objects in `self` that were not in `before`.
    pub(crate) fn new_since(&self, before: &Snapshot) -> Vec<String> {
        self.objects.difference(&before.objects).cloned().collect()
    }

    /// What could not be checked.
    pub(crate) fn notes(&self) -> &[String] {
        &self.notes
    }

    pub(crate) fn summary(&self) -> String {
        format!("{} object(s) exist, none of them new", self.objects.len())
    }

    fn sysv(&mut self, kind: &str, file: &str) {
        let Ok(text) = std::fs::read_to_string(file) else {
            self.notes.push(format!("{file} is unreadable: {kind}s not checked"));
            return;
        };
        for line in text.lines().skip(1) {
            let mut cols = line.split_whitespace();
            if let (Some(key), Some(id)) = (cols.next(), cols.next()) {
                let key: i64 = key.parse().unwrap_or(0);
                self.objects.insert(format!("{kind} key {key:#010x} id {id} ({file})"));
            }
        }
    }

    /// The queues in an mqueue mount, by the names mq_open knows them by.
    fn queues_in(&mut self, mount: &Path) {
        for e in std::fs::read_dir(mount).into_iter().flatten().flatten() {
            self.objects.insert(format!("POSIX message queue /{}", e.file_name().to_string_lossy()));
        }
    }

    fn dir(&mut self, kind: &str, dir: &Path, keep: impl Fn(&str) -> bool) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            self.notes.push(format!("{} is unreadable: {kind}s not checked", dir.display()));
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if keep(&name) {
                self.objects.insert(format!("{kind} {}", dir.join(&name).display()));
            }
        }
    }

    /// POSIX message queues are listed in an mqueue file system; when none
    /// is mounted at /dev/mqueue, mount one for a moment (root only).
    /// Without either, the bytes this user's queues hold in the kernel's
    /// account stand for them: every queue, however small, adds to it.
    fn posix_queues(&mut self) {
        let dev = Path::new("/dev/mqueue");
        if is_mqueue_mount(dev) {
            self.queues_in(dev);
            return;
        }
        let mnt: PathBuf = std::env::temp_dir().join(format!("ipc-kit-mqueue-{}", std::process::id()));
        if std::fs::create_dir_all(&mnt).is_err() {
            self.notes.push("cannot create a mount point: POSIX queues not checked".into());
            return;
        }
        let mounted = Command::new("mount")
            .args(["-t", "mqueue", "mqueue"])
            .arg(&mnt)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            self.queues_in(&mnt);
            let _ = Command::new("umount").arg(&mnt).status();
        } else {
            match queue_bytes_in_use() {
                Ok(bytes) => {
                    self.objects.insert(format!("POSIX message queues: {bytes} bytes in this user's account"));
                    self.notes.push(
                        "no mqueue file system to list: POSIX queues are checked by the bytes this user's \
                         queues hold (in every IPC namespace)"
                            .into(),
                    );
                }
                Err(e) => self.notes.push(format!(
                    "no mqueue file system to list, and this user's queue account is unreadable ({e}): \
                     POSIX queues not checked"
                )),
            }
        }
        let _ = std::fs::remove_dir(&mnt);
    }
}

fn is_mqueue_mount(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
        m.lines().any(|l| {
            let mut f = l.split_whitespace();
            let (_, at, fstype) = (f.next(), f.next(), f.next());
            at == Some(&*path.to_string_lossy()) && fstype == Some("mqueue")
        })
    })
}

/// The bytes that this user's POSIX message queues hold in the kernel's
/// account (`RLIMIT_MSGQUEUE`: each queue counts its message space and
/// bookkeeping from creation until its last descriptor closes after
/// unlinking). The kernel shows the sum only by refusing a queue that
/// would take it over the soft limit, so this finds the smallest limit
/// under which one probe queue (one 1-byte message) can be made, which is
/// the sum plus one probe, and the smallest for two probes at once; twice
/// the first less the second is the sum. The limit is restored afterwards.
///
/// Every queue holds at least one message byte, so a queue left behind
/// always shows as a larger sum.
fn queue_bytes_in_use() -> Result<u64, String> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_MSGQUEUE).map_err(|e| format!("getrlimit: {e}"))?;
    let measured = smallest_limit_taking(1, hard).and_then(|one| Ok((one, smallest_limit_taking(2, hard)?)));
    setrlimit(Resource::RLIMIT_MSGQUEUE, soft, hard).map_err(|e| format!("restore RLIMIT_MSGQUEUE: {e}"))?;
    let (one, two) = measured?;
    Ok((2 * one).saturating_sub(two))
}

/// The smallest `RLIMIT_MSGQUEUE` soft limit, up to the hard limit (and
/// 1 TiB), under which `count` probe queues can be held at once.
fn smallest_limit_taking(count: usize, hard: u64) -> Result<u64, String> {
    let top = hard.min(1 << 40);
    if !probes_fit(top, hard, count)? {
        return Err(format!("{count} probe queue(s) do not fit under a limit of {top} bytes"));
    }
    let (mut lo, mut hi) = (0u64, top);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if probes_fit(mid, hard, count)? { hi = mid } else { lo = mid + 1 }
    }
    Ok(lo)
}

/// Whether `count` probe queues can be held at once with the soft limit
/// at `limit`. Each probe is unlinked as soon as it is made and closed
/// before this returns.
fn probes_fit(limit: u64, hard: u64, count: usize) -> Result<bool, String> {
    setrlimit(Resource::RLIMIT_MSGQUEUE, limit, hard).map_err(|e| format!("setrlimit: {e}"))?;
    let attr = MqAttr::new(0, 1, 1, 0);
    let flags = MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_RDONLY | MQ_OFlag::O_CLOEXEC;
    let mut held = Vec::new();
    let mut outcome = Ok(true);
    for i in 0..count {
        let name = format!("/ipc-kit-leak-probe-{}-{i}", std::process::id());
        match mq_open(name.as_str(), flags, Mode::S_IRUSR | Mode::S_IWUSR, Some(&attr)) {
            Ok(q) => {
                let _ = mq_unlink(name.as_str());
                held.push(q);
            }
            Err(Errno::EMFILE) => {
                outcome = Ok(false);
                break;
            }
            Err(e) => {
                outcome = Err(format!("mq_open {name}: {e}"));
                break;
            }
        }
    }
    for q in held {
        let _ = mq_close(q);
    }
    outcome
}
