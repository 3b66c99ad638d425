//! The data services an application service calls: one client per context,
//! each on a channel made by `strata_rpc::client` (the single place channels
//! are made), and the readiness check that asks each one's health.

use strata_proto::{
    catalog::v1::{product_service_client::ProductServiceClient, product_service_server},
    identity::v1::{account_service_client::AccountServiceClient, account_service_server},
    inventory::v1::{stock_item_service_client::StockItemServiceClient, stock_item_service_server},
    ordering::v1::{order_service_client::OrderServiceClient, order_service_server},
};
use strata_rpc::client::{Call, Credentials, RpcChannel, ServiceToken, channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::config::EdgeFlags;

/// A client of each context's root service.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// Products.
    pub catalog: ProductServiceClient<RpcChannel>,
    /// Stock items.
    pub inventory: StockItemServiceClient<RpcChannel>,
    /// Orders.
    pub ordering: OrderServiceClient<RpcChannel>,
    /// Accounts.
    pub identity: AccountServiceClient<RpcChannel>,
    health: Vec<(&'static str, RpcChannel)>,
}

impl Downstream {
    /// Clients of the data services `flags` name, presenting the service
    /// credential of `STRATA_SERVICE_TOKEN` (and over TLS when `flags` say
    /// so); they connect on first use.
    ///
    /// # Errors
    /// When an address, the token or a TLS file is malformed (the message
    /// names its setting).
    pub fn new(flags: &EdgeFlags) -> anyhow::Result<Self> {
        let token = Credentials {
            token: ServiceToken::from_env()?,
            tls: flags.client_tls()?,
        };
        let limit = std::num::NonZeroU32::new(flags.downstream_calls_per_sec);
        let open = |flag: &str, address: &str| {
            let downstream = flag.trim_end_matches("-addr");
            let channel = channel(downstream, address, token.clone()).map_err(|e| {
                anyhow::anyhow!("--{flag} (STRATA_{}): {e}", flag.to_uppercase().replace('-', "_"))
            })?;
            Ok::<_, anyhow::Error>(match limit {
                Some(limit) => channel.rate_limited(downstream, limit),
                None => channel,
            })
        };
        let catalog = open("catalog-addr", &flags.catalog_addr)?;
        let inventory = open("inventory-addr", &flags.inventory_addr)?;
        let ordering = open("ordering-addr", &flags.ordering_addr)?;
        let identity = open("identity-addr", &flags.identity_addr)?;
        Ok(Self {
            catalog: ProductServiceClient::new(catalog.clone()),
            inventory: StockItemServiceClient::new(inventory.clone()),
            ordering: OrderServiceClient::new(ordering.clone()),
            identity: AccountServiceClient::new(identity.clone()),
            health: vec![
                (product_service_server::SERVICE_NAME, catalog),
                (stock_item_service_server::SERVICE_NAME, inventory),
                (order_service_server::SERVICE_NAME, ordering),
                (account_service_server::SERVICE_NAME, identity),
            ],
        })
    }

    /// The services that do not report SERVING (empty when all do), asked at once.
    pub async fn not_ready(&self, call: &Call) -> Vec<&'static str> {
        let checks: Vec<_> = self
            .health
            .iter()
            .map(|(service, channel)| health_check(service, channel.clone(), call.clone()))
            .collect();
        let mut down: Vec<&'static str> = futures_util::future::join_all(checks)
            .await
            .into_iter()
            .flatten()
            .collect();
        down.sort_unstable();
        down
    }
}

/// Whether some endpoint of `service` reports SERVING; its name when none
/// does. An endpoint answering NOT_SERVING (a replica shutting down, or whose
/// store does not answer) is not the whole downstream: its answer opens its
/// breaker (it carries `x-strata-not-serving`), so asking again reaches
/// another endpoint, until one serves or every breaker is open (refused at
/// once). Readiness is per downstream, not per endpoint asked.
async fn health_check(service: &'static str, channel: RpcChannel, call: Call) -> Option<&'static str> {
    for _ in 0..MOST_ENDPOINTS_ASKED {
        let request = call.request(HealthCheckRequest {
            service: service.to_owned(),
        });
        match call.run(HealthClient::new(channel.clone()).check(request)).await {
            Ok(answer) if answer.status == ServingStatus::Serving as i32 => return None,
            Ok(_) => {}
            Err(_) => return Some(service),
        }
    }
    Some(service)
}

/// The most endpoints of one downstream a readiness check asks before it
/// calls the downstream not ready.
const MOST_ENDPOINTS_ASKED: usize = 8;
