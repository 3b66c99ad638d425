//! Certificates for TLS tests: a CA made on the spot, and certificates it
//! signs, as PEM (what operators give Strata's `--tls-*` settings).

use std::path::{Path, PathBuf};

/// A CA, and the certificates it signs.
#[derive(Debug)]
pub struct TestCa {
    /// The CA's certificate (PEM).
    pub pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A new CA named `name`.
    ///
    /// # Panics
    /// When rcgen cannot make it (never with these parameters).
    #[must_use]
    #[allow(clippy::unwrap_used)]
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            pem,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses) and its key, PEM.
    ///
    /// # Panics
    /// When a name is not usable in a certificate.
    #[must_use]
    #[allow(clippy::unwrap_used)]
    pub fn sign(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes the CA's certificate as `ca.pem` and a certificate for `names`
    /// as `<stem>.pem` with its key `<stem>.key` into `dir`; returns the three
    /// paths (CA, certificate, key).
    ///
    /// # Panics
    /// When `dir` cannot be written.
    #[must_use]
    #[allow(clippy::unwrap_used)]
    pub fn write(&self, dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
        let (cert, key) = self.sign(names);
        let paths = (
            dir.join("ca.pem"),
            dir.join(format!("{stem}.pem")),
            dir.join(format!("{stem}.key")),
        );
        std::fs::write(&paths.0, &self.pem).unwrap();
        std::fs::write(&paths.1, cert).unwrap();
        std::fs::write(&paths.2, key).unwrap();
        paths
    }
}
