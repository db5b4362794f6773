//! Which request targets the tap forwards. Outside egress mode only origin-form
//! (`/path?query`) and `*` for OPTIONS: anything else would reach the upstream, and the
//! mirror's replay, as a different address than the client's path suggests (an absolute
//! URL sends the upstream's own proxy elsewhere; `@evil.example/x` after a base URL turns
//! the base's host into userinfo).

use http::{Method, Uri, Version};

/// Whether `uri` is an origin-form target or the asterisk of an OPTIONS request.
///
/// Over HTTP/1 hyper keeps the target as the client wrote it, so a scheme or authority
/// means absolute- or authority-form. Over h2 they come from `:scheme` and `:authority`,
/// and only `:path` is the target.
pub(super) fn is_origin_form(method: &Method, version: Version, uri: &Uri) -> bool {
    if version < Version::HTTP_2 && (uri.scheme().is_some() || uri.authority().is_some()) {
        return false;
    }
    match uri.path_and_query().map(http::uri::PathAndQuery::as_str) {
        Some(target) if target.starts_with('/') => true,
        Some("*") => method == Method::OPTIONS,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::uri::PathAndQuery;

    fn h2_uri(path: &str) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(http::uri::Authority::from_static("tap.example"));
        parts.path_and_query = Some(PathAndQuery::try_from(path).unwrap());
        Uri::from_parts(parts).unwrap()
    }

    #[test]
    fn http1_accepts_origin_form_and_options_asterisk_only() {
        let get = Method::GET;
        for target in ["/", "/users/7?x=1", "//double/slash", "/a@b"] {
            assert!(is_origin_form(&get, Version::HTTP_11, &target.parse().unwrap()), "{target}");
        }
        assert!(is_origin_form(&Method::OPTIONS, Version::HTTP_11, &"*".parse().unwrap()));
        assert!(!is_origin_form(&get, Version::HTTP_11, &"*".parse().unwrap()), "* is for OPTIONS only");
        for target in ["http://evil.example/x", "http://evil.example", "evil.example:443"] {
            let uri: Uri = target.parse().unwrap();
            assert!(!is_origin_form(&get, Version::HTTP_11, &uri), "{target} parsed as {uri:?}");
            assert!(!is_origin_form(&get, Version::HTTP_10, &uri), "{target} over HTTP/1.0");
        }
        // hyper answers these 400 itself: they do not parse as a URI at all.
        assert!("@evil.example/x".parse::<Uri>().is_err());
    }

    #[test]
    fn h2_checks_the_path_pseudo_header_only() {
        let get = Method::GET;
        assert!(is_origin_form(&get, Version::HTTP_2, &h2_uri("/users/7?x=1")));
        assert!(is_origin_form(&Method::OPTIONS, Version::HTTP_2, &h2_uri("*")));
        assert!(!is_origin_form(&get, Version::HTTP_2, &h2_uri("*")));
        // Any other `:path` not starting with `/` is malformed to the h2 server, which
        // resets the stream (RFC 9113, 8.1.1) before the request reaches the tap.
        for path in ["@evil.example/x", "http://evil.example/x", "users/7"] {
            assert!(PathAndQuery::try_from(path).is_err(), "{path}");
        }
    }
}
