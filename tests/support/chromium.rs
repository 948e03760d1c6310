//! Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for tests that
//! look at a page the way a person would: open it, type, click, wait for what shows, take
//! screenshots.
//!
//! The browser runs with its own throw-away profile, talks to loopback only (every host name
//! but 127.0.0.1 fails to resolve and everything else goes to a dead proxy, so a page that
//! tried to load something from elsewhere would fail visibly instead of reaching out) and with
//! its background services off. A missing `chromium` fails the test: it is installed by
//! tests/install-deps.sh.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long one DevTools call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The events kept for [`Page::requests`]; a test page makes far fewer.
const EVENTS_KEPT: usize = 10_000;

/// A running headless Chromium.
pub struct Browser {
    child: Child,
    profile: tempfile::TempDir,
    cdp: Arc<Cdp>,
}

/// The DevTools connection: calls by id, events kept in order.
struct Cdp {
    out: mpsc::UnboundedSender<String>,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    events: Mutex<Vec<Value>>,
    next_id: AtomicU64,
}

/// One tab.
pub struct Page {
    cdp: Arc<Cdp>,
    session: String,
}

/// Where `chromium` is, or a failure that says how to get it.
pub fn chromium_binary() -> PathBuf {
    let found = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    match found {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "chromium is not installed, and the status page tests need a real browser: \
             run tests/install-deps.sh (it does `apt-get install chromium`)"
        ),
    }
}

impl Browser {
    /// Start Chromium and connect to it.
    pub async fn start() -> Browser {
        let binary = chromium_binary();
        let profile = tempfile::tempdir().expect("a profile dir for chromium");
        let log = std::fs::File::create(profile.path().join("chromium.log")).expect("log file");
        let child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-port=0",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                "--disable-domain-reliability",
                "--disable-client-side-phishing-detection",
                "--no-pings",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--proxy-server=127.0.0.1:9",
                "--window-size=1440,1000",
                "--hide-scrollbars",
                "--font-render-hinting=none",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        let url = devtools_url(profile.path(), Duration::from_secs(60)).await;
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap_or_else(|err| panic!("cannot reach chromium's DevTools at {url}: {err}"));
        let (mut sink, mut stream) = socket.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
        let cdp = Arc::new(Cdp {
            out,
            waiting: Mutex::new(HashMap::new()),
            events: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn(async move {
            while let Some(text) = outgoing.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
        });
        let reader = Arc::clone(&cdp);
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if let Some(id) = value.get("id").and_then(Value::as_u64) {
                    let waiter = reader.waiting.lock().expect("lock").remove(&id);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(value);
                    }
                } else {
                    let mut events = reader.events.lock().expect("lock");
                    if events.len() < EVENTS_KEPT {
                        events.push(value);
                    }
                }
            }
        });
        Browser {
            child,
            profile,
            cdp,
        }
    }

    /// A new tab of `width` × `height` CSS pixels, showing about:blank.
    pub async fn page(&self, width: u32, height: u32) -> Page {
        let target = self
            .cdp
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = self
            .cdp
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await;
        let session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        let page = Page {
            cdp: Arc::clone(&self.cdp),
            session,
        };
        for domain in ["Page.enable", "Runtime.enable", "Network.enable"] {
            page.call(domain, json!({})).await;
        }
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await;
        page
    }

    /// What Chromium printed, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait for Chromium to write where its DevTools listen (`DevToolsActivePort` in the
/// profile: the port, then the browser's path).
async fn devtools_url(profile: &Path, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let file = profile.join("DevToolsActivePort");
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                return format!("ws://127.0.0.1:{}{}", port.trim(), path.trim());
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromium did not open its DevTools port within {timeout:?}; its log:\n{}",
            std::fs::read_to_string(profile.join("chromium.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Cdp {
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = Value::from(session);
        }
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().expect("lock").insert(id, tx);
        self.out
            .send(message.to_string())
            .unwrap_or_else(|_| panic!("{method}: the DevTools connection is closed"));
        let answer = tokio::time::timeout(CALL_TIMEOUT, rx)
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer within {CALL_TIMEOUT:?}"))
            .unwrap_or_else(|_| panic!("{method}: the DevTools connection closed"));
        if let Some(error) = answer.get("error") {
            panic!("{method} failed: {error}");
        }
        answer["result"].clone()
    }
}

impl Page {
    /// One DevTools call in this tab.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.cdp.call(Some(&self.session), method, params).await
    }

    /// Load `url` and wait until the document has loaded.
    pub async fn open(&self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
        self.wait_for(
            &format!("{url} to load"),
            &format!(
                "location.href === {} && document.readyState === 'complete'",
                Value::from(url)
            ),
            Duration::from_secs(30),
        )
        .await;
    }

    /// The value of a JavaScript expression (promises awaited); a thrown error fails the test.
    pub async fn eval(&self, expression: &str) -> Value {
        let answer = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(details) = answer.get("exceptionDetails") {
            panic!("the page threw on `{expression}`: {details}");
        }
        answer["result"]["value"].clone()
    }

    /// Poll `condition` (a JavaScript expression) until it is `true`; fail with `what` and
    /// the page's text after `timeout`.
    pub async fn wait_for(&self, what: &str, condition: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(condition).await == Value::Bool(true) {
                return;
            }
            if Instant::now() >= deadline {
                let text = self
                    .eval("document.body ? document.body.innerText : ''")
                    .await;
                panic!(
                    "timed out after {timeout:?} waiting for {what} ({condition}); the page shows:\n{}",
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the first element `selector` matches ("" if none).
    pub async fn text(&self, selector: &str) -> String {
        let value = self
            .eval(&format!(
                "(document.querySelector({}) || {{}}).textContent || ''",
                Value::from(selector)
            ))
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Click the first element `selector` matches, as a user would (a real mouse click at
    /// its centre, after scrolling it into view).
    pub async fn click(&self, selector: &str) {
        let centre = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({}); if (!e) return null; \
                 e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
                 return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
                Value::from(selector)
            ))
            .await;
        let (Some(x), Some(y)) = (centre[0].as_f64(), centre[1].as_f64()) else {
            panic!("nothing to click: no element matches {selector}");
        };
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            )
            .await;
        }
    }

    /// Type `text` into the focused element, key by key.
    pub async fn type_text(&self, text: &str) {
        self.call("Input.insertText", json!({ "text": text })).await;
    }

    /// Show the page as the system's dark or light scheme would.
    pub async fn color_scheme(&self, scheme: &str) {
        self.call(
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
        )
        .await;
    }

    /// A PNG of the whole page (beyond the viewport), written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        // From the top, so that a sticky header sits where a person sees it.
        self.eval("window.scrollTo(0, 0)").await;
        let metrics = self.call("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let (width, height) = (
            size["width"].as_f64().unwrap_or(1440.0).ceil(),
            size["height"].as_f64().unwrap_or(1000.0).ceil(),
        );
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 }
                }),
            )
            .await;
        let png = base64_decode(shot["data"].as_str().unwrap_or_default());
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the screenshot dir");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Every URL this tab asked for so far.
    pub fn requests(&self) -> Vec<String> {
        self.cdp
            .events
            .lock()
            .expect("lock")
            .iter()
            .filter(|e| {
                e["method"] == "Network.requestWillBeSent"
                    && e["sessionId"] == self.session.as_str()
            })
            .filter_map(|e| e["params"]["request"]["url"].as_str().map(str::to_owned))
            .collect()
    }

    /// Messages the page logged to its console and errors it threw.
    pub fn console(&self) -> Vec<String> {
        self.cdp
            .events
            .lock()
            .expect("lock")
            .iter()
            .filter(|e| e["sessionId"] == self.session.as_str())
            .filter_map(|e| match e["method"].as_str() {
                Some("Runtime.exceptionThrown") => Some(format!(
                    "exception: {}",
                    e["params"]["exceptionDetails"]["exception"]["description"]
                )),
                Some("Runtime.consoleAPICalled") => Some(format!(
                    "{}: {}",
                    e["params"]["type"].as_str().unwrap_or_default(),
                    e["params"]["args"]
                )),
                _ => None,
            })
            .collect()
    }
}

/// Standard base64 (DevTools sends screenshots so), padding optional.
fn base64_decode(text: &str) -> Vec<u8> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut bits, mut count) = (0u32, 0u32);
    for c in text.bytes().filter_map(value) {
        bits = (bits << 6) | c;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}
