//! What every part of the suite shares: fresh stores per backend, a harness
//! around the gRPC adapter on a `ManualClock`, and request builders.

use std::sync::Arc;
pub(crate) use strata_testkit::unique;

use strata_kernel::ManualClock;
use strata_ordering::{grpc::OrderGrpc, service::Ordering, store};
use strata_proto::{ordering::v1 as pb, r#type::v1 as pb_type};
use strata_store::StoreConfig;
use strata_testkit::TestPostgres;
use time::OffsetDateTime;
use tokio_stream::StreamExt;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

pub(crate) use strata_proto::ordering::v1::order_service_server::OrderService as _;

/// The pending time-to-live every harness uses: 15 minutes.
pub(crate) const TTL: time::Duration = time::Duration::minutes(15);

/// Where fresh stores come from.
pub(crate) enum Backend {
    Sqlite,
    Postgres(Box<TestPostgres>),
}

impl Backend {
    pub(crate) fn sqlite() -> Self {
        Self::Sqlite
    }

    pub(crate) fn postgres(pg: TestPostgres) -> Self {
        Self::Postgres(Box::new(pg))
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// An empty store of this backend: a new SQLite file, or a new database.
    pub(crate) async fn fresh(&self) -> StoreConfig {
        match self {
            Self::Sqlite => {
                let dir = std::env::temp_dir().join(format!("strata-ordering-{}", uuid::Uuid::now_v7()));
                std::fs::create_dir_all(&dir).unwrap();
                StoreConfig::new(strata_store::embedded_url(&dir, store::CONTEXT))
            }
            Self::Postgres(pg) => StoreConfig::new(pg.fresh_database().await.unwrap()),
        }
    }
}

/// `seconds` after the suite started, with microseconds (what both stores
/// keep), in UTC. Near the real time: the stores purge idempotency records
/// older than their retention window by the real clock, so a manual clock far
/// in the past would see its records vanish.
pub(crate) fn at(seconds: i64) -> OffsetDateTime {
    static START: std::sync::LazyLock<i64> =
        std::sync::LazyLock::new(|| OffsetDateTime::now_utc().unix_timestamp());
    OffsetDateTime::from_unix_timestamp(*START + seconds).unwrap() + time::Duration::microseconds(123_456)
}

/// The gRPC adapter over a fresh store, on a manual clock.
pub(crate) struct Harness {
    pub(crate) grpc: OrderGrpc,
    pub(crate) ordering: Ordering,
    pub(crate) clock: Arc<ManualClock>,
}

impl Harness {
    pub(crate) async fn new(backend: &Backend, max_lines: usize) -> Self {
        let repo = store::open(&backend.fresh().await).await.unwrap();
        let clock = Arc::new(ManualClock::new(at(0)));
        let ordering = Ordering::with_clock(repo.clone(), clock.clone(), TTL);
        Self {
            grpc: OrderGrpc::new(ordering.clone(), max_lines),
            ordering,
            clock,
        }
    }

    pub(crate) async fn place(&self, request: pb::PlaceOrderRequest) -> Result<pb::Order, Status> {
        Ok(self
            .grpc
            .place_order(Request::new(request))
            .await?
            .into_inner()
            .order
            .unwrap())
    }

    /// A valid order of `n` lines for `buyer`, under a new request id.
    pub(crate) async fn place_ok(&self, buyer: &str, n: usize) -> pb::Order {
        self.place(place_request(&unique("place"), buyer, lines(n)))
            .await
            .unwrap()
    }

    pub(crate) async fn confirm(
        &self,
        id: &str,
        key: &str,
        expected: Option<u64>,
    ) -> Result<pb::Order, Status> {
        let request = pb::ConfirmOrderRequest {
            id: id.to_owned(),
            request_id: key.to_owned(),
            expected_version: expected,
        };
        Ok(self
            .grpc
            .confirm_order(Request::new(request))
            .await?
            .into_inner()
            .order
            .unwrap())
    }

    pub(crate) async fn cancel(&self, id: &str, key: &str, reason: &str) -> Result<pb::Order, Status> {
        self.cancel_at(id, key, reason, None).await
    }

    pub(crate) async fn cancel_at(
        &self,
        id: &str,
        key: &str,
        reason: &str,
        expected: Option<u64>,
    ) -> Result<pb::Order, Status> {
        let request = pb::CancelOrderRequest {
            id: id.to_owned(),
            request_id: key.to_owned(),
            expected_version: expected,
            reason: reason.to_owned(),
        };
        Ok(self
            .grpc
            .cancel_order(Request::new(request))
            .await?
            .into_inner()
            .order
            .unwrap())
    }

    pub(crate) async fn ship(&self, id: &str, key: &str) -> Result<pb::Order, Status> {
        let request = pb::MarkShippedRequest {
            id: id.to_owned(),
            request_id: key.to_owned(),
            expected_version: None,
        };
        Ok(self
            .grpc
            .mark_shipped(Request::new(request))
            .await?
            .into_inner()
            .order
            .unwrap())
    }

    pub(crate) async fn get(&self, id: &str) -> Result<pb::Order, Status> {
        let request = pb::GetOrderRequest { id: id.to_owned() };
        Ok(self
            .grpc
            .get_order(Request::new(request))
            .await?
            .into_inner()
            .order
            .unwrap())
    }

    pub(crate) async fn list(
        &self,
        request: pb::ListOrdersRequest,
    ) -> Result<pb::ListOrdersResponse, Status> {
        Ok(self.grpc.list_orders(Request::new(request)).await?.into_inner())
    }

    /// Every event after `position`, read to the end of the stream.
    pub(crate) async fn events(&self, position: u64) -> Vec<pb::StreamEventsResponse> {
        let request = pb::StreamEventsRequest {
            after_position: position,
            follow: false,
        };
        let stream = self
            .grpc
            .stream_events(Request::new(request))
            .await
            .unwrap()
            .into_inner();
        stream.map(Result::unwrap).collect().await
    }

    /// The events of one order, in stream order.
    pub(crate) async fn events_of(&self, id: &str) -> Vec<pb::stream_events_response::Event> {
        self.events(0)
            .await
            .into_iter()
            .filter(|e| e.aggregate_id == id)
            .map(|e| e.event.unwrap())
            .collect()
    }
}

pub(crate) fn uuid() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub(crate) fn money(currency: &str, amount_minor: i64) -> Option<pb_type::Money> {
    Some(pb_type::Money {
        currency_code: currency.to_owned(),
        amount_minor,
    })
}

pub(crate) fn line(quantity: u32, amount_minor: i64) -> pb::PlaceOrderLine {
    pb::PlaceOrderLine {
        product_id: uuid(),
        sku: "MUG-1".to_owned(),
        quantity,
        unit_price: money("EUR", amount_minor),
    }
}

/// `n` valid lines: line i orders i+1 at (i+1) × 100 cents.
pub(crate) fn lines(n: usize) -> Vec<pb::PlaceOrderLine> {
    (0..n).map(|i| line(i as u32 + 1, (i as i64 + 1) * 100)).collect()
}

pub(crate) fn place_request(key: &str, buyer: &str, lines: Vec<pb::PlaceOrderLine>) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        request_id: key.to_owned(),
        buyer_id: buyer.to_owned(),
        lines,
        id: String::new(),
    }
}

/// The fields an INVALID_ARGUMENT names, in order.
pub(crate) fn violated_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("bad request details")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

/// The reason of a FAILED_PRECONDITION.
pub(crate) fn precondition_reason(status: &Status) -> String {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    status.get_details_error_info().expect("error info").reason
}

pub(crate) fn status_of(order: &pb::Order) -> pb::OrderStatus {
    pb::OrderStatus::try_from(order.status).unwrap()
}
