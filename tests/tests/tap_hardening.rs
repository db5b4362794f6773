//! The tap against hostile clients, over real sockets: connections that never finish their
//! request head, request targets that are not origin-form, and more connections than a
//! worker takes. Each time, ordinary clients must go on being served.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use http::StatusCode;
use http::uri::{Authority, PathAndQuery, Scheme};
use hyper_util::rt::{TokioExecutor, TokioIo};
use shadowdiff_tests::infra::Infra;
use shadowdiff_tests::tap::TapUnderTest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(20);
const HEADER_TIMEOUT: Duration = Duration::from_millis(500);
const REDACTION: &str = "[tap.redaction]\nhmac_key = \"tap-hardening-hmac-key-0123\"\n";

/// The request targets the backend saw, in order.
type Seen = Arc<Mutex<Vec<String>>>;

/// A backend that answers every request `200 ok` and records its target.
async fn backend() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let record = seen.clone();
    let app = Router::new().fallback(move |request: Request| {
        let record = record.clone();
        async move {
            record.lock().unwrap().push(request.uri().to_string());
            "ok"
        }
    });
    let addr = shadowdiff_tests::serve(app).await;
    (addr, seen)
}

async fn tap(infra: &Infra, upstream: SocketAddr, tap_extra: &str) -> TapUnderTest {
    TapUnderTest::start(&infra.brokers, upstream, &format!("{tap_extra}\n{REDACTION}"), "").await
}

fn addr_of(tap: &TapUnderTest) -> SocketAddr {
    tap.url.trim_start_matches("http://").parse().unwrap()
}

/// Reads until the peer closes the connection (or resets it), and returns when that was;
/// panics if it is still open after `DEADLINE`.
async fn closed_by_peer(stream: &mut TcpStream, what: &str) -> Instant {
    let mut buf = [0; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(DEADLINE, read_all).await.unwrap_or_else(|_| panic!("{what}: still open after {DEADLINE:?}"))
}

/// Sends one HTTP/1.1 request on a kept-alive connection and reads its response; the
/// status and body, or `None` when the connection was closed instead.
async fn http1(stream: &mut TcpStream, head: &str) -> Option<(u16, String)> {
    stream.write_all(head.as_bytes()).await.ok()?;
    let mut received = Vec::new();
    let mut buf = [0; 4096];
    let read = async {
        loop {
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if received.len() >= end + 4 + length {
                    let status = head[9..12].parse().unwrap();
                    return Some((status, String::from_utf8_lossy(&received[end + 4..end + 4 + length]).into_owned()));
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read).await.expect("no response and no close within the deadline")
}

async fn get_ok(url: &str) -> Result<(), String> {
    let response = reqwest::get(format!("{url}/ok")).await.map_err(|e| e.to_string())?;
    match response.status() {
        StatusCode::OK => Ok(()),
        status => Err(format!("status {status}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_is_closed_within_the_header_timeout_while_others_are_served() {
    let infra = Infra::get().await;
    let (upstream, seen) = backend().await;
    let tap =
        tap(&infra, upstream, &format!("workers = 1\nheader_read_timeout_ms = {}", HEADER_TIMEOUT.as_millis())).await;
    let timeouts_before = tap.counter("shadowdiff_tap_connections_closed_total", "reason=\"header_timeout\"").await;

    let opened = Instant::now();
    // Half a request head, nothing at all, and half the h2 preface: the last two never get
    // as far as hyper's own HTTP/1.1 deadline.
    let mut slow = Vec::new();
    for (what, sent) in [
        ("a partial HTTP/1.1 head", &b"GET /ok HTTP/1.1\r\nHost: tap\r\nX-Slow: "[..]),
        ("a silent connection", b""),
        ("a partial h2 preface", b"PRI * HTTP/2.0\r\n"),
    ] {
        let mut stream = TcpStream::connect(addr_of(&tap)).await.unwrap();
        stream.write_all(sent).await.unwrap();
        slow.push((what, stream));
    }

    // Served meanwhile, on the same (only) worker.
    let served = async {
        let mut served = 0;
        loop {
            get_ok(&tap.url).await.unwrap();
            served += 1;
            if opened.elapsed() >= HEADER_TIMEOUT {
                return served;
            }
        }
    };
    let waits = slow.iter_mut().map(|(what, stream)| async move { (*what, closed_by_peer(stream, what).await) });
    let (served, closed) = tokio::join!(served, futures_util::future::join_all(waits));
    assert!(served >= 1, "no ordinary request was served while the slow ones were open");
    for (what, at) in closed {
        let after = at.duration_since(opened);
        assert!(
            after >= HEADER_TIMEOUT - Duration::from_millis(50),
            "{what}: closed after {after:?}, before the timeout"
        );
        assert!(after < Duration::from_secs(5), "{what}: closed only after {after:?}");
    }
    let timeouts = tap.counter("shadowdiff_tap_connections_closed_total", "reason=\"header_timeout\"").await;
    assert_eq!(timeouts - timeouts_before, 3.0, "each slow connection counted once");
    assert!(!seen.lock().unwrap().is_empty());
    get_ok(&tap.url).await.unwrap();
    assert!(tap.stop().await);
}

/// A raw h2c request whose `:path` no `http::Uri` can hold: the frames are written by hand.
/// Returns the first frame the tap sends on stream 1: its type and payload.
async fn raw_h2_request(tap: SocketAddr, path: &str) -> (u8, Vec<u8>) {
    let mut stream = TcpStream::connect(tap).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // empty SETTINGS
    let mut block = Vec::new();
    for (name, value) in [(":method", "GET"), (":scheme", "http"), (":authority", "tap.example"), (":path", path)] {
        // Literal field without indexing, new name, no Huffman coding.
        block.push(0);
        for text in [name, value] {
            block.push(u8::try_from(text.len()).unwrap());
            block.extend_from_slice(text.as_bytes());
        }
    }
    let length = u32::try_from(block.len()).unwrap().to_be_bytes();
    // HEADERS, END_STREAM | END_HEADERS, stream 1.
    out.extend_from_slice(&[length[1], length[2], length[3], 0x1, 0x5, 0, 0, 0, 1]);
    out.extend_from_slice(&block);
    stream.write_all(&out).await.unwrap();
    let read = async {
        loop {
            let mut header = [0; 9];
            stream.read_exact(&mut header).await.unwrap();
            let length = (usize::from(header[0]) << 16) | (usize::from(header[1]) << 8) | usize::from(header[2]);
            let mut payload = vec![0; length];
            stream.read_exact(&mut payload).await.unwrap();
            let stream_id = u32::from_be_bytes([header[5] & 0x7f, header[6], header[7], header[8]]);
            assert_ne!(header[3], 0x7, "GOAWAY instead of an answer on the stream");
            if stream_id == 1 {
                return (header[3], payload);
            }
        }
    };
    tokio::time::timeout(DEADLINE, read).await.expect("no frame on stream 1")
}

/// An h2c request with a hand-built URI, through hyper's client (which sends its parts as
/// they are); the status.
async fn h2_status(sender: &mut hyper::client::conn::http2::SendRequest<Body>, method: &str, path: &str) -> u16 {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(Authority::from_static("tap.example"));
    parts.path_and_query = Some(PathAndQuery::try_from(path).unwrap());
    let request =
        http::Request::builder().method(method).uri(http::Uri::from_parts(parts).unwrap()).body(Body::empty()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    axum::body::to_bytes(Body::new(response.into_body()), 1 << 20).await.unwrap();
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_targets_other_than_origin_form_get_400_over_http1_and_h2c() {
    let infra = Infra::get().await;
    let (upstream, seen) = backend().await;
    let tap = tap(&infra, upstream, "header_read_timeout_ms = 60000").await;
    let rejected = || tap.counter("shadowdiff_tap_requests_rejected_total", "reason=\"request_target\"");
    let rejected_before = rejected().await;

    for (target, by_tap) in [
        ("@evil.example/x", false),
        ("http://evil.example/x", true),
        ("http://evil.example", true),
        ("evil.example:443", true),
        ("*", true),
    ] {
        let method = if target == "evil.example:443" { "CONNECT" } else { "GET" };
        let mut stream = TcpStream::connect(addr_of(&tap)).await.unwrap();
        let answer = http1(&mut stream, &format!("{method} {target} HTTP/1.1\r\nHost: evil.example\r\n\r\n")).await;
        let (status, body) = answer.unwrap_or_else(|| panic!("{method} {target}: closed without an answer"));
        assert_eq!(status, 400, "{method} {target}: {body}");
        if by_tap {
            assert_eq!(body, "the request target must be origin-form: /path?query\n", "{method} {target}");
        }
    }
    let mut stream = TcpStream::connect(addr_of(&tap)).await.unwrap();
    let options = http1(&mut stream, "OPTIONS * HTTP/1.1\r\nHost: tap.example\r\n\r\n").await;
    assert_eq!(options, Some((200, "ok".to_owned())), "OPTIONS * is forwarded");

    // h2c with prior knowledge: `*` outside OPTIONS is the tap's to refuse.
    let io = TokioIo::new(TcpStream::connect(addr_of(&tap)).await.unwrap());
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(connection);
    assert_eq!(h2_status(&mut sender, "GET", "*").await, 400);
    assert_eq!(h2_status(&mut sender, "GET", "/ok").await, 200, "the connection serves on");
    // Any other `:path` that does not start with `/` is malformed to the h2 server: the
    // stream is reset (RFC 9113, 8.1.1) before the request could reach the tap.
    for path in ["@evil.example/x", "http://evil.example/x"] {
        let (frame, payload) = raw_h2_request(addr_of(&tap), path).await;
        assert_eq!((frame, payload.as_slice()), (0x3, &[0, 0, 0, 0x1][..]), "{path}: RST_STREAM(PROTOCOL_ERROR)");
    }
    let (frame, payload) = raw_h2_request(addr_of(&tap), "/ok").await;
    assert_eq!((frame, payload.first()), (0x1, Some(&0x88)), "a good :path gets HEADERS with :status 200");

    assert_eq!(rejected().await - rejected_before, 5.0, "four over HTTP/1.1, one over h2c");
    assert_eq!(*seen.lock().unwrap(), ["*", "/ok", "/ok"], "only good targets reach the upstream");
    assert!(tap.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_worker_cap_are_refused_while_open_ones_keep_working() {
    let infra = Infra::get().await;
    let (upstream, _) = backend().await;
    let tap =
        tap(&infra, upstream, "workers = 1\nmax_connections_per_worker = 2\nheader_read_timeout_ms = 60000").await;
    let refused = || tap.counter("shadowdiff_tap_connections_closed_total", "reason=\"worker_full\"");
    let refused_before = refused().await;
    const GET: &str = "GET /ok HTTP/1.1\r\nHost: tap\r\n\r\n";

    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr_of(&tap)).await.unwrap();
        assert_eq!(http1(&mut stream, GET).await, Some((200, "ok".to_owned())));
        open.push(stream);
    }
    let mut third = TcpStream::connect(addr_of(&tap)).await.unwrap();
    assert_eq!(http1(&mut third, GET).await, None, "the third connection is closed unanswered");
    assert_eq!(refused().await - refused_before, 1.0);
    for stream in &mut open {
        assert_eq!(http1(stream, GET).await, Some((200, "ok".to_owned())), "admitted connections keep working");
    }

    // A closed connection gives its place back.
    drop(open.pop());
    let addr = addr_of(&tap);
    shadowdiff_tests::eventually("a new connection to be admitted", DEADLINE, || async move {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        http1(&mut stream, GET).await.map(|_| ()).ok_or_else(|| "refused".to_owned())
    })
    .await;
    assert!(tap.stop().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_the_limit_gets_431_over_http1_and_h2c() {
    let infra = Infra::get().await;
    let (upstream, seen) = backend().await;
    let tap = tap(&infra, upstream, "max_header_bytes = 8192\nheader_read_timeout_ms = 60000").await;
    let big = "a".repeat(9000);

    let mut stream = TcpStream::connect(addr_of(&tap)).await.unwrap();
    let answer = http1(&mut stream, &format!("GET /ok HTTP/1.1\r\nHost: tap\r\nX-Big: {big}\r\n\r\n")).await;
    assert_eq!(answer.map(|(status, _)| status), Some(431));

    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = client.get(format!("{}/ok", tap.url)).header("x-big", &big).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let response = client.get(format!("{}/ok", tap.url)).header("x-small", "a".repeat(4000)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "a head under the limit is served");
    assert_eq!(*seen.lock().unwrap(), ["/ok"], "only the request under the limit reaches the upstream");
    assert!(tap.stop().await);
}
