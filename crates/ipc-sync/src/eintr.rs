use std::io;

use nix::errno::Errno;

/// An error that can say whether it is an interruption by a signal
/// (`EINTR`).
pub trait Interrupted {
    /// Whether this error is `EINTR`.
    fn is_interrupted(&self) -> bool;
}

impl Interrupted for io::Error {
    fn is_interrupted(&self) -> bool {
        self.kind() == io::ErrorKind::Interrupted
    }
}

impl Interrupted for Errno {
    fn is_interrupted(&self) -> bool {
        *self == Errno::EINTR
    }
}

/// Calls `op` until it returns anything but `EINTR`.
///
/// A signal handler installed without `SA_RESTART` makes blocking system
/// calls fail with `EINTR`; that is not an error of the call, so ipc-kit
/// retries it. When the call has a timeout, compute the remaining time
/// inside `op` (from a [`Deadline`](crate::Deadline)) so that a retry waits
/// only for what is left.
///
/// # Examples
///
/// ```
/// use ipc_sync::retry_eintr;
/// use nix::errno::Errno;
///
/// let mut calls = 0;
/// let r = retry_eintr(|| {
///     calls += 1;
///     if calls < 3 { Err(Errno::EINTR) } else { Ok(calls) }
/// });
/// assert_eq!(r, Ok(3));
/// ```
///
/// # References
///
/// [signal(7)](https://man7.org/linux/man-pages/man7/signal.7.html),
/// "Interruption of system calls and library functions by signal handlers".
pub fn retry_eintr<T, E: Interrupted>(mut op: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    loop {
        match op() {
            Err(e) if e.is_interrupted() => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_errors_pass_through() {
        let r: Result<(), Errno> = retry_eintr(|| Err(Errno::EAGAIN));
        assert_eq!(r, Err(Errno::EAGAIN));
        let r: io::Result<()> = retry_eintr(|| Err(io::Error::from(io::ErrorKind::WouldBlock)));
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn io_interrupted_is_retried() {
        let mut n = 0;
        let r = retry_eintr(|| {
            n += 1;
            if n == 1 { Err(io::Error::from_raw_os_error(libc_eintr())) } else { Ok(n) }
        });
        assert_eq!(r.unwrap(), 2);
    }

    fn libc_eintr() -> i32 {
        Errno::EINTR as i32
    }
}
