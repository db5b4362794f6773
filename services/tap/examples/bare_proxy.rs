//! The floor under the tap: hyper's server and hyper-util's pooled client and nothing of the
//! tap's own (no request ids, routes, capture, metrics or publishing), run the way the tap
//! runs them: one single-threaded runtime per worker, accepted connections dealt in turn,
//! TCP_NODELAY both ways, mimalloc. `deploy/bench/tap-vs-nginx.sh` measures it beside the
//! tap, which tells the tap's own cost apart from its HTTP stack's.
//!
//!     cargo run --release -p shadowdiff-tap --example bare_proxy -- LISTEN UPSTREAM [WORKERS]
//!     e.g. 127.0.0.1:8080 http://127.0.0.1:8081 2
//!
//! Not a product: an upstream failure is a bare 502, and there is no shutdown.

use std::convert::Infallible;
use std::net::{TcpListener, TcpStream};

use http_body_util::{BodyExt, Empty, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::mpsc;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Body = BoxBody<Bytes, hyper::Error>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bare_proxy LISTEN UPSTREAM [WORKERS]";
    let listen = args.next().ok_or(usage)?;
    let upstream: Uri = args.next().ok_or(usage)?.parse()?;
    let workers = args.next().map_or(Ok(2), |n| n.parse::<usize>())?.max(1);

    let listener = TcpListener::bind(&listen)?;
    let mut inboxes = Vec::new();
    for _ in 0..workers {
        let (inbox, connections) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let upstream = upstream.clone();
        std::thread::spawn(move || runtime.block_on(serve(connections, upstream)));
        inboxes.push(inbox);
    }
    for (i, stream) in listener.incoming().enumerate() {
        let Ok(stream) = stream else { continue };
        if inboxes[i % workers].send(stream).is_err() {
            return Err("a worker stopped".into());
        }
    }
    Ok(())
}

async fn serve(mut connections: mpsc::UnboundedReceiver<TcpStream>, upstream: Uri) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
    let http = auto::Builder::new(TokioExecutor::new());
    while let Some(stream) = connections.recv().await {
        let Ok(stream) = stream.set_nodelay(true).and_then(|()| tokio::net::TcpStream::from_std(stream)) else {
            continue;
        };
        let (client, upstream) = (client.clone(), upstream.clone());
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            forward(client.clone(), upstream.clone(), request)
        });
        let connection = http.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        tokio::spawn(connection);
    }
}

async fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: Uri,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (mut parts, body) = request.into_parts();
    let mut uri = upstream.into_parts();
    uri.path_and_query = parts.uri.path_and_query().cloned();
    let answer = match Uri::from_parts(uri) {
        Ok(uri) => {
            parts.uri = uri;
            client.request(Request::from_parts(parts, body)).await.ok()
        }
        Err(_) => None,
    };
    Ok(answer.map_or_else(
        || {
            let mut failed = Response::new(Empty::new().map_err(|never| match never {}).boxed());
            *failed.status_mut() = StatusCode::BAD_GATEWAY;
            failed
        },
        |response| response.map(BodyExt::boxed),
    ))
}
