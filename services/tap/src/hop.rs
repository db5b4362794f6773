//! Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, so a proxy removes
//! them, along with every header the `Connection` header names, before forwarding.

use http::header::CONNECTION;
use http::{HeaderMap, HeaderName};

/// Always hop-by-hop. `Host` too: the upstream is sent its own (`Proxy::send`).
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Removes hop-by-hop headers in place.
pub(crate) fn strip(headers: &mut HeaderMap) {
    // Usually `Connection: keep-alive` or `close`, which name nothing more to remove.
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty() && !token.eq_ignore_ascii_case("close") && !is_hop_by_hop(token))
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    // A message carries one or two of these at most: find each in a scan of the names
    // rather than looking every one up.
    while let Some(name) = headers.keys().find(|name| is_hop_by_hop(name.as_str())).cloned() {
        headers.remove(name);
    }
}

fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|hop| hop.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_fixed_and_connection_named_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", "Keep-Alive, X-Debug, close".parse().unwrap());
        headers.insert("x-debug", "1".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert("transfer-encoding", "chunked".parse().unwrap());
        for name in
            ["host", "te", "trailer", "upgrade", "proxy-connection", "proxy-authenticate", "proxy-authorization"]
        {
            headers.insert(name, "x".parse().unwrap());
        }
        headers.insert("accept", "*/*".parse().unwrap());
        strip(&mut headers);
        assert_eq!(headers.keys().map(|k| k.as_str()).collect::<Vec<_>>(), vec!["accept"]);
    }
}
