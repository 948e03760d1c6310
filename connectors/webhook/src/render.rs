//! Deliveries → the JSON body of an outbound POST (pure).
//!
//! Slack, Mattermost and Discord bodies carry a text line, the relayed author's name and avatar;
//! `json` carries the whole delivery as patchbay's normalized JSON (see docs/api.openapi.yaml);
//! a template gets the delivery and the text forms of its body.

use minijinja::Value;
use patchbay_sdk::text::markdown::to_markdown;
use patchbay_sdk::{Delivery, Kind};
use serde_json::json;

use crate::config::{OutboundSettings, Payload};
use crate::templates::Templates;

/// Discord refuses `content` over 2000 characters.
const DISCORD_MAX: usize = 2000;

/// The body to POST, or `None` when the event has nothing to say in this format (a reaction or
/// deletion, which a plain webhook receiver cannot apply).
pub fn render(
    settings: &OutboundSettings,
    templates: &Templates,
    delivery: &Delivery,
) -> Result<Option<Vec<u8>>, String> {
    let body = match settings.payload {
        Payload::Json => serde_json::to_vec(delivery).map_err(|err| err.to_string())?,
        Payload::Template => {
            let name = settings
                .template
                .as_deref()
                .ok_or("the room has no payload template")?;
            let context = json!({
                "delivery": delivery,
                "event": delivery.event,
                "nick": delivery.nick,
                "room": delivery.room,
                "route": delivery.route,
                "kind": delivery.event.kind.name(),
                "text": line(delivery, false).unwrap_or_default(),
                "markdown": line(delivery, true).unwrap_or_default(),
                "plain": delivery.event.kind.body().map(|b| b.to_plain()).unwrap_or_default(),
            });
            let rendered =
                templates.render(name, Value::from(minijinja::value::Serde(&context)))?;
            if rendered.trim().is_empty() {
                return Ok(None);
            }
            rendered.into_bytes()
        }
        Payload::Slack | Payload::Mattermost => {
            let Some(text) = line(delivery, true) else {
                return Ok(None);
            };
            let text = if settings.payload == Payload::Slack {
                markdown_to_slack(&text)
            } else {
                text
            };
            let mut body = json!({ "text": text, "username": delivery.nick });
            if let Some(avatar) = &delivery.event.author.avatar {
                body["icon_url"] = avatar.clone().into();
            }
            serde_json::to_vec(&body).map_err(|err| err.to_string())?
        }
        Payload::Discord => {
            let Some(text) = line(delivery, true) else {
                return Ok(None);
            };
            let mut body = json!({
                "content": cut(&text, DISCORD_MAX),
                // Discord refuses names over 80 characters.
                "username": cut(&delivery.nick, 80),
                // Relayed text must not ping @everyone on Discord.
                "allowed_mentions": { "parse": [] },
            });
            if let Some(avatar) = &delivery.event.author.avatar {
                body["avatar_url"] = avatar.clone().into();
            }
            serde_json::to_vec(&body).map_err(|err| err.to_string())?
        }
    };
    Ok(Some(body))
}

/// The event as one chat line (the author's name goes in the payload's username field), in
/// Markdown or plain text; `None` for kinds a webhook cannot show.
pub fn line(delivery: &Delivery, markdown: bool) -> Option<String> {
    let text = |body: &patchbay_sdk::RichText| {
        if markdown {
            to_markdown(body)
        } else {
            body.to_plain()
        }
    };
    let quoted = |s: String| match &delivery.quote {
        Some(quote) if markdown => {
            let first = quote.text.lines().next().unwrap_or_default();
            format!("> {}: {}\n{s}", quote.author, first)
        }
        _ => s,
    };
    let nick = &delivery.nick;
    Some(match &delivery.event.kind {
        Kind::Message { body, attachments } => {
            let mut s = text(body);
            for attachment in attachments {
                if !s.is_empty() {
                    s.push('\n');
                }
                s.push_str(&attachment.url);
            }
            quoted(s)
        }
        Kind::Action { body } => {
            if markdown {
                format!("_{}_", text(body))
            } else {
                format!("* {nick} {}", text(body))
            }
        }
        Kind::Notice { body } => text(body),
        Kind::Edit { body, .. } => format!("{} (edited)", text(body)),
        Kind::Join => format!("{nick} joined"),
        Kind::Part { reason } => match reason {
            Some(reason) => format!("{nick} left ({reason})"),
            None => format!("{nick} left"),
        },
        Kind::Topic { topic } => format!("{nick} set the topic: {topic}"),
        Kind::Nick { old, new } => format!("{old} is now known as {new}"),
        Kind::Delete { .. } | Kind::Reaction { .. } => return None,
    })
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max - 1).collect();
        cut.push('…');
        cut
    }
}

/// Markdown to Slack's `mrkdwn`: `**bold**` → `*bold*`, `~~strike~~` → `~strike~`,
/// `[label](url)` → `<url|label>`. Italic and code are written the same way.
pub fn markdown_to_slack(text: &str) -> String {
    let mut out = text.replace("**", "*").replace("~~", "~");
    let mut result = String::with_capacity(out.len());
    while let Some(open) = out.find('[') {
        let link = out[open..].find("](").and_then(|mid| {
            let mid = open + mid;
            out[mid..].find(')').map(|close| (mid, mid + close))
        });
        match link {
            Some((mid, close)) if !out[open + 1..mid].contains(['[', '\n']) => {
                result.push_str(&out[..open]);
                let label = &out[open + 1..mid];
                let url = &out[mid + 2..close];
                result.push_str(&format!("<{url}|{label}>"));
                out = out[close + 1..].to_owned();
            }
            _ => {
                result.push_str(&out[..=open]);
                out = out[open + 1..].to_owned();
            }
        }
    }
    result.push_str(&out);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchbay_sdk::{Author, Event, Inbound, RichText};

    fn delivery(kind: Kind) -> Delivery {
        let mut inbound = Inbound::message("#a", Author::named("alice"), RichText::plain("x"));
        inbound.kind = kind;
        Delivery {
            room: "out".into(),
            event: Event::from_inbound("irc.net", inbound),
            nick: "[irc] alice".into(),
            route: "r".into(),
            quote: None,
        }
    }

    #[test]
    fn lines_per_kind() {
        let body = RichText::plain("hi");
        assert_eq!(
            line(&delivery(Kind::Action { body: body.clone() }), false).as_deref(),
            Some("* [irc] alice hi")
        );
        assert_eq!(
            line(&delivery(Kind::Join), true).as_deref(),
            Some("[irc] alice joined")
        );
        assert_eq!(
            line(
                &delivery(Kind::Reaction {
                    target: patchbay_sdk::MessageRef::Native("1".into()),
                    emoji: "+1".into()
                }),
                true
            ),
            None
        );
    }

    #[test]
    fn a_payload_template_builds_json_with_tojson() {
        let mut templates = Templates::new();
        templates
            .add(
                "out:t",
                r#"{"msg": {{ text | tojson }}, "who": {{ nick | tojson }}, "kind": "{{ kind }}"}"#
                    .into(),
            )
            .expect("compiles");
        let settings = OutboundSettings {
            url: "http://h".into(),
            payload: Payload::Template,
            template: Some("out:t".into()),
            content_type: "application/json".into(),
            sign_secret: None,
            sign_header: "X".into(),
            timeout: std::time::Duration::from_secs(1),
            headers: Default::default(),
            tls_ca: None,
        };
        let mut d = delivery(Kind::Message {
            body: RichText::plain("say \"hi\"\nnow"),
            attachments: Vec::new(),
        });
        d.nick = "a<b>".into();
        let body = render(&settings, &templates, &d)
            .expect("renders")
            .expect("a body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(json["msg"], "say \"hi\"\nnow");
        assert_eq!(json["who"], "a<b>");
        assert_eq!(json["kind"], "message");
    }

    #[test]
    fn markdown_links_and_bold_to_slack() {
        assert_eq!(
            markdown_to_slack("**done**: [build 3](https://ci/3) and [x] ok"),
            "*done*: <https://ci/3|build 3> and [x] ok"
        );
    }
}
