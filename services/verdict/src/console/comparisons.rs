//! `GET /comparisons`: a candidate's stored exchanges, filtered and paged on the server.
//!
//! Filters: route, generalised path, difference kind, noise or not (these three through the
//! `differences` table), outcome, the shadow's status, and a time range. Pages are 50 rows,
//! newest first, and turn by a cursor (`before=<unix seconds>:<request id>`), not an
//! offset, so a deep page costs what the first does.
//!
//! What keeps it fast on a million rows: both tables are ordered by
//! `(deployment, request_id, ...)`, so the candidate filter reads only its own granules, and
//! partitioned by day, so the time range prunes whole partitions; the page's 51 ids are then
//! a top-51 sort without `FINAL` (on every core), and only their rows are read with it.

use clickhouse::Row;
use serde::Deserialize;
use shadowdiff_core::Role;
use shadowdiff_store::sql::role_is;

use crate::query::GENERALISED_PATH;

/// Rows per page.
pub(crate) const PAGE: usize = 50;
/// Longest text filter taken.
const MAX_FILTER: usize = 512;

/// The filters, as the page's form and links carry them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct Filters {
    #[serde(default)]
    pub(crate) candidate: String,
    #[serde(default)]
    pub(crate) route: String,
    #[serde(default)]
    pub(crate) path: String,
    #[serde(default)]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) outcome: String,
    /// `yes`, `no`, or empty for either.
    #[serde(default)]
    pub(crate) noise: String,
    #[serde(default)]
    pub(crate) status: String,
    /// A duration ago, an RFC 3339 time or Unix seconds; empty for the default window.
    #[serde(default)]
    pub(crate) since: String,
    /// The cursor: the last row of the previous page, `<unix seconds>:<request id>`.
    #[serde(default)]
    pub(crate) before: String,
}

/// One stored comparison, as the list shows it.
#[derive(Debug, Clone, Row, Deserialize)]
pub(crate) struct Listed {
    pub(crate) ts: u32,
    pub(crate) request_id: String,
    pub(crate) route: String,
    pub(crate) method: String,
    pub(crate) outcome: String,
    pub(crate) primary_status: u16,
    pub(crate) shadow_status: u16,
    pub(crate) differences: u32,
    pub(crate) noise: u32,
}

enum Bind {
    Text(String),
    Number(u32),
}

impl Filters {
    /// The filters a page's links carry, by name: all of them but the cursor.
    fn named(&self) -> [(&'static str, &String); 8] {
        [
            ("candidate", &self.candidate),
            ("route", &self.route),
            ("path", &self.path),
            ("kind", &self.kind),
            ("outcome", &self.outcome),
            ("noise", &self.noise),
            ("status", &self.status),
            ("since", &self.since),
        ]
    }

    /// Every filter within its bounds, or what is wrong with the first that is not.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.candidate.is_empty() || self.candidate.len() > 128 {
            return Err("candidate is required: 1 to 128 characters".into());
        }
        for (name, value) in self.named().into_iter().chain([("before", &self.before)]) {
            if value.len() > MAX_FILTER || value.chars().any(char::is_control) {
                return Err(format!("{name} must be at most {MAX_FILTER} printable characters"));
            }
        }
        if !matches!(self.noise.as_str(), "" | "yes" | "no") {
            return Err("noise must be yes, no or empty".into());
        }
        if !self.status.is_empty() && self.status.parse::<u16>().is_err() {
            return Err("status must be an HTTP status code".into());
        }
        if !self.before.is_empty() && self.cursor().is_none() {
            return Err("before must be <unix seconds>:<request id>".into());
        }
        Ok(())
    }

    fn cursor(&self) -> Option<(u32, &str)> {
        let (ts, id) = self.before.split_once(':')?;
        Some((ts.parse().ok()?, id))
    }

    /// The query for one page (one row more than a page, to know whether there is another)
    /// of the candidate's rows from `since` (Unix seconds) on.
    pub(crate) fn query(&self, client: &clickhouse::Client, since: u32) -> clickhouse::query::Query {
        let mut conditions = vec![format!("{} AND deployment = ? AND ts >= toDateTime(?)", role_is(Role::Candidate))];
        let mut binds = vec![Bind::Text(self.candidate.clone()), Bind::Number(since)];
        let mut add = |condition: &str, bind: Bind| {
            conditions.push(condition.to_owned());
            binds.push(bind);
        };
        if !self.route.is_empty() {
            add("route = ?", Bind::Text(self.route.clone()));
        }
        if !self.outcome.is_empty() {
            add("outcome = ?", Bind::Text(self.outcome.clone()));
        }
        if let Ok(status) = self.status.parse::<u16>() {
            add("shadow_status = ?", Bind::Number(u32::from(status)));
        }
        if !self.path.is_empty() || !self.kind.is_empty() || !self.noise.is_empty() {
            let mut within = vec!["deployment = ? AND ts >= toDateTime(?)".to_owned()];
            let mut within_binds = vec![Bind::Text(self.candidate.clone()), Bind::Number(since)];
            if !self.path.is_empty() {
                within.push(format!("{GENERALISED_PATH} = ?"));
                within_binds.push(Bind::Text(self.path.clone()));
            }
            if !self.kind.is_empty() {
                within.push("kind = ?".to_owned());
                within_binds.push(Bind::Text(self.kind.clone()));
            }
            if !self.noise.is_empty() {
                within.push(format!("noise = {}", u8::from(self.noise == "yes")));
            }
            conditions.push(format!(
                "request_id IN (SELECT request_id FROM differences FINAL WHERE {})",
                within.join(" AND ")
            ));
            binds.extend(within_binds);
        }
        if let Some((ts, id)) = self.cursor() {
            conditions.push("(ts < toDateTime(?) OR (ts = toDateTime(?) AND request_id < ?))".to_owned());
            binds.extend([Bind::Number(ts), Bind::Number(ts), Bind::Text(id.to_owned())]);
        }
        // The page's ids are found without FINAL, which would read the whole window on one
        // thread, and only their rows are then read with it: what is shown is each row's
        // latest version.
        let conditions = conditions.join(" AND ");
        let sql = format!(
            "SELECT toUInt32(ts) AS ts, request_id, route, method, outcome, primary_status, shadow_status, \
             differences, noise FROM exchanges FINAL WHERE {conditions} AND request_id IN \
             (SELECT request_id FROM exchanges WHERE {conditions} \
              ORDER BY ts DESC, request_id DESC LIMIT 1 BY request_id LIMIT {page}) \
             ORDER BY ts DESC, request_id DESC LIMIT {page}",
            page = PAGE + 1
        );
        let bind = |query: clickhouse::query::Query, bind: &Bind| match bind {
            Bind::Text(text) => query.bind(text),
            Bind::Number(n) => query.bind(*n),
        };
        let query = binds.iter().fold(client.query(&sql), bind);
        binds.iter().fold(query, bind)
    }

    /// These filters' query string, with `before` set to `cursor` (or none).
    pub(crate) fn link(&self, cursor: Option<String>) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in self.named() {
            if !value.is_empty() {
                query.append_pair(key, value);
            }
        }
        if let Some(cursor) = cursor {
            query.append_pair("before", &cursor);
        }
        format!("/comparisons?{}", query.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_bounded_and_links_carry_them() {
        let filters = Filters { candidate: "v2".into(), path: "items[*].price".into(), ..Filters::default() };
        assert_eq!(filters.check(), Ok(()));
        assert_eq!(
            filters.link(Some("10:r 1".into())),
            "/comparisons?candidate=v2&path=items%5B*%5D.price&before=10%3Ar+1"
        );
        assert!(Filters { candidate: String::new(), ..filters.clone() }.check().is_err());
        assert!(Filters { noise: "maybe".into(), ..filters.clone() }.check().is_err());
        assert!(Filters { status: "2xx".into(), ..filters.clone() }.check().is_err());
        assert!(Filters { before: "yesterday".into(), ..filters.clone() }.check().is_err());
        assert!(Filters { route: "r".repeat(600), ..filters }.check().is_err());
    }
}
