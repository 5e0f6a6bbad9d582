//! Credits, the product's money: a count that is never negative. Arithmetic that would go below
//! zero or past the largest count is an error, never a wrap or a clamp. The protos and the
//! database carry credits as `int64`; they become `Credits` at those edges, and a negative one
//! there is refused.

use std::fmt;

/// A number of credits, `0..=i64::MAX` (so it always fits the wire's and the database's int64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Credits(i64);

/// A negative number where credits were expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("credits cannot be negative (got {0})")]
pub struct NegativeCredits(pub i64);

/// Why credits could not be added or taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CreditsError {
    #[error("{needed} credits needed, {available} available")]
    Insufficient { needed: Credits, available: Credits },
    #[error("more credits than can be counted")]
    Overflow,
}

impl Credits {
    pub const ZERO: Credits = Credits(0);
    /// The largest count there is.
    pub const MAX: Credits = Credits(i64::MAX);

    /// `n` credits, if `n` is not negative.
    pub const fn new(n: i64) -> Result<Self, NegativeCredits> {
        if n < 0 { Err(NegativeCredits(n)) } else { Ok(Self(n)) }
    }

    /// `n` credits, for a count that cannot be negative.
    pub const fn from_u32(n: u32) -> Self {
        Self(n as i64)
    }

    /// The count, for the wire and the database.
    pub const fn get(self) -> i64 {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Credits) -> Result<Credits, CreditsError> {
        self.0.checked_add(other.0).map(Credits).ok_or(CreditsError::Overflow)
    }

    /// `self - other`, or the shortfall as an error.
    pub fn checked_sub(self, other: Credits) -> Result<Credits, CreditsError> {
        if other.0 > self.0 {
            return Err(CreditsError::Insufficient { needed: other, available: self });
        }
        Ok(Credits(self.0 - other.0))
    }
}

impl TryFrom<i64> for Credits {
    type Error = NegativeCredits;

    fn try_from(n: i64) -> Result<Self, NegativeCredits> {
        Self::new(n)
    }
}

impl From<Credits> for i64 {
    fn from(c: Credits) -> i64 {
        c.0
    }
}

impl fmt::Display for Credits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn negative_counts_are_refused_at_the_edge() {
        let table = [
            (0, Ok(Credits::ZERO)),
            (25, Ok(Credits(25))),
            (-1, Err(NegativeCredits(-1))),
            (i64::MIN, Err(NegativeCredits(i64::MIN))),
        ];
        for (n, expected) in table {
            assert_eq!(Credits::new(n), expected, "{n}");
            assert_eq!(Credits::try_from(n), expected, "{n}");
        }
        assert_eq!(Credits::new(i64::MAX).unwrap().get(), i64::MAX);
    }

    #[test]
    fn taking_more_than_there_is_names_both_amounts() {
        let err = Credits(2).checked_sub(Credits(3)).unwrap_err();
        assert_eq!(err, CreditsError::Insufficient { needed: Credits(3), available: Credits(2) });
        assert_eq!(err.to_string(), "3 credits needed, 2 available");
        assert_eq!(Credits(i64::MAX).checked_add(Credits(1)), Err(CreditsError::Overflow));
    }

    proptest! {
        /// Whatever is added and taken, the count stays in range and every refusal leaves it as
        /// it was: the sum of what was applied is the count.
        #[test]
        fn a_count_never_goes_below_zero_or_wraps(moves in proptest::collection::vec((any::<bool>(), 0..=i64::MAX / 4), 0..50)) {
            let mut count = Credits::ZERO;
            let mut applied: i128 = 0;
            for (add, n) in moves {
                let n = Credits::new(n).unwrap();
                let next = if add { count.checked_add(n) } else { count.checked_sub(n) };
                match next {
                    Ok(next) => {
                        applied += if add { i128::from(n.get()) } else { -i128::from(n.get()) };
                        count = next;
                    }
                    Err(CreditsError::Insufficient { needed, available }) => {
                        prop_assert!(!add && needed > available && available == count);
                    }
                    Err(CreditsError::Overflow) => prop_assert!(add),
                }
                prop_assert!(count.get() >= 0);
                prop_assert_eq!(i128::from(count.get()), applied);
            }
        }
    }
}
