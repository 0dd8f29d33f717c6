//! Where reply FIFOs live and how they are named: in the request FIFO's
//! directory, after it (`NAME.reply.PID.N.RANDOM`), with the temporary
//! names of FIFOs being published (`NAME.new.PID.N`); and the sweep that
//! removes those a dead client or server left behind.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Removes the reply FIFOs of dead clients of the server at `server`
/// (named `NAME.reply.PID.N.RANDOM`, or `NAME.reply.PID.N` as older
/// clients named them), and the temporary FIFOs of servers and clients
/// killed while starting (`NAME.new.PID.N`, `NAME.reply.PID.N.RANDOM.new.PID.N`):
/// those no reader has open (the kernel's
/// `ENXIO`; a live client always holds its reader, and one still
/// starting makes its FIFO again if this one is removed). Failures are
/// left for the next sweep.
pub(crate) fn sweep_dead_replies(server: &Path) {
    let (Some(dir), Some(name)) = (server.parent(), server.file_name()) else { return };
    let name = name.as_bytes();
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let digits = |p: Option<&[u8]>| p.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
    // `PID.N`: two groups of digits.
    let numbered = |s: &[u8]| {
        let mut parts = s.split(|&b| b == b'.');
        digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
    };
    // A reply FIFO's `PID.N.RANDOM` (RANDOM: 16 hex digits), or `PID.N`.
    let client = |s: &[u8]| {
        let mut parts = s.split(|&b| b == b'.');
        let hex = |p: &[u8]| p.len() == 16 && p.iter().all(u8::is_ascii_hexdigit);
        digits(parts.next()) && digits(parts.next()) && parts.next().is_none_or(hex) && parts.next().is_none()
    };
    let temporary = |s: &[u8]| s.strip_prefix(b".new.".as_slice()).is_some_and(numbered);
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.as_bytes().strip_prefix(name) else { continue };
        let ours = if let Some(reply) = rest.strip_prefix(b".reply.".as_slice()) {
            client(reply)
                || reply
                    .windows(5)
                    .position(|w| w == b".new.")
                    .is_some_and(|at| client(&reply[..at]) && temporary(&reply[at..]))
        } else {
            temporary(rest)
        };
        if ours {
            let _ = crate::fifo::remove_if_stale(&dir.join(&file));
        }
    }
}

/// The canonical directory of `path` (its parent, or the working
/// directory for a bare name).
pub(crate) fn canonical_dir(path: &Path) -> Result<PathBuf> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::canonicalize(parent).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR) => Error::NotFound { path: path.to_owned() },
        Some(libc::EACCES) => Error::PermissionDenied { path: path.to_owned() },
        _ => Error::Io { op: "canonicalize the directory of", path: path.to_owned(), source: e },
    })
}

/// `NAME.reply.`, with the server's file name as it is, byte for byte
/// (not every file name is UTF-8).
pub(crate) fn reply_prefix(server: &Path) -> std::ffi::OsString {
    let mut prefix = server.file_name().unwrap_or_default().to_owned();
    prefix.push(".reply.");
    prefix
}
