//! Secrets in config: a type whose Debug never shows the value, so no hand-written Debug
//! impl can forget a field.

use serde::{Deserialize, Deserializer};

/// A config value that must never reach a log line, a Debug dump or an error message.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// The value, for the one place that uses it (a key derivation, a client's credentials).
    pub const fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)] // read through Debug only
        struct Section {
            key: Secret<String>,
        }
        let section: Section = toml::from_str("key = \"hunter2-CANARY\"").unwrap();
        assert_eq!(section.key.expose(), "hunter2-CANARY");
        assert_eq!(format!("{section:?}"), "Section { key: [redacted] }");
    }

    #[test]
    fn kafka_and_clickhouse_credentials_never_print() {
        let kafka: crate::kafka::KafkaConfig = toml::from_str(
            "[properties]
\"sasl.password\" = \"kafka-CANARY\"\n\"sasl.mechanism\" = \"PLAIN\"",
        )
        .unwrap();
        let clickhouse: crate::clickhouse::ClickHouseConfig = toml::from_str("password = \"ch-CANARY\"").unwrap();
        let printed = format!("{kafka:?} {clickhouse:?}");
        assert!(!printed.contains("CANARY") && printed.contains("sasl.password"), "{printed}");
    }
}
