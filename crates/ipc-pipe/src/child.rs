use std::os::fd::{OwnedFd, RawFd};
use std::process::Command;

use crate::error::{Error, Result};
use crate::sys;

/// File descriptors to hand to a child process at fd numbers of your
/// choosing (3, 4, …), beside its standard streams.
///
/// Every end ipc-kit makes is close-on-exec, so an exec'd child holds only
/// what it is given: the standard streams through [`Stdio`](std::process::Stdio)
/// (ipc-pipe's ends convert into it) and other numbers through `ChildFds`.
/// That is what makes end of file arrive: when the child exits, no stray
/// copy of a writing end is left open anywhere.
///
/// The ends move into the [`Command`] and close in the parent when the
/// `Command` is dropped; drop it after spawning, or the parent keeps the
/// ends open (and a reader of the other end never sees end of file).
///
/// # Examples
///
/// ```
/// use std::io::Read;
/// use std::process::Command;
/// use ipc_pipe::ChildFds;
///
/// let (mut reader, writer) = ipc_pipe::pipe()?;
/// let mut cmd = Command::new("sh");
/// cmd.args(["-c", "echo hello on fd 3 >&3"]);
/// let mut fds = ChildFds::new();
/// fds.insert(3, writer)?;
/// fds.apply(&mut cmd);
/// let mut child = cmd.spawn()?;
/// drop(cmd); // closes the parent's copy of the writing end
/// let mut got = String::new();
/// reader.read_to_string(&mut got)?; // end of file once the child exits
/// child.wait()?;
/// assert_eq!(got, "hello on fd 3\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct ChildFds {
    fds: Vec<(OwnedFd, RawFd)>,
}

impl ChildFds {
    /// No fds yet.
    pub fn new() -> Self {
        ChildFds::default()
    }

    /// Gives `fd` to the child as fd number `child_fd`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidChildFd`] for a number below 3 (use
    /// [`Command::stdin`], [`Command::stdout`] and [`Command::stderr`] for
    /// those), one already given, or one not below this process's
    /// open-file limit (`RLIMIT_NOFILE`, which the child inherits).
    pub fn insert(&mut self, child_fd: RawFd, fd: impl Into<OwnedFd>) -> Result<&mut Self> {
        if child_fd < 3 {
            return Err(Error::InvalidChildFd {
                fd: child_fd,
                reason: "0, 1 and 2 are the standard streams: use Command::stdin, stdout or stderr",
            });
        }
        if open_file_limit().is_some_and(|limit| child_fd as u64 >= limit) {
            return Err(Error::InvalidChildFd {
                fd: child_fd,
                reason: "it is not below the open-file limit (RLIMIT_NOFILE) the child inherits",
            });
        }
        if self.fds.iter().any(|&(_, t)| t == child_fd) {
            return Err(Error::InvalidChildFd { fd: child_fd, reason: "it is already given another fd" });
        }
        self.fds.push((fd.into(), child_fd));
        Ok(self)
    }

    /// The fd numbers the child will see, in the order they were added.
    pub fn child_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.fds.iter().map(|&(_, t)| t)
    }

    /// Installs the fds on `cmd`: in the child, after its standard streams
    /// are set up and before it execs, each fd appears at its number
    /// without close-on-exec. The fds move into `cmd`.
    ///
    /// Any target number works, also the one where `spawn` keeps the pipe
    /// through which std reports a failed exec: each target number that is
    /// free now is held in the parent by a close-on-exec copy of its fd
    /// until `cmd` is dropped, so `spawn` cannot put that pipe there, and a
    /// failed exec stays an error of `spawn`. Should a target number the
    /// parent already used be closed and opened anew between `apply` and
    /// `spawn`, the child cannot tell that file from std's pipe and `spawn`
    /// fails with `EBUSY` rather than replace it.
    pub fn apply(self, cmd: &mut Command) {
        if !self.fds.is_empty() {
            sys::map_fds_on_exec(cmd, self.fds);
        }
    }
}

/// This process's soft limit on open files (`RLIMIT_NOFILE`), from
/// /proc/self/limits: no fd number reaches it. `None` when unknown or
/// unlimited.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}
