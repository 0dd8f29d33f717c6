//! Polling a System V queue, which has no descriptor: a thread of the
//! polling process watches the queue's state while a poller waits.

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use ipc_sync::ready::{Interest, Readiness, Source, Watch, Watcher, backoff};

use crate::sys;

/// A queue's watchers, one per interest, started when it is first polled
/// for it, and the length of the last message found no room for.
#[derive(Debug, Default)]
pub(crate) struct Polls {
    watchers: [OnceLock<(Arc<Watcher>, Arc<QueueWatch>)>; 2],
    want: AtomicU64,
}

impl Polls {
    /// What a poller waits on for `interest` of queue `id`.
    pub(crate) fn source(&self, id: i32, interest: Interest) -> io::Result<Source<'_>> {
        let slot = &self.watchers[ix(interest)];
        if slot.get().is_none() {
            // Polling needs the queue's state, which takes read permission:
            // refused here rather than reported ready for ever.
            sys::msg_stat(id)?;
            let watch = Arc::new(QueueWatch {
                id,
                interest,
                want: AtomicU64::new(self.want.load(Ordering::Relaxed)),
                nudges: AtomicU32::new(0),
            });
            let watcher = Watcher::start("ipc-msgq-watch", Arc::clone(&watch) as Arc<dyn Watch>)?;
            // Another thread may have been first: its watcher stays.
            let _ = slot.set((Arc::new(watcher), watch));
        }
        let (watcher, _) = slot.get().ok_or_else(|| io::Error::other("a queue's watcher went missing"))?;
        Ok(Source::doorbell(watcher.fd(), Arc::clone(watcher) as Arc<dyn Readiness>))
    }

    /// A send found no room for a message of `len` bytes: a poller
    /// reports the queue writable when there is. Of several sends that
    /// wait (tasks sharing the queue), the shortest decides: a longer one
    /// woken for nothing looks again.
    pub(crate) fn wants(&self, len: usize) {
        // Stored plus 1, so that 0 says "none" (any message, even empty).
        let want = len as u64 + 1;
        let least = |w: &AtomicU64| {
            // Relaxed: read by a watcher of this process after its arming.
            let _ = w.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 { want } else { old.min(want) })
            });
        };
        least(&self.want);
        if let Some((_, watch)) = self.watchers[ix(Interest::Writable)].get() {
            least(&watch.want);
        }
    }

    /// A send went in: what was wanted is done with.
    #[inline]
    pub(crate) fn sent(&self) {
        // Relaxed: as in `wants`; a load first, so that a queue nobody
        // polls writes nothing.
        if self.want.load(Ordering::Relaxed) != 0 {
            self.want.store(0, Ordering::Relaxed);
            if let Some((_, watch)) = self.watchers[ix(Interest::Writable)].get() {
                watch.want.store(0, Ordering::Relaxed);
            }
        }
    }
}

fn ix(interest: Interest) -> usize {
    match interest {
        Interest::Readable => 0,
        Interest::Writable => 1,
    }
}

/// How a watcher looks at a queue: its state, polled with a backoff.
#[derive(Debug)]
struct QueueWatch {
    id: i32,
    interest: Interest,
    /// The length of the shortest message found no room for, plus 1 (0:
    /// none since the last send).
    want: AtomicU64,
    /// Bumped to end a sleep early.
    nudges: AtomicU32,
}

impl Watch for QueueWatch {
    fn ready(&self) -> bool {
        let Ok(ds) = sys::msg_stat(self.id) else {
            // Removed (or no longer ours to read): the next call says so.
            return true;
        };
        match self.interest {
            Interest::Readable => ds.msg_qnum > 0,
            Interest::Writable => {
                // The kernel's test for room: the bytes, and a message
                // counted against the same limit.
                let want = self.want.load(Ordering::Relaxed).saturating_sub(1);
                let (bytes, count, limit) = (ds.__msg_cbytes, ds.msg_qnum, ds.msg_qbytes);
                bytes.saturating_add(want) <= limit && count < limit
            }
        }
    }

    fn sleep(&self, round: u32, watching: &dyn Fn() -> bool) {
        let seen = self.nudges.load(Ordering::Acquire);
        if watching() {
            backoff(&self.nudges, seen, round);
        }
    }

    fn nudge(&self) {
        self.nudges.fetch_add(1, Ordering::Release);
        ipc_sync::futex::wake_all(&self.nudges);
    }
}
