use strata_kernel::{AggregateRoot, Error};

use super::{Product, ProductId, ProductStatus};

/// Why the Product aggregate refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    /// A retired product never changes again.
    #[error("product is retired and can no longer change")]
    Retired(ProductId),
    /// Only a draft can be published.
    #[error("only a draft product can be published; this one is {status}")]
    NotDraft {
        /// The product.
        id: ProductId,
        /// Its current status.
        status: ProductStatus,
    },
}

impl From<ProductError> for Error {
    fn from(error: ProductError) -> Self {
        let (id, reason) = match &error {
            ProductError::Retired(id) => (id, "PRODUCT_RETIRED"),
            ProductError::NotDraft { id, .. } => (id, "PRODUCT_NOT_DRAFT"),
        };
        Self::FailedPrecondition {
            kind: Product::KIND,
            id: id.to_string(),
            reason,
            message: error.to_string(),
            metadata: Vec::new(),
        }
    }
}
