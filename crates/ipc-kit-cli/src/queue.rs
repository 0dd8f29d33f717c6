//! `ipc-kit send` and `ipc-kit recv`: message queues from the shell.

use std::time::Duration;

use ipc_kit::msgq::{Error, Key, PosixQueue, Selector, SysvQueue};
use serde_json::json;

/// What a command ended with: exit status 0, 1 (timeout or empty) or 2
/// (an error, with a one-line message).
pub(crate) enum Outcome {
    Done,
    Nothing(String),
    Failed(String),
}

/// A queue as the command line names it: `sysv:KEY` (decimal or 0x hex),
/// `sysv-id:ID` or `posix:/name`, parsed by clap before anything is
/// opened.
#[derive(Clone, Debug)]
pub(crate) struct Address {
    /// As it was written, for messages.
    text: String,
    queue: Named,
}

/// The queue an [`Address`] names.
#[derive(Clone, Debug)]
enum Named {
    SysvKey(Key),
    SysvId(i32),
    Posix(String),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Address {
    type Err = String;

    fn from_str(address: &str) -> Result<Address, String> {
        let bad = |why: &str| format!("{why} (sysv:KEY, sysv-id:ID or posix:/name)");
        let (kind, rest) = address.split_once(':').ok_or_else(|| bad("not a queue address"))?;
        // Digits as written: decimal with an optional '-', or 0x and hex
        // digits; no '+', and no sign after 0x.
        let number = |s: &str| -> Result<i64, String> {
            let digits = |d: &str, hex: bool| {
                !d.is_empty() && d.bytes().all(|b| if hex { b.is_ascii_hexdigit() } else { b.is_ascii_digit() })
            };
            let parsed = match s.strip_prefix("0x") {
                Some(hex) if digits(hex, true) => i64::from_str_radix(hex, 16).ok(),
                None if digits(s.strip_prefix('-').unwrap_or(s), false) => s.parse().ok(),
                _ => None,
            };
            parsed.ok_or_else(|| bad(&format!("{s:?} is not a number")))
        };
        // A key is a 32-bit key_t, written signed or as its unsigned bits (hex
        // 0xffffffff is -1); an id is a non-negative int. Nothing wraps.
        let key = |v: i64| {
            i32::try_from(v)
                .or_else(|_| u32::try_from(v).map(|u| u as i32))
                .map_err(|_| bad(&format!("{v} is outside a 32-bit key")))
        };
        let not_an_id = |v: &dyn std::fmt::Debug| bad(&format!("{v:?} is not an id (0 to 2147483647)"));
        let queue = match kind {
            "sysv" => Named::SysvKey(Key::new(key(number(rest)?)?).map_err(|e| e.to_string())?),
            "sysv-id" if rest.starts_with('-') => return Err(not_an_id(&rest)),
            "sysv-id" => {
                let v = number(rest)?;
                Named::SysvId(i32::try_from(v).ok().filter(|&i| i >= 0).ok_or_else(|| not_an_id(&v))?)
            }
            "posix" => Named::Posix(rest.to_owned()),
            _ => return Err(bad(&format!("unknown kind {kind:?}"))),
        };
        Ok(Address { text: address.to_owned(), queue })
    }
}

/// A queue opened.
enum Queue {
    Sysv(SysvQueue),
    Posix(PosixQueue),
}

fn open(address: &Address) -> Result<Queue, String> {
    let queue = match &address.queue {
        Named::SysvKey(key) => SysvQueue::open(*key).map(Queue::Sysv),
        Named::SysvId(id) => SysvQueue::open_id(*id).map(Queue::Sysv),
        Named::Posix(name) => PosixQueue::open(name).map(Queue::Posix),
    };
    queue.map_err(|e| format!("{address}: {e}"))
}

/// `ipc-kit send QUEUE MESSAGE [--type N | --priority N]`.
pub(crate) fn send(address: &Address, message: &str, mtype: Option<i64>, priority: Option<u32>) -> Outcome {
    let q = match open(address) {
        Ok(q) => q,
        Err(e) => return Outcome::Failed(e),
    };
    let r = match q {
        Queue::Sysv(q) => {
            if priority.is_some() {
                return Outcome::Failed(format!("{address}: --priority is for POSIX queues; use --type"));
            }
            q.try_send(mtype.unwrap_or(1), message.as_bytes())
        }
        Queue::Posix(q) => {
            if mtype.is_some() {
                return Outcome::Failed(format!("{address}: --type is for System V queues; use --priority"));
            }
            q.try_send(message.as_bytes(), priority.unwrap_or(0))
        }
    };
    match r {
        Ok(()) => Outcome::Done,
        Err(Error::Full) => Outcome::Nothing(format!("{address}: the queue is full")),
        Err(e) => Outcome::Failed(format!("{address}: {e}")),
    }
}

/// Parses "250ms", "2s", "1.5s" or plain seconds (`recv --timeout`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || "not a duration (such as 250ms or 2s)".to_owned();
    let (num, scale) = if let Some(ms) = s.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(sec) = s.strip_suffix('s') {
        (sec, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    if !(0.0..=1e9).contains(&v) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// How `recv` prints a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Form {
    /// As text, invalid UTF-8 replaced, and a newline.
    Text,
    /// As a JSON line with the text and every byte in hex.
    Json,
    /// The bytes exactly.
    Raw,
}

/// `ipc-kit recv QUEUE [--type SELECTOR] [--timeout DURATION] [--json | --raw]`.
pub(crate) fn recv(address: &Address, selector: Option<Selector>, timeout: Option<Duration>, form: Form) -> Outcome {
    let q = match open(address) {
        Ok(q) => q,
        Err(e) => return Outcome::Failed(e),
    };
    let (tag, r) = match q {
        Queue::Sysv(q) => {
            let sel = selector.unwrap_or(Selector::Any);
            // As long as the message is, also when msgmax was lowered
            // after it was sent.
            let mut buf = Vec::new();
            let r = match timeout {
                Some(t) => q.recv_vec_timeout(sel, &mut buf, t),
                None => q.try_recv_vec(sel, &mut buf),
            };
            ("type", r.map(|t| (t, buf)))
        }
        Queue::Posix(q) => {
            if selector.is_some() {
                return Outcome::Failed(format!("{address}: --type is for System V queues"));
            }
            let mut buf = vec![0u8; q.message_size()];
            let r = match timeout {
                Some(t) => q.recv_timeout(&mut buf, t),
                None => q.try_recv(&mut buf),
            };
            ("priority", r.map(|(n, p)| (i64::from(p), buf[..n].to_vec())))
        }
    };
    match r {
        Ok((tag_value, bytes)) => {
            let text = String::from_utf8_lossy(&bytes);
            match form {
                Form::Json => {
                    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                    println!("{}", json!({ tag: tag_value, "message": text, "bytes": bytes.len(), "hex": hex }));
                }
                Form::Text => println!("{text}"),
                Form::Raw => {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    if let Err(e) = out.write_all(&bytes).and_then(|()| out.flush()) {
                        return Outcome::Failed(format!("{address}: writing the message: {e}"));
                    }
                }
            }
            Outcome::Done
        }
        Err(Error::Empty) => Outcome::Nothing(format!("{address}: no message")),
        Err(Error::Timeout) => Outcome::Nothing(format!("{address}: no message before the timeout")),
        Err(e) => Outcome::Failed(format!("{address}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(address: &str) -> Option<i32> {
        match address.parse::<Address>().ok()?.queue {
            Named::SysvKey(k) => Some(k.raw()),
            _ => None,
        }
    }

    #[test]
    fn addresses_parse_without_wrapping() {
        assert_eq!(key_of("sysv:0x10"), Some(16));
        assert_eq!(key_of("sysv:16"), Some(16));
        assert_eq!(key_of("sysv:0xffffffff"), Some(-1), "a key as its unsigned bits");
        for bad in ["sysv:0x100000010", "sysv:-2147483649", "sysv:+16", "sysv:0x-10", "sysv:0", "sysv:", "nonsense"] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
        for bad in ["sysv-id:-1", "sysv-id:-0", "sysv-id:+3", "sysv-id:4294967296", "gizmo:1"] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
        let id = "sysv-id:2147483647".parse::<Address>().unwrap();
        assert!(matches!(id.queue, Named::SysvId(2147483647)));
        assert_eq!(id.to_string(), "sysv-id:2147483647", "messages name the address as written");
        assert!(matches!("posix:/q".parse::<Address>().unwrap().queue, Named::Posix(n) if n == "/q"));
    }

    #[test]
    fn durations_parse_in_ms_and_s() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["soon", "-1s", "1e10", "", "ms"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
