//! A replay run: each recorded request sent again to the run's targets, at the recorded pace
//! scaled or as fast as the bounds allow, and handed with the recorded primary's answer,
//! every event tagged with the run, to an [`Outlet`]: published for the correlator to compare
//! as it compares the mirror's ([`Publisher`]), or compared in this process
//! ([`crate::Compared`]).
//!
//! The targets are replayed to by the mirror's own [`Replayer`], under the [`ReplayContext`]
//! of a mirror's config: only to allowed targets, sealed headers opened with the seal key
//! and redacted ones never sent, each response redacted before it leaves the process. Which
//! requests go is the run's [`Profile`]'s rule, the mirror's too: only the safe methods
//! unless it opts others in with a reason. A replayed exchange's request id is
//! `<run>:<recorded id>` and its events are stamped with the replay's time, so a run's rows
//! never replace the live traffic's or another run's, and a live mirror, which replays only
//! requests without a run, leaves them alone.

use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureRecord;
use shadowdiff_core::codec::EventCodec;
use shadowdiff_core::event::now_ms;
use shadowdiff_core::{RequestEvent, RequestId, ResponseEvent};
use shadowdiff_mirror::profile::Profile;
use shadowdiff_mirror::replay::{ReplayContext, Replayer};
use shadowdiff_runtime::kafka::Producer;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Recorded;

/// Most replays in flight a run may ask for.
pub const MAX_CONCURRENCY: usize = 256;
/// Most replays a second a run may ask for.
pub const MAX_RATE: u32 = 10_000;

/// How fast a run goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// The recorded inter-arrival times divided by this factor (`2x`: twice as fast).
    Scaled(f64),
    /// As fast as the concurrency and rate bounds allow.
    Max,
}

impl std::str::FromStr for Speed {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("max") {
            return Ok(Self::Max);
        }
        let factor = text.strip_suffix(['x', 'X']).unwrap_or(text);
        match factor.parse::<f64>() {
            Ok(f) if f.is_finite() && (0.01..=1000.0).contains(&f) => Ok(Self::Scaled(f)),
            _ => Err(format!("{text:?}: a factor from 0.01x to 1000x (2x: twice the recorded pace), or max")),
        }
    }
}

/// What a run is: its id, the profile its targets and method rules come from, and its pace.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: String,
    pub profile: Profile,
    pub speed: Speed,
    /// Replays in flight at most, 1 to [`MAX_CONCURRENCY`].
    pub concurrency: usize,
    /// Exchanges started a second at most, 1 to [`MAX_RATE`].
    pub rate: u32,
}

/// Why a run could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("run id {0:?}: 1 to 64 of A-Z a-z 0-9 - _ . + / =")]
    BadId(String),
    #[error("the run's profile: {}", .0.join("; "))]
    Profile(Vec<String>),
    #[error("concurrency must be 1 to {MAX_CONCURRENCY}, rate 1 to {MAX_RATE}")]
    Bounds,
    #[error(transparent)]
    Target(#[from] shadowdiff_mirror::MirrorError),
    #[error(transparent)]
    Schema(#[from] shadowdiff_core::codec::SchemaError),
}

/// One exchange as a run replayed it: the recorded request and the primary's recorded answer
/// under the run's request id, and each target's answer, every one tagged with the run.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub request: RequestEvent,
    pub primary: ResponseEvent,
    pub answers: Vec<ResponseEvent>,
}

/// Where a run's replayed exchanges go: to the brokers for the correlator ([`Publisher`]),
/// or to a comparer in this process ([`crate::Compared`]).
pub trait Outlet: Clone + Send + Sync + 'static {
    /// Keeps one replayed exchange; false when not all of it could be kept.
    fn keep(&self, replayed: Replayed) -> impl Future<Output = bool> + Send;
}

/// Publishes a run's events to the topics the correlator reads.
#[derive(Clone)]
pub struct Publisher {
    producer: Producer,
    codec: Arc<EventCodec>,
    requests: String,
    responses: String,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("requests", &self.requests).field("responses", &self.responses).finish()
    }
}

impl Publisher {
    pub fn new(producer: Producer, requests: &str, responses: &str) -> Result<Self, RunError> {
        Ok(Self {
            producer,
            codec: Arc::new(EventCodec::new()?),
            requests: requests.to_owned(),
            responses: responses.to_owned(),
        })
    }

    /// Publishes one event, keyed by its request id; false when the brokers would not take it.
    async fn send(
        &self,
        topic: &str,
        key: &str,
        payload: Result<Vec<u8>, shadowdiff_core::codec::EncodeError>,
    ) -> bool {
        let Ok(payload) = payload else { return false };
        let record = FutureRecord::to(topic).key(key).payload(&payload);
        self.producer.send(record, Duration::from_secs(30)).await.is_ok()
    }
}

impl Outlet for Publisher {
    /// Publishes the request, the primary's answer and each target's at once, every one
    /// naming all of the run's legs so the correlator knows when the exchange is whole;
    /// true when the brokers took them all.
    async fn keep(&self, replayed: Replayed) -> bool {
        let Replayed { request, primary, answers } = &replayed;
        let request = self.send(&self.requests, &request.request_id, self.codec.encode(request));
        let responses = std::iter::once(primary)
            .chain(answers)
            .map(|event| self.send(&self.responses, &event.request_id, self.codec.encode(event)));
        let (request, responses) = tokio::join!(request, futures_util::future::join_all(responses));
        request && responses.into_iter().all(|sent| sent)
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Exchanges replayed and kept whole by the outlet: the request, the primary's answer
    /// and every target's.
    pub replayed: u64,
    /// Exchanges not replayed, by reason (`method`: not a safe method, nor opted in).
    pub refused: BTreeMap<&'static str, u64>,
    /// Exchanges replayed that the outlet could not keep whole (events the brokers did not
    /// all take).
    pub unkept: u64,
    /// From the first replay to the last answer.
    pub elapsed: Duration,
    /// From the first recorded request to the last.
    pub recorded_span: Duration,
}

impl Run {
    /// Checks the run: its id, its bounds, and its profile by the mirror's rules and the
    /// context's target policy.
    pub fn check(&self, context: &ReplayContext) -> Result<(), RunError> {
        let id_ok =
            !self.id.is_empty() && self.id.len() <= 64 && !self.id.contains(':') && RequestId::parse(&self.id).is_ok();
        if !id_ok {
            return Err(RunError::BadId(self.id.clone()));
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) || !(1..=MAX_RATE).contains(&self.rate) {
            return Err(RunError::Bounds);
        }
        let problems = self.profile.problems(context.policy());
        if problems.is_empty() { Ok(()) } else { Err(RunError::Profile(problems)) }
    }

    /// Replays `exchanges` (in recorded order) and hands each to `outlet`; `progress` is told
    /// each exchange done.
    pub async fn replay<O: Outlet>(
        &self,
        exchanges: Vec<Recorded>,
        context: &ReplayContext,
        outlet: &O,
        progress: &(dyn Fn() + Sync),
    ) -> Result<Summary, RunError> {
        self.check(context)?;
        let targets: Vec<Arc<Replayer>> = self
            .profile
            .targets
            .iter()
            .map(|t| Replayer::new(t.clone(), context).map(Arc::new))
            .collect::<Result<_, _>>()?;
        let mut summary = Summary {
            recorded_span: match (exchanges.first(), exchanges.last()) {
                (Some(first), Some(last)) => {
                    Duration::from_millis(u64::try_from(last.timestamp_ms() - first.timestamp_ms()).unwrap_or(0))
                }
                _ => Duration::ZERO,
            },
            ..Summary::default()
        };
        let first_ts = exchanges.first().map_or(0, Recorded::timestamp_ms);
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let limiter = governor::RateLimiter::direct(governor::Quota::per_second(
            NonZeroU32::new(self.rate).unwrap_or(NonZeroU32::MIN),
        ));
        let start = Instant::now();
        let mut running = JoinSet::new();
        for exchange in exchanges {
            let offset = Duration::from_millis(u64::try_from(exchange.timestamp_ms() - first_ts).unwrap_or(0));
            let Some((request, primary)) = self.rewrite(exchange) else {
                *summary.refused.entry("request_id").or_default() += 1;
                progress();
                continue;
            };
            let id = RequestId::parse(&request.request_id).map_err(|_| RunError::BadId(self.id.clone()))?;
            if !self.profile.replays(&request, &id, now_ms()) {
                *summary.refused.entry("method").or_default() += 1;
                progress();
                continue;
            }
            if let Speed::Scaled(factor) = self.speed {
                tokio::time::sleep_until(start + offset.div_f64(factor)).await;
            }
            limiter.until_ready().await;
            let Ok(slot) = slots.clone().acquire_owned().await else { break };
            let (targets, profile, outlet) = (targets.clone(), self.profile.clone(), outlet.clone());
            // The slot is held until the exchange is kept, so `concurrency` bounds what waits
            // on the outlet (the brokers, a write) as well as the replays.
            running.spawn(async move {
                let replayed = exchange_once(request, primary, &targets, &profile).await;
                let kept = outlet.keep(replayed).await;
                drop(slot);
                kept
            });
            while let Some(done) = running.try_join_next() {
                summary.count(done.unwrap_or(false));
                progress();
            }
        }
        while let Some(done) = running.join_next().await {
            summary.count(done.unwrap_or(false));
            progress();
        }
        summary.elapsed = start.elapsed();
        Ok(summary)
    }

    /// The recorded exchange as this run sends it: its own request id and time, tagged with
    /// the run; `None` when the run's id would make the request id too long.
    fn rewrite(&self, exchange: Recorded) -> Option<(RequestEvent, ResponseEvent)> {
        let Recorded { mut request, mut primary } = exchange;
        let id = format!("{}:{}", self.id, request.request_id);
        RequestId::parse(&id).ok()?;
        let now = now_ms();
        primary.timestamp_ms = now + (primary.timestamp_ms - request.timestamp_ms).max(0);
        primary.request_id.clone_from(&id);
        primary.run.clone_from(&self.id);
        request.request_id = id;
        request.run.clone_from(&self.id);
        request.timestamp_ms = now;
        Some((request, primary))
    }
}

impl Summary {
    fn count(&mut self, whole: bool) {
        if whole {
            self.replayed += 1;
        } else {
            self.unkept += 1;
        }
    }
}

/// Replays one exchange to every target at once.
async fn exchange_once(
    request: RequestEvent,
    primary: ResponseEvent,
    targets: &[Arc<Replayer>],
    profile: &Profile,
) -> Replayed {
    let answers = futures_util::future::join_all(targets.iter().map(|t| t.replay(&request, profile))).await;
    let answers =
        answers.into_iter().map(|answer| ResponseEvent { run: request.run.clone(), ..answer.event }).collect();
    Replayed { request, primary, answers }
}

#[cfg(test)]
mod tests {
    use super::Speed;

    #[test]
    fn speeds_are_a_bounded_factor_or_max() {
        assert_eq!("2x".parse::<Speed>(), Ok(Speed::Scaled(2.0)));
        assert_eq!("0.5".parse::<Speed>(), Ok(Speed::Scaled(0.5)));
        assert_eq!("MAX".parse::<Speed>(), Ok(Speed::Max));
        for bad in ["0x", "-1x", "fast", "1e9x", "NaNx"] {
            assert!(bad.parse::<Speed>().is_err(), "{bad}");
        }
    }
}
