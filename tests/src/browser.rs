//! Headless Chromium driven through WebDriver: Debian's `chromium` and `chromium-driver`
//! (chromedriver), and the `fantoccini` client. A page test clicks, types and goes back as
//! a person would, and asserts on the DOM Chromium built.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};

use crate::ports::ReservedPort;

/// A chromedriver process and a headless Chromium session on it; both end when dropped.
#[derive(Debug)]
pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless session. Fails loudly, saying
    /// how to install what is missing.
    pub async fn start() -> Self {
        let port = ReservedPort::new();
        let bound = port.port();
        drop(port);
        let driver = Command::new("chromedriver")
            .arg(format!("--port={bound}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("chromedriver is needed: apt-get install -y chromium chromium-driver (deploy/local/test.sh installs them): {e}")
            });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--no-first-run", "--disable-background-networking"]
            }),
        );
        let url = format!("http://127.0.0.1:{bound}");
        let client = crate::eventually("chromedriver to take a session", Duration::from_secs(20), || async {
            // Plain HTTP to the local driver: no TLS stack needed.
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        Self { client, driver }
    }

    /// Ends the session and the driver.
    pub async fn stop(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
