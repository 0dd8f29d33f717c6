//! The services of `ipc-kit ls`: found by the memfds their processes hold
//! (`/proc/PID/fd`), which ipc-service labels with the service's name: an
//! empty one for as long as the service is bound, and each connection's
//! rings, which the service and its client both hold.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;

use ipc_kit::service::{LABEL_REQUESTS, LABEL_SERVICE};

use crate::objects::Object;

/// What one process holds: the services it runs, and the request rings
/// (by inode) of each service's connections it is in.
#[derive(Default)]
struct Held {
    /// The services' markers, by name: their inodes.
    services: BTreeMap<String, u64>,
    rings: BTreeMap<String, BTreeSet<u64>>,
}

/// The parent of a process (`/proc/PID/stat`), if it can be read.
fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may hold spaces and parentheses: the fields after the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// The service name in a memfd's link (`/memfd:LABEL NAME (deleted)`)
/// whose label is `label`.
fn named<'a>(link: &'a str, label: &str) -> Option<&'a str> {
    let rest = link.strip_prefix("/memfd:")?.strip_prefix(label)?.strip_prefix(' ')?;
    Some(rest.strip_suffix(" (deleted)").unwrap_or(rest))
}

/// What every process this one may look into holds.
fn scan() -> BTreeMap<i32, Held> {
    let mut all: BTreeMap<i32, Held> = BTreeMap::new();
    for proc_entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = proc_entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        // Another user's descriptors are not ours to read: passed over.
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else { continue };
            let Some(link) = link.to_str() else { continue };
            let Ok(meta) = std::fs::metadata(fd.path()) else { continue };
            if let Some(name) = named(link, LABEL_SERVICE) {
                all.entry(pid).or_default().services.insert(name.to_owned(), meta.ino());
            } else if let Some(name) = named(link, LABEL_REQUESTS) {
                all.entry(pid).or_default().rings.entry(name.to_owned()).or_default().insert(meta.ino());
            }
        }
    }
    all
}

/// Every service bound by a process this one may look into, with the
/// processes of its clients.
pub(crate) fn list() -> Vec<Object> {
    let all = scan();
    let mut out = Vec::new();
    for (&pid, held) in &all {
        for (name, &marker) in &held.services {
            // Children forked by the service hold its marker too: the
            // service is the one whose parent does not.
            let holds = |p: i32| all.get(&p).is_some_and(|h| h.services.get(name) == Some(&marker));
            if parent(pid).is_some_and(holds) {
                continue;
            }
            let rings = held.rings.get(name).cloned().unwrap_or_default();
            // A client holds one of the service's rings.
            let clients: Vec<i32> = all
                .iter()
                .filter(|&(&other, h)| {
                    !holds(other) && h.rings.get(name).is_some_and(|r| r.iter().any(|i| rings.contains(i)))
                })
                .map(|(&other, _)| other)
                .collect();
            let uid = std::fs::metadata(format!("/proc/{pid}")).ok().map(|m| m.uid());
            out.push(Object {
                kind: "service",
                address: format!("service:{name}"),
                key: None,
                id: None,
                uid,
                mode: 0,
                size: Some(rings.len() as u64),
                size_unit: "connections",
                attached: Some(clients.len() as u64),
                creator: Some(pid),
                last: None,
                pids: std::iter::once(pid).chain(clients.iter().copied()).collect(),
                clients,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_read_back() {
        assert_eq!(named("/memfd:ipc-service /tmp/a.sock (deleted)", LABEL_SERVICE), Some("/tmp/a.sock"));
        assert_eq!(named("/memfd:ipc-service-requests @x y (deleted)", LABEL_REQUESTS), Some("@x y"));
        assert_eq!(named("/memfd:ipc-service-requests @x", LABEL_SERVICE), None);
        assert_eq!(named("/memfd:ipc-kit-channel (deleted)", LABEL_SERVICE), None);
        assert_eq!(named("/dev/shm/ipc-service x", LABEL_SERVICE), None);
    }
}
