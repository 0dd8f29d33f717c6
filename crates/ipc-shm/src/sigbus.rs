//! Surviving a peer that shrinks a shared file under our mappings.
//!
//! Anyone who can write a POSIX shared memory object can `ftruncate` it,
//! and a process touching a mapped page past the new end of the file gets
//! `SIGBUS`, which kills it by default. A size check before each access
//! cannot prevent that: the peer may shrink the file between the check and
//! the access. So mappings of such files are *guarded*:
//!
//! - each one is entered in a fixed table of address ranges that a signal
//!   handler can read without locks or allocation (a seqlock per entry);
//! - a process-wide `SIGBUS` handler, installed the first time a mapping
//!   is guarded, looks the faulting address up. Inside a guarded mapping,
//!   it maps private zero-filled memory over the pages from the faulting
//!   one to the end of the mapping (they are all past the end of the file:
//!   a file ends in one place), marks the mapping as faulted, and returns,
//!   so the access completes on zeros. The code that made the access then
//!   sees the mark and reports `Truncated`;
//! - any other `SIGBUS` goes on to the handler that was there before (or
//!   to the default action, which kills the process, as it would have
//!   without us).
//!
//! The mark stays: once pages of a mapping have been replaced, that
//! mapping no longer shows the shared object there, and every later access
//! through it is refused. Mapping the object again gives a working
//! mapping of what is left.
//!
//! `SIGBUS` with the same code also comes from a page that /dev/shm has no
//! room left to back; it is handled in the same way, and reported as
//! truncation too.
//!
//! A program that installs its own `SIGBUS` handler after ipc-shm guarded
//! a mapping replaces this one unless it hands faults it does not
//! recognize to the previous handler.
#![allow(unsafe_code)] // a signal handler, and the table it reads; each block says why it is sound

use std::io;
use std::num::NonZeroUsize;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, compiler_fence, fence};

use ipc_sync::os::cvt;
use nix::errno::Errno;
use nix::sys::mman::{self, MapFlags, ProtFlags};
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{self, SysconfVar};

/// How many mappings a process can have guarded at once.
pub(crate) const GUARDS: usize = 4096;

/// `si_code` of a `SIGBUS` for an access to a page past the end of the
/// file (or one the file system cannot back): `BUS_ADRERR` in
/// <asm-generic/siginfo.h>.
const BUS_ADRERR: libc::c_int = 2;

/// One entry of the table: the address range of a guarded mapping, and
/// whether a fault in it was handled.
#[derive(Debug)]
pub(crate) struct Guard {
    /// Even while `start` and `len` are stable, odd while they change.
    seq: AtomicUsize,
    start: AtomicUsize,
    /// 0 for a free entry.
    len: AtomicUsize,
    faulted: AtomicBool,
}

impl Guard {
    const fn new() -> Guard {
        Guard {
            seq: AtomicUsize::new(0),
            start: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            faulted: AtomicBool::new(false),
        }
    }

    /// Whether a fault in this mapping was handled (its pages past the end
    /// of the file replaced by zeros). Call after the accesses it is to
    /// cover, on the thread that made them.
    #[inline]
    pub(crate) fn faulted(&self) -> bool {
        // The handler runs on the thread whose access faulted, in the
        // middle of that access: keep the compiler from moving this load
        // before the accesses it is meant to follow.
        compiler_fence(Ordering::SeqCst);
        // Relaxed: on the faulting thread the handler's store comes before
        // this load in program order; other threads see the mark soon,
        // which is all they need.
        self.faulted.load(Ordering::Relaxed)
    }

    /// The range, if the entry is in use and was read whole.
    fn range(&self) -> Option<(usize, usize)> {
        // Acquire: see the fields written before the even value.
        let seq = self.seq.load(Ordering::Acquire);
        if seq % 2 == 1 {
            return None;
        }
        let start = self.start.load(Ordering::Relaxed);
        let len = self.len.load(Ordering::Relaxed);
        // Acquire fence: the field reads happen before the re-read of seq.
        fence(Ordering::Acquire);
        if self.seq.load(Ordering::Relaxed) != seq || len == 0 {
            return None;
        }
        Some((start, len))
    }
}

/// The entry of every mapping that no peer can shrink (anonymous memory,
/// System V segments, sealed memfds): never registered, never faulted.
pub(crate) static UNGUARDED: Guard = Guard::new();

static TABLE: [Guard; GUARDS] = [const { Guard::new() }; GUARDS];

/// The page size, for the handler.
static PAGE: AtomicUsize = AtomicUsize::new(0);

/// The `SIGBUS` action that was there before ours, set once before ours
/// is installed and only read afterwards (by the handler too: reading a
/// set `OnceLock` is one atomic load, which is async-signal-safe).
static PREVIOUS: OnceLock<SigAction> = OnceLock::new();
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Enters the mapping at `start`, `len` bytes long, in the table, first
/// installing the handler if this is the first time.
///
/// # Errors
///
/// `OutOfMemory` when [`GUARDS`] mappings are guarded already; the error
/// of `sigaction` if the handler cannot be installed.
pub(crate) fn guard(start: usize, len: usize) -> io::Result<&'static Guard> {
    install()?;
    for g in &TABLE {
        // Relaxed: a free entry is claimed by the CAS below, which
        // re-checks the sequence number.
        let seq = g.seq.load(Ordering::Relaxed);
        if seq % 2 == 1 || g.len.load(Ordering::Relaxed) != 0 {
            continue;
        }
        // Acquire: the entry's release (below) happens before our claim.
        if g.seq.compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            continue;
        }
        // Release fence: a reader that sees the new fields also sees the
        // odd sequence number before them.
        fence(Ordering::Release);
        g.start.store(start, Ordering::Relaxed);
        g.len.store(len.max(1), Ordering::Relaxed);
        g.faulted.store(false, Ordering::Relaxed);
        // Release: the fields are written before the even value.
        g.seq.store(seq + 2, Ordering::Release);
        return Ok(g);
    }
    Err(io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!("{GUARDS} mappings of POSIX shared memory objects are in use in this process, the most it can guard"),
    ))
}

/// Takes the mapping's entry out of the table. Call before unmapping it.
pub(crate) fn unguard(g: &'static Guard) {
    if std::ptr::eq(g, &UNGUARDED) {
        return;
    }
    // Relaxed: only this mapping's owner writes its entry.
    let seq = g.seq.load(Ordering::Relaxed);
    g.seq.store(seq + 1, Ordering::Relaxed);
    fence(Ordering::Release);
    g.len.store(0, Ordering::Relaxed);
    g.start.store(0, Ordering::Relaxed);
    // Release: the entry reads as free only once it is cleared.
    g.seq.store(seq + 2, Ordering::Release);
}

fn install() -> io::Result<()> {
    if *INSTALLED.get_or_init(install_once) {
        Ok(())
    } else {
        Err(io::Error::other("the SIGBUS handler that guards shared memory mappings could not be installed"))
    }
}

/// Installs [`on_sigbus`] after keeping the action that was there; runs
/// once per process. Whether it is installed.
fn install_once() -> bool {
    let page = unistd::sysconf(SysconfVar::PAGE_SIZE).ok().flatten();
    PAGE.store(page.and_then(|p| usize::try_from(p).ok()).unwrap_or(4096), Ordering::Relaxed);
    let Ok(old) = current_action() else { return false };
    // The first and only set: this runs once, and the handler that reads
    // it is installed below.
    let _ = PREVIOUS.set(old);
    // SA_ONSTACK: run on the thread's alternate stack when it has one
    // (std gives its threads one). SIGBUS stays blocked while the handler
    // runs (no SA_NODEFER): a SIGBUS that we pass on to the default action
    // is delivered, and kills, once the handler returns.
    let ours = SigAction::new(SigHandler::SigAction(on_sigbus), SaFlags::SA_ONSTACK, SigSet::empty());
    // SAFETY: installs a handler that is async-signal-safe (it reads
    // atomics and calls mmap, sigaction and raise only).
    unsafe { signal::sigaction(Signal::SIGBUS, &ours) }.is_ok()
}

/// The `SIGBUS` action now, read without changing it (nix's `sigaction`
/// always sets one, and swapping ours in first would leave a moment in
/// which our handler knows no previous action to hand a signal to).
fn current_action() -> io::Result<SigAction> {
    let mut old = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: a null new action only reads the current one into `old`;
    // SigAction is `repr(transparent)` over libc's sigaction, so the
    // pointer is valid for writing one. The handler pointer written is as
    // valid as whoever installed it made it (nix's `sigaction` trusts it
    // in the same way).
    cvt(unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), (&raw mut old).cast::<libc::sigaction>()) })?;
    Ok(old)
}

/// The guarded mapping holding `addr`, as its entry and range.
fn find(addr: usize) -> Option<(&'static Guard, usize, usize)> {
    TABLE.iter().find_map(|g| match g.range() {
        Some((start, len)) if addr >= start && addr - start < len => Some((g, start, len)),
        _ => None,
    })
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let errno = Errno::last_raw();
    // SAFETY: the kernel passes a valid siginfo (SA_SIGINFO), which lives
    // while the handler runs.
    let si = unsafe { &*info };
    let code = si.si_code;
    // SAFETY: si_addr is meaningful for SIGBUS, the only signal routed
    // here.
    let addr = unsafe { si.si_addr() } as usize;
    if code == BUS_ADRERR
        && let Some((g, start, len)) = find(addr)
        && zero_fill(start, len, addr)
    {
        g.faulted.store(true, Ordering::Relaxed);
    } else {
        pass_on(sig, info, ctx, code);
    }
    Errno::set_raw(errno);
}

/// Maps private zero-filled pages over the guarded mapping at `start`,
/// `len` bytes long, from the page holding `addr` to its end (they are
/// all past the end of the shrunk file), so that every access that ran
/// into the file's end completes. Whether it did.
fn zero_fill(start: usize, len: usize, addr: usize) -> bool {
    let page = PAGE.load(Ordering::Relaxed).max(1);
    let from = addr & !(page - 1);
    let end = (start + len).div_ceil(page) * page;
    let (Some(at), Some(size)) = (NonZeroUsize::new(from), NonZeroUsize::new(end - from)) else { return false };
    let flags = MapFlags::MAP_PRIVATE | MapFlags::MAP_FIXED;
    // SAFETY: replaces pages of a guarded mapping only, from the page
    // that faulted to the mapping's end; the mapping is alive (an access
    // into it is under way, and its owner takes it out of the table before
    // unmapping). Nothing in this process holds a reference to what was
    // there that the zeros could break: the accesses are raw, or through
    // ShmSafe types or byte slices, which any bytes satisfy.
    unsafe { mman::mmap_anonymous(Some(at), size, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, flags) }.is_ok()
}

/// Hands a `SIGBUS` that is not ours to the action that was there before,
/// from the handler, with the arguments it was called with.
fn pass_on(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void, code: libc::c_int) {
    let Some(previous) = PREVIOUS.get() else { return };
    match previous.handler() {
        SigHandler::SigDfl | SigHandler::SigIgn => {
            // What the kernel would have done without us: restore the
            // default action (ignoring a fault is not possible: the kernel
            // kills).
            let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
            // SAFETY: installs the default action, no handler.
            let _ = unsafe { signal::sigaction(Signal::SIGBUS, &dfl) };
            if code <= 0 {
                // Sent by a process (kill, tgkill): it will not repeat, so
                // send it again; it is delivered when the handler returns.
                let _ = signal::raise(Signal::SIGBUS);
            }
            // A fault repeats when the access is retried, and kills.
        }
        // Installed with SA_SIGINFO: nix gives it with that signature.
        SigHandler::SigAction(f) => f(sig, info, ctx),
        SigHandler::Handler(f) => f(sig),
    }
}
