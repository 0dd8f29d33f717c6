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

use std::cell::UnsafeCell;
use std::io;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, compiler_fence, fence};

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

/// The `SIGBUS` action that was there before ours, written once before
/// ours is installed and only read afterwards.
struct Previous(UnsafeCell<Option<libc::sigaction>>);

// SAFETY: written once, inside `INSTALL`'s call_once and before the
// handler that reads it is installed; read-only after that.
unsafe impl Sync for Previous {}

static PREVIOUS: Previous = Previous(UnsafeCell::new(None));
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);

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
    INSTALL.call_once(|| {
        // SAFETY: sysconf takes a constant and has no other effect.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        PAGE.store(usize::try_from(page).unwrap_or(4096), Ordering::Relaxed);
        // SAFETY: an all-zero sigaction is a valid value for the kernel to
        // fill.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: reads the current action into a valid struct.
        if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) } != 0 {
            return;
        }
        // SAFETY: nothing else accesses PREVIOUS yet: the handler that reads
        // it is installed below, and call_once runs this once.
        unsafe { *PREVIOUS.0.get() = Some(old) };
        // SAFETY: as above, a valid value to fill in.
        let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
        new.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
        // SA_ONSTACK: run on the thread's alternate stack when it has one
        // (std gives its threads one). SIGBUS stays blocked while the
        // handler runs (no SA_NODEFER): a SIGBUS that we pass on to the
        // default action is delivered, and kills, once the handler returns.
        new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: sigemptyset initializes the mask in a valid struct.
        unsafe { libc::sigemptyset(&mut new.sa_mask) };
        // SAFETY: installs a handler that is async-signal-safe (it reads
        // atomics and calls mmap, sigaction and raise only).
        if unsafe { libc::sigaction(libc::SIGBUS, &new, std::ptr::null_mut()) } == 0 {
            INSTALLED.store(true, Ordering::Release);
        }
    });
    if INSTALLED.load(Ordering::Acquire) {
        Ok(())
    } else {
        Err(io::Error::other("the SIGBUS handler that guards shared memory mappings could not be installed"))
    }
}

/// The guarded mapping holding `addr`, as its entry and range.
fn find(addr: usize) -> Option<(&'static Guard, usize, usize)> {
    TABLE.iter().find_map(|g| match g.range() {
        Some((start, len)) if addr >= start && addr - start < len => Some((g, start, len)),
        _ => None,
    })
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: errno is thread-local; its location is valid for the thread.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid siginfo (SA_SIGINFO); si_addr is
    // meaningful for SIGBUS, which is the only signal routed here.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    if code == BUS_ADRERR
        && let Some((g, start, len)) = find(addr)
    {
        let page = PAGE.load(Ordering::Relaxed).max(1);
        let from = addr & !(page - 1);
        let end = (start + len).div_ceil(page) * page;
        // SAFETY: replaces pages of a guarded mapping only, from the page
        // that faulted to the mapping's end; the mapping is alive (an
        // access into it is under way, and its owner takes it out of the
        // table before unmapping). The new pages are private zeros, so
        // every access that ran into the shrunk file now completes.
        let p = unsafe {
            libc::mmap(
                from as *mut libc::c_void,
                end - from,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            g.faulted.store(true, Ordering::Relaxed);
            // SAFETY: as above.
            unsafe { *libc::__errno_location() = errno };
            return;
        }
    }
    // SAFETY: passes on the signal as the kernel delivered it.
    unsafe { pass_on(sig, info, ctx, code) };
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Hands a `SIGBUS` that is not ours to the action that was there before.
///
/// # Safety
///
/// Only from the handler, with the arguments it was called with.
unsafe fn pass_on(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void, code: libc::c_int) {
    // SAFETY: written before the handler was installed, never after.
    let previous = unsafe { *PREVIOUS.0.get() };
    let Some(previous) = previous else { return };
    let handler = previous.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // What the kernel would have done without us: restore the default
        // action (ignoring a fault is not possible: the kernel kills).
        // SAFETY: an all-zero sigaction with SIG_DFL (0) is the default.
        let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
        dfl.sa_sigaction = libc::SIG_DFL;
        // SAFETY: installs the default action.
        unsafe { libc::sigaction(libc::SIGBUS, &dfl, std::ptr::null_mut()) };
        if code <= 0 {
            // Sent by a process (kill, tgkill): it will not repeat, so
            // send it again; it is delivered when the handler returns.
            // SAFETY: raise takes a signal number.
            unsafe { libc::raise(libc::SIGBUS) };
        }
        // A fault repeats when the access is retried, and kills.
        return;
    }
    if previous.sa_flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous handler was installed with SA_SIGINFO, so
        // it has this signature.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: installed without SA_SIGINFO: a plain handler.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}
