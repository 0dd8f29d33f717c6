//! The mechanisms the comparison measures: every [`Mechanism`] of the
//! umbrella, by its own name, and five that are not one of them.

use ipc_kit::Mechanism;

use crate::sys::ring::Ways;

/// A mechanism compared, named in the JSON output as [`name`](Mech::name)
/// says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Mech {
    /// One of the umbrella's mechanisms, through `Mechanism::pair`.
    Kit(Mechanism),
    /// The typed shared-memory channel, `Channel<[u8; N]>`: not a
    /// `Mechanism`, as its messages have one fixed size.
    ShmChannel,
    /// One connection of a service (ipc-service): requests one way,
    /// replies the other. Its reference is the plain byte channel.
    Service,
    /// One publisher and 1, 2, 4 or 8 subscribers (ipc-service): measured
    /// apart from the pairs of the other mechanisms (`bench::pubsub`).
    PubSub,
    /// The limit of a round trip through shared memory, a reference only:
    /// a cache line carrying a sequence word and the payload
    /// (`sys::ring::Line`), one handed back and forth (`shm-line`), or one
    /// each way (`shm-lines`, the limit of two one-way links).
    ShmLine(Ways),
}

/// How many mechanisms are compared: the umbrella's and the five others.
const COUNT: usize = Mechanism::ALL.len() + 5;

impl Mech {
    /// Every mechanism, in the order of the tables and the JSON rows: the
    /// umbrella's in its order, the typed channel just before the byte
    /// channel, then services and publish/subscribe, then the round-trip
    /// limits.
    pub(crate) const ALL: [Mech; COUNT] = {
        let mut all = [Mech::ShmChannel; COUNT];
        let (mut from, mut to) = (0, 0);
        while from < Mechanism::ALL.len() {
            if matches!(Mechanism::ALL[from], Mechanism::ShmByteChannel) {
                all[to] = Mech::ShmChannel;
                to += 1;
            }
            all[to] = Mech::Kit(Mechanism::ALL[from]);
            (from, to) = (from + 1, to + 1);
        }
        // The typed channel found its place; services and the limits
        // come last.
        assert!(to == COUNT - 4, "Mechanism::ALL has no ShmByteChannel");
        all[COUNT - 4] = Mech::Service;
        all[COUNT - 3] = Mech::PubSub;
        all[COUNT - 2] = Mech::ShmLine(Ways::Shared);
        all[COUNT - 1] = Mech::ShmLine(Ways::Apart);
        all
    };

    /// The name of the tables, the JSON output and `--mechanism`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mech::Kit(m) => m.name(),
            Mech::ShmChannel => "shm-channel",
            Mech::Service => "service",
            Mech::PubSub => "pubsub",
            Mech::ShmLine(Ways::Shared) => "shm-line",
            Mech::ShmLine(Ways::Apart) => "shm-lines",
        }
    }

    /// Whether ipc-kit has a side to measure (the limits are raw only).
    pub(crate) fn has_ipc_kit(self) -> bool {
        !matches!(self, Mech::ShmLine(_))
    }

    /// Whether this is one of the two shared-memory channels, whose round
    /// trips are also set against the limits (`ShmLine`).
    pub(crate) fn is_channel(self) -> bool {
        matches!(self, Mech::ShmChannel | Mech::Kit(Mechanism::ShmByteChannel))
    }
}

/// `--mechanism NAME`, with the names above as its possible values.
impl clap::ValueEnum for Mech {
    fn value_variants<'a>() -> &'a [Self] {
        &Mech::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mechanism_once_in_the_order_of_the_output() {
        let kit: Vec<Mechanism> = Mech::ALL
            .iter()
            .filter_map(|m| match m {
                Mech::Kit(k) => Some(*k),
                _ => None,
            })
            .collect();
        assert_eq!(kit, Mechanism::ALL, "the umbrella's mechanisms, each once, in its order");
        let at = |m| Mech::ALL.iter().position(|&x| x == m);
        assert_eq!(at(Mech::ShmChannel).map(|i| i + 1), at(Mech::Kit(Mechanism::ShmByteChannel)));
        assert_eq!(at(Mech::Kit(Mechanism::UnixSocket)), Some(COUNT - 5));
        assert_eq!(at(Mech::Service), Some(COUNT - 4));
        assert_eq!(at(Mech::PubSub), Some(COUNT - 3));
        assert_eq!(at(Mech::ShmLine(Ways::Shared)), Some(COUNT - 2));
        assert_eq!(at(Mech::ShmLine(Ways::Apart)), Some(COUNT - 1));
        for m in Mech::ALL {
            assert_eq!(<Mech as clap::ValueEnum>::from_str(m.name(), false), Ok(m), "--mechanism {}", m.name());
        }
    }
}
