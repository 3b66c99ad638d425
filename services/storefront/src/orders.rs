//! Checkout and the shopper's orders.
//!
//! Checkout is a saga over three data services: a price snapshot from catalog
//! → a pending order in ordering → a held reservation per line in inventory →
//! the reservations made firm → the order confirmed. Every step is an
//! idempotent command whose request id (and the order's id, and each
//! reservation's id) is derived from the caller and the `Idempotency-Key`, so
//! a retry with the same key finds the order the first attempt placed and
//! resumes where it stopped, or returns it when it was done. The table of
//! crash points and what heals each is in ARCHITECTURE.md.
//!
//! Failures split two ways:
//! - the shop says no (not enough stock, a product not on sale, the order
//!   expired): everything done is undone — the order is cancelled with the
//!   reason and its reservations released — and the client gets 409 naming the
//!   product and what is available;
//! - a data service is unavailable or slow: nothing is undone, so that the
//!   client's retry with the same key resumes (503 with `Retry-After`); if no
//!   retry comes, held reservations and the pending order expire in their
//!   contexts, and the follower releases the stock of the expired order.

use axum::extract::{Path, State};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use strata_edge::{
    Ctx, FieldError, Json, Problem, Query,
    auth::Principal,
    model::{Order, PageParams, required},
    problem::kind,
    shop,
};
use strata_proto::{catalog::v1 as catalog, inventory::v1 as inventory, ordering::v1 as ordering};
use tonic::{Code, Status};
use tonic_types::StatusExt as _;
use utoipa::ToSchema;

use crate::App;

/// The most lines a checkout takes (ordering's default maximum).
pub const MAX_LINES: usize = 100;

/// The most of one product a line takes.
pub const MAX_QUANTITY: u32 = 10_000;

/// The longest `Idempotency-Key` accepted.
pub const MAX_KEY_LEN: usize = 128;

/// The namespace of the order ids derived from a caller and a key.
const CHECKOUT_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x5d0c_41f6_8a0e_4c1b_9f0e_2b8a_6c1d_7e21);

/// What to buy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Checkout {
    /// 1 to 100 lines; lines of one product are added together.
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Vec<CheckoutLine>,
}

/// One product and how many.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutLine {
    /// A published product.
    pub product_id: uuid::Uuid,
    /// 1 to 10 000 (and at most the storefront's units per order in all).
    #[schema(minimum = 1, maximum = 10000)]
    #[serde(deserialize_with = "strata_edge::json::whole")]
    pub quantity: u32,
}

/// Why an order is cancelled.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cancel {
    /// For people: 1 to 500 characters on one line; default "cancelled by the buyer".
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub reason: Option<String>,
}

/// Check out: the order, confirmed with its stock reserved. Requires an
/// `Idempotency-Key`: the same key again returns the same order and has no
/// second effect, also after a failure halfway.
#[utoipa::path(post, operation_id = "orders_checkout", path = "/v1/orders", tag = "orders", request_body = Checkout,
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "1 to 128 visible ASCII characters, chosen by the client, one per checkout", min_length = 1, max_length = 128, pattern = r"^[!-~]+$")),
    responses(
        (status = 201, description = "The order, confirmed", body = Order),
        (status = 400, description = "Malformed body or missing Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not enough stock (names `product_id`, `sku`, `requested`, `available`), the checkout was cancelled or expired, the key was used for another checkout (`reason`: `REQUEST_ID_REUSED`), too many of the caller's orders are open (`open_orders`), or more units than one order may hold (`reason`: `ORDER_TOO_LARGE`, `max_units`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A product of the lines does not exist or is not on sale (each named in errors)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid lines", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A data service is unavailable: retry with the same key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn checkout(
    State(app): State<App>,
    ctx: Ctx,
    caller: Principal,
    headers: HeaderMap,
    Json(body): Json<Checkout>,
) -> Result<(StatusCode, Json<Order>), Problem> {
    let key = idempotency_key(&headers)?;
    let lines = validate(&body)?;
    let units: u64 = lines.iter().map(|(_, quantity)| u64::from(*quantity)).sum();
    if units > u64::from(app.max_units_per_order) {
        // Like too little stock, a limit of the shop's rather than a
        // malformed request: 409, with the figures.
        return Err(Problem::conflict(format!(
            "at most {} units in one order (this one has {units}); split it",
            app.max_units_per_order
        ))
        .with("reason", "ORDER_TOO_LARGE")
        .with("max_units", app.max_units_per_order)
        .with("units", units));
    }
    let order_id = checkout_order_id(caller.account_id, &key).to_string();
    let saga = Saga {
        app: &app,
        ctx: &ctx,
        order_id,
        buyer_id: caller.account_id.to_string(),
    };
    let order = saga.run(&caller, &lines).await?;
    Ok((StatusCode::CREATED, Json(order.try_into()?)))
}

/// Refuses a new checkout while the caller already has `--max-open-orders`
/// confirmed orders not yet shipped or cancelled, so that one account cannot
/// hold the shop's stock; the order of this very checkout (a retry) does not
/// count. Pending orders are not counted: a checkout confirms its order at
/// once, and one that died halfway gives its holds back when they expire
/// (`--reservation-ttl-secs`), so counting them would cost a second call per
/// checkout for orders that hold nothing for long.
async fn within_open_orders(app: &App, ctx: &Ctx, caller: &Principal, this: &str) -> Result<(), Problem> {
    let limit = app.max_open_orders;
    let request = ctx.call.request(ordering::ListOrdersRequest {
        page_size: i32::try_from(limit + 1).unwrap_or(i32::MAX),
        page_token: String::new(),
        buyer_id: caller.account_id.to_string(),
        status: ordering::OrderStatus::Confirmed as i32,
    });
    let confirmed = ctx
        .run("order", app.edge.downstream.ordering.clone().list_orders(request))
        .await?;
    let count = confirmed.orders.iter().filter(|order| order.id != this).count();
    if count >= limit as usize {
        return Err(Problem::conflict(format!(
            "{count} of your orders are still open (at most {limit}); wait until they ship, or cancel one"
        ))
        .with("open_orders", count));
    }
    Ok(())
}

/// The caller's orders, newest first.
#[utoipa::path(get, operation_id = "orders_list", path = "/v1/orders", tag = "orders", params(PageParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the caller's orders", body = shop::OrderPage),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<App>,
    ctx: Ctx,
    caller: Principal,
    Query(page): Query<PageParams>,
) -> Result<Json<shop::OrderPage>, Problem> {
    shop::list_orders(&app.edge.downstream, &ctx, Some(caller.account_id), None, &page)
        .await
        .map(Json)
}

/// One of the caller's orders; anybody else's is 404.
#[utoipa::path(get, operation_id = "orders_get", path = "/v1/orders/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order of the caller's", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(app): State<App>,
    ctx: Ctx,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Json<Order>, Problem> {
    Ok(Json(own_order(&app, &ctx, &caller, &id).await?.try_into()?))
}

/// Cancels one of the caller's pending or confirmed orders and gives its stock back.
#[utoipa::path(post, operation_id = "orders_cancel", path = "/v1/orders/{id}/cancel", tag = "orders", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The order's id")),
    request_body(content = Option<Cancel>, description = "Optional: why"),
    responses(
        (status = 200, description = "The order, cancelled", body = Order),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order of the caller's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already shipped or cancelled", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(app): State<App>,
    ctx: Ctx,
    caller: Principal,
    Path(id): Path<String>,
    body: Option<Json<Cancel>>,
) -> Result<Json<Order>, Problem> {
    let order = own_order(&app, &ctx, &caller, &id).await?;
    let reason = body
        .and_then(|Json(c)| c.reason)
        .unwrap_or_else(|| "cancelled by the buyer".to_owned());
    let cancelled = shop::cancel_order(
        &app.edge.downstream,
        &ctx.call,
        &order.id,
        format!("storefront/cancel/{}", order.id),
        reason,
    )
    .await
    .map_err(|status| Problem::from_status(&status, "order"))?;
    Ok(Json(cancelled.try_into()?))
}

/// Order `id` when the caller placed it; 404 otherwise (also for a malformed id).
async fn own_order(app: &App, ctx: &Ctx, caller: &Principal, id: &str) -> Result<ordering::Order, Problem> {
    let not_found = || Problem::not_found("no such order");
    let id = uuid::Uuid::parse_str(id).map_err(|_| not_found())?;
    let request = ctx.call.request(ordering::GetOrderRequest { id: id.to_string() });
    let order = ctx
        .run("order", app.edge.downstream.ordering.clone().get_order(request))
        .await?
        .order;
    let order = required(order, "order")?;
    if order.buyer_id != caller.account_id.to_string() {
        return Err(not_found());
    }
    Ok(order)
}

/// The order a caller's checkout under `key` places: the same for every retry.
#[must_use]
pub fn checkout_order_id(caller: uuid::Uuid, key: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(&CHECKOUT_NAMESPACE, format!("{caller}/{key}").as_bytes())
}

fn idempotency_key(headers: &HeaderMap) -> Result<String, Problem> {
    let field = "Idempotency-Key";
    let value = headers.get(field).ok_or_else(|| {
        Problem::malformed(
            "a checkout needs an Idempotency-Key header",
            vec![FieldError::new(field, "required")],
        )
    })?;
    value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
        .map(str::to_owned)
        .ok_or_else(|| {
            Problem::malformed(
                "the Idempotency-Key header is not usable",
                vec![FieldError::new(
                    field,
                    format!("1 to {MAX_KEY_LEN} visible ASCII characters"),
                )],
            )
        })
}

/// The lines, checked: (product id, quantity), in the client's order.
fn validate(body: &Checkout) -> Result<Vec<(String, u32)>, Problem> {
    let mut errors = Vec::new();
    if body.lines.is_empty() || body.lines.len() > MAX_LINES {
        errors.push(FieldError::new("lines", format!("1 to {MAX_LINES} lines")));
    }
    // Lines of one product are one line of their total, where the product
    // first appears (a cart that lists it twice means both).
    let mut merged: Vec<(uuid::Uuid, u32)> = Vec::new();
    for (i, line) in body.lines.iter().enumerate() {
        if line.quantity == 0 || line.quantity > MAX_QUANTITY {
            errors.push(FieldError::new(
                format!("lines[{i}].quantity"),
                format!("1 to {MAX_QUANTITY}"),
            ));
        }
        match merged.iter_mut().find(|(product, _)| *product == line.product_id) {
            Some((_, quantity)) => *quantity = quantity.saturating_add(line.quantity),
            None => merged.push((line.product_id, line.quantity)),
        }
    }
    if errors.is_empty() {
        Ok(merged
            .into_iter()
            .map(|(product, quantity)| (product.to_string(), quantity))
            .collect())
    } else {
        Err(Problem::invalid(errors))
    }
}

/// One checkout: its order id (derived from the caller and the key) and the
/// request ids of its steps, derived from that.
struct Saga<'a> {
    app: &'a App,
    ctx: &'a Ctx,
    order_id: String,
    buyer_id: String,
}

/// The saga's steps, each numbered by how many steps are left from it on,
/// itself included: each gets that share of the time the request has left
/// ([`strata_rpc::client::Call::share`]), so that a slow early step cannot use
/// up the time of the later ones.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// The three reads a checkout starts with, at once: the caller's open
    /// orders, the order of an earlier attempt with this key, and the
    /// products' price snapshot.
    Read = 4,
    /// The pending order placed and its lines' stock held, at once.
    Hold = 3,
    Firm = 2,
    Confirm = 1,
}

/// Why no order was placed.
struct NotPlaced {
    problem: Problem,
    /// Ordering refused this placement for good: a retry with the key is
    /// refused too, so the stock held for it is not needed.
    refused: bool,
}

impl NotPlaced {
    /// Not placed, for a reason a retry with the key may get past, or
    /// because another attempt with it placed the order: the holds stay.
    fn failed(problem: Problem) -> Self {
        Self {
            problem,
            refused: false,
        }
    }
}

/// A line the shop cannot serve.
struct Unserved {
    product_id: String,
    sku: String,
    requested: u32,
    available: u64,
}

impl Saga<'_> {
    /// The deadline and request id of `step`'s calls.
    fn call(&self, step: Step) -> strata_rpc::client::Call {
        self.ctx.call.share(step as u32)
    }

    async fn run(&self, caller: &Principal, lines: &[(String, u32)]) -> Result<ordering::Order, Problem> {
        // None of the three reads depends on another: asked at once, they
        // cost one round trip instead of three. (`make loadtest` measures a
        // round trip's way there and back at 0.3-0.5 ms beyond what the data
        // service spends on the call, so the saga keeps few in a row.)
        let (open, found, products) = tokio::join!(
            within_open_orders(self.app, self.ctx, caller, &self.order_id),
            self.find(),
            self.snapshot(lines),
        );
        open?;
        let (order, held) = match found? {
            Some(order) => (self.same_checkout(order, lines)?, None),
            None => {
                // The order is placed and its stock held at once: a hold
                // needs only the line's sku, known from the snapshot, so
                // this costs one round trip instead of two. A hold whose
                // order is never placed (a crash, a refusal) expires by
                // itself, or is given back at once when ordering refuses.
                let placing = placing(lines, &products?)?;
                let holds = placing.iter().map(|line| async move {
                    let held = self.reserve(&line.product_id, &line.sku, line.quantity).await;
                    (line.product_id.clone(), held)
                });
                let (placed, held) = tokio::join!(
                    self.place(lines, placing.clone()),
                    futures_util::future::join_all(holds)
                );
                match placed {
                    Ok(order) => (order, Some(held)),
                    Err(NotPlaced {
                        problem,
                        refused: true,
                    }) => return Err(self.unhold(placing, problem).await),
                    Err(NotPlaced { problem, .. }) => return Err(problem),
                }
            }
        };
        match ordering::OrderStatus::try_from(order.status) {
            Ok(ordering::OrderStatus::Pending) => {}
            Ok(ordering::OrderStatus::Confirmed | ordering::OrderStatus::Shipped) => return Ok(order),
            _ => return Err(cancelled(&order)),
        }
        // Every line's stock held, then the holds made firm: were the order
        // confirmed first, a crash before the holds were firm would leave a
        // confirmed order whose stock expires.
        let reserved = match held {
            // An order placed by a concurrent attempt with this key holds
            // the same lines (`same_checkout`); a line not held here is held now.
            Some(mut held) => {
                let mut outcomes = Vec::with_capacity(order.lines.len());
                for line in &order.lines {
                    let outcome = match held
                        .iter()
                        .position(|(product_id, _)| *product_id == line.product_id)
                    {
                        Some(at) => held.swap_remove(at).1,
                        None => self.reserve(&line.product_id, &line.sku, line.quantity).await,
                    };
                    outcomes.push((line, outcome));
                }
                outcomes
            }
            None => {
                self.for_each_line(&order, |line| {
                    self.reserve(&line.product_id, &line.sku, line.quantity)
                })
                .await
            }
        };
        self.settle(&order, reserved).await?;
        let firm = self.for_each_line(&order, |line| self.make_firm(line)).await;
        self.settle(&order, firm).await?;
        self.confirm(&order).await
    }

    /// After ordering refused to place the order for good (`problem`): the
    /// stock held for it is given back now rather than when the holds
    /// expire.
    async fn unhold(&self, placing: Vec<ordering::PlaceOrderLine>, problem: Problem) -> Problem {
        let order = ordering::Order {
            id: self.order_id.clone(),
            lines: placing
                .into_iter()
                .map(|line| ordering::OrderLine {
                    product_id: line.product_id,
                    sku: line.sku,
                    quantity: line.quantity,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        if let Err(status) = shop::release_stock(&self.app.edge.downstream, &self.ctx.call, &order).await {
            tracing::warn!(order = %order.id, code = ?status.code(), message = status.message(),
                "the stock held for a refused order could not be given back now; its holds expire");
        }
        problem
    }

    /// The order an earlier attempt with this key placed, if any.
    async fn find(&self) -> Result<Option<ordering::Order>, Problem> {
        let call = self.call(Step::Read);
        let request = call.request(ordering::GetOrderRequest {
            id: self.order_id.clone(),
        });
        match call
            .run(self.app.edge.downstream.ordering.clone().get_order(request))
            .await
        {
            Ok(found) => Ok(Some(required(found.order, "order")?)),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(Problem::from_status(&status, "order")),
        }
    }

    /// `order`, when it is the checkout of the same lines (the key was not
    /// reused for another checkout).
    fn same_checkout(
        &self,
        order: ordering::Order,
        lines: &[(String, u32)],
    ) -> Result<ordering::Order, Problem> {
        let mut placed: Vec<(&str, u32)> = order
            .lines
            .iter()
            .map(|l| (l.product_id.as_str(), l.quantity))
            .collect();
        let mut asked: Vec<(&str, u32)> = lines.iter().map(|(p, q)| (p.as_str(), *q)).collect();
        placed.sort_unstable();
        asked.sort_unstable();
        if order.buyer_id == self.buyer_id && placed == asked {
            Ok(order)
        } else {
            Err(Problem::conflict(
                "this Idempotency-Key was used for another checkout; use a new key for a new checkout",
            )
            .with("reason", "REQUEST_ID_REUSED"))
        }
    }

    /// The products of `lines`, as they are now: the price snapshot.
    async fn snapshot(&self, lines: &[(String, u32)]) -> Result<Vec<catalog::Product>, Problem> {
        let call = self.call(Step::Read);
        let request = call.request(catalog::BatchGetProductsRequest {
            ids: lines.iter().map(|(p, _)| p.clone()).collect(),
        });
        Ok(call
            .run(
                self.app
                    .edge
                    .downstream
                    .catalog
                    .clone()
                    .batch_get_products(request),
            )
            .await
            .map_err(|status| Problem::from_status(&status, "product"))?
            .products)
    }

    /// Places the pending order of `lines` (as [`placing`] made them).
    async fn place(
        &self,
        lines: &[(String, u32)],
        place_lines: Vec<ordering::PlaceOrderLine>,
    ) -> Result<ordering::Order, NotPlaced> {
        let call = self.call(Step::Hold);
        let request = call.request(ordering::PlaceOrderRequest {
            request_id: format!("checkout/{}/place", self.order_id),
            buyer_id: self.buyer_id.clone(),
            lines: place_lines,
            id: self.order_id.clone(),
        });
        match call
            .run(self.app.edge.downstream.ordering.clone().place_order(request))
            .await
        {
            Ok(placed) => required(placed.order, "order").map_err(NotPlaced::failed),
            // A concurrent attempt with the same key placed it first (with a
            // price snapshot taken a moment earlier): carry on with that one.
            Err(status) if raced(&status) => match self.find().await.map_err(NotPlaced::failed)? {
                Some(order) => self.same_checkout(order, lines).map_err(NotPlaced::failed),
                None => Err(NotPlaced::failed(Problem::from_status(&status, "order"))),
            },
            Err(status) => Err(NotPlaced {
                problem: Problem::from_status(&status, "order"),
                // Ordering said no to these lines (not: unavailable, too
                // slow, or busy, after which the order may exist).
                refused: matches!(
                    status.code(),
                    Code::InvalidArgument | Code::FailedPrecondition | Code::NotFound | Code::OutOfRange
                ),
            }),
        }
    }

    /// Runs `step` for every line of `order` at once; each line's outcome.
    async fn for_each_line<'l, F, Fut>(
        &self,
        order: &'l ordering::Order,
        step: F,
    ) -> Vec<(&'l ordering::OrderLine, Result<(), Status>)>
    where
        F: Fn(&'l ordering::OrderLine) -> Fut,
        Fut: Future<Output = Result<(), Status>>,
    {
        let steps = order.lines.iter().map(|line| {
            let fut = step(line);
            async move { (line, fut.await) }
        });
        futures_util::future::join_all(steps).await
    }

    /// Holds `quantity` of `sku` for this checkout's line of `product_id`.
    async fn reserve(&self, product_id: &str, sku: &str, quantity: u32) -> Result<(), Status> {
        let ttl = self.app.reservation_ttl;
        let call = self.call(Step::Hold);
        let request = call.request(inventory::ReserveRequest {
            request_id: format!("checkout/{}/reserve/{product_id}", self.order_id),
            expected_version: None,
            sku: sku.to_owned(),
            reservation_id: shop::reservation_id(&self.order_id, product_id),
            quantity: u64::from(quantity),
            time_to_live: Some(prost_types::Duration {
                seconds: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
                nanos: 0,
            }),
        });
        call.run(self.app.edge.downstream.inventory.clone().reserve(request))
            .await
            .map(|_| ())
    }

    async fn make_firm(&self, line: &ordering::OrderLine) -> Result<(), Status> {
        let call = self.call(Step::Firm);
        let request = call.request(inventory::ConfirmReservationRequest {
            request_id: format!("checkout/{}/firm/{}", self.order_id, line.product_id),
            expected_version: None,
            sku: line.sku.clone(),
            reservation_id: shop::reservation_id(&self.order_id, &line.product_id),
        });
        call.run(
            self.app
                .edge
                .downstream
                .inventory
                .clone()
                .confirm_reservation(request),
        )
        .await
        .map(|_| ())
    }

    /// Decides after a step on every line: all done, carry on; the shop said
    /// no to a line, undo everything (409); a data service failed, undo nothing
    /// so a retry resumes (503/504).
    async fn settle(
        &self,
        order: &ordering::Order,
        outcomes: Vec<(&ordering::OrderLine, Result<(), Status>)>,
    ) -> Result<(), Problem> {
        let mut unserved = None;
        let mut failure = None;
        for (line, outcome) in outcomes {
            let Err(status) = outcome else { continue };
            match status.code() {
                Code::FailedPrecondition | Code::NotFound => {
                    unserved.get_or_insert_with(|| Unserved {
                        product_id: line.product_id.clone(),
                        sku: line.sku.clone(),
                        requested: line.quantity,
                        // No stock item at all (NOT_FOUND) is none available.
                        available: available_in(&status).unwrap_or(0),
                    });
                    if status.code() == Code::FailedPrecondition && available_in(&status).is_none() {
                        // Not a shortage: the hold expired or was released meanwhile.
                        tracing::info!(order = %order.id, sku = %line.sku, message = status.message(), "a reservation could not be kept");
                    }
                }
                _ => {
                    failure.get_or_insert(status);
                }
            }
        }
        if let Some(unserved) = unserved {
            return Err(self.compensate(order, &unserved).await);
        }
        match failure {
            None => Ok(()),
            Some(status) => {
                tracing::warn!(order = %order.id, code = ?status.code(), message = status.message(),
                    "checkout stopped halfway; a retry with the same key resumes it");
                Err(Problem::from_status(&status, "order"))
            }
        }
    }

    /// Undoes the checkout (cancel the order, release its reservations) and
    /// says which product could not be served.
    async fn compensate(&self, order: &ordering::Order, unserved: &Unserved) -> Problem {
        let reason = format!(
            "insufficient stock: {} of sku {} requested, {} available",
            unserved.requested, unserved.sku, unserved.available
        );
        let request_id = format!("checkout/{}/cancel", self.order_id);
        if let Err(status) = shop::cancel_order(
            &self.app.edge.downstream,
            &self.ctx.call,
            &order.id,
            request_id,
            reason.clone(),
        )
        .await
        {
            // The order stays pending and expires; the holds expire sooner.
            tracing::warn!(order = %order.id, code = ?status.code(), message = status.message(),
                "a refused checkout could not be cancelled now; it will expire");
        }
        Problem::new(StatusCode::CONFLICT, reason)
            .kind(kind::INSUFFICIENT_STOCK, "Insufficient stock")
            .with("order_id", order.id.clone())
            .with("product_id", unserved.product_id.clone())
            .with("sku", unserved.sku.clone())
            .with("requested", unserved.requested)
            .with("available", unserved.available)
    }

    async fn confirm(&self, order: &ordering::Order) -> Result<ordering::Order, Problem> {
        let call = self.call(Step::Confirm);
        let request = call.request(ordering::ConfirmOrderRequest {
            id: order.id.clone(),
            request_id: format!("checkout/{}/confirm", self.order_id),
            expected_version: None,
        });
        match call
            .run(self.app.edge.downstream.ordering.clone().confirm_order(request))
            .await
        {
            Ok(confirmed) => required(confirmed.order, "order"),
            Err(status) if status.code() == Code::FailedPrecondition => {
                // The order expired (or was cancelled) before it was confirmed:
                // its stock goes back.
                if let Err(release) =
                    shop::release_stock(&self.app.edge.downstream, &self.ctx.call, order).await
                {
                    tracing::warn!(order = %order.id, code = ?release.code(), "stock of an expired checkout not released now; the follower will");
                }
                let mut problem = Problem::from_status(&status, "order");
                problem.detail =
                    "the checkout took too long and its order expired; check out again with a new key"
                        .to_owned();
                Err(problem.with("order_id", order.id.clone()))
            }
            Err(status) => Err(Problem::from_status(&status, "order")),
        }
    }
}

/// The lines of the order to place for `lines`, at the prices of `products`
/// (the snapshot); 404 naming each line whose product is not on sale.
fn placing(
    lines: &[(String, u32)],
    products: &[catalog::Product],
) -> Result<Vec<ordering::PlaceOrderLine>, Problem> {
    let mut place_lines = Vec::with_capacity(lines.len());
    let mut missing = Vec::new();
    for (i, (product_id, quantity)) in lines.iter().enumerate() {
        match products.iter().find(|p| &p.id == product_id) {
            Some(p) if p.status == catalog::ProductStatus::Published as i32 => {
                place_lines.push(ordering::PlaceOrderLine {
                    product_id: product_id.clone(),
                    sku: p.sku.clone(),
                    quantity: *quantity,
                    unit_price: p.price.clone(),
                })
            }
            _ => missing.push(FieldError::new(
                format!("lines[{i}].product_id"),
                "no such product on sale",
            )),
        }
    }
    if !missing.is_empty() {
        // As GET /v1/products/{id} answers for it: not found, from a
        // shopper's side (it does not exist, or is not on sale).
        return Err(Problem::not_found("no such product on sale").fields(missing));
    }
    Ok(place_lines)
}

/// Whether `status` says another attempt placed the order first.
fn raced(status: &Status) -> bool {
    status.code() == Code::AlreadyExists
        || (status.code() == Code::InvalidArgument
            && status
                .get_details_bad_request()
                .is_some_and(|b| b.field_violations.iter().any(|v| v.field == "request_id")))
}

/// `available`, when a refusal is for a shortage.
fn available_in(status: &Status) -> Option<u64> {
    status
        .get_details_error_info()
        .filter(|info| info.reason == "INSUFFICIENT_STOCK")
        .and_then(|info| info.metadata.get("available").and_then(|a| a.parse().ok()))
}

/// The answer to a retry of a checkout that was cancelled (refused or expired).
fn cancelled(order: &ordering::Order) -> Problem {
    Problem::conflict(format!(
        "this checkout was cancelled ({}); check out again with a new key",
        if order.cancel_reason.is_empty() {
            "no reason given"
        } else {
            &order.cancel_reason
        }
    ))
    .with("order_id", order.id.clone())
}
