//! Property tests of what API clients send: `POST .../messages` bodies and stream frames.
//!
//! Structure-aware: objects with the fields of a send (`username`, `type`, `text`, `target`,
//! `emoji`, `reply_to`, `attachments`, `id`, `ref`, `room`, `avatar`) holding values of the
//! right type most of the time and of any JSON type otherwise, plus an unknown field now and
//! then; and frames with any `op`. Whatever comes in becomes an event or a refusal that says
//! why; it never panics. Cases proptest shrinks to are kept in `proptest-regressions/`.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;

const KINDS: [&str; 8] = [
    "message", "action", "notice", "edit", "delete", "reaction", "shout", "",
];

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A string field's value: usually a string of the kind the field wants, sometimes any JSON.
fn field(good: BoxedStrategy<String>) -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop_oneof![
        6 => good.prop_map(Value::from),
        1 => any_json(),
    ])
}

fn event_id_text() -> BoxedStrategy<String> {
    prop_oneof![
        Just(EventId::new().to_string()),
        "[0-9A-HJKMNP-TV-Z]{26}",
        " ?[0-9A-Z]{20,30} ?",
        any::<String>(),
    ]
    .boxed()
}

fn attachment() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            "https://[a-z]{1,8}/[a-z.]{0,8}",
            "(file|ftp|data):[ -~]{0,10}",
            any::<String>()
        ],
        prop::option::of("(image|text|video)/[a-z]{1,5}"),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(url, mime, size)| {
            let mut map = Map::new();
            map.insert("url".into(), url.into());
            if let Some(mime) = mime {
                map.insert("mime".into(), mime.into());
            }
            if let Some(size) = size {
                map.insert("size".into(), size.into());
            }
            Value::Object(map)
        })
}

/// An object shaped like a send.
fn send_object() -> impl Strategy<Value = Value> {
    let texts = || any::<String>().boxed();
    (
        (
            field(prop_oneof!["[a-z]{1,8}", " *", any::<String>()].boxed()),
            field(
                prop::sample::select(KINDS.to_vec())
                    .prop_map(str::to_owned)
                    .boxed(),
            ),
            field(
                prop_oneof![
                    // Markdown that is all markup: does anything survive?
                    "[*_~`#>| \\n-]{1,6}",
                    "[a-z *_`]{1,20}",
                    any::<String>(),
                ]
                .boxed(),
            ),
            field(event_id_text()),
            field(prop_oneof!["[👍🎉a-z]{0,2}", any::<String>()].boxed()),
            field(event_id_text()),
        ),
        (
            prop::option::of(prop_oneof![
                4 => prop::collection::vec(attachment(), 0..3).prop_map(Value::Array),
                1 => any_json(),
            ]),
            field(texts()),
            field(texts()),
            field(texts()),
            field(texts()),
            prop::option::of(("[a-z]{1,6}", any_json())),
        ),
    )
        .prop_map(
            |(
                (username, kind, text, target, emoji, reply_to),
                (attachments, id, reference, room, avatar, unknown),
            )| {
                let mut map = Map::new();
                let pairs = [
                    ("username", username),
                    ("type", kind),
                    ("text", text),
                    ("target", target),
                    ("emoji", emoji),
                    ("reply_to", reply_to),
                    ("attachments", attachments),
                    ("id", id),
                    ("ref", reference),
                    ("room", room),
                    ("avatar", avatar),
                ];
                for (key, value) in pairs {
                    if let Some(value) = value {
                        map.insert(key.into(), value);
                    }
                }
                if let Some((key, value)) = unknown {
                    map.insert(key, value);
                }
                Value::Object(map)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn a_send_becomes_an_event_or_says_why(body in send_object()) {
        let text = body.to_string();
        let send: Send = match serde_json::from_str(&text) {
            Ok(send) => send,
            // A type mismatch or unknown field: the POST answers 400 with serde's sentence.
            Err(err) => {
                prop_assert!(!err.to_string().is_empty());
                return Ok(());
            }
        };
        let username_ok = send.username.as_deref().is_some_and(|u| !u.trim().is_empty());
        match send.clone().into_inbound("lobby") {
            Ok(inbound) => {
                prop_assert!(username_ok, "no speaker: {text}");
                prop_assert_eq!(inbound.room.as_str(), "lobby");
                prop_assert_eq!(inbound.remote_id, send.id);
                // Whatever was sent as a body is not lost on the way in.
                if let Some(body) = inbound.kind.body() {
                    prop_assert!(
                        !body.is_empty() || !send.attachments.is_empty(),
                        "an empty message went through: {text}"
                    );
                }
            }
            Err(why) => prop_assert!(!why.is_empty()),
        }
    }

    #[test]
    fn a_stream_frame_is_a_frame_or_a_parse_error(
        op in prop_oneof![Just("send".to_owned()), Just("ping".to_owned()), "[a-z]{0,6}"],
        body in send_object(),
        raw in any::<String>(),
        use_raw in any::<bool>(),
    ) {
        let text = if use_raw {
            raw
        } else {
            let mut body = body;
            if let Value::Object(map) = &mut body {
                map.insert("op".into(), op.into());
            }
            body.to_string()
        };
        if let Ok(ClientFrame::Send(send)) = serde_json::from_str::<ClientFrame>(&text) {
            let room = send.room.clone().unwrap_or_else(|| "lobby".into());
            let _ = send.into_inbound(&room);
        }
    }
}
