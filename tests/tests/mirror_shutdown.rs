//! The mirror as its own process, stopped while replays are in flight. On SIGTERM it lets
//! them finish, publishes their events and commits: a replica started after it replays
//! none of them again. Its commits never pass a request whose event is not yet
//! acknowledged, even when later ones are: SIGKILLed, it leaves those to the next replica,
//! which replays them again, so none is lost (at least once, as documented).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::Message as _;
use shadowdiff_core::{EventCodec, ResponseEvent};
use shadowdiff_runtime::kafka::KafkaConfig;
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::kafka::read_until;
use shadowdiff_tests::mirror::{MirrorTopics, Received, publish, publish_to, request_event};
use shadowdiff_tests::pipeline::TEST_HMAC_KEY;
use shadowdiff_tests::ports::ReservedPort;
use shadowdiff_tests::{eventually, process, unique};

const DEADLINE: Duration = Duration::from_secs(90);

/// One mirror configuration, run as processes one after another in the same group.
struct MirrorProcess {
    config: PathBuf,
    log: PathBuf,
    admin: ReservedPort,
    dir: PathBuf,
}

impl MirrorProcess {
    fn new(infra: &Infra, topics: &MirrorTopics, target: std::net::SocketAddr) -> Self {
        let dir = std::env::temp_dir().join(unique("mirror-process"));
        std::fs::create_dir_all(&dir).unwrap();
        let admin = ReservedPort::new();
        let config = dir.join("mirror.toml");
        std::fs::write(
            &config,
            format!(
                "[mirror]\ngroup_id = \"{group}\"\nallowed_targets = [\"127.0.0.1\"]\nallow_loopback = true\n\
                 drain_timeout_ms = 20000\n\
                 [[mirror.profiles]]\nid = \"slow\"\n\
                 [[mirror.profiles.targets]]\nname = \"v2\"\nrole = \"candidate\"\nbase_url = \"http://{target}\"\n\
                 timeout_ms = 20000\nmax_concurrency = 64\n\
                 [mirror.redaction]\nhmac_key = \"{TEST_HMAC_KEY}\"\n\
                 {auth}\n\
                 [kafka]\nbrokers = \"{brokers}\"\nlinger_ms = 1\n\
                 # A killed member never says goodbye; a short session lets the next one take over sooner.\n\
                 properties = {{ \"session.timeout.ms\" = \"{session}\" }}\n\
                 [topics]\nrequests = \"{requests}\"\nresponses = \"{responses}\"\nprofiles = \"{profiles}\"\n\
                 dead_letter = \"{requests}.dead-letter\"\noutbound = \"{requests}.outbound\"\npartitions = 2\n\
                 [admin]\nlisten = \"{admin}\"\n",
                group = topics.group,
                auth = shadowdiff_tests::auth::auth_toml(),
                brokers = infra.brokers,
                requests = topics.requests,
                responses = topics.responses,
                profiles = topics.profiles,
                admin = admin.addr(),
                session = process::SESSION_TIMEOUT_MS,
            ),
        )
        .unwrap();
        Self { log: dir.join("mirror.log"), config, admin, dir }
    }

    /// Starts a replica and waits until its admin port answers (its topics then exist).
    async fn start(&self) -> process::KillOnDrop {
        let binary = process::binary("shadowdiff-mirror", "shadowdiff-mirror");
        let mut child = process::KillOnDrop(process::spawn(&binary, &self.config, &self.log));
        let url = format!("http://{}/healthz", self.admin.addr());
        let log = self.log.display().to_string();
        let deadline = std::time::Instant::now() + DEADLINE;
        while let Err(error) = reqwest::get(&url).await {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the mirror exited with {status} while starting; log in {log}");
            }
            assert!(std::time::Instant::now() < deadline, "the mirror never served /healthz ({error}); log in {log}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        child
    }

    fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for MirrorProcess {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A replay target that records every request and holds those to `/slow` until released:
/// they are in flight for exactly as long as the scenario needs.
struct HeldTarget {
    addr: std::net::SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    release: tokio::sync::watch::Sender<bool>,
}

impl HeldTarget {
    async fn start() -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let (release, released) = tokio::sync::watch::channel(false);
        let log = received.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (log, mut released) = (log.clone(), released.clone());
            async move {
                log.lock().unwrap().push(Received {
                    at: std::time::Instant::now(),
                    method: request.method().to_string(),
                    path: request.uri().path().to_owned(),
                    headers: request.headers().clone(),
                });
                if request.uri().path() == "/slow" {
                    let _ = released.wait_for(|r| *r).await;
                }
                "{\"ok\":true}"
            }
        });
        let addr = shadowdiff_tests::serve(app).await;
        Self { addr, received, release }
    }

    fn release(&self) {
        self.release.send_replace(true);
    }

    /// How many times it received each request id.
    fn replays(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for request in self.received.lock().unwrap().iter() {
            if let Some(id) = request.headers.get("x-request-id") {
                *counts.entry(id.to_str().unwrap().to_owned()).or_default() += 1;
            }
        }
        counts
    }

    /// Waits until every one of `ids` has reached it at least once.
    async fn wait_for(&self, ids: &[String]) {
        eventually("the replays to reach the target", DEADLINE, || async {
            let counts = self.replays();
            let missing: Vec<&String> = ids.iter().filter(|id| !counts.contains_key(*id)).collect();
            if missing.is_empty() { Ok(()) } else { Err(format!("not yet at the target: {missing:?}")) }
        })
        .await;
    }
}

/// The response events on `topic` once `done` holds for them, with the partition of each.
async fn responses(
    brokers: &str,
    topic: &str,
    done: impl Fn(&[(i32, ResponseEvent)]) -> bool,
) -> Vec<(i32, ResponseEvent)> {
    let codec = EventCodec::new().unwrap();
    let decode = |messages: &[rdkafka::message::OwnedMessage]| -> Vec<(i32, ResponseEvent)> {
        messages.iter().filter_map(|m| Some((m.partition(), codec.decode(m.payload()?).ok()?))).collect()
    };
    let messages = read_until(brokers, topic, DEADLINE, |messages| done(&decode(messages))).await;
    decode(&messages)
}

/// Whether every one of `ids` has a response event that answered 200.
fn answered(events: &[(i32, ResponseEvent)], ids: &[String]) -> bool {
    ids.iter().all(|id| events.iter().any(|(_, e)| &e.request_id == id && e.status == Some(200)))
}

/// The group's committed offset of each partition of `topic` (0 when none is committed:
/// the group then starts at the beginning).
async fn committed(brokers: &str, group: &str, topic: &str) -> [i64; 2] {
    let (brokers, group, topic) = (brokers.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::Consumer as _;
        // Never subscribes, so it never joins the group: it only reads the group's offsets.
        let reader: shadowdiff_runtime::kafka::Consumer =
            KafkaConfig { brokers, ..KafkaConfig::default() }.consumer(&group).unwrap();
        let mut partitions = rdkafka::TopicPartitionList::new();
        partitions.add_partition(&topic, 0);
        partitions.add_partition(&topic, 1);
        let offsets = reader.committed_offsets(partitions, Duration::from_secs(10)).unwrap();
        [0, 1].map(|p| match offsets.find_partition(&topic, p).map(|e| e.offset()) {
            Some(rdkafka::Offset::Offset(n)) => n,
            _ => 0,
        })
    })
    .await
    .unwrap()
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn requests(ids: &[String], path: &str) -> Vec<shadowdiff_core::RequestEvent> {
    ids.iter().map(|id| request_event(id, "GET", path)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_mirror_drains_its_replays_and_commits_them() {
    let infra = Infra::get().await;
    let target = HeldTarget::start().await;
    let topics = MirrorTopics::new();
    let mirror = MirrorProcess::new(&infra, &topics, target.addr);
    let mut first = mirror.start().await;

    let drained = ids("drain", 20);
    publish(&infra.brokers, &topics.requests, &requests(&drained, "/slow")).await;
    // SIGTERM while every replay is in flight, held at the target; released only then.
    target.wait_for(&drained).await;
    process::sigterm(&first);
    target.release();
    let status = process::wait_for_exit(&mut first, Duration::from_secs(60)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "a terminated mirror stops cleanly, not {status:?}; log in {}",
        mirror.log().display()
    );
    // Its replays finished and were published before it exited.
    let published = responses(&infra.brokers, &topics.responses, |events| answered(events, &drained)).await;
    assert_eq!(published.len(), drained.len(), "one event per drained replay: {published:#?}");

    // The next replica starts after the committed offsets: markers in every partition come
    // back, and none of the drained requests is replayed again before them.
    let mut second = mirror.start().await;
    let markers = ids("marker", 2);
    for (partition, marker) in markers.iter().enumerate() {
        let partition = Some(i32::try_from(partition).unwrap());
        publish_to(&infra.brokers, &topics.requests, partition, &requests(std::slice::from_ref(marker), "/x")).await;
    }
    let published = responses(&infra.brokers, &topics.responses, |events| answered(events, &markers)).await;
    let counts = target.replays();
    for id in drained.iter().chain(&markers) {
        assert_eq!(counts.get(id), Some(&1), "{id} replayed exactly once: {counts:?}");
    }
    assert_eq!(published.len(), drained.len() + markers.len(), "no event published twice: {published:#?}");
    process::kill(&mut second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_mirror_had_committed_only_what_was_published() {
    let infra = Infra::get().await;
    let target = HeldTarget::start().await;
    let topics = MirrorTopics::new();
    let mirror = MirrorProcess::new(&infra, &topics, target.addr);
    let mut first = mirror.start().await;

    // Partition 0: slow replays (held at the target), then fast ones acknowledged at once.
    // Partition 1: fast ones only.
    let (slow, fast_0, fast_1) = (ids("slow", 5), ids("fast0", 3), ids("fast1", 3));
    publish_to(&infra.brokers, &topics.requests, Some(0), &requests(&slow, "/slow")).await;
    publish_to(&infra.brokers, &topics.requests, Some(0), &requests(&fast_0, "/fast")).await;
    publish_to(&infra.brokers, &topics.requests, Some(1), &requests(&fast_1, "/fast")).await;
    target.wait_for(&slow).await;
    let fast: Vec<String> = fast_0.iter().chain(&fast_1).cloned().collect();
    responses(&infra.brokers, &topics.responses, |events| answered(events, &fast)).await;
    // A commit has run since the fast replays were acknowledged: partition 1 is committed
    // past them. Partition 0 is not committed past the slow requests still in flight,
    // though the fast ones behind them are acknowledged too.
    let offsets = eventually("partition 1 to be committed", DEADLINE, || async {
        let offsets = committed(&infra.brokers, &topics.group, &topics.requests).await;
        if offsets[1] == 3 { Ok(offsets) } else { Err(format!("committed {offsets:?}")) }
    })
    .await;
    assert_eq!(offsets[0], 0, "nothing committed past a replay in flight: {offsets:?}");
    process::kill(&mut first); // SIGKILL: no drain, no publish, no commit
    target.release();
    process::until_session_expired(std::time::Instant::now()).await;

    // The next replica replays every request from partition 0 again, each with its event,
    // and nothing from partition 1 (a marker after them proves it read on from there).
    let mut second = mirror.start().await;
    let marker = ids("marker", 1);
    publish_to(&infra.brokers, &topics.requests, Some(1), &requests(&marker, "/x")).await;
    let again: Vec<String> = slow.iter().chain(&marker).cloned().collect();
    let published = responses(&infra.brokers, &topics.responses, |events| answered(events, &again)).await;
    let counts = target.replays();
    for id in slow.iter().chain(&fast_0) {
        assert_eq!(counts.get(id), Some(&2), "{id}: once by the killed replica, once after it: {counts:?}");
    }
    for id in fast_1.iter().chain(&marker) {
        assert_eq!(counts.get(id), Some(&1), "{id}: committed, so replayed once: {counts:?}");
    }
    let slow_events = published.iter().filter(|(_, e)| e.request_id.starts_with("slow-")).count();
    assert_eq!(slow_events, slow.len(), "the killed replica published none of its slow replays");
    process::kill(&mut second);
}
