//! The context's own settings, read from the environment when it is mounted,
//! each with a default; a bad value is an error naming its variable.

use std::time::Duration;

/// `STRATA_ORDERING_MAX_LINES`: the most lines one order may hold.
pub const MAX_LINES_VAR: &str = "STRATA_ORDERING_MAX_LINES";
/// `STRATA_ORDERING_PENDING_TTL_SECS`: how long a pending order waits for
/// confirmation before it expires.
pub const PENDING_TTL_VAR: &str = "STRATA_ORDERING_PENDING_TTL_SECS";
/// `STRATA_ORDERING_SWEEP_PERIOD_SECS`: how often the background sweep looks
/// for expired pending orders.
pub const SWEEP_PERIOD_VAR: &str = "STRATA_ORDERING_SWEEP_PERIOD_SECS";

/// The ordering context's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The most lines one order may hold (default 100).
    pub max_lines: usize,
    /// How long a pending order waits for confirmation (default 900 s).
    pub pending_ttl: Duration,
    /// How often the expiry sweep runs (default 30 s).
    pub sweep_period: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_lines: 100,
            pending_ttl: Duration::from_secs(900),
            sweep_period: Duration::from_secs(30),
        }
    }
}

/// A setting whose value is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?}: {reason}")]
pub struct SettingError {
    /// The environment variable.
    pub variable: &'static str,
    /// The value it holds.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Settings {
    /// The settings from the process environment, defaults for what is unset.
    ///
    /// # Errors
    /// [`SettingError`] naming the first variable with a bad value.
    pub fn from_env() -> Result<Self, SettingError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The settings from `lookup` (a variable's value, if set), defaults for
    /// what is unset.
    ///
    /// # Errors
    /// [`SettingError`] naming the first variable with a bad value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        let defaults = Self::default();
        let number = |variable: &'static str, max: u64| -> Result<Option<u64>, SettingError> {
            let Some(value) = lookup(variable) else {
                return Ok(None);
            };
            match value.trim().parse::<u64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
                Ok(_) => Err(SettingError {
                    variable,
                    value,
                    reason: "out of range",
                }),
                Err(_) => Err(SettingError {
                    variable,
                    value,
                    reason: "must be a whole number of at least 1",
                }),
            }
        };
        // Bounds that keep every later computation in range: a year of seconds
        // for durations, ten thousand lines for an order.
        const YEAR: u64 = 366 * 24 * 3600;
        Ok(Self {
            max_lines: number(MAX_LINES_VAR, 10_000)?
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(defaults.max_lines),
            pending_ttl: number(PENDING_TTL_VAR, YEAR)?.map_or(defaults.pending_ttl, Duration::from_secs),
            sweep_period: number(SWEEP_PERIOD_VAR, YEAR)?.map_or(defaults.sweep_period, Duration::from_secs),
        })
    }

    /// The pending time-to-live as the domain counts time.
    #[must_use]
    pub fn pending_ttl(&self) -> time::Duration {
        time::Duration::try_from(self.pending_ttl).unwrap_or(time::Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Settings, SettingError> {
        Settings::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(from(&[]).unwrap(), Settings::default());
        assert_eq!(Settings::default().max_lines, 100);
        assert_eq!(Settings::default().pending_ttl, Duration::from_secs(900));
        let set = from(&[
            (MAX_LINES_VAR, "5"),
            (PENDING_TTL_VAR, "60"),
            (SWEEP_PERIOD_VAR, "2"),
        ])
        .unwrap();
        assert_eq!(
            set,
            Settings {
                max_lines: 5,
                pending_ttl: Duration::from_secs(60),
                sweep_period: Duration::from_secs(2)
            }
        );
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        for (var, value) in [
            (MAX_LINES_VAR, "0"),
            (MAX_LINES_VAR, "many"),
            (PENDING_TTL_VAR, "-5"),
            (SWEEP_PERIOD_VAR, "99999999999"),
        ] {
            let err = from(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, var);
            assert!(err.to_string().starts_with(var), "{err}");
        }
    }
}
