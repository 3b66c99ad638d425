//! Orders: listing by status, shipping and cancelling.
//!
//! Shipping touches two contexts: the order's reservations are committed in
//! inventory (the goods leave), then the order is marked shipped in ordering.
//! Every step's request id is derived from the order, so shipping again
//! after a failure halfway finishes the job without a second effect.

use axum::extract::{Path, State};
use serde::Deserialize;
use strata_edge::{
    Ctx, Json, Problem, Query,
    auth::Staff,
    model::{Order, OrderStatus, PageParams, required},
    shop,
};
use strata_proto::{inventory::v1 as inventory, ordering::v1 as ordering};
use tonic::Code;
use utoipa::{IntoParams, ToSchema};

use crate::App;

/// Which orders to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this status; all when absent.
    pub status: Option<OrderStatus>,
    /// How many at most (1 to 100; default 20).
    #[param(minimum = 0, maximum = 100)]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// Why an order is cancelled.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    /// For people: 1 to 500 characters on one line; default "cancelled by staff".
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub reason: Option<String>,
}

/// Orders of every buyer, newest first, optionally of one status.
#[utoipa::path(get, operation_id = "orders_list", path = "/v1/orders", tag = "orders", params(ListParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of orders", body = shop::OrderPage),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not staff", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<App>,
    ctx: Ctx,
    _staff: Staff,
    Query(params): Query<ListParams>,
) -> Result<Json<shop::OrderPage>, Problem> {
    let page = PageParams {
        page_size: params.page_size,
        page_token: params.page_token,
    };
    shop::list_orders(&app.edge.downstream, &ctx, None, params.status, &page)
        .await
        .map(Json)
}

/// Ships a confirmed order: its goods leave inventory, then it is marked shipped.
#[utoipa::path(post, operation_id = "orders_ship", path = "/v1/orders/{id}/ship", tag = "orders", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "Shipped", body = Order),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not confirmed (pending, cancelled), or its stock is gone", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn ship(
    State(app): State<App>,
    ctx: Ctx,
    _staff: Staff,
    Path(id): Path<String>,
) -> Result<Json<Order>, Problem> {
    let order = order(&app, &ctx, &id).await?;
    match ordering::OrderStatus::try_from(order.status) {
        Ok(ordering::OrderStatus::Shipped) => return Ok(Json(order.try_into()?)),
        Ok(ordering::OrderStatus::Confirmed) => {}
        _ => {
            return Err(Problem::conflict("only a confirmed order can be shipped").with("order_id", order.id));
        }
    }
    for line in &order.lines {
        let reservation = shop::reservation_id(&order.id, &line.product_id);
        let request = ctx.call.request(inventory::CommitReservationRequest {
            request_id: format!("ship/{}/commit/{}", order.id, line.product_id),
            expected_version: None,
            sku: line.sku.clone(),
            reservation_id: reservation,
        });
        ctx.call
            .run(app.edge.downstream.inventory.clone().commit_reservation(request))
            .await
            .map_err(|status| Problem::from_status(&status, "reservation").with("sku", line.sku.clone()))?;
    }
    let request = ctx.call.request(ordering::MarkShippedRequest {
        id: order.id.clone(),
        request_id: format!("ship/{}", order.id),
        expected_version: None,
    });
    let shipped = ctx
        .run(
            "order",
            app.edge.downstream.ordering.clone().mark_shipped(request),
        )
        .await?
        .order;
    Ok(Json(required(shipped, "order")?.try_into()?))
}

/// Cancels a pending or confirmed order and gives its stock back.
#[utoipa::path(post, operation_id = "orders_cancel", path = "/v1/orders/{id}/cancel", tag = "orders", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The order's id")),
    request_body(content = Option<Cancel>, description = "Optional: why"),
    responses(
        (status = 200, description = "Cancelled", body = Order),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already shipped or cancelled", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(app): State<App>,
    ctx: Ctx,
    _staff: Staff,
    Path(id): Path<String>,
    body: Option<Json<Cancel>>,
) -> Result<Json<Order>, Problem> {
    let order = order(&app, &ctx, &id).await?;
    let reason = body
        .and_then(|Json(c)| c.reason)
        .unwrap_or_else(|| "cancelled by staff".to_owned());
    let cancelled = shop::cancel_order(
        &app.edge.downstream,
        &ctx.call,
        &order.id,
        format!("backoffice/cancel/{}", order.id),
        reason,
    )
    .await
    .map_err(|status| Problem::from_status(&status, "order"))?;
    Ok(Json(cancelled.try_into()?))
}

async fn order(app: &App, ctx: &Ctx, id: &str) -> Result<ordering::Order, Problem> {
    let id = uuid::Uuid::parse_str(id).map_err(|_| Problem::not_found("no such order"))?;
    let request = ctx.call.request(ordering::GetOrderRequest { id: id.to_string() });
    match ctx
        .call
        .run(app.edge.downstream.ordering.clone().get_order(request))
        .await
    {
        Ok(found) => required(found.order, "order"),
        Err(status) if status.code() == Code::NotFound => Err(Problem::not_found("no such order")),
        Err(status) => Err(Problem::from_status(&status, "order")),
    }
}
