//! One tokio task serving a FIFO, a POSIX queue and a shared-memory
//! channel at once with `tokio::select!`.
//!
//! ```text
//! cargo run -p ipc-kit --features tokio --example tokio_server [MESSAGES]
//! ```
//!
//! As `poll_server`, in async code: the server makes the three (a FIFO in
//! a fresh directory, a queue and a named byte channel, all removed when
//! it ends) and starts a client for each, a copy of itself (`client
//! fifo|queue|channel NAME COUNT`), which sends COUNT messages (`<mechanism>
//! <n>`) and then `bye` through the async traits. The server takes from
//! whichever is ready, and stops when every client has said goodbye.

use std::process::Command;
use std::time::Duration;

use ipc_kit::fifo::Fifo;
use ipc_kit::msgq::{PosixQueue, QueueAttr};
use ipc_kit::pipe::FrameReader;
use ipc_kit::shm::channel::ByteChannel;
use ipc_kit::{Async, AsyncMessageReceiver, AsyncMessageSender, Interest, MessageReceiver, MessageSender, PipeSender};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

const NAMES: [&str; 3] = ["fifo", "queue", "channel"];

fn main() -> Res {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    if args.get(1).map(String::as_str) == Some("client") {
        return rt.block_on(client(&args[2], &args[3], args[4].parse()?));
    }
    let count: u64 = args.get(1).map_or(Ok(1000), |n| n.parse())?;
    let id = std::process::id();
    let dir = std::env::temp_dir().join(format!("ipc-kit-tokio-server-{id}"));
    std::fs::create_dir(&dir)?;
    let served = rt.block_on(serve(&dir, &format!("/ipc-kit-tokio-server-{id}"), count));
    std::fs::remove_dir_all(&dir)?;
    served
}

/// A receiver of the sync traits, to make async.
fn boxed(r: impl MessageReceiver + Send + 'static) -> Box<dyn MessageReceiver + Send> {
    Box::new(r)
}

async fn serve(dir: &std::path::Path, name: &str, count: u64) -> Res {
    let fifo = Fifo::create(dir.join("requests"), 0o600)?;
    let queue = PosixQueue::create(name, QueueAttr { max_messages: 10, message_size: 64 }, 0o600)?;
    let channel = ByteChannel::create(name, 1 << 16)?;
    let places = [fifo.path().display().to_string(), name.to_owned(), name.to_owned()];
    // The FIFO's reader is open before its client comes.
    let from_fifo = FrameReader::new(fifo.try_open_reader()?);
    let mut clients = Vec::new();
    for (what, place) in NAMES.iter().zip(&places) {
        let exe = std::env::current_exe()?;
        clients.push(Command::new(exe).args(["client", what, place, &count.to_string()]).spawn()?);
    }
    // Each through the umbrella's traits: `Async` takes any of them.
    let mut rx = [
        Async::new(boxed(from_fifo), Interest::Readable)?,
        Async::new(boxed(queue), Interest::Readable)?,
        Async::new(boxed(channel.receiver()?), Interest::Readable)?,
    ];
    let [a, b, c] = &mut rx;
    let (mut bufs, mut got, mut done) = ([Vec::new(), Vec::new(), Vec::new()], [0u64; 3], [false; 3]);
    let [ba, bb, bc] = &mut bufs;
    while done.contains(&false) {
        let (at, r) = tokio::select! {
            r = a.recv(ba), if !done[0] => (0, r),
            r = b.recv(bb), if !done[1] => (1, r),
            r = c.recv(bc), if !done[2] => (2, r),
            () = tokio::time::sleep(Duration::from_secs(10)) => return Err(format!("nothing for 10 s; so far {got:?}").into()),
        };
        r?;
        let message = [&*ba, &*bb, &*bc][at];
        if message == b"bye" {
            done[at] = true;
            continue;
        }
        let expected = format!("{} {}", NAMES[at], got[at]);
        if message != expected.as_bytes() {
            return Err(format!("{}: {:?}, expected {expected:?}", NAMES[at], String::from_utf8_lossy(message)).into());
        }
        got[at] += 1;
    }
    for mut c in clients {
        c.wait()?;
    }
    println!("served fifo {} queue {} channel {} messages", got[0], got[1], got[2]);
    Ok(())
}

async fn client(what: &str, place: &str, count: u64) -> Res {
    let sender: Box<dyn MessageSender + Send> = match what {
        "fifo" => Box::new(PipeSender::new(Fifo::open(place)?.open_writer_timeout(Duration::from_secs(10))?)),
        "queue" => Box::new(PosixQueue::open(place)?),
        _ => Box::new(ByteChannel::open(place)?.sender()?),
    };
    let mut tx = Async::new(sender, Interest::Writable)?;
    for n in 0..count {
        tx.send(format!("{what} {n}").as_bytes()).await?;
    }
    tx.send(b"bye").await?;
    Ok(())
}
