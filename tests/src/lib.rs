//! The end-to-end harness: real infrastructure ([`infra`]), the four services running in
//! this process on their own topics, consumer groups and ClickHouse database
//! ([`pipeline`]), and a deadline-bound wait ([`eventually`]). Scenarios live in `tests/`.

pub mod admin;
pub mod auth;
pub mod broker;
pub mod browser;
pub mod clickhouse_server;
pub mod correlator;
pub mod infra;
pub mod kafka;
pub mod manifests;
pub mod mirror;
pub mod pipeline;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod replay;
pub mod tap;
pub mod tls;
pub mod verdict;

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Serves `app` on a free loopback port, for the rest of the test; returns the address.
pub async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// [`serve`], on a thread and runtime of its own, as a backend runs in its own process: the
/// pipeline's work in this process never delays its answers, so a latency it is given is
/// the latency measured. It serves until the test process ends.
pub async fn serve_apart(app: axum::Router) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    listener.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("a backend's runtime: {e}"));
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap_or_else(|e| panic!("{e}"));
            let _ = axum::serve(listener, app).await;
        });
    });
    addr
}

/// A name no other test run uses: for topics, groups, databases and request ids.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{prefix}_{}_{}", std::process::id(), nanos % 1_000_000_000_000)
}

/// Polls `check` until it returns `Ok`, or panics after `timeout` with the last `Err` it
/// returned (what was found instead), so a failure says what the system looked like.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(found) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last saw: {found}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
