//! The upstream client: hyper-util's pooled client over plain TCP, or over rustls for an
//! `https://` upstream. The TLS connector is only built for an https upstream, so the
//! plain path is the same client it always was, behind one predictable branch.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;

use crate::capture::Tee;

#[derive(Debug)]
pub(crate) enum UpstreamClient {
    Plain(Client<HttpConnector, Tee<Body>>),
    Tls(Client<HttpsConnector<HttpConnector>, Tee<Body>>),
}

impl UpstreamClient {
    /// A client that connects within `connect_timeout`, over TLS with `tls` when set.
    pub(crate) fn new(connect_timeout: Duration, tls: Option<&Arc<rustls::ClientConfig>>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let builder = Client::builder(TokioExecutor::new());
        let Some(tls) = tls else { return Self::Plain(builder.build(connector)) };
        // The TCP connector sees https:// URIs; the TLS layer above it takes those.
        connector.enforce_http(false);
        // HTTP/1.1 only, as on the plain path: upgrades (WebSocket) pass through over it.
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(rustls::ClientConfig::clone(tls))
            .https_only()
            .enable_http1()
            .wrap_connector(connector);
        Self::Tls(builder.build(https))
    }

    pub(crate) fn request(&self, request: http::Request<Tee<Body>>) -> ResponseFuture {
        match self {
            Self::Plain(client) => client.request(request),
            Self::Tls(client) => client.request(request),
        }
    }
}
