//! Serving on one single-threaded runtime per core, the way nginx runs its workers. The
//! accept loop deals connections out in turn, and a worker serves each of its connections
//! from the first request to the last with its own upstream pool and publishing queue, so
//! a request never crosses threads. A work-stealing runtime spends wake-ups moving requests between
//! threads; on two shared cores that cost about a fifth of the throughput (see the README).

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::handler::Handler as _;
use shadowdiff_runtime::CancellationToken;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::config::TapConfig;
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
    /// Starts `count` workers, each serving with a proxy and a publishing queue of its own
    /// until `shutdown`, then draining for at most `drain`.
    pub(crate) fn start(
        count: usize,
        addr: SocketAddr,
        config: &TapConfig,
        publisher: &Arc<Publisher>,
        drain: Duration,
        shutdown: &CancellationToken,
    ) -> std::io::Result<Self> {
        let mut workers = Self { inboxes: Vec::new(), threads: Vec::new(), next: 0 };
        for i in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (inbox, connections) = mpsc::unbounded_channel();
            let listener = Dealt { connections, addr };
            let (config, publisher, shutdown) = (config.clone(), publisher.clone(), shutdown.clone());
            let thread = std::thread::Builder::new().name(format!("tap-worker-{i}")).spawn(move || {
                runtime.block_on(async move {
                    let (queue, publishing) = Queue::spawn(publisher);
                    serve(listener, Arc::new(Proxy::new(config, queue)), drain, shutdown).await;
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

async fn serve(listener: Dealt, proxy: Arc<Proxy>, drain: Duration, shutdown: CancellationToken) {
    let stop = shutdown.clone();
    let app = proxy::handle.with_state(proxy).into_make_service();
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await });
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        served = serve => if let Err(error) = served { tracing::error!(%error, "tap worker stopped serving") },
        () = deadline => tracing::warn!(drain_ms = drain.as_millis(), "drain deadline passed; closing in-flight requests"),
    }
}

/// A worker's side of the listener: the connections dealt to it.
struct Dealt {
    connections: mpsc::UnboundedReceiver<Connection>,
    addr: SocketAddr,
}

impl axum::serve::Listener for Dealt {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            // Closed only at shutdown, when serving stops accepting anyway.
            let Some((stream, peer)) = self.connections.recv().await else { return std::future::pending().await };
            // Responses stream in pieces as the upstream sends them: none waits for an ACK.
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, %peer, "cannot set TCP_NODELAY");
            }
            match TcpStream::from_std(stream) {
                Ok(stream) => return (stream, peer),
                Err(error) => tracing::warn!(%error, %peer, "cannot register a dealt connection"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}
