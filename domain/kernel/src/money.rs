//! Money, as every context keeps it: a positive amount in minor units of an
//! ISO 4217 currency (the proto's `strata.type.v1.Money`). Arithmetic is
//! checked: a sum or a product that would overflow is an error, never a panic.

use std::fmt;

use crate::FieldViolation;

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// # Errors
    /// A violation on `currency_code` unless `raw` is three upper-case letters.
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        match raw.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(FieldViolation::new(
                "currency_code",
                "must be an ISO 4217 code of three upper-case letters",
            )),
        }
    }

    /// The code as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A positive amount in minor units of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

/// Why an amount cannot be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Amounts in different currencies do not add up.
    #[error("amounts in {0} and {1} cannot be added")]
    CurrencyMismatch(Currency, Currency),
    /// The result does not fit in 64 bits of minor units.
    #[error("the amount is too large")]
    Overflow,
}

impl Money {
    /// # Errors
    /// Violations on `currency_code` and `amount_minor` (which must be > 0), all of them.
    pub fn parse(currency_code: &str, amount_minor: i64) -> Result<Self, Vec<FieldViolation>> {
        let currency = Currency::parse(currency_code);
        let amount = if amount_minor > 0 {
            Ok(amount_minor)
        } else {
            Err(FieldViolation::new("amount_minor", "must be greater than zero"))
        };
        match (currency, amount) {
            (Ok(currency), Ok(amount_minor)) => Ok(Self {
                amount_minor,
                currency,
            }),
            (currency, amount) => Err([currency.err(), amount.err()].into_iter().flatten().collect()),
        }
    }

    /// The amount in minor units (cents).
    #[must_use]
    pub const fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    /// The currency.
    #[must_use]
    pub const fn currency(&self) -> Currency {
        self.currency
    }

    /// This amount `quantity` times.
    ///
    /// # Errors
    /// [`MoneyError::Overflow`].
    pub fn times(self, quantity: u32) -> Result<Self, MoneyError> {
        let amount_minor = self
            .amount_minor
            .checked_mul(i64::from(quantity))
            .filter(|a| *a > 0)
            .ok_or(MoneyError::Overflow)?;
        Ok(Self { amount_minor, ..self })
    }

    /// The sum of two amounts in the same currency.
    ///
    /// # Errors
    /// [`MoneyError::CurrencyMismatch`] or [`MoneyError::Overflow`].
    pub fn plus(self, other: Self) -> Result<Self, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let amount_minor = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Self { amount_minor, ..self })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount_minor, self.currency)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn money_reports_every_violation() {
        assert_eq!(
            Money::parse("EUR", 1999).map(|m| (m.amount_minor(), m.currency().to_string())),
            Ok((1999, "EUR".into()))
        );
        let errors = Money::parse("eur", 0).unwrap_err();
        let fields: Vec<_> = errors.iter().map(FieldViolation::field).collect();
        assert_eq!(fields, ["currency_code", "amount_minor"]);
        assert!(Money::parse("EURO", 1).is_err());
        assert!(Money::parse("EUR", -5).is_err());
    }

    #[test]
    fn arithmetic_is_checked() {
        let eur = Money::parse("EUR", 1290).unwrap();
        assert_eq!(eur.times(3).unwrap().amount_minor(), 3870);
        assert_eq!(eur.plus(eur).unwrap().amount_minor(), 2580);
        assert_eq!(
            eur.times(0),
            Err(MoneyError::Overflow),
            "no money is not an amount"
        );
        assert_eq!(eur.times(1), Ok(eur));
        let huge = Money::parse("EUR", i64::MAX).unwrap();
        assert_eq!(huge.times(2), Err(MoneyError::Overflow));
        assert_eq!(huge.plus(eur), Err(MoneyError::Overflow));
        let usd = Money::parse("USD", 1).unwrap();
        assert!(matches!(eur.plus(usd), Err(MoneyError::CurrencyMismatch(..))));
    }
}
