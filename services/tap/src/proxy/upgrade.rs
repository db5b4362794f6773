//! Upgrades (WebSocket and friends) pass through without capture: the handshake is
//! forwarded, and on `101 Switching Protocols` the two upgraded connections are spliced.

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, StatusCode};
use hyper_util::rt::TokioIo;
use shadowdiff_core::RequestId;

use super::Proxy;
use crate::capture::Tee;
use crate::events;

/// Whether the client asks to switch protocols (`Connection: upgrade` plus `Upgrade`).
pub(super) fn requested(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|token| token.trim().eq_ignore_ascii_case("upgrade")));
    connection_upgrade && headers.contains_key(UPGRADE)
}

pub(super) async fn pass_through(proxy: &Proxy, mut request: Request, id: &RequestId) -> Response {
    let client_side = hyper::upgrade::on(&mut request);
    let (parts, body) = request.into_parts();
    let uri = match proxy.upstream_uri(&parts.uri) {
        Ok(uri) => uri,
        Err(reason) => return (StatusCode::BAD_REQUEST, reason).into_response(),
    };
    let protocol = parts.headers.get(UPGRADE).cloned();
    let mut headers = proxy.forward_headers(parts.headers, id);
    // The one hop-by-hop exchange a proxy must forward: the upgrade handshake itself.
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if let Some(protocol) = protocol {
        headers.insert(UPGRADE, protocol);
    }
    let body = Tee::new(body, None);
    let mut response = match proxy.send(parts.method, uri, headers, body).await {
        Ok(response) => response,
        Err((kind, _)) => return super::unavailable(kind),
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_side = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            match tokio::try_join!(client_side, upstream_side) {
                Ok((client, upstream)) => {
                    let copied =
                        tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(upstream)).await;
                    if let Err(error) = copied {
                        tracing::debug!(%error, "upgraded connection ended with an error");
                    }
                }
                Err(error) => tracing::debug!(%error, "upgrade did not complete"),
            }
        });
        events::upgraded();
    }
    let (mut parts, body) = response.into_parts();
    proxy.set_id(&mut parts.headers, id);
    Response::from_parts(parts, Body::new(body))
}
