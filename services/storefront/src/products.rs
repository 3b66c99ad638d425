//! Browsing: published products with what is available of each, one call to
//! catalog and one to inventory per page (never one per product).

use std::collections::HashMap;

use axum::extract::{Path, State};
use serde::Serialize;
use strata_edge::{
    Ctx, Json, Problem, Query,
    model::{Money, PageParams, required, uuid},
};
use strata_proto::{catalog::v1 as catalog, inventory::v1 as inventory};
use utoipa::ToSchema;

use crate::App;

/// A product on sale.
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
    /// How many can be ordered now.
    pub available: u64,
}

/// A page of products.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    /// The products, in catalog order.
    pub products: Vec<Product>,
    /// Pass it as `page_token` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// The published products, a page at a time, each with its availability.
#[utoipa::path(get, operation_id = "products_list", path = "/v1/products", tag = "products", params(PageParams),
    responses(
        (status = 200, description = "A page of products", body = ProductPage),
        (status = 400, description = "A malformed parameter", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "page_size out of range, or a page_token of another listing", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(app): State<App>,
    ctx: Ctx,
    Query(page): Query<PageParams>,
) -> Result<Json<ProductPage>, Problem> {
    let request = ctx.call.request(catalog::ListProductsRequest {
        page_size: page.size()?,
        page_token: page.token(),
        status: catalog::ProductStatus::Published as i32,
    });
    let listed = ctx
        .run(
            "product",
            app.edge.downstream.catalog.clone().list_products(request),
        )
        .await?;
    let available = availability(
        &app,
        &ctx,
        listed.products.iter().map(|p| p.sku.clone()).collect(),
    )
    .await?;
    let products = listed
        .products
        .into_iter()
        .map(|p| {
            let available = available.get(&p.sku).copied().unwrap_or(0);
            product(p, available)
        })
        .collect::<Result<_, _>>()?;
    Ok(Json(ProductPage {
        products,
        next_page_token: (!listed.next_page_token.is_empty()).then_some(listed.next_page_token),
    }))
}

/// One published product with its availability; a draft or retired one is 404.
#[utoipa::path(get, operation_id = "products_get", path = "/v1/products/{id}", tag = "products",
    params(("id" = uuid::Uuid, Path, description = "The product's id")),
    responses(
        (status = 200, description = "The product", body = Product),
        (status = 404, description = "No such product on sale", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(State(app): State<App>, ctx: Ctx, Path(id): Path<String>) -> Result<Json<Product>, Problem> {
    let not_found = || Problem::not_found("no such product");
    let id = uuid::Uuid::parse_str(&id).map_err(|_| not_found())?;
    let request = ctx
        .call
        .request(catalog::GetProductRequest { id: id.to_string() });
    let found = ctx
        .run(
            "product",
            app.edge.downstream.catalog.clone().get_product(request),
        )
        .await?
        .product;
    let found = required(found, "product")?;
    if found.status != catalog::ProductStatus::Published as i32 {
        return Err(not_found());
    }
    let available = availability(&app, &ctx, vec![found.sku.clone()]).await?;
    let available = available.get(&found.sku).copied().unwrap_or(0);
    Ok(Json(product(found, available)?))
}

/// What is available of each sku, in one call; a sku never stocked is absent.
async fn availability(app: &App, ctx: &Ctx, skus: Vec<String>) -> Result<HashMap<String, u64>, Problem> {
    if skus.is_empty() {
        return Ok(HashMap::new());
    }
    let request = ctx.call.request(inventory::BatchGetStockItemsRequest { skus });
    let items = ctx
        .run(
            "stock item",
            app.edge
                .downstream
                .inventory
                .clone()
                .batch_get_stock_items(request),
        )
        .await?;
    Ok(items
        .stock_items
        .into_iter()
        .map(|item| (item.sku, item.available))
        .collect())
}

fn product(p: catalog::Product, available: u64) -> Result<Product, Problem> {
    Ok(Product {
        id: uuid(&p.id)?,
        sku: p.sku,
        name: p.name,
        description: p.description,
        price: required(p.price, "price")?.into(),
        available,
    })
}
