//! The first staff account, from configuration: `STRATA_ADMIN_EMAIL` and
//! `STRATA_ADMIN_PASSWORD`, registered at start (idempotently: an account that
//! exists is left as it is). In dev mode without them, credentials are
//! generated once, kept in `<data dir>/dev-admin.json` and printed at start.

use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use strata_edge::{Edge, config::EdgeFlags, dev};
use strata_proto::identity::v1 as identity;
use strata_rpc::client::Call;
use tonic::Code;

/// The dev staff account's email.
pub const DEV_EMAIL: &str = "admin@strata.dev";

/// A staff account to make sure of.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Admin {
    /// Its email.
    pub email: String,
    /// Its password.
    pub password: String,
    #[serde(skip)]
    dev: bool,
}

impl Admin {
    /// The account configuration names, if any.
    ///
    /// # Errors
    /// When only one of email and password is set, or the dev file is unreadable.
    pub fn from_config(flags: &EdgeFlags) -> anyhow::Result<Option<Self>> {
        let password =
            strata_rpc::client::setting_or_file("STRATA_ADMIN_PASSWORD", |var| std::env::var(var).ok())
                .map_err(anyhow::Error::msg)?;
        match (std::env::var("STRATA_ADMIN_EMAIL").ok(), password) {
            (Some(email), Some(password)) => Ok(Some(Self {
                email,
                password,
                dev: false,
            })),
            (Some(_), None) | (None, Some(_)) => {
                anyhow::bail!(
                    "STRATA_ADMIN_EMAIL and STRATA_ADMIN_PASSWORD (or STRATA_ADMIN_PASSWORD_FILE) go together: set both or neither"
                )
            }
            (None, None) if flags.dev => {
                let file = flags.data_dir.join("dev-admin.json");
                let kept = dev::kept_secret(&file, || {
                    let admin = Self {
                        email: DEV_EMAIL.to_owned(),
                        password: dev::random_hex(12)?,
                        dev: true,
                    };
                    Ok(serde_json::to_string(&admin)?)
                })?;
                let admin: Self = serde_json::from_str(&kept)
                    .with_context(|| format!("{} is not readable", file.display()))?;
                Ok(Some(Self { dev: true, ..admin }))
            }
            (None, None) => {
                tracing::warn!(
                    "no STRATA_ADMIN_EMAIL / STRATA_ADMIN_PASSWORD: no staff account is registered at start"
                );
                Ok(None)
            }
        }
    }
}

/// Registers `admin` with identity, retrying until identity answers.
pub async fn register(edge: Edge, admin: Admin) {
    let mut pause = Duration::from_millis(200);
    loop {
        let call = Call::new(
            "backoffice/admin",
            Duration::from_secs(10),
            Duration::from_secs(5),
        );
        let request = call.request(identity::RegisterAccountRequest {
            request_id: format!("backoffice/admin/{}", admin.email),
            email: admin.email.clone(),
            password: admin.password.clone(),
            display_name: "Staff".to_owned(),
            roles: vec![identity::Role::Staff as i32, identity::Role::Admin as i32],
        });
        match call
            .run(edge.downstream.identity.clone().register_account(request))
            .await
        {
            Ok(_) => break,
            Err(status) if matches!(status.code(), Code::AlreadyExists) => break,
            Err(status) if matches!(status.code(), Code::InvalidArgument | Code::PermissionDenied) => {
                // Neither passes by retrying: a setting to fix (the account's,
                // or this service's credential, which must be backoffice's).
                tracing::error!(
                    code = ?status.code(),
                    message = status.message(),
                    "the staff account is refused; none is registered"
                );
                return;
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "cannot register the staff account yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::info!(email = %admin.email, "the staff account is registered");
    if admin.dev {
        // The password stays in its 0600 file: this line goes to logs that
        // others may read.
        println!(
            "backoffice dev staff account: {} (its password is in {})",
            admin.email,
            edge.flags.data_dir.join("dev-admin.json").display()
        );
    }
}
