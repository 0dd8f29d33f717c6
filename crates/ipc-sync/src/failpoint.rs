//! Failpoints: places in the making of named objects where a test can have
//! its process killed, to leave behind exactly what a crash there leaves
//! (an object made but not yet sized or initialized), or stopped, to play
//! a creator that is merely slow there. Compiled in only with the
//! `failpoints` feature; without it [`hit`] does nothing.
//!
//! The points: `posix-shm:opened` (a POSIX object begun, not yet sized),
//! `posix-shm:prepared` (a POSIX object sized and its contents prepared,
//! not yet under its name), `channel:mapped` (a named channel's object
//! sized, its header not yet written), `sysv-sem:created` (a semaphore set
//! made, its making not yet claimed), `sysv-sem:claimed` (its making
//! claimed, no value set yet), `sysv-sem:valued` (its values set, not yet
//! marked ready).

/// What an armed failpoint does.
#[cfg(feature = "failpoints")]
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Kill,
    Stop,
}

#[cfg(feature = "failpoints")]
static ARMED: std::sync::Mutex<Option<(&'static str, Action)>> = std::sync::Mutex::new(None);

/// Arms the failpoint `name`: the next time this process reaches it, the
/// process kills itself with `SIGKILL`.
#[cfg(feature = "failpoints")]
pub fn arm(name: &'static str) {
    if let Ok(mut armed) = ARMED.lock() {
        *armed = Some((name, Action::Kill));
    }
}

/// Arms the failpoint `name` to stall: the next time this process reaches
/// it, the process stops itself with `SIGSTOP`, and goes on from there
/// when it is sent `SIGCONT`. The point is disarmed as it is reached.
#[cfg(feature = "failpoints")]
pub fn arm_stop(name: &'static str) {
    if let Ok(mut armed) = ARMED.lock() {
        *armed = Some((name, Action::Stop));
    }
}

/// Marks the failpoint `name`: the process dies (or stops) here if it was
/// armed.
#[inline]
pub fn hit(name: &str) {
    #[cfg(feature = "failpoints")]
    {
        let action = match ARMED.lock() {
            Ok(mut armed) => match *armed {
                Some((point, Action::Stop)) if point == name => {
                    *armed = None;
                    Some(Action::Stop)
                }
                Some((point, action)) if point == name => Some(action),
                _ => None,
            },
            Err(_) => None,
        };
        match action {
            Some(Action::Kill) => crate::sys::kill_self(),
            Some(Action::Stop) => crate::sys::stop_self(),
            None => {}
        }
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}
