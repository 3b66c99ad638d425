//! Who may call the data service, and what: the one place where the
//! application services' credentials are scoped. Each caller presents a token
//! of its own, `STRATA_SERVICE_TOKEN_<NAME>` here (or `…_FILE`), which is the
//! `STRATA_SERVICE_TOKEN` of that caller's process; the admission layer of
//! `strata_rpc` enforces the scope (PERMISSION_DENIED outside it) and hands
//! it to the services for the grants they check themselves.
//!
//! `STRATA_SERVICE_TOKEN` on the data service stays a credential for
//! everything, for deployments with one shared secret.
//!
//! The storefront faces the internet, so its scope is exactly what it calls:
//! reads, the checkout saga's commands, sign-up and sign-in. It may register
//! customers only (identity checks [`strata_identity::GRANT_ROLES`]), and may
//! not suspend accounts, change products, prices or stock, or ship orders.

use strata_rpc::admission::Scope;

/// One kind of caller and what it may do.
#[derive(Debug, Clone, Copy)]
pub struct CallerPolicy {
    /// Its name, lower case: `STRATA_SERVICE_TOKEN_<NAME>` holds its token.
    pub name: &'static str,
    /// What it may do.
    pub scope: Scope,
}

/// What the storefront calls, and nothing else.
const STOREFRONT: &[&str] = &[
    "strata.catalog.v1.ProductService/ListProducts",
    "strata.catalog.v1.ProductService/GetProduct",
    "strata.catalog.v1.ProductService/BatchGetProducts",
    "strata.inventory.v1.StockItemService/BatchGetStockItems",
    "strata.inventory.v1.StockItemService/Reserve",
    "strata.inventory.v1.StockItemService/ConfirmReservation",
    "strata.inventory.v1.StockItemService/ReleaseReservation",
    "strata.ordering.v1.OrderService/PlaceOrder",
    "strata.ordering.v1.OrderService/ConfirmOrder",
    "strata.ordering.v1.OrderService/CancelOrder",
    "strata.ordering.v1.OrderService/GetOrder",
    "strata.ordering.v1.OrderService/ListOrders",
    "strata.ordering.v1.OrderService/StreamEvents",
    "strata.identity.v1.AccountService/RegisterAccount",
    "strata.identity.v1.AccountService/VerifyCredentials",
    "strata.identity.v1.AccountService/StreamEvents",
];

/// Every kind of caller the data service knows.
pub const CALLERS: &[CallerPolicy] = &[
    CallerPolicy {
        name: "storefront",
        scope: Scope::Only(STOREFRONT),
    },
    // Staff's service: the shop's management, roles included.
    CallerPolicy {
        name: "backoffice",
        scope: Scope::Everything,
    },
];

/// The variable holding `name`'s token.
#[must_use]
pub fn token_var(name: &str) -> String {
    format!(
        "{}_{}",
        strata_rpc::client::SERVICE_TOKEN_VAR,
        name.to_ascii_uppercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_storefront_may_shop_but_not_manage() {
        let storefront = CALLERS.iter().find(|c| c.name == "storefront").unwrap().scope;
        for allowed in [
            "strata.catalog.v1.ProductService/ListProducts",
            "strata.inventory.v1.StockItemService/Reserve",
            "strata.identity.v1.AccountService/RegisterAccount",
        ] {
            assert!(storefront.allows(allowed), "{allowed}");
        }
        for refused in [
            "strata.identity.v1.AccountService/SuspendAccount",
            "strata.identity.v1.AccountService/ChangePassword",
            "strata.catalog.v1.ProductService/ChangePrice",
            "strata.inventory.v1.StockItemService/ReceiveStock",
            "strata.ordering.v1.OrderService/ShipOrder",
            strata_identity::GRANT_ROLES,
        ] {
            assert!(!storefront.allows(refused), "{refused}");
        }
        assert_eq!(token_var("storefront"), "STRATA_SERVICE_TOKEN_STOREFRONT");
    }
}
