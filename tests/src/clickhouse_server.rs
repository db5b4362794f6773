//! A private ClickHouse server (Debian's `clickhouse-server`, the same binary
//! `services.sh` runs) on free ports with its own data directory, which a test may stop and
//! start again to play an outage without disturbing the shared server.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::infra::START_HINT;
use crate::ports::ReservedPort;

pub struct PrivateClickHouse {
    pub http_port: u16,
    tcp_port: u16,
    interserver_port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Held for the server's life, so no other test is given its ports, not even between a
    /// stop and a restart.
    _ports: [ReservedPort; 3],
}

impl std::fmt::Debug for PrivateClickHouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateClickHouse").field("http_port", &self.http_port).finish_non_exhaustive()
    }
}

impl PrivateClickHouse {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(crate::unique("shadowdiff-clickhouse"));
        let ports = [ReservedPort::new(), ReservedPort::new(), ReservedPort::new()];
        let mut server = Self {
            http_port: ports[0].port(),
            tcp_port: ports[1].port(),
            interserver_port: ports[2].port(),
            dir,
            child: None,
            _ports: ports,
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Starts (again) on the same ports and data, and waits until it answers.
    pub async fn restart(&mut self) {
        let dir = self.dir.display().to_string();
        for sub in ["data", "tmp", "user_files", "format_schemas"] {
            let _ = std::fs::create_dir_all(self.dir.join(sub));
        }
        let child = Command::new("clickhouse-server")
            .arg("--config-file=/etc/clickhouse-server/config.xml")
            .arg("--")
            .arg(format!("--path={dir}/data/"))
            .arg(format!("--tmp_path={dir}/tmp/"))
            .arg(format!("--user_files_path={dir}/user_files/"))
            .arg(format!("--format_schema_path={dir}/format_schemas/"))
            .arg(format!("--logger.log={dir}/server.log"))
            .arg(format!("--logger.errorlog={dir}/error.log"))
            .arg("--listen_host=127.0.0.1")
            .arg(format!("--http_port={}", self.http_port))
            .arg(format!("--tcp_port={}", self.tcp_port))
            .arg(format!("--interserver_http_port={}", self.interserver_port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `clickhouse-server` ({e}); {START_HINT}"));
        self.child = Some(child);
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(response) = client.get(format!("{}/ping", self.url())).send().await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("private ClickHouse on port {} did not start; see {dir}/error.log", self.http_port);
    }

    /// Kills the server, as an outage would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
