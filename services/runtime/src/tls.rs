//! TLS for the services' own connections: rustls with the ring provider, the system's
//! root certificates, and optionally a PEM bundle of a private CA's roots. Kafka's TLS is
//! librdkafka's (OpenSSL), configured through `[kafka.properties]`.

use std::path::{Path, PathBuf};

/// Why a CA bundle cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("read CA bundle {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("CA bundle {path} holds no PEM certificate")]
    Empty { path: PathBuf },
    #[error("CA bundle {path}: {source}")]
    Parse { path: PathBuf, source: reqwest::Error },
}

/// Makes ring rustls's process-wide provider. Idempotent: every client builder calls it,
/// so tests that build clients without `launch` get it too.
pub fn install_provider() {
    // Err only when a provider is installed already, which is the state wanted.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The root certificates of a PEM bundle, read and parsed once at start-up.
#[derive(Clone)]
pub struct CaBundle {
    path: PathBuf,
    certificates: Vec<reqwest::Certificate>,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle").field("path", &self.path).field("certificates", &self.certificates.len()).finish()
    }
}

impl CaBundle {
    pub fn load(path: &Path) -> Result<Self, CaError> {
        let pem = std::fs::read(path).map_err(|source| CaError::Read { path: path.to_owned(), source })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|source| CaError::Parse { path: path.to_owned(), source })?;
        if certificates.is_empty() {
            return Err(CaError::Empty { path: path.to_owned() });
        }
        Ok(Self { path: path.to_owned(), certificates })
    }

    /// `builder` trusting these roots beside the system's.
    pub fn trusted_by(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        self.certificates.iter().cloned().fold(builder, reqwest::ClientBuilder::add_root_certificate)
    }
}

/// A config's optional `ca_file`, loaded for validation: the error names `key`.
pub fn validate_ca(key: &str, path: Option<&Path>, errors: &mut Vec<crate::config::ConfigError>) {
    if let Some(Err(error)) = path.map(CaBundle::load) {
        errors.push(crate::config::ConfigError::rule(key, error.to_string()));
    }
}
