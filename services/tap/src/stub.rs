//! Stub mode: an egress tap in front of a shadow answers each of the shadow's downstream
//! calls from the primary's recorded call for the same request, and never forwards it, so a
//! shadow can be replayed writes without a scratch copy of its dependencies.
//!
//! The primary's egress tap publishes every call it sees on the outbound topic. A stub tap
//! reads that topic from its end (a reader of its own, in no consumer group, whose fetches
//! the broker holds 10 ms at most) and holds the
//! primary's calls by request id, bounded by count and age ([`Recordings`]). A shadow's call
//! is matched to them, in this order:
//!
//! 1. the same call (`METHOD host route`) with the same body (by its SHA-256), not yet used;
//! 2. the same call, the first one not yet used, in the order the primary made them;
//! 3. none: the configured `unmatched_status`, and the call is recorded `unmatched`.
//!
//! A call waits up to `wait_ms` for its request's recorded calls to arrive, since the
//! primary's are published when they finish, about when the mirror replays the request.
//! A recorded answer whose body the primary's tap cut at its capture cap cannot be given
//! whole, and is not given: the call is unmatched. Every answer carries
//! `x-shadowdiff-stub: matched` or `unmatched`, which reaches the call's published event.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use shadowdiff_core::{EventCodec, Header, OutboundCallEvent, Role};
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::kafka::KafkaConfig;
use tokio::sync::Notify;

use crate::config::StubConfig;

/// How long the reader waits for a message before it looks at shutdown again.
const POLL: Duration = Duration::from_millis(100);

/// What a stubbed call is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The primary's recorded answer to the matching call.
    Matched { status: u16, headers: Vec<Header>, body: Vec<u8> },
    /// No recorded call matched, for this reason.
    Unmatched(&'static str),
}

/// One call the primary made, as its egress tap recorded it.
#[derive(Debug)]
struct Recorded {
    call: String,
    body_sha256: Vec<u8>,
    made_at: i64,
    answer: Answer,
    used: bool,
}

/// The primary's recorded calls by request id, bounded.
#[derive(Debug)]
pub(crate) struct Recordings {
    config: StubConfig,
    held: Mutex<Held>,
    arrived: Notify,
}

#[derive(Debug, Default)]
struct Held {
    by_request: HashMap<String, Vec<Recorded>>,
    /// Request ids by when their first call arrived, oldest first.
    order: VecDeque<(Instant, String)>,
}

/// `METHOD host route`: what a call is matched by, as the correlator names calls.
pub(crate) fn call_key(method: &str, authority: &str, route: &str) -> String {
    format!("{method} {authority} {route}")
}

impl Recordings {
    pub(crate) fn new(config: StubConfig) -> Self {
        Self { config, held: Mutex::new(Held::default()), arrived: Notify::new() }
    }

    /// Starts reading the primary's calls off `topic` from its end, on a thread of its own,
    /// until `shutdown`.
    pub(crate) fn start(
        self: &Arc<Self>,
        kafka: &KafkaConfig,
        topic: &str,
        shutdown: CancellationToken,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let reader = kafka.prompt_reader()?;
        let metadata = reader.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let mut assignment = TopicPartitionList::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            assignment.add_partition_offset(topic, partition.id(), Offset::End)?;
        }
        reader.assign(&assignment)?;
        let recordings = Arc::clone(self);
        let codec = EventCodec::new()
            .map_err(|e| rdkafka::error::KafkaError::ClientCreation(format!("the event schemas: {e}")))?;
        std::thread::Builder::new()
            .name("tap-stub-reader".to_owned())
            .spawn(move || {
                while !shutdown.is_cancelled() {
                    match reader.poll(POLL) {
                        Some(Ok(message)) => {
                            if let Ok(call) = codec.decode::<OutboundCallEvent>(message.payload().unwrap_or_default()) {
                                recordings.record(call, Instant::now());
                            }
                        }
                        Some(Err(error)) => tracing::debug!(%error, "stub reader"),
                        None => {}
                    }
                }
            })
            .map_err(|e| rdkafka::error::KafkaError::ClientCreation(format!("the stub reader's thread: {e}")))?;
        Ok(())
    }

    /// Holds one of the primary's calls; others' are ignored.
    fn record(&self, event: OutboundCallEvent, now: Instant) {
        if event.role != Role::Primary || !event.linked {
            return;
        }
        let request = &event.request;
        let response = event.response;
        let answer = match (response.status, response.error) {
            (_, Some(_)) | (None, _) => Answer::Unmatched("the primary's call got no answer"),
            _ if response.body.truncated => Answer::Unmatched("the recorded answer was cut at the capture cap"),
            (Some(status), None) => Answer::Matched {
                status: u16::try_from(status).unwrap_or(502),
                headers: response.headers,
                body: response.body.bytes,
            },
        };
        let recorded = Recorded {
            call: call_key(&request.method, &request.authority, request.route()),
            body_sha256: request.body.sha256.clone(),
            made_at: request.timestamp_ms,
            answer,
            used: false,
        };
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let Held { by_request, order } = &mut *held;
        let calls = by_request.entry(event.request_id.clone()).or_insert_with(|| {
            order.push_back((now, event.request_id.clone()));
            Vec::new()
        });
        calls.push(recorded);
        calls.sort_by_key(|c| c.made_at);
        while order.len() > self.config.max_requests
            || order.front().is_some_and(|(at, _)| now.duration_since(*at) > self.config.keep)
        {
            let Some((_, id)) = order.pop_front() else { break };
            by_request.remove(&id);
        }
        drop(held);
        self.arrived.notify_waiters();
    }

    /// The answer to a shadow's call `call` of request `request_id` with a body hashing to
    /// `body_sha256`, waiting up to the configured time for the primary's calls to arrive.
    pub(crate) async fn answer(&self, request_id: &str, call: &str, body_sha256: &[u8]) -> Answer {
        let deadline = tokio::time::Instant::now() + self.config.wait;
        loop {
            let arrived = self.arrived.notified();
            if let Some(answer) = self.take(request_id, call, body_sha256) {
                return answer;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Answer::Unmatched("no recorded call of the primary's matches");
            }
        }
    }

    /// Takes the matching recorded call, by the rules in the module's documentation.
    fn take(&self, request_id: &str, call: &str, body_sha256: &[u8]) -> Option<Answer> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let calls = held.by_request.get_mut(request_id)?;
        let unused = |c: &&mut Recorded| !c.used && c.call == call;
        let position = calls
            .iter_mut()
            .position(|c| unused(&c) && c.body_sha256 == body_sha256)
            .or_else(|| calls.iter_mut().position(|c| unused(&c)))?;
        let found = &mut calls[position];
        found.used = true;
        Some(found.answer.clone())
    }

    /// The status a call no recorded call matches is answered with.
    pub(crate) fn unmatched_status(&self) -> u16 {
        self.config.unmatched_status
    }

    /// The largest call body read to match it.
    pub(crate) fn max_body_bytes(&self) -> usize {
        self.config.max_body_bytes
    }
}

#[cfg(test)]
mod tests {
    use shadowdiff_core::{CapturedBody, RequestEvent, ResponseEvent};

    use super::*;

    fn config() -> StubConfig {
        StubConfig {
            unmatched_status: 502,
            wait: Duration::from_millis(50),
            max_requests: 2,
            keep: Duration::from_secs(60),
            max_body_bytes: 1024,
        }
    }

    /// The primary's `n`-th call of request `id`, `POST charges /charges` with `body`,
    /// answered `answer`.
    fn recorded(id: &str, n: i64, body: &str, answer: &str) -> OutboundCallEvent {
        let request = RequestEvent {
            request_id: id.into(),
            timestamp_ms: n,
            tap_id: "egress".into(),
            method: "POST".into(),
            scheme: "http".into(),
            authority: "payments".into(),
            path: "/charges".into(),
            query: None,
            route_template: None,
            headers: vec![],
            body: CapturedBody::capture(body.as_bytes(), 1024),
            run: String::new(),
        };
        let response = ResponseEvent {
            request_id: id.into(),
            timestamp_ms: n,
            role: Role::Primary,
            deployment: "prod".into(),
            status: Some(201),
            headers: vec![],
            body: CapturedBody::capture(answer.as_bytes(), 1024),
            latency_us: 1,
            error: None,
            profile: None,
            stage: None,
            expected_legs: vec![],
            run: String::new(),
        };
        OutboundCallEvent {
            request_id: id.into(),
            call_id: format!("{id}-{n}"),
            linked: true,
            deployment: "prod".into(),
            request,
            response,
            role: Role::Primary,
        }
    }

    fn body(answer: &Answer) -> &str {
        match answer {
            Answer::Matched { body, .. } => std::str::from_utf8(body).unwrap(),
            Answer::Unmatched(why) => why,
        }
    }

    fn sha(body: &str) -> Vec<u8> {
        CapturedBody::capture(body.as_bytes(), 0).sha256
    }

    #[tokio::test]
    async fn a_call_takes_the_same_body_first_then_the_next_in_order_then_none() {
        let recordings = Recordings::new(config());
        let now = Instant::now();
        recordings.record(recorded("r", 1, "a", "first"), now);
        recordings.record(recorded("r", 2, "b", "second"), now);
        let call = "POST payments /charges";
        assert_eq!(body(&recordings.answer("r", call, &sha("b")).await), "second", "same body");
        assert_eq!(body(&recordings.answer("r", call, &sha("z")).await), "first", "next in order");
        assert!(matches!(recordings.answer("r", call, &sha("a")).await, Answer::Unmatched(_)), "each once");
        assert!(matches!(recordings.answer("r", "GET payments /charges", &sha("a")).await, Answer::Unmatched(_)));
    }

    #[tokio::test]
    async fn a_call_waits_for_its_recording_and_the_oldest_requests_are_forgotten() {
        let recordings = Arc::new(Recordings::new(StubConfig { wait: Duration::from_secs(5), ..config() }));
        let later = Arc::clone(&recordings);
        let waiting = tokio::spawn(async move { later.answer("late", "POST payments /charges", &sha("x")).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        recordings.record(recorded("late", 1, "x", "arrived"), Instant::now());
        assert_eq!(body(&waiting.await.unwrap()), "arrived");

        for id in ["a", "b", "c"] {
            recordings.record(recorded(id, 1, "x", id), Instant::now());
        }
        // At most two requests held: `late` and `a` went first.
        let call = "POST payments /charges";
        assert!(recordings.take("a", call, &sha("x")).is_none());
        assert_eq!(body(&recordings.take("c", call, &sha("x")).unwrap()), "c");
    }
}
