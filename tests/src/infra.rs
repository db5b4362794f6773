//! Where the real Kafka broker and ClickHouse are.
//!
//! In order: the endpoints named by `SHADOWDIFF_KAFKA_BROKERS` / `SHADOWDIFF_CLICKHOUSE_URL`;
//! else containers, when a Docker engine is reachable; else the ports that
//! `deploy/local/services.sh up` uses. A test whose servers cannot be reached fails and
//! names the command that starts them. It never passes without them.

use std::time::Duration;

use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use testcontainers_modules::kafka::apache::{KAFKA_PORT, Kafka};

pub const START_HINT: &str = "start them with `deploy/local/services.sh up`, \
     or point SHADOWDIFF_KAFKA_BROKERS and SHADOWDIFF_CLICKHOUSE_URL at running servers";

pub const CLUSTER_HINT: &str = "start it with `deploy/local/services.sh up cluster`, \
     or point SHADOWDIFF_CLICKHOUSE_CLUSTER_URL at a server of a running cluster and name the \
     cluster in SHADOWDIFF_CLICKHOUSE_CLUSTER";

const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
/// Server 1 of `deploy/local/services.sh up cluster` (shard 1's first replica), and its
/// cluster's name.
const DEFAULT_CLUSTER_URL: &str = "http://127.0.0.1:8131";
const DEFAULT_CLUSTER: &str = "shadowdiff";
const DEFAULT_CLICKHOUSE: &str = "http://127.0.0.1:8123";
const CLICKHOUSE_IMAGE: (&str, &str) = ("clickhouse/clickhouse-server", "25.8");

/// Reachable servers for one test. Containers, if any, stop when this is dropped.
pub struct Infra {
    pub brokers: String,
    pub clickhouse_url: String,
    /// The ClickHouse cluster `clickhouse_url` is a server of, for scenarios run sharded.
    pub clickhouse_cluster: Option<String>,
    _kafka: Option<ContainerAsync<Kafka>>,
    _clickhouse: Option<ContainerAsync<GenericImage>>,
}

impl std::fmt::Debug for Infra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Infra").field("brokers", &self.brokers).field("clickhouse_url", &self.clickhouse_url).finish()
    }
}

impl Infra {
    /// Finds the servers, or panics with the command that starts them.
    pub async fn get() -> Self {
        let brokers = std::env::var("SHADOWDIFF_KAFKA_BROKERS").ok();
        let clickhouse_url = std::env::var("SHADOWDIFF_CLICKHOUSE_URL").ok();
        if brokers.is_none() && clickhouse_url.is_none() && docker_reachable() {
            match containers().await {
                Ok(infra) => return infra,
                Err(error) => eprintln!("containers could not start ({error}); trying the local endpoints"),
            }
        }
        let brokers = brokers.unwrap_or_else(|| DEFAULT_BROKERS.to_owned());
        let clickhouse_url = clickhouse_url.unwrap_or_else(|| DEFAULT_CLICKHOUSE.to_owned());
        if let Err(error) = kafka_reachable(&brokers).await {
            panic!("Kafka broker at {brokers} is not reachable ({error}); {START_HINT}");
        }
        if let Err(error) = clickhouse_ready(&clickhouse_url).await {
            panic!("ClickHouse at {clickhouse_url} is not reachable ({error}); {START_HINT}");
        }
        eprintln!("using Kafka at {brokers} and ClickHouse at {clickhouse_url}");
        Self { brokers, clickhouse_url, clickhouse_cluster: None, _kafka: None, _clickhouse: None }
    }

    /// The broker of [`Infra::get`], and a ClickHouse cluster in place of the single server:
    /// `SHADOWDIFF_CLICKHOUSE_CLUSTER_URL` (one of its servers) and
    /// `SHADOWDIFF_CLICKHOUSE_CLUSTER` (its name), by default `deploy/local/services.sh up
    /// cluster`'s. Panics with the command that starts it when it does not answer.
    pub async fn cluster() -> Self {
        let mut infra = Self::get().await;
        let url = std::env::var("SHADOWDIFF_CLICKHOUSE_CLUSTER_URL").unwrap_or_else(|_| DEFAULT_CLUSTER_URL.to_owned());
        let name = std::env::var("SHADOWDIFF_CLICKHOUSE_CLUSTER").unwrap_or_else(|_| DEFAULT_CLUSTER.to_owned());
        if let Err(error) = clickhouse_ready(&url).await {
            panic!("ClickHouse cluster server at {url} is not reachable ({error}); {CLUSTER_HINT}");
        }
        let shards: u64 = clickhouse_client(&url, "system")
            .query("SELECT uniqExact(shard_num) FROM system.clusters WHERE cluster = ?")
            .bind(&name)
            .fetch_one()
            .await
            .unwrap_or_else(|e| panic!("cannot read system.clusters at {url} ({e}); {CLUSTER_HINT}"));
        assert!(
            shards >= 2,
            "the server at {url} has {shards} shards in cluster {name:?}, not 2 or more; {CLUSTER_HINT}"
        );
        eprintln!("using the ClickHouse cluster {name} ({shards} shards) through {url}");
        infra.clickhouse_url = url;
        infra.clickhouse_cluster = Some(name);
        infra
    }

    /// The services' `[clickhouse]` table for `database` on this ClickHouse.
    pub fn clickhouse_toml(&self, database: &str) -> String {
        let cluster =
            self.clickhouse_cluster.as_ref().map(|name| format!("cluster = \"{name}\"\n")).unwrap_or_default();
        format!("[clickhouse]\nurl = \"{}\"\ndatabase = \"{database}\"\n{cluster}", self.clickhouse_url)
    }

    /// On a cluster, `table`'s local table on each shard's first replica, as a table
    /// expression (`remote('host:port', database, table_local)`), for counting what each
    /// shard holds. Empty on one server.
    pub async fn shards(&self, database: &str, table: &str) -> Vec<String> {
        self.replicas(database, table).await.into_iter().filter_map(|replicas| replicas.into_iter().next()).collect()
    }

    /// [`Infra::shards`], with every replica of each shard.
    pub async fn replicas(&self, database: &str, table: &str) -> Vec<Vec<String>> {
        let Some(cluster) = &self.clickhouse_cluster else { return Vec::new() };
        let hosts: Vec<(u32, String, u16)> = clickhouse_client(&self.clickhouse_url, "system")
            .query("SELECT shard_num, host_address, port FROM system.clusters WHERE cluster = ? ORDER BY replica_num")
            .bind(cluster)
            .fetch_all()
            .await
            .unwrap_or_else(|e| panic!("cannot read system.clusters ({e}); {CLUSTER_HINT}"));
        let mut shards = std::collections::BTreeMap::<u32, Vec<String>>::new();
        for (shard, host, port) in hosts {
            shards.entry(shard).or_default().push(format!("remote('{host}:{port}', {database}, {table}_local)"));
        }
        shards.into_values().collect()
    }

    /// The statement that drops `database`, from every server of a cluster.
    pub fn drop_database(&self, database: &str) -> String {
        match &self.clickhouse_cluster {
            Some(name) => format!("DROP DATABASE IF EXISTS {database} ON CLUSTER {name}"),
            None => format!("DROP DATABASE IF EXISTS {database}"),
        }
    }
}

fn docker_reachable() -> bool {
    std::env::var_os("DOCKER_HOST").is_some() || std::path::Path::new("/var/run/docker.sock").exists()
}

async fn containers() -> Result<Infra, Box<dyn std::error::Error>> {
    let kafka = Kafka::default().start().await?;
    let brokers = format!("127.0.0.1:{}", kafka.get_host_port_ipv4(KAFKA_PORT).await?);
    let clickhouse = GenericImage::new(CLICKHOUSE_IMAGE.0, CLICKHOUSE_IMAGE.1)
        .with_exposed_port(8123.tcp())
        .with_wait_for(WaitFor::Nothing)
        .with_env_var("CLICKHOUSE_SKIP_USER_SETUP", "1")
        .start()
        .await?;
    let clickhouse_url = format!("http://127.0.0.1:{}", clickhouse.get_host_port_ipv4(8123).await?);
    for _ in 0..120 {
        if clickhouse_ready(&clickhouse_url).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    clickhouse_ready(&clickhouse_url).await?;
    eprintln!("using containers: Kafka at {brokers}, ClickHouse at {clickhouse_url}");
    Ok(Infra { brokers, clickhouse_url, clickhouse_cluster: None, _kafka: Some(kafka), _clickhouse: Some(clickhouse) })
}

async fn kafka_reachable(brokers: &str) -> Result<(), String> {
    let first = brokers.split(',').next().unwrap_or(brokers);
    match tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(first)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("connect timed out".to_owned()),
    }
}

async fn clickhouse_ready(url: &str) -> Result<(), String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().map_err(|e| e.to_string())?;
    let body = client
        .get(format!("{url}/ping"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    if body.trim() == "Ok." { Ok(()) } else { Err(format!("/ping answered {body:?}")) }
}

/// A client for reading a test's rows, with settings every ClickHouse version accepts
/// (no LZ4, no schema validation), so scenarios read the same on 18.16 and current servers.
pub fn clickhouse_client(url: &str, database: &str) -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(url)
        .with_database(database)
        .with_compression(clickhouse::Compression::None)
        .with_validation(false)
}
