//! The services of `ipc-kit ls`: found by the memfds their processes hold
//! (`/proc/PID/fd`), which ipc-service labels with the service's name: an
//! empty one for as long as the service is bound (its marker), and each
//! connection's rings, which the service and its client both hold. A
//! service is told apart by its marker's inode, not by its name (a name
//! may be bound again while the first service lives).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;

use ipc_kit::service::{LABEL_REQUESTS, LABEL_SERVICE};

use crate::objects::Object;

/// What one process holds: the services' markers (inode → name), the
/// request rings by service name (their inodes), and its sockets' inodes.
#[derive(Default)]
struct Held {
    markers: BTreeMap<u64, String>,
    rings: BTreeMap<String, BTreeSet<u64>>,
    sockets: BTreeSet<u64>,
}

/// A Unix socket as /proc/net/unix has it: whether it listens, and its
/// address as printed there (also on the sockets a listener accepted).
struct UnixSocket {
    listening: bool,
    path: String,
}

/// The parent of a process (`/proc/PID/stat`), if it can be read.
pub(crate) fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may hold spaces and parentheses: the fields after the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// The service name in a memfd's link (`/memfd:LABEL NAME (deleted)`)
/// whose label is `label`.
pub(crate) fn named<'a>(link: &'a str, label: &str) -> Option<&'a str> {
    let rest = link.strip_prefix("/memfd:")?.strip_prefix(label)?.strip_prefix(' ')?;
    Some(rest.strip_suffix(" (deleted)").unwrap_or(rest))
}

/// The Unix sockets that have an address, by inode.
fn unix_sockets() -> BTreeMap<u64, UnixSocket> {
    let text = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            // Num RefCount Protocol Flags Type St Inode Path, the path
            // (spaces and all) the rest of the line.
            let mut fields = [""; 7];
            let mut rest = l;
            for f in &mut fields {
                rest = rest.trim_start();
                let end = rest.find(' ').unwrap_or(rest.len());
                (*f, rest) = rest.split_at(end);
            }
            let path = rest.strip_prefix(' ').unwrap_or(rest);
            if path.is_empty() {
                return None;
            }
            Some((fields[6].parse().ok()?, UnixSocket { listening: fields[5] == "01", path: path.to_owned() }))
        })
        .collect()
}

/// What every process this one may look into holds.
fn scan() -> BTreeMap<i32, Held> {
    let mut all: BTreeMap<i32, Held> = BTreeMap::new();
    for proc_entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = proc_entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        // Another user's descriptors are not ours to read: passed over.
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else { continue };
        let mut held = Held::default();
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else { continue };
            let Some(link) = link.to_str() else { continue };
            if let Some(inode) = link.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                held.sockets.extend(inode.parse::<u64>().ok());
                continue;
            }
            let Ok(meta) = std::fs::metadata(fd.path()) else { continue };
            if let Some(name) = named(link, LABEL_SERVICE) {
                held.markers.insert(meta.ino(), name.to_owned());
            } else if let Some(name) = named(link, LABEL_REQUESTS) {
                held.rings.entry(name.to_owned()).or_default().insert(meta.ino());
            }
        }
        if !held.markers.is_empty() || !held.rings.is_empty() {
            all.insert(pid, held);
        }
    }
    all
}

/// Every service bound by a process this one may look into, with the
/// processes of its clients.
pub(crate) fn list() -> Vec<Object> {
    let all = scan();
    let sockets = unix_sockets();
    let mut out = Vec::new();
    for (&pid, held) in &all {
        for (&marker, name) in &held.markers {
            // Children forked by the service hold its marker too: the
            // service is the one whose parent does not.
            let holds = |p: i32| all.get(&p).is_some_and(|h| h.markers.contains_key(&marker));
            if parent(pid).is_some_and(holds) {
                continue;
            }
            let rings = held.rings.get(name).cloned().unwrap_or_default();
            // The addresses it listens at; the sockets it accepted carry
            // them too, the clients' sockets none.
            let listening: BTreeSet<&str> = held
                .sockets
                .iter()
                .filter_map(|i| sockets.get(i))
                .filter(|s| s.listening)
                .map(|s| s.path.as_str())
                .collect();
            let served_from = |h: &Held| {
                h.sockets
                    .iter()
                    .filter_map(|i| sockets.get(i))
                    .any(|s| !s.listening && listening.contains(s.path.as_str()))
            };
            // A client holds one of the service's rings, and not the
            // service's end of a connection (as a worker it forked does).
            let clients: Vec<i32> = all
                .iter()
                .filter(|&(&other, h)| {
                    !holds(other)
                        && h.rings.get(name).is_some_and(|r| r.iter().any(|i| rings.contains(i)))
                        && !served_from(h)
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
