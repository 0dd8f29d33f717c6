//! A model of the rules by which msgrcv(2) picks a message for a type
//! selector, against which the real queue is checked: in one process by
//! this crate's `model` test, across processes by the fork suite.

use proptest::prelude::*;

use super::Selector;

/// Which message of `queue` (type and payload, oldest first) `selector`
/// takes, by the rules of msgrcv(2).
pub(crate) fn pick<T>(queue: &[(i64, T)], selector: Selector) -> Option<usize> {
    match selector {
        Selector::Any => (!queue.is_empty()).then_some(0),
        Selector::Exactly(t) => queue.iter().position(|m| m.0 == t),
        Selector::Except(t) => queue.iter().position(|m| m.0 != t),
        Selector::AtMost(t) => {
            let lowest = queue.iter().filter(|m| m.0 <= t).map(|m| m.0).min()?;
            queue.iter().position(|m| m.0 == lowest)
        }
    }
}

/// Any selector, of a type in `types`.
pub(crate) fn selector(types: std::ops::Range<i64>) -> impl Strategy<Value = Selector> {
    prop_oneof![
        Just(Selector::Any),
        types.clone().prop_map(Selector::Exactly),
        types.clone().prop_map(Selector::AtMost),
        types.prop_map(Selector::Except),
    ]
}
