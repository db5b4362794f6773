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

const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
const DEFAULT_CLICKHOUSE: &str = "http://127.0.0.1:8123";
const CLICKHOUSE_IMAGE: (&str, &str) = ("clickhouse/clickhouse-server", "25.8");

/// Reachable servers for one test. Containers, if any, stop when this is dropped.
pub struct Infra {
    pub brokers: String,
    pub clickhouse_url: String,
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
        Self { brokers, clickhouse_url, _kafka: None, _clickhouse: None }
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
    Ok(Infra { brokers, clickhouse_url, _kafka: Some(kafka), _clickhouse: Some(clickhouse) })
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
