//! Failpoints: places in the making of named objects where a test can have
//! its process killed, to leave behind exactly what a crash there leaves
//! (an object made but not yet sized or initialized), or stopped, to play
//! a creator that is merely slow. Compiled in only with the `failpoints`
//! feature; without it [`hit`] does nothing.
//!
//! The points: `posix-shm:opened` (a POSIX object made, not yet sized),
//! `channel:mapped` (a named channel's object sized, its header not yet
//! written), `sysv-sem:created` (a semaphore set made, its making not yet
//! claimed), `sysv-sem:claimed` (its making claimed, no value set yet),
//! `sysv-sem:valued` (its values set, not yet marked ready).

#[cfg(feature = "failpoints")]
static ARMED: std::sync::Mutex<Option<&'static str>> = std::sync::Mutex::new(None);

#[cfg(feature = "failpoints")]
static STOP_AT: std::sync::Mutex<Option<&'static str>> = std::sync::Mutex::new(None);

/// Arms the failpoint `name`: the next time this process reaches it, the
/// process kills itself with `SIGKILL`.
#[cfg(feature = "failpoints")]
pub fn arm(name: &'static str) {
    if let Ok(mut armed) = ARMED.lock() {
        *armed = Some(name);
    }
}

/// Arms the failpoint `name` to stop, not kill: the next time this process
/// reaches it, it stops itself with `SIGSTOP` (once), and goes on when
/// another process sends it `SIGCONT`.
#[cfg(feature = "failpoints")]
pub fn arm_stop(name: &'static str) {
    if let Ok(mut armed) = STOP_AT.lock() {
        *armed = Some(name);
    }
}

/// Marks the failpoint `name`: the process dies (or stops) here if it was
/// armed.
#[inline]
pub fn hit(name: &str) {
    #[cfg(feature = "failpoints")]
    if ARMED.lock().is_ok_and(|armed| *armed == Some(name)) {
        crate::sys::kill_self();
    }
    #[cfg(feature = "failpoints")]
    if STOP_AT.lock().is_ok_and(|mut armed| armed.take_if(|a| *a == name).is_some()) {
        crate::sys::stop_self();
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}
