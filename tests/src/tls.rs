//! Certificates made at test time: a private CA and a server certificate it signs for
//! 127.0.0.1, as PEM files, and an https backend that answers with them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A CA and a server certificate for `127.0.0.1` it signed, written as PEM files in a
/// directory of their own (removed on drop).
#[derive(Debug)]
pub struct TestCa {
    dir: PathBuf,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    pub fn new() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap_or_else(|e| panic!("{e}"));
        let server_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .and_then(|params| params.signed_by(&server_key, &ca))
            .unwrap_or_else(|e| panic!("{e}"));
        let dir = std::env::temp_dir().join(crate::unique("test-ca"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap_or_else(|e| panic!("{e}"));
            path
        };
        Self {
            ca_file: write("ca.pem", ca.pem()),
            cert_file: write("server.pem", server.pem()),
            key_file: write("server.key", server_key.serialize_pem()),
            dir,
        }
    }

    /// The server side of a TLS connection with this CA's server certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        shadowdiff_runtime::tls::install_provider();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert_file)
            .and_then(Iterator::collect)
            .unwrap_or_else(|e| panic!("{e}"));
        let key = PrivateKeyDer::from_pem_file(&self.key_file).unwrap_or_else(|e| panic!("{e}"));
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap_or_else(|e| panic!("{e}"));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Serves `app` over https with this CA's certificate until the test ends.
    pub async fn serve(&self, app: axum::Router) -> SocketAddr {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server_config());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else { return };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                    let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                });
            }
        });
        addr
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
