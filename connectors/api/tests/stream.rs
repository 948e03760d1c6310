//! The WebSocket stream over real loopback connections: every client gets every event, clients
//! send and get acks, pings are answered, and a client that reconnects with `after` gets what
//! it missed exactly once, then the live feed.

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::{TOKEN, get_json, start};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const CONFIG: &str = "token = \"api-token-123\"\nping_interval_secs = 0.2\n";

async fn connect(url: &str) -> Ws {
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {TOKEN}").parse().expect("header"),
    );
    let (ws, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    assert_eq!(response.status(), 101);
    ws
}

/// The next JSON frame (answering nothing; tungstenite answers pings itself).
async fn next(ws: &mut Ws) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the stream is open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON");
        }
    }
}

/// Send `frame` as a JSON text frame.
async fn send_json(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
}

fn text_of(frame: &Value) -> String {
    frame["event"]["body"]["blocks"][0]["spans"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn every_client_gets_every_event_and_can_send() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = start("bots", CONFIG, dir.path()).await;
    let mut a = connect(&api.ws).await;
    let mut b = connect(&format!("{}?rooms=lobby", api.ws)).await;
    // A client that only has the query token (browsers cannot set headers).
    let (mut c, _) = tokio_tungstenite::connect_async(format!("{}?token={TOKEN}", api.ws))
        .await
        .expect("connect with ?token=");

    for i in 0..20 {
        api.say("lobby", "alice", &format!("line {i}")).await;
    }
    api.say("ops", "alice", "ops only").await;
    for ws in [&mut a, &mut b, &mut c] {
        for i in 0..20 {
            let frame = next(ws).await;
            assert_eq!(frame["op"], "entry");
            assert_eq!(frame["direction"], "delivered");
            assert_eq!(text_of(&frame), format!("line {i}"));
        }
    }
    assert_eq!(text_of(&next(&mut a).await), "ops only");
    assert_eq!(text_of(&next(&mut c).await), "ops only");

    // b sends; it gets an ack, and everyone sees the sent entry.
    send_json(
        &mut b,
        json!({"op": "send", "ref": "r1", "room": "lobby", "username": "carol", "text": "hi all"}),
    )
    .await;
    let ack = next(&mut b).await;
    assert_eq!(ack["op"], "ack", "{ack}");
    assert_eq!(ack["ref"], "r1");
    let event_id = ack["event_id"].as_str().expect("event id").to_owned();
    for ws in [&mut a, &mut b, &mut c] {
        let frame = next(ws).await;
        assert_eq!(frame["direction"], "sent");
        assert_eq!(frame["nick"], "carol");
        assert_eq!(frame["event"]["id"], event_id.as_str());
        assert_eq!(frame["id"], ack["id"]);
    }
    let emitted = api.wait_emitted(1).await;
    assert_eq!(emitted[0].1.author.name, "carol");
    assert_eq!(emitted[0].1.room, "lobby");

    // Mistakes get an error frame, and the stream stays open.
    send_json(
        &mut a,
        json!({"op": "send", "ref": "r2", "room": "lobby", "text": "who?"}),
    )
    .await;
    let error = next(&mut a).await;
    assert_eq!(
        error,
        json!({"op": "error", "ref": "r2", "error": "`username` is required: who is speaking?"})
    );
    a.send(Message::Text("not json".into()))
        .await
        .expect("send");
    assert_eq!(next(&mut a).await["op"], "error");
    send_json(&mut a, json!({"op": "ping"})).await;
    assert_eq!(next(&mut a).await, json!({"op": "pong"}));
    api.stop().await;
}

#[tokio::test]
async fn the_server_pings_and_answers_pings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = start("bots", CONFIG, dir.path()).await;
    let mut ws = connect(&api.ws).await;
    ws.send(Message::Ping(b"hello".to_vec().into()))
        .await
        .expect("ping");
    let mut got_pong = false;
    let mut got_ping = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !(got_pong && got_ping) {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("frames within 10 s")
        {
            Some(Ok(Message::Pong(payload))) => {
                assert_eq!(&payload[..], b"hello");
                got_pong = true;
            }
            Some(Ok(Message::Ping(_))) => got_ping = true,
            Some(Ok(_)) => {}
            other => panic!("the stream ended: {other:?}"),
        }
    }
    api.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = start("bots", CONFIG, dir.path()).await;
    let mut ws = connect(&api.ws).await;
    // tungstenite answers pings only while the stream is polled: this client stays silent
    // (not polled) for five ping intervals, which is the behaviour under test.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut closed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(frame) = tokio::time::timeout_at(deadline, ws.next()).await {
        match frame {
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                closed = true;
                break;
            }
            Some(Ok(_)) => {}
        }
    }
    assert!(
        closed,
        "the server closed a client that did not answer pings"
    );
    api.stop().await;
}

#[tokio::test]
async fn a_client_that_reconnects_with_after_catches_up_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = start("bots", CONFIG, dir.path()).await;
    let mut ws = connect(&api.ws).await;
    for i in 0..3 {
        api.say("lobby", "alice", &format!("before {i}")).await;
    }
    let mut last = 0;
    for i in 0..3 {
        let frame = next(&mut ws).await;
        assert_eq!(text_of(&frame), format!("before {i}"));
        last = frame["id"].as_i64().expect("id");
    }
    drop(ws);
    // Missed while away, including more than the live buffer holds would not matter: the
    // backlog comes from the log.
    for i in 0..1500 {
        api.say("lobby", "bob", &format!("missed {i}")).await;
    }
    let mut ws = connect(&format!("{}?after={last}", api.ws)).await;
    for i in 0..1500 {
        let frame = next(&mut ws).await;
        assert_eq!(text_of(&frame), format!("missed {i}"));
    }
    api.say("lobby", "carol", "live again").await;
    let frame = next(&mut ws).await;
    assert_eq!(
        text_of(&frame),
        "live again",
        "no repeat between backlog and live"
    );
    // The REST log says the same.
    let page: Value = get_json(format!(
        "{}/lobby/messages?after={last}&limit=1000",
        api.base
    ))
    .await;
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(1000));
    api.stop().await;
}

#[tokio::test]
async fn a_reader_that_falls_behind_still_gets_everything_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Pings far apart: this client reads nothing for a while, so it cannot answer them.
    let api = start(
        "bots",
        "token = \"api-token-123\"\nping_interval_secs = 60\n",
        dir.path(),
    )
    .await;
    let mut slow = connect(&api.ws).await;
    // 3000 entries of 6 kB (more than the live buffer of 1024 entries and the socket buffers)
    // while the client reads nothing: the server falls behind the broadcast and catches up
    // from the log.
    let long = "x".repeat(6000);
    for i in 0..3000 {
        api.say("lobby", "alice", &format!("{i} {long}")).await;
    }
    let mut previous = 0;
    for i in 0..3000 {
        let frame = next(&mut slow).await;
        assert_eq!(text_of(&frame), format!("{i} {long}"));
        let id = frame["id"].as_i64().expect("id");
        assert!(id > previous);
        previous = id;
    }
    api.stop().await;
}

#[tokio::test]
async fn streams_close_when_the_gateway_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = start("bots", CONFIG, dir.path()).await;
    let mut ws = connect(&api.ws).await;
    api.stop().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a close within 10 s")
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1001);
                assert_eq!(frame.reason.as_str(), "the gateway is stopping");
                break;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// A measurement, not a check: `cargo test -p patchbay-api --release --test stream -- --ignored
/// --nocapture fan_out`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn fan_out_latency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = start("bots", "token = \"api-token-123\"\n", dir.path()).await;
    let clients: usize = std::env::var("CLIENTS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(10);
    const EVENTS: usize = 500;
    let mut readers = Vec::new();
    for _ in 0..clients {
        let mut ws = connect(&api.ws).await;
        readers.push(tokio::spawn(async move {
            let mut at = Vec::with_capacity(EVENTS);
            for _ in 0..EVENTS {
                next(&mut ws).await;
                at.push(std::time::Instant::now());
            }
            at
        }));
    }
    let mut sent = Vec::with_capacity(EVENTS);
    let started = std::time::Instant::now();
    for i in 0..EVENTS {
        sent.push(std::time::Instant::now());
        api.say("lobby", "alice", &format!("line {i}")).await;
    }
    let mut latencies = Vec::new();
    for reader in readers {
        let at = reader.await.expect("reader");
        latencies.extend(at.iter().zip(&sent).map(|(a, s)| a.duration_since(*s)));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "{EVENTS} deliveries to {clients} stream clients in {elapsed:?} ({:.0}/s): latency from deliver() to each client p50 {:?}, p99 {:?}",
        EVENTS as f64 / elapsed.as_secs_f64(),
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100]
    );
    api.stop().await;
}

/// Read until the server closes; its close frame, if it sent one.
async fn close_of(ws: &mut Ws) -> Option<(u16, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("an end within 10 s")
        {
            Some(Ok(Message::Close(frame))) => {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
            None | Some(Err(_)) => return None,
            Some(Ok(Message::Text(text))) => panic!("the oversized send was taken: {text}"),
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_frame_or_a_message_over_the_size_limit_closes_the_stream_with_1009() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = start(
        "bots",
        "token = \"api-token-123\"\nmax_body_bytes = 1024\n",
        dir.path(),
    )
    .await;
    let why = Some((
        1009,
        "a message or frame is over the limit of 1024 bytes".to_owned(),
    ));

    // One frame over the limit.
    let mut ws = connect(&api.ws).await;
    let big = json!({"op": "send", "room": "lobby", "username": "b", "text": "x".repeat(4096)});
    // The server may close before the whole frame is written.
    let _ = ws.send(Message::Text(big.to_string().into())).await;
    assert_eq!(close_of(&mut ws).await, why);

    // A message of three frames under the limit each, over it together.
    let mut ws = connect(&api.ws).await;
    let part = "y".repeat(600);
    for (opcode, fin) in [
        (OpCode::Data(Data::Text), false),
        (OpCode::Data(Data::Continue), false),
        (OpCode::Data(Data::Continue), true),
    ] {
        let _ = ws
            .send(Message::Frame(Frame::message(
                part.clone().into_bytes(),
                opcode,
                fin,
            )))
            .await;
    }
    assert_eq!(close_of(&mut ws).await, why);

    // Just under the limit is a send like any other.
    let mut ws = connect(&api.ws).await;
    let fits = json!({"op": "send", "ref": "r1", "room": "lobby", "username": "b", "text": "z".repeat(900)});
    assert!(fits.to_string().len() < 1024);
    send_json(&mut ws, fits).await;
    let ack = next(&mut ws).await;
    assert_eq!(ack["op"], "ack", "{ack}");
    assert_eq!(api.recorder.events().len(), 1, "only the send that fits");
    api.stop().await;
}
