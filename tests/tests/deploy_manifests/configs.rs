//! Each shadowdiff service's config, loaded by that service's own loader, and what it says
//! about the network around the service: where it listens, what it calls, who may call it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rdkafka::producer::BaseProducer;
use serde::de::{DeserializeOwned, Visitor};
use shadowdiff_correlator::CorrelatorConfig;
use shadowdiff_mirror::MirrorConfig;
use shadowdiff_mirror::vet::TargetPolicy;
use shadowdiff_runtime::auth::{Auth, AuthConfig, Scope};
use shadowdiff_runtime::clickhouse::ClickHouseConfig;
use shadowdiff_runtime::config::load_str;
use shadowdiff_runtime::kafka::KafkaConfig;
use shadowdiff_runtime::redaction::RedactionConfig;
use shadowdiff_tap::TapConfig;
use shadowdiff_tap::config::Mode;
use shadowdiff_verdict::VerdictConfig;

use crate::tools::str_of;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Service {
    Tap,
    Mirror,
    Correlator,
    Verdict,
}

pub(crate) const SERVICES: [Service; 4] = [Service::Tap, Service::Mirror, Service::Correlator, Service::Verdict];

/// A shadow or primary that a service sends requests to.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) url: String,
    /// The mirror's bound on replays to it.
    pub(crate) rate_per_sec: Option<u32>,
    /// How long the mirror waits for its answer.
    pub(crate) timeout: Option<Duration>,
}

/// A service that reads Kafka as a consumer group: the mirror, the correlator.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerGroup {
    pub(crate) group_id: String,
    /// The topics it subscribes to, from the service's own config type.
    pub(crate) topics: Vec<String>,
}

/// What a service's loaded config says about the network around it.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) service: Service,
    pub(crate) admin: SocketAddr,
    /// Where it serves clients: the tap's proxy, the verdict API.
    pub(crate) serves: Option<SocketAddr>,
    pub(crate) upstreams: Vec<Upstream>,
    pub(crate) kafka_brokers: Option<String>,
    /// `[kafka.properties]`, as librdkafka gets them (SASL, TLS, overrides).
    pub(crate) kafka_properties: BTreeMap<String, String>,
    /// Its consumer group, if it reads as one.
    pub(crate) consumer: Option<ConsumerGroup>,
    /// `[clickhouse]`: where its rows are, as whom, on one server or a cluster.
    pub(crate) clickhouse: Option<ClickHouseConfig>,
    pub(crate) partitions: Option<i32>,
    /// Who may call its API: the verdict API, the mirror's profile API.
    pub(crate) auth: Option<AuthConfig>,
    /// What it redacts, and with which keys: the taps and the mirror.
    pub(crate) redaction: Option<RedactionConfig>,
    /// Where the mirror may replay to.
    pub(crate) targets: Option<TargetPolicy>,
    /// The mirror's admin API the verdict's console calls (`[console] mirror_url`).
    pub(crate) console_mirror: Option<String>,
    /// Where a tap sits (`[tap.mode]`).
    pub(crate) tap_mode: Option<Mode>,
}

impl Loaded {
    /// Whether its API accepts `token` for `scope`.
    pub(crate) fn accepts(&self, token: &str, scope: Scope) -> bool {
        let auth = self.auth.as_ref().unwrap_or_else(|| panic!("{} has no API", self.service.binary()));
        Auth::new(auth, self.service.binary()).token(token, scope).is_ok()
    }

    /// Its API asks for credentials: not open, with tokens or an SSO proxy.
    pub(crate) fn closed(&self) -> bool {
        self.auth.as_ref().is_some_and(|a| !a.open && (!a.tokens.is_empty() || a.proxy.is_some()))
    }

    pub(crate) fn clickhouse_url(&self) -> Option<&str> {
        self.clickhouse.as_ref().map(|c| c.url.as_str())
    }

    pub(crate) fn listens(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.admin).chain(self.serves)
    }

    pub(crate) fn candidates(&self) -> impl Iterator<Item = &Upstream> {
        self.upstreams.iter().filter(|u| u.role == "candidate")
    }

    /// An egress tap: the HTTP proxy of its pod's outbound calls.
    pub(crate) fn egress(&self) -> bool {
        matches!(self.tap_mode, Some(Mode::Egress { .. }))
    }
}

/// One environment variable as a container or compose service gets it.
#[derive(Debug, Clone)]
pub(crate) struct EnvVar {
    pub(crate) name: String,
    pub(crate) value: String,
    /// From an environment shared by several services (`envFrom`), where a section this
    /// service lacks is meant for another one.
    pub(crate) shared: bool,
}

impl Service {
    pub(crate) fn binary(self) -> &'static str {
        match self {
            Self::Tap => "shadowdiff-tap",
            Self::Mirror => "shadowdiff-mirror",
            Self::Correlator => "shadowdiff-correlator",
            Self::Verdict => "shadowdiff-verdict",
        }
    }

    pub(crate) fn of_binary(binary: &str) -> Option<Self> {
        SERVICES.into_iter().find(|s| s.binary() == binary)
    }

    /// The top-level sections of the service's config, from its serde struct.
    fn sections(self) -> &'static [&'static str] {
        match self {
            Self::Tap => fields_of::<TapConfig>(),
            Self::Mirror => fields_of::<MirrorConfig>(),
            Self::Correlator => fields_of::<CorrelatorConfig>(),
            Self::Verdict => fields_of::<VerdictConfig>(),
        }
    }

    /// Loads the config exactly as the service does at start-up: `text`, then the overrides.
    pub(crate) fn load(self, text: &str, name: &str, env: &[EnvVar]) -> Result<Loaded, String> {
        let overrides: Vec<(String, String)> = env.iter().map(|v| (v.name.clone(), v.value.clone())).collect();
        match self {
            Self::Tap => {
                let c: TapConfig = load_str(text, name, overrides).map_err(|e| e.to_string())?;
                kafka_accepts(&c.kafka)?;
                let upstreams = c.tap.upstream.iter().map(|url| Upstream {
                    name: "upstream".into(),
                    role: "primary".into(),
                    url: url.to_string(),
                    rate_per_sec: None,
                    timeout: None,
                });
                Ok(Loaded {
                    service: self,
                    admin: c.admin.listen,
                    serves: Some(c.tap.listen),
                    upstreams: upstreams.collect(),
                    kafka_brokers: Some(c.kafka.brokers.clone()),
                    kafka_properties: properties(&c.kafka),
                    consumer: None,
                    clickhouse: None,
                    partitions: Some(c.topics.partitions),
                    auth: None,
                    redaction: Some(c.tap.redaction.clone()),
                    targets: None,
                    console_mirror: None,
                    tap_mode: Some(c.tap.mode.clone()),
                })
            }
            Self::Mirror => {
                let c: MirrorConfig = load_str(text, name, overrides).map_err(|e| e.to_string())?;
                kafka_accepts(&c.kafka)?;
                let targets = c.mirror.profiles.iter().flat_map(|p| &p.targets);
                let upstreams = targets.map(|t| Upstream {
                    name: t.name.clone(),
                    role: str_of(&serde_json::to_value(t.role).unwrap()).to_owned(),
                    url: t.base_url.to_string(),
                    rate_per_sec: t.rate_per_sec,
                    timeout: Some(t.timeout()),
                });
                Ok(Loaded {
                    service: self,
                    admin: c.admin.listen,
                    serves: None,
                    upstreams: upstreams.collect(),
                    kafka_brokers: Some(c.kafka.brokers.clone()),
                    kafka_properties: properties(&c.kafka),
                    consumer: Some(ConsumerGroup {
                        group_id: c.mirror.group_id.clone(),
                        topics: c.consumed_topics().map(str::to_owned).to_vec(),
                    }),
                    clickhouse: None,
                    partitions: Some(c.topics.partitions),
                    auth: Some(c.auth.clone()),
                    redaction: Some(c.mirror.redaction.clone()),
                    targets: Some(c.mirror.policy()),
                    console_mirror: None,
                    tap_mode: None,
                })
            }
            Self::Correlator => {
                let c: CorrelatorConfig = load_str(text, name, overrides).map_err(|e| e.to_string())?;
                kafka_accepts(&c.kafka)?;
                Ok(Loaded {
                    service: self,
                    admin: c.admin.listen,
                    serves: None,
                    upstreams: Vec::new(),
                    kafka_brokers: Some(c.kafka.brokers.clone()),
                    kafka_properties: properties(&c.kafka),
                    consumer: Some(ConsumerGroup {
                        group_id: c.correlator.group_id.clone(),
                        topics: c.consumed_topics().map(str::to_owned).to_vec(),
                    }),
                    clickhouse: Some(c.clickhouse.clone()),
                    partitions: Some(c.topics.partitions),
                    auth: None,
                    redaction: None,
                    targets: None,
                    console_mirror: None,
                    tap_mode: None,
                })
            }
            Self::Verdict => {
                let c: VerdictConfig = load_str(text, name, overrides).map_err(|e| e.to_string())?;
                Ok(Loaded {
                    service: self,
                    admin: c.admin.listen,
                    serves: Some(c.verdict.listen),
                    upstreams: Vec::new(),
                    kafka_brokers: None,
                    kafka_properties: BTreeMap::new(),
                    consumer: None,
                    clickhouse: Some(c.clickhouse.clone()),
                    partitions: None,
                    auth: Some(c.auth.clone()),
                    redaction: None,
                    targets: None,
                    console_mirror: c.console.mirror_url.clone(),
                    tap_mode: None,
                })
            }
        }
    }

    /// [`Self::load`] after checking that every override names a section of this service (or,
    /// for a shared environment, of some service); panics with every problem found.
    pub(crate) fn load_checked(self, text: &str, name: &str, env: &[EnvVar]) -> Loaded {
        let mut problems = Vec::new();
        for var in env {
            let Some(rest) = var.name.strip_prefix("SHADOWDIFF_") else { continue };
            let Some((section, _)) = rest.split_once('_').filter(|(s, k)| !s.is_empty() && !k.is_empty()) else {
                problems.push(format!("{}: not of the form SHADOWDIFF_<SECTION>_<KEY>", var.name));
                continue;
            };
            let section = section.to_ascii_lowercase();
            let has = |service: Service| service.sections().contains(&section.as_str());
            if !SERVICES.into_iter().any(has) {
                problems.push(format!("{}: no service has a [{section}] section", var.name));
            } else if !var.shared && !has(self) {
                problems.push(format!("{}: {} has no [{section}] section", var.name, self.binary()));
            }
        }
        match self.load(text, name, env) {
            Ok(loaded) if problems.is_empty() => loaded,
            Ok(_) => panic!("{name} for {}:\n  {}", self.binary(), problems.join("\n  ")),
            Err(errors) => panic!("{name} for {}: {errors}\n  {}", self.binary(), problems.join("\n  ")),
        }
    }
}

/// librdkafka builds a client from `[kafka.properties]`: known names, valid values (SASL_SSL,
/// for one, needs rdkafka's `ssl` feature, which the workspace does not build) and a SASL
/// mechanism it has. The client is pointed at a closed local port, so nothing leaves the host.
fn kafka_accepts(kafka: &KafkaConfig) -> Result<(), String> {
    let mut config = kafka.producer_config();
    config.set("bootstrap.servers", "127.0.0.1:1");
    config.create::<BaseProducer>().map(drop).map_err(|e| format!("kafka.properties: {e}"))
}

fn properties(kafka: &KafkaConfig) -> BTreeMap<String, String> {
    kafka.properties.iter().map(|(k, v)| (k.clone(), v.expose().clone())).collect()
}

/// The field names a serde struct deserializes, read off its derived `Deserialize`.
pub(crate) fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields = None;
    let _probe_always_errs = T::deserialize(FieldsProbe(&mut fields));
    fields.expect("a service config is a struct")
}

struct FieldsProbe<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> serde::Deserializer<'de> for FieldsProbe<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("only structs are probed"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(serde::de::Error::custom("probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}
