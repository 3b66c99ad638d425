//! Generated gRPC code for every Strata context, one module per versioned proto
//! package (`strata.catalog.v1` → [`catalog::v1`]), and the encoded file
//! descriptor set that the servers publish through gRPC reflection.
//!
//! Only a context's gRPC adapter and application services use these types; the
//! pure domain modules never see them.

#![allow(missing_docs, unreachable_pub, clippy::all)]

/// `strata.type.v1`: value types every context shares ([`r#type::v1::Money`]).
pub mod r#type {
    pub mod v1 {
        tonic::include_proto!("strata.r#type.v1");

        impl Money {
            /// `amount_minor` minor units of `currency` (ISO 4217).
            #[must_use]
            pub fn new(currency: &str, amount_minor: i64) -> Self {
                Self {
                    currency_code: currency.to_owned(),
                    amount_minor,
                }
            }
        }
    }
}

/// `strata.catalog.v1`: the catalog context's `ProductService`.
pub mod catalog {
    pub mod v1 {
        tonic::include_proto!("strata.catalog.v1");
    }
}

/// `strata.identity.v1`: the identity context's `AccountService`.
pub mod identity {
    pub mod v1 {
        tonic::include_proto!("strata.identity.v1");
    }
}

/// `strata.inventory.v1`: the inventory context's `StockItemService`.
pub mod inventory {
    pub mod v1 {
        tonic::include_proto!("strata.inventory.v1");
    }
}

/// `strata.ordering.v1`: the ordering context's `OrderService`.
pub mod ordering {
    pub mod v1 {
        tonic::include_proto!("strata.ordering.v1");
    }
}

// `request_id_of`, generated from the descriptors by build.rs.
include!(concat!(env!("OUT_DIR"), "/strata_commands.rs"));

/// The encoded `FileDescriptorSet` of every Strata proto file (with imports),
/// for `tonic_reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/strata_descriptor.bin"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_known_by_their_request_id() {
        let create = catalog::v1::CreateProductRequest {
            request_id: "r-1".into(),
            ..Default::default()
        };
        assert_eq!(request_id_of(&create), Some("r-1"));
        let reserve = inventory::v1::ReserveRequest {
            request_id: "r-2".into(),
            ..Default::default()
        };
        assert_eq!(request_id_of(&reserve), Some("r-2"));
        assert_eq!(request_id_of(&catalog::v1::GetProductRequest::default()), None);
        assert_eq!(request_id_of(&ordering::v1::ListOrdersRequest::default()), None);
        assert_eq!(request_id_of(&"not a message"), None);
    }
}
