//! The live profile table. Every replica follows the compacted profile topic from its
//! beginning, so a change made through any replica's admin API reaches all of them within
//! the time it takes to consume one record. Profiles from the config file are applied
//! first; a record on the topic with the same id wins.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::Consumer as _;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use shadowdiff_core::event::now_ms;
use shadowdiff_core::{RequestEvent, RequestId};
use shadowdiff_runtime::CancellationToken;
use shadowdiff_runtime::kafka::{KafkaConfig, Producer};

use super::Profile;
use crate::events;

#[derive(Debug, Default)]
pub(crate) struct ProfileStore {
    profiles: RwLock<BTreeMap<String, Arc<Profile>>>,
}

impl ProfileStore {
    pub(crate) fn new(initial: &[Profile]) -> Self {
        let now = now_ms();
        let store = Self::default();
        for profile in initial {
            store.apply(&profile.id.clone(), Some(profile.clone().applied_at(now)));
        }
        store
    }

    /// Upserts (`Some`) or deletes (`None`) a profile.
    pub(crate) fn apply(&self, id: &str, profile: Option<Profile>) {
        let mut profiles = self.profiles.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match profile {
            Some(profile) => profiles.insert(id.to_owned(), Arc::new(profile)),
            None => profiles.remove(id),
        };
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
            match message.payload() {
                None | Some([]) => {
                    store.apply(&id, None);
                    events::profile_changed(&id, "deleted");
                }
                Some(payload) => match serde_json::from_slice::<Profile>(payload) {
                    Ok(profile) if profile.problems().is_empty() && profile.id == id => {
                        store.apply(&id, Some(profile));
                        events::profile_changed(&id, "applied");
                    }
                    Ok(_) | Err(_) => events::profile_rejected(&id),
                },
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

    pub(crate) async fn put(&self, profile: &Profile) -> Result<(), rdkafka::error::KafkaError> {
        // Serializing our own struct to JSON cannot fail.
        let payload = serde_json::to_vec(profile).unwrap_or_default();
        let record = FutureRecord::to(&self.topic).key(&profile.id).payload(&payload);
        self.producer.send(record, Duration::from_secs(10)).await.map(|_| ()).map_err(|(e, _)| e)
    }

    pub(crate) async fn delete(&self, id: &str) -> Result<(), rdkafka::error::KafkaError> {
        let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic).key(id);
        self.producer.send(record, Duration::from_secs(10)).await.map(|_| ()).map_err(|(e, _)| e)
    }
}
