//! TLS for the services' own connections: rustls with the aws-lc-rs provider, the system's
//! root certificates, and optionally a PEM bundle of a private CA's roots. Kafka's TLS is
//! librdkafka's (OpenSSL), configured through `[kafka.properties]`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why a CA bundle cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("CA bundle {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("CA bundle {path} holds no PEM certificate")]
    Empty { path: PathBuf },
}

/// No root certificate to check a server against.
#[derive(Debug, thiserror::Error)]
#[error("no root certificates to trust for https: none in the system's store ({0} error(s) reading it) and no ca_file")]
pub struct NoRoots(usize);

/// Makes aws-lc-rs rustls's process-wide provider. rustls picks it by itself while it is
/// the only one compiled in; this keeps server configs working should a dependency ever
/// enable another. Idempotent.
pub fn install_provider() {
    // Err only when a provider is installed already, which is the state wanted.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The root certificates of a PEM bundle (a private CA's), read and parsed once, with the
/// config that names them.
#[derive(Clone)]
pub struct CaBundle {
    path: PathBuf,
    certificates: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle").field("path", &self.path).field("certificates", &self.certificates.len()).finish()
    }
}

impl CaBundle {
    pub fn load(path: &Path) -> Result<Self, CaError> {
        let unreadable = |reason: String| CaError::Unreadable { path: path.to_owned(), reason };
        let certificates = CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|error| unreadable(error.to_string()))?;
        if certificates.is_empty() {
            return Err(CaError::Empty { path: path.to_owned() });
        }
        Ok(Self { path: path.to_owned(), certificates })
    }

    /// `builder` trusting these roots beside the system's.
    pub fn trusted_by(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        self.certificates
            .iter()
            .filter_map(|der| reqwest::Certificate::from_der(der).ok())
            .fold(builder, reqwest::ClientBuilder::add_root_certificate)
    }
}

/// A rustls client config trusting the system's roots and `extra`'s.
pub fn client_config(extra: Option<&CaBundle>) -> Result<Arc<rustls::ClientConfig>, NoRoots> {
    install_provider();
    let mut roots = rustls::RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    // A system certificate rustls cannot use is skipped, as curl and browsers do.
    roots.add_parsable_certificates(system.certs);
    if let Some(extra) = extra {
        roots.add_parsable_certificates(extra.certificates.iter().cloned());
    }
    if roots.is_empty() {
        return Err(NoRoots(system.errors.len()));
    }
    // ALPN stays empty: the HTTP client sets it from the versions it speaks.
    Ok(Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth()))
}

/// A config's `ca_file`: the bundle is read and parsed when the config is, so a missing or
/// bad file is reported with the other config errors, by key, before anything starts.
impl<'de> serde::Deserialize<'de> for CaBundle {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let path = PathBuf::deserialize(deserializer)?;
        Self::load(&path).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_is_read_when_the_config_is() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)] // read through Debug only
        struct Section {
            ca_file: CaBundle,
        }
        let missing = toml::from_str::<Section>("ca_file = \"/nonexistent/ca.pem\"").unwrap_err();
        assert!(missing.to_string().contains("CA bundle /nonexistent/ca.pem: "), "{missing}");
        let dir = std::env::temp_dir().join(format!("ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = toml::from_str::<Section>(&format!("ca_file = {:?}", empty.display().to_string())).unwrap_err();
        assert!(error.to_string().contains("holds no PEM certificate"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
