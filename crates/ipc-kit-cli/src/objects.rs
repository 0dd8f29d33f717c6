//! `ipc-kit ls` and `ipc-kit rm`: the IPC objects on this machine.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

/// One IPC object as listed.
#[derive(Debug, Clone)]
pub(crate) struct Object {
    /// "sysv-shm", "sysv-msg", "sysv-sem", "posix-shm", "posix-sem",
    /// "posix-mq", "service", "pubsub", "blackboard" or "events".
    pub(crate) kind: &'static str,
    /// What `rm` takes: `shm-id:ID`, `posix-shm:/name`, …
    pub(crate) address: String,
    pub(crate) key: Option<i64>,
    pub(crate) id: Option<i64>,
    pub(crate) uid: Option<u32>,
    pub(crate) mode: u32,
    /// Bytes (segments, POSIX objects), messages (queues) or semaphores.
    pub(crate) size: Option<u64>,
    pub(crate) size_unit: &'static str,
    pub(crate) attached: Option<u64>,
    pub(crate) creator: Option<i32>,
    pub(crate) last: Option<i32>,
    /// Every pid the kernel records for it (creator, last user; for a
    /// queue, both the last sender and the last receiver).
    pub(crate) pids: Vec<i32>,
    /// A service's clients' processes; a publisher's subscribers', a
    /// blackboard's readers', a notifier's listeners'.
    pub(crate) clients: Vec<i32>,
}

impl Object {
    fn pid_json(pid: Option<i32>) -> Value {
        match pid {
            Some(p) if p > 0 => json!({ "pid": p, "alive": ipc_kit::sync::process_alive(p as u32) }),
            _ => Value::Null,
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": self.kind,
            "address": self.address,
            "key": self.key.map(|k| format!("{:#010x}", k as u32)),
            "id": self.id,
            "uid": self.uid,
            "mode": format!("{:o}", self.mode),
            "size": self.size,
            "size_unit": self.size_unit,
            "attached": self.attached,
            "creator": Self::pid_json(self.creator),
            "last": Self::pid_json(self.last),
        });
        if matches!(self.kind, "service" | "pubsub" | "blackboard" | "events") {
            v["clients"] = self.clients.iter().map(|&p| Self::pid_json(Some(p))).collect();
        }
        v
    }

    /// Whether everyone who used it is gone: creator and last user dead
    /// (or unknown) and nobody attached. Only for kinds that record pids.
    pub(crate) fn is_orphaned(&self) -> bool {
        let recorded: Vec<i32> = self.pids.iter().copied().filter(|&p| p > 0).collect();
        matches!(self.kind, "sysv-shm" | "sysv-msg")
            && self.attached.unwrap_or(0) == 0
            && !recorded.is_empty()
            && recorded.iter().all(|&p| !ipc_kit::sync::process_alive(p as u32))
    }
}

/// The rows of a /proc/sysvipc file, by column name.
fn sysvipc(file: &str) -> Vec<BTreeMap<String, i64>> {
    let Ok(text) = std::fs::read_to_string(file) else { return Vec::new() };
    let mut lines = text.lines();
    let Some(header) = lines.next() else { return Vec::new() };
    let names: Vec<&str> = header.split_whitespace().collect();
    lines
        .map(|l| {
            names
                .iter()
                .zip(l.split_whitespace())
                .filter_map(|(n, v)| {
                    // The permissions column is octal; the rest decimal.
                    let value = if *n == "perms" { i64::from_str_radix(v, 8).ok()? } else { v.parse().ok()? };
                    Some((n.to_string(), value))
                })
                .collect()
        })
        .collect()
}

/// Every IPC object this process can see, and notes on what it cannot.
pub(crate) fn list() -> (Vec<Object>, Vec<String>) {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for (kind, file, id_col, size_col, unit) in [
        ("sysv-shm", "/proc/sysvipc/shm", "shmid", "size", "bytes"),
        ("sysv-msg", "/proc/sysvipc/msg", "msqid", "qnum", "messages"),
        ("sysv-sem", "/proc/sysvipc/sem", "semid", "nsems", "semaphores"),
    ] {
        for row in sysvipc(file) {
            let g = |c: &str| row.get(c).copied();
            let id = g(id_col);
            let prefix = &kind[5..];
            out.push(Object {
                kind,
                address: format!("{prefix}-id:{}", id.unwrap_or(-1)),
                key: g("key"),
                id,
                uid: g("uid").map(|u| u as u32),
                mode: g("perms").map_or(0, |p| p as u32) & 0o777,
                size: g(size_col).map(|v| v as u64),
                size_unit: unit,
                attached: g("nattch").map(|v| v as u64),
                creator: g("cpid").map(|v| v as i32),
                last: g("lpid").or(g("lrpid")).or(g("lspid")).map(|v| v as i32),
                pids: ["cpid", "lpid", "lspid", "lrpid"].iter().filter_map(|c| g(c)).map(|v| v as i32).collect(),
                clients: Vec::new(),
            });
        }
    }
    posix_dir(Path::new("/dev/shm"), &mut out, |name| {
        name.strip_prefix("sem.").map_or(("posix-shm", name.to_owned()), |n| ("posix-sem", n.to_owned()))
    });
    let mq = Path::new("/dev/mqueue");
    if crate::sys::is_mqueue(mq) {
        posix_dir(mq, &mut out, |name| ("posix-mq", name.to_owned()));
    } else {
        notes.push(
            "POSIX message queues are not listed: /dev/mqueue is not mounted \
             (as root: mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue)"
                .to_owned(),
        );
    }
    (out, notes)
}

fn posix_dir(dir: &Path, out: &mut Vec<Object>, classify: impl Fn(&str) -> (&'static str, String)) {
    use std::os::unix::fs::MetadataExt;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = escape(e.file_name().as_encoded_bytes());
        let Ok(meta) = e.metadata() else { continue };
        let (kind, obj) = classify(&name);
        out.push(Object {
            kind,
            address: format!("{kind}:/{obj}"),
            key: None,
            id: None,
            uid: Some(meta.uid()),
            mode: meta.mode() & 0o777,
            size: Some(if kind == "posix-mq" { queued_bytes(&e.path()).unwrap_or(0) } else { meta.len() }),
            size_unit: "bytes",
            attached: None,
            creator: None,
            last: None,
            pids: Vec::new(),
            clients: Vec::new(),
        });
    }
}

/// The bytes queued in a POSIX queue: its file in an mqueue file system
/// reads "QSIZE:N NOTIFY:… SIGNO:… NOTIFY_PID:…" (its length is that
/// line's, not the queue's).
fn queued_bytes(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.split_whitespace().find_map(|f| f.strip_prefix("QSIZE:")).and_then(|n| n.parse().ok())
}

/// Prints the objects as a table.
pub(crate) fn print_table(objects: &[Object], notes: &[String]) {
    let pid = |p: Option<i32>| match p {
        Some(p) if p > 0 && ipc_kit::sync::process_alive(p as u32) => p.to_string(),
        Some(p) if p > 0 => format!("{p}(gone)"),
        _ => "-".to_owned(),
    };
    println!(
        "{:<10} {:<28} {:>10} {:>6} {:>5} {:>12} {:>6} {:>12} {:>12}",
        "KIND", "ADDRESS", "KEY", "UID", "MODE", "SIZE", "ATTACH", "CREATOR", "LAST"
    );
    for o in objects {
        println!(
            "{:<10} {:<28} {:>10} {:>6} {:>5o} {:>12} {:>6} {:>12} {:>12}",
            o.kind,
            o.address,
            o.key.map_or("-".into(), |k| format!("{:#010x}", k as u32)),
            o.uid.map_or("-".into(), |u| u.to_string()),
            o.mode,
            o.size.map_or("-".into(), |s| format!("{s} {}", unit_short(o.size_unit))),
            o.attached.map_or("-".into(), |a| a.to_string()),
            pid(o.creator),
            pid(o.last),
        );
    }
    if objects.is_empty() {
        println!("(no IPC objects)");
    }
    for n in notes {
        println!("note: {n}");
    }
}

fn unit_short(unit: &str) -> &'static str {
    match unit {
        "bytes" => "B",
        "messages" => "msg",
        "connections" => "conn",
        "subscribers" => "sub",
        "readers" => "rdr",
        "listeners" => "lsn",
        _ => "sem",
    }
}

/// A file name as `ls` prints it and `rm` takes it back: UTF-8 text as it
/// is, but a backslash doubled and every control character or byte that is
/// not UTF-8 as `\xNN`, so that one line holds one name.
pub(crate) fn escape(name: &[u8]) -> String {
    ipc_kit::sync::object::escape_name(name)
}

/// The bytes of a name [`escape`]d; `None` for a bad escape.
pub(crate) fn unescape(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match rest {
            [b'\\', tail @ ..] => {
                out.push(b'\\');
                rest = tail;
            }
            [b'x', h, l, tail @ ..] => {
                out.push(u8::from_str_radix(std::str::from_utf8(&[*h, *l]).ok()?, 16).ok()?);
                rest = tail;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// An address's kind and the rest, such as `("msg-id", "5")`.
fn split(address: &str) -> Result<(&str, &str), String> {
    address.split_once(':').ok_or_else(|| format!("{address}: not an object address"))
}

/// The id of an address's `rest`, written as decimal digits only (no sign).
fn object_id(address: &str, rest: &str) -> Result<i32, String> {
    let digits = !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| rest.parse().ok()).flatten().ok_or_else(|| format!("{address}: {rest:?} is not an id"))
}

fn unknown_kind(address: &str, kind: &str) -> String {
    format!("{address}: unknown kind {kind:?} (shm-id, msg-id, sem-id, posix-shm, posix-sem, posix-mq)")
}

/// An object address in one spelling (ids as plain numbers), or why it is
/// not one.
pub(crate) fn canonical(address: &str) -> Result<String, String> {
    let (kind, rest) = split(address)?;
    match kind {
        "shm-id" | "msg-id" | "sem-id" => object_id(address, rest).map(|i| format!("{kind}:{i}")),
        "posix-shm" | "posix-sem" | "posix-mq" if rest.starts_with('/') => Ok(address.to_owned()),
        "posix-shm" | "posix-sem" | "posix-mq" => Err(format!("{address}: a POSIX name starts with '/'")),
        _ => Err(unknown_kind(address, kind)),
    }
}

/// Removes one object by its address; a message on failure.
pub(crate) fn remove(address: &str) -> Result<(), String> {
    use ipc_kit::msgq::{PosixQueue, SysvQueue};
    use ipc_kit::shm::SysvSegment;
    let (kind, rest) = split(address)?;
    let id = || object_id(address, rest);
    let refuse = |e: String| format!("cannot remove {address}: {e}");
    match kind {
        "shm-id" => SysvSegment::open_id(id()?, 0).and_then(|s| s.remove()).map_err(|e| refuse(e.to_string())),
        "msg-id" => SysvQueue::open_id(id()?).and_then(|q| q.remove()).map_err(|e| refuse(e.to_string())),
        "sem-id" => {
            let id = id()?;
            // The id is enough for IPC_RMID; ipc-sync opens by key, so do it
            // through a set handle made for the id.
            ipc_kit::sync::SemaphoreSet::remove_id(id).map_err(|e| refuse(e.to_string()))
        }
        "posix-shm" | "posix-sem" | "posix-mq" if rest.contains('\\') => {
            // A name `ls` escaped (a control character or bytes that are not
            // UTF-8): removed as the file it is in /dev/shm or the mqueue
            // file system, which the library's names (text) cannot say.
            let name = unescape(rest.strip_prefix('/').unwrap_or(rest)).ok_or_else(|| refuse("a bad escape".into()))?;
            let (dir, prefix): (&str, &[u8]) = match kind {
                "posix-shm" => ("/dev/shm", b""),
                "posix-sem" => ("/dev/shm", b"sem."),
                _ => ("/dev/mqueue", b""),
            };
            if name.contains(&b'/') || name.is_empty() {
                return Err(refuse("not a POSIX name".into()));
            }
            let bytes = [prefix, &name].concat();
            let file = Path::new(dir).join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&bytes));
            std::fs::remove_file(file).map_err(|e| refuse(e.to_string()))
        }
        "posix-shm" => {
            ipc_kit::shm::PosixShm::open_read_only(rest).and_then(|mut s| s.unlink()).map_err(|e| refuse(e.to_string()))
        }
        "posix-sem" => {
            ipc_kit::sync::NamedSemaphore::open(rest).and_then(|mut s| s.unlink()).map_err(|e| refuse(e.to_string()))
        }
        "posix-mq" => PosixQueue::open(rest).and_then(|mut q| q.unlink()).map_err(|e| refuse(e.to_string())),
        _ => Err(unknown_kind(address, kind)),
    }
}
