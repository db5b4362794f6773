//! What every service serves on its admin port, read as a probe or a scraper would:
//! `/healthz` (status and checks) and `/metrics` (Prometheus text).

/// `/healthz`: the status code and the body's `checks` (name → passing).
pub async fn healthz(admin_url: &str) -> Result<(u16, serde_json::Value), String> {
    let response = reqwest::get(format!("{admin_url}/healthz")).await.map_err(|e| format!("GET /healthz: {e}"))?;
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.map_err(|e| format!("/healthz body: {e}"))?;
    Ok((status, body["checks"].clone()))
}

/// The sum of every series of metric `name` whose labels contain `labels` (`""` for all),
/// 0 when there is none.
pub async fn metric(admin_url: &str, name: &str, labels: &str) -> f64 {
    sum(&metrics(admin_url).await, name, labels)
}

/// `/metrics`, the whole page: to read several metrics of one moment, with [`sum`].
pub async fn metrics(admin_url: &str) -> String {
    reqwest::get(format!("{admin_url}/metrics"))
        .await
        .and_then(reqwest::Response::error_for_status)
        .unwrap_or_else(|e| panic!("GET {admin_url}/metrics: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {admin_url}/metrics: {e}"))
}

/// [`metric`] on a page already fetched.
pub fn sum(page: &str, name: &str, labels: &str) -> f64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            // The name itself, not a longer one that starts with it (`_total` vs `_total_x`).
            let exact = rest.is_empty() || rest.starts_with('{');
            if !exact || !rest.contains(labels) {
                return None;
            }
            value.parse::<f64>().ok()
        })
        // An empty float sum is -0.0; a failure message should say 0.
        .sum::<f64>()
        + 0.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_the_series_of_one_metric_by_label() {
        let page = "# TYPE x_total counter\n\
                    x_total{what=\"a\"} 2\n\
                    x_total{what=\"b\"} 3\n\
                    x_total_other 7\n\
                    y 1\n";
        assert_eq!(super::sum(page, "x_total", ""), 5.0);
        assert_eq!(super::sum(page, "x_total", "what=\"b\""), 3.0);
        assert_eq!(super::sum(page, "y", ""), 1.0);
        assert_eq!(super::sum(page, "z", ""), 0.0);
    }
}
