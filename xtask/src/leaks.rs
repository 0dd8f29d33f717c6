//! What IPC objects exist on the machine, to compare before and after the
//! tests.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

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
            self.notes.push(
                "/dev/mqueue is not mounted and an mqueue file system could not be mounted: \
                 POSIX queues not checked"
                    .into(),
            );
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
