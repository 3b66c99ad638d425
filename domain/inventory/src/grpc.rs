//! The gRPC adapter: serves `strata.inventory.v1.StockItemService`, the
//! context's only RPC surface. Requests are parsed into validated domain values
//! here (every violation named by field), results are converted back here, and
//! errors leave through the kernel's one mapping to `tonic::Status`. No other
//! module sees prost types.

use serde::Serialize;
use strata_kernel::{
    AggregateRoot, CommandMeta, Error, FieldViolation,
    error::Violations,
    grpc::{self, timestamp},
};
use strata_proto::inventory::v1 as pb;
use strata_store::StoredEvent;
use time::Duration;
use tonic::{Request, Response, Status};

use crate::domain::{
    MAX_QUANTITY, Reason, ReleaseCause, Reservation, ReservationId, ReservationStatus, Sku, StockItem,
    StockItemEvent,
};
use crate::service::Inventory;

/// The most skus one `BatchGetStockItems` takes.
pub const MAX_BATCH: usize = 100;
/// The shortest and longest time to live of a reservation.
const MIN_TTL: Duration = Duration::SECOND;
const MAX_TTL: Duration = Duration::days(7);

/// `StockItemService` over inventory's use cases.
#[derive(Debug, Clone)]
pub struct StockItemGrpc {
    inventory: Inventory,
}

impl StockItemGrpc {
    /// Serves these use cases.
    #[must_use]
    pub fn new(inventory: Inventory) -> Self {
        Self { inventory }
    }
}

/// The idempotency key, fingerprint and expected version of a command; the
/// fingerprint covers the operation and its validated values.
fn command_meta(
    violations: &mut Violations,
    operation: &str,
    request_id: &str,
    expected_version: Option<u64>,
    values: &impl Serialize,
) -> Option<CommandMeta> {
    violations.check_all(grpc::command_meta(
        operation,
        request_id,
        expected_version,
        values,
    ))
}

fn quantity(field: &'static str, raw: u64) -> Result<u64, FieldViolation> {
    if raw == 0 {
        return Err(FieldViolation::new(field, "must be at least 1"));
    }
    if raw > MAX_QUANTITY {
        return Err(FieldViolation::new(field, "must be at most 9223372036854775807"));
    }
    Ok(raw)
}

fn time_to_live(raw: Option<&prost_types::Duration>) -> Result<Duration, FieldViolation> {
    const FIELD: &str = "time_to_live";
    let raw = raw.ok_or_else(|| FieldViolation::new(FIELD, "is required"))?;
    if !(0..1_000_000_000).contains(&raw.nanos) {
        return Err(FieldViolation::new(FIELD, "is not a valid duration"));
    }
    let ttl = Duration::new(raw.seconds, raw.nanos);
    if ttl < MIN_TTL || ttl > MAX_TTL {
        return Err(FieldViolation::new(FIELD, "must be between 1 second and 7 days"));
    }
    Ok(ttl)
}

/// The validated fields of a command on one reservation.
fn reservation_command(
    operation: &str,
    request_id: &str,
    expected_version: Option<u64>,
    sku: &str,
    reservation_id: &str,
) -> Result<(CommandMeta, Sku, ReservationId), Error> {
    let mut violations = Violations::new();
    let sku = violations.check(Sku::parse(sku));
    let reservation = violations.check(ReservationId::parse(reservation_id));
    let meta = command_meta(
        &mut violations,
        operation,
        request_id,
        expected_version,
        &(
            sku.as_ref().map(Sku::as_str),
            reservation.as_ref().map(ReservationId::as_str),
        ),
    );
    violations.finish(|| Some((meta?, sku?, reservation?)))
}

fn answer(item: &StockItem) -> Option<pb::StockItem> {
    Some(to_proto(item))
}

#[tonic::async_trait]
impl pb::stock_item_service_server::StockItemService for StockItemGrpc {
    async fn receive_stock(
        &self,
        request: Request<pb::ReceiveStockRequest>,
    ) -> Result<Response<pb::ReceiveStockResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let sku = violations.check(Sku::parse(&request.sku));
        let quantity = violations.check(quantity("quantity", request.quantity));
        let meta = command_meta(
            &mut violations,
            "ReceiveStock",
            &request.request_id,
            request.expected_version,
            &(sku.as_ref().map(Sku::as_str), quantity),
        );
        let (meta, sku, quantity) = violations.finish(|| Some((meta?, sku?, quantity?)))?;
        let item = self.inventory.receive(&meta, &sku, quantity).await?;
        Ok(Response::new(pb::ReceiveStockResponse {
            stock_item: answer(&item),
        }))
    }

    async fn adjust_stock(
        &self,
        request: Request<pb::AdjustStockRequest>,
    ) -> Result<Response<pb::AdjustStockResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let sku = violations.check(Sku::parse(&request.sku));
        if request.delta == 0 {
            violations.push(FieldViolation::new("delta", "must not be 0"));
        }
        let reason = violations.check(Reason::parse(&request.reason));
        let meta = command_meta(
            &mut violations,
            "AdjustStock",
            &request.request_id,
            request.expected_version,
            &(
                sku.as_ref().map(Sku::as_str),
                request.delta,
                reason.as_ref().map(Reason::as_str),
            ),
        );
        let (meta, sku, reason) = violations.finish(|| Some((meta?, sku?, reason?)))?;
        let item = self.inventory.adjust(&meta, &sku, request.delta, &reason).await?;
        Ok(Response::new(pb::AdjustStockResponse {
            stock_item: answer(&item),
        }))
    }

    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let sku = violations.check(Sku::parse(&request.sku));
        let reservation = violations.check(ReservationId::parse(&request.reservation_id));
        let quantity = violations.check(quantity("quantity", request.quantity));
        let ttl = violations.check(time_to_live(request.time_to_live.as_ref()));
        let meta = command_meta(
            &mut violations,
            "Reserve",
            &request.request_id,
            request.expected_version,
            &(
                sku.as_ref().map(Sku::as_str),
                reservation.as_ref().map(ReservationId::as_str),
                quantity,
                ttl.map(|ttl| (ttl.whole_seconds(), ttl.subsec_nanoseconds())),
            ),
        );
        let (meta, sku, reservation, quantity, ttl) =
            violations.finish(|| Some((meta?, sku?, reservation?, quantity?, ttl?)))?;
        let item = self
            .inventory
            .reserve(&meta, &sku, &reservation, quantity, ttl)
            .await?;
        Ok(Response::new(pb::ReserveResponse {
            stock_item: answer(&item),
        }))
    }

    async fn confirm_reservation(
        &self,
        request: Request<pb::ConfirmReservationRequest>,
    ) -> Result<Response<pb::ConfirmReservationResponse>, Status> {
        let r = request.into_inner();
        let (meta, sku, reservation) = reservation_command(
            "ConfirmReservation",
            &r.request_id,
            r.expected_version,
            &r.sku,
            &r.reservation_id,
        )?;
        let item = self.inventory.confirm(&meta, &sku, &reservation).await?;
        Ok(Response::new(pb::ConfirmReservationResponse {
            stock_item: answer(&item),
        }))
    }

    async fn release_reservation(
        &self,
        request: Request<pb::ReleaseReservationRequest>,
    ) -> Result<Response<pb::ReleaseReservationResponse>, Status> {
        let r = request.into_inner();
        let (meta, sku, reservation) = reservation_command(
            "ReleaseReservation",
            &r.request_id,
            r.expected_version,
            &r.sku,
            &r.reservation_id,
        )?;
        let item = self.inventory.release(&meta, &sku, &reservation).await?;
        Ok(Response::new(pb::ReleaseReservationResponse {
            stock_item: answer(&item),
        }))
    }

    async fn commit_reservation(
        &self,
        request: Request<pb::CommitReservationRequest>,
    ) -> Result<Response<pb::CommitReservationResponse>, Status> {
        let r = request.into_inner();
        let (meta, sku, reservation) = reservation_command(
            "CommitReservation",
            &r.request_id,
            r.expected_version,
            &r.sku,
            &r.reservation_id,
        )?;
        let item = self.inventory.commit(&meta, &sku, &reservation).await?;
        Ok(Response::new(pb::CommitReservationResponse {
            stock_item: answer(&item),
        }))
    }

    async fn get_stock_item(
        &self,
        request: Request<pb::GetStockItemRequest>,
    ) -> Result<Response<pb::GetStockItemResponse>, Status> {
        let sku = Sku::parse(&request.get_ref().sku).map_err(Error::from)?;
        let item = self.inventory.get(&sku).await?;
        Ok(Response::new(pb::GetStockItemResponse {
            stock_item: answer(&item),
        }))
    }

    async fn batch_get_stock_items(
        &self,
        request: Request<pb::BatchGetStockItemsRequest>,
    ) -> Result<Response<pb::BatchGetStockItemsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        if request.skus.is_empty() {
            violations.push(FieldViolation::new("skus", "is required"));
        }
        if request.skus.len() > MAX_BATCH {
            violations.push(FieldViolation::new("skus", "must hold at most 100 skus"));
        }
        let mut skus = Vec::with_capacity(request.skus.len().min(MAX_BATCH));
        for (at, raw) in request.skus.iter().enumerate().take(MAX_BATCH) {
            if let Some(sku) = violations.check(Sku::parse_as(&format!("skus[{at}]"), raw)) {
                skus.push(sku);
            }
        }
        skus.sort();
        skus.dedup();
        let skus = violations.finish(|| Some(skus))?;
        let items = self.inventory.batch_get(&skus).await?;
        Ok(Response::new(pb::BatchGetStockItemsResponse {
            stock_items: items.iter().map(to_proto).collect(),
        }))
    }

    type StreamEventsStream = strata_store::GrpcEvents<pb::StreamEventsResponse>;

    async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let request = request.into_inner();
        let events = self
            .inventory
            .events(request.after_position, request.follow)
            .await?;
        Ok(Response::new(strata_store::grpc_events(events, event_to_proto)))
    }
}

fn reservation_to_proto(reservation: &Reservation) -> pb::Reservation {
    pb::Reservation {
        reservation_id: reservation.id().as_str().to_owned(),
        quantity: reservation.quantity(),
        state: match reservation.status() {
            ReservationStatus::Held => pb::ReservationState::Held,
            ReservationStatus::Firm => pb::ReservationState::Firm,
            // Only open reservations are shown.
            _ => pb::ReservationState::Unspecified,
        }
        .into(),
        expire_time: reservation.expires_at().map(timestamp),
        create_time: Some(timestamp(reservation.created_at())),
    }
}

fn to_proto(item: &StockItem) -> pb::StockItem {
    pb::StockItem {
        id: item.id().to_string(),
        sku: item.sku().as_str().to_owned(),
        on_hand: item.on_hand(),
        reserved: item.reserved(),
        available: item.available(),
        reservations: item.open_reservations().map(reservation_to_proto).collect(),
        version: item.version().get(),
        create_time: Some(timestamp(item.created_at())),
        update_time: Some(timestamp(item.updated_at())),
    }
}

fn event_to_proto(stored: StoredEvent) -> Result<pb::StreamEventsResponse, Error> {
    use pb::stream_events_response::Event;
    let event: StockItemEvent = serde_json::from_value(stored.payload).map_err(|e| {
        Error::Internal(
            format!(
                "event {} ({}) does not read back: {e}",
                stored.position, stored.event_type
            )
            .into(),
        )
    })?;
    let event = match event {
        StockItemEvent::Received {
            sku,
            quantity,
            on_hand,
        } => Event::StockReceived(pb::StockReceived {
            sku,
            quantity,
            on_hand,
        }),
        StockItemEvent::Adjusted {
            sku,
            delta,
            reason,
            on_hand,
        } => Event::StockAdjusted(pb::StockAdjusted {
            sku,
            delta,
            reason,
            on_hand,
        }),
        StockItemEvent::Reserved {
            sku,
            reservation_id,
            quantity,
            expires_at,
        } => Event::StockReserved(pb::StockReserved {
            sku,
            reservation_id,
            quantity,
            expire_time: Some(timestamp(expires_at)),
        }),
        StockItemEvent::Confirmed { sku, reservation_id } => {
            Event::ReservationConfirmed(pb::ReservationConfirmed { sku, reservation_id })
        }
        StockItemEvent::Released {
            sku,
            reservation_id,
            quantity,
            cause,
        } => Event::ReservationReleased(pb::ReservationReleased {
            sku,
            reservation_id,
            quantity,
            cause: match cause {
                ReleaseCause::Released => pb::ReleaseCause::Released,
                ReleaseCause::Expired => pb::ReleaseCause::Expired,
            }
            .into(),
        }),
        StockItemEvent::Committed {
            sku,
            reservation_id,
            quantity,
            on_hand,
        } => Event::ReservationCommitted(pb::ReservationCommitted {
            sku,
            reservation_id,
            quantity,
            on_hand,
        }),
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
    fn client_values_are_bounded() {
        assert_eq!(quantity("quantity", 0).unwrap_err().field(), "quantity");
        assert!(quantity("quantity", u64::MAX).is_err());
        assert_eq!(quantity("quantity", MAX_QUANTITY), Ok(MAX_QUANTITY));
        let ttl = |seconds, nanos| time_to_live(Some(&prost_types::Duration { seconds, nanos }));
        assert!(ttl(0, 0).is_err());
        assert!(ttl(-5, 0).is_err());
        assert!(ttl(i64::MAX, 0).is_err());
        assert!(ttl(1, -1).is_err());
        assert!(ttl(60, 0).is_ok());
        assert_eq!(time_to_live(None).unwrap_err().field(), "time_to_live");
    }
}
