use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What `IPC_STAT` tells about a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueStat {
    /// Messages in the queue.
    pub messages: u64,
    /// Bytes of message text in the queue.
    pub bytes: u64,
    /// The most bytes the queue holds (`msg_qbytes`).
    pub capacity: u64,
    /// The last process that sent, if any.
    pub last_sender: Option<i32>,
    /// The last process that received, if any.
    pub last_receiver: Option<i32>,
    /// When a message was last sent.
    pub sent_at: Option<SystemTime>,
    /// When a message was last received.
    pub received_at: Option<SystemTime>,
    /// When the queue was last changed by `msgctl`.
    pub changed_at: Option<SystemTime>,
    /// Permission bits.
    pub mode: u32,
    /// Owner's user id.
    pub uid: u32,
    /// Owner's group id.
    pub gid: u32,
}

impl QueueStat {
    /// The state `IPC_STAT` filled in.
    pub(crate) fn from_ds(ds: &libc::msqid_ds) -> QueueStat {
        let time = |t: libc::time_t| (t > 0).then(|| UNIX_EPOCH + Duration::from_secs(t as u64));
        let pid = |p: libc::pid_t| (p > 0).then_some(p);
        QueueStat {
            messages: ds.msg_qnum,
            bytes: ds.__msg_cbytes,
            capacity: ds.msg_qbytes,
            last_sender: pid(ds.msg_lspid),
            last_receiver: pid(ds.msg_lrpid),
            sent_at: time(ds.msg_stime),
            received_at: time(ds.msg_rtime),
            changed_at: time(ds.msg_ctime),
            mode: u32::from(ds.msg_perm.mode) & 0o777,
            uid: ds.msg_perm.uid,
            gid: ds.msg_perm.gid,
        }
    }
}
