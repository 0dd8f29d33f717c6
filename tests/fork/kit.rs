//! The `ipc-kit` command, run as the real binary.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use ipc_kit::msgq::{Key, PosixQueue, QueueAttr, SysvQueue};
use ipc_kit::shm::{PosixShm, SysvSegment};
use ipc_kit::traits::Error as KitError;
use ipc_kit::{Mechanism, Pair};
use ipc_kit_tests::{ScratchDir, cases, checksum, fork, pattern, unique_name};
use serde_json::{Value, json};

cases!("kit":
    every_mechanism_through_the_traits_across_fork,
    cli_ls_shows_and_rm_removes,
    cli_rm_orphaned_removes_only_orphans,
    cli_send_and_recv_through_both_queue_kinds,
    cli_bad_addresses_exit_2_with_one_line,
    cli_bench_json_follows_the_schema(120 s),
    bench_schema_check_rejects_broken_documents,
    cli_bench_async_rows_for_every_mechanism_and_tokio,
    cli_keys_and_ids_never_wrap_and_dry_runs_check_addresses,
    cli_ls_shows_the_bytes_a_posix_queue_holds,
    cli_recv_gives_binary_messages_exactly,
    cli_ls_escapes_names_and_rm_takes_them_back,
);

fn run(args: &[&str]) -> Output {
    Command::new(ipc_kit_tests::ipc_kit_bin()).args(args).output().unwrap()
}

fn listed() -> Vec<serde_json::Value> {
    let out = run(&["ls", "--json"]);
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn address_of(kind: &str, pred: impl Fn(&serde_json::Value) -> bool) -> Option<String> {
    listed().into_iter().find(|o| o["kind"] == kind && pred(o)).map(|o| o["address"].as_str().unwrap().to_owned())
}

fn cli_ls_shows_and_rm_removes() {
    let key = 0x1f00_0000 | (std::process::id() as i32 & 0xffff);
    let mut q = SysvQueue::create(Key::new(key).unwrap(), 0o640).unwrap();
    q.persist(); // rm removes it, not the drop
    let id = q.id();
    let addr = address_of("sysv-msg", |o| o["id"] == id).expect("ls shows the queue");
    assert_eq!(addr, format!("msg-id:{id}"));
    let o = listed().into_iter().find(|o| o["id"] == id).unwrap();
    assert_eq!((o["key"].as_str().unwrap(), o["mode"].as_str().unwrap()), (format!("{:#010x}", key).as_str(), "640"));
    let out = run(&["rm", &addr]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(address_of("sysv-msg", |o| o["id"] == id).is_none(), "gone after rm");
    drop(q);

    let name = format!("/{}", unique_name("ipc-kit-test-shm"));
    let mut shm = PosixShm::create(&name, 4096, 0o600).unwrap();
    shm.persist();
    let addr = format!("posix-shm:{name}");
    assert!(address_of("posix-shm", |o| o["address"] == addr.as_str()).is_some());
    let table = String::from_utf8(run(&["ls"]).stdout).unwrap();
    assert!(table.contains(&addr), "{table}");
    assert!(run(&["rm", "--dry-run", &addr]).status.success());
    assert!(address_of("posix-shm", |o| o["address"] == addr.as_str()).is_some(), "a dry run removes nothing");
    assert!(run(&["rm", &addr]).status.success());
    assert!(address_of("posix-shm", |o| o["address"] == addr.as_str()).is_none());
}

fn cli_rm_orphaned_removes_only_orphans() {
    // Orphans: a segment made, attached and detached by a child that is
    // then killed, and a queue a killed child sent to and received from.
    let made = ipc_kit::shm::Mapping::anonymous(4096).unwrap();
    let qkey = Key::new(0x1f10_0000 | (std::process::id() as i32 & 0xffff)).unwrap();
    let lonely_key = Key::new(0x1f20_0000 | (std::process::id() as i32 & 0xffff)).unwrap();
    let mut child = fork(|| {
        let mut seg = SysvSegment::create(Key::private(), 4096, 0o600).unwrap();
        seg.persist();
        drop(seg.attach().unwrap());
        made.write(0, &seg.id()).unwrap();
        // Issue finding: a queue whose last receiver is gone, but which a
        // live process (the case) keeps sending to, is not an orphan.
        let mut q = SysvQueue::create(qkey, 0o600).unwrap();
        q.persist();
        q.send(1, b"x").unwrap();
        q.try_recv_vec(ipc_kit::msgq::Selector::Any, &mut Vec::new()).unwrap();
        // An orphan queue: every pid it records (its last sender and
        // receiver) is this child's. (/proc/sysvipc/msg has no creator.)
        let mut lonely = SysvQueue::create(lonely_key, 0o600).unwrap();
        lonely.persist();
        lonely.send(1, b"y").unwrap();
        lonely.try_recv_vec(ipc_kit::msgq::Selector::Any, &mut Vec::new()).unwrap();
        made.write(8, &lonely.id()).unwrap();
        made.write(4, &1u32).unwrap(); // the ids are there (0 is an id too)
        std::thread::sleep(Duration::from_secs(60));
    });
    while made.read::<u32>(4).unwrap() == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (orphan, lonely) = (made.read::<i32>(0).unwrap(), made.read::<i32>(8).unwrap());
    child.kill();
    child.wait();
    let used = SysvQueue::open(qkey).unwrap();
    used.send(1, b"still in use").unwrap();
    // Not orphans: one this process made and attaches, one it made only.
    let live = SysvSegment::create(Key::private(), 4096, 0o600).unwrap();
    let _attached = live.attach().unwrap();
    let idle = SysvSegment::create(Key::private(), 4096, 0o600).unwrap();
    // Only a dry run machine-wide: what it would remove of ours is exactly
    // the two orphans (objects of others on this machine are not ours to
    // judge); then each is removed by its address.
    let out = run(&["rm", "--orphaned", "--dry-run"]);
    let said = String::from_utf8(out.stdout).unwrap();
    let ours = [format!("shm-id:{orphan}"), format!("msg-id:{lonely}"), format!("msg-id:{}", used.id())];
    let ours = [&ours[..], &[format!("shm-id:{}", live.id()), format!("shm-id:{}", idle.id())]].concat();
    let would: Vec<&str> =
        said.lines().filter_map(|l| l.strip_prefix("would remove ")).filter(|a| ours.iter().any(|o| o == a)).collect();
    assert_eq!(would, [ours[0].as_str(), ours[1].as_str()], "only the orphans of this case: {said}");
    for addr in &ours[..2] {
        let out = run(&["rm", addr]);
        assert!(out.status.success(), "{addr}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let left: Vec<String> = listed().iter().map(|o| o["address"].as_str().unwrap().to_owned()).collect();
    assert!(!left.contains(&ours[0]) && !left.contains(&ours[1]), "the orphans are gone");
    assert!(ours[2..].iter().all(|a| left.contains(a)), "the others are still there: {left:?}");
    used.remove().unwrap();
}

fn cli_send_and_recv_through_both_queue_kinds() {
    let key = 0x1f10_0000 | (std::process::id() as i32 & 0xffff);
    let _q = SysvQueue::create(Key::new(key).unwrap(), 0o600).unwrap();
    let sysv = format!("sysv:{key:#x}");
    assert!(run(&["send", &sysv, "hello there", "--type", "3"]).status.success());
    assert!(run(&["send", &sysv, "other", "--type", "7"]).status.success());
    let out = run(&["recv", &sysv, "--type", "<=5", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["type"].as_i64(), v["message"].as_str()), (Some(3), Some("hello there")));
    let out = run(&["recv", &format!("sysv:{key}"), "--type", "!3"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "other\n", "decimal keys work too");
    let out = run(&["recv", &sysv, "--timeout", "100ms"]);
    assert_eq!(out.status.code(), Some(1), "empty: exit status 1");

    let name = format!("/{}", unique_name("ipc-kit-test-mq"));
    let _p = PosixQueue::create(&name, QueueAttr { max_messages: 2, message_size: 64 }, 0o600).unwrap();
    let posix = format!("posix:{name}");
    assert!(run(&["send", &posix, "low", "--priority", "1"]).status.success());
    assert!(run(&["send", &posix, "high", "--priority", "9"]).status.success());
    assert_eq!(run(&["send", &posix, "no room"]).status.code(), Some(1), "full: exit status 1");
    let v: serde_json::Value = serde_json::from_slice(&run(&["recv", &posix, "--json"]).stdout).unwrap();
    assert_eq!((v["priority"].as_i64(), v["message"].as_str()), (Some(9), Some("high")));
    assert_eq!(String::from_utf8(run(&["recv", &posix]).stdout).unwrap(), "low\n");
    assert_eq!(run(&["recv", &posix]).status.code(), Some(1));
    // A zero timeout tries once: a message already there is taken.
    for q in [&posix, &sysv] {
        assert!(run(&["send", q, "hello"]).status.success());
        let out = run(&["recv", q, "--timeout", "0"]);
        assert_eq!((out.status.code(), &out.stdout[..]), (Some(0), &b"hello\n"[..]), "{q}");
        assert_eq!(run(&["recv", q, "--timeout", "0"]).status.code(), Some(1), "{q}: empty");
    }
}

fn cli_bad_addresses_exit_2_with_one_line() {
    let missing_mq = format!("posix:/{}", unique_name("ipc-kit-test-missing"));
    for args in [
        vec!["send", "nonsense", "x"],
        vec!["send", "sysv:0", "x"],
        vec!["recv", "sysv:notanumber"],
        vec!["recv", "sysv-id:2147483000"],
        vec!["recv", missing_mq.as_str()],
        vec!["recv", "posix:no-slash"],
        vec!["recv", "sysv:0x1", "--timeout", "soon"],
        vec!["rm", "shm-id:2147483000"],
        vec!["rm", "gizmo:1"],
    ] {
        let out = run(&args);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err:?}");
    }
}

fn every_mechanism_through_the_traits_across_fork() {
    const N: u64 = 2000;
    let size = |i: u64| (i * 131 % 4000) as usize;
    for &m in Mechanism::ALL {
        let pair = m.pair().unwrap(); // holds what the sides need until the end
        let Pair { mut sender, mut receiver, .. } = pair;
        // The child sends; its copy of the receiver does not matter. The
        // parent's copy of the sender goes with the closure.
        let child = fork(move || {
            for i in 0..N {
                let mut msg = pattern(i, size(i));
                msg.extend_from_slice(&checksum(&msg).to_le_bytes());
                sender.send(&msg).unwrap();
            }
        });
        let mut buf = Vec::new();
        for i in 0..N {
            let n = receiver
                .recv_timeout(&mut buf, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{}: message {i}: {e}", m.name()));
            assert_eq!(n, size(i) + 8, "{}: message {i}", m.name());
            let (body, sum) = buf.split_at(n - 8);
            assert_eq!(checksum(body).to_le_bytes(), sum, "{}: message {i} corrupted", m.name());
            assert!(body == pattern(i, size(i)), "{}: message {i} out of order", m.name());
        }
        child.join();
        match receiver.recv_timeout(&mut buf, Duration::from_millis(300)) {
            // Streams and the channel know when the sender is gone; queues
            // outlive their users and just stay empty.
            Err(KitError::Disconnected) => assert!(!matches!(m, Mechanism::SysvQueue | Mechanism::PosixQueue)),
            Err(KitError::Timeout) => {
                assert!(matches!(m, Mechanism::SysvQueue | Mechanism::PosixQueue), "{}", m.name())
            }
            other => panic!("{}: {other:?}", m.name()),
        }
        assert!(matches!(receiver.try_recv(&mut buf), Err(KitError::Empty | KitError::Disconnected)));
    }
}

/// The names `ipc-kit bench --json` may use.
const BENCH_MECHANISMS: [&str; 10] = [
    "pipe",
    "fifo",
    "sysv-msgq",
    "posix-mq",
    "shm-channel",
    "shm-byte-channel",
    "unix-socket",
    "service",
    "shm-line",
    "shm-lines",
];

/// The mechanisms with raw rows only.
const BENCH_REFERENCES: [&str; 2] = ["shm-line", "shm-lines"];

/// The messages per batch of `"test": "batch"` rows.
const BENCH_BATCH: u64 = 64;

/// Checks a `bench --json` document against schema 1 as docs/bench.md
/// documents it; the first violation found.
fn check_bench_schema(doc: &Value) -> Result<(), String> {
    let obj = |v: &Value, what: &str| v.as_object().cloned().ok_or(format!("{what} is not an object"));
    let top = obj(doc, "the document")?;
    if top.get("schema") != Some(&json!(1)) {
        return Err("schema is not 1".into());
    }
    let machine = obj(&doc["machine"], "machine")?;
    if machine.get("cpus").and_then(Value::as_u64).is_none_or(|n| n < 1) {
        return Err("machine.cpus is not a positive integer".into());
    }
    for key in ["cpu", "kernel"] {
        if machine.get(key).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(format!("machine.{key} is not a non-empty string"));
        }
    }
    let rows = doc["results"].as_array().filter(|r| !r.is_empty()).ok_or("results is not a non-empty array")?;
    let positive = |row: &serde_json::Map<String, Value>, key: &str| {
        row.get(key).and_then(Value::as_f64).filter(|v| *v > 0.0).ok_or(format!("{key} is not a positive number"))
    };
    for (i, row) in rows.iter().enumerate() {
        let row = obj(row, &format!("results[{i}]"))?;
        let at = |e: String| format!("results[{i}]: {e}");
        let text = |key: &str, allowed: &[&str]| {
            row.get(key).and_then(Value::as_str).filter(|v| allowed.contains(v)).ok_or(at(format!("bad {key}")))
        };
        if row.get("mechanism") == Some(&json!("pubsub")) {
            check_pubsub_row(&row).map_err(at)?;
            continue;
        }
        let mech = text("mechanism", &BENCH_MECHANISMS)?;
        let imp = text("impl", &["ipc-kit", "raw"])?;
        let test = text("test", &["rtt", "stream", "batch"])?;
        let size = row.get("size").and_then(Value::as_u64).filter(|s| *s > 0).ok_or(at("bad size".into()))?;
        if BENCH_REFERENCES.contains(&mech) && imp != "raw" {
            return Err(at(format!("{mech} rows are raw only")));
        }
        if mech.starts_with("shm-line") && (test != "rtt" || !(8..=64).contains(&size)) {
            return Err(at(format!("{mech} rows are round trips of 8 to 64 bytes")));
        }
        if (test == "batch") != (row.get("batch") == Some(&json!(BENCH_BATCH)))
            || (test == "batch" && mech != "shm-channel")
        {
            return Err(at(format!("batch rows are shm-channel's, with \"batch\": {BENCH_BATCH}")));
        }
        let channel = matches!(mech, "shm-channel" | "shm-byte-channel");
        for key in ["vs_limit", "vs_lines"] {
            if row.contains_key(key) && (test != "rtt" || !channel || positive(&row, key).is_err()) {
                return Err(at(format!("{key} belongs to the channels' round trips and is positive")));
            }
        }
        let (fields, absent): (&[&str], &[&str]) = match test {
            "rtt" => (&["p50_ns", "p99_ns", "p999_ns"], &["msgs_per_s", "bytes_per_s"]),
            _ => (&["msgs_per_s", "bytes_per_s"], &["p50_ns", "p99_ns", "p999_ns", "samples"]),
        };
        let values: Vec<f64> = fields.iter().map(|k| positive(&row, k).map_err(at)).collect::<Result<_, _>>()?;
        if let Some(k) = absent.iter().find(|k| row.contains_key(**k)) {
            return Err(at(format!("{test} row has {k}")));
        }
        if test == "rtt" && !(values[0] <= values[1] && values[1] <= values[2]) {
            return Err(at("percentiles out of order".into()));
        }
        if test != "rtt" && (values[1] - values[0] * size as f64).abs() > size as f64 + 1.0 {
            return Err(at("bytes_per_s is not msgs_per_s times size".into()));
        }
        for key in row.keys() {
            let documented = [
                "mechanism",
                "impl",
                "test",
                "size",
                "placement",
                "pairs",
                "samples",
                "vs_raw",
                "vs_limit",
                "vs_lines",
                "batch",
            ];
            if !documented.contains(&key.as_str()) && !fields.contains(&key.as_str()) {
                return Err(at(format!("undocumented field {key}")));
            }
        }
        if row.contains_key("vs_raw") && (imp != "ipc-kit" || positive(&row, "vs_raw").is_err()) {
            return Err(at("vs_raw belongs to ipc-kit rows and is positive".into()));
        }
        if row.contains_key("placement") {
            text("placement", &["near", "far", "single"])?;
        }
        let same = |r: &&Value, imp: &str| {
            r["mechanism"] == json!(mech)
                && r["test"] == json!(test)
                && r["size"] == json!(size)
                && r["impl"] == json!(imp)
        };
        if imp == "ipc-kit" && !rows.iter().any(|r| same(&r, "raw")) {
            return Err(at("an ipc-kit row without its raw row".into()));
        }
    }
    Ok(())
}

/// Checks a `"mechanism": "pubsub"` row (docs/bench.md): one publisher,
/// a count of subscribers, the publisher's cost and each subscriber's
/// rate.
fn check_pubsub_row(row: &serde_json::Map<String, Value>) -> Result<(), String> {
    let num = |key: &str| row.get(key).and_then(Value::as_f64).ok_or(format!("{key} is not a number"));
    let documented = [
        "mechanism",
        "impl",
        "test",
        "size",
        "policy",
        "subscribers",
        "publisher_ns_per_msg",
        "publisher_cpu_ns_per_msg",
        "vs_one_subscriber",
        "subscriber_msgs_per_s",
        "delivered_msgs_per_s",
        "lost_fraction",
        "runs",
    ];
    if let Some(k) = row.keys().find(|k| !documented.contains(&k.as_str())) {
        return Err(format!("undocumented field {k}"));
    }
    if row.get("impl") != Some(&json!("ipc-kit")) || row.get("test") != Some(&json!("publish")) {
        return Err("pubsub rows are ipc-kit's, test publish".into());
    }
    if !matches!(row.get("policy").and_then(Value::as_str), Some("block" | "overwrite")) {
        return Err("bad policy".into());
    }
    let subs = row.get("subscribers").and_then(Value::as_u64).filter(|n| [1, 2, 4, 8].contains(n));
    let subs = subs.ok_or("subscribers is not 1, 2, 4 or 8")?;
    for key in ["size", "publisher_ns_per_msg", "vs_one_subscriber", "delivered_msgs_per_s", "runs"] {
        if num(key)? <= 0.0 {
            return Err(format!("{key} is not positive"));
        }
    }
    if num("publisher_cpu_ns_per_msg")? < 0.0 || !(0.0..=1.0).contains(&num("lost_fraction")?) {
        return Err("a negative CPU time or a lost fraction out of 0..1".into());
    }
    let rates = row.get("subscriber_msgs_per_s").and_then(Value::as_array).ok_or("no subscriber_msgs_per_s")?;
    if rates.len() as u64 != subs || rates.iter().any(|r| r.as_f64().is_none_or(|r| r < 0.0)) {
        return Err("subscriber_msgs_per_s is not one rate per subscriber".into());
    }
    Ok(())
}

fn cli_bench_json_follows_the_schema() {
    let dir = ScratchDir::new();
    let (json_path, svg_path) = (dir.path().join("bench.json"), dir.path().join("bench.svg"));
    let out = Command::new(ipc_kit_tests::ipc_kit_bin())
        .args(["bench", "--quick", "--json"])
        .arg(&json_path)
        .arg("--svg")
        .arg(&svg_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench failed: {}{stdout}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    check_bench_schema(&doc).unwrap();
    // Every mechanism at every default size it can carry, both tests, and
    // ipc-kit beside raw wherever ipc-kit has a side.
    let rows = doc["results"].as_array().unwrap();
    for mech in BENCH_MECHANISMS {
        for test in ["rtt", "stream", "batch"] {
            for size in [64u64, 4096, 65536] {
                if size > 8192 && (mech == "posix-mq" || mech == "sysv-msgq") {
                    continue;
                }
                if (test == "batch" && mech != "shm-channel")
                    || (mech.starts_with("shm-line") && (test != "rtt" || size > 64))
                {
                    continue;
                }
                for imp in ["ipc-kit", "raw"] {
                    if imp == "ipc-kit" && BENCH_REFERENCES.contains(&mech) {
                        continue;
                    }
                    let found = rows.iter().any(|r| {
                        r["mechanism"] == json!(mech)
                            && r["test"] == json!(test)
                            && r["size"] == json!(size)
                            && r["impl"] == json!(imp)
                    });
                    assert!(found, "no {imp} {mech} {test} row at {size} B");
                }
            }
        }
    }
    // Publish/subscribe: each policy with 1, 2, 4 and 8 subscribers.
    for policy in ["block", "overwrite"] {
        for subs in [1, 2, 4, 8] {
            let found = rows.iter().any(|r| {
                r["mechanism"] == json!("pubsub") && r["policy"] == json!(policy) && r["subscribers"] == json!(subs)
            });
            assert!(found, "no pubsub {policy} row with {subs} subscribers");
        }
    }
    assert!(stdout.contains("pubsub overwrite: the publisher's cost per message"), "{stdout}");
    assert!(stdout.contains("round trip") && stdout.contains("stream"), "the tables: {stdout}");
    // The channels' round trips at 64 B are set against both limits.
    for mech in ["shm-channel", "shm-byte-channel"] {
        let row =
            rows.iter().find(|r| r["mechanism"] == json!(mech) && r["test"] == json!("rtt") && r["size"] == json!(64));
        for key in ["vs_limit", "vs_lines"] {
            assert!(row.is_some_and(|r| r[key].as_f64().is_some_and(|v| v > 0.0)), "{mech}: no {key}");
        }
    }
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("shm-channel 64 B"), "the chart");
    // A service's connect time, after the tables and in the document.
    assert!(stdout.contains("service connect and handshake"), "{stdout}");
    let connect = &doc["service_connect"];
    assert!(connect["p50_ns"].as_u64().is_some_and(|p| p > 0) && connect["samples"] == json!(50), "{connect}");
}

fn bench_schema_check_rejects_broken_documents() {
    let good = json!({
        "schema": 1,
        "machine": {"cpus": 2, "cpu": "x", "kernel": "6.1"},
        "results": [
            {"mechanism": "pipe", "impl": "ipc-kit", "test": "rtt", "size": 64,
             "p50_ns": 10, "p99_ns": 20, "p999_ns": 30, "vs_raw": 1.0},
            {"mechanism": "pipe", "impl": "raw", "test": "rtt", "size": 64, "p50_ns": 10, "p99_ns": 20, "p999_ns": 30},
            {"mechanism": "unix-socket", "impl": "raw", "test": "stream", "size": 64,
             "msgs_per_s": 1000.0, "bytes_per_s": 64000.0},
            {"mechanism": "shm-channel", "impl": "ipc-kit", "test": "rtt", "size": 64,
             "p50_ns": 10, "p99_ns": 20, "p999_ns": 30, "vs_raw": 1.0, "vs_limit": 1.2, "vs_lines": 1.1},
            {"mechanism": "shm-channel", "impl": "raw", "test": "rtt", "size": 64,
             "p50_ns": 10, "p99_ns": 20, "p999_ns": 30, "vs_limit": 1.2},
            {"mechanism": "shm-line", "impl": "raw", "test": "rtt", "size": 64, "p50_ns": 8, "p99_ns": 20, "p999_ns": 30},
            {"mechanism": "shm-channel", "impl": "ipc-kit", "test": "batch", "size": 64, "batch": 64,
             "msgs_per_s": 1000.0, "bytes_per_s": 64000.0, "vs_raw": 1.0},
            {"mechanism": "shm-channel", "impl": "raw", "test": "batch", "size": 64, "batch": 64,
             "msgs_per_s": 1000.0, "bytes_per_s": 64000.0},
            {"mechanism": "pubsub", "impl": "ipc-kit", "test": "publish", "size": 64, "policy": "block",
             "subscribers": 2, "publisher_ns_per_msg": 30.0, "publisher_cpu_ns_per_msg": 29.0,
             "vs_one_subscriber": 1.1, "subscriber_msgs_per_s": [1.0e6, 2.0e6], "delivered_msgs_per_s": 3.0e6,
             "lost_fraction": 0.0, "runs": 3},
        ]
    });
    check_bench_schema(&good).unwrap();
    let broken: [fn(&mut Value); 22] = [
        |d| d["results"][8]["subscribers"] = json!(3),
        |d| d["results"][8]["subscriber_msgs_per_s"] = json!([1.0]),
        |d| d["results"][8]["policy"] = json!("drop"),
        |d| d["results"][8]["lost_fraction"] = json!(2.0),
        |d| d["schema"] = json!(2),
        |d| d["machine"]["cpus"] = json!(0),
        |d| d["results"] = json!([]),
        |d| d["results"][0]["mechanism"] = json!("carrier-pigeon"),
        |d| d["results"][0]["p99_ns"] = json!(5),
        |d| d["results"][1]["msgs_per_s"] = json!(5),
        |d| d["results"][2]["bytes_per_s"] = json!(1.0),
        |d| d["results"][2]["impl"] = json!("ipc-kit"),
        |d| {
            d["results"].as_array_mut().unwrap().remove(1);
        },
        |d| d["results"][5]["impl"] = json!("ipc-kit"),
        |d| d["results"][5]["size"] = json!(4096),
        |d| d["results"][0]["vs_limit"] = json!(1.0),
        |d| d["results"][3]["vs_limit"] = json!(0),
        |d| d["results"][0]["vs_lines"] = json!(1.0),
        |d| d["results"][3]["vs_lines"] = json!(-1.0),
        |d| {
            d["results"][5]["mechanism"] = json!("shm-lines");
            d["results"][5]["impl"] = json!("ipc-kit");
        },
        |d| d["results"][6]["batch"] = json!(8),
        |d| {
            d["results"][6].as_object_mut().unwrap().remove("batch");
        },
    ];
    for (i, breaks) in broken.iter().enumerate() {
        let mut doc = good.clone();
        breaks(&mut doc);
        assert!(check_bench_schema(&doc).is_err(), "broken document {i} passed");
    }
}

/// Issue findings: `sysv:0x100000001` reached the queue of key 1 (and
/// `sysv-id:` wrapped the same way), so a message went to the wrong queue;
/// `rm --dry-run` of bogus addresses said "would remove" and exited 0. Keys
/// and ids outside their C types now exit 2, and a dry run checks each
/// address as a removal would.
fn cli_keys_and_ids_never_wrap_and_dry_runs_check_addresses() {
    let key = 0x1f00_0000 | (std::process::id() as i32 & 0xffff);
    let q = SysvQueue::create(Key::new(key).unwrap(), 0o600).unwrap();
    let wrapped_key = format!("sysv:{:#x}", i64::from(key) + (1 << 32));
    let wrapped_id = format!("sysv-id:{}", i64::from(q.id()) + (1 << 32));
    for address in [
        wrapped_key.as_str(),
        wrapped_id.as_str(),
        "sysv:-2147483649",
        "sysv-id:-1",
        "sysv-id:-0",
        "sysv:0x-10",
        "sysv:+16",
        "sysv-id:+3",
    ] {
        let out = run(&["send", address, "misdelivered"]);
        assert_eq!(out.status.code(), Some(2), "{address}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut buf = Vec::new();
    assert!(q.try_recv_vec(ipc_kit::msgq::Selector::Any, &mut buf).is_err(), "nothing reached the queue");
    // Keys as their unsigned bits still work: the same queue, written in hex.
    let out = run(&["send", &format!("sysv:{:#x}", key as u32), "right"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Dry runs: a real object would be removed; bogus and missing ones fail.
    let real = format!("msg-id:{}", q.id());
    let out = run(&["rm", "--dry-run", &real]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for bogus in
        ["gizmo:1", "msg-id:notanid", "msg-id:-5", "msg-id:-0", "msg-id:+5", "posix-mq:no-slash", "shm-id:2147483000"]
    {
        let out = run(&["rm", "--dry-run", bogus]);
        assert_eq!(out.status.code(), Some(2), "{bogus}: {}", String::from_utf8_lossy(&out.stdout));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("would remove"), "{bogus}");
    }
    q.remove().unwrap();
}

/// Issue finding: `ls` showed every POSIX queue as "80 B" (the length of
/// the mqueue file's status line), full or empty; it now shows the bytes
/// queued.
fn cli_ls_shows_the_bytes_a_posix_queue_holds() {
    if !ipc_kit_tests::private_mount_namespace("mounting an mqueue file system") {
        return;
    }
    std::fs::create_dir_all("/dev/mqueue").unwrap();
    nix::mount::mount(Some("mqueue"), "/dev/mqueue", Some("mqueue"), nix::mount::MsFlags::empty(), None::<&str>)
        .unwrap();
    let name = format!("/{}", unique_name("ipc-kit-test-mq"));
    let q = PosixQueue::create(&name, QueueAttr::default(), 0o600).unwrap();
    let addr = format!("posix-mq:{name}");
    let size = || listed().into_iter().find(|o| o["address"] == addr.as_str()).map(|o| o["size"].clone());
    assert_eq!(size(), Some(json!(0)), "an empty queue holds 0 bytes");
    for _ in 0..3 {
        q.send(&[7; 10], 0).unwrap();
    }
    assert_eq!(size(), Some(json!(30)), "three messages of 10 bytes");
}

/// Issue finding: `recv` printed binary messages lossily. `--raw` writes
/// the bytes exactly, and `--json` carries them in hex.
fn cli_recv_gives_binary_messages_exactly() {
    let key = Key::new(0x1f30_0000 | (std::process::id() as i32 & 0xffff)).unwrap();
    let q = SysvQueue::create(key, 0o600).unwrap();
    let message: Vec<u8> = (0..=255u8).rev().chain([0xff, 0xfe, b'\n', 0]).collect();
    let address = format!("sysv:{}", key.raw());
    q.send(1, &message).unwrap();
    let out = run(&["recv", &address, "--raw"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, message, "--raw gives every byte, and nothing else");
    q.send(1, &message).unwrap();
    let out = run(&["recv", &address, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hex: String = message.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!((v["hex"].as_str(), v["bytes"].as_u64()), (Some(hex.as_str()), Some(message.len() as u64)));
    q.remove().unwrap();
}

/// Issue finding: a name with a newline broke `ls`'s table, and a name
/// that is not UTF-8, printed by `ls`, could not be given to `rm`. Names
/// are escaped (`\n` as `\x0a`, bad bytes as `\xNN`, a backslash doubled)
/// and `rm` takes the escaped form back.
fn cli_ls_escapes_names_and_rm_takes_them_back() {
    use std::os::unix::ffi::OsStrExt;
    let stem = unique_name("ipc-kit-test-name");
    let names: [Vec<u8>; 3] = [
        [stem.as_bytes(), b"-line\nbreak"].concat(),
        [stem.as_bytes(), b"-bytes\xff\xfe"].concat(),
        [stem.as_bytes(), b"-back\\slash"].concat(),
    ];
    let escaped =
        [format!("{stem}-line\\x0abreak"), format!("{stem}-bytes\\xff\\xfe"), format!("{stem}-back\\\\slash")];
    let path = |n: &[u8]| std::path::Path::new("/dev/shm").join(std::ffi::OsStr::from_bytes(n));
    /// Removes what is left of the files, also when the case fails.
    struct Leftovers(Vec<PathBuf>);
    impl Drop for Leftovers {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let _leftovers = Leftovers(names.iter().map(|n| path(n)).collect());
    for n in &names {
        std::fs::write(path(n), b"x").unwrap();
    }
    let table = String::from_utf8(run(&["ls"]).stdout).unwrap();
    for e in &escaped {
        let addr = format!("posix-shm:/{e}");
        assert!(table.lines().any(|l| l.contains(&addr)), "{addr} on one line of the table:\n{table}");
        assert!(listed().iter().any(|o| o["address"] == addr.as_str()), "{addr} in --json");
        let out = run(&["rm", "--dry-run", &addr]);
        assert!(out.status.success(), "{addr}: {}", String::from_utf8_lossy(&out.stderr));
        let out = run(&["rm", &addr]);
        assert!(out.status.success(), "{addr}: {}", String::from_utf8_lossy(&out.stderr));
    }
    for n in &names {
        assert!(!path(n).exists(), "rm removed {:?}", String::from_utf8_lossy(n));
    }
}

/// `bench --async --quick --json`: a round trip and a stream row for every
/// mechanism through the async traits, and for tokio's UnixStream and
/// pipe; each ipc-kit row set against its tokio reference.
fn cli_bench_async_rows_for_every_mechanism_and_tokio() {
    let dir = ScratchDir::new();
    let path = dir.path().join("async.json");
    let out = Command::new(ipc_kit_tests::ipc_kit_bin())
        .args(["bench", "--async", "--quick", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench --async failed: {}{stdout}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(doc["schema"], json!(1));
    assert_eq!(doc["settings"]["async"], json!(true));
    let rows = doc["results"].as_array().expect("results");
    let mut expected: Vec<(&str, &str)> = ipc_kit::Mechanism::ALL.iter().map(|m| (m.name(), "ipc-kit-async")).collect();
    expected.extend([("unix-socket", "tokio"), ("pipe", "tokio")]);
    for (mech, imp) in expected {
        for test in ["rtt", "stream"] {
            let row = rows
                .iter()
                .find(|r| r["mechanism"] == json!(mech) && r["impl"] == json!(imp) && r["test"] == json!(test))
                .unwrap_or_else(|| panic!("no {imp} {mech} {test} row"));
            assert_eq!(row["size"], json!(64));
            let key = if test == "rtt" { "p50_ns" } else { "msgs_per_s" };
            assert!(row[key].as_f64().is_some_and(|v| v > 0.0), "{imp} {mech} {test}: {key}");
            assert_eq!(row.get("vs_tokio").is_some(), imp == "ipc-kit-async", "{imp} {mech} {test}: vs_tokio");
            if let Some(v) = row.get("vs_tokio") {
                assert!(v.as_f64().is_some_and(|v| v > 0.0), "{imp} {mech} {test}: vs_tokio {v}");
            }
        }
    }
}
