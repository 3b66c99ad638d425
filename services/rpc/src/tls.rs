//! TLS between Strata processes (rustls, through tonic), an option beside the
//! service token.
//!
//! - A server given a certificate and key ([`ServerTls`]) serves only TLS. Given
//!   a client CA as well, it asks every caller for a certificate, and a call
//!   without one signed by that CA is refused with UNAUTHENTICATED (health and
//!   reflection stay open to orchestrators unless `--protect-health`, as with
//!   the token). A certificate signed by another CA fails the handshake.
//! - A caller given a CA ([`ClientTls`]) trusts servers whose certificate that
//!   CA signed, and presents its own certificate when given one. An address
//!   `https://…` is called over TLS, `http://…` in plain text; a data service
//!   serving TLS registers itself in etcd as `https://…`; with TLS settings,
//!   the endpoints a `dns://host:port` name resolves to are called over TLS
//!   and must present a certificate for `host`.
//!
//! Files are PEM. They are read and checked when the process starts, so that a
//! wrong path or a malformed file stops it at once with the setting named.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The environment variable of the CA a caller trusts (the edges' `--tls-ca`).
pub const CA_VAR: &str = "STRATA_TLS_CA";

/// Why TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificates or key are not usable PEM, or do not belong together.
    #[error("not a usable certificate and key: {0}")]
    Invalid(String),
    /// A certificate without its key, or the other way round.
    #[error("a certificate needs its key, and a key its certificate")]
    Unpaired,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// What a server serves TLS with.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: ServerTlsConfig,
    verifies_clients: bool,
}

impl ServerTls {
    /// TLS with `cert` (PEM, the chain) and `key` (PEM); with `client_ca`,
    /// callers must present a certificate it signed.
    ///
    /// # Errors
    /// When the PEM does not hold a usable certificate and key.
    pub fn from_pem(cert: &[u8], key: &[u8], client_ca: Option<&[u8]>) -> Result<Self, TlsError> {
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = client_ca {
            certificates("the client CA", ca)?;
            // Optional at the handshake, so that health and reflection can stay
            // open; every other call without one is refused by the admission
            // layer. A certificate that is presented is always verified.
            config = config
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(true);
        }
        // Checked now rather than when serving begins.
        tonic::transport::Server::builder()
            .tls_config(config.clone())
            .map_err(|e| TlsError::Invalid(crate::error_chain(&e)))?;
        Ok(Self {
            config,
            verifies_clients: client_ca.is_some(),
        })
    }

    /// [`Self::from_pem`] with the PEM read from files.
    ///
    /// # Errors
    /// When a file cannot be read or does not hold what it should.
    pub fn from_files(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, TlsError> {
        let client_ca = client_ca.map(read).transpose()?;
        Self::from_pem(&read(cert)?, &read(key)?, client_ca.as_deref())
    }

    /// Whether callers must present a certificate.
    #[must_use]
    pub fn verifies_clients(&self) -> bool {
        self.verifies_clients
    }

    pub(crate) fn config(&self) -> ServerTlsConfig {
        self.config.clone()
    }
}

/// What a caller trusts, and the certificate it presents.
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: ClientTlsConfig,
}

impl ClientTls {
    /// Trusts servers whose certificate `ca` (PEM) signed; presents `identity`
    /// (certificate chain and key, PEM) when given.
    ///
    /// # Errors
    /// When the PEM is not usable.
    pub fn from_pem(ca: &[u8], identity: Option<(&[u8], &[u8])>) -> Result<Self, TlsError> {
        certificates("the CA", ca)?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some((cert, key)) = identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        // Checked now rather than on the first call.
        tonic::transport::Endpoint::from_static("https://localhost")
            .tls_config(config.clone())
            .map_err(|e| TlsError::Invalid(crate::error_chain(&e)))?;
        Ok(Self { config })
    }

    /// [`Self::from_pem`] with the PEM read from files.
    ///
    /// # Errors
    /// When a file cannot be read, does not hold what it should, or a
    /// certificate comes without its key (or a key without its certificate).
    pub fn from_files(ca: &Path, cert: Option<&Path>, key: Option<&Path>) -> Result<Self, TlsError> {
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            (None, None) => None,
            _ => return Err(TlsError::Unpaired),
        };
        let ca = read(ca)?;
        Self::from_pem(&ca, identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())))
    }

    /// The same settings, verifying that a server's certificate names `host`
    /// whatever address it is reached at (endpoints found by DNS).
    #[must_use]
    pub fn for_name(&self, host: &str) -> Self {
        Self {
            config: self.config.clone().domain_name(host),
        }
    }

    pub(crate) fn config(&self) -> ClientTlsConfig {
        self.config.clone()
    }
}

/// Checks that `pem` holds certificates, and only well-formed ones: tonic
/// would take a file without any as trusting nothing, and say so only when a
/// call fails.
fn certificates(what: &str, pem: &[u8]) -> Result<(), TlsError> {
    use rustls_pki_types::{CertificateDer, pem::PemObject as _};
    let mut found = 0;
    for certificate in CertificateDer::pem_slice_iter(pem) {
        certificate.map_err(|e| TlsError::Invalid(format!("{what}: {e}")))?;
        found += 1;
    }
    if found == 0 {
        return Err(TlsError::Invalid(format!(
            "{what}: no PEM certificate (-----BEGIN CERTIFICATE-----) found"
        )));
    }
    Ok(())
}

/// Whether the connection a request came on presented a client certificate
/// (verified by the handshake against the client CA).
pub(crate) fn has_client_certificate<B>(request: &http::Request<B>) -> bool {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .is_some_and(|certs| !certs.is_empty())
}
