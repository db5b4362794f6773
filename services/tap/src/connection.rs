//! What a client connection may cost a worker: how many are open at once, how long one
//! may take to send its first request head, and how long it may sit without a request.
//!
//! hyper enforces the HTTP/1.1 header deadline itself, but not before it has told
//! HTTP/1.1 from h2c (a client that sends nothing, or half the h2 preface, waits there
//! forever), nor on h2c, nor an idle h2c connection. [`watch`] covers those with one timer
//! per connection; a request costs it one relaxed atomic increment. Over TLS the header
//! deadline runs from the accept, so it bounds the handshake too ([`handshake`]): a client
//! that opens TCP and never finishes a ClientHello is closed at the same deadline.

use std::error::Error;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;
use shadowdiff_runtime::CancellationToken;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::events::{self, CloseReason};

/// How often the idle clock is read, as a share of `idle_timeout`: a connection is closed
/// between one and one and a quarter idle timeouts after its last request started.
const IDLE_CHECKS: u32 = 4;

type BoxError = Box<dyn Error + Send + Sync>;

/// A connection's deadlines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) header_read: Duration,
    pub(crate) idle: Duration,
}

/// A worker's open connections.
#[derive(Debug)]
pub(crate) struct Open {
    count: AtomicUsize,
    max: usize,
    none_left: Notify,
}

impl Open {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { count: AtomicUsize::new(0), max, none_left: Notify::new() })
    }

    /// A place for one more connection, or `None` (counted) when the worker is full. Only
    /// the worker's accept loop admits, so the check and the increment cannot race.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Slot> {
        if self.count.load(Ordering::Relaxed) >= self.max {
            events::connection_closed(CloseReason::WorkerFull);
            return None;
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        Some(Slot(self.clone()))
    }

    /// Returns once no connection is open.
    pub(crate) async fn drained(&self) {
        loop {
            // Registered before the check, so a close in between still wakes it.
            let closed = self.none_left.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// One open connection's place; given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Open>);

impl Drop for Slot {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_left.notify_waiters();
        }
    }
}

/// Completes the TLS handshake of a client connection by `deadline` (the header deadline),
/// or closes it: a client that never finishes its ClientHello is counted as a header
/// timeout, a failed handshake as such. Shutdown closes it too: no request has started.
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> Option<TlsStream<TcpStream>> {
    let peer = stream.peer_addr().ok();
    tokio::select! {
        () = shutdown.cancelled() => None,
        finished = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => match finished {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error)) => {
                // Scanners and plain-HTTP clients fail here routinely: counted, the cause at debug.
                tracing::debug!(%error, ?peer, "TLS handshake failed");
                events::connection_closed(CloseReason::TlsHandshake);
                None
            }
            Err(_) => {
                events::connection_closed(CloseReason::HeaderTimeout);
                None
            }
        },
    }
}

/// Drives `connection` to its end. It is dropped (closed) if no request head arrived
/// within the header deadline after `accepted`, and shut down gracefully, letting
/// requests in flight finish, once no request has started for the idle timeout or when
/// `shutdown` fires.
pub(crate) async fn watch<C>(
    connection: C,
    started: &AtomicU64,
    limits: Limits,
    accepted: Instant,
    shutdown: &CancellationToken,
) -> Result<(), BoxError>
where
    C: GracefulConnection<Error = BoxError>,
{
    let mut connection = pin!(connection);
    let tick = limits.idle / IDLE_CHECKS;
    let timer = tokio::time::sleep_until(accepted + limits.header_read);
    let mut timer = pin!(timer);
    let (mut seen, mut quiet_ticks, mut closing) = (0, 0, false);
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                return ended.inspect_err(|error| count_timeout(error, started.load(Ordering::Relaxed)));
            }
            () = shutdown.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = timer.as_mut(), if !closing => {
                let now = started.load(Ordering::Relaxed);
                if now == 0 {
                    events::connection_closed(CloseReason::HeaderTimeout);
                    return Ok(());
                }
                quiet_ticks = if now == seen { quiet_ticks + 1 } else { 0 };
                seen = now;
                if quiet_ticks >= IDLE_CHECKS {
                    events::connection_closed(CloseReason::Idle);
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                } else {
                    timer.as_mut().reset(Instant::now() + tick);
                }
            }
        }
    }
}

/// Counts hyper's own HTTP/1.1 header deadline with the one [`watch`] keeps. hyper also
/// runs it while a keep-alive connection waits for its next request and does not say which
/// it was; after a first request, it is counted as the routine idle close it nearly always is.
fn count_timeout(error: &BoxError, started: u64) {
    if error.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout) {
        events::connection_closed(if started == 0 { CloseReason::HeaderTimeout } else { CloseReason::Idle });
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;

    use super::*;

    /// Serves one connection under `limits` with a service that answers `ok`.
    async fn serve_one(limits: Limits, shutdown: CancellationToken) -> (SocketAddr, JoinHandle<Result<(), BoxError>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let started = Arc::new(AtomicU64::new(0));
            let requests = started.clone();
            let service = service_fn(move |_: http::Request<hyper::body::Incoming>| {
                requests.fetch_add(1, Ordering::Relaxed);
                async { Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok")))) }
            });
            let mut http = auto::Builder::new(TokioExecutor::new());
            http.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(30));
            let connection = http.serve_connection_with_upgrades(TokioIo::new(stream), service);
            watch(connection, &started, limits, Instant::now(), &shutdown).await
        });
        (addr, task)
    }

    /// How long the server took to close `stream`, reading whatever it sends until then.
    async fn closed_after(stream: &mut TcpStream) -> Duration {
        let since = Instant::now();
        let mut buf = [0; 1024];
        let closed = async { while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {} };
        tokio::time::timeout(Duration::from_secs(10), closed).await.expect("still open after 10 s");
        since.elapsed()
    }

    async fn get(stream: &mut TcpStream) {
        stream.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
        let mut buf = [0; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    }

    #[tokio::test]
    async fn a_connection_that_never_sends_a_request_head_is_closed_at_the_deadline() {
        let limits = Limits { header_read: Duration::from_millis(300), idle: Duration::from_secs(60) };
        // Silent: hyper has not yet told HTTP/1.1 from h2, so only `watch` can close it.
        let (addr, served) = serve_one(limits, CancellationToken::new()).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let after = closed_after(&mut stream).await;
        assert!((Duration::from_millis(250)..Duration::from_secs(5)).contains(&after), "closed after {after:?}");
        assert!(served.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_idle_timeout_and_not_before() {
        let limits = Limits { header_read: Duration::from_millis(200), idle: Duration::from_millis(800) };
        let (addr, served) = serve_one(limits, CancellationToken::new()).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        get(&mut stream).await;
        // Past the header deadline, but a request came: kept, and still served.
        tokio::time::sleep(Duration::from_millis(400)).await;
        get(&mut stream).await;
        let after = closed_after(&mut stream).await;
        assert!((Duration::from_millis(750)..Duration::from_secs(5)).contains(&after), "closed after {after:?}");
        assert!(served.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn shutdown_closes_an_idle_connection_at_once() {
        let limits = Limits { header_read: Duration::from_secs(30), idle: Duration::from_secs(60) };
        let shutdown = CancellationToken::new();
        let (addr, served) = serve_one(limits, shutdown.clone()).await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        get(&mut stream).await;
        shutdown.cancel();
        assert!(closed_after(&mut stream).await < Duration::from_secs(5));
        assert!(served.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_worker_admits_up_to_its_cap_and_drains_when_the_last_slot_goes() {
        let open = Open::new(2);
        let (a, b) = (open.admit().unwrap(), open.admit().unwrap());
        assert!(open.admit().is_none(), "full");
        drop(a);
        let c = open.admit().expect("a freed place is taken again");
        let drained = tokio::spawn({
            let open = open.clone();
            async move { open.drained().await }
        });
        drop(b);
        tokio::task::yield_now().await;
        assert!(!drained.is_finished(), "one connection is still open");
        drop(c);
        tokio::time::timeout(Duration::from_secs(5), drained).await.expect("drained").unwrap();
    }
}
