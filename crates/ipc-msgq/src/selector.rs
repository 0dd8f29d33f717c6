use crate::error::{Error, Result};

/// Which message a System V receive takes (the `msgtyp` rules of
/// msgrcv(2)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The first message of any type (`msgtyp` 0).
    Any,
    /// The first message of exactly this type (`msgtyp` > 0).
    Exactly(i64),
    /// The first message of the lowest type up to this one (`msgtyp` < 0:
    /// the lowest type ≤ |t|, first of those).
    AtMost(i64),
    /// The first message of any other type (`MSG_EXCEPT`).
    Except(i64),
}

impl Selector {
    #[inline]
    pub(crate) fn raw(self) -> Result<(libc::c_long, libc::c_int)> {
        let check = |t: i64| if t >= 1 { Ok(t as libc::c_long) } else { Err(Error::InvalidType { mtype: t }) };
        Ok(match self {
            Selector::Any => (0, 0),
            Selector::Exactly(t) => (check(t)?, 0),
            Selector::AtMost(t) => (-check(t)?, 0),
            Selector::Except(t) => (check(t)?, libc::MSG_EXCEPT),
        })
    }
}

/// Reads a selector as `ipc-kit recv --type` takes it: `any` (or `0`),
/// `N` (exactly), `<=N` (the lowest type up to N) or `!N` (any but N),
/// with N a plain decimal number (no sign, no spaces).
///
/// ```
/// use ipc_msgq::Selector;
/// assert_eq!("any".parse(), Ok(Selector::Any));
/// assert_eq!("7".parse(), Ok(Selector::Exactly(7)));
/// assert_eq!("<=3".parse(), Ok(Selector::AtMost(3)));
/// assert_eq!("!2".parse(), Ok(Selector::Except(2)));
/// assert!("+7".parse::<Selector>().is_err());
/// ```
impl std::str::FromStr for Selector {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let n = |v: &str| match v.parse::<i64>() {
            Ok(t) if v.bytes().all(|b| b.is_ascii_digit()) => Ok(t),
            _ => Err(format!("{s:?}: not a type selector (any, N, <=N, !N)")),
        };
        Ok(match s {
            "any" | "0" => Selector::Any,
            _ if s.starts_with("<=") => Selector::AtMost(n(&s[2..])?),
            _ if s.starts_with('!') => Selector::Except(n(&s[1..])?),
            _ => Selector::Exactly(n(s)?),
        })
    }
}
