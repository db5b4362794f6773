//! A private Kafka-protocol broker (tansu, in memory) that a test may stop and restart,
//! for outage scenarios that must not disturb the shared broker.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::infra::START_HINT;
use crate::ports::ReservedPort;

pub struct PrivateBroker {
    pub port: u16,
    child: Option<Child>,
    /// Held for the broker's life, so no other test is given its port, not even between a
    /// stop and a restart.
    _port: ReservedPort,
}

impl std::fmt::Debug for PrivateBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateBroker").field("port", &self.port).finish_non_exhaustive()
    }
}

impl PrivateBroker {
    /// Starts a broker on a free loopback port and waits until it accepts connections.
    pub async fn start() -> Self {
        let reserved = ReservedPort::new();
        let mut broker = Self { port: reserved.port(), child: None, _port: reserved };
        broker.restart().await;
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, with empty storage.
    pub async fn restart(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new("tansu")
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `tansu` ({e}); {START_HINT}"));
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("private broker on port {} did not start", self.port);
    }

    /// Kills the broker, as an outage would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
