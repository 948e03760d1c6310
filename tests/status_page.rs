//! The status page through the binary. Over HTTP: the page is served without data and with
//! its content types and caching headers, its data endpoints want the token, and the live
//! feed (server-sent events) yields a relayed message. In a real headless Chromium, with a
//! real ngircd: the page asks for the token, then shows the accounts, the route graph with
//! traffic on its edges, a dead letter; a message said on IRC appears in the live feed
//! without a reload; a dead letter retried from the page is delivered, one discarded is
//! gone; stopping the IRC server turns its account red. Screenshots go to
//! `<target dir>/status-page/`.

mod support;

#[path = "support/chromium.rs"]
mod chromium;
#[path = "../connectors/irc/tests/support/mod.rs"]
mod irc;
#[path = "support/receiver.rs"]
mod receiver;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chromium::Browser;
use irc::{IrcServer, TestClient};
use serde_json::Value;
use support::{Gateway, eventually, free_port, wait_for_port};

const TOKEN: &str = "status-page-test-token-0123456789";
const WAIT: Duration = Duration::from_secs(30);

/// Console input (and output on stdout), an optional IRC channel, and a webhook room; one
/// route mirrors the console and IRC and sends both to the webhook.
fn config(port: u16, receiver: SocketAddr, irc_port: Option<u16>) -> String {
    let reconnect = "reconnect_min_secs = 0.5\nreconnect_max_secs = 2";
    let (irc, irc_room) = match irc_port {
        Some(p) => (
            irc::account("net", p, "pb", "#lobby", reconnect),
            ", \"irc.net/#lobby\"",
        ),
        None => (String::new(), ""),
    };
    format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\n\n[admin]\ntoken = \"{TOKEN}\"\n\n{}{irc}\n{}\
         [[route]]\nname = \"lobby\"\ninout = [\"console.you/lobby\"{irc_room}]\nout = [\"webhook.team/chat\"]\n",
        receiver::console_table("stdout", "operator"),
        receiver::slack_room("chat", receiver, ""),
    )
}

fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn get(port: u16, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("the gateway answers")
}

async fn json(port: u16, path: &str) -> Value {
    let response = get(port, path, Some(TOKEN)).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.expect("JSON")
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// `<target dir>/status-page/NAME`.
fn screenshot_path(name: &str) -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(&tmp).join("status-page").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_without_data_and_its_feed_streams_what_is_relayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (receiver, receiver_addr) = receiver::start(false).await;
    let port = free_port();
    let mut gateway = Gateway::start(dir.path(), &config(port, receiver_addr, None));
    block(|| wait_for_port(port, WAIT));

    // The page: HTML that holds no data, locked to this gateway by its CSP.
    let page = get(port, "/admin/", None).await;
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    assert!(header(&page, "content-security-policy").starts_with("default-src 'none'"));
    let html = page.text().await.expect("body");
    assert!(html.contains("<title>patchbay · status</title>"), "{html}");
    assert!(!html.contains("console.you") && !html.contains("webhook.team"));
    let moved = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{port}/admin"))
        .send()
        .await
        .expect("answer");
    assert_eq!(moved.status(), 308);
    assert_eq!(header(&moved, "location"), "/admin/");
    for (file, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let path = format!("/admin/page/{file}");
        let first = get(port, &path, None).await;
        assert_eq!(first.status(), 200, "{path}");
        assert_eq!(header(&first, "content-type"), content_type, "{path}");
        let etag = header(&first, "etag");
        assert!(etag.starts_with('"'), "{path}: no ETag");
        let again = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}{path}"))
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("answer");
        assert_eq!(again.status(), 304, "{path} unchanged");
    }
    assert_eq!(
        get(port, "/admin/page/secret.txt", None).await.status(),
        404
    );

    // Its data: only with the token, and never cached.
    for path in [
        "/admin/traffic",
        "/admin/activity",
        "/admin/events",
        "/admin/accounts",
    ] {
        assert_eq!(get(port, path, None).await.status(), 401, "{path}");
        let wrong = get(port, path, Some("not-the-token-0123456789")).await;
        assert_eq!(wrong.status(), 403, "{path}");
    }
    assert_eq!(
        header(
            &get(port, "/admin/traffic", Some(TOKEN)).await,
            "cache-control"
        ),
        "no-store"
    );

    // The live feed: open, then a line typed on the console is relayed and shows up on it.
    let mut stream = get(port, "/admin/events", Some(TOKEN)).await;
    assert_eq!(stream.status(), 200);
    assert_eq!(header(&stream, "content-type"), "text/event-stream");
    gateway.type_line("hello stream");
    let mut seen = String::new();
    let deadline = Instant::now() + WAIT;
    while !seen.contains("\"preview\":\"hello stream\"") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("the feed ended or stalled ({other:?}); it sent:\n{seen}"),
        }
    }
    let frame = seen
        .split("\n\n")
        .find(|f| f.contains("hello stream"))
        .expect("the frame");
    assert!(frame.contains("event: delivered"), "{frame}");
    assert!(frame.contains("\"room\":\"webhook.team/chat\""), "{frame}");
    assert!(
        frame.contains("\"origin\":\"console.you/lobby\""),
        "{frame}"
    );
    assert!(frame.contains("\"author\":\"operator\""), "{frame}");
    assert_eq!(receiver.got(), ["hello stream"]);

    // The same, for scripts: the edge's count, the activity, last in and out.
    let traffic = json(port, "/admin/traffic").await;
    assert_eq!(traffic["window_minutes"], 15);
    let edge = &traffic["edges"][0];
    assert_eq!(
        (
            &edge["route"],
            &edge["from"],
            &edge["to"],
            &edge["delivered"]
        ),
        (
            &Value::from("lobby"),
            &Value::from("console.you/lobby"),
            &Value::from("webhook.team/chat"),
            &Value::from(1)
        ),
        "{traffic}"
    );
    let recent = json(port, "/admin/activity").await;
    let delivered: Vec<&Value> = recent["activities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["kind"] == "delivered")
        .collect();
    assert_eq!(delivered.len(), 1, "{recent}");
    assert_eq!(delivered[0]["preview"], "hello stream");
    let seq = delivered[0]["seq"].as_u64().expect("seq");
    let after = json(port, &format!("/admin/activity?after={seq}")).await;
    assert_eq!(
        after["activities"].as_array().map(Vec::len),
        Some(0),
        "{after}"
    );
    let accounts = json(port, "/admin/accounts").await;
    let account = |name: &str| {
        accounts
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        account("console.you")["last_in_ms"].as_i64().is_some(),
        "{accounts}"
    );
    assert!(
        account("webhook.team")["last_out_ms"].as_i64().is_some(),
        "{accounts}"
    );
    assert!(json(port, "/admin/status").await["events"].as_u64() >= Some(1));

    // A stop ends the open stream instead of waiting for it.
    let stopping = Instant::now();
    assert!(block(|| gateway.stop()), "clean stop");
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "the open feed held the stop for {:?}",
        stopping.elapsed()
    );
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_the_page_shows_the_bridge_and_follows_it_live() {
    let browser = Browser::start().await;
    assert!(
        irc::have("ngircd"),
        "ngircd is not installed: run tests/install-deps.sh"
    );
    let mut server = IrcServer::ngircd().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (receiver, receiver_addr) = receiver::start(true).await;
    let mut alice = TestClient::connect_in(server.port, "alice", "#lobby").await;
    let port = free_port();
    let mut gateway = Gateway::start(dir.path(), &config(port, receiver_addr, Some(server.port)));
    block(|| wait_for_port(port, WAIT));
    alice.expect_join("pb", "#lobby").await;

    // Said on the console: it reaches IRC, and the refusing webhook makes it a dead letter.
    gateway.type_line("first from the console");
    alice
        .expect_privmsg("#lobby", "first from the console")
        .await;
    eventually("the first dead letter", WAIT, || async {
        json(port, "/admin/dead-letters")
            .await
            .as_array()
            .map(Vec::len)
            == Some(1)
    })
    .await;

    let page = browser.page(1440, 1000).await;
    page.color_scheme("dark").await;
    let url = format!("http://127.0.0.1:{port}/admin/");
    page.open(&url).await;

    // First the token, and nothing else; a wrong one is refused where the user typed it.
    page.wait_for(
        "the token form",
        "!document.getElementById('gate').hidden",
        WAIT,
    )
    .await;
    let shown = page.eval("document.body.innerText").await;
    let shown = shown.as_str().unwrap_or_default();
    assert!(
        shown.contains("Admin token") && !shown.contains("irc.net"),
        "{shown}"
    );
    page.click("#token").await;
    page.type_text("not-the-token-0123456789").await;
    page.click("#gate-submit").await;
    page.wait_for(
        "the refusal",
        "document.getElementById('gate-error').textContent.includes(\"not this gateway's admin token\")",
        WAIT,
    )
    .await;
    page.eval("document.getElementById('token').value = ''")
        .await;
    page.click("#token").await;
    page.type_text(TOKEN).await;
    page.click("#gate-submit").await;

    // The accounts, all up; the graph with its rooms and the edges' traffic; the dead letter.
    page.wait_for(
        "three accounts up",
        "document.querySelectorAll('#accounts tbody tr.state-up').length === 3",
        WAIT,
    )
    .await;
    for name in ["console.you", "irc.net", "webhook.team"] {
        let state = page
            .text(&format!("#accounts tr[data-account='{name}'] .state"))
            .await;
        assert_eq!(state, "up", "{name}");
        let box_ = format!("#graph .account[data-account='{name}'].state-up");
        page.wait_for(
            &format!("{name} in the graph"),
            &format!("!!document.querySelector(\"{box_}\")"),
            WAIT,
        )
        .await;
    }
    for room in ["console.you/lobby", "irc.net/#lobby", "webhook.team/chat"] {
        let node = page
            .text(&format!("#graph .room[data-room='{room}'] .room-name"))
            .await;
        assert_eq!(
            format!("{}/{node}", room.split('/').next().unwrap_or_default()),
            room
        );
    }
    let edge = |from: &str, to: &str| format!("#graph .edge[data-from='{from}'][data-to='{to}']");
    page.wait_for(
        "traffic on the console → IRC edge and a failure on the console → webhook edge",
        &format!(
            "(() => {{ const a = document.querySelector(\"{}\"); const b = document.querySelector(\"{}\"); \
             return !!a && !!b && a.dataset.delivered === '1' && a.classList.contains('active') \
             && b.dataset.failed === '1' && b.classList.contains('failing'); }})()",
            edge("console.you/lobby", "irc.net/#lobby"),
            edge("console.you/lobby", "webhook.team/chat")
        ),
        WAIT,
    )
    .await;
    // webhook.team/chat is `out`: nothing flows from it.
    assert_eq!(
        page.eval(&format!(
            "!!document.querySelector(\"{}\")",
            edge("webhook.team/chat", "irc.net/#lobby")
        ))
        .await,
        Value::Bool(false)
    );
    page.wait_for(
        "the dead letter with its reason",
        "(() => { const d = document.querySelectorAll('#dead li'); return d.length === 1 \
         && d[0].textContent.includes('first from the console') && d[0].textContent.includes('400') \
         && d[0].textContent.includes('channel_is_archived'); })()",
        WAIT,
    )
    .await;
    page.wait_for(
        "the live indicator",
        "document.getElementById('live').dataset.state === 'live'",
        WAIT,
    )
    .await;
    page.screenshot(&screenshot_path("overview-dark.png")).await;
    page.color_scheme("light").await;
    page.screenshot(&screenshot_path("overview-light.png"))
        .await;
    page.color_scheme("dark").await;

    // Said on IRC while the page is open: it shows in the live feed, with no reload.
    page.eval("window.stayed = true").await;
    alice.send("PRIVMSG #lobby :hello from irc").await;
    gateway.expect_line(WAIT, |l| l.contains("hello from irc"));
    page.wait_for(
        "the IRC line in the live feed",
        "[...document.querySelectorAll('#feed li.delivered')].some(li => li.textContent.includes('hello from irc') \
         && li.textContent.includes('irc.net/#lobby → console.you/lobby'))",
        WAIT,
    )
    .await;
    page.wait_for(
        "the IRC line's dead letter",
        "document.querySelectorAll('#dead li').length === 2",
        WAIT,
    )
    .await;
    assert_eq!(page.eval("window.stayed === true").await, Value::Bool(true));

    // Retry from the page: the receiver works again and takes it, once.
    let dead = json(port, "/admin/dead-letters").await;
    let id_of = |text: &str| {
        dead.as_array()
            .into_iter()
            .flatten()
            .find(|d| d["text"] == text)
            .and_then(|d| d["id"].as_u64())
            .expect("a dead letter")
    };
    let (first, second) = (id_of("first from the console"), id_of("hello from irc"));
    receiver.set_broken(false);
    page.click(&format!("#dead li[data-dead-id='{first}'] button.retry"))
        .await;
    eventually("the retried delivery", WAIT, || async {
        !receiver.got().is_empty()
    })
    .await;
    // Discard from the page: it asks to be sure, then the letter is gone for good.
    page.click(&format!("#dead li[data-dead-id='{second}'] button.discard"))
        .await;
    page.wait_for(
        "the discard button to ask",
        &format!("document.querySelector(\"#dead li[data-dead-id='{second}'] button.discard\").textContent === 'Discard for good?'"),
        WAIT,
    )
    .await;
    page.click(&format!("#dead li[data-dead-id='{second}'] button.discard"))
        .await;
    page.wait_for(
        "no dead letters",
        "document.querySelectorAll('#dead li').length === 0 && !document.getElementById('dead-empty').hidden",
        WAIT,
    )
    .await;
    assert_eq!(
        json(port, "/admin/dead-letters").await,
        Value::Array(Vec::new())
    );
    assert_eq!(receiver.got(), ["first from the console"]);

    // The IRC server goes away: its account turns red, in the table and the graph. (While it
    // retries, it shows `connecting` between attempts; the check reads one rendering.)
    server.stop();
    page.wait_for(
        "irc.net down, in red",
        "(() => { const cell = document.querySelector(\"#accounts tr[data-account='irc.net'] .state\"); \
         return cell.textContent === 'down' && getComputedStyle(cell).color === 'rgb(242, 73, 92)' \
         && !!document.querySelector(\"#graph .account[data-account='irc.net'].state-down\") \
         && [...document.querySelectorAll('#feed li.state-down')].some(li => li.textContent.includes('irc.net is down')); })()",
        WAIT,
    )
    .await;
    assert_eq!(page.eval("window.stayed === true").await, Value::Bool(true));
    page.screenshot(&screenshot_path("irc-down-dark.png")).await;

    // What waits for it shows in the outbox; a new refusal is a dead letter again.
    receiver.set_broken(true);
    gateway.type_line("said while irc is down");
    page.wait_for(
        "the waiting delivery and the new dead letter",
        "(() => { const row = document.querySelector(\"#outbox tr[data-room='irc.net/#lobby']\"); \
         return !!row && row.children[1].textContent === '1' \
         && [...document.querySelectorAll('#dead li')].some(li => li.textContent.includes('said while irc is down')); })()",
        WAIT,
    )
    .await;
    page.screenshot(&screenshot_path("trouble-dark.png")).await;
    page.color_scheme("light").await;
    page.screenshot(&screenshot_path("trouble-light.png")).await;

    // Everything the page loaded came from this gateway, and it threw nothing.
    let requests = page.requests();
    assert!(!requests.is_empty());
    for url in &requests {
        assert!(
            url.starts_with(&format!("http://127.0.0.1:{port}/admin")),
            "the page fetched {url}"
        );
    }
    let console = page.console();
    assert!(
        !console.iter().any(|line| line.starts_with("exception")),
        "the page threw: {console:?}"
    );
    eprintln!("screenshots: {}", screenshot_path("").display());
    assert!(block(|| gateway.stop()), "clean stop");
}
