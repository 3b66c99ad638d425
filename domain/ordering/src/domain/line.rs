//! An order's lines: entities inside the Order aggregate, reached only through
//! it, and the total they add up to.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use strata_kernel::{FieldViolation, money::MoneyError};
use uuid::Uuid;

use super::{LineSku, Money, ProductRef, Quantity};

/// A line as the caller asked for it, its values validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLine {
    /// The product.
    pub product: ProductRef,
    /// Its sku, as snapshot by the caller.
    pub sku: LineSku,
    /// How many.
    pub quantity: Quantity,
    /// The unit price snapshot.
    pub unit_price: Money,
}

/// One line of an order: a product, how many, the unit price it was ordered at
/// and the line total computed from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    product: ProductRef,
    sku: LineSku,
    quantity: Quantity,
    unit_price: Money,
    line_total: Money,
}

impl OrderLine {
    /// The product.
    #[must_use]
    pub fn product(&self) -> ProductRef {
        self.product
    }

    /// The sku.
    #[must_use]
    pub fn sku(&self) -> &LineSku {
        &self.sku
    }

    /// How many.
    #[must_use]
    pub fn quantity(&self) -> Quantity {
        self.quantity
    }

    /// The unit price it was ordered at.
    #[must_use]
    pub fn unit_price(&self) -> Money {
        self.unit_price
    }

    /// quantity × unit price.
    #[must_use]
    pub fn line_total(&self) -> Money {
        self.line_total
    }

    /// The plain-data form.
    #[must_use]
    pub fn snapshot(&self) -> LineSnapshot {
        LineSnapshot {
            product_id: self.product.as_uuid(),
            sku: self.sku.as_str().to_owned(),
            quantity: self.quantity.get(),
            unit_price_minor: self.unit_price.amount_minor(),
            currency: self.unit_price.currency().to_string(),
            line_total_minor: self.line_total.amount_minor(),
        }
    }
}

/// A line as plain data: what the order row's `lines` column, the idempotency
/// record and the `Placed` event keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct LineSnapshot {
    pub product_id: Uuid,
    pub sku: String,
    pub quantity: u32,
    pub unit_price_minor: i64,
    pub currency: String,
    pub line_total_minor: i64,
}

/// The lines of an order and their total. Invariants, kept by construction: at
/// least one line; each product at most once; one currency; every line total is
/// quantity × unit price and the total is their sum, computed with checked
/// arithmetic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLines {
    lines: Vec<OrderLine>,
    total: Money,
}

impl OrderLines {
    /// Builds the lines of a new order and computes the totals. Violations are
    /// named by the line's index, `lines[2].product_id`, all of them at once.
    ///
    /// # Errors
    /// Violations on `lines` (none given, or a total too large) and on
    /// `lines[i].product_id` (a product already on an earlier line),
    /// `lines[i].unit_price.currency_code` (not the first line's currency) or
    /// `lines[i].quantity` (a line total too large).
    pub fn new(lines: Vec<NewLine>) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let Some(first) = lines.first() else {
            return Err(vec![FieldViolation::new("lines", "must hold at least one line")]);
        };
        let currency = first.unit_price.currency();
        let mut seen: HashMap<ProductRef, usize> = HashMap::with_capacity(lines.len());
        let mut built = Vec::with_capacity(lines.len());
        for (i, line) in lines.into_iter().enumerate() {
            let at = |field: &str, description: String| {
                FieldViolation::new(format!("lines[{i}].{field}"), description)
            };
            if let Some(earlier) = seen.insert(line.product, i) {
                violations.push(at(
                    "product_id",
                    format!(
                        "is already ordered on lines[{earlier}]; order a product once, with its quantity"
                    ),
                ));
            }
            if line.unit_price.currency() != currency {
                violations.push(at(
                    "unit_price.currency_code",
                    format!("must be {currency}, the currency of lines[0]: an order has one currency"),
                ));
                continue;
            }
            match line.unit_price.times(line.quantity.get()) {
                Ok(line_total) => built.push(OrderLine {
                    product: line.product,
                    sku: line.sku,
                    quantity: line.quantity,
                    unit_price: line.unit_price,
                    line_total,
                }),
                Err(_) => violations.push(at(
                    "quantity",
                    "makes the line total too large (quantity × unit price overflows)".to_owned(),
                )),
            }
        }
        if !violations.is_empty() {
            return Err(violations);
        }
        match total_of(&built) {
            Ok(total) => Ok(Self { lines: built, total }),
            Err(_) => Err(vec![FieldViolation::new(
                "lines",
                "the order total is too large (the sum of the line totals overflows)",
            )]),
        }
    }

    /// Lines read back from a store, checked against the invariants (not
    /// today's input rules): at least one line, each product once, quantities
    /// of at least 1, positive prices in one currency, line totals that match
    /// and a total that is their sum.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn restore(lines: Vec<LineSnapshot>, total: Money) -> Result<Self, FieldViolation> {
        if lines.is_empty() {
            return Err(FieldViolation::new("lines", "is empty"));
        }
        let mut built: Vec<OrderLine> = Vec::with_capacity(lines.len());
        for (i, line) in lines.into_iter().enumerate() {
            let at = |field: &str, description: &str| {
                FieldViolation::new(format!("lines[{i}].{field}"), description)
            };
            let unit_price = Money::parse(&line.currency, line.unit_price_minor)
                .map_err(|mut v| v.remove(0).nested_in(&format!("lines[{i}].unit_price")))?;
            if unit_price.currency() != total.currency() {
                return Err(at("currency", "differs from the order's"));
            }
            let quantity = Quantity::parse(line.quantity).map_err(|v| v.nested_in(&format!("lines[{i}]")))?;
            let line_total = unit_price
                .times(quantity.get())
                .map_err(|_| at("line_total", "overflows"))?;
            if line_total.amount_minor() != line.line_total_minor {
                return Err(at("line_total", "is not quantity × unit price"));
            }
            let product = ProductRef::from_uuid(line.product_id);
            if built.iter().any(|l| l.product == product) {
                return Err(at("product_id", "is on another line too"));
            }
            built.push(OrderLine {
                product,
                sku: LineSku::from_stored(line.sku).map_err(|v| v.nested_in(&format!("lines[{i}]")))?,
                quantity,
                unit_price,
                line_total,
            });
        }
        let sum = total_of(&built).map_err(|_| FieldViolation::new("total", "overflows"))?;
        if sum != total {
            return Err(FieldViolation::new("total", "is not the sum of the line totals"));
        }
        Ok(Self { lines: built, total })
    }

    /// The lines, in the order they were given.
    #[must_use]
    pub fn lines(&self) -> &[OrderLine] {
        &self.lines
    }

    /// The sum of the line totals.
    #[must_use]
    pub fn total(&self) -> Money {
        self.total
    }

    /// The plain-data form of every line.
    #[must_use]
    pub fn snapshot(&self) -> Vec<LineSnapshot> {
        self.lines.iter().map(OrderLine::snapshot).collect()
    }
}

fn total_of(lines: &[OrderLine]) -> Result<Money, MoneyError> {
    let mut totals = lines.iter().map(OrderLine::line_total);
    let first = totals.next().ok_or(MoneyError::Overflow)?;
    totals.try_fold(first, Money::plus)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn line(product: Uuid, quantity: u32, currency: &str, price: i64) -> NewLine {
        NewLine {
            product: ProductRef::from_uuid(product),
            sku: LineSku::parse("MUG-1").unwrap(),
            quantity: Quantity::parse(quantity).unwrap(),
            unit_price: Money::parse(currency, price).unwrap(),
        }
    }

    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(FieldViolation::field).collect()
    }

    #[test]
    fn totals_are_computed_from_the_lines() {
        let lines = OrderLines::new(vec![
            line(Uuid::now_v7(), 3, "EUR", 1290),
            line(Uuid::now_v7(), 1, "EUR", 500),
        ])
        .unwrap();
        assert_eq!(lines.lines()[0].line_total().amount_minor(), 3870);
        assert_eq!(lines.total().amount_minor(), 4370);
        assert_eq!(lines.total().currency().as_str(), "EUR");
    }

    #[test]
    fn violations_name_the_line() {
        let twice = Uuid::now_v7();
        let err = OrderLines::new(vec![
            line(twice, 1, "EUR", 100),
            line(Uuid::now_v7(), 1, "USD", 100),
            line(twice, 2, "EUR", 100),
            line(Uuid::now_v7(), u32::MAX, "EUR", i64::MAX / 2),
        ])
        .unwrap_err();
        assert_eq!(
            fields(&err),
            [
                "lines[1].unit_price.currency_code",
                "lines[2].product_id",
                "lines[3].quantity"
            ]
        );
        assert!(err[1].description().contains("lines[0]"), "{}", err[1]);
        assert_eq!(fields(&OrderLines::new(vec![]).unwrap_err()), ["lines"]);
    }

    #[test]
    fn an_order_total_that_overflows_is_refused() {
        let err = OrderLines::new(vec![
            line(Uuid::now_v7(), 1, "EUR", i64::MAX - 1),
            line(Uuid::now_v7(), 1, "EUR", 2),
        ])
        .unwrap_err();
        assert_eq!(fields(&err), ["lines"]);
    }

    #[test]
    fn stored_lines_are_checked_against_the_invariants() {
        let lines = OrderLines::new(vec![line(Uuid::now_v7(), 2, "EUR", 150)]).unwrap();
        let back = OrderLines::restore(lines.snapshot(), lines.total()).unwrap();
        assert_eq!(back, lines);
        let mut wrong = lines.snapshot();
        wrong[0].line_total_minor = 1;
        assert_eq!(
            OrderLines::restore(wrong, lines.total()).unwrap_err().field(),
            "lines[0].line_total"
        );
        let other_total = Money::parse("EUR", 301).unwrap();
        assert_eq!(
            OrderLines::restore(lines.snapshot(), other_total)
                .unwrap_err()
                .field(),
            "total"
        );
        assert_eq!(
            OrderLines::restore(vec![], lines.total()).unwrap_err().field(),
            "lines"
        );
    }
}
