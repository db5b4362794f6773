//! The ClickHouse client, configured once for every service that reads or writes rows.

use clickhouse::{Client, Compression};
use serde::Deserialize;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::Secret;
use crate::tls::CaBundle;

/// `[clickhouse]`: where the comparison rows live.
#[derive(Debug, Clone, Deserialize)]
pub struct ClickHouseConfig {
    /// HTTP endpoint, e.g. `http://127.0.0.1:8123`.
    #[serde(default = "default_url")]
    pub url: String,
    #[serde(default = "default_database")]
    pub database: String,
    #[serde(default = "default_user")]
    pub user: String,
    /// Never logged; prefer `SHADOWDIFF_CLICKHOUSE_PASSWORD` from a secret over the file.
    #[serde(default)]
    pub password: Secret<String>,
    /// LZ4 over HTTP. `auto` turns it on for servers that handle it (ClickHouse 24 and
    /// later were checked; 18.x breaks the client's reads with it).
    #[serde(default)]
    pub compression: Toggle,
    /// Schema validation of rows before insert. `auto`: on for ClickHouse 24 and later;
    /// older servers lack the `describe_include_subcolumns` setting it uses.
    #[serde(default)]
    pub validation: Toggle,
    /// A PEM bundle of extra root certificates for an `https://` url (a private CA),
    /// trusted beside the system's.
    #[serde(default)]
    pub ca_file: Option<CaBundle>,
    /// A cluster from the servers' `remote_servers`, to keep the rows sharded across it:
    /// migrations run `ON CLUSTER`, rows live in `Replicated*MergeTree` tables named
    /// `<table>_local`, and the services read and write `Distributed` tables under the plain
    /// names, sharded by request id. Unset: one server, plain tables.
    #[serde(default)]
    pub cluster: Option<String>,
}

/// On, off, or decided by the server's version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Toggle {
    #[default]
    Auto,
    On,
    Off,
}

/// First major version on which `auto` turns the client's modern features on.
const MODERN_MAJOR: u32 = 24;

fn default_url() -> String {
    "http://127.0.0.1:8123".to_owned()
}
fn default_database() -> String {
    "shadowdiff".to_owned()
}
fn default_user() -> String {
    "default".to_owned()
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: default_url(),
            database: default_database(),
            user: default_user(),
            password: Secret::default(),
            compression: Toggle::Auto,
            validation: Toggle::Auto,
            ca_file: None,
            cluster: None,
        }
    }
}

/// A connected client and what the server told us about itself.
#[derive(Clone)]
pub struct ClickHouse {
    /// Bound to the configured database.
    pub client: Client,
    /// Not bound to a database, for `CREATE DATABASE`.
    pub server: Client,
    /// `SELECT version()`, e.g. `18.16.1`.
    pub version: String,
    /// The database `client` is bound to.
    pub database: String,
    /// `[clickhouse] cluster`: the tables are sharded across it.
    pub cluster: Option<String>,
}

impl std::fmt::Debug for ClickHouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouse")
            .field("version", &self.version)
            .field("database", &self.database)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl ClickHouse {
    /// The server's major version (0 if unparsable).
    pub fn major_version(&self) -> u32 {
        major(&self.version)
    }
}

fn major(version: &str) -> u32 {
    version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0)
}

impl ClickHouseConfig {
    /// Asks the server for its version (with settings every version accepts), then builds
    /// the client with `auto` toggles resolved for that version.
    pub async fn connect(&self) -> Result<ClickHouse, clickhouse::error::Error> {
        let base = self
            .http_client()?
            .with_url(&self.url)
            .with_user(&self.user)
            .with_password(self.password.expose())
            .with_compression(Compression::None)
            .with_validation(false);
        let version: String = base.query("SELECT version()").fetch_one().await?;
        let modern = major(&version) >= MODERN_MAJOR;
        let resolve = |toggle: Toggle| match toggle {
            Toggle::Auto => modern,
            Toggle::On => true,
            Toggle::Off => false,
        };
        let compression = if resolve(self.compression) { Compression::Lz4 } else { Compression::None };
        let mut server = base.with_compression(compression).with_validation(resolve(self.validation));
        if self.cluster.is_some() {
            // An insert into a Distributed table returns once its rows are on their shards,
            // not when they are queued on this server: a batch written is a batch stored,
            // before the offsets behind it are committed.
            server = server.with_setting("insert_distributed_sync", "1");
            // A subquery over a Distributed table inside a query over another is run once,
            // here, and its result sent to every shard (`GLOBAL IN`): right whatever the
            // subquery's key, where per-shard subqueries would be right only for request ids.
            server = server.with_setting("distributed_product_mode", "global");
            // Reads and writes go to the first live replica of each shard, so rows just
            // written are read back (the correlator's look-up of stored comparisons, a gate
            // asked right after a batch); the other replicas take over when it is down.
            server = server.with_setting("load_balancing", "in_order");
        }
        let client = server.clone().with_database(&self.database);
        Ok(ClickHouse { client, server, version, database: self.database.clone(), cluster: self.cluster.clone() })
    }
}

impl ClickHouseConfig {
    fn https(&self) -> bool {
        self.url.starts_with("https://")
    }

    /// Plain HTTP, or rustls trusting the system's roots and `ca_file`'s for an https url.
    fn http_client(&self) -> Result<Client, clickhouse::error::Error> {
        if !self.https() {
            return Ok(Client::default());
        }
        let tls = crate::tls::client_config(self.ca_file.as_ref())
            .map_err(|error| clickhouse::error::Error::Custom(error.to_string()))?;
        let mut tcp = HttpConnector::new();
        tcp.set_keepalive(Some(TCP_KEEPALIVE));
        // The TCP connector sees https:// URIs; the TLS layer above it takes those.
        tcp.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(rustls::ClientConfig::clone(&tls))
            .https_only()
            .enable_http1()
            .wrap_connector(tcp);
        let pooled = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(https);
        Ok(Client::with_http_client(pooled))
    }
}

/// What the clickhouse crate's own client uses: its TCP keep-alive, and an idle timeout
/// below the server's 3 s keep-alive so a pooled connection is never reused as it closes.
const TCP_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(60);
const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl crate::config::Validate for ClickHouseConfig {
    fn validate(&self, errors: &mut Vec<crate::config::ConfigError>) {
        use crate::config::ConfigError;
        // The database name is spliced into DDL, so it must be a plain identifier.
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '_';
        if self.database.is_empty() || !self.database.chars().all(plain) {
            errors.push(ConfigError::rule("clickhouse.database", "must be letters, digits and _ only"));
        }
        if let Some(cluster) = &self.cluster
            && (cluster.is_empty() || !cluster.chars().all(plain))
        {
            errors.push(ConfigError::rule("clickhouse.cluster", "must be letters, digits and _ only"));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            errors.push(ConfigError::rule("clickhouse.url", "must be an http:// or https:// URL"));
        }
        if self.https()
            && let Err(error) = crate::tls::client_config(self.ca_file.as_ref())
        {
            errors.push(ConfigError::rule("clickhouse.url", error.to_string()));
        }
        if !self.https() && self.ca_file.is_some() {
            errors.push(ConfigError::rule("clickhouse.ca_file", "is only used with an https:// url"));
        }
    }
}
