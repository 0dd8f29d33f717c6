//! The `pubsub` rows: one publisher (ipc-service) publishing 64 B
//! messages as fast as it can to 1, 2, 4 and 8 subscriber processes,
//! under each policy: what each message costs the publisher (wall time
//! and its thread's CPU time), and how many messages each subscriber
//! receives per second.
//!
//! The publisher runs on CPU 0 and every subscriber on CPU 1 (with two
//! CPUs), so that the publisher's figures are its own whatever the count
//! of subscribers; the subscribers share one CPU, which is what bounds
//! their rates. One repetition runs the four counts one after the other
//! (the order turned from repetition to repetition); the ratios are taken
//! within a repetition and their medians reported.

use std::io::{self, Read as _};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipc_kit::service::{Error, Policy, PubSubOptions, Publisher, SocketName, Subscriber};
use serde_json::{Value, json};

use super::method::median;
use crate::sys;

/// The counts of subscribers measured.
pub(crate) const COUNTS: [usize; 4] = [1, 2, 4, 8];
/// The message size.
const SIZE: usize = 64;
/// The ring's slots.
const SLOTS: usize = 4096;

/// What one run measured.
#[derive(Clone, Debug)]
struct Run {
    published: u64,
    wall_ns: u64,
    cpu_ns: u64,
    /// Per subscriber: messages received and lost.
    received: Vec<(u64, u64)>,
}

impl Run {
    fn ns_per_msg(&self) -> f64 {
        self.wall_ns as f64 / self.published.max(1) as f64
    }

    fn cpu_per_msg(&self) -> f64 {
        self.cpu_ns as f64 / self.published.max(1) as f64
    }

    /// Each subscriber's messages per second of publishing.
    fn rates(&self) -> Vec<f64> {
        self.received.iter().map(|(r, _)| *r as f64 * 1e9 / self.wall_ns.max(1) as f64).collect()
    }
}

/// The figures of one policy and count, over the repetitions.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) policy: Policy,
    pub(crate) subscribers: usize,
    pub(crate) ns_per_msg: f64,
    pub(crate) cpu_ns_per_msg: f64,
    /// The median over repetitions of the ratio to one subscriber's cost.
    pub(crate) vs_one: f64,
    /// Each subscriber's rate (its median), slowest first.
    pub(crate) rates: Vec<f64>,
    pub(crate) delivered: f64,
    pub(crate) lost_fraction: f64,
    pub(crate) runs: usize,
}

fn policy_name(p: Policy) -> &'static str {
    match p {
        Policy::Block => "block",
        _ => "overwrite",
    }
}

fn fresh_name() -> io::Result<SocketName> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("@ipc-kit-bench-pubsub-{}-{n}", std::process::id()).parse().map_err(io::Error::from)
}

/// This thread's CPU time.
fn cpu_now() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(0, |t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

/// A subscriber process's loop: joins (the publisher may not be bound
/// yet), receives until the publisher is gone, and reports what it
/// received and lost.
fn subscribe(name: &SocketName, report: &mut impl io::Write) -> io::Result<()> {
    let start = Instant::now();
    let mut sub = loop {
        match Subscriber::connect_timeout(name, Duration::from_secs(1)) {
            Ok(s) => break s,
            Err(_) if start.elapsed() < Duration::from_secs(10) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(e.into()),
        }
    };
    let (mut received, mut sum) = (0u64, 0u64);
    loop {
        match sub.recv_with(|b| b.first().copied().unwrap_or(0)) {
            Ok(b) => {
                received += 1;
                sum = sum.wrapping_add(u64::from(b));
            }
            Err(Error::Lagged { .. }) => {}
            Err(Error::Disconnected) => break,
            Err(e) => return Err(e.into()),
        }
    }
    std::hint::black_box(sum);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&received.to_le_bytes());
    out[8..].copy_from_slice(&sub.lagged().to_le_bytes());
    report.write_all(&out)
}

/// One run: `count` subscriber processes (forked first, while this
/// process has one thread), then the publisher here for `run_time`.
fn run(policy: Policy, count: usize, run_time: Duration, pinned: bool) -> io::Result<Run> {
    let name = fresh_name()?;
    let (mut reports, report_w) = io::pipe()?;
    let mut pids = Vec::new();
    for _ in 0..count {
        match sys::fork()? {
            sys::Forked::Child => {
                sys::die_with_parent();
                if pinned {
                    sys::pin_to_cpu(1);
                }
                let mut w = report_w;
                let ok = subscribe(&name, &mut w).is_ok();
                sys::exit_now(if ok { 0 } else { 1 });
            }
            sys::Forked::Parent(pid) => pids.push(pid),
        }
    }
    drop(report_w);
    let measured = publish(&name, policy, count, run_time);
    let mut received = Vec::new();
    let mut buf = [0u8; 16];
    for _ in 0..count {
        if reports.read_exact(&mut buf).is_err() {
            break;
        }
        let word = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().unwrap_or([0; 8]));
        received.push((word(0), word(8)));
    }
    let mut failed = 0;
    for pid in pids {
        if sys::wait(pid)? != 0 {
            failed += 1;
        }
    }
    let (published, wall_ns, cpu_ns) = measured?;
    if failed > 0 || received.len() != count {
        return Err(io::Error::other(format!("{failed} of {count} subscribers failed")));
    }
    Ok(Run { published, wall_ns, cpu_ns, received })
}

/// The publisher's side of a run: binds, waits for the subscribers,
/// publishes for `run_time`; its count, wall time and CPU time.
fn publish(name: &SocketName, policy: Policy, count: usize, run_time: Duration) -> io::Result<(u64, u64, u64)> {
    let options =
        PubSubOptions { policy, capacity: SLOTS, max_message: SIZE, max_subscribers: 8, ..Default::default() };
    let mut publisher = Publisher::bind(name, options)?;
    let start = Instant::now();
    while publisher.subscribers() < count {
        if start.elapsed() > Duration::from_secs(20) {
            return Err(io::Error::other("the subscribers did not come"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut msg = [0u8; SIZE];
    let (t0, c0) = (Instant::now(), cpu_now());
    let mut n = 0u64;
    while t0.elapsed() < run_time {
        for _ in 0..256 {
            msg[0] = n as u8;
            publisher.publish(&msg)?;
            n += 1;
        }
    }
    let (wall, cpu) = (t0.elapsed().as_nanos() as u64, cpu_now().saturating_sub(c0));
    drop(publisher);
    Ok((n, wall, cpu))
}

/// Runs every policy and count `reps` times; `tick` after each run.
pub(crate) fn measure(reps: u32, run_time: Duration, pinned: bool, mut tick: impl FnMut()) -> io::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for policy in [Policy::Overwrite, Policy::Block] {
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); COUNTS.len()];
        for rep in 0..reps {
            for k in 0..COUNTS.len() {
                let at = (k + rep as usize) % COUNTS.len();
                runs[at].push(run(policy, COUNTS[at], run_time, pinned)?);
                tick();
            }
        }
        for (at, &count) in COUNTS.iter().enumerate() {
            let these = &runs[at];
            let vs_one = median(these.iter().zip(&runs[0]).map(|(r, one)| r.ns_per_msg() / one.ns_per_msg()));
            let mut rates: Vec<f64> =
                (0..count).map(|i| median(these.iter().map(|r| r.rates()[i]))).collect::<Vec<_>>();
            rates.sort_by(f64::total_cmp);
            let lost = median(these.iter().map(|r| {
                let (got, lost): (u64, u64) = r.received.iter().fold((0, 0), |a, x| (a.0 + x.0, a.1 + x.1));
                lost as f64 / (got + lost).max(1) as f64
            }));
            rows.push(Row {
                policy,
                subscribers: count,
                ns_per_msg: median(these.iter().map(Run::ns_per_msg)),
                cpu_ns_per_msg: median(these.iter().map(Run::cpu_per_msg)),
                vs_one,
                delivered: median(these.iter().map(|r| r.rates().iter().sum())),
                rates,
                lost_fraction: lost,
                runs: these.len(),
            });
        }
    }
    Ok(rows)
}

/// Runs in all.
pub(crate) fn runs(reps: u32) -> u64 {
    2 * COUNTS.len() as u64 * u64::from(reps)
}

/// The rows as text: a table, and the verdict on the publisher's cost
/// under `Overwrite`.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "\npubsub: one publisher, {SIZE} B messages, {SLOTS} slots; publisher on CPU 0, every subscriber on CPU 1\n"
    );
    out += &format!(
        "{:<10} {:>4}  {:>12} {:>12} {:>8}  {:>14} {:>14} {:>14} {:>6}\n",
        "policy", "subs", "pub ns/msg", "pub cpu ns", "vs 1", "slowest sub/s", "fastest sub/s", "delivered/s", "lost"
    );
    for r in rows {
        out += &format!(
            "{:<10} {:>4}  {:>12.1} {:>12.1} {:>7.2}x  {:>14} {:>14} {:>14} {:>5.1}%\n",
            policy_name(r.policy),
            r.subscribers,
            r.ns_per_msg,
            r.cpu_ns_per_msg,
            r.vs_one,
            rate(r.rates.first().copied().unwrap_or(0.0)),
            rate(r.rates.last().copied().unwrap_or(0.0)),
            rate(r.delivered),
            r.lost_fraction * 100.0
        );
    }
    if let Some(eight) = rows.iter().find(|r| r.policy == Policy::Overwrite && r.subscribers == 8) {
        out += &format!(
            "pubsub overwrite: the publisher's cost per message with 8 subscribers is {:.2}x its cost with 1 (1.2x is \
             the most allowed)\n",
            eight.vs_one
        );
    }
    out
}

fn rate(per_s: f64) -> String {
    if per_s >= 1e6 { format!("{:.2} M", per_s / 1e6) } else { format!("{:.0} k", per_s / 1e3) }
}

/// The rows of the JSON output's `results`.
pub(crate) fn json_rows(rows: &[Row]) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            json!({
                "mechanism": "pubsub",
                "impl": "ipc-kit",
                "test": "publish",
                "size": SIZE,
                "policy": policy_name(r.policy),
                "subscribers": r.subscribers,
                "publisher_ns_per_msg": (r.ns_per_msg * 10.0).round() / 10.0,
                "publisher_cpu_ns_per_msg": (r.cpu_ns_per_msg * 10.0).round() / 10.0,
                "vs_one_subscriber": (r.vs_one * 1000.0).round() / 1000.0,
                "subscriber_msgs_per_s": r.rates.iter().map(|x| x.round()).collect::<Vec<_>>(),
                "delivered_msgs_per_s": r.delivered.round(),
                "lost_fraction": (r.lost_fraction * 1e4).round() / 1e4,
                "runs": r.runs,
            })
        })
        .collect()
}
