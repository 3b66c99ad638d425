//! The gRPC adapter: serves `strata.catalog.v1.ProductService`, the context's only
//! RPC surface. Requests are parsed into validated domain values here (every
//! violation named by field), results are converted back here, and errors leave
//! through the kernel's one mapping to `tonic::Status`. No other module sees
//! prost types.

use prost::Message;
use strata_kernel::{
    AggregateRoot, Error, FieldViolation, Fingerprint, RequestId, Version, error::Violations,
};
use strata_proto::catalog::v1 as pb;
use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use crate::domain::{Description, Money, Product, ProductId, ProductName, ProductStatus, Sku};
use crate::repository::ProductQuery;
use crate::service::{Catalog, CommandMeta, NewProduct};

/// Page size when the request gives none.
const DEFAULT_PAGE_SIZE: u32 = 50;
/// The largest page size accepted.
const MAX_PAGE_SIZE: u32 = 500;

/// `ProductService` over the catalog's use cases.
#[derive(Debug, Clone)]
pub struct ProductGrpc {
    catalog: Catalog,
}

impl ProductGrpc {
    /// Serves these use cases.
    #[must_use]
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog }
    }
}

#[tonic::async_trait]
impl pb::product_service_server::ProductService for ProductGrpc {
    async fn create_product(
        &self,
        request: Request<pb::CreateProductRequest>,
    ) -> Result<Response<pb::CreateProductResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let meta = violations.check(meta("CreateProduct", &request.request_id, None, &request));
        let sku = violations.check(Sku::parse(&request.sku));
        let name = violations.check(ProductName::parse(&request.name));
        let description = violations.check(Description::parse(&request.description));
        let price = money(&mut violations, request.price.as_ref());
        let (meta, new) = violations.finish(|| {
            Some((
                meta?,
                NewProduct {
                    sku: sku?,
                    name: name?,
                    description: description?,
                    price: price?,
                },
            ))
        })?;
        let product = self.catalog.create(&meta, new).await?;
        Ok(Response::new(pb::CreateProductResponse {
            product: Some(to_proto(&product)),
        }))
    }

    async fn get_product(
        &self,
        request: Request<pb::GetProductRequest>,
    ) -> Result<Response<pb::GetProductResponse>, Status> {
        let id = ProductId::parse("id", &request.get_ref().id).map_err(Error::from)?;
        let product = self.catalog.get(id).await?;
        Ok(Response::new(pb::GetProductResponse {
            product: Some(to_proto(&product)),
        }))
    }

    async fn list_products(
        &self,
        request: Request<pb::ListProductsRequest>,
    ) -> Result<Response<pb::ListProductsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let limit = violations.check(page_size(request.page_size));
        let after = violations.check(page_token(&request.page_token));
        let status = violations.check(status_filter(request.status));
        let query = violations.finish(|| {
            Some(ProductQuery {
                status: status?,
                after: after?,
                limit: limit?,
            })
        })?;
        let page = self.catalog.list(query).await?;
        Ok(Response::new(pb::ListProductsResponse {
            products: page.products.iter().map(to_proto).collect(),
            next_page_token: page.next_after.map(|id| id.to_string()).unwrap_or_default(),
        }))
    }

    async fn update_product_details(
        &self,
        request: Request<pb::UpdateProductDetailsRequest>,
    ) -> Result<Response<pb::UpdateProductDetailsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = violations.check(ProductId::parse("id", &request.id));
        let meta = violations.check(meta(
            "UpdateProductDetails",
            &request.request_id,
            request.expected_version,
            &request,
        ));
        let name = violations.check(ProductName::parse(&request.name));
        let description = violations.check(Description::parse(&request.description));
        let (id, meta, name, description) = violations.finish(|| Some((id?, meta?, name?, description?)))?;
        let product = self.catalog.update_details(&meta, id, name, description).await?;
        Ok(Response::new(pb::UpdateProductDetailsResponse {
            product: Some(to_proto(&product)),
        }))
    }

    async fn change_price(
        &self,
        request: Request<pb::ChangePriceRequest>,
    ) -> Result<Response<pb::ChangePriceResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = violations.check(ProductId::parse("id", &request.id));
        let meta = violations.check(meta(
            "ChangePrice",
            &request.request_id,
            request.expected_version,
            &request,
        ));
        let price = money(&mut violations, request.price.as_ref());
        let (id, meta, price) = violations.finish(|| Some((id?, meta?, price?)))?;
        let product = self.catalog.change_price(&meta, id, price).await?;
        Ok(Response::new(pb::ChangePriceResponse {
            product: Some(to_proto(&product)),
        }))
    }

    async fn publish_product(
        &self,
        request: Request<pb::PublishProductRequest>,
    ) -> Result<Response<pb::PublishProductResponse>, Status> {
        let request = request.into_inner();
        let (id, meta) = id_and_meta(
            "PublishProduct",
            &request.id,
            &request.request_id,
            request.expected_version,
            &request,
        )?;
        let product = self.catalog.publish(&meta, id).await?;
        Ok(Response::new(pb::PublishProductResponse {
            product: Some(to_proto(&product)),
        }))
    }

    async fn retire_product(
        &self,
        request: Request<pb::RetireProductRequest>,
    ) -> Result<Response<pb::RetireProductResponse>, Status> {
        let request = request.into_inner();
        let (id, meta) = id_and_meta(
            "RetireProduct",
            &request.id,
            &request.request_id,
            request.expected_version,
            &request,
        )?;
        let product = self.catalog.retire(&meta, id).await?;
        Ok(Response::new(pb::RetireProductResponse {
            product: Some(to_proto(&product)),
        }))
    }
}

/// The idempotency key, fingerprint and expected version of a command. The
/// fingerprint is the method name and the request's protobuf encoding, which is
/// deterministic for these messages (no maps).
fn meta(
    method: &str,
    request_id: &str,
    expected_version: Option<u64>,
    request: &impl Message,
) -> Result<CommandMeta, FieldViolation> {
    let request_id = RequestId::parse(request_id)?;
    let mut fingerprint = Vec::with_capacity(method.len() + 1 + request.encoded_len());
    fingerprint.extend_from_slice(method.as_bytes());
    fingerprint.push(0);
    request.encode_raw(&mut fingerprint);
    let expected_version = match expected_version {
        Some(0) => {
            return Err(FieldViolation::new(
                "expected_version",
                "must be at least 1 when given",
            ));
        }
        other => other.map(Version::new),
    };
    Ok(CommandMeta {
        request_id,
        fingerprint: Fingerprint::new(fingerprint),
        expected_version,
    })
}

/// For commands that carry nothing but the id and the command fields.
fn id_and_meta(
    method: &str,
    id: &str,
    request_id: &str,
    expected_version: Option<u64>,
    request: &impl Message,
) -> Result<(ProductId, CommandMeta), Error> {
    let mut violations = Violations::new();
    let id = violations.check(ProductId::parse("id", id));
    let meta = violations.check(meta(method, request_id, expected_version, request));
    violations.finish(|| Some((id?, meta?)))
}

/// A required `price` field; violations are named `price.…`.
fn money(violations: &mut Violations, price: Option<&strata_proto::r#type::v1::Money>) -> Option<Money> {
    let Some(price) = price else {
        violations.push(FieldViolation::new("price", "is required"));
        return None;
    };
    match Money::parse(&price.currency_code, price.amount_minor) {
        Ok(money) => Some(money),
        Err(errors) => {
            for violation in errors {
                violations.push(violation.nested_in("price"));
            }
            None
        }
    }
}

fn page_size(raw: i32) -> Result<u32, FieldViolation> {
    match u32::try_from(raw) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(size) if size <= MAX_PAGE_SIZE => Ok(size),
        _ => Err(FieldViolation::new("page_size", "must be between 0 and 500")),
    }
}

fn page_token(raw: &str) -> Result<Option<ProductId>, FieldViolation> {
    if raw.is_empty() {
        return Ok(None);
    }
    ProductId::parse("page_token", raw)
        .map(Some)
        .map_err(|_| FieldViolation::new("page_token", "is not a token this service returned"))
}

fn status_filter(raw: i32) -> Result<Option<ProductStatus>, FieldViolation> {
    match pb::ProductStatus::try_from(raw) {
        Ok(pb::ProductStatus::Unspecified) => Ok(None),
        Ok(pb::ProductStatus::Draft) => Ok(Some(ProductStatus::Draft)),
        Ok(pb::ProductStatus::Published) => Ok(Some(ProductStatus::Published)),
        Ok(pb::ProductStatus::Retired) => Ok(Some(ProductStatus::Retired)),
        Err(_) => Err(FieldViolation::new("status", "is not a known product status")),
    }
}

fn to_proto(product: &Product) -> pb::Product {
    let price = product.price();
    pb::Product {
        id: product.id().to_string(),
        sku: product.sku().as_str().to_owned(),
        name: product.name().as_str().to_owned(),
        description: product.description().as_str().to_owned(),
        price: Some(strata_proto::r#type::v1::Money {
            currency_code: price.currency().to_string(),
            amount_minor: price.amount_minor(),
        }),
        status: match product.status() {
            ProductStatus::Draft => pb::ProductStatus::Draft,
            ProductStatus::Published => pb::ProductStatus::Published,
            ProductStatus::Retired => pb::ProductStatus::Retired,
        }
        .into(),
        version: product.version().get(),
        create_time: Some(timestamp(product.created_at())),
        update_time: Some(timestamp(product.updated_at())),
    }
}

fn timestamp(at: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        // Always below 10^9, so it fits.
        nanos: i32::try_from(at.nanosecond()).unwrap_or(0),
    }
}
