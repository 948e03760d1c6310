use super::*;
use matrix_sdk::ruma::OwnedEventId;
use matrix_sdk::ruma::events::relation::{InReplyTo, Reply};
use matrix_sdk::ruma::events::room::message::MessageType;
use patchbay_sdk::{Author, Event, EventId, Inbound, Quote};

const OPTIONS: RenderOptions = RenderOptions {
    reactions_as_text: true,
    nick_in_body: true,
};

fn delivery(kind: Kind, reply_to: Option<MessageRef>) -> Delivery {
    let mut inbound = Inbound::message("#rust", Author::named("alice"), RichText::plain("x"));
    inbound.kind = kind;
    inbound.reply_to = reply_to;
    Delivery {
        room: "!room".into(),
        event: Event::from_inbound("irc.libera", inbound),
        nick: "[irc] alice".into(),
        route: "main".into(),
        quote: None,
    }
}

fn message(text: &str) -> Kind {
    Kind::Message {
        body: RichText::plain(text),
        attachments: Vec::new(),
    }
}

fn sent(outgoing: Outgoing) -> RoomMessageEventContent {
    match outgoing {
        Outgoing::Message {
            content: Some(content),
            ..
        } => *content,
        other => panic!("not a message: {other:?}"),
    }
}

fn bodies(content: &RoomMessageEventContent) -> (String, String) {
    let json = serde_json::to_value(content).expect("serialize");
    (
        json["body"].as_str().unwrap_or_default().to_owned(),
        json["formatted_body"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[test]
fn messages_carry_the_nick_bold() {
    let content = sent(render(&delivery(message("hi <you>"), None), OPTIONS));
    assert!(matches!(content.msgtype, MessageType::Text(_)));
    assert_eq!(
        bodies(&content),
        (
            "[irc] alice: hi <you>".to_owned(),
            "<strong>[irc] alice</strong>: hi &lt;you&gt;".to_owned()
        )
    );
}

#[test]
fn actions_are_emotes_and_notices_notices() {
    let content = sent(render(
        &delivery(
            Kind::Action {
                body: RichText::plain("waves"),
            },
            None,
        ),
        OPTIONS,
    ));
    assert!(matches!(content.msgtype, MessageType::Emote(_)));
    assert_eq!(bodies(&content).0, "[irc] alice waves");
    let content = sent(render(
        &delivery(
            Kind::Notice {
                body: RichText::plain("ok"),
            },
            None,
        ),
        OPTIONS,
    ));
    assert!(matches!(content.msgtype, MessageType::Notice(_)));
}

#[test]
fn edits_of_known_messages_replace_them() {
    let content = sent(render(
        &delivery(
            Kind::Edit {
                target: MessageRef::Native("$orig".into()),
                body: RichText::plain("fixed"),
            },
            None,
        ),
        OPTIONS,
    ));
    let json = serde_json::to_value(&content).expect("serialize");
    assert_eq!(json["m.relates_to"]["rel_type"], "m.replace");
    assert_eq!(json["m.relates_to"]["event_id"], "$orig");
    assert_eq!(json["m.new_content"]["body"], "[irc] alice: fixed");
}

#[test]
fn replies_relate_or_quote() {
    let content = sent(render(
        &delivery(message("yes"), Some(MessageRef::Native("$q".into()))),
        OPTIONS,
    ));
    let json = serde_json::to_value(&content).expect("serialize");
    assert_eq!(json["m.relates_to"]["m.in_reply_to"]["event_id"], "$q");

    let mut unknown = delivery(message("yes"), Some(MessageRef::Gateway(EventId::new())));
    unknown.quote = Some(Quote {
        author: "bob".into(),
        text: "really?".into(),
    });
    let content = sent(render(&unknown, OPTIONS));
    assert_eq!(bodies(&content).0, "> bob: really?\n[irc] alice: yes");
}

#[test]
fn deletions_and_reactions() {
    let target = MessageRef::Native("$m".into());
    assert!(matches!(
        render(&delivery(Kind::Delete { target: target.clone() }, None), OPTIONS),
        Outgoing::Redact(id) if id.as_str() == "$m"
    ));
    assert!(matches!(
        render(
            &delivery(
                Kind::Delete {
                    target: MessageRef::Gateway(EventId::new())
                },
                None
            ),
            OPTIONS
        ),
        Outgoing::Nothing
    ));
    match render(
        &delivery(
            Kind::Reaction {
                target,
                emoji: "👍".into(),
            },
            None,
        ),
        OPTIONS,
    ) {
        Outgoing::Reaction {
            annotation,
            fallback,
        } => {
            assert_eq!(annotation.key, "👍");
            assert_eq!(
                bodies(&fallback.expect("fallback")).0,
                "[irc] alice reacted 👍"
            );
        }
        other => panic!("not a reaction: {other:?}"),
    }
    let unknown = render(
        &delivery(
            Kind::Reaction {
                target: MessageRef::Gateway(EventId::new()),
                emoji: "👍".into(),
            },
            None,
        ),
        RenderOptions {
            reactions_as_text: false,
            nick_in_body: true,
        },
    );
    assert!(matches!(unknown, Outgoing::Message { content: None, .. }));
}

#[test]
fn attachments_get_captions() {
    let kind = Kind::Message {
        body: RichText::plain("look"),
        attachments: vec![
            Attachment {
                url: "http://127.0.0.1/a.png".into(),
                name: Some("a.png".into()),
                mime: Some("image/png".into()),
                size: None,
            },
            Attachment {
                url: "http://127.0.0.1/b.txt".into(),
                name: None,
                mime: None,
                size: None,
            },
        ],
    };
    match render(&delivery(kind, None), OPTIONS) {
        Outgoing::Message {
            content: None,
            attachments,
        } => {
            assert_eq!(attachments.len(), 2);
            assert_eq!(attachments[0].1.to_plain(), "[irc] alice: look");
            assert_eq!(attachments[1].1.to_plain(), "[irc] alice");
        }
        other => panic!("unexpected: {other:?}"),
    }
}

#[test]
fn mentions_of_matrix_users_notify_them() {
    let body = RichText::from_spans(vec![
        Span {
            text: "Bob".into(),
            style: Style::default(),
            kind: SpanKind::Mention {
                id: "@bob:localhost".into(),
            },
        },
        Span::text(": hi"),
    ]);
    let content = sent(render(
        &delivery(
            Kind::Message {
                body,
                attachments: Vec::new(),
            },
            None,
        ),
        OPTIONS,
    ));
    let json = serde_json::to_value(&content).expect("serialize");
    assert_eq!(json["m.mentions"]["user_ids"][0], "@bob:localhost");
}

#[test]
fn oversized_texts_are_split_into_plain_parts() {
    let small = RoomMessageEventContent::text_html("hi", "<b>hi</b>");
    assert_eq!(fit(small).len(), 1);
    let line = format!("{}\n", "é".repeat(999));
    let long: String = line.repeat(100);
    let mut content = RoomMessageEventContent::notice_html(long.clone(), long.clone());
    content.relates_to = Some(Relation::Reply(Reply::new(InReplyTo::new(
        OwnedEventId::try_from("$q").expect("id"),
    ))));
    let parts = fit(content);
    assert!(parts.len() > 1);
    let mut joined = String::new();
    for (i, part) in parts.iter().enumerate() {
        assert!(serde_json::to_vec(part).expect("json").len() < 60_000);
        assert!(matches!(part.msgtype, MessageType::Notice(_)));
        assert_eq!(part.relates_to.is_some(), i == 0);
        joined.push_str(part.body());
        joined.push('\n');
    }
    assert_eq!(joined, long);
}

mod round_trip {
    use super::*;
    use crate::parse::{Context, parse_event};
    use matrix_sdk::ruma::events::AnySyncTimelineEvent;
    use proptest::prelude::*;

    /// What a Matrix client would receive for `content`, sent by the bot.
    fn as_event(content: &RoomMessageEventContent) -> AnySyncTimelineEvent {
        serde_json::from_value(serde_json::json!({
            "type": "m.room.message",
            "event_id": "$sent",
            "sender": "@bot:localhost",
            "origin_server_ts": 1,
            "content": serde_json::to_value(content).expect("serialize"),
        }))
        .expect("a valid event")
    }

    fn words(text: &str) -> String {
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    proptest! {
        #[test]
        fn a_rendered_message_parses_back_to_its_text(
            text in "[a-zA-Z0-9<>&\"' .,!?*_#é🎉\n-]{1,60}",
            kind in 0..3u8,
        ) {
            let body = RichText::plain(text.clone());
            let kind = match kind {
                0 => Kind::Message { body, attachments: Vec::new() },
                1 => Kind::Action { body },
                _ => Kind::Notice { body },
            };
            let outgoing = render(&delivery(kind.clone(), None), OPTIONS);
            let content = sent(outgoing);
            let ctx = Context {
                room: "!room",
                own_user: "@bot:localhost",
                display_name: None,
                relay_reactions: true,
            };
            let parsed = parse_event(&as_event(&content), &ctx).expect("relayed back");
            prop_assert!(parsed.inbound.is_echo);
            let separator = if matches!(kind, Kind::Action { .. }) { " " } else { ": " };
            let got = parsed.inbound.kind.body().expect("body").to_plain();
            prop_assert_eq!(words(&got), words(&format!("[irc] alice{separator}{text}")));
            prop_assert_eq!(parsed.inbound.kind.name(), kind.name());
        }
    }
}

#[test]
fn an_appservice_message_carries_no_nick() {
    let options = RenderOptions {
        reactions_as_text: true,
        nick_in_body: false,
    };
    let content = sent(render(&delivery(message("hi <you>"), None), options));
    assert_eq!(
        bodies(&content),
        ("hi <you>".to_owned(), "hi &lt;you&gt;".to_owned())
    );
}
