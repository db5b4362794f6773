//! Kafka clients built the same way in every service, plus topic provisioning and the
//! dead-letter publisher.
//!
//! Only standard Kafka APIs are used, so the same code runs against Apache Kafka, Redpanda
//! or tansu; anything broker-specific goes in `[kafka.properties]`, which is passed to
//! librdkafka verbatim and wins over the defaults set here.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

use crate::config::Secret;

use crate::config::serde_duration;

pub mod consume;
mod context;
mod dead_letter;
pub mod events;
mod offsets;

pub use context::{Consumer, GroupContext, KafkaContext, Producer, Reader};
pub use dead_letter::{DEFAULT_MAX_PAYLOAD_BYTES, DeadLetter, Delivery, Letter, dead_letter_headers};
pub use offsets::{Hold, Offsets, Position};

/// How long a prompt consumer or reader lets the broker hold a fetch.
const PROMPT_FETCH_WAIT: Duration = Duration::from_millis(10);

/// `[kafka]`: how to reach the brokers.
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// How long the producer waits to fill a batch. Unset, 5 ms, unless the service picks
    /// its own default ([`KafkaConfig::linger_by_default`]).
    #[serde(default, rename = "linger_ms", deserialize_with = "serde_duration::millis_opt::deserialize")]
    pub linger: Option<Duration>,
    /// How long a message may wait for delivery before it counts as failed.
    #[serde(default = "default_message_timeout", rename = "message_timeout_ms", with = "serde_duration::millis")]
    pub message_timeout: Duration,
    /// Extra librdkafka properties (SASL, TLS, broker quirks), applied last. Values may be
    /// credentials (`sasl.password`), so none is ever printed.
    #[serde(default)]
    pub properties: BTreeMap<String, Secret<String>>,
}

fn default_brokers() -> String {
    "127.0.0.1:9092".to_owned()
}
/// Short, because callers that await a delivery (dead letters, the mirror's replays) wait
/// out the linger each time.
const DEFAULT_LINGER: Duration = Duration::from_millis(5);
const fn default_message_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: default_brokers(),
            linger: None,
            message_timeout: default_message_timeout(),
            properties: BTreeMap::new(),
        }
    }
}

/// `[topics]`: the topic names, shared by every service so that they agree.
#[derive(Debug, Clone, Deserialize)]
pub struct TopicsConfig {
    #[serde(default = "default_requests")]
    pub requests: String,
    #[serde(default = "default_responses")]
    pub responses: String,
    #[serde(default = "default_dead_letter")]
    pub dead_letter: String,
    /// Outbound calls captured by taps in egress mode, keyed by the originating request id.
    #[serde(default = "default_outbound")]
    pub outbound: String,
    /// Mirror profiles, compacted, one partition, keyed by profile id.
    #[serde(default = "default_profiles")]
    pub profiles: String,
    /// Partition count used when this service creates the topics. Requests and responses
    /// must have the same count: the correlator relies on them being co-partitioned.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    #[serde(default = "default_replication")]
    pub replication: i32,
    /// Create missing topics at start-up (admin API); turn off where topics are managed.
    #[serde(default = "default_true")]
    pub create: bool,
}

fn default_requests() -> String {
    "shadowdiff.requests".to_owned()
}
fn default_responses() -> String {
    "shadowdiff.responses".to_owned()
}
fn default_dead_letter() -> String {
    "shadowdiff.dead-letter".to_owned()
}
fn default_outbound() -> String {
    "shadowdiff.outbound".to_owned()
}
fn default_profiles() -> String {
    "shadowdiff.profiles".to_owned()
}
const fn default_partitions() -> i32 {
    6
}
const fn default_replication() -> i32 {
    1
}
const fn default_true() -> bool {
    true
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            requests: default_requests(),
            responses: default_responses(),
            dead_letter: default_dead_letter(),
            outbound: default_outbound(),
            profiles: default_profiles(),
            partitions: default_partitions(),
            replication: default_replication(),
            create: true,
        }
    }
}

impl crate::config::Validate for TopicsConfig {
    fn validate(&self, errors: &mut Vec<crate::config::ConfigError>) {
        use crate::config::ConfigError;
        if self.partitions < 1 {
            errors.push(ConfigError::rule("topics.partitions", "must be at least 1"));
        }
        if self.replication < 1 {
            errors.push(ConfigError::rule("topics.replication", "must be at least 1"));
        }
        if self.requests == self.responses {
            errors.push(ConfigError::rule("topics.responses", "must differ from topics.requests"));
        }
    }
}

impl KafkaConfig {
    /// The same settings, lingering `linger` unless `linger_ms` was set.
    #[must_use]
    pub fn linger_by_default(mut self, linger: Duration) -> Self {
        self.linger.get_or_insert(linger);
        self
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config
    }

    fn apply_overrides(&self, config: &mut ClientConfig) {
        for (key, value) in &self.properties {
            config.set(key, value.expose());
        }
    }

    /// An idempotent, lz4-compressing producer that partitions keys like the Java client
    /// (`murmur2_random`), so co-partitioning holds whichever client produced.
    pub fn producer(&self) -> Result<Producer, KafkaError> {
        self.producer_config().create_with_context(KafkaContext)
    }

    /// The settings of [`producer`](Self::producer), for a producer with its own context
    /// (the tap counts deliveries in a callback rather than awaiting each one).
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.client_config();
        config
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", self.linger.unwrap_or(DEFAULT_LINGER).as_millis().to_string())
            .set("message.timeout.ms", self.message_timeout.as_millis().to_string());
        self.apply_overrides(&mut config);
        config
    }

    /// A group consumer that never commits on its own: offsets are stored or committed by
    /// the service only after the downstream write is acknowledged.
    pub fn consumer(&self, group: &str) -> Result<Consumer, KafkaError> {
        self.group_consumer(group, None)
    }

    /// [`Self::consumer`], for a service that acts on each event as it comes (the mirror's
    /// replays). A broker holds a fetch until data arrives or `fetch.wait.max.ms` passes
    /// (librdkafka: 500 ms; some brokers hold it the whole time), so events would arrive,
    /// and be replayed, in bursts, and a burst's replays queue inside the targets whose
    /// latency they measure. A 10 ms wait keeps the flow as even as the traffic, at the cost
    /// of more idle fetches.
    pub fn prompt_consumer(&self, group: &str) -> Result<Consumer, KafkaError> {
        self.group_consumer(group, Some(PROMPT_FETCH_WAIT))
    }

    fn group_consumer(&self, group: &str, fetch_wait: Option<Duration>) -> Result<Consumer, KafkaError> {
        let mut config = self.client_config();
        if let Some(wait) = fetch_wait {
            config.set("fetch.wait.max.ms", wait.as_millis().to_string());
        }
        config
            .set("group.id", group)
            // Every member gets the same partition numbers of every topic it reads: a
            // request and its responses, keyed alike, meet in one correlator replica.
            .set("partition.assignment.strategy", "range")
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // For the consumer-lag gauge (`KafkaContext::stats`).
            .set("statistics.interval.ms", "5000");
        self.apply_overrides(&mut config);
        config.create_with_context(GroupContext::default())
    }

    /// A consumer that joins no group: it reads the partitions it is assigned from the
    /// offsets it is given and never commits, so reading a window of old events neither
    /// joins nor moves any service's consumer group.
    pub fn reader(&self) -> Result<Reader, KafkaError> {
        self.reader_with(None)
    }

    /// [`Self::reader`], for a service that answers from what it reads as it comes (a stub
    /// egress tap): fetches are held 10 ms at most, as [`Self::prompt_consumer`]'s are.
    pub fn prompt_reader(&self) -> Result<Reader, KafkaError> {
        self.reader_with(Some(PROMPT_FETCH_WAIT))
    }

    fn reader_with(&self, fetch_wait: Option<Duration>) -> Result<Reader, KafkaError> {
        let mut config = self.client_config();
        if let Some(wait) = fetch_wait {
            config.set("fetch.wait.max.ms", wait.as_millis().to_string());
        }
        config
            // librdkafka assigns partitions only to a consumer with a group id; assigning
            // never joins the group, and nothing is committed under it.
            .set("group.id", "shadowdiff-reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // An offset that retention removed meanwhile reads on from the oldest one left.
            .set("auto.offset.reset", "earliest")
            // Tells the reader it has reached a partition's end.
            .set("enable.partition.eof", "true");
        self.apply_overrides(&mut config);
        config.create_with_context(KafkaContext)
    }

    /// Creates each topic that does not exist yet. Existing topics are left as they are.
    pub async fn ensure_topics(&self, topics: &TopicsConfig) -> Result<(), TopicError> {
        let mut config = self.client_config();
        self.apply_overrides(&mut config);
        let admin: AdminClient<KafkaContext> = config.create_with_context(KafkaContext).map_err(TopicError::Client)?;
        let names = [&topics.requests, &topics.responses, &topics.dead_letter, &topics.outbound];
        let replication = || TopicReplication::Fixed(topics.replication);
        let mut new: Vec<_> = names.iter().map(|name| NewTopic::new(name, topics.partitions, replication())).collect();
        // Profiles are a small table: one ordered partition, compacted to the latest per id.
        new.push(NewTopic::new(&topics.profiles, 1, replication()).set("cleanup.policy", "compact"));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin.create_topics(&new, &options).await.map_err(TopicError::Client)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(TopicError::Create { topic, code }),
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("kafka admin client: {0}")]
    Client(#[source] KafkaError),
    #[error("create topic {topic}: {code}")]
    Create { topic: String, code: RDKafkaErrorCode },
}
