//! How a side paces its waits: a receiver slipping behind a streaming
//! sender, and a sender holding out for a lead of room.

/// How a side waits for the other.
///
/// Under `Spin` and `Adaptive`, a side that finds its peer streaming (its
/// waits end at once, again and again) starts each wait with 8 spin-loop
/// pauses (about 0.2 µs on an AMD EPYC; a pause lasts longer or shorter
/// on other CPUs), so that it takes messages in batches instead of one by
/// one on the cache lines the peer is writing; it stops as soon as the
/// traffic looks like requests and answers. [`ChannelStats::slips`](super::ChannelStats::slips) counts
/// these pauses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WaitPolicy {
    /// Busy-wait without sleeping: the lowest latency, a CPU kept busy.
    Spin,
    /// Spin some microseconds, then sleep on a futex.
    #[default]
    Adaptive,
    /// Sleep on a futex at once.
    Block,
}

/// Short waits in a row after which a side starts slipping.
const SLIP_AFTER: u32 = 4;

/// The pauses a slipping side makes before it first looks (see [`Pace`]):
/// about 0.2 µs on the machine the bench ran on (25 ns a pause), time for
/// a streaming peer to write a few messages.
pub(super) const SLIP_SPINS: u32 = if cfg!(loom) { 1 } else { 8 };

/// How a side paces its waits for a streaming peer ("temporal slipping",
/// after FastForward, Giacomoni et al., PPoPP 2008).
///
/// A receiver that keeps up with a fast sender waits a moment for nearly
/// every message, and takes each one while the sender writes the next
/// beside it: the index line and the record lines then travel between the
/// two CPUs for every message, and both sides slow down. So once a side's
/// waits end at once several times in a row, it starts its later waits
/// with a short pause before the first look, letting the peer get a few
/// messages ahead; it takes them as a batch, on lines the peer has left.
/// While it slips, a receiver whose cached messages run out waits before it
/// reads the sender's index again. As soon as a slipped wait finds a
/// single message (not a stream but a request and its answer), or a wait
/// is long, the side stops slipping. The sender, waiting on a full ring,
/// paces itself the same way, and holds out for a lead of room (see
/// [`LEAD`]).
///
/// Nothing here is written per message: only when a side waits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pace {
    /// Waits in a row that ended at the first or second look.
    short: u32,
    /// Whether waits start with [`SLIP_SPINS`] pauses.
    pub(super) slipping: bool,
}

impl Pace {
    /// A wait ended after `looks` looks at the peer's index (1: the first
    /// found it ready; 0: it never did), finding `found` messages (1: a
    /// single one; 2: more).
    #[inline]
    pub(super) fn end(&mut self, looks: u32, found: u64) {
        if !(1..=2).contains(&looks) || (self.slipping && found < 2) {
            // A long wait, or a slip that brought one message: not a stream.
            *self = Pace::default();
        } else if !self.slipping {
            self.short += 1;
            if self.short >= SLIP_AFTER {
                *self = Pace { short: 0, slipping: true };
            }
        }
    }
}

/// The room a sender that found its ring full waits for, for a while,
/// before it writes again: slots (or bytes, for the byte channel) ahead of
/// the receiver. The slots right behind a receiver that keeps up hold the
/// cache lines it is reading; a sender that wrote into each as soon as it
/// was freed would take those lines from under it, message by message.
pub(super) const LEAD: u64 = 32;

/// The looks at the receiver's index for which a waiting sender holds out
/// for its lead (see [`LEAD`]); then any room will do.
pub(super) const LEAD_LOOKS: u32 = 32;

/// The looks a waiting sender counts as made when it starts to wait: none
/// when it spins first, and [`LEAD_LOOKS`] when it sleeps at once
/// (`WaitPolicy::Block`): a sleeper looks once per wake-up or sleep
/// slice, and holding out for its lead would keep it asleep, for many
/// slices, while there is room (beyond its timeout).
#[inline]
pub(super) fn looks_before(policy: WaitPolicy) -> u32 {
    if policy == WaitPolicy::Block { LEAD_LOOKS } else { 0 }
}

/// What a waiting sender finds with `free` slots (or bytes) free, holding
/// out for `lead` of them for [`LEAD_LOOKS`] looks: 0 while it waits on,
/// 1 for a little room, 2 for its lead (see `Side::wait`).
#[inline]
pub(super) fn room(free: u64, lead: u64, looks: u32) -> u64 {
    if free >= lead {
        2
    } else if free > 0 && looks > LEAD_LOOKS {
        1
    } else {
        0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{LEAD_LOOKS, Pace, SLIP_AFTER, WaitPolicy, looks_before, room};

    /// A wait of `looks` looks that found `found` messages; whether it
    /// slipped.
    fn wait(pace: &mut Pace, looks: u32, found: u64) -> bool {
        let slipped = pace.slipping;
        pace.end(looks, found);
        slipped
    }

    #[test]
    fn a_peer_that_streams_is_given_a_lead() {
        let mut pace = Pace::default();
        for _ in 0..SLIP_AFTER {
            assert!(!wait(&mut pace, 1, 1), "no slip before the streak is complete");
        }
        // Each slip finds a batch: the side keeps slipping.
        for _ in 0..10 {
            assert!(wait(&mut pace, 1, 2));
        }
    }

    #[test]
    fn a_slip_that_finds_one_message_ends_the_slipping() {
        let mut pace = Pace::default();
        for _ in 0..SLIP_AFTER {
            wait(&mut pace, 2, 1);
        }
        assert!(wait(&mut pace, 1, 2));
        // Requests and answers: one message at a time.
        assert!(wait(&mut pace, 1, 1));
        assert!(!wait(&mut pace, 1, 1), "a new streak is needed");
        assert!(!wait(&mut pace, 1, 2));
    }

    #[test]
    fn long_waits_never_slip_and_break_a_streak() {
        let mut pace = Pace::default();
        for _ in 0..100 {
            assert!(!wait(&mut pace, 9, 1));
        }
        for _ in 0..SLIP_AFTER - 1 {
            wait(&mut pace, 1, 1);
        }
        wait(&mut pace, 0, 0); // went on to spin longer, or sleep
        assert!(!wait(&mut pace, 1, 1));
        // A long wait while slipping stops it too.
        pace = Pace::default();
        for _ in 0..SLIP_AFTER {
            wait(&mut pace, 1, 1);
        }
        assert!(wait(&mut pace, 30, 4));
        assert!(!wait(&mut pace, 1, 2));
    }

    #[test]
    fn a_waiting_sender_holds_out_for_its_lead_then_takes_any_room() {
        // The lead at once, whatever the looks.
        assert_eq!(room(32, 32, 1), 2);
        assert_eq!(room(1000, 32, LEAD_LOOKS + 5), 2);
        // Less than the lead: on for LEAD_LOOKS looks, then taken.
        for looks in 1..=LEAD_LOOKS {
            assert_eq!(room(31, 32, looks), 0, "look {looks}");
        }
        assert_eq!(room(31, 32, LEAD_LOOKS + 1), 1);
        assert_eq!(room(1, 32, LEAD_LOOKS + 1), 1);
        // No room is never taken.
        assert_eq!(room(0, 32, u32::MAX), 0);
        // A lead of one slot is any room.
        assert_eq!(room(1, 1, 1), 2);
        // A sender that sleeps at once takes any room at its first look.
        assert_eq!(room(1, 32, looks_before(WaitPolicy::Block) + 1), 1);
        assert_eq!(room(1, 32, looks_before(WaitPolicy::Adaptive) + 1), 0);
    }
}
