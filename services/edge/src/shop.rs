//! The shop's conventions across contexts, which both application services
//! follow: how an order line's reservation is named, and how an order's stock
//! is given back. Contexts never call each other; these are the application
//! layer's.

use serde::Serialize;
use strata_proto::{inventory::v1 as inventory, ordering::v1 as ordering};
use strata_rpc::client::Call;
use tonic::{Code, Status};
use utoipa::ToSchema;

use crate::{
    Ctx, Problem,
    downstream::Downstream,
    model::{Order, OrderStatus, PageParams},
};

/// A page of orders.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    /// Newest first.
    pub orders: Vec<Order>,
    /// Pass it as `page_token` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// A page of orders, of one buyer or all, of one status or all.
///
/// # Errors
/// 422 for a page size over the maximum; a data service's failure.
pub async fn list_orders(
    downstream: &Downstream,
    ctx: &Ctx,
    buyer: Option<uuid::Uuid>,
    status: Option<OrderStatus>,
    page: &PageParams,
) -> Result<OrderPage, Problem> {
    let request = ctx.call.request(ordering::ListOrdersRequest {
        page_size: page.size()?,
        page_token: page.token(),
        buyer_id: buyer.map(|b| b.to_string()).unwrap_or_default(),
        status: status.map_or(ordering::OrderStatus::Unspecified, OrderStatus::to_proto) as i32,
    });
    let listed = ctx
        .run("order", downstream.ordering.clone().list_orders(request))
        .await?;
    Ok(OrderPage {
        orders: listed
            .orders
            .into_iter()
            .map(Order::try_from)
            .collect::<Result<_, _>>()?,
        next_page_token: (!listed.next_page_token.is_empty()).then_some(listed.next_page_token),
    })
}

/// The reservation that holds the stock of `product_id` for `order_id`: named
/// from the order, so that anyone who has the order can find its reservations.
#[must_use]
pub fn reservation_id(order_id: &str, product_id: &str) -> String {
    format!("{order_id}/{product_id}")
}

/// The one request id under which a reservation is ever released, whoever
/// releases it (a compensation, a cancellation, the follower).
#[must_use]
pub fn release_request_id(reservation_id: &str) -> String {
    format!("release/{reservation_id}")
}

/// Gives the stock of every line of `order` back to inventory. A reservation
/// that was never made or is long forgotten is nothing to give back; one whose
/// goods already left (committed) cannot be given back and is logged.
///
/// # Errors
/// The first failure of a data service that may be retried (UNAVAILABLE, a
/// deadline, …); the lines after it are not tried.
pub async fn release_stock(
    downstream: &Downstream,
    call: &Call,
    order: &ordering::Order,
) -> Result<(), Status> {
    for line in &order.lines {
        let reservation = reservation_id(&order.id, &line.product_id);
        let request = call.request(inventory::ReleaseReservationRequest {
            request_id: release_request_id(&reservation),
            expected_version: None,
            sku: line.sku.clone(),
            reservation_id: reservation.clone(),
        });
        match call
            .run(downstream.inventory.clone().release_reservation(request))
            .await
        {
            Ok(_) => {}
            Err(status) if status.code() == Code::NotFound => {}
            Err(status) if status.code() == Code::FailedPrecondition => {
                tracing::warn!(order = %order.id, %reservation, message = status.message(),
                    "a reservation of this order cannot be released");
            }
            Err(status) => return Err(status),
        }
    }
    Ok(())
}

/// Cancels order `id` under `request_id`, then gives its stock back. The order
/// is cancelled first: were it the other way round, a crash in between would
/// leave a live order without its stock. When the release fails, the
/// cancellation stands and storefront's follower of ordering's events
/// releases the stock later.
///
/// # Errors
/// The cancellation's failure.
pub async fn cancel_order(
    downstream: &Downstream,
    call: &Call,
    id: &str,
    request_id: String,
    reason: String,
) -> Result<ordering::Order, Status> {
    let request = call.request(ordering::CancelOrderRequest {
        id: id.to_owned(),
        request_id,
        expected_version: None,
        reason,
    });
    let order = call
        .run(downstream.ordering.clone().cancel_order(request))
        .await?
        .order
        .ok_or_else(|| Status::internal("CancelOrder answered without the order"))?;
    if let Err(status) = release_stock(downstream, call, &order).await {
        tracing::warn!(order = %order.id, code = ?status.code(), message = status.message(),
            "the order is cancelled but its stock could not be released now; the follower will");
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_ids_fit_inventorys_rules() {
        let id = reservation_id(
            &uuid::Uuid::now_v7().to_string(),
            &uuid::Uuid::now_v7().to_string(),
        );
        assert!(
            id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()),
            "{id}"
        );
        assert!(release_request_id(&id).len() <= 128);
    }
}
