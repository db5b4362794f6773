//! How fresh the rows are (`deploy/bench/freshness.sh`): the time from the primary's answer
//! reaching the client to its shadow's row being visible in ClickHouse's `exchanges`.
//!
//! The demo's mix goes through the tap at a steady rate with known request ids, as
//! [`crate::traffic::mix`] sends it. Each read (the requests the mirror replays) is timed
//! when its answer's body has arrived; a poller asks ClickHouse every `poll` which of the
//! answered reads have a row for the shadow, and times each id by the start of the first
//! poll that finds it. ClickHouse takes the parts a query reads when it starts, so a row
//! found became visible between that poll's start and the previous one's: the poll
//! interval is the resolution. Writes are sent, never timed: the mirror does not replay them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shadowdiff_core::headers::REQUEST_ID;
use tokio::time::Instant;

/// What to send, and where to look for the rows.
#[derive(Debug, Clone)]
pub struct FreshnessSpec {
    pub tap: String,
    /// ClickHouse's HTTP endpoint.
    pub clickhouse: String,
    pub database: String,
    /// The shadow deployment whose rows are waited for.
    pub deployment: String,
    /// Request ids are `{prefix}-{i}`. Prefix, database and deployment: letters, digits,
    /// `-` and `_` only.
    pub prefix: String,
    pub rate_per_sec: u32,
    /// How long requests are sent, the warm-up included.
    pub duration: Duration,
    /// Requests sent in this first part are not timed.
    pub warmup: Duration,
    pub poll: Duration,
    /// How long the poller waits for the last rows after the last answer.
    pub wait: Duration,
    pub concurrency: usize,
}

/// What a run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// Reads answered after the warm-up, so timed.
    pub timed: u64,
    /// Each timed read's freshness, shortest first.
    pub freshness: Vec<Duration>,
    /// Requests not answered with a 2xx (not timed).
    pub failed: u64,
    pub writes: u64,
    pub polls: u64,
    /// The slowest poll query, start to rows.
    pub slowest_poll: Duration,
}

impl Measured {
    /// Timed reads whose row never became visible.
    pub fn missing(&self) -> u64 {
        self.timed - self.freshness.len() as u64
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FreshnessError {
    #[error("{key} {value:?}: letters, digits, '-' and '_' only")]
    Name { key: &'static str, value: String },
    #[error("http client: {0}")]
    Client(reqwest::Error),
    #[error("poll {url}: {source}")]
    Poll { url: String, source: reqwest::Error },
}

/// `shadowdiff-demo freshness`: the spec, in whole units for the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct FreshnessArgs {
    #[arg(long)]
    tap: String,
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    clickhouse: String,
    #[arg(long)]
    database: String,
    #[arg(long, default_value = "candidate")]
    deployment: String,
    #[arg(long, default_value = "fresh")]
    prefix: String,
    /// Requests per second (the demo's rate).
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Seconds requests are sent, the warm-up included.
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    #[arg(long, default_value_t = 5)]
    warmup_secs: u64,
    /// How often ClickHouse is asked for the rows: the resolution.
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    /// How long the last rows are waited for after the last answer.
    #[arg(long, default_value_t = 30)]
    wait_secs: u64,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

impl From<FreshnessArgs> for FreshnessSpec {
    fn from(a: FreshnessArgs) -> Self {
        Self {
            tap: a.tap,
            clickhouse: a.clickhouse,
            database: a.database,
            deployment: a.deployment,
            prefix: a.prefix,
            rate_per_sec: a.rate,
            duration: Duration::from_secs(a.duration_secs),
            warmup: Duration::from_secs(a.warmup_secs),
            poll: Duration::from_millis(a.poll_ms.max(1)),
            wait: Duration::from_secs(a.wait_secs),
            concurrency: a.concurrency,
        }
    }
}

impl std::fmt::Display for Measured {
    /// One line of `key=value` words for scripts; times in milliseconds.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms =
            |p: f64| percentile(&self.freshness, p).map_or_else(|| "n/a".to_owned(), |d| d.as_millis().to_string());
        write!(
            f,
            "timed={} visible={} missing={} failed={} writes={} p50_ms={} p90_ms={} p99_ms={} max_ms={} polls={} slowest_poll_ms={}",
            self.timed,
            self.freshness.len(),
            self.missing(),
            self.failed,
            self.writes,
            ms(50.0),
            ms(90.0),
            ms(99.0),
            ms(100.0),
            self.polls,
            self.slowest_poll.as_millis(),
        )
    }
}

/// Read ids answered and not yet found, with when their answers arrived.
type Answered = Arc<Mutex<HashMap<String, Instant>>>;

/// Sends the mix for `spec.duration`, then waits up to `spec.wait` for the rows of every
/// timed read.
pub async fn measure(spec: &FreshnessSpec) -> Result<Measured, FreshnessError> {
    // They go into the poller's SQL.
    for (key, value) in [("--prefix", &spec.prefix), ("--database", &spec.database), ("--deployment", &spec.deployment)]
    {
        if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(FreshnessError::Name { key, value: value.clone() });
        }
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(FreshnessError::Client)?;
    let answered = Answered::default();
    let sending = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let poller = tokio::spawn(poll_rows(client.clone(), spec.clone(), answered.clone(), sending.clone()));
    let sent = send(&client, spec, &answered).await;
    sending.store(false, std::sync::atomic::Ordering::Release);
    let mut measured = match poller.await {
        Ok(polled) => polled?,
        // The poller never panics; should it, nothing was measured.
        Err(_) => Measured::default(),
    };
    measured.timed = sent.timed;
    measured.failed = sent.failed;
    measured.writes = sent.writes;
    measured.freshness.sort();
    Ok(measured)
}

#[derive(Debug, Default)]
struct Sent {
    timed: u64,
    failed: u64,
    writes: u64,
}

async fn send(client: &reqwest::Client, spec: &FreshnessSpec, answered: &Answered) -> Sent {
    let permits = Arc::new(tokio::sync::Semaphore::new(spec.concurrency.max(1)));
    let sent = Arc::new(Mutex::new(Sent::default()));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / spec.rate_per_sec.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut rng = fastrand::Rng::new();
    for i in 0u64.. {
        if started.elapsed() >= spec.duration {
            break;
        }
        tick.tick().await;
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let (write, request) = crate::traffic::pick(&mut rng, &spec.tap, client);
        let id = format!("{}-{i}", spec.prefix);
        let request = request.header(REQUEST_ID, &id);
        let timed = !write && started.elapsed() >= spec.warmup;
        let (sent, answered) = (sent.clone(), answered.clone());
        tokio::spawn(async move {
            // The answer has reached the client when its whole body has.
            let ok = match request.send().await {
                Ok(response) if response.status().is_success() => response.bytes().await.is_ok(),
                _ => false,
            };
            let at = Instant::now();
            if ok
                && timed
                && let Ok(mut answered) = answered.lock()
            {
                answered.insert(id, at);
            }
            if let Ok(mut sent) = sent.lock() {
                sent.writes += u64::from(write);
                sent.failed += u64::from(!ok);
                sent.timed += u64::from(ok && timed);
            }
            drop(permit);
        });
    }
    // Let the requests in flight finish.
    let _ = permits.acquire_many(u32::try_from(spec.concurrency.max(1)).unwrap_or(u32::MAX)).await;
    sent.lock().map(|s| Sent { timed: s.timed, failed: s.failed, writes: s.writes }).unwrap_or_default()
}

/// Polls until sending is over and every answered read is found, or `spec.wait` has passed
/// since sending ended.
async fn poll_rows(
    client: reqwest::Client,
    spec: FreshnessSpec,
    answered: Answered,
    sending: Arc<std::sync::atomic::AtomicBool>,
) -> Result<Measured, FreshnessError> {
    let mut measured = Measured::default();
    let mut tick = tokio::time::interval(spec.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sending_ended: Option<Instant> = None;
    loop {
        tick.tick().await;
        let still_sending = sending.load(std::sync::atomic::Ordering::Acquire);
        let pending: Vec<String> = answered.lock().map(|a| a.keys().cloned().collect()).unwrap_or_default();
        if !still_sending {
            let ended = *sending_ended.get_or_insert_with(Instant::now);
            if pending.is_empty() || ended.elapsed() >= spec.wait {
                return Ok(measured);
            }
        }
        if pending.is_empty() {
            continue;
        }
        let started = Instant::now();
        let url = spec.clickhouse.clone();
        let found = client
            .post(&url)
            .body(visible_query(&spec.database, &spec.deployment, &pending))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|source| FreshnessError::Poll { url: url.clone(), source })?
            .text()
            .await
            .map_err(|source| FreshnessError::Poll { url, source })?;
        measured.polls += 1;
        measured.slowest_poll = measured.slowest_poll.max(started.elapsed());
        if let Ok(mut answered) = answered.lock() {
            for id in found.lines() {
                if let Some(at) = answered.remove(id) {
                    measured.freshness.push(started.saturating_duration_since(at));
                }
            }
        }
    }
}

/// The query for which of `ids` have a row for `deployment`. Ids and names were checked
/// to be plain words (`measure`), so quoting them is enough.
fn visible_query(database: &str, deployment: &str, ids: &[String]) -> String {
    let quoted: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    format!(
        "SELECT request_id FROM {database}.exchanges WHERE deployment = '{deployment}' AND request_id IN ({}) FORMAT TSV",
        quoted.join(",")
    )
}

/// The `p`-th percentile (0 to 100) of `sorted`, by nearest rank; none of nothing.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let ms: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        assert_eq!(percentile(&ms, 50.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&ms, 99.0), Some(Duration::from_millis(198)));
        assert_eq!(percentile(&ms, 100.0), Some(Duration::from_millis(200)));
        assert_eq!(percentile(&ms[..1], 99.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn the_query_asks_for_the_pending_ids_of_one_deployment() {
        let ids = vec!["f-1".to_owned(), "f-7".to_owned()];
        assert_eq!(
            visible_query("bench_db", "candidate", &ids),
            "SELECT request_id FROM bench_db.exchanges WHERE deployment = 'candidate' AND request_id IN ('f-1','f-7') FORMAT TSV"
        );
    }

    #[tokio::test]
    async fn a_prefix_that_needs_quoting_is_refused_before_anything_is_sent() {
        let spec = FreshnessSpec {
            tap: "http://127.0.0.1:9".to_owned(),
            clickhouse: "http://127.0.0.1:9".to_owned(),
            database: "db".to_owned(),
            deployment: "candidate".to_owned(),
            prefix: "x');DROP".to_owned(),
            rate_per_sec: 1,
            duration: Duration::ZERO,
            warmup: Duration::ZERO,
            poll: Duration::from_millis(10),
            wait: Duration::ZERO,
            concurrency: 1,
        };
        assert!(
            matches!(measure(&spec).await, Err(FreshnessError::Name { key: "--prefix", value }) if value == "x');DROP")
        );
    }
}
