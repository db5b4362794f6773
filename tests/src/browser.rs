//! Headless Chromium driven through WebDriver: Debian's `chromium` and `chromium-driver`
//! (chromedriver), and the `fantoccini` client. A page test clicks, types and goes back as
//! a person would, and asserts on the DOM Chromium built.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};

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

    /// Clicks what `locator` finds and waits for the page that opens. A click returns once
    /// its navigation has started, not once the new page is there: reading the page before
    /// then reads the old one.
    pub async fn follow(&self, locator: Locator<'_>) {
        let page = self.page().await;
        let found = self.client.find(locator).await.unwrap_or_else(|e| panic!("{locator:?}: {e}"));
        found.click().await.unwrap_or_else(|e| panic!("click on {locator:?}: {e}"));
        self.replaced(page, &format!("the page {locator:?} opens")).await;
    }

    /// Goes back a page, as the browser's button does, and waits for it.
    pub async fn back(&self) {
        let page = self.page().await;
        self.client.back().await.unwrap_or_else(|e| panic!("back: {e}"));
        self.replaced(page, "the page before").await;
    }

    /// The current page's root element: it goes stale once another page replaced it.
    async fn page(&self) -> Element {
        self.client.find(Locator::Css("html")).await.unwrap_or_else(|e| panic!("the current page: {e}"))
    }

    async fn replaced(&self, page: Element, what: &str) {
        crate::eventually(what, Duration::from_secs(20), || async {
            match page.tag_name().await {
                Ok(_) => Err("the page before is still shown".to_owned()),
                Err(e) if e.is_stale_element_reference() || e.is_no_such_element() => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
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
