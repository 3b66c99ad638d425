//! Products and prices (catalog). Every change takes an optional
//! `If-Match: "<version>"` (412 when stale) and answers the product with its
//! `ETag`.

use axum::{
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use strata_edge::{
    Ctx, Json, Problem, Query,
    auth::Staff,
    model::{Money, PageParams, required, timestamp, uuid},
};
use strata_proto::catalog::v1 as catalog;
use utoipa::{IntoParams, ToSchema};

use crate::{App, command_id, if_match};

/// A product, whatever its status.
#[derive(Debug, Serialize, ToSchema)]
pub struct Product {
    /// Its id.
    pub id: uuid::Uuid,
    /// Its stock keeping unit.
    pub sku: String,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// The price of one.
    pub price: Money,
    /// `draft`, `published` or `retired`.
    pub status: ProductStatus,
    /// Incremented by every change; send it back in `If-Match`.
    pub version: u64,
    /// When it was created (RFC 3339).
    pub create_time: Option<String>,
    /// When it last changed (RFC 3339).
    pub update_time: Option<String>,
}

/// Where a product is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProductStatus {
    /// Not on sale yet.
    Draft,
    /// On sale.
    Published,
    /// No longer on sale.
    Retired,
}

/// A new product (a draft).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' or '.'; unique.
    #[schema(example = "MUG-1", pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub sku: String,
    /// 1 to 200 characters on one line.
    #[schema(
        example = "Mug",
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
    /// Up to 5 000 characters (line breaks and tabs allowed).
    #[serde(default)]
    #[schema(
        max_length = 5000,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
    )]
    pub description: String,
    /// More than zero.
    pub price: Money,
}

/// New details (a merge patch): absent fields stay as they are, and `{}`
/// changes nothing (null is not "absent": leave the field out).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Details {
    /// 1 to 200 characters on one line.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: Option<String>,
    /// Up to 5 000 characters (line breaks and tabs allowed).
    #[schema(
        max_length = 5000,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
    )]
    pub description: Option<String>,
}

/// A new price.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPrice {
    /// More than zero.
    pub price: Money,
}

/// Which products to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this status; all when absent.
    pub status: Option<ProductStatus>,
    /// How many at most (1 to 100; default 20).
    #[param(minimum = 0, maximum = 100)]
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// A page of products.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    /// The products.
    pub products: Vec<Product>,
    /// Pass it as `page_token` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// Creates a product, as a draft.
#[utoipa::path(post, operation_id = "products_create", path = "/v1/products", tag = "products", request_body = NewProduct, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = "Makes a retry return the first answer: 1 to 64 visible ASCII characters", min_length = 1, max_length = 64, pattern = r"^[!-~]+$")),
    responses(
        (status = 201, description = "Created", body = Product),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not staff", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The sku is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(app): State<App>,
    ctx: Ctx,
    Staff(staff): Staff,
    headers: HeaderMap,
    Json(body): Json<NewProduct>,
) -> Result<Response, Problem> {
    let request = ctx.call.request(catalog::CreateProductRequest {
        request_id: command_id(&headers, "create-product", staff.account_id)?,
        sku: body.sku,
        name: body.name,
        description: body.description,
        price: Some(body.price.into()),
    });
    let product = ctx
        .run(
            "product",
            app.edge.downstream.catalog.clone().create_product(request),
        )
        .await?
        .product;
    answer(StatusCode::CREATED, product)
}

/// Lists products, of every status or one.
#[utoipa::path(get, operation_id = "products_list", path = "/v1/products", tag = "products", params(ListParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of products", body = ProductPage),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not staff", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<App>,
    ctx: Ctx,
    _staff: Staff,
    Query(params): Query<ListParams>,
) -> Result<Json<ProductPage>, Problem> {
    let page = PageParams {
        page_size: params.page_size,
        page_token: params.page_token,
    };
    let request = ctx.call.request(catalog::ListProductsRequest {
        page_size: page.size()?,
        page_token: page.token(),
        status: params
            .status
            .map_or(catalog::ProductStatus::Unspecified, to_proto) as i32,
    });
    let listed = ctx
        .run(
            "product",
            app.edge.downstream.catalog.clone().list_products(request),
        )
        .await?;
    Ok(Json(ProductPage {
        products: listed
            .products
            .into_iter()
            .map(product)
            .collect::<Result<_, _>>()?,
        next_page_token: (!listed.next_page_token.is_empty()).then_some(listed.next_page_token),
    }))
}

/// One product.
#[utoipa::path(get, operation_id = "products_get", path = "/v1/products/{id}", tag = "products", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The product's id")),
    responses(
        (status = 200, description = "The product", body = Product),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(app): State<App>,
    ctx: Ctx,
    _staff: Staff,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    answer(StatusCode::OK, fetch(&app, &ctx, &id).await?)
}

/// Product `id` as the catalog has it.
async fn fetch(app: &App, ctx: &Ctx, id: &str) -> Result<Option<catalog::Product>, Problem> {
    let request = ctx
        .call
        .request(catalog::GetProductRequest { id: product_id(id)? });
    Ok(ctx
        .run(
            "product",
            app.edge.downstream.catalog.clone().get_product(request),
        )
        .await?
        .product)
}

/// Edits the name and/or description.
#[utoipa::path(patch, operation_id = "products_update", path = "/v1/products/{id}", tag = "products", request_body = Details, security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The product's id"),
           ("If-Match" = Option<String>, Header, nullable = false, description = "The version the change is for, quoted: \"3\"", pattern = r#"^"[1-9][0-9]{0,18}"$"#)),
    responses(
        (status = 200, description = "Changed", body = Product),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Retired products can no longer change", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The product changed since that version", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(app): State<App>,
    ctx: Ctx,
    Staff(staff): Staff,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Details>,
) -> Result<Response, Problem> {
    if body.name.is_none() && body.description.is_none() {
        // A merge patch that changes nothing: the product as it is (the
        // version still checked, so a stale If-Match is still 412).
        let product = fetch(&app, &ctx, &id).await?;
        if let (Some(expected), Some(product)) = (if_match(&headers)?, &product)
            && expected != product.version
        {
            return Err(Problem::new(
                StatusCode::PRECONDITION_FAILED,
                format!(
                    "the product has changed: its current version is {}",
                    product.version
                ),
            )
            .kind(strata_edge::problem::kind::STALE, "Stale version")
            .with("current_version", product.version));
        }
        return answer(StatusCode::OK, product);
    }
    let request = ctx.call.request(catalog::UpdateProductDetailsRequest {
        id: product_id(&id)?,
        request_id: command_id(&headers, "update-product", staff.account_id)?,
        expected_version: if_match(&headers)?,
        name: body.name,
        description: body.description,
    });
    let product = ctx
        .run(
            "product",
            app.edge
                .downstream
                .catalog
                .clone()
                .update_product_details(request),
        )
        .await?
        .product;
    answer(StatusCode::OK, product)
}

/// Changes the price.
#[utoipa::path(post, operation_id = "products_change_price", path = "/v1/products/{id}/price", tag = "products", request_body = NewPrice, security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The product's id"),
           ("If-Match" = Option<String>, Header, nullable = false, description = "The version the change is for, quoted: \"3\"", pattern = r#"^"[1-9][0-9]{0,18}"$"#)),
    responses(
        (status = 200, description = "Changed", body = Product),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Retired products can no longer change", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The product changed since that version", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid price", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn change_price(
    State(app): State<App>,
    ctx: Ctx,
    Staff(staff): Staff,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<NewPrice>,
) -> Result<Response, Problem> {
    let request = ctx.call.request(catalog::ChangePriceRequest {
        id: product_id(&id)?,
        request_id: command_id(&headers, "change-price", staff.account_id)?,
        expected_version: if_match(&headers)?,
        price: Some(body.price.into()),
    });
    let product = ctx
        .run(
            "product",
            app.edge.downstream.catalog.clone().change_price(request),
        )
        .await?
        .product;
    answer(StatusCode::OK, product)
}

/// Puts a draft product on sale.
#[utoipa::path(post, operation_id = "products_publish", path = "/v1/products/{id}/publish", tag = "products", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The product's id"),
           ("If-Match" = Option<String>, Header, nullable = false, description = "The version the change is for, quoted: \"3\"", pattern = r#"^"[1-9][0-9]{0,18}"$"#)),
    responses(
        (status = 200, description = "Published", body = Product),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Retired products cannot be published", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The product changed since that version", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn publish(
    State(app): State<App>,
    ctx: Ctx,
    Staff(staff): Staff,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let request = ctx.call.request(catalog::PublishProductRequest {
        id: product_id(&id)?,
        request_id: command_id(&headers, "publish-product", staff.account_id)?,
        expected_version: if_match(&headers)?,
    });
    let product = ctx
        .run(
            "product",
            app.edge.downstream.catalog.clone().publish_product(request),
        )
        .await?
        .product;
    answer(StatusCode::OK, product)
}

/// Takes a product off sale, for good.
#[utoipa::path(post, operation_id = "products_retire", path = "/v1/products/{id}/retire", tag = "products", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The product's id"),
           ("If-Match" = Option<String>, Header, nullable = false, description = "The version the change is for, quoted: \"3\"", pattern = r#"^"[1-9][0-9]{0,18}"$"#)),
    responses(
        (status = 200, description = "Retired", body = Product),
        (status = 404, description = "No such product", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already retired", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The product changed since that version", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn retire(
    State(app): State<App>,
    ctx: Ctx,
    Staff(staff): Staff,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let request = ctx.call.request(catalog::RetireProductRequest {
        id: product_id(&id)?,
        request_id: command_id(&headers, "retire-product", staff.account_id)?,
        expected_version: if_match(&headers)?,
    });
    let product = ctx
        .run(
            "product",
            app.edge.downstream.catalog.clone().retire_product(request),
        )
        .await?
        .product;
    answer(StatusCode::OK, product)
}

/// A product id from the path; a malformed one names no product (404).
fn product_id(raw: &str) -> Result<String, Problem> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.to_string())
        .map_err(|_| Problem::not_found("no such product"))
}

/// The product as JSON with its `ETag`.
fn answer(status: StatusCode, product: Option<catalog::Product>) -> Result<Response, Problem> {
    let product = self::product(required(product, "product")?)?;
    let etag = HeaderValue::try_from(format!("\"{}\"", product.version)).map_err(|_| Problem::internal())?;
    Ok((status, [(header::ETAG, etag)], Json(product)).into_response())
}

fn product(p: catalog::Product) -> Result<Product, Problem> {
    let status = match catalog::ProductStatus::try_from(p.status) {
        Ok(catalog::ProductStatus::Draft) => ProductStatus::Draft,
        Ok(catalog::ProductStatus::Published) => ProductStatus::Published,
        Ok(catalog::ProductStatus::Retired) => ProductStatus::Retired,
        _ => return required(None, "product status"),
    };
    Ok(Product {
        id: uuid(&p.id)?,
        sku: p.sku,
        name: p.name,
        description: p.description,
        price: required(p.price, "price")?.into(),
        status,
        version: p.version,
        create_time: timestamp(p.create_time),
        update_time: timestamp(p.update_time),
    })
}

fn to_proto(status: ProductStatus) -> catalog::ProductStatus {
    match status {
        ProductStatus::Draft => catalog::ProductStatus::Draft,
        ProductStatus::Published => catalog::ProductStatus::Published,
        ProductStatus::Retired => catalog::ProductStatus::Retired,
    }
}
