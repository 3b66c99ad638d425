//! The gRPC adapter: serves `strata.ordering.v1.OrderService`, the context's
//! only RPC surface. Requests are parsed into validated domain values here
//! (every violation named by field, `lines[2].quantity` for a line), results
//! are converted back here, and errors leave through the kernel's one mapping
//! to `tonic::Status`. No other module sees prost types.

use std::sync::Arc;

use strata_kernel::{
    AggregateRoot, CommandMeta, Error, FieldViolation,
    error::Violations,
    grpc::{self, timestamp},
    paging,
};
use strata_proto::{ordering::v1 as pb, r#type::v1 as pb_type};
use strata_store::StoredEvent;
use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use crate::domain::{
    BuyerId, CancelReason, LineSku, LineSnapshot, NewLine, Order, OrderEvent, OrderId, OrderLines,
    OrderStatus, ProductRef, Quantity,
};
use crate::repository::{OrderCursor, OrderQuery};
use crate::service::Ordering;

use strata_kernel::paging::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// Stops a background task when the last holder is dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `OrderService` over the ordering use cases.
#[derive(Debug, Clone)]
pub struct OrderGrpc {
    ordering: Ordering,
    max_lines: usize,
    // The expiry sweep lives as long as the service does.
    sweep: Option<Arc<AbortOnDrop>>,
}

impl OrderGrpc {
    /// Serves these use cases; an order may hold at most `max_lines` lines.
    #[must_use]
    pub fn new(ordering: Ordering, max_lines: usize) -> Self {
        Self {
            ordering,
            max_lines,
            sweep: None,
        }
    }

    /// The same service, owning the background sweep: it stops when the last
    /// clone of the service is dropped.
    pub(crate) fn owning(mut self, sweep: tokio::task::JoinHandle<()>) -> Self {
        self.sweep = Some(Arc::new(AbortOnDrop(sweep)));
        self
    }
}

#[tonic::async_trait]
impl pb::order_service_server::OrderService for OrderGrpc {
    async fn place_order(
        &self,
        request: Request<pb::PlaceOrderRequest>,
    ) -> Result<Response<pb::PlaceOrderResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let buyer = violations.check(BuyerId::parse("buyer_id", &request.buyer_id));
        let lines = parse_lines(&mut violations, &request.lines, self.max_lines);
        // Chosen by the caller, or by the context when empty.
        let id = if request.id.is_empty() {
            Some(None)
        } else {
            violations.check(OrderId::parse("id", &request.id)).map(Some)
        };
        let buyer_and_lines = (
            buyer.map(|b| b.to_string()),
            lines.as_ref().map(OrderLines::snapshot),
        );
        // A chosen id is part of the command; without one, the fingerprint is
        // what it was before ids could be chosen, so records made then still match.
        let meta = violations.check_all(match id.flatten() {
            None => command_meta("PlaceOrder", &request.request_id, None, &buyer_and_lines),
            Some(id) => command_meta(
                "PlaceOrder",
                &request.request_id,
                None,
                &(buyer_and_lines, id.to_string()),
            ),
        });
        let (meta, buyer, lines, id) = violations.finish(|| Some((meta?, buyer?, lines?, id?)))?;
        let order = self.ordering.place(&meta, id, buyer, lines).await?;
        Ok(Response::new(pb::PlaceOrderResponse {
            order: Some(to_proto(&order)),
        }))
    }

    async fn confirm_order(
        &self,
        request: Request<pb::ConfirmOrderRequest>,
    ) -> Result<Response<pb::ConfirmOrderResponse>, Status> {
        let request = request.into_inner();
        let (id, meta) = grpc::id_and_meta(
            "ConfirmOrder",
            &request.id,
            &request.request_id,
            request.expected_version,
        )?;
        let order = self.ordering.confirm(&meta, id).await?;
        Ok(Response::new(pb::ConfirmOrderResponse {
            order: Some(to_proto(&order)),
        }))
    }

    async fn cancel_order(
        &self,
        request: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::CancelOrderResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = violations.check(OrderId::parse("id", &request.id));
        let reason = violations.check(CancelReason::parse(&request.reason));
        let fingerprint = (
            id.map(|id| id.to_string()),
            reason.as_ref().map(CancelReason::as_str),
        );
        let meta = violations.check_all(command_meta(
            "CancelOrder",
            &request.request_id,
            request.expected_version,
            &fingerprint,
        ));
        let (id, meta, reason) = violations.finish(|| Some((id?, meta?, reason?)))?;
        let order = self.ordering.cancel(&meta, id, reason).await?;
        Ok(Response::new(pb::CancelOrderResponse {
            order: Some(to_proto(&order)),
        }))
    }

    async fn mark_shipped(
        &self,
        request: Request<pb::MarkShippedRequest>,
    ) -> Result<Response<pb::MarkShippedResponse>, Status> {
        let request = request.into_inner();
        let (id, meta) = grpc::id_and_meta(
            "MarkShipped",
            &request.id,
            &request.request_id,
            request.expected_version,
        )?;
        let order = self.ordering.ship(&meta, id).await?;
        Ok(Response::new(pb::MarkShippedResponse {
            order: Some(to_proto(&order)),
        }))
    }

    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::GetOrderResponse>, Status> {
        let id = OrderId::parse("id", &request.get_ref().id).map_err(Error::from)?;
        let order = self.ordering.get(id).await?;
        Ok(Response::new(pb::GetOrderResponse {
            order: Some(to_proto(&order)),
        }))
    }

    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let limit = violations.check(paging::page_size(
            request.page_size,
            DEFAULT_PAGE_SIZE,
            MAX_PAGE_SIZE,
        ));
        let buyer = if request.buyer_id.is_empty() {
            Some(None)
        } else {
            violations.check(BuyerId::parse("buyer_id", &request.buyer_id).map(Some))
        };
        let status = violations.check(status_filter(request.status));
        let after = match (buyer, status) {
            (Some(buyer), Some(status)) => violations.check(decode_token(&request.page_token, buyer, status)),
            _ => None,
        };
        let query = violations.finish(|| {
            Some(OrderQuery {
                buyer: buyer?,
                status: status?,
                after: after?,
                limit: limit?,
            })
        })?;
        let filter = filter_bytes(query.buyer, query.status);
        let page = self.ordering.list(query).await?;
        Ok(Response::new(pb::ListOrdersResponse {
            orders: page.orders.iter().map(to_proto).collect(),
            next_page_token: page
                .next_after
                .map(|after| paging::encode_page_token(&filter, &cursor_bytes(after)))
                .unwrap_or_default(),
        }))
    }

    type StreamEventsStream = strata_store::GrpcEvents<pb::StreamEventsResponse>;

    async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let request = request.into_inner();
        let events = self
            .ordering
            .events(request.after_position, request.follow)
            .await?;
        Ok(Response::new(strata_store::grpc_events(events, event_to_proto)))
    }
}

/// The lines of a new order: at most `max_lines`, each line's values
/// validated (violations named `lines[i].…`), then the order's rules across
/// lines and its totals ([`OrderLines::new`]).
fn parse_lines(
    violations: &mut Violations,
    lines: &[pb::PlaceOrderLine],
    max_lines: usize,
) -> Option<OrderLines> {
    if lines.len() > max_lines {
        // Not one line is read: a request this large is refused as a whole.
        violations.push(FieldViolation::new(
            "lines",
            format!("must hold at most {max_lines} lines, not {}", lines.len()),
        ));
        return None;
    }
    let mut parsed = Vec::with_capacity(lines.len());
    let mut valid = true;
    for (i, line) in lines.iter().enumerate() {
        let at = format!("lines[{i}]");
        let in_line = |v: FieldViolation| v.nested_in(&at);
        let product = violations.check(ProductRef::parse(&line.product_id).map_err(in_line));
        let sku = violations.check(LineSku::parse(&line.sku).map_err(in_line));
        let quantity = violations.check(Quantity::parse(line.quantity).map_err(in_line));
        let unit_price = grpc::money(
            violations,
            &format!("{at}.unit_price"),
            line.unit_price
                .as_ref()
                .map(|p| (p.currency_code.as_str(), p.amount_minor)),
        );
        match (product, sku, quantity, unit_price) {
            (Some(product), Some(sku), Some(quantity), Some(unit_price)) => parsed.push(NewLine {
                product,
                sku,
                quantity,
                unit_price,
            }),
            _ => valid = false,
        }
    }
    if !valid {
        return None;
    }
    violations.check_all(OrderLines::new(parsed))
}

/// The idempotency key, fingerprint and expected version of a command; the
/// fingerprint covers the operation and its validated values.
fn command_meta(
    operation: &str,
    request_id: &str,
    expected_version: Option<u64>,
    values: &impl serde::Serialize,
) -> Result<CommandMeta, Vec<FieldViolation>> {
    if crate::service::is_reserved_request_id(request_id) {
        return Err(vec![FieldViolation::new(
            "request_id",
            format!(
                "must not start with {:?}: the service's own commands use it",
                crate::service::RESERVED_REQUEST_ID_PREFIX
            ),
        )]);
    }
    grpc::command_meta(operation, request_id, expected_version, values)
}

/// What a `page_token` is bound to: the buyer and status filters it was
/// listed with.
fn filter_bytes(buyer: Option<BuyerId>, status: Option<OrderStatus>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(18);
    match buyer {
        None => bytes.push(0),
        Some(buyer) => {
            bytes.push(1);
            bytes.extend_from_slice(buyer.as_uuid().as_bytes());
        }
    }
    bytes.push(match status {
        None => 0,
        Some(OrderStatus::Pending) => 1,
        Some(OrderStatus::Confirmed) => 2,
        Some(OrderStatus::Shipped) => 3,
        Some(OrderStatus::Cancelled) => 4,
    });
    bytes
}

/// The keyset position of a page's last order: its creation time in
/// microseconds since the epoch (what both stores keep), then its id.
fn cursor_bytes(cursor: OrderCursor) -> Vec<u8> {
    let micros = i64::try_from(cursor.created_at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX);
    let mut bytes = Vec::with_capacity(24);
    bytes.extend_from_slice(&micros.to_be_bytes());
    bytes.extend_from_slice(cursor.id.as_uuid().as_bytes());
    bytes
}

fn decode_token(
    raw: &str,
    buyer: Option<BuyerId>,
    status: Option<OrderStatus>,
) -> Result<Option<OrderCursor>, FieldViolation> {
    let Some(cursor) = paging::decode_page_token(raw, &filter_bytes(buyer, status))? else {
        return Ok(None);
    };
    let unknown = || FieldViolation::new("page_token", "is not a token this service returned");
    let (micros, id) = cursor.split_first_chunk::<8>().ok_or_else(unknown)?;
    let id = uuid::Uuid::from_slice(id).map_err(|_| unknown())?;
    let created_at =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(i64::from_be_bytes(*micros)) * 1_000)
            .map_err(|_| unknown())?;
    Ok(Some(OrderCursor {
        created_at,
        id: OrderId::from_uuid(id),
    }))
}

fn status_filter(raw: i32) -> Result<Option<OrderStatus>, FieldViolation> {
    match pb::OrderStatus::try_from(raw) {
        Ok(pb::OrderStatus::Unspecified) => Ok(None),
        Ok(pb::OrderStatus::Pending) => Ok(Some(OrderStatus::Pending)),
        Ok(pb::OrderStatus::Confirmed) => Ok(Some(OrderStatus::Confirmed)),
        Ok(pb::OrderStatus::Shipped) => Ok(Some(OrderStatus::Shipped)),
        Ok(pb::OrderStatus::Cancelled) => Ok(Some(OrderStatus::Cancelled)),
        Err(_) => Err(FieldViolation::new("status", "is not a known order status")),
    }
}

fn status_to_proto(status: OrderStatus) -> pb::OrderStatus {
    match status {
        OrderStatus::Pending => pb::OrderStatus::Pending,
        OrderStatus::Confirmed => pb::OrderStatus::Confirmed,
        OrderStatus::Shipped => pb::OrderStatus::Shipped,
        OrderStatus::Cancelled => pb::OrderStatus::Cancelled,
    }
}

fn line_to_proto(line: &LineSnapshot) -> pb::OrderLine {
    pb::OrderLine {
        product_id: line.product_id.to_string(),
        sku: line.sku.clone(),
        quantity: line.quantity,
        unit_price: Some(pb_type::Money::new(&line.currency, line.unit_price_minor)),
        line_total: Some(pb_type::Money::new(&line.currency, line.line_total_minor)),
    }
}

fn to_proto(order: &Order) -> pb::Order {
    let total = order.total();
    pb::Order {
        id: order.id().to_string(),
        buyer_id: order.buyer().to_string(),
        lines: order
            .lines()
            .iter()
            .map(|line| line_to_proto(&line.snapshot()))
            .collect(),
        total: Some(pb_type::Money::new(
            total.currency().as_str(),
            total.amount_minor(),
        )),
        status: status_to_proto(order.status()).into(),
        cancel_reason: order
            .cancellation()
            .map(|c| c.reason().to_owned())
            .unwrap_or_default(),
        expired: matches!(order.cancellation(), Some(crate::domain::Cancellation::Expired)),
        version: order.version().get(),
        create_time: Some(timestamp(order.created_at())),
        update_time: Some(timestamp(order.updated_at())),
        expire_time: Some(timestamp(order.expires_at())),
    }
}

fn event_to_proto(stored: StoredEvent) -> Result<pb::StreamEventsResponse, Error> {
    use pb::stream_events_response::Event;
    let event: OrderEvent = serde_json::from_value(stored.payload).map_err(|e| {
        Error::Internal(
            format!(
                "event {} ({}) does not read back: {e}",
                stored.position, stored.event_type
            )
            .into(),
        )
    })?;
    let event = match event {
        OrderEvent::Placed {
            buyer_id,
            lines,
            total_minor,
            currency,
            expires_at,
        } => Event::OrderPlaced(pb::OrderPlaced {
            buyer_id: buyer_id.to_string(),
            lines: lines.iter().map(line_to_proto).collect(),
            total: Some(pb_type::Money::new(&currency, total_minor)),
            expire_time: Some(timestamp(expires_at)),
        }),
        OrderEvent::Confirmed => Event::OrderConfirmed(pb::OrderConfirmed {}),
        OrderEvent::Cancelled { reason, expired } => {
            Event::OrderCancelled(pb::OrderCancelled { reason, expired })
        }
        OrderEvent::Shipped => Event::OrderShipped(pb::OrderShipped {}),
    };
    Ok(pb::StreamEventsResponse {
        position: stored.position,
        event_id: stored.event_id.to_string(),
        aggregate_id: stored.aggregate_id.to_string(),
        aggregate_version: stored.aggregate_version.get(),
        occur_time: Some(timestamp(stored.occurred_at)),
        event: Some(event),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn page_tokens_carry_the_cursor_and_are_bound_to_their_filter() {
        let cursor = OrderCursor {
            created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
                + time::Duration::microseconds(7),
            id: OrderId::generate(),
        };
        let buyer = Some(BuyerId::from_uuid(uuid::Uuid::now_v7()));
        let pending = Some(OrderStatus::Pending);
        let token = paging::encode_page_token(&filter_bytes(buyer, pending), &cursor_bytes(cursor));
        assert_eq!(decode_token(&token, buyer, pending), Ok(Some(cursor)));
        for (b, s) in [
            (None, pending),
            (buyer, None),
            (None, None),
            (Some(BuyerId::from_uuid(uuid::Uuid::now_v7())), pending),
        ] {
            assert_eq!(decode_token(&token, b, s).unwrap_err().field(), "page_token");
        }
        let short = paging::encode_page_token(&filter_bytes(None, None), b"abc");
        assert_eq!(
            decode_token(&short, None, None).unwrap_err().field(),
            "page_token"
        );
    }
}
