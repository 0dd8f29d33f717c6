//! What a `--detail` workload is (pipe.rs, sync.rs and channel.rs list
//! theirs), and the helpers its runs share.

use std::time::Duration;

use super::method::Impl;

/// How much work one run does.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Size {
    /// Bytes a throughput run moves.
    pub(crate) bytes: u64,
    /// Operations (round trips, lock and unlock pairs) a latency run makes.
    pub(crate) ops: u64,
}

/// What a workload measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Throughput in GB/s: higher is better.
    GigabytesPerSecond,
    /// Time per operation in ns: lower is better.
    NanosPerOp,
}

/// One workload: `run` does one run of it with ipc-kit or the raw
/// implementation and returns its figure in `unit`.
pub(crate) struct Workload {
    pub(crate) name: &'static str,
    pub(crate) unit: Unit,
    pub(crate) run: fn(Impl, Size) -> std::io::Result<f64>,
}

/// Lines a workload adds below the table (such as system calls counted).
static NOTES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Adds a line to print after the results.
pub(crate) fn note(line: String) {
    if let Ok(mut notes) = NOTES.lock() {
        notes.push(line);
    }
}

/// The lines added with [`note`] so far.
pub(crate) fn notes() -> Vec<String> {
    NOTES.lock().map(|n| n.clone()).unwrap_or_default()
}

/// GB/s for `bytes` moved in `elapsed`.
pub(crate) fn gbps(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e9
}

/// Nanoseconds per operation.
pub(crate) fn ns_per_op(ops: u64, elapsed: Duration) -> f64 {
    elapsed.as_nanos() as f64 / ops as f64
}
