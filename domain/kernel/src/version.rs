//! Optimistic concurrency.

use std::fmt;

/// The version of an aggregate: 1 when created, incremented by every change.
/// A command may name the version it expects; a mismatch is a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(u64);

impl Version {
    /// The version of a newly created aggregate.
    pub const INITIAL: Self = Self(1);

    /// Wraps a stored or client-supplied version.
    #[must_use]
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The version after one more change. Saturates instead of overflowing: a
    /// store keeps at most `i64::MAX` and refuses the write long before.
    #[must_use]
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }

    /// The number inside.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_changes() {
        assert_eq!(Version::new(7).get(), 7);
        assert_eq!(Version::INITIAL.next().get(), 2);
        assert_eq!(
            Version::new(u64::MAX).next().get(),
            u64::MAX,
            "saturates, never wraps"
        );
    }
}
