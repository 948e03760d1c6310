//! `patchbay status`, `patchbay dead-letters list|retry|discard` and `patchbay reload`.
//!
//! Each asks the running gateway through its admin API when the config has one (`[admin]`
//! with a token, and a listener). When nothing answers there the gateway is not running, and
//! `status` and `dead-letters` use the engine's store directly: the embedded SQLite file in
//! the data dir, or the shared JetStream. The API comes first because a running embedded
//! gateway feeds its lanes from memory: a dead letter put back into its SQLite file from
//! outside would wait there until the gateway's next start. `reload` needs the gateway.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use serde_json::Value;

use super::client::{AdminClient, Answer, ClientError};
use crate::config::Config;
use crate::store::DeadLetter;

/// What `patchbay dead-letters` does.
#[derive(Clone, Copy, Debug)]
pub enum DeadAction {
    List,
    Retry(u64),
    Discard(u64),
}

/// A time in milliseconds since the epoch, as people read it (UTC, to the second).
fn when(ms: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The API's answer, or why it is no use: `Ok(None)` when the gateway is not running.
async fn ask(client: &AdminClient, method: &str, path: &str) -> anyhow::Result<Option<Answer>> {
    let answer = match method {
        "POST" => client.post(path).await,
        "DELETE" => client.delete(path).await,
        _ => client.get(path).await,
    };
    match answer {
        Ok(answer) if answer.status == 401 || answer.status == 403 => anyhow::bail!(
            "the gateway on {} refused the admin token ({}): is it running with another config?",
            client.addr,
            answer.error_text()
        ),
        Ok(answer) => Ok(Some(answer)),
        Err(ClientError::NotRunning(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

fn expect_ok(answer: Answer) -> anyhow::Result<Value> {
    if answer.status / 100 == 2 {
        Ok(answer.json())
    } else {
        anyhow::bail!("{}", answer.error_text())
    }
}

/// `patchbay status`.
pub async fn status(config: &Config) -> anyhow::Result<String> {
    if let Some(client) = AdminClient::from_config(config)
        && let Some(answer) = ask(&client, "GET", "/admin/status").await?
    {
        let status = expect_ok(answer)?;
        let accounts = ask(&client, "GET", "/admin/accounts").await?;
        let outbox = ask(&client, "GET", "/admin/outbox").await?;
        let (Some(accounts), Some(outbox)) = (accounts, outbox) else {
            anyhow::bail!("the gateway on {} stopped while asked", client.addr);
        };
        return Ok(render_status(
            &client,
            &status,
            &expect_ok(accounts)?,
            &expect_ok(outbox)?,
        ));
    }
    crate::status::report(config).await
}

fn render_status(client: &AdminClient, status: &Value, accounts: &Value, outbox: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "engine: {} (asked the running gateway on {})",
        status["engine"].as_str().unwrap_or("?"),
        client.addr
    );
    let uptime = Duration::from_secs(status["uptime_seconds"].as_u64().unwrap_or(0));
    let _ = writeln!(
        out,
        "gateway: version {}, up {}",
        status["version"].as_str().unwrap_or("?"),
        humantime::format_duration(uptime)
    );
    let _ = writeln!(out, "accounts:");
    for account in accounts.as_array().into_iter().flatten() {
        let state = match account["reason"].as_str() {
            Some(reason) => format!("{} ({reason})", account["state"].as_str().unwrap_or("?")),
            None => account["state"].as_str().unwrap_or("?").to_owned(),
        };
        let _ = writeln!(
            out,
            "  {}: {state} since {}; {} waiting",
            account["name"].as_str().unwrap_or("?"),
            when(account["since_ms"].as_i64().unwrap_or(0)),
            account["waiting"].as_u64().unwrap_or(0)
        );
    }
    let _ = writeln!(out, "outbox:");
    let rooms = outbox.as_array().cloned().unwrap_or_default();
    if rooms.is_empty() {
        let _ = writeln!(out, "  empty");
    }
    for room in &rooms {
        let oldest = match room["oldest_waiting_seconds"].as_u64() {
            Some(seconds) => format!(
                ", the oldest for {}",
                humantime::format_duration(Duration::from_secs(seconds))
            ),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  {}: {} waiting{oldest}",
            room["room"].as_str().unwrap_or("?"),
            room["depth"].as_u64().unwrap_or(0)
        );
    }
    let _ = writeln!(
        out,
        "dead letters: {}",
        status["dead_letters"].as_u64().unwrap_or(0)
    );
    out
}

/// `patchbay dead-letters ...`.
pub async fn dead_letters(config: &Config, action: DeadAction) -> anyhow::Result<String> {
    if let Some(client) = AdminClient::from_config(config) {
        let (method, path) = match action {
            DeadAction::List => ("GET", "/admin/dead-letters".to_owned()),
            DeadAction::Retry(id) => ("POST", format!("/admin/dead-letters/{id}/retry")),
            DeadAction::Discard(id) => ("DELETE", format!("/admin/dead-letters/{id}")),
        };
        if let Some(answer) = ask(&client, method, &path).await? {
            let json = expect_ok(answer)?;
            return Ok(match action {
                DeadAction::List => render_list_json(&json),
                DeadAction::Retry(id) => format!("dead letter {id}: back in its room's outbox\n"),
                DeadAction::Discard(id) => format!("dead letter {id}: discarded\n"),
            });
        }
    }
    let opened = crate::status::open(config).await?;
    let store = opened.store;
    let result = match action {
        DeadAction::List => store
            .dead_letters(super::api::MAX_LIST)
            .await
            .map(|list| render_list(&list)),
        DeadAction::Retry(id) => store.retry_dead_letter(id).await.map(|found| {
            if found {
                format!("dead letter {id}: back in its room's outbox (delivered when the gateway runs)\n")
            } else {
                String::new()
            }
        }),
        DeadAction::Discard(id) => store.discard_dead_letter(id).await.map(|found| {
            if found {
                format!("dead letter {id}: discarded\n")
            } else {
                String::new()
            }
        }),
    };
    store.close().await;
    let out = result.context("reading the store")?;
    match action {
        DeadAction::Retry(id) | DeadAction::Discard(id) if out.is_empty() => {
            anyhow::bail!("no dead letter {id}")
        }
        _ => Ok(out),
    }
}

fn render_list(list: &[DeadLetter]) -> String {
    let rows: Vec<Row> = list
        .iter()
        .map(|d| Row {
            id: d.id,
            room: d.room.to_string(),
            route: d.route.clone(),
            reason: d.reason.clone(),
            failed_at_ms: d.failed_at.0,
            author: d.event.author.name.clone(),
            text: d
                .event
                .kind
                .body()
                .map(|b| b.to_plain())
                .unwrap_or_default(),
        })
        .collect();
    render_rows(&rows)
}

fn render_list_json(json: &Value) -> String {
    let rows: Vec<Row> = json
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| Row {
            id: d["id"].as_u64().unwrap_or(0),
            room: d["room"].as_str().unwrap_or("?").to_owned(),
            route: d["route"].as_str().unwrap_or("?").to_owned(),
            reason: d["reason"].as_str().unwrap_or("").to_owned(),
            failed_at_ms: d["failed_at_ms"].as_i64().unwrap_or(0),
            author: d["author"].as_str().unwrap_or("").to_owned(),
            text: d["text"].as_str().unwrap_or("").to_owned(),
        })
        .collect();
    render_rows(&rows)
}

/// One dead letter as the list prints it.
struct Row {
    id: u64,
    room: String,
    route: String,
    reason: String,
    failed_at_ms: i64,
    author: String,
    text: String,
}

fn render_rows(rows: &[Row]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        let _ = writeln!(out, "no dead letters");
        return out;
    }
    let _ = writeln!(
        out,
        "{} dead letter{}:",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    for row in rows {
        let _ = writeln!(
            out,
            "  {}: to {} (route {}) failed {}: {}",
            row.id,
            row.room,
            row.route,
            when(row.failed_at_ms),
            row.reason
        );
        let _ = writeln!(out, "     <{}> {}", row.author, row.text);
    }
    out
}

/// `patchbay reload`: through the admin API only.
pub async fn reload(config: &Config) -> anyhow::Result<String> {
    let Some(client) = AdminClient::from_config(config) else {
        anyhow::bail!(
            "this config has no admin API ([admin] token): reload the gateway with SIGHUP (`systemctl reload patchbay`, or `kill -HUP PID`)"
        );
    };
    let Some(answer) = ask(&client, "POST", "/admin/reload").await? else {
        anyhow::bail!(
            "the gateway is not running: nothing answers on {}",
            client.addr
        );
    };
    let report = expect_ok(answer)?;
    let mut out = String::from("reloaded\n");
    for (key, label) in [
        ("accounts_added", "started"),
        ("accounts_removed", "stopped"),
        ("accounts_restarted", "restarted"),
    ] {
        let names: Vec<&str> = report[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !names.is_empty() {
            let _ = writeln!(out, "  {label}: {}", names.join(", "));
        }
    }
    if report["routes_changed"].as_bool() == Some(true) {
        let _ = writeln!(out, "  routes changed");
    }
    if let Some(waiting) = report["waiting_in_removed"].as_u64().filter(|n| *n > 0) {
        let _ = writeln!(
            out,
            "  {waiting} deliveries stay in the removed accounts' outboxes"
        );
    }
    Ok(out)
}
