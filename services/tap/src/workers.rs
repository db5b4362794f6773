//! Serving on one single-threaded runtime per core, the way nginx runs its workers. The
//! accept loop deals connections out in turn, and a worker serves each of its connections
//! from the first request to the last with its own upstream pool and publishing queue, so
//! a request never crosses threads. A work-stealing runtime spends wake-ups moving
//! requests between threads; on two shared cores that cost about a fifth of the throughput
//! (see the README). A worker also runs the TLS handshake of each of its connections, when
//! the tap serves TLS, so handshakes spread over the workers as requests do.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use shadowdiff_runtime::CancellationToken;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::Tls;
use crate::config::{TapConfig, TapSection};
use crate::connection::{self, Limits, Open};
use crate::proxy::{self, Proxy};
use crate::publish::{Publisher, Queue};

/// How long a worker that stopped serving waits for its publishing task: all of it after a
/// clean drain, where the queue is empty at once; past the drain deadline, requests still
/// in flight would hold the queue open, and their exchanges are given up.
const PUBLISH_GRACE: Duration = Duration::from_secs(1);

type Connection = (std::net::TcpStream, SocketAddr);

/// The running workers, and where to send each of them a connection.
#[derive(Debug)]
pub(crate) struct Workers {
    inboxes: Vec<mpsc::UnboundedSender<Connection>>,
    threads: Vec<JoinHandle<()>>,
    next: usize,
}

impl Workers {
    /// Starts `tap.workers` workers, each serving with a proxy and a publishing queue of its
    /// own until `shutdown`, then draining for at most `tap.drain_timeout_ms`.
    pub(crate) fn start(
        config: &TapConfig,
        tls: &Tls,
        publisher: &Arc<Publisher>,
        stubs: Option<&Arc<crate::stub::Recordings>>,
        shutdown: &CancellationToken,
    ) -> std::io::Result<Self> {
        let mut workers = Self { inboxes: Vec::new(), threads: Vec::new(), next: 0 };
        for i in 0..config.tap.workers {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (inbox, connections) = mpsc::unbounded_channel();
            let listener = Dealt { connections };
            let (config, publisher, shutdown) = (config.clone(), publisher.clone(), shutdown.clone());
            let server = Server::new(&config.tap, tls.listener.clone());
            let upstream_tls = tls.upstream.clone();
            let stubs = stubs.cloned();
            let thread = std::thread::Builder::new().name(format!("tap-worker-{i}")).spawn(move || {
                runtime.block_on(async move {
                    let (queue, publishing) = Queue::spawn(publisher);
                    let proxy = Proxy::new(config, upstream_tls, server.tls.is_some(), queue, stubs);
                    server.serve(listener, Arc::new(proxy), shutdown).await;
                    if tokio::time::timeout(PUBLISH_GRACE, publishing).await.is_err() {
                        tracing::warn!(
                            "requests still in flight past the drain deadline; their exchanges are not published"
                        );
                    }
                });
            })?;
            workers.inboxes.push(inbox);
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Hands an accepted connection to the next worker.
    pub(crate) fn deal(&mut self, stream: TcpStream, peer: SocketAddr) {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => return tracing::warn!(%error, %peer, "cannot hand the connection to a worker"),
        };
        self.next = (self.next + 1) % self.inboxes.len();
        // A worker only stops after shutdown, when nothing is dealt any more.
        let _ = self.inboxes[self.next].send((stream, peer));
    }

    /// Waits until every worker has drained (or passed its deadline) and stopped.
    pub(crate) async fn join(self) {
        drop(self.inboxes);
        let threads = self.threads;
        let joined = tokio::task::spawn_blocking(move || threads.into_iter().all(|thread| thread.join().is_ok())).await;
        if !matches!(joined, Ok(true)) {
            tracing::error!("a tap worker panicked");
        }
    }
}

/// How a worker serves its connections.
struct Server {
    http: Arc<auto::Builder<TokioExecutor>>,
    /// Set when clients connect over TLS.
    tls: Option<TlsAcceptor>,
    limits: Limits,
    max_connections: usize,
    drain: Duration,
}

impl Server {
    fn new(tap: &TapSection, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(tap.header_read_timeout)
            // Past it while reading a request head, hyper answers 431 and closes.
            .max_buf_size(tap.max_header_bytes);
        // Validated to fit; h2 announces it as SETTINGS_MAX_HEADER_LIST_SIZE.
        let header_list = u32::try_from(tap.max_header_bytes).unwrap_or(u32::MAX);
        // Pings a connection that has gone quiet, so one whose peer vanished mid-stream is
        // closed rather than kept for a request that never ends.
        http.http2().timer(TokioTimer::new()).max_header_list_size(header_list).keep_alive_interval(tap.idle_timeout);
        Self {
            http: Arc::new(http),
            tls: tls.map(TlsAcceptor::from),
            limits: Limits { header_read: tap.header_read_timeout, idle: tap.idle_timeout },
            max_connections: tap.max_connections_per_worker,
            drain: tap.drain_timeout,
        }
    }

    /// Serves the dealt connections with hyper (HTTP/1.1 or h2c, upgrades allowed; both over
    /// TLS when configured) until `shutdown`, then lets in-flight requests finish for at
    /// most the drain deadline.
    async fn serve(self, mut listener: Dealt, proxy: Arc<Proxy>, shutdown: CancellationToken) {
        let open = Open::new(self.max_connections);
        // Also closes the connections when dealing stops without a shutdown.
        let closing = shutdown.child_token();
        loop {
            let (stream, peer) = tokio::select! {
                () = closing.cancelled() => break,
                dealt = listener.accept() => match dealt {
                    Some(dealt) => dealt,
                    None => break,
                },
            };
            // Refused by closing it at once: the client sees the connection reset or closed.
            let Some(slot) = open.admit() else { continue };
            let started = Arc::new(AtomicU64::new(0));
            let (proxy, requests) = (proxy.clone(), started.clone());
            let service = service_fn(move |request: http::Request<Incoming>| {
                requests.fetch_add(1, Ordering::Relaxed);
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(proxy::handle(proxy, request.map(Body::new)).await) }
            });
            let (limits, closing) = (self.limits, closing.clone());
            // The header deadline runs from here, so a TLS handshake spends from it too.
            let accepted = Instant::now();
            let Some(tls) = &self.tls else {
                let connection = self.http.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
                tokio::spawn(async move {
                    let _slot = slot;
                    let watched = connection::watch(connection, &started, limits, accepted, &closing).await;
                    if let Err(error) = watched {
                        tracing::debug!(%error, %peer, "client connection ended with an error");
                    }
                });
                continue;
            };
            let (tls, http) = (tls.clone(), self.http.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let deadline = accepted + limits.header_read;
                let Some(stream) = connection::handshake(&tls, stream, deadline, &closing).await else { return };
                let connection = http.serve_connection_with_upgrades(TokioIo::new(stream), service);
                if let Err(error) = connection::watch(connection, &started, limits, accepted, &closing).await {
                    tracing::debug!(%error, %peer, "client connection ended with an error");
                }
            });
        }
        closing.cancel();
        tokio::select! {
            () = open.drained() => {}
            () = tokio::time::sleep(self.drain) => {
                tracing::warn!(drain_ms = self.drain.as_millis(), "drain deadline passed; closing in-flight requests");
            }
        }
    }
}

/// A worker's side of the listener: the connections dealt to it.
struct Dealt {
    connections: mpsc::UnboundedReceiver<Connection>,
}

impl Dealt {
    /// The next connection; `None` once the accept loop has stopped dealing.
    async fn accept(&mut self) -> Option<(TcpStream, SocketAddr)> {
        loop {
            let (stream, peer) = self.connections.recv().await?;
            // Responses stream in pieces as the upstream sends them: none waits for an ACK.
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, %peer, "cannot set TCP_NODELAY");
            }
            match TcpStream::from_std(stream) {
                Ok(stream) => return Some((stream, peer)),
                Err(error) => tracing::warn!(%error, %peer, "cannot register a dealt connection"),
            }
        }
    }
}
