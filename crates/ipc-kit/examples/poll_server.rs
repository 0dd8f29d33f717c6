//! One thread serving a FIFO, a POSIX queue and a shared-memory channel at
//! once with a `Poller`.
//!
//! ```text
//! cargo run -p ipc-kit --example poll_server [MESSAGES]
//! ```
//!
//! The server makes the three (a FIFO in a fresh directory, a queue and a
//! named byte channel, all removed when it ends) and starts a client for
//! each, a copy of itself (`client fifo|queue|channel NAME COUNT`), which
//! sends COUNT messages (`<mechanism> <n>`) and then `bye`. The server
//! waits on all three at once, takes whatever is ready, and stops when
//! every client has said goodbye.

use std::process::{Child, Command};
use std::time::Duration;

use ipc_kit::fifo::Fifo;
use ipc_kit::msgq::{PosixQueue, QueueAttr};
use ipc_kit::pipe::{FrameReader, FrameWriter};
use ipc_kit::shm::channel::ByteChannel;
use ipc_kit::{Interest, Poller};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A client's way of sending one message.
type Send = Box<dyn FnMut(&[u8]) -> Res>;

const NAMES: [&str; 3] = ["fifo", "queue", "channel"];

fn main() -> Res {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("client") {
        return client(&args[2], &args[3], args[4].parse()?);
    }
    let count: u64 = args.get(1).map_or(Ok(1000), |n| n.parse())?;
    let id = std::process::id();
    let dir = std::env::temp_dir().join(format!("ipc-kit-poll-server-{id}"));
    std::fs::create_dir(&dir)?;
    let served = serve(&dir, &format!("/ipc-kit-poll-server-{id}"), count);
    std::fs::remove_dir_all(&dir)?;
    served
}

fn serve(dir: &std::path::Path, name: &str, count: u64) -> Res {
    let fifo = Fifo::create(dir.join("requests"), 0o600)?;
    let queue = PosixQueue::create(name, QueueAttr { max_messages: 10, message_size: 64 }, 0o600)?;
    let channel = ByteChannel::create(name, 1 << 16)?;
    // The FIFO's reader is open before its client comes (no writer yet: not
    // ready, no end of file).
    let mut from_fifo = FrameReader::new(fifo.try_open_reader()?);
    let mut from_channel = channel.receiver()?;
    let places = [fifo.path().display().to_string(), name.to_owned(), name.to_owned()];
    let mut clients: Vec<Child> = Vec::new();
    for (what, place) in NAMES.iter().zip(&places) {
        let exe = std::env::current_exe()?;
        clients.push(Command::new(exe).args(["client", what, place, &count.to_string()]).spawn()?);
    }
    let mut poller = Poller::new()?;
    poller.add(&from_fifo, Interest::Readable, 0)?;
    poller.add(&queue, Interest::Readable, 1)?;
    poller.add(&from_channel, Interest::Readable, 2)?;
    let (mut got, mut done, mut waits) = ([0u64; 3], [false; 3], 0u64);
    let mut buf = Vec::new();
    while done.contains(&false) {
        let ready = poller.wait_timeout(Duration::from_secs(10))?.to_vec();
        if ready.is_empty() {
            return Err(format!("nothing for 10 s; so far {got:?}").into());
        }
        waits += 1;
        for token in ready {
            let at = token as usize;
            // Everything that is there now: level-triggered, so what is
            // left would be reported again anyway.
            loop {
                let message = match at {
                    0 => match from_fifo.try_recv(&mut buf) {
                        Ok(Some(_)) => true,
                        Ok(None) => return Err("the FIFO's client left without saying bye".into()),
                        Err(ipc_kit::pipe::Error::WouldBlock) => false,
                        Err(e) => return Err(e.into()),
                    },
                    1 => match queue.try_recv_vec(&mut buf) {
                        Ok(_) => true,
                        Err(ipc_kit::msgq::Error::Empty) => false,
                        Err(e) => return Err(e.into()),
                    },
                    _ => match from_channel.try_recv(&mut buf) {
                        Ok(_) => true,
                        Err(ipc_kit::shm::Error::Empty) => false,
                        Err(e) => return Err(e.into()),
                    },
                };
                if !message {
                    break;
                }
                if buf == b"bye" {
                    done[at] = true;
                    poller.remove(token)?;
                    break;
                }
                let expected = format!("{} {}", NAMES[at], got[at]);
                if buf != expected.as_bytes() {
                    return Err(
                        format!("{}: {:?}, expected {expected:?}", NAMES[at], String::from_utf8_lossy(&buf)).into()
                    );
                }
                got[at] += 1;
            }
        }
    }
    for mut c in clients {
        c.wait()?;
    }
    println!("served fifo {} queue {} channel {} messages in {waits} waits", got[0], got[1], got[2]);
    Ok(())
}

fn client(what: &str, place: &str, count: u64) -> Res {
    let mut send: Send = match what {
        "fifo" => {
            let fifo = Fifo::open(place)?;
            let mut tx = FrameWriter::new(fifo.open_writer_timeout(Duration::from_secs(10))?);
            Box::new(move |m| Ok(tx.send(m)?))
        }
        "queue" => {
            let q = PosixQueue::open(place)?;
            Box::new(move |m| Ok(q.send(m, 0)?))
        }
        _ => {
            let mut tx = ByteChannel::open(place)?.sender()?;
            Box::new(move |m| Ok(tx.send(m)?))
        }
    };
    for n in 0..count {
        send(format!("{what} {n}").as_bytes())?;
        if n % 97 == 0 {
            std::thread::sleep(Duration::from_millis(1)); // let the server sleep now and then
        }
    }
    send(b"bye")
}
