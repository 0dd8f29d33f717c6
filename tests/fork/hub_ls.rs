//! `ipc-kit ls` lists publishers, blackboards and notifiers, each with
//! the processes of its subscribers, readers or listeners, and forgets
//! them as they go.

use std::time::{Duration, Instant};

use ipc_kit::service::{Blackboard, BlackboardReader, Listener, Notifier, Publisher, SocketName, Subscriber};
use ipc_kit_tests::{Exit, ScratchDir, cases, fork};

use crate::service::name_in;

cases!("hub_ls":
    ipc_kit_ls_shows_each_owner_and_its_members(60 s),
);

/// The rows of `ipc-kit ls --json` of `kind` at `name`: the owner's pid
/// and its members' (sorted).
fn listed(kind: &str, name: &SocketName) -> Vec<(i64, Vec<i64>)> {
    let out = std::process::Command::new(ipc_kit_tests::ipc_kit_bin()).args(["ls", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == kind && v["address"] == format!("{kind}:{name}"))
        .map(|v| {
            let mut members: Vec<i64> =
                v["clients"].as_array().unwrap().iter().map(|c| c["pid"].as_i64().unwrap()).collect();
            members.sort_unstable();
            assert_eq!(v["attached"].as_u64(), Some(members.len() as u64));
            (v["creator"]["pid"].as_i64().unwrap(), members)
        })
        .collect()
}

/// An owner of each kind, its count of members, and how a member joins.
enum Owner {
    PubSub(Publisher),
    Board(Blackboard),
    Events(Notifier),
}

impl Owner {
    fn members(&self) -> usize {
        match self {
            Owner::PubSub(p) => p.subscribers(),
            Owner::Board(b) => b.readers(),
            Owner::Events(n) => n.listeners(),
        }
    }
}

fn ipc_kit_ls_shows_each_owner_and_its_members() {
    let dir = ScratchDir::new();
    let me = i64::from(std::process::id() as i32);
    for (k, kind) in ["pubsub", "blackboard", "events"].into_iter().enumerate() {
        for name in
            [name_in(&dir, &format!("{kind}.sock")), format!("@{}", ipc_kit_tests::unique_name(kind)).parse().unwrap()]
        {
            // Members forked before the owner binds, as separate programs
            // would be (a child of the owner holds what it holds).
            let (go_r, go_w) = std::io::pipe().unwrap();
            let mut members: Vec<_> = (0..2)
                .map(|_| {
                    let (name, go_r) = (name.clone(), &go_r);
                    fork(move || {
                        let mut b = [0u8; 1];
                        nix::unistd::read(go_r, &mut b).unwrap();
                        let t = Duration::from_secs(10);
                        let _member: Box<dyn std::any::Any> = match k {
                            0 => Box::new(Subscriber::connect_timeout(&name, t).unwrap()),
                            1 => Box::new(BlackboardReader::connect_timeout(&name, t).unwrap()),
                            _ => Box::new(Listener::connect_timeout(&name, t).unwrap()),
                        };
                        std::thread::sleep(Duration::from_secs(30));
                    })
                })
                .collect();
            let owner = match k {
                0 => Owner::PubSub(Publisher::bind(&name, Default::default()).unwrap()),
                1 => Owner::Board(Blackboard::bind(&name, Default::default()).unwrap()),
                _ => Owner::Events(Notifier::bind(&name, Default::default()).unwrap()),
            };
            assert_eq!(listed(kind, &name), [(me, vec![])]);
            nix::unistd::write(&go_w, b"gg").unwrap();
            let start = Instant::now();
            while owner.members() < 2 {
                assert!(start.elapsed() < Duration::from_secs(20));
                std::thread::sleep(Duration::from_millis(2));
            }
            let mut want: Vec<i64> = members.iter().map(|m| i64::from(m.pid().as_raw())).collect();
            want.sort_unstable();
            assert_eq!(listed(kind, &name), [(me, want.clone())], "{kind}");
            // One member killed: listed no more.
            let gone = members.remove(0);
            gone.kill();
            let mut gone = gone;
            gone.wait();
            want.retain(|&p| p != i64::from(gone.pid().as_raw()));
            while owner.members() > 1 {
                std::thread::sleep(Duration::from_millis(2));
            }
            assert_eq!(listed(kind, &name), [(me, want)], "{kind}");
            drop(owner);
            assert_eq!(listed(kind, &name), [], "{kind} listed after its owner went");
            for m in &mut members {
                m.kill();
                assert!(matches!(m.wait(), Exit::Signaled(_) | Exit::Code(0)));
            }
        }
    }
}
