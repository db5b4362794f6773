//! Route templates and the capture decision.
//!
//! A path is matched against the configured templates (`/users/{id}`); an unmatched path is
//! templated automatically by replacing id-like segments (numbers, UUIDs, long hex) with
//! `{id}`. Events carry the template; metric labels use the configured template or `auto`,
//! so their number stays bounded whatever clients send.

use std::borrow::Cow;

use shadowdiff_core::RequestId;

use crate::config::TapSection;
use crate::events::RouteCounters;

/// Metric label of every path no configured template matched.
pub(crate) const AUTO_LABEL: &str = "auto";

#[derive(Debug)]
pub(crate) struct Routes {
    router: matchit::Router<usize>,
    routes: Vec<Route>,
    default: Route,
}

#[derive(Debug)]
struct Route {
    template: String,
    /// Captured requests per 10 000.
    per_10k: u32,
    cap: usize,
    counters: RouteCounters,
}

/// What the tap does with one request.
#[derive(Debug)]
pub(crate) struct Resolved<'a> {
    pub(crate) template: Cow<'a, str>,
    pub(crate) counters: &'a RouteCounters,
    pub(crate) capture: bool,
    pub(crate) cap: usize,
}

fn per_10k(percent: f64) -> u32 {
    // Validated to 0..=100, so the product fits.
    (percent * 100.0).round().clamp(0.0, 10_000.0) as u32
}

impl Routes {
    /// The configured routes, matched with the matcher built when the config was read.
    pub(crate) fn new(config: &TapSection) -> Self {
        let default = Route {
            template: String::new(),
            per_10k: per_10k(config.capture_percent),
            cap: config.capture_max_body_bytes,
            counters: RouteCounters::new(AUTO_LABEL),
        };
        let routes = config
            .routes
            .iter()
            .map(|route| Route {
                template: route.template.clone(),
                per_10k: route.capture_percent.map_or(default.per_10k, per_10k),
                cap: route.capture_max_body_bytes.unwrap_or(default.cap),
                counters: RouteCounters::new(&route.template),
            })
            .collect();
        Self { router: config.routes.router.clone(), routes, default }
    }

    pub(crate) fn resolve(&self, path: &str, id: &RequestId) -> Resolved<'_> {
        let (route, template) = match self.router.at(path) {
            Ok(matched) => {
                let route = &self.routes[*matched.value];
                (route, Cow::Borrowed(route.template.as_str()))
            }
            Err(_) => (&self.default, Cow::Owned(auto_template(path))),
        };
        Resolved { template, counters: &route.counters, capture: id.sample_bucket() < route.per_10k, cap: route.cap }
    }
}

/// `/orders/12345/items/550e8400-e29b-41d4-a716-446655440000` → `/orders/{id}/items/{id}`.
pub(crate) fn auto_template(path: &str) -> String {
    path.split('/').map(|segment| if is_id_like(segment) { "{id}" } else { segment }).collect::<Vec<_>>().join("/")
}

fn is_id_like(segment: &str) -> bool {
    let digits = !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit());
    let uuid = segment.len() == 36
        && segment
            .bytes()
            .enumerate()
            .all(|(i, b)| if [8, 13, 18, 23].contains(&i) { b == b'-' } else { b.is_ascii_hexdigit() });
    let hex = segment.len() >= 16 && segment.bytes().all(|b| b.is_ascii_hexdigit());
    digits || uuid || hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_templates_id_like_segments_only() {
        assert_eq!(
            auto_template("/orders/12345/items/550e8400-e29b-41d4-a716-446655440000"),
            "/orders/{id}/items/{id}"
        );
        assert_eq!(auto_template("/blobs/0123456789abcdef0123"), "/blobs/{id}");
        assert_eq!(auto_template("/users/me/v2/settings"), "/users/me/v2/settings");
        assert_eq!(auto_template("/"), "/");
    }

    #[test]
    fn capture_is_sticky_and_proportional() {
        let config: TapSection = toml::from_str(
            r#"
            listen = "127.0.0.1:0"
            upstream = "http://127.0.0.1:1"
            capture_percent = 10
            routes = [{ template = "/users/{id}", capture_percent = 100, capture_max_body_bytes = 8 }]
            redaction = { hmac_key = "0123456789abcdef" }
            "#,
        )
        .unwrap();
        let routes = Routes::new(&config);
        let id = RequestId::parse("abc").unwrap();
        let user = routes.resolve("/users/42", &id);
        assert_eq!(
            (user.template.as_ref(), user.counters.label(), user.capture, user.cap),
            ("/users/{id}", "/users/{id}", true, 8)
        );
        let other = routes.resolve("/orders/7", &id);
        assert_eq!((other.template.as_ref(), other.counters.label()), ("/orders/{id}", AUTO_LABEL));

        let captured = (0..5_000)
            .filter(|i| routes.resolve("/orders/1", &RequestId::parse(&format!("id-{i}")).unwrap()).capture)
            .count();
        // 10% of 5 000 is 500 with a standard deviation of ~21; 5 sigma either side.
        assert!((395..=605).contains(&captured), "{captured}");
        let again = (0..5_000)
            .filter(|i| routes.resolve("/orders/1", &RequestId::parse(&format!("id-{i}")).unwrap()).capture)
            .count();
        assert_eq!(captured, again, "the same ids get the same decisions");
    }
}
