//! The live profile table. Every replica follows the compacted profile topic from its
//! beginning, so a change made through any replica's admin API reaches all of them within
//! the time it takes to consume one record. Profiles from the config file are applied
//! first; a record on the topic with the same id wins.
//!
//! A record holds the profile (none once deleted) and its recent history: who changed
//! it, when, how, and the version before. A record is checked against this replica's
//! bounds and target policy before it applies, whoever wrote it to the topic.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::Consumer as _;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use shadowdiff_core::event::now_ms;
use shadowdiff_core::{RequestEvent, RequestId};
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::kafka::{KafkaConfig, Producer};

use super::Profile;
use crate::events;
use crate::vet::TargetPolicy;

/// Changes kept per profile; older ones fall off.
pub(crate) const HISTORY: usize = 50;

/// One change to a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Change {
    pub(crate) at_ms: i64,
    /// The token's name, or `sso:<user>` through the SSO proxy.
    pub(crate) by: String,
    pub(crate) action: Action,
    /// The version this change replaced; none for a profile's first version.
    pub(crate) previous: Option<Profile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Action {
    Put,
    Faults,
    Delete,
}

/// What the profile topic holds per id.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    profile: Option<Profile>,
    #[serde(default)]
    history: Vec<Change>,
}

#[derive(Debug)]
pub(crate) struct ProfileStore {
    profiles: RwLock<BTreeMap<String, Arc<Profile>>>,
    history: RwLock<BTreeMap<String, Vec<Change>>>,
    policy: Arc<TargetPolicy>,
}

impl ProfileStore {
    pub(crate) fn new(initial: &[Profile], policy: Arc<TargetPolicy>) -> Self {
        let now = now_ms();
        let store = Self { profiles: RwLock::default(), history: RwLock::default(), policy };
        for profile in initial {
            store.apply(&profile.id.clone(), Some(profile.clone().applied_at(now)), Vec::new());
        }
        store
    }

    pub(crate) fn policy(&self) -> &TargetPolicy {
        &self.policy
    }

    /// Upserts (`Some`) or deletes (`None`) a profile, with its history.
    fn apply(&self, id: &str, profile: Option<Profile>, history: Vec<Change>) {
        let mut profiles = self.profiles.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match profile {
            Some(profile) => profiles.insert(id.to_owned(), Arc::new(profile)),
            None => profiles.remove(id),
        };
        self.history.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id.to_owned(), history);
    }

    /// The changes to `id` that this replica knows, oldest first.
    pub(crate) fn history(&self, id: &str) -> Vec<Change> {
        self.history.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned().unwrap_or_default()
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Profile>> {
        self.profiles.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<Profile>> {
        self.profiles.read().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect()
    }

    /// The first profile (by id) that replays this request.
    pub(crate) fn matching(&self, request: &RequestEvent, id: &RequestId) -> Option<Arc<Profile>> {
        let now = now_ms();
        let profiles = self.profiles.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        profiles.values().find(|p| p.replays(request, id, now)).cloned()
    }
}

/// Follows the profile topic until shutdown, applying each record to `store`: a JSON
/// profile upserts, an empty record (tombstone) deletes, anything invalid is counted and
/// ignored.
pub(crate) fn follow(store: Arc<ProfileStore>, kafka: KafkaConfig, topic: String, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let consumer = match kafka.consumer(&format!("shadowdiff-profiles-{}", RequestId::mint())) {
            Ok(consumer) => consumer,
            Err(error) => return tracing::error!(%error, "cannot follow the profile topic"),
        };
        // Every replica reads the whole topic, so assign all partitions from the start
        // rather than share them in a group.
        let partitions = loop {
            let probe = (topic.clone(), consumer.client().fetch_metadata(Some(&topic), Duration::from_secs(5)));
            match probe.1 {
                Ok(metadata) if metadata.topics().first().is_some_and(|t| !t.partitions().is_empty()) => {
                    break metadata.topics()[0].partitions().iter().map(|p| p.id()).collect::<Vec<_>>();
                }
                _ => {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        let mut assignment = TopicPartitionList::new();
        for partition in partitions {
            let _ = assignment.add_partition_offset(&topic, partition, Offset::Beginning);
        }
        if let Err(error) = consumer.assign(&assignment) {
            return tracing::error!(%error, "cannot assign the profile topic");
        }
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => break,
                message = consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    shadowdiff_runtime::kafka::events::consume_failed("mirror", &error);
                    continue;
                }
            };
            let Some(id) = message.key().map(|k| String::from_utf8_lossy(k).into_owned()) else { continue };
            // A tombstone deletes the profile and its history; a record without a profile
            // deletes it and keeps the history.
            let record = match message.payload() {
                None | Some([]) => Ok(Record { profile: None, history: Vec::new() }),
                Some(payload) => serde_json::from_slice::<Record>(payload),
            };
            match record {
                Ok(Record { profile: None, history }) if history.len() <= HISTORY => {
                    store.apply(&id, None, history);
                    events::profile_changed(&id, "deleted");
                }
                Ok(Record { profile: Some(profile), history })
                    if profile.problems(store.policy()).is_empty() && profile.id == id && history.len() <= HISTORY =>
                {
                    store.apply(&id, Some(profile), history);
                    events::profile_changed(&id, "applied");
                }
                Ok(_) | Err(_) => events::profile_rejected(&id),
            }
        }
    });
}

/// Writes profile changes to the topic; the store learns of them by following it.
#[derive(Clone)]
pub(crate) struct ProfileWriter {
    producer: Producer,
    topic: String,
}

impl std::fmt::Debug for ProfileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileWriter").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl ProfileWriter {
    pub(crate) fn new(producer: Producer, topic: String) -> Self {
        Self { producer, topic }
    }

    /// Writes `profile` (or its deletion) with `history` and `change` appended.
    pub(crate) async fn write(
        &self,
        id: &str,
        profile: Option<&Profile>,
        mut history: Vec<Change>,
        change: Change,
    ) -> Result<(), rdkafka::error::KafkaError> {
        history.push(change);
        let excess = history.len().saturating_sub(HISTORY);
        history.drain(..excess);
        let record = Record { profile: profile.cloned(), history };
        // Serializing our own struct to JSON cannot fail.
        let payload = serde_json::to_vec(&record).unwrap_or_default();
        let record = FutureRecord::to(&self.topic).key(id).payload(&payload);
        self.producer.send(record, Duration::from_secs(10)).await.map(|_| ()).map_err(|(e, _)| e)
    }
}
