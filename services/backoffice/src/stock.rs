//! Stock (inventory): receive goods, correct on-hand, look at an item.

use axum::extract::{Path, State};
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use strata_edge::{
    Ctx, Json, Problem,
    auth::Staff,
    model::{required, timestamp},
};
use strata_proto::inventory::v1 as inventory;
use utoipa::ToSchema;

use crate::{App, command_id, if_match};

/// The stock of one sku.
#[derive(Debug, Serialize, ToSchema)]
pub struct StockItem {
    /// The sku.
    pub sku: String,
    /// Physically held.
    pub on_hand: u64,
    /// Promised to open reservations.
    pub reserved: u64,
    /// on_hand − reserved.
    pub available: u64,
    /// The open reservations.
    pub reservations: Vec<Reservation>,
    /// Incremented by every change.
    pub version: u64,
}

/// Stock promised to an order line.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reservation {
    /// `<order id>/<product id>` for a checkout's.
    pub reservation_id: String,
    /// How many.
    pub quantity: u64,
    /// `held` (expires at `expire_time`) or `firm` (held until shipped or released).
    pub state: String,
    /// When a held reservation expires (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expire_time: Option<String>,
}

/// Goods received.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receive {
    /// At least 1.
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "strata_edge::json::whole")]
    pub quantity: u64,
}

/// A whole number other than 0: at least 1, or at most -1.
fn non_zero() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    let integer = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
    };
    OneOfBuilder::new()
        .item(integer().minimum(Some(1)))
        .item(integer().maximum(Some(-1)))
        .description(Some("Not 0; on-hand may not fall below what is reserved."))
        .build()
        .into()
}

/// A correction of on-hand.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjust {
    /// Not 0; on-hand may not fall below what is reserved.
    #[serde(deserialize_with = "strata_edge::json::whole")]
    #[schema(schema_with = non_zero)]
    pub delta: i64,
    /// Why, for people: 1 to 200 characters on one line.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub reason: String,
}

/// One sku's stock and its open reservations.
#[utoipa::path(get, operation_id = "stock_get", path = "/v1/stock/{sku}", tag = "stock", security(("bearer" = [])),
    params(("sku" = String, Path, description = "The sku: 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' or '.'", pattern = r"^[A-Za-z0-9._-]{1,64}$")),
    responses(
        (status = 200, description = "The stock", body = StockItem),
        (status = 404, description = "Never stocked", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(app): State<App>,
    ctx: Ctx,
    _staff: Staff,
    Path(sku): Path<String>,
) -> Result<Json<StockItem>, Problem> {
    let request = ctx.call.request(inventory::GetStockItemRequest { sku });
    let item = ctx
        .run(
            "stock item",
            app.edge.downstream.inventory.clone().get_stock_item(request),
        )
        .await?
        .stock_item;
    Ok(Json(stock_item(required(item, "stock item")?)))
}

/// Adds received goods to on-hand (the first receipt creates the item).
#[utoipa::path(post, operation_id = "stock_receive", path = "/v1/stock/{sku}/receive", tag = "stock", request_body = Receive, security(("bearer" = [])),
    params(("sku" = String, Path, description = "The sku: 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' or '.'", pattern = r"^[A-Za-z0-9._-]{1,64}$"),
           ("If-Match" = Option<String>, Header, nullable = false, description = "The version the change is for, quoted", pattern = r#"^"[1-9][0-9]{0,18}"$"#),
           ("Idempotency-Key" = Option<String>, Header, nullable = false, description = "Makes a retry return the first answer: 1 to 64 visible ASCII characters", min_length = 1, max_length = 64, pattern = r"^[!-~]+$")),
    responses(
        (status = 200, description = "The stock after", body = StockItem),
        (status = 404, description = "Never stocked, when an If-Match version is given", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The item changed since that version", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid quantity or sku", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn receive(
    State(app): State<App>,
    ctx: Ctx,
    Staff(staff): Staff,
    Path(sku): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Receive>,
) -> Result<Json<StockItem>, Problem> {
    let request = ctx.call.request(inventory::ReceiveStockRequest {
        request_id: command_id(&headers, "receive-stock", staff.account_id)?,
        expected_version: if_match(&headers)?,
        sku,
        quantity: body.quantity,
    });
    let item = ctx
        .run(
            "stock item",
            app.edge.downstream.inventory.clone().receive_stock(request),
        )
        .await?
        .stock_item;
    Ok(Json(stock_item(required(item, "stock item")?)))
}

/// Corrects on-hand by a signed delta (a count, damage).
#[utoipa::path(post, operation_id = "stock_adjust", path = "/v1/stock/{sku}/adjust", tag = "stock", request_body = Adjust, security(("bearer" = [])),
    params(("sku" = String, Path, description = "The sku: 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' or '.'", pattern = r"^[A-Za-z0-9._-]{1,64}$"),
           ("If-Match" = Option<String>, Header, nullable = false, description = "The version the change is for, quoted", pattern = r#"^"[1-9][0-9]{0,18}"$"#),
           ("Idempotency-Key" = Option<String>, Header, nullable = false, description = "Makes a retry return the first answer: 1 to 64 visible ASCII characters", min_length = 1, max_length = 64, pattern = r"^[!-~]+$")),
    responses(
        (status = 200, description = "The stock after", body = StockItem),
        (status = 404, description = "Never stocked", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "On-hand would fall below what is reserved", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The item changed since that version", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid delta or reason", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn adjust(
    State(app): State<App>,
    ctx: Ctx,
    Staff(staff): Staff,
    Path(sku): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Adjust>,
) -> Result<Json<StockItem>, Problem> {
    let request = ctx.call.request(inventory::AdjustStockRequest {
        request_id: command_id(&headers, "adjust-stock", staff.account_id)?,
        expected_version: if_match(&headers)?,
        sku,
        delta: body.delta,
        reason: body.reason,
    });
    let item = ctx
        .run(
            "stock item",
            app.edge.downstream.inventory.clone().adjust_stock(request),
        )
        .await?
        .stock_item;
    Ok(Json(stock_item(required(item, "stock item")?)))
}

fn stock_item(item: inventory::StockItem) -> StockItem {
    StockItem {
        sku: item.sku,
        on_hand: item.on_hand,
        reserved: item.reserved,
        available: item.available,
        reservations: item
            .reservations
            .into_iter()
            .map(|r| Reservation {
                reservation_id: r.reservation_id,
                quantity: r.quantity,
                state: match inventory::ReservationState::try_from(r.state) {
                    Ok(inventory::ReservationState::Firm) => "firm",
                    _ => "held",
                }
                .to_owned(),
                expire_time: timestamp(r.expire_time),
            })
            .collect(),
        version: item.version,
    }
}
