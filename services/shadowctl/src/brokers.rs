//! Where the brokers and topics are, for the commands that read Kafka (`record`): the same
//! `[kafka]` and `[topics]` sections and `SHADOWDIFF_KAFKA_*` / `SHADOWDIFF_TOPICS_*`
//! variables the services read, so one environment serves them all.

use std::path::Path;

use serde::Deserialize;
use shadowdiff_runtime::config::{ConfigError, Validate, load_str};
use shadowdiff_runtime::kafka::{KafkaConfig, TopicsConfig};

use crate::CtlError;

/// The sections of a service's config that name the brokers and topics.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Brokers {
    /// `[kafka]`: bootstrap servers and client properties (SASL, TLS).
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// `[topics]`: the requests and responses topics' names.
    #[serde(default)]
    pub topics: TopicsConfig,
}

impl Validate for Brokers {
    fn validate(&self, errors: &mut Vec<ConfigError>) {
        self.topics.validate(errors);
    }
}

/// The brokers from `file`'s `[kafka]` and `[topics]` (any other section, such as the
/// tap's own, is left alone, so a service's file serves as it is), then the environment.
pub fn load(file: Option<&Path>) -> Result<Brokers, CtlError> {
    load_with(file, std::env::vars())
}

pub fn load_with(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Brokers, CtlError> {
    let (text, name) = match file {
        Some(path) => {
            let input = |reason: String| CtlError::Input { path: path.display().to_string(), reason };
            let text = std::fs::read_to_string(path).map_err(|e| input(e.to_string()))?;
            let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| input(e.to_string()))?;
            table.retain(|section, _| section == "kafka" || section == "topics");
            (table.to_string(), path.display().to_string())
        }
        None => (String::new(), "(no file)".to_owned()),
    };
    load_str(&text, &name, env)
        .map_err(|errors| CtlError::Input { path: name, reason: errors.to_string().trim_end().to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn reads_a_services_file_and_the_environment() {
        let dir = std::env::temp_dir().join(format!("shadowctl-brokers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tap.toml");
        std::fs::write(&file, "[tap]\nlisten = \"x\"\n[kafka]\nbrokers = \"file:9092\"\n[topics]\nrequests = \"r\"\n")
            .unwrap();
        let brokers = load_with(Some(&file), env(&[("SHADOWDIFF_TOPICS_RESPONSES", "s")])).unwrap();
        assert_eq!((brokers.kafka.brokers.as_str(), brokers.topics.requests.as_str()), ("file:9092", "r"));
        assert_eq!(brokers.topics.responses, "s");
        let from_env = load_with(None, env(&[("SHADOWDIFF_KAFKA_BROKERS", "env:9092")])).unwrap();
        assert_eq!(
            (from_env.kafka.brokers.as_str(), from_env.topics.requests.as_str()),
            ("env:9092", "shadowdiff.requests")
        );

        std::fs::write(&file, "[kafka]\nbrokerz = \"typo\"\n").unwrap();
        let error = load_with(Some(&file), Vec::new()).unwrap_err().to_string();
        assert!(error.contains("kafka.brokerz") && error.contains("unknown key"), "{error}");
        let same = load_with(None, env(&[("SHADOWDIFF_TOPICS_RESPONSES", "shadowdiff.requests")])).unwrap_err();
        assert!(same.to_string().contains("topics.responses"), "{same}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
