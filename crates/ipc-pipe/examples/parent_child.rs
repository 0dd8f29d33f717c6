//! The classic pipe scenario: a parent starts a child with a pipe as its
//! stdin and another as its stdout, sends it requests, reads its replies,
//! and both see end of file when the other side is done.
//!
//! ```text
//! cargo run -p ipc-pipe --example parent_child
//! ```
//!
//! The child is this same program, started with the argument `child`.

use std::io::{stdin, stdout};
use std::process::Command;

use ipc_pipe::{FrameReader, FrameWriter, pipe};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("child") {
        return child();
    }
    let (child_stdin, to_child) = pipe()?;
    let (from_child, child_stdout) = pipe()?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("child").stdin(child_stdin).stdout(child_stdout);
    let mut child = cmd.spawn()?;
    // The child's ends live in `cmd`: close the parent's copies, or neither
    // side would ever see end of file.
    drop(cmd);

    let mut requests = FrameWriter::new(to_child);
    let mut replies = FrameReader::new(from_child);
    let mut reply = Vec::new();
    for word in ["pipes", "carry", "bytes", "one", "way"] {
        requests.send(word.as_bytes())?;
        replies.recv(&mut reply)?.ok_or("the child closed its stdout early")?;
        println!("parent: sent {word:?}, child replied {:?}", String::from_utf8_lossy(&reply));
    }
    drop(requests); // end of file on the child's stdin: it exits
    assert_eq!(replies.recv(&mut reply)?, None, "end of file once the child is gone");
    let status = child.wait()?;
    println!("parent: child exited with {status}");
    Ok(())
}

/// Upper-cases each frame from stdin back to stdout until end of file.
fn child() -> Result<(), Box<dyn std::error::Error>> {
    let mut requests = FrameReader::new(stdin().lock());
    let mut replies = FrameWriter::new(stdout().lock());
    let mut frame = Vec::new();
    while requests.recv(&mut frame)?.is_some() {
        frame.make_ascii_uppercase();
        replies.send(&frame)?;
        replies.flush()?; // stdout buffers
    }
    Ok(())
}
