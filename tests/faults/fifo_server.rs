//! The FIFO server: honest clients served while garbage writers, killed
//! mid-write, pour bytes into its request FIFO, and a client killed
//! mid-request.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ipc_kit::fifo::{Fifo, FifoClient, FifoServer};
use ipc_kit_tests::record::{decode, encode_len};
use ipc_kit_tests::{Exit, Forked, Rng, checksum, fork};

use crate::harness::{BOUND, Board, Campaign, Corrupted, Failed, Hung, Outcome, Survived, reap_killed};

/// Whether a fourth client, killed at a random point, joins the honest
/// three.
#[derive(Clone, Copy, Debug)]
enum Fourth {
    Absent,
    Doomed,
}

/// A FIFO server (the survivor, under the campaign's one path) and
/// three honest clients, each making `FIFO_REQUESTS` checksummed
/// requests, while garbage writers pour random bytes, frame starts
/// with huge lengths, frames cut short and well-checked frames with
/// malformed requests into the request FIFO, in writes of up to 64 KiB
/// that are not atomic, and are killed at random points (mid-write,
/// mostly). With a doomed fourth client, it makes requests until it is
/// killed, often between sending a request and reading its reply: the
/// server's reply then finds it gone. Every honest request must be
/// answered once, in order, with the right reply, within the bound;
/// after the run, the next server's start must leave the directory
/// empty of everything the run made (request, reply and temporary
/// FIFOs).
pub(crate) fn garbage_writers_killed(c: &mut Campaign, run: u32, _: Duration, rng: &mut Rng) -> Outcome {
    let fourth = if rng.below(2) == 0 { Fourth::Doomed } else { Fourth::Absent };
    const CLIENTS: u32 = 3;
    let path = c.dir.path().join("service");
    let mut server = match FifoServer::create_replacing(&path, 0o600) {
        Ok(s) => s,
        Err(e) => return Failed(format!("start the server: {e}")),
    };
    let board = &c.board;
    for c in 0..=CLIENTS as usize {
        board.word(16 + c).store(0, Ordering::Release);
    }
    let path = path.as_path();
    let writers: Vec<(Forked, Instant)> = (0..3)
        .map(|_| {
            let seed = rng.next_u64();
            // At once one time in eight (the kill lands in its open),
            // else at any time in the first 60 ms of the run (which
            // the honest clients take about).
            let delay = if rng.chance(8) { Duration::ZERO } else { Duration::from_micros(rng.below(60_000)) };
            let at = Instant::now() + delay;
            (fork(move || write_garbage_forever(path, seed, board)), at)
        })
        .collect();
    let mut clients: Vec<Forked> =
        (0..CLIENTS).map(|c| fork(move || honest_client(path, run, c, Some(FIFO_REQUESTS), board))).collect();
    let doomed = matches!(fourth, Fourth::Doomed).then(|| {
        let at = Instant::now() + Duration::from_micros(rng.below(40_000));
        (fork(move || honest_client(path, run, CLIENTS, None, board)), at)
    });
    let was_doomed = doomed.is_some();
    let mut next = [0u64; CLIENTS as usize + 1];
    let mut gone_replies = 0u32;
    let end = Instant::now() + 4 * BOUND;
    // Serve until the honest clients are done, killing each victim
    // when its time comes.
    let verdict = loop {
        let now = Instant::now();
        for (victim, at) in writers.iter().chain(&doomed) {
            if now >= *at {
                victim.kill();
            }
        }
        if now > end {
            break Hung(format!("the honest clients were not done after {:?}", 4 * BOUND));
        }
        let req = match server.recv_timeout(Duration::from_millis(1)) {
            Ok(req) => req,
            Err(ipc_kit::fifo::Error::BadRequest { .. }) => continue,
            Err(ipc_kit::fifo::Error::Timeout { .. }) => {
                if clients.iter_mut().all(|c| c.wait_timeout(Duration::ZERO).is_some()) {
                    break Survived("");
                }
                continue;
            }
            Err(e) => break Failed(format!("receive a request: {e}")),
        };
        // Only honest clients' requests decode: the garbage writers
        // send no well-formed request.
        let Some((p, seq)) = decode(&req.payload) else {
            break Corrupted(format!("a request of {} bytes that no honest client sent", req.payload.len()));
        };
        let c = (p % 16) as usize;
        if p / 16 != run || c > CLIENTS as usize {
            break Corrupted(format!("a request of producer {p} in run {run}"));
        }
        if seq != next[c] {
            break Corrupted(format!("client {c}'s request {seq} where {} was due", next[c]));
        }
        next[c] += 1;
        let mut reply = req.payload.clone();
        reply.reverse();
        match server.reply(&req, &reply) {
            Ok(()) => {}
            Err(ipc_kit::fifo::Error::ClientGone { .. }) if c == CLIENTS as usize => gone_replies += 1,
            Err(e) => break Failed(format!("reply to client {c}: {e}")),
        }
    };
    // Reap everyone: the writers and the doomed client by SIGKILL, the
    // honest clients by their own exit.
    for (victim, _) in writers.into_iter().chain(doomed) {
        victim.kill();
        if let Err(o) = reap_killed(victim) {
            return o;
        }
    }
    for (c, client) in clients.iter_mut().enumerate() {
        match client.wait_timeout(BOUND) {
            Some(Exit::Code(0)) => {}
            Some(other) => return Failed(format!("honest client {c} ended with {other:?} (its message is above)")),
            None => return Hung(format!("honest client {c} still running")),
        }
        match board.word(16 + c).load(Ordering::Acquire) {
            CLIENT_DONE => {}
            CLIENT_TIMED_OUT => return Hung(format!("client {c}: a request timed out")),
            CLIENT_WRONG_REPLY => return Corrupted(format!("client {c}: a wrong reply")),
            other => return Failed(format!("client {c}: state {other}")),
        }
    }
    if board.setup_failed() {
        return Failed("a garbage writer could not open the FIFO (its message is above)".into());
    }
    if !matches!(verdict, Survived(_)) {
        return verdict;
    }
    if let Some(n) = next[..CLIENTS as usize].iter().find(|&&n| n != FIFO_REQUESTS) {
        return Corrupted(format!("{n} requests of a client served, not {FIFO_REQUESTS}"));
    }
    // Nothing left: the server removes its FIFO, and the next one's
    // start what a killed client left.
    drop(server);
    match FifoServer::create_replacing(path, 0o600) {
        Ok(next) => drop(next),
        Err(e) => return Failed(format!("restart the server: {e}")),
    }
    let left: Vec<String> = match std::fs::read_dir(c.dir.path()) {
        Ok(d) => d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(e) => return Failed(format!("list the directory: {e}")),
    };
    if !left.is_empty() {
        return Failed(format!("left behind: {}", left.join(", ")));
    }
    Survived(match (was_doomed, gone_replies, next[CLIENTS as usize]) {
        (false, _, _) => "all answered",
        (true, 1.., _) => "all answered, a client killed mid-request (its reply: ClientGone)",
        (true, 0, 1..) => "all answered, a client killed between requests",
        (true, 0, 0) => "all answered, a client killed before its first request",
    })
}

/// How many requests each honest client of the FIFO server makes per run.
const FIFO_REQUESTS: u64 = 40;

/// An honest FIFO client's state, in board word 16 + its number.
const CLIENT_STARTED: u64 = 1;
const CLIENT_DONE: u64 = 2;
const CLIENT_TIMED_OUT: u64 = 3;
const CLIENT_WRONG_REPLY: u64 = 4;

/// An honest client of the FIFO server at `path`, number `c`: `count`
/// checksummed requests (without a count, requests until it is killed),
/// each waiting at most the bound for its reply, the request reversed.
fn honest_client(path: &Path, run: u32, c: u32, count: Option<u64>, board: &Board) {
    let state = board.word(16 + c as usize);
    state.store(CLIENT_STARTED, Ordering::Release);
    let mut client = FifoClient::connect(path).expect("connect to the server");
    let max = client.max_request();
    let mut msg = Vec::new();
    for seq in 0..count.unwrap_or(u64::MAX) {
        let len = if seq % 7 == 3 { max } else { 24 + ((seq * 373 + u64::from(c) * 97) % 1500) as usize };
        encode_len(run * 16 + c, seq, len.min(max), &mut msg);
        match client.request_timeout(&msg, BOUND) {
            Ok(reply) if reply.iter().rev().eq(msg.iter()) => {}
            Ok(_) => return state.store(CLIENT_WRONG_REPLY, Ordering::Release),
            Err(ipc_kit::fifo::Error::Timeout { .. }) => return state.store(CLIENT_TIMED_OUT, Ordering::Release),
            Err(e) => panic!("client {c}, request {seq}: {e}"),
        }
    }
    state.store(CLIENT_DONE, Ordering::Release);
}

/// A request frame (magic, length, FNV-1a check of the length and the
/// body, body) with a well-formed check around a malformed request: a
/// reply FIFO not named after the server's, or a path longer than the
/// body.
fn malformed_request_frame(rng: &mut Rng) -> Vec<u8> {
    let path: &[u8] = b"/tmp/another-server.reply.1.2";
    let mut body = rng.next_u64().to_le_bytes()[..4].to_vec();
    body.extend_from_slice(&rng.next_u64().to_le_bytes()); // a ticket
    let claimed = if rng.chance(2) { path.len() as u16 } else { u16::MAX };
    body.extend_from_slice(&claimed.to_le_bytes());
    body.extend_from_slice(path);
    let n = rng.below(100) as usize;
    body.extend(rng.bytes(n));
    let len = (body.len() as u32).to_le_bytes();
    let mut frame = b"IKfq".to_vec();
    frame.extend_from_slice(&len);
    frame.extend_from_slice(&checksum(&[&len[..], &body].concat()).to_le_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// A garbage writer on the FIFO server's request FIFO at `path`, until
/// killed: random bytes, frame starts claiming lengths past the limit,
/// frames cut short and well-checked frames with malformed requests, in
/// writes of up to 64 KiB, which are not atomic and may be cut anywhere by
/// the kill.
fn write_garbage_forever(path: &Path, seed: u64, board: &Board) {
    let w = Fifo::open(path).and_then(|f| f.try_open_writer()).unwrap_or_else(|e| board.fail_setup(e.to_string()));
    let mut rng = Rng::new(seed);
    let mut junk = Vec::new();
    loop {
        junk.clear();
        let size = 1 + rng.below(1 << 16) as usize;
        while junk.len() < size {
            match rng.below(4) {
                0 => {
                    let n = 1 + rng.below(4096) as usize;
                    junk.extend(rng.bytes(n));
                }
                1 => {
                    junk.extend_from_slice(b"IKfq");
                    let len = [u32::MAX, 4081, 1 << 31, rng.next_u64() as u32][rng.below(4) as usize];
                    junk.extend_from_slice(&len.to_le_bytes());
                    junk.extend(rng.bytes(8));
                }
                2 => {
                    let frame = malformed_request_frame(&mut rng);
                    let cut = rng.below(frame.len() as u64) as usize;
                    junk.extend_from_slice(&frame[..cut]);
                }
                _ => junk.extend(malformed_request_frame(&mut rng)),
            }
        }
        (&w).write_all(&junk).expect("write garbage");
    }
}
