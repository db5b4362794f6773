//! Demo traffic through the tap: item reads (mirrored) and a few writes (never mirrored).

use std::time::Duration;

use shadowdiff_core::headers::REQUEST_ID;

/// What was sent, so a caller can predict what the pipeline must record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// Request ids of the reads, in order; read `i` fetched `/items/{i}`.
    pub reads: Vec<String>,
    /// Request ids of the writes.
    pub writes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error("request {id} through the tap: {source}")]
    Request { id: String, source: reqwest::Error },
    #[error("request {id}: tap answered {status}")]
    Status { id: String, status: u16 },
}

/// Sends `reads` GETs of `/items/0..reads` and `writes` POSTs through the tap at `tap`,
/// with request ids `{prefix}-r{i}` and `{prefix}-w{i}`.
pub async fn drive(tap: &str, prefix: &str, reads: u64, writes: u64) -> Result<Sent, TrafficError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|source| TrafficError::Request { id: String::new(), source })?;
    let mut sent = Sent::default();
    for i in 0..reads {
        let id = format!("{prefix}-r{i}");
        let response = client.get(format!("{tap}/items/{i}")).header(REQUEST_ID, &id).send().await;
        check(&id, response, 200)?;
        sent.reads.push(id);
    }
    for i in 0..writes {
        let id = format!("{prefix}-w{i}");
        let response = client
            .post(format!("{tap}/items"))
            .header(REQUEST_ID, &id)
            .header("content-type", "application/json")
            .body(format!(r#"{{"name":"new-{i}"}}"#))
            .send()
            .await;
        check(&id, response, 201)?;
        sent.writes.push(id);
    }
    Ok(sent)
}

fn check(id: &str, response: reqwest::Result<reqwest::Response>, expected: u16) -> Result<(), TrafficError> {
    let response = response.map_err(|source| TrafficError::Request { id: id.to_owned(), source })?;
    let status = response.status().as_u16();
    if status == expected { Ok(()) } else { Err(TrafficError::Status { id: id.to_owned(), status }) }
}

/// What [`mix`] sent, by kind, and how many failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MixSummary {
    pub reads: u64,
    pub writes: u64,
    pub failed: u64,
}

/// One request of the realistic mix: 55% item reads, 25% searches, 12% cart reads, and 8%
/// writes (new items, cart replacements), with item numbers spread over a catalogue of 1000.
pub(crate) fn pick(rng: &mut fastrand::Rng, tap: &str, client: &reqwest::Client) -> (bool, reqwest::RequestBuilder) {
    const WORDS: [&str; 6] = ["lamp", "desk", "chair", "mug", "rug", "sofa"];
    match rng.u32(..100) {
        0..55 => (false, client.get(format!("{tap}/items/{}", rng.u64(..1000)))),
        55..80 => (false, client.get(format!("{tap}/search?q={}", WORDS[rng.usize(..WORDS.len())]))),
        80..92 => (false, client.get(format!("{tap}/users/{}/cart", rng.u64(..500)))),
        92..96 => (
            true,
            client
                .post(format!("{tap}/items"))
                .header("content-type", "application/json")
                .body(format!(r#"{{"name":"new-{}"}}"#, rng.u32(..))),
        ),
        _ => (
            true,
            client
                .put(format!("{tap}/users/{}/cart", rng.u64(..500)))
                .header("content-type", "application/json")
                .body(r#"{"lines":[]}"#),
        ),
    }
}

/// Sends the realistic mix through the tap at `rate_per_sec` until `duration` has passed
/// (forever when `None`), with at most `concurrency` requests in flight. Request ids are
/// `{prefix}-{i}`. A failed request is counted, not fatal: the tap's client path is what
/// the demo shows, and it never fails because of the pipeline.
pub async fn mix(
    tap: &str,
    prefix: &str,
    rate_per_sec: u32,
    duration: Option<Duration>,
    concurrency: usize,
) -> MixSummary {
    let Ok(client) = reqwest::Client::builder().timeout(Duration::from_secs(10)).build() else {
        return MixSummary::default();
    };
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let summary = std::sync::Arc::new(std::sync::Mutex::new(MixSummary::default()));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate_per_sec.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut rng = fastrand::Rng::new();
    let mut i = 0u64;
    while deadline.is_none_or(|d| tokio::time::Instant::now() < d) {
        tick.tick().await;
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let (write, request) = pick(&mut rng, tap, &client);
        let request = request.header(REQUEST_ID, format!("{prefix}-{i}"));
        i += 1;
        let summary = summary.clone();
        tokio::spawn(async move {
            let ok = request.send().await.is_ok_and(|r| r.status().is_success());
            if let Ok(mut s) = summary.lock() {
                if write {
                    s.writes += 1
                } else {
                    s.reads += 1
                }
                s.failed += u64::from(!ok);
            }
            drop(permit);
        });
    }
    // Let the requests in flight finish.
    let _ = permits.acquire_many(u32::try_from(concurrency.max(1)).unwrap_or(u32::MAX)).await;
    summary.lock().map(|s| *s).unwrap_or_default()
}
