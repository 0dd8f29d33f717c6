//! Publishers, blackboards and notifiers in `ipc-kit ls`, with their
//! subscribers, readers and listeners: found by the memfds ipc-service
//! labels with the name they are bound at. Only the owner keeps a
//! descriptor of the shared memory (its members map it and close it);
//! each member keeps one of its own cell, which the owner maps
//! (`/proc/PID/maps`). An owner is told apart by its memory's inode, and
//! its members by their cells' inodes, not by names.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;

use ipc_kit::service::{
    LABEL_BLACKBOARD, LABEL_BLACKBOARD_READER, LABEL_EVENTS, LABEL_LISTENER, LABEL_PUBSUB, LABEL_SUBSCRIBER,
};

use crate::objects::Object;
use crate::services::{named, parent};

/// Each kind: its name in `ls`, the owner's label, the members' label and
/// what the members are called.
const KINDS: [(&str, &str, &str, &str); 3] = [
    ("pubsub", LABEL_PUBSUB, LABEL_SUBSCRIBER, "subscribers"),
    ("blackboard", LABEL_BLACKBOARD, LABEL_BLACKBOARD_READER, "readers"),
    ("events", LABEL_EVENTS, LABEL_LISTENER, "listeners"),
];

/// What one process holds: per kind, the owners' memories (inode → name)
/// and the member cells it keeps (inodes).
#[derive(Default)]
struct Held {
    owned: BTreeMap<(usize, u64), String>,
    cells: BTreeSet<u64>,
}

fn scan() -> BTreeMap<i32, Held> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        let mut held = Held::default();
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else { continue };
            let Some(link) = link.to_str() else { continue };
            if !link.starts_with("/memfd:ipc-") {
                continue;
            }
            let Ok(meta) = std::fs::metadata(fd.path()) else { continue };
            for (k, (_, owner, member, _)) in KINDS.iter().enumerate() {
                if let Some(name) = named(link, owner) {
                    held.owned.insert((k, meta.ino()), name.to_owned());
                } else if named(link, member).is_some() {
                    held.cells.insert(meta.ino());
                }
            }
        }
        if !held.owned.is_empty() || !held.cells.is_empty() {
            all.insert(pid, held);
        }
    }
    all
}

/// The inodes of the memfds labelled `label` that `pid` maps.
fn mapped(pid: i32, label: &str) -> BTreeSet<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    maps.lines()
        .filter_map(|l| {
            // address perms offset dev inode path
            let mut f = l.split_whitespace();
            let inode = f.nth(4)?.parse().ok()?;
            let path = l.split_once("/memfd:").map(|(_, p)| format!("/memfd:{p}"))?;
            named(&path, label).map(|_| inode)
        })
        .collect()
}

/// Every publisher, blackboard and notifier of a process this one may
/// look into, with its members' processes.
pub(crate) fn list() -> Vec<Object> {
    let all = scan();
    let mut out = Vec::new();
    for (&pid, held) in &all {
        for (&(k, inode), name) in &held.owned {
            let (kind, _, member_label, unit) = KINDS[k];
            // Children forked by the owner hold its memory too: the owner
            // is the one whose parent does not.
            let holds = |p: i32| all.get(&p).is_some_and(|h| h.owned.contains_key(&(k, inode)));
            if parent(pid).is_some_and(holds) {
                continue;
            }
            let cells = mapped(pid, member_label);
            let members: Vec<i32> =
                all.iter().filter(|(_, h)| h.cells.iter().any(|c| cells.contains(c))).map(|(&p, _)| p).collect();
            let uid = std::fs::metadata(format!("/proc/{pid}")).ok().map(|m| m.uid());
            out.push(Object {
                kind,
                address: format!("{kind}:{name}"),
                key: None,
                id: None,
                uid,
                mode: 0,
                size: Some(members.len() as u64),
                size_unit: unit,
                attached: Some(members.len() as u64),
                creator: Some(pid),
                last: None,
                pids: std::iter::once(pid).chain(members.iter().copied()).collect(),
                clients: members,
            });
        }
    }
    out
}
