//! TLS material for the tap: `[tap.tls]` (clients connect over TLS) and the roots trusted
//! for an `https://` upstream. Files are read and parsed once, when the config is
//! validated, into the rustls configs the tap serves and forwards with; a bad file is a
//! config error naming its key, reported with the others before anything starts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, ServerConfig};
use serde::Deserialize;
use shadowdiff_runtime::config::ConfigError;
use shadowdiff_runtime::tls::CaBundle;

const CERT_KEY: &str = "tap.tls.cert_file";
const KEY_KEY: &str = "tap.tls.key_file";

/// `[tap.tls]`: clients connect over TLS (ALPN `h2` and `http/1.1`); plain HTTP and h2c
/// when the section is absent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListenerTls {
    /// PEM file with the server's certificate chain, leaf first.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1). Its contents
    /// are a secret: no error or log line quotes them.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(skip)]
    server: Loaded<Arc<ServerConfig>>,
}

impl ListenerTls {
    /// The parsed certificate and key as a rustls server config: read from the files on the
    /// first call (validation), the same value on every later one.
    pub(crate) fn server_config(&self) -> Result<Arc<ServerConfig>, Vec<ConfigError>> {
        self.server.get_or_load(|| match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => server_config(cert, key),
            (cert, key) => {
                let mut errors = Vec::new();
                if cert.is_none() {
                    errors.push(ConfigError::rule(CERT_KEY, "is required in [tap.tls]"));
                }
                if key.is_none() {
                    errors.push(ConfigError::rule(KEY_KEY, "is required in [tap.tls]"));
                }
                Err(errors)
            }
        })
    }
}

/// What the tap trusts for an `https://` upstream: the system's roots plus, optionally,
/// those of `tap.upstream_ca_file`.
#[derive(Debug, Clone, Default)]
pub(crate) struct UpstreamTls {
    client: Loaded<Arc<ClientConfig>>,
}

impl UpstreamTls {
    /// The rustls client config for the upstream, built on the first call (validation).
    pub(crate) fn client_config(&self, ca_file: Option<&CaBundle>) -> Result<Arc<ClientConfig>, Vec<ConfigError>> {
        self.client.get_or_load(|| client_config(ca_file))
    }
}

/// A value read from files once and kept, or the config errors that stood in its way.
#[derive(Clone)]
struct Loaded<T>(OnceLock<Result<T, Vec<ConfigError>>>);

impl<T> Default for Loaded<T> {
    fn default() -> Self {
        Self(OnceLock::new())
    }
}

impl<T: Clone> Loaded<T> {
    fn get_or_load(&self, load: impl FnOnce() -> Result<T, Vec<ConfigError>>) -> Result<T, Vec<ConfigError>> {
        self.0.get_or_init(load).clone()
    }
}

// The loaded value holds a private key: Debug says only whether it is there.
impl<T> std::fmt::Debug for Loaded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.0.get() {
            None => "not loaded",
            Some(Ok(_)) => "loaded",
            Some(Err(_)) => "invalid",
        };
        f.write_str(state)
    }
}

fn server_config(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, Vec<ConfigError>> {
    shadowdiff_runtime::tls::install_provider();
    let certs = certificates(CERT_KEY, cert_file);
    let key = private_key(key_file);
    let (certs, key) = match (certs, key) {
        (Ok(certs), Ok(key)) => (certs, key),
        (certs, key) => return Err([certs.err(), key.err()].into_iter().flatten().collect()),
    };
    let builder = ServerConfig::builder().with_no_client_auth();
    let signing_key =
        builder.crypto_provider().key_provider.load_private_key(key).map_err(|error| {
            vec![ConfigError::rule(KEY_KEY, format!("{}: unusable key: {error}", key_file.display()))]
        })?;
    let certified = CertifiedKey::new(certs, signing_key);
    match certified.keys_match() {
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            let message = format!("{}: does not match the certificate in {CERT_KEY}", key_file.display());
            return Err(vec![ConfigError::rule(KEY_KEY, message)]);
        }
        // A key type that cannot tell its public half is accepted, as rustls itself does.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(error) => {
            return Err(vec![ConfigError::rule(CERT_KEY, format!("{}: {error}", cert_file.display()))]);
        }
    }
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Every certificate of a PEM file; errors quote the file, which holds nothing secret.
fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|error| ConfigError::rule(key, format!("{}: {error}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::rule(key, format!("{}: holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

/// The first private key of a PEM file. pem's errors can quote the lines they trip over,
/// so only their kind is reported.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| {
        let why = match error {
            pem::Error::Io(error) => error.to_string(),
            pem::Error::NoItemsFound => "holds no PEM private key".to_owned(),
            _ => "is not a valid PEM private key".to_owned(),
        };
        ConfigError::rule(KEY_KEY, format!("{}: {why}", path.display()))
    })
}

fn client_config(ca_file: Option<&CaBundle>) -> Result<Arc<ClientConfig>, Vec<ConfigError>> {
    shadowdiff_runtime::tls::client_config(ca_file)
        .map_err(|error| vec![ConfigError::rule("tap.upstream", format!("{error} (tap.upstream_ca_file)"))])
}
