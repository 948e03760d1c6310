//! The shared HTTP listener (`patchbay::http`) under hostile clients, with raw TCP clients on
//! loopback: a slowloris head, an idle connection, a body that trickles, an oversized head, a
//! client that never reads, more connections than the cap, and a WebSocket message over the
//! API's limit — each cut off as documented while well-behaved clients keep being served.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use patchbay::http::{Limits, serve_listener};
use patchbay_sdk::testkit::Recorder;
use patchbay_sdk::{AccountInfo, ConnectorContext, ConnectorFactory, ConnectorState, StateHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Limits short enough to watch them act.
fn limits() -> Limits {
    Limits {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
        max_connections: 16,
        max_header_bytes: 8 * 1024,
    }
}

/// A listener on a free loopback port.
struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(app: Router, limits: Limits) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve_listener(listener, app, stop.clone(), limits));
    Server { addr, stop, task }
}

/// A route for well-behaved clients, and one whose answer is far larger than any socket
/// buffer (made lazily, so the test does not hold it in memory).
fn plain_routes() -> Router {
    Router::new()
        .route("/ping", get(|| async { "pong" }))
        .route(
            "/big",
            get(|| async {
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let chunks = futures::stream::repeat(chunk)
                    .take(1024)
                    .map(Ok::<_, std::io::Error>);
                Body::from_stream(chunks)
            }),
        )
}

/// Read what the server sends until it closes the connection (an error counts as closed);
/// how long that took.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server closed the connection within {within:?}"
    );
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

/// Read until what arrived ends with `end`, within `within`.
async fn read_until(stream: &mut TcpStream, end: &str, within: Duration) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        while !got.ends_with(end.as_bytes()) {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("an answer in time");
    String::from_utf8_lossy(&got).into_owned()
}

/// A complete `GET /ping` on a fresh connection, answered within `within`.
async fn ping(addr: SocketAddr, within: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    read_to_close(&mut stream, within).await.0
}

#[tokio::test]
async fn a_slowloris_head_is_cut_off_after_the_header_timeout_while_others_are_served() {
    let server = serve(plain_routes(), limits()).await;
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    slow.write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\n")
        .await
        .expect("write");
    let (mut read, mut write) = slow.into_split();
    // One header byte every 100 ms: the head would never end.
    let trickle = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(100));
        loop {
            interval.tick().await;
            if write.write_all(b"X").await.is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    // Meanwhile a well-behaved client is answered at once.
    let answer = ping(server.addr, Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("pong"), "{answer}");

    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), read.read_to_end(&mut buf)).await;
    let took = started.elapsed();
    trickle.abort();
    assert!(closed.is_ok(), "the slow head was cut off within 5 s");
    assert!(
        took >= Duration::from_millis(900),
        "not before the header timeout: {took:?}"
    );
    let answered = String::from_utf8_lossy(&buf);
    assert!(
        !answered.contains("pong"),
        "the slow request was never served: {answered}"
    );
    eprintln!("slowloris head cut off after {took:?} (header timeout 1 s)");
}

#[tokio::test]
async fn idle_and_kept_alive_connections_are_closed_after_the_header_timeout() {
    let server = serve(plain_routes(), limits()).await;
    // Connected, never a byte.
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    let (said, took) = read_to_close(&mut idle, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(!said.contains("200"), "{said}");

    // One request answered, then the keep-alive connection sits idle.
    let mut kept = TcpStream::connect(server.addr).await.expect("connect");
    kept.write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let (said, took) = read_to_close(&mut kept, Duration::from_secs(5)).await;
    assert!(
        said.starts_with("HTTP/1.1 200") && said.ends_with("pong"),
        "{said}"
    );
    assert!(took >= Duration::from_millis(900), "{took:?}");
}

#[tokio::test]
async fn a_head_over_the_size_limit_gets_431() {
    let server = serve(plain_routes(), limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let huge = format!(
        "GET /ping HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    // The server may answer and close before the whole head is written.
    let _ = stream.write_all(huge.as_bytes()).await;
    let (said, _) = read_to_close(&mut stream, Duration::from_secs(5)).await;
    assert!(said.starts_with("HTTP/1.1 431"), "{said}");
}

fn account(protocol: &str, name: &str, dir: &Path) -> AccountInfo {
    AccountInfo {
        account: format!("{protocol}.{name}"),
        config_dir: dir.to_owned(),
        data_dir: dir.to_owned(),
    }
}

/// The webhook and API connectors' real routes (`/hooks/ci/...`, `/api/bots/...`); the API
/// connector runs (its stream needs the log), the webhook one need not for these tests.
async fn connector_routes(dir: &Path, sink: Arc<Recorder>, stop: &CancellationToken) -> Router {
    let table = |source: &str| -> toml::Table { toml::from_str(source).expect("TOML") };
    let webhook = patchbay_webhook::WebhookFactory
        .build(
            &account("webhook", "ci", dir),
            table("token = \"hook-token\""),
        )
        .expect("webhook config");
    let api = patchbay_api::ApiFactory
        .build(
            &account("api", "bots", dir),
            table("token = \"api-token-123\"\nmax_body_bytes = 1024"),
        )
        .expect("api config");
    let (state, mut up) = StateHandle::new();
    let ctx = ConnectorContext {
        account: "api.bots".into(),
        sink: sink.sink("api.bots"),
        state,
        shutdown: stop.clone(),
        data_dir: dir.to_owned(),
    };
    let running = Arc::clone(&api);
    tokio::spawn(async move { running.run(ctx).await });
    tokio::time::timeout(
        Duration::from_secs(10),
        up.wait_for(|s| *s == ConnectorState::Up),
    )
    .await
    .expect("the API comes up")
    .expect("state");
    let routes = [webhook.http_routes(), api.http_routes()];
    routes
        .into_iter()
        .flatten()
        .fold(plain_routes(), Router::merge)
}

#[tokio::test]
async fn a_body_that_trickles_past_the_body_timeout_gets_408_from_webhooks_and_the_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let sink = Arc::new(Recorder::default());
    let app = connector_routes(dir.path(), Arc::clone(&sink), &stop).await;
    let server = serve(app, limits()).await;
    for (path, token) in [
        ("/hooks/ci/alerts", "hook-token"),
        ("/api/bots/lobby/messages", "api-token-123"),
    ] {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"text\":"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        let started = Instant::now();
        let answer = read_until(&mut stream, "}", Duration::from_secs(5)).await;
        let took = started.elapsed();
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(
            answer.ends_with(r#"{"error":"the body did not arrive in time"}"#),
            "{path}: {answer}"
        );
        assert!(took >= Duration::from_millis(900), "{path}: {took:?}");
        eprintln!("{path}: a trickling body got 408 after {took:?} (body timeout 1 s)");
    }
    assert!(sink.events().is_empty());
    stop.cancel();
}

#[tokio::test]
async fn a_client_that_does_not_read_is_dropped_after_the_write_timeout() {
    let server = serve(
        plain_routes(),
        Limits {
            max_connections: 1,
            ..limits()
        },
    )
    .await;
    // Asks for 64 MiB and reads none of it: it holds the only slot until the write stalls.
    let mut hog = TcpStream::connect(server.addr).await.expect("connect");
    hog.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let answer = ping(server.addr, Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        took >= Duration::from_millis(900),
        "served only once the hog was dropped: {took:?}"
    );
    eprintln!("a non-reading client released its slot after {took:?} (write timeout 1 s)");
    drop(hog);
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let server = serve(
        plain_routes(),
        Limits {
            header_timeout: Duration::from_secs(60),
            max_connections: 3,
            ..limits()
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    // A fourth client: queued, not served, while the three hold every slot.
    let mut fourth = TcpStream::connect(server.addr).await.expect("connect");
    fourth
        .write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(500), fourth.read(&mut buf)).await;
    assert!(early.is_err(), "no answer while the cap is reached");

    // One of the three leaves: the fourth is served.
    drop(held.pop());
    let (answer, _) = read_to_close(&mut fourth, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The two still held are real connections that are served too.
    let mut second = held.pop().expect("held");
    second
        .write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let (answer, _) = read_to_close(&mut second, Duration::from_secs(5)).await;
    assert!(answer.ends_with("pong"), "{answer}");
}

#[tokio::test]
async fn websocket_streams_work_through_the_listener_and_oversize_messages_close_them() {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let sink = Arc::new(Recorder::default());
    let app = connector_routes(dir.path(), Arc::clone(&sink), &stop).await;
    let server = serve(app, limits()).await;
    let url = format!("ws://{}/api/bots/stream", server.addr);
    let connect = || async {
        let mut request = url.as_str().into_client_request().expect("request");
        request.headers_mut().insert(
            "authorization",
            "Bearer api-token-123".parse().expect("header"),
        );
        let (ws, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("connect");
        assert_eq!(response.status(), 101);
        ws
    };

    // Upgraded connections outlive the header timeout: the stream is not an idle head.
    let mut ws = connect().await;
    let send = serde_json::json!({"op": "send", "ref": "a", "room": "lobby", "username": "bob", "text": "hi"});
    ws.send(Message::Text(send.to_string().into()))
        .await
        .expect("send");
    let ack = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => return text.to_string(),
                Some(Ok(_)) => {}
                other => panic!("the stream ended: {other:?}"),
            }
        }
    })
    .await
    .expect("an ack within 5 s");
    assert!(ack.contains(r#""op":"ack""#), "{ack}");

    // Over the API's 1024-byte limit: closed with 1009 and the reason.
    let big = serde_json::json!({"op": "send", "room": "lobby", "username": "bob", "text": "x".repeat(4096)});
    let _ = ws.send(Message::Text(big.to_string().into())).await;
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("no close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("a close within 5 s")
    .expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1009);
    assert_eq!(
        close.reason.as_str(),
        "a message or frame is over the limit of 1024 bytes"
    );
    assert_eq!(sink.events().len(), 1, "only the send that fit");
    stop.cancel();
}

#[tokio::test]
async fn the_listener_stops_accepting_and_returns_on_stop() {
    let mut server = serve(plain_routes(), limits()).await;
    let answer = ping(server.addr, Duration::from_secs(2)).await;
    assert!(answer.ends_with("pong"), "{answer}");
    server.stop.cancel();
    let task = &mut server.task;
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the listener returns within 5 s")
        .expect("no panic");
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "the port is closed"
    );
}
