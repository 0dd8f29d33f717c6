//! `ipc-kit bench`: the measurement method.
//!
//! Two vCPUs of a virtual machine can sit near each other or far apart,
//! and the host may move them at any time; figures change several times
//! over with it. So ipc-kit and the raw libc implementation run alternately
//! in pairs (the order swapped from pair to pair), each pair is preceded and
//! followed by a probe of the placement (a cross-core spin ping-pong). Pairs
//! during which the placement changed are dropped, and so are the pairs of
//! the other placement when there are near ones (reported apart in
//! `--detail`). The two processes are pinned to CPU 0 and CPU 1.
//!
//! The default is the comparison of every mechanism (`compare`); `--detail`
//! runs the workloads of the crates' own benchmarks instead.
//!
//! The files, from the command line down:
//!
//! - `driver`: the options, and what the comparison and `--detail` run
//!   and print.
//! - `method`: ipc-kit against raw in probed pairs, settling, medians, and
//!   the two pinned processes of a run.
//! - The comparison: `mech` (what is compared), `compare` (cells, runs and
//!   their figures), `links` (each mechanism's two sides, with ipc-kit and
//!   with libc; `service` for the connection of a service and its
//!   connect time), `output` (tables, JSON, verdicts) and `chart` (SVG);
//!   `pubsub` for one publisher and 1 to 8 subscribers, measured apart.
//! - `--detail`: `workload` (what a workload is), and the workloads of
//!   `pipe`, `sync` and `channel`.

mod async_bench;
mod channel;
mod chart;
mod compare;
mod driver;
mod link;
mod links;
mod mech;
mod method;
mod output;
mod pipe;
mod pubsub;
mod raw_links;
mod service;
mod sync;
mod workload;

pub(crate) use driver::{Args, run};
