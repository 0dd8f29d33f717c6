//! What the comparison prints and writes: the tables, the JSON document
//! (schema 1, documented in docs/bench.md) and the verdict lines.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};
use serde_json::{Value, json};

use super::compare::{BATCH, CellResult, Figures, Kept, Limits, Plan, Test};
use super::mech::Mech;
use super::method::Impl;
use crate::sys::ring::Ways;

/// The machine the figures come from.
#[derive(Clone, Debug)]
pub(crate) struct Machine {
    pub(crate) cpus: usize,
    pub(crate) cpu: String,
    pub(crate) kernel: String,
}

impl Machine {
    pub(crate) fn this() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim()))
            .unwrap_or("unknown")
            .to_string();
        let kernel =
            std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or("unknown".into(), |s| s.trim().into());
        Machine { cpus: std::thread::available_parallelism().map_or(1, |n| n.get()), cpu, kernel }
    }

    pub(crate) fn describe(&self) -> String {
        format!("{} CPUs, {}, Linux {}", self.cpus, self.cpu, self.kernel)
    }
}

/// The JSON document: `{"schema":1,"machine":{…},"settings":{…},
/// "results":[…],"skipped":[…]}`.
pub(crate) fn json(machine: &Machine, plan: &Plan, results: &[CellResult]) -> Value {
    let mut rows = Vec::new();
    for r in results {
        let c = r.cell;
        let mut push = |imp: Impl, f: &Figures, vs_raw: Option<f64>| {
            let vs_limit = r.vs(Some(f), |l| l.line);
            let vs_lines = r.vs(Some(f), |l| l.lines);
            let mut row = json!({
                "mechanism": c.mech.name(),
                "impl": imp.name(),
                "test": c.test.name(),
                "size": c.size,
                "placement": r.kept.placement.name(),
                "pairs": r.kept.pairs,
            });
            match f {
                Figures::Rtt { p50, p99, p999, samples } => {
                    row["p50_ns"] = json!(p50);
                    row["p99_ns"] = json!(p99);
                    row["p999_ns"] = json!(p999);
                    row["samples"] = json!(samples);
                }
                Figures::Stream { msgs_per_s, bytes_per_s } => {
                    row["msgs_per_s"] = json!(msgs_per_s.round());
                    row["bytes_per_s"] = json!(bytes_per_s.round());
                }
            }
            if let Some(v) = vs_raw {
                row["vs_raw"] = json!((v * 1000.0).round() / 1000.0);
            }
            if let Some(v) = vs_limit {
                row["vs_limit"] = json!((v * 1000.0).round() / 1000.0);
            }
            if let Some(v) = vs_lines {
                row["vs_lines"] = json!((v * 1000.0).round() / 1000.0);
            }
            if c.test == Test::Batch {
                row["batch"] = json!(BATCH);
            }
            rows.push(row);
        };
        if let Some(f) = &r.ipc_kit {
            push(Impl::IpcKit, f, r.vs_raw);
        }
        push(Impl::Raw, &r.raw, None);
    }
    json!({
        "schema": 1,
        "machine": { "cpus": machine.cpus, "cpu": machine.cpu, "kernel": machine.kernel },
        "settings": {
            "pairs": plan.pairs,
            "run_ms": plan.run_time.as_millis() as u64,
            "pinned": plan.pinned,
        },
        "results": rows,
        "skipped": plan.skipped,
    })
}

/// `1234` ns as `1.23 µs`.
pub(crate) fn nanos(ns: u64) -> String {
    let v = ns as f64;
    if v < 1e3 {
        format!("{ns} ns")
    } else if v < 1e4 {
        format!("{:.2} µs", v / 1e3)
    } else if v < 1e5 {
        format!("{:.1} µs", v / 1e3)
    } else if v < 1e6 {
        format!("{:.0} µs", v / 1e3)
    } else if v < 1e9 {
        format!("{:.2} ms", v / 1e6)
    } else {
        format!("{:.2} s", v / 1e9)
    }
}

/// A rate with an SI prefix: `2.41 M`.
pub(crate) fn si(v: f64) -> String {
    let (div, prefix) = match v {
        v if v >= 1e9 => (1e9, "G"),
        v if v >= 1e6 => (1e6, "M"),
        v if v >= 1e3 => (1e3, "k"),
        _ => (1.0, ""),
    };
    let x = v / div;
    let digits = if x >= 100.0 {
        0
    } else if x >= 10.0 {
        1
    } else {
        2
    };
    format!("{x:.digits$} {prefix}")
}

/// The pairs kept, such as `5 near (1 moved dropped)`.
fn pairs_note(kept: Kept) -> String {
    let mut s = format!("{} {}", kept.pairs, kept.placement.name());
    let dropped: Vec<String> = [(kept.dropped, "far"), (kept.moved, "moved")]
        .into_iter()
        .filter(|&(n, _)| n > 0)
        .map(|(n, why)| format!("{n} {why}"))
        .collect();
    if !dropped.is_empty() {
        s += &format!(" ({} dropped)", dropped.join(", "));
    }
    s
}

fn ratio(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}×"))
}

/// A side's cells in its table: p50, p99 and p99.9 of a round trip, or
/// messages and bytes per second of a stream; dashes where it has none.
fn figure_cells(test: Test, figures: Option<&Figures>) -> Vec<String> {
    match (test, figures) {
        (_, Some(Figures::Rtt { p50, p99, p999, .. })) => vec![nanos(*p50), nanos(*p99), nanos(*p999)],
        (_, Some(Figures::Stream { msgs_per_s, bytes_per_s })) => {
            vec![si(*msgs_per_s), format!("{}B", si(*bytes_per_s))]
        }
        (Test::Rtt, None) => vec!["-".into(); 3],
        (Test::Stream | Test::Batch, None) => vec!["-".into(); 2],
    }
}

/// The two tables: round trips, then streams.
pub(crate) fn tables(results: &[CellResult]) -> String {
    let mut out = String::new();
    let table = |header: &[&str]| {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED).set_header(header.to_vec());
        t
    };
    let mut rtt = table(&[
        "round trip",
        "size",
        "ipc-kit p50",
        "p99",
        "p99.9",
        "raw p50",
        "p99",
        "p99.9",
        "ipc-kit ÷ raw",
        "÷ limit",
        "÷ 2 lines",
        "pairs",
    ]);
    let mut stream =
        table(&["stream", "size", "ipc-kit msgs/s", "bytes/s", "raw msgs/s", "bytes/s", "ipc-kit ÷ raw", "pairs"]);
    for r in results {
        let c = r.cell;
        let mut row = vec![row_name(r), size(c.size)];
        row.extend(figure_cells(c.test, r.ipc_kit.as_ref()));
        row.extend(figure_cells(c.test, Some(&r.raw)));
        row.push(ratio(r.vs_raw));
        if c.test == Test::Rtt {
            for limit in [|l: Limits| l.line, |l: Limits| l.lines] {
                row.push(r.vs(r.ipc_kit.as_ref(), limit).map_or("-".into(), |v| format!("{v:.2}×")));
            }
        }
        row.push(pairs_note(r.kept));
        match c.test {
            Test::Rtt => rtt.add_row(row),
            Test::Stream | Test::Batch => stream.add_row(row),
        };
    }
    for t in [&mut rtt, &mut stream] {
        for i in 1..t.column_count() {
            if let Some(col) = t.column_mut(i) {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    out += &format!("{rtt}\n{stream}\n");
    out
}

/// The first cell of a row: the mechanism, and what sets the row apart
/// from the others of its mechanism (the limits; batches).
fn row_name(r: &CellResult) -> String {
    match (r.cell.mech, r.cell.test) {
        (Mech::ShmLine(Ways::Shared), _) => format!("{} (the limit)", r.cell.mech.name()),
        (Mech::ShmLine(Ways::Apart), _) => format!("{} (the limit, a line each way)", r.cell.mech.name()),
        (Mech::Service, _) => "service (its raw: shm-byte-channel)".to_string(),
        (m, Test::Batch) => format!("{} (batches of {BATCH})", m.name()),
        (m, _) => m.name().to_string(),
    }
}

/// `65536` as `64 KiB`.
pub(crate) fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// The verdict lines: the fastest round trip at the smallest size, and the
/// ipc-kit rows below 0.95× of their raw rows.
pub(crate) fn verdicts(results: &[CellResult]) -> Vec<String> {
    let mut lines = Vec::new();
    let rtts: Vec<&CellResult> = results.iter().filter(|r| r.cell.test == Test::Rtt).collect();
    if let Some(smallest) = rtts.iter().map(|r| r.cell.size).min() {
        // Each mechanism by its best p50 at that size.
        let mut best: Vec<(Mech, u64, Impl)> = Vec::new();
        for r in rtts.iter().filter(|r| r.cell.size == smallest) {
            // A service's raw side is another mechanism (the plain channel).
            let raw = (r.cell.mech != Mech::Service).then_some(&r.raw);
            for (f, imp) in [(r.ipc_kit.as_ref(), Impl::IpcKit), (raw, Impl::Raw)] {
                if let Some(Figures::Rtt { p50, .. }) = f {
                    match best.iter_mut().find(|b| b.0 == r.cell.mech) {
                        Some(b) if *p50 < b.1 => *b = (r.cell.mech, *p50, imp),
                        Some(_) => {}
                        None => best.push((r.cell.mech, *p50, imp)),
                    }
                }
            }
        }
        best.sort_by_key(|b| b.1);
        let ranking: Vec<String> =
            best.iter().map(|(m, p, imp)| format!("{} {} ({})", m.name(), nanos(*p), imp.name())).collect();
        lines.push(format!("{} round trip, p50, fastest first: {}", size(smallest), ranking.join(", ")));
    }
    // A service is set against the plain channel, not a raw reference:
    // its own line says how far behind it is.
    for r in results.iter().filter(|r| r.cell.mech == Mech::Service && r.cell.test == Test::Rtt) {
        if let Some(v) = r.vs_raw {
            lines.push(format!(
                "service round trip, {}: {:.2}× the plain channel's p50 (1.3× is the aim)",
                size(r.cell.size),
                1.0 / v
            ));
        }
    }
    let slow: Vec<String> = results
        .iter()
        .filter(|r| r.cell.mech != Mech::Service)
        .filter_map(|r| r.vs_raw.filter(|&v| v < 0.95).map(|v| (r, v)))
        .map(|(r, v)| format!("{} {} {} ({v:.3}×)", r.cell.mech.name(), r.cell.test.name(), size(r.cell.size)))
        .collect();
    lines.push(if slow.is_empty() {
        "every ipc-kit row is within 0.95× of its raw row".into()
    } else {
        format!("ipc-kit rows below 0.95× of raw: {}", slow.join(", "))
    });
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(nanos(152), "152 ns");
        assert_eq!(nanos(48_123), "48.1 µs");
        assert_eq!(nanos(4_812), "4.81 µs");
        assert_eq!(nanos(1_200_000), "1.20 ms");
        assert_eq!(si(2_410_000.0), "2.41 M");
        assert_eq!(si(154_000_000.0), "154 M");
        assert_eq!(size(65536), "64 KiB");
        assert_eq!(size(100), "100 B");
    }

    fn plan() -> Plan {
        Plan::new(&[], &[], 5, std::time::Duration::from_millis(1), false)
    }

    #[test]
    fn tables_have_a_row_per_cell_with_dashes_where_ipc_kit_has_no_side() {
        use ipc_kit::Mechanism;

        use crate::bench::compare::Cell;
        use crate::bench::method::Placement;

        let result = |mech, test, ipc_kit: Option<Figures>, raw| CellResult {
            cell: Cell { mech, test, size: 64 },
            kept: Kept { placement: Placement::Near, pairs: 5, dropped: 0, moved: 1 },
            vs_raw: ipc_kit.as_ref().map(|_| 0.5),
            ipc_kit,
            raw,
            limits: Limits::default(),
        };
        let rtt = |p| Figures::Rtt { p50: p, p99: 2 * p, p999: 3 * p, samples: 10 };
        let stream = |m: f64| Figures::Stream { msgs_per_s: m, bytes_per_s: m * 64.0 };
        let mut results = vec![
            result(Mech::Kit(Mechanism::Pipe), Test::Rtt, Some(rtt(152)), rtt(100)),
            result(Mech::Kit(Mechanism::UnixSocket), Test::Stream, None, stream(2_410_000.0)),
            result(Mech::ShmChannel, Test::Rtt, Some(rtt(152)), rtt(100)),
            result(Mech::ShmChannel, Test::Batch, Some(stream(2_410_000.0)), stream(2_410_000.0)),
            result(Mech::ShmLine(Ways::Shared), Test::Rtt, None, rtt(50)),
            result(Mech::ShmLine(Ways::Apart), Test::Rtt, None, rtt(76)),
        ];
        crate::bench::compare::set_limits(&mut results);
        let text = tables(&results);
        let row = |first: &str| -> Vec<String> {
            let line = text.lines().find(|l| l.contains(first)).unwrap_or_else(|| panic!("no {first} row: {text}"));
            line.split(['│', '┆']).map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect()
        };
        let pairs = "5 near (1 moved dropped)";
        let pipe = [
            Mechanism::Pipe.name(),
            "64 B",
            "152 ns",
            "304 ns",
            "456 ns",
            "100 ns",
            "200 ns",
            "300 ns",
            "0.50×",
            "-",
            "-",
            pairs,
        ];
        assert_eq!(row(Mechanism::Pipe.name()), pipe);
        assert_eq!(row("unix-socket"), ["unix-socket", "64 B", "-", "-", "2.41 M", "154 MB", "-", pairs]);
        // A channel's round trip against the limits: 152 ns over 50 ns,
        // and over 76 ns.
        assert_eq!(row("shm-channel ")[8..11], ["0.50×", "3.04×", "2.00×"]);
        assert_eq!(row("shm-line (the limit)")[2..6], ["-", "-", "-", "50 ns"]);
        assert_eq!(row("shm-lines (the limit, a line each way)")[2..6], ["-", "-", "-", "76 ns"]);
        assert_eq!(row("shm-channel (batches of 64)")[2], "2.41 M");
        let doc = json(&Machine { cpus: 2, cpu: "x".into(), kernel: "y".into() }, &plan(), &results);
        let rows = doc["results"].as_array().expect("rows");
        let limit = |mech: &str, imp: &str, field: &str| {
            rows.iter()
                .find(|r| r["mechanism"] == mech && r["impl"] == imp && r["test"] == "rtt")
                .map(|r| r[field].clone())
        };
        assert_eq!(limit("shm-channel", "ipc-kit", "vs_limit"), Some(serde_json::json!(3.04)));
        assert_eq!(limit("shm-channel", "raw", "vs_limit"), Some(serde_json::json!(2.0)));
        assert_eq!(limit("shm-channel", "ipc-kit", "vs_lines"), Some(serde_json::json!(2.0)));
        assert_eq!(limit("shm-channel", "raw", "vs_lines"), Some(serde_json::json!(1.316)));
        assert_eq!(limit("pipe", "ipc-kit", "vs_limit"), Some(serde_json::Value::Null));
        assert_eq!(limit("shm-line", "raw", "vs_lines"), Some(serde_json::Value::Null));
        assert!(text.find("round trip") < text.find("stream"), "round trips first: {text}");
    }
}
