//! The JSON both edges speak where they show the same thing: money, times and
//! orders, converted from and to the data services' messages.

use serde::{Deserialize, Serialize};
use strata_proto::{ordering::v1 as ordering, r#type::v1 as types};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use utoipa::ToSchema;

use crate::problem::Problem;

/// An amount of money: `{"currency": "EUR", "amount_minor": 1290}` is €12.90.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// ISO 4217 code, e.g. `EUR`.
    #[schema(example = "EUR", pattern = r"^[A-Z]{3}$")]
    pub currency: String,
    /// In the currency's smallest unit (cents for EUR).
    #[schema(example = 1290, minimum = 1)]
    #[serde(deserialize_with = "crate::json::whole")]
    pub amount_minor: i64,
}

impl From<types::Money> for Money {
    fn from(money: types::Money) -> Self {
        Self {
            currency: money.currency_code,
            amount_minor: money.amount_minor,
        }
    }
}

impl From<Money> for types::Money {
    fn from(money: Money) -> Self {
        Self {
            currency_code: money.currency,
            amount_minor: money.amount_minor,
        }
    }
}

/// An optional message field a data service must fill: its absence is its fault.
///
/// # Errors
/// 500 (logged) when it is missing.
pub fn required<T>(value: Option<T>, what: &str) -> Result<T, Problem> {
    value.ok_or_else(|| {
        tracing::error!(what, "a data service answered without a required field");
        Problem::internal()
    })
}

/// A protobuf timestamp as RFC 3339 (`2026-11-25T15:01:23.456Z`); empty when unset.
#[must_use]
pub fn timestamp(ts: Option<prost_types::Timestamp>) -> Option<String> {
    let ts = ts?;
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// Where an order is: `pending`, `confirmed`, `shipped` or `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Placed, waiting for its stock to be reserved.
    Pending,
    /// Its stock is reserved for it.
    Confirmed,
    /// On its way.
    Shipped,
    /// Cancelled (see `cancel_reason`).
    Cancelled,
}

impl OrderStatus {
    /// The data service's status.
    #[must_use]
    pub fn to_proto(self) -> ordering::OrderStatus {
        match self {
            Self::Pending => ordering::OrderStatus::Pending,
            Self::Confirmed => ordering::OrderStatus::Confirmed,
            Self::Shipped => ordering::OrderStatus::Shipped,
            Self::Cancelled => ordering::OrderStatus::Cancelled,
        }
    }

    fn from_proto(status: i32) -> Result<Self, Problem> {
        match ordering::OrderStatus::try_from(status) {
            Ok(ordering::OrderStatus::Pending) => Ok(Self::Pending),
            Ok(ordering::OrderStatus::Confirmed) => Ok(Self::Confirmed),
            Ok(ordering::OrderStatus::Shipped) => Ok(Self::Shipped),
            Ok(ordering::OrderStatus::Cancelled) => Ok(Self::Cancelled),
            _ => required(None, "order status"),
        }
    }
}

/// An order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Order {
    /// Its id.
    pub id: uuid::Uuid,
    /// Who placed it.
    pub buyer_id: uuid::Uuid,
    /// Where it is.
    pub status: OrderStatus,
    /// What was ordered, at the prices of the moment.
    pub lines: Vec<OrderLine>,
    /// The sum of the lines.
    pub total: Money,
    /// Why it was cancelled (`expired` when it was never confirmed in time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// Incremented by every change.
    pub version: u64,
    /// When it was placed (RFC 3339).
    pub create_time: Option<String>,
}

/// One line of an order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderLine {
    /// The product.
    pub product_id: uuid::Uuid,
    /// Its sku.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// The price of one, when the order was placed.
    pub unit_price: Money,
    /// quantity × unit price.
    pub line_total: Money,
}

impl TryFrom<ordering::Order> for Order {
    type Error = Problem;

    fn try_from(order: ordering::Order) -> Result<Self, Problem> {
        let lines = order
            .lines
            .into_iter()
            .map(|line| {
                Ok(OrderLine {
                    product_id: uuid(&line.product_id)?,
                    sku: line.sku,
                    quantity: line.quantity,
                    unit_price: required(line.unit_price, "unit_price")?.into(),
                    line_total: required(line.line_total, "line_total")?.into(),
                })
            })
            .collect::<Result<_, Problem>>()?;
        Ok(Self {
            id: uuid(&order.id)?,
            buyer_id: uuid(&order.buyer_id)?,
            status: OrderStatus::from_proto(order.status)?,
            lines,
            total: required(order.total, "total")?.into(),
            cancel_reason: (!order.cancel_reason.is_empty()).then_some(order.cancel_reason),
            version: order.version,
            create_time: timestamp(order.create_time),
        })
    }
}

/// A UUID a data service sent.
///
/// # Errors
/// 500 (logged) when it is not one.
pub fn uuid(raw: &str) -> Result<uuid::Uuid, Problem> {
    uuid::Uuid::parse_str(raw).map_err(|_| {
        tracing::error!(raw, "a data service sent a malformed id");
        Problem::internal()
    })
}

/// A page of a list: `page_size` (1 to 100; 0 or absent: 20) and the
/// `page_token` of the previous page.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// How many at most (1 to 100; default 20).
    #[param(minimum = 0, maximum = 100)]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// The largest page an edge serves.
pub const MAX_PAGE_SIZE: u32 = 100;

impl PageParams {
    /// The page size to ask for.
    ///
    /// # Errors
    /// 422 naming `page_size` when it is over the maximum.
    pub fn size(&self) -> Result<i32, Problem> {
        match self.page_size {
            None | Some(0) => Ok(20),
            Some(n) if n <= MAX_PAGE_SIZE => Ok(n.try_into().unwrap_or(20)),
            Some(_) => Err(Problem::invalid_field(
                "page_size",
                format!("at most {MAX_PAGE_SIZE}"),
            )),
        }
    }

    /// The token to pass on.
    #[must_use]
    pub fn token(&self) -> String {
        self.page_token.clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        let ts = prost_types::Timestamp {
            seconds: 1_764_082_883,
            nanos: 500_000_000,
        };
        assert_eq!(timestamp(Some(ts)).unwrap(), "2025-11-25T15:01:23.5Z");
        assert_eq!(timestamp(None), None);
    }

    #[test]
    fn page_sizes_are_bounded() {
        let page = |n| PageParams {
            page_size: n,
            page_token: None,
        };
        assert_eq!(page(None).size().unwrap(), 20);
        assert_eq!(page(Some(0)).size().unwrap(), 20);
        assert_eq!(page(Some(1)).size().unwrap(), 1);
        assert_eq!(page(Some(100)).size().unwrap(), 100);
        let problem = page(Some(101)).size().unwrap_err();
        assert_eq!(problem.status, 422);
        assert_eq!(
            problem.errors,
            [crate::problem::FieldError::new("page_size", "at most 100")]
        );
        assert_eq!(page(Some(u32::MAX)).size().unwrap_err().status, 422);
    }

    #[test]
    fn a_page_token_is_passed_on_as_given() {
        let page = PageParams {
            page_size: None,
            page_token: Some("b3BhcXVl".to_owned()),
        };
        assert_eq!(page.token(), "b3BhcXVl");
        assert_eq!(PageParams::default().token(), "");
    }

    #[test]
    fn money_converts_both_ways_unchanged() {
        let proto = types::Money {
            currency_code: "EUR".to_owned(),
            amount_minor: 1290,
        };
        let money = Money::from(proto.clone());
        assert_eq!(
            money,
            Money {
                currency: "EUR".to_owned(),
                amount_minor: 1290
            }
        );
        assert_eq!(types::Money::from(money), proto);
    }

    #[test]
    fn every_order_status_maps_both_ways() {
        for (status, proto, json) in [
            (OrderStatus::Pending, ordering::OrderStatus::Pending, "pending"),
            (
                OrderStatus::Confirmed,
                ordering::OrderStatus::Confirmed,
                "confirmed",
            ),
            (OrderStatus::Shipped, ordering::OrderStatus::Shipped, "shipped"),
            (
                OrderStatus::Cancelled,
                ordering::OrderStatus::Cancelled,
                "cancelled",
            ),
        ] {
            assert_eq!(status.to_proto(), proto);
            assert_eq!(OrderStatus::from_proto(proto as i32).unwrap(), status);
            assert_eq!(serde_json::to_value(status).unwrap(), json);
        }
        // A status this edge does not know is the data service's fault.
        for unknown in [ordering::OrderStatus::Unspecified as i32, 99] {
            assert_eq!(OrderStatus::from_proto(unknown).unwrap_err().status, 500);
        }
    }

    fn money(amount_minor: i64) -> Option<types::Money> {
        Some(types::Money {
            currency_code: "EUR".to_owned(),
            amount_minor,
        })
    }

    fn order() -> ordering::Order {
        ordering::Order {
            id: "0195f3a4-7c1e-7d2a-9b3c-4d5e6f708192".to_owned(),
            buyer_id: "0195f3a4-7c1e-7d2a-9b3c-4d5e6f708193".to_owned(),
            lines: vec![ordering::OrderLine {
                product_id: "0195f3a4-7c1e-7d2a-9b3c-4d5e6f708194".to_owned(),
                sku: "LAMP-1".to_owned(),
                quantity: 2,
                unit_price: money(1290),
                line_total: money(2580),
            }],
            total: money(2580),
            status: ordering::OrderStatus::Pending as i32,
            cancel_reason: String::new(),
            version: 3,
            create_time: Some(prost_types::Timestamp {
                seconds: 1_764_082_883,
                nanos: 0,
            }),
            ..ordering::Order::default()
        }
    }

    #[test]
    fn an_order_reads_as_the_data_service_sent_it() {
        let order = Order::try_from(self::order()).unwrap();
        assert_eq!(order.id.to_string(), self::order().id);
        assert_eq!(order.buyer_id.to_string(), self::order().buyer_id);
        assert_eq!(order.status, OrderStatus::Pending);
        assert_eq!(order.lines.len(), 1);
        assert_eq!(
            order.lines[0].product_id.to_string(),
            self::order().lines[0].product_id
        );
        assert_eq!(order.lines[0].sku, "LAMP-1");
        assert_eq!(order.lines[0].quantity, 2);
        assert_eq!(order.lines[0].unit_price.amount_minor, 1290);
        assert_eq!(order.lines[0].line_total.amount_minor, 2580);
        assert_eq!(order.total.amount_minor, 2580);
        assert_eq!(order.version, 3);
        assert_eq!(order.create_time.as_deref(), Some("2025-11-25T15:01:23Z"));
        // No reason unless cancelled: absent from the JSON.
        assert_eq!(order.cancel_reason, None);
        assert!(
            serde_json::to_value(&order)
                .unwrap()
                .get("cancel_reason")
                .is_none()
        );

        let mut cancelled = self::order();
        cancelled.status = ordering::OrderStatus::Cancelled as i32;
        cancelled.cancel_reason = "expired".to_owned();
        let order = Order::try_from(cancelled).unwrap();
        assert_eq!(order.cancel_reason.as_deref(), Some("expired"));
        assert_eq!(serde_json::to_value(&order).unwrap()["cancel_reason"], "expired");
    }

    #[test]
    fn an_order_missing_what_it_must_have_is_the_data_services_fault() {
        let mut no_total = order();
        no_total.total = None;
        let mut no_price = order();
        no_price.lines[0].unit_price = None;
        let mut bad_id = order();
        bad_id.buyer_id = "not-a-uuid".to_owned();
        for broken in [no_total, no_price, bad_id] {
            assert_eq!(Order::try_from(broken).unwrap_err().status, 500);
        }
        assert_eq!(uuid("").unwrap_err().status, 500);
        assert_eq!(
            uuid("0195f3a4-7c1e-7d2a-9b3c-4d5e6f708192").unwrap().to_string(),
            "0195f3a4-7c1e-7d2a-9b3c-4d5e6f708192"
        );
    }
}
