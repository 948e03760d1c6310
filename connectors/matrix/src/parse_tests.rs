use super::*;
use patchbay_sdk::text::SpanKind;
use serde_json::{Value, json};

fn event(kind: &str, content: Value) -> AnySyncTimelineEvent {
    serde_json::from_value(json!({
        "type": kind,
        "event_id": "$ev1",
        "sender": "@alice:localhost",
        "origin_server_ts": 1_700_000_000_000u64,
        "content": content,
    }))
    .expect("valid event json")
}

fn ctx() -> Context<'static> {
    Context {
        room: "#general:localhost",
        own_user: "@bot:localhost",
        display_name: Some("Alice"),
        relay_reactions: true,
    }
}

fn parse(kind: &str, content: Value) -> Option<Parsed> {
    parse_event(&event(kind, content), &ctx())
}

/// An `m.room.message` with `content`, which must be relayed.
fn message(content: Value) -> Parsed {
    parse("m.room.message", content).expect("relayed")
}

#[test]
fn text_message_with_html() {
    let parsed = message(json!({"msgtype": "m.text", "body": "hi **there**",
               "format": "org.matrix.custom.html", "formatted_body": "hi <strong>there</strong>"}));
    let inbound = parsed.inbound;
    assert_eq!(inbound.room, "#general:localhost");
    assert_eq!(inbound.remote_id.as_deref(), Some("$ev1"));
    assert_eq!(inbound.author.id, "@alice:localhost");
    assert_eq!(inbound.author.name, "Alice");
    assert_eq!(inbound.time, Timestamp(1_700_000_000_000));
    assert!(!inbound.is_echo);
    let body = inbound.kind.body().expect("body");
    assert_eq!(body.to_plain(), "hi there");
    assert!(body.spans()[1].style.bold);
    assert!(matches!(inbound.kind, Kind::Message { .. }));
}

#[test]
fn emote_and_notice() {
    let emote = message(json!({"msgtype": "m.emote", "body": "waves"}));
    assert!(matches!(&emote.inbound.kind, Kind::Action { body } if body.to_plain() == "waves"));
    let notice = message(json!({"msgtype": "m.notice", "body": "build ok"}));
    assert!(matches!(&notice.inbound.kind, Kind::Notice { body } if body.to_plain() == "build ok"));
}

#[test]
fn own_messages_are_echoes_and_names_fall_back_to_the_localpart() {
    let context = Context {
        own_user: "@alice:localhost",
        display_name: None,
        ..ctx()
    };
    let parsed = parse_event(
        &event("m.room.message", json!({"msgtype": "m.text", "body": "x"})),
        &context,
    )
    .expect("relayed");
    assert!(parsed.inbound.is_echo);
    assert_eq!(parsed.inbound.author.name, "alice");
}

#[test]
fn edits_use_the_new_content() {
    let parsed = message(json!({"msgtype": "m.text", "body": "* fixed",
               "m.new_content": {"msgtype": "m.text", "body": "fixed"},
               "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"}}));
    match parsed.inbound.kind {
        Kind::Edit { target, body } => {
            assert_eq!(target, MessageRef::Native("$orig".into()));
            assert_eq!(body.to_plain(), "fixed");
        }
        other => panic!("not an edit: {other:?}"),
    }
}

#[test]
fn replies_point_at_their_target_without_the_fallback() {
    let parsed = message(
        json!({"msgtype": "m.text", "body": "> <@bob:localhost> earlier\n> more\n\nmy answer",
               "m.relates_to": {"m.in_reply_to": {"event_id": "$earlier"}}}),
    );
    assert_eq!(
        parsed.inbound.reply_to,
        Some(MessageRef::Native("$earlier".into()))
    );
    assert_eq!(
        parsed.inbound.kind.body().expect("body").to_plain(),
        "my answer"
    );
}

#[test]
fn redactions_and_reactions() {
    let parsed = parse("m.room.redaction", json!({"redacts": "$gone"})).expect("relayed");
    assert_eq!(
        parsed.inbound.kind,
        Kind::Delete {
            target: MessageRef::Native("$gone".into())
        }
    );
    let parsed = parse(
        "m.reaction",
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$liked", "key": "👍"}}),
    )
    .expect("relayed");
    assert_eq!(
        parsed.inbound.kind,
        Kind::Reaction {
            target: MessageRef::Native("$liked".into()),
            emoji: "👍".into()
        }
    );
    let quiet = Context {
        relay_reactions: false,
        ..ctx()
    };
    let reaction = event(
        "m.reaction",
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$liked", "key": "👍"}}),
    );
    assert!(parse_event(&reaction, &quiet).is_none());
}

#[test]
fn images_carry_their_media() {
    let parsed = message(
        json!({"msgtype": "m.image", "body": "cat.png", "url": "mxc://localhost/abc",
               "info": {"mimetype": "image/png", "size": 1234}}),
    );
    let media = parsed.media.expect("media");
    assert_eq!(media.name, "cat.png");
    assert_eq!(media.mime.as_deref(), Some("image/png"));
    assert_eq!(media.size, Some(1234));
    assert!(
        matches!(media.source, MediaSource::Plain(ref uri) if uri.as_str() == "mxc://localhost/abc")
    );
    assert!(parsed.inbound.kind.body().expect("body").blocks.is_empty());

    let captioned = message(
        json!({"msgtype": "m.file", "body": "the report", "filename": "../r e.pdf",
               "url": "mxc://localhost/def"}),
    );
    assert_eq!(captioned.media.expect("media").name, "r_e.pdf");
    assert_eq!(
        captioned.inbound.kind.body().expect("body").to_plain(),
        "the report"
    );
}

#[test]
fn stickers_are_images() {
    let parsed = parse(
        "m.sticker",
        json!({"body": "thumbs up", "url": "mxc://localhost/st",
               "info": {"mimetype": "image/webp", "size": 10}}),
    )
    .expect("relayed");
    let media = parsed.media.expect("media");
    assert_eq!(media.name, "thumbs_up.webp");
    assert_eq!(media.mime.as_deref(), Some("image/webp"));
}

#[test]
fn mentions_in_html_become_mention_spans() {
    let parsed = message(json!({"msgtype": "m.text", "body": "Bob: hi",
               "format": "org.matrix.custom.html",
               "formatted_body": "<a href=\"https://matrix.to/#/@bob:localhost\">Bob</a>: hi"}));
    let body = parsed.inbound.kind.body().expect("body").clone();
    assert_eq!(
        body.spans()[0].kind,
        SpanKind::Mention {
            id: "@bob:localhost".into()
        }
    );
}

fn state(
    kind: &str,
    sender: &str,
    state_key: &str,
    content: Value,
    prev: Option<Value>,
) -> AnySyncTimelineEvent {
    let mut event = json!({
        "type": kind, "event_id": "$s", "sender": sender, "origin_server_ts": 1,
        "state_key": state_key, "content": content,
    });
    if let Some(prev) = prev {
        event["unsigned"] = json!({"prev_content": prev});
    }
    serde_json::from_value(event).expect("valid state event")
}

fn state_kind(event: AnySyncTimelineEvent) -> Option<(String, Kind)> {
    parse_event(&event, &ctx()).map(|p| (p.inbound.author.name, p.inbound.kind))
}

#[test]
fn membership_and_topic_changes() {
    let alice = "@alice:localhost";
    let joined = json!({"membership": "join", "displayname": "Alice"});
    assert_eq!(
        state_kind(state("m.room.member", alice, alice, joined.clone(), None)),
        Some(("Alice".into(), Kind::Join))
    );
    assert_eq!(
        state_kind(state(
            "m.room.member",
            alice,
            alice,
            json!({"membership": "join", "displayname": "Ally"}),
            Some(joined.clone())
        )),
        Some((
            "Ally".into(),
            Kind::Nick {
                old: "Alice".into(),
                new: "Ally".into()
            }
        ))
    );
    // An avatar change is neither a join nor a nick change.
    assert_eq!(
        state_kind(state(
            "m.room.member",
            alice,
            alice,
            joined.clone(),
            Some(joined.clone())
        )),
        None
    );
    assert_eq!(
        state_kind(state(
            "m.room.member",
            alice,
            alice,
            json!({"membership": "leave"}),
            Some(joined.clone())
        )),
        Some(("Alice".into(), Kind::Part { reason: None }))
    );
    assert_eq!(
        state_kind(state(
            "m.room.member",
            "@mod:localhost",
            alice,
            json!({"membership": "leave", "reason": "spam"}),
            Some(joined.clone())
        )),
        Some((
            "Alice".into(),
            Kind::Part {
                reason: Some("kicked by @mod:localhost: spam".into())
            }
        ))
    );
    // Invites are not relayed.
    assert_eq!(
        state_kind(state(
            "m.room.member",
            "@mod:localhost",
            alice,
            json!({"membership": "invite"}),
            None
        )),
        None
    );
    assert_eq!(
        state_kind(state(
            "m.room.topic",
            alice,
            "",
            json!({"topic": "news"}),
            None
        )),
        Some((
            "Alice".into(),
            Kind::Topic {
                topic: "news".into()
            }
        ))
    );
    let other: AnySyncTimelineEvent = serde_json::from_value(json!({
        "type": "m.room.name", "event_id": "$n", "sender": alice,
        "origin_server_ts": 1, "state_key": "", "content": {"name": "x"}
    }))
    .expect("valid");
    assert!(parse_event(&other, &ctx()).is_none());
}
