//! Inbound bodies → what the message says and who says it (pure).
//!
//! Slack-style JSON (`text`, `username`, `icon_url`), Discord-style JSON (`content`, `username`,
//! `avatar_url`), plain text, and JSON through a template (shipped for GitHub, GitLab,
//! Alertmanager and Grafana, or the hook's own). Every refusal says what is wrong, for the 400.

use axum::http::HeaderMap;
use minijinja::Value;

use crate::config::{Format, InboundSettings};
use crate::templates::{self, Templates};

/// What a hook's body becomes.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A message to relay.
    Message(Message),
    /// A well-formed body that is not relayed (GitHub's `ping`, an event kind without a
    /// template, a template that rendered nothing): answered 200 with the reason.
    Ignored(String),
}

/// A message, its text in Markdown.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub username: String,
    pub avatar_url: Option<String>,
}

/// Read `body` as the hook's format says.
pub fn parse(
    settings: &InboundSettings,
    templates: &Templates,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Parsed, String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let media_type = header("content-type")
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    // Slack's legacy hooks and GitHub's form option send the JSON as a `payload` form field;
    // `curl -d 'text'` sends plain text labelled as a form.
    let form_payload = (media_type == "application/x-www-form-urlencoded")
        .then(|| {
            form_urlencoded::parse(body)
                .find(|(key, _)| key == "payload")
                .map(|(_, value)| value.into_owned())
        })
        .flatten();
    let (body, is_json) = match &form_payload {
        Some(payload) => (payload.as_bytes(), true),
        None => (
            body,
            media_type == "application/json" || media_type.ends_with("+json"),
        ),
    };
    match settings.format {
        Format::Text => text(settings, body),
        Format::Auto if !is_json && !looks_like_json(body) => text(settings, body),
        Format::Auto => {
            let json = json(body)?;
            if json.get("text").is_some() || json.get("attachments").is_some() {
                slack(settings, &json)
            } else if json.get("content").is_some() || json.get("embeds").is_some() {
                discord(settings, &json)
            } else {
                Err(
                    "the JSON body has neither `text` (Slack style) nor `content` (Discord style)"
                        .into(),
                )
            }
        }
        Format::Slack => slack(settings, &json(body)?),
        Format::Discord => discord(settings, &json(body)?),
        Format::Github => {
            let event = header("x-github-event")
                .ok_or("the X-GitHub-Event header is missing (is this a GitHub hook?)")?;
            match event {
                "ping" => Ok(Parsed::Ignored("pong".into())),
                "push" | "issues" | "pull_request" | "release" | "workflow_run" => shipped(
                    settings,
                    templates,
                    &format!("github/{event}"),
                    &json(body)?,
                ),
                other => Ok(Parsed::Ignored(format!(
                    "GitHub event `{other}` is not relayed (push, issues, pull_request, release and workflow_run are)"
                ))),
            }
        }
        Format::Gitlab => {
            let json = json(body)?;
            match json.get("object_kind").and_then(|k| k.as_str()) {
                Some("push" | "tag_push") => shipped(settings, templates, "gitlab/push", &json),
                Some(other) => Ok(Parsed::Ignored(format!(
                    "GitLab event `{other}` is not relayed (push and tag_push are)"
                ))),
                None => Err("the body has no `object_kind` (is this a GitLab hook?)".into()),
            }
        }
        Format::Alertmanager => shipped(settings, templates, "alertmanager", &json(body)?),
        Format::Grafana => shipped(settings, templates, "grafana", &json(body)?),
        Format::Template => {
            let name = settings
                .template
                .as_deref()
                .ok_or("the hook has no template")?;
            let json = json(body)?;
            let mut context = match &json {
                serde_json::Value::Object(map) => map.clone(),
                _ => serde_json::Map::new(),
            };
            context.insert("body".into(), json.clone());
            let mut header_map = serde_json::Map::new();
            for (name, value) in headers {
                if let Ok(value) = value.to_str() {
                    header_map.insert(name.as_str().to_owned(), value.into());
                }
            }
            context.insert("headers".into(), header_map.into());
            render(
                settings,
                templates,
                name,
                &serde_json::Value::Object(context),
            )
        }
    }
}

fn looks_like_json(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

fn json(body: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(body).map_err(|err| format!("the body is not valid JSON: {err}"))
}

fn text(settings: &InboundSettings, body: &[u8]) -> Result<Parsed, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8 text".to_owned())?;
    let text = text.trim_end_matches(['\r', '\n']);
    if text.trim().is_empty() {
        return Err("the body is empty".into());
    }
    Ok(Parsed::Message(Message {
        text: text.to_owned(),
        username: settings.username.clone(),
        avatar_url: settings.avatar_url.clone(),
    }))
}

/// A string field, or an error naming it when it is there but not a string.
fn string_field(json: &serde_json::Value, key: &str) -> Result<Option<String>, String> {
    match json.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("`{key}` must be a string")),
    }
}

/// Slack's `attachments` (still sent by many tools) as text lines: pretext, linked title, text;
/// the fallback when an attachment has none of those.
fn slack_attachments(json: &serde_json::Value) -> Vec<String> {
    let field = |a: &serde_json::Value, key: &str| {
        a.get(key)
            .and_then(|v| v.as_str())
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
    };
    let mut lines = Vec::new();
    for attachment in json
        .get("attachments")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
    {
        let before = lines.len();
        if let Some(pretext) = field(attachment, "pretext") {
            lines.push(pretext);
        }
        if let Some(title) = field(attachment, "title") {
            lines.push(match field(attachment, "title_link") {
                Some(link) => format!("*<{link}|{title}>*"),
                None => format!("*{title}*"),
            });
        }
        if let Some(text) = field(attachment, "text") {
            lines.push(text);
        }
        if lines.len() == before
            && let Some(fallback) = field(attachment, "fallback")
        {
            lines.push(fallback);
        }
    }
    lines
}

fn slack(settings: &InboundSettings, json: &serde_json::Value) -> Result<Parsed, String> {
    let extras = slack_attachments(json);
    let mut message = chat_message(settings, json, ["text", "attachments", "icon_url"], extras)?;
    message.text = slack_to_markdown(&message.text);
    Ok(Parsed::Message(message))
}

/// Discord's `embeds` as Markdown lines: linked title, description.
fn discord_embeds(json: &serde_json::Value) -> Vec<String> {
    let mut lines = Vec::new();
    for embed in json
        .get("embeds")
        .and_then(|e| e.as_array())
        .into_iter()
        .flatten()
    {
        let get = |key: &str| {
            embed
                .get(key)
                .and_then(|v| v.as_str())
                .filter(|s| !s.trim().is_empty())
        };
        if let Some(title) = get("title") {
            lines.push(match get("url") {
                Some(url) => format!("**[{title}]({url})**"),
                None => format!("**{title}**"),
            });
        }
        if let Some(description) = get("description") {
            lines.push(description.to_owned());
        }
    }
    lines
}

fn discord(settings: &InboundSettings, json: &serde_json::Value) -> Result<Parsed, String> {
    let extras = discord_embeds(json);
    chat_message(settings, json, ["content", "embeds", "avatar_url"], extras).map(Parsed::Message)
}

/// A chat service's own webhook body (Slack's, Discord's), read the one way both are: the
/// text under `keys[0]` then the `extras` lines (from the list under `keys[1]`), refused when
/// both are empty; `username`, and the avatar under `keys[2]`, else the hook's own.
fn chat_message(
    settings: &InboundSettings,
    json: &serde_json::Value,
    [text_key, extras_key, avatar_key]: [&str; 3],
    extras: Vec<String>,
) -> Result<Message, String> {
    let mut parts: Vec<String> = string_field(json, text_key)?.into_iter().collect();
    parts.extend(extras);
    let text = parts.join("\n");
    if text.trim().is_empty() {
        return Err(if json.get(text_key).is_some() {
            format!("`{text_key}` is empty")
        } else {
            format!("the JSON body has no `{text_key}` and no `{extras_key}` with text")
        });
    }
    Ok(Message {
        text,
        username: string_field(json, "username")?.unwrap_or_else(|| settings.username.clone()),
        avatar_url: string_field(json, avatar_key)?.or_else(|| settings.avatar_url.clone()),
    })
}

fn shipped(
    settings: &InboundSettings,
    templates: &Templates,
    name: &str,
    json: &serde_json::Value,
) -> Result<Parsed, String> {
    if let Some(field) = templates::missing(json, templates::required(name)) {
        return Err(format!(
            "the body has no `{field}`, which a {name} payload carries"
        ));
    }
    render(settings, templates, name, json)
}

fn render(
    settings: &InboundSettings,
    templates: &Templates,
    name: &str,
    json: &serde_json::Value,
) -> Result<Parsed, String> {
    let text = templates.render(name, Value::from(minijinja::value::Serde(json)))?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(Parsed::Ignored("the template rendered nothing".into()));
    }
    Ok(Parsed::Message(Message {
        text: text.to_owned(),
        username: settings.username.clone(),
        avatar_url: settings.avatar_url.clone(),
    }))
}

/// Slack's `mrkdwn` to Markdown: `<url|label>` and `<url>` links, `*bold*`, `~strike~`.
/// `_italic_` and code spans are the same in both.
pub fn slack_to_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(['<', '*', '~']) {
        out.push_str(&rest[..start]);
        let marker = rest.as_bytes()[start];
        let after = &rest[start + 1..];
        if marker == b'<' {
            match after.find('>') {
                Some(end) if !after[..end].contains(['<', '\n']) => {
                    let inner = &after[..end];
                    let (url, label) = inner.split_once('|').unwrap_or((inner, ""));
                    if url.starts_with("http://")
                        || url.starts_with("https://")
                        || url.starts_with("mailto:")
                    {
                        if label.is_empty() {
                            out.push_str(&format!("<{url}>"));
                        } else {
                            out.push_str(&format!("[{label}]({url})"));
                        }
                    } else if inner.starts_with(['@', '#', '!']) {
                        // Mentions and channel links (<@U1>, <#C1|name>, <!here>): their label.
                        out.push_str(if label.is_empty() { inner } else { label });
                    } else {
                        out.push('<');
                        rest = after;
                        continue;
                    }
                    rest = &after[end + 1..];
                }
                _ => {
                    out.push('<');
                    rest = after;
                }
            }
        } else {
            let marker = marker as char;
            // A pair on one line, hugging its text, is emphasis.
            match after.find([marker, '\n']) {
                Some(end)
                    if end > 0
                        && after[end..].starts_with(marker)
                        && !after.starts_with(' ')
                        && !after[..end].ends_with(' ') =>
                {
                    let double = if marker == '*' { "**" } else { "~~" };
                    out.push_str(double);
                    out.push_str(&slack_to_markdown(&after[..end]));
                    out.push_str(double);
                    rest = &after[end + 1..];
                }
                _ => {
                    out.push(marker);
                    rest = after;
                }
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_hook;

    fn text_of(body: serde_json::Value) -> Result<String, String> {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().expect("header"));
        let body = serde_json::to_vec(&body).expect("json");
        match parse(&test_hook(), &Templates::new(), &headers, &body)? {
            Parsed::Message(m) => Ok(m.text),
            Parsed::Ignored(why) => Err(why),
        }
    }

    #[test]
    fn a_form_payload_field_is_read_as_the_json_body() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().expect("header"),
        );
        let body = b"payload=%7B%22text%22%3A%22from+a+form%22%7D";
        let parsed = parse(&test_hook(), &Templates::new(), &headers, body);
        assert!(
            matches!(&parsed, Ok(Parsed::Message(m)) if m.text == "from a form"),
            "{parsed:?}"
        );
        // Not a payload form: `curl -d 'deploy done'` means text.
        let parsed = parse(&test_hook(), &Templates::new(), &headers, b"deploy done");
        assert!(
            matches!(&parsed, Ok(Parsed::Message(m)) if m.text == "deploy done"),
            "{parsed:?}"
        );
    }

    #[test]
    fn slack_attachments_and_discord_embeds_carry_text() {
        assert_eq!(
            text_of(serde_json::json!({"attachments": [
                {"fallback": "[FIRING] x", "title": "Alert", "title_link": "https://am/1", "text": "disk *full*"},
                {"fallback": "only fallback"}
            ]})),
            Ok("**[Alert](https://am/1)**\ndisk **full**\nonly fallback".to_owned())
        );
        assert_eq!(
            text_of(
                serde_json::json!({"content": "deploy", "embeds": [{"title": "v2", "url": "https://r/2", "description": "notes"}]})
            ),
            Ok("deploy\n**[v2](https://r/2)**\nnotes".to_owned())
        );
        assert_eq!(
            text_of(serde_json::json!({"attachments": []})),
            Err("the JSON body has no `text` and no `attachments` with text".to_owned())
        );
    }

    #[test]
    fn slack_links_and_emphasis_become_markdown() {
        assert_eq!(
            slack_to_markdown("*deploy* of <https://ci/1|build 1> ~failed~ for <@U12> 2 * 3"),
            "**deploy** of [build 1](https://ci/1) ~~failed~~ for @U12 2 * 3"
        );
        assert_eq!(slack_to_markdown("see <https://x>"), "see <https://x>");
        assert_eq!(slack_to_markdown("a < b > c"), "a < b > c");
    }
}

#[cfg(test)]
#[path = "parse_props.rs"]
mod props;
