//! The gRPC adapter: serves `strata.catalog.v1.ProductService`, the context's only
//! RPC surface. Requests are parsed into validated domain values here (every
//! violation named by field), results are converted back here, and errors leave
//! through the kernel's one mapping to `tonic::Status`. No other module sees
//! prost types.

use strata_kernel::{
    AggregateRoot, Error, FieldViolation,
    error::Violations,
    grpc::{self, timestamp},
    paging,
};
use strata_proto::{catalog::v1 as pb, r#type::v1 as pb_type};
use strata_store::StoredEvent;
use tonic::{Request, Response, Status};

use crate::domain::{Description, Money, Product, ProductEvent, ProductId, ProductName, ProductStatus, Sku};
use crate::repository::ProductQuery;
use crate::service::{Catalog, NewProduct};

use strata_kernel::paging::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

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
        let sku = violations.check(Sku::parse(&request.sku));
        let name = violations.check(ProductName::parse(&request.name));
        let description = violations.check(Description::parse(&request.description));
        let price = money(&mut violations, request.price.as_ref());
        let fingerprint = (
            sku.as_ref().map(Sku::as_str),
            name.as_ref().map(ProductName::as_str),
            description.as_ref().map(Description::as_str),
            price.map(|p| (p.currency().to_string(), p.amount_minor())),
        );
        let meta = violations.check_all(grpc::command_meta(
            "CreateProduct",
            &request.request_id,
            None,
            &fingerprint,
        ));
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

    async fn batch_get_products(
        &self,
        request: Request<pb::BatchGetProductsRequest>,
    ) -> Result<Response<pb::BatchGetProductsResponse>, Status> {
        let ids = batch_ids(&request.get_ref().ids)?;
        let products = self.catalog.get_many(&ids).await?;
        Ok(Response::new(pb::BatchGetProductsResponse {
            products: products.iter().map(to_proto).collect(),
        }))
    }

    async fn list_products(
        &self,
        request: Request<pb::ListProductsRequest>,
    ) -> Result<Response<pb::ListProductsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let limit = violations.check(paging::page_size(
            request.page_size,
            DEFAULT_PAGE_SIZE,
            MAX_PAGE_SIZE,
        ));
        let status = violations.check(status_filter(request.status));
        let after = match status {
            Some(status) => violations.check(decode_token(&request.page_token, status)),
            None => None,
        };
        let query = violations.finish(|| {
            Some(ProductQuery {
                status: status?,
                after: after?,
                limit: limit?,
            })
        })?;
        let status = query.status;
        let page = self.catalog.list(query).await?;
        Ok(Response::new(pb::ListProductsResponse {
            products: page.products.iter().map(to_proto).collect(),
            next_page_token: page
                .next_after
                .map(|after| paging::encode_page_token(&status_bytes(status), after.as_uuid().as_bytes()))
                .unwrap_or_default(),
        }))
    }

    async fn update_product_details(
        &self,
        request: Request<pb::UpdateProductDetailsRequest>,
    ) -> Result<Response<pb::UpdateProductDetailsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = violations.check(ProductId::parse("id", &request.id));
        if request.name.is_none() && request.description.is_none() {
            violations.push(FieldViolation::new(
                "name",
                "set name, description or both: an update must change something",
            ));
        }
        let name = request
            .name
            .as_deref()
            .map(|name| violations.check(ProductName::parse(name)));
        let description = request
            .description
            .as_deref()
            .map(|description| violations.check(Description::parse(description)));
        let fingerprint = (
            id.map(|id| id.to_string()),
            name.as_ref().map(|n| n.as_ref().map(ProductName::as_str)),
            description.as_ref().map(|d| d.as_ref().map(Description::as_str)),
        );
        let meta = violations.check_all(grpc::command_meta(
            "UpdateProductDetails",
            &request.request_id,
            request.expected_version,
            &fingerprint,
        ));
        let (id, meta, name, description) = violations.finish(|| {
            // A detail not given stays `None`; one given but invalid was recorded.
            let name = match name {
                Some(name) => Some(name?),
                None => None,
            };
            let description = match description {
                Some(description) => Some(description?),
                None => None,
            };
            Some((id?, meta?, name, description))
        })?;
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
        let price = money(&mut violations, request.price.as_ref());
        let fingerprint = (
            id.map(|id| id.to_string()),
            price.map(|p| (p.currency().to_string(), p.amount_minor())),
        );
        let meta = violations.check_all(grpc::command_meta(
            "ChangePrice",
            &request.request_id,
            request.expected_version,
            &fingerprint,
        ));
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
        let (id, meta) = grpc::id_and_meta(
            "PublishProduct",
            &request.id,
            &request.request_id,
            request.expected_version,
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
        let (id, meta) = grpc::id_and_meta(
            "RetireProduct",
            &request.id,
            &request.request_id,
            request.expected_version,
        )?;
        let product = self.catalog.retire(&meta, id).await?;
        Ok(Response::new(pb::RetireProductResponse {
            product: Some(to_proto(&product)),
        }))
    }

    type StreamEventsStream = strata_store::GrpcEvents<pb::StreamEventsResponse>;

    async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let request = request.into_inner();
        let events = self
            .catalog
            .events(request.after_position, request.follow)
            .await?;
        Ok(Response::new(strata_store::grpc_events(events, event_to_proto)))
    }
}

/// The most ids one `BatchGetProducts` takes.
const MAX_BATCH: usize = 100;

/// The ids of a batch read: 1 to 100, each a UUID (violations name `ids[i]`).
fn batch_ids(raw: &[String]) -> Result<Vec<ProductId>, Error> {
    let mut violations = Violations::new();
    if raw.is_empty() {
        violations.push(FieldViolation::new("ids", "is required: give 1 to 100 ids"));
    }
    if raw.len() > MAX_BATCH {
        violations.push(FieldViolation::new(
            "ids",
            format!("must hold at most {MAX_BATCH} ids, not {}", raw.len()),
        ));
    }
    let ids: Vec<_> = raw
        .iter()
        .take(MAX_BATCH)
        .enumerate()
        .map(|(i, id)| violations.check(ProductId::parse(&format!("ids[{i}]"), id)))
        .collect();
    violations.finish(|| ids.into_iter().collect())
}

/// A required `price` field; violations are named `price.…`.
fn money(violations: &mut Violations, price: Option<&pb_type::Money>) -> Option<Money> {
    grpc::money(
        violations,
        "price",
        price.map(|p| (p.currency_code.as_str(), p.amount_minor)),
    )
}

/// What a `page_token` stands for: the last product of the previous page,
/// bound to the status filter it was listed with.
fn status_bytes(status: Option<ProductStatus>) -> [u8; 1] {
    [match status {
        None => 0,
        Some(ProductStatus::Draft) => 1,
        Some(ProductStatus::Published) => 2,
        Some(ProductStatus::Retired) => 3,
    }]
}

fn decode_token(raw: &str, status: Option<ProductStatus>) -> Result<Option<ProductId>, FieldViolation> {
    match paging::decode_page_token(raw, &status_bytes(status))? {
        None => Ok(None),
        Some(cursor) => uuid::Uuid::from_slice(&cursor)
            .map(|id| Some(ProductId::from_uuid(id)))
            .map_err(|_| FieldViolation::new("page_token", "is not a token this service returned")),
    }
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
        price: Some(pb_type::Money::new(
            price.currency().as_str(),
            price.amount_minor(),
        )),
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

fn event_to_proto(stored: StoredEvent) -> Result<pb::StreamEventsResponse, Error> {
    use pb::stream_events_response::Event;
    let event: ProductEvent = serde_json::from_value(stored.payload).map_err(|e| {
        Error::Internal(
            format!(
                "event {} ({}) does not read back: {e}",
                stored.position, stored.event_type
            )
            .into(),
        )
    })?;
    let event = match event {
        ProductEvent::Created {
            sku,
            name,
            description,
            price_minor,
            currency,
        } => Event::ProductCreated(pb::ProductCreated {
            sku,
            name,
            description,
            price: Some(pb_type::Money::new(&currency, price_minor)),
        }),
        ProductEvent::DetailsUpdated { name, description } => {
            Event::ProductDetailsUpdated(pb::ProductDetailsUpdated { name, description })
        }
        ProductEvent::PriceChanged {
            price_minor,
            currency,
        } => Event::ProductPriceChanged(pb::ProductPriceChanged {
            price: Some(pb_type::Money::new(&currency, price_minor)),
        }),
        ProductEvent::Published => Event::ProductPublished(pb::ProductPublished {}),
        ProductEvent::Retired => Event::ProductRetired(pb::ProductRetired {}),
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
    fn page_tokens_carry_the_last_id_and_their_filter() {
        let after = ProductId::generate();
        let published = Some(ProductStatus::Published);
        let token = paging::encode_page_token(&status_bytes(published), after.as_uuid().as_bytes());
        assert_eq!(decode_token(&token, published), Ok(Some(after)));
        assert_eq!(decode_token(&token, None).unwrap_err().field(), "page_token");
        let short = paging::encode_page_token(&status_bytes(published), b"abc");
        assert_eq!(decode_token(&short, published).unwrap_err().field(), "page_token");
    }
}
