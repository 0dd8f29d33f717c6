//! Publishers, blackboards and notifiers in `ipc-kit ls`, with their
//! subscribers, readers and listeners: found by the memfds ipc-service
//! labels with the name they are bound at. The owner keeps a descriptor
//! of the shared memory (its members map it and close theirs) and runs
//! the thread that takes members in (`ipc-service hub`, which a child it
//! forked does not have); each member that took its place keeps an empty
//! memfd labelled with its kind, the inode of that shared memory and the
//! name. So an owner is told apart by its memory's inode, and its members
//! by that inode too, not by names.

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

/// The name of the thread that takes an owner's members in.
const HUB_THREAD: &str = "ipc-service hub";

/// What one process holds, by kind and the inode of the owner's memory:
/// the memories it holds (with their names), and the ones it is a member
/// of.
#[derive(Default)]
struct Held {
    owned: BTreeMap<(usize, u64), String>,
    member_of: BTreeSet<(usize, u64)>,
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
            for (k, (_, owner, member, _)) in KINDS.iter().enumerate() {
                if let Some(name) = named(link, owner) {
                    if let Ok(meta) = std::fs::metadata(fd.path()) {
                        held.owned.insert((k, meta.ino()), name.to_owned());
                    }
                } else if let Some(inode) = named(link, member).and_then(|rest| rest.split_once(' ')) {
                    held.member_of.extend(inode.0.parse::<u64>().ok().map(|i| (k, i)));
                }
            }
        }
        if !held.owned.is_empty() || !held.member_of.is_empty() {
            all.insert(pid, held);
        }
    }
    all
}

/// Whether `pid` runs a hub's thread.
fn runs_a_hub(pid: i32) -> bool {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten();
    tasks.into_iter().any(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == HUB_THREAD))
}

/// Every publisher, blackboard and notifier of a process this one may
/// look into, with its members' processes.
pub(crate) fn list() -> Vec<Object> {
    let all = scan();
    let mut out = Vec::new();
    for (&pid, held) in &all {
        if held.owned.is_empty() || !runs_a_hub(pid) {
            continue;
        }
        for (&(k, inode), name) in &held.owned {
            let (kind, _, _, unit) = KINDS[k];
            // A child that the owner forked after it made its hub holds
            // the memory too (and may run a hub of its own).
            if parent(pid).is_some_and(|p| all.get(&p).is_some_and(|h| h.owned.contains_key(&(k, inode)))) {
                continue;
            }
            let members: Vec<i32> =
                all.iter().filter(|(_, h)| h.member_of.contains(&(k, inode))).map(|(&p, _)| p).collect();
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
