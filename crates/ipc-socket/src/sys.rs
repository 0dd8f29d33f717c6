//! The calls that take raw descriptors from the kernel and own them.
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Descriptors the kernel just installed in this process for the caller
/// (received with `SCM_RIGHTS`, or made by `accept4`), owned: each is
/// closed when its `OwnedFd` is dropped.
pub(crate) fn own_received(raw: impl IntoIterator<Item = RawFd>) -> Vec<OwnedFd> {
    raw.into_iter()
        .filter(|&fd| fd >= 0)
        // SAFETY: each number is a descriptor the kernel installed in this
        // process by the call that just returned it; nothing else knows
        // it, so this OwnedFd is its only owner.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect()
}

/// The socket `accept4` just made for the caller, owned.
pub(crate) fn own_accepted(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` is the descriptor accept4 just returned: open, and known
    // to nothing else in this process.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Whether `fd`'s peer has shut its side, or the connection is down:
/// `POLLRDHUP` or `POLLHUP` now, without waiting. (nix's `PollFlags`
/// lacks `POLLRDHUP`, and drops every flag it does not know.)
pub(crate) fn read_hung_up(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN | libc::POLLRDHUP, revents: 0 };
    // SAFETY: `p` is one valid pollfd for the call, which writes only its
    // `revents`; a zero timeout returns at once.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0
}

/// `recv(2)` of one message into the spare capacity of `buf` (after its
/// contents), with `flags` (`MSG_TRUNC` among them, so that the message's
/// whole length comes back): the whole length; `buf` grows by what was
/// copied.
pub(crate) fn recv_into_spare(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    flags: libc::c_int,
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let spare = buf.spare_capacity_mut();
    let room = spare.len();
    // SAFETY: `spare` is `room` writable bytes that `buf` owns (its spare
    // capacity); recv writes at most `room` bytes there and reads nothing.
    let n = unsafe { libc::recv(fd.as_raw_fd(), spare.as_mut_ptr().cast(), room, flags) };
    let whole = usize::try_from(n).map_err(|_| std::io::Error::last_os_error())?;
    let copied = whole.min(room);
    // SAFETY: the kernel wrote `copied` bytes at the start of the spare
    // capacity, so they are initialized, and `len + copied` is within the
    // capacity.
    unsafe { buf.set_len(buf.len() + copied) };
    Ok(whole)
}
