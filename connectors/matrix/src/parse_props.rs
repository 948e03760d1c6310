//! Property tests of what Matrix sends in: event JSON → [`parse_event`] → gateway events, with
//! the formatted body through [`from_html`] and, in appservice mode, ghost pills through
//! [`to_remote`]. The whole inbound path of both modes, so they sit at the crate's root rather
//! than under `parse` (which `appservice` builds on).
//!
//! Both modes read events the same way: the sync timeline (bot mode) and the events of an
//! application-service transaction (`PUT /_matrix/app/v1/transactions/{txnId}`) are
//! deserialized into ruma's `AnySyncTimelineEvent`, an event that does not deserialize is
//! logged and skipped, and the rest go through `parse_event`. The cases are event JSON built
//! from the spec's shapes (messages of every msgtype, replies with their fallbacks, thread
//! messages, edits with `m.new_content`, redactions, reactions, stickers and media, member and
//! topic changes, unknown types) whose fields are each sometimes missing, of the wrong type,
//! huge, non-ASCII or full of control characters, and whose HTML is broken, nested or hostile
//! (nested and unclosed `mx-reply`, scripts, stray tags and entities). What holds:
//! - nothing panics, whatever the JSON;
//! - an event that comes out keeps the room, names its author, and a message has no reply
//!   fallback left in its text (neither the `> <@user>` lines nor `mx-reply` contents), an
//!   edit carries the new content and not the `* ` fallback, a script's text never shows;
//! - a pill (`matrix.to` or `matrix:u/` link to a user) is a mention named by its link text
//!   (or the user when the link has none), and a ghost's pill becomes the remote nick;
//! - reactions come only when relayed, media names are safe file names.

use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use patchbay_sdk::text::{Block, SpanKind};
use patchbay_sdk::{Kind, RichText};

use crate::appservice::mentions::to_remote;
use crate::html::from_html;
use crate::parse::{Context, Parsed, parse_event};

/// Text only ever put inside a reply fallback (`mx-reply` or `> ` lines of a reply body).
const QUOTED: &str = "QUOTEDMARK";
/// Text only ever put in the `* ` fallback body of an edit.
const OUTER: &str = "OUTERMARK";
/// Text only ever put inside `<script>` or `<style>`.
const SCRIPT: &str = "SCRIPTMARK";
/// Ghost users of the appservice are `@_irc_NICK:x`; their pills must come out as `NICK`.
const GHOST_PREFIX: &str = "@_irc_";

fn ctx(relay_reactions: bool) -> Context<'static> {
    Context {
        room: "#room:x",
        own_user: "@bot:x",
        display_name: None,
        relay_reactions,
    }
}

/// A string from outside: ordinary, non-ASCII, control characters, empty, huge.
fn hostile() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[a-zA-Z0-9 ,.!?]{0,20}",
        2 => "\\PC{0,30}",
        1 => "[\\x00-\\x1f\\x7f\u{202e}\u{200b}]{1,6}",
        1 => Just(String::new()),
        1 => "[a-z ]{3000,12000}",
    ]
    .boxed()
}

/// A value of a type no field wants.
fn wrong() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(json!([])),
        Just(json!(["x", 1])),
        Just(json!({"a": {"b": null}})),
        any::<f64>().prop_map(|f| json!(f)),
    ]
    .boxed()
}

/// A field: mostly the value, sometimes missing or of the wrong type.
fn field(value: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        40 => value.prop_map(Some),
        1 => Just(None),
        1 => wrong().prop_map(Some),
    ]
    .boxed()
}

fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
    let mut map = Map::new();
    for (key, value) in fields {
        if let Some(value) = value {
            map.insert(key.to_owned(), value);
        }
    }
    Value::Object(map)
}

fn user_id() -> BoxedStrategy<String> {
    prop_oneof![
        12 => "@[a-z0-9._=-]{1,12}:[a-z]{1,8}",
        4 => "[a-z]{1,8}".prop_map(|n| format!("{GHOST_PREFIX}{n}:x")),
        2 => Just("@bot:x".to_owned()),
        1 => "\\PC{0,20}",
    ]
    .boxed()
}

fn event_id() -> BoxedStrategy<Value> {
    prop_oneof![
        20 => "\\$[A-Za-z0-9]{1,20}(:[a-z]{1,5})?".prop_map(Value::from),
        1 => "\\PC{0,10}".prop_map(Value::from),
    ]
    .boxed()
}

/// HTML pieces: markup of every kind Matrix allows (and some it does not), pills.
fn markup_piece() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[a-zA-Z0-9 ,.!?]{1,12}",
        2 => "[^<&\\p{C}]{1,8}",
        3 => prop::sample::select(vec![
            "<b>", "</b>", "<i>", "</i>", "<u>", "<s>", "<del>", "</del>", "<code>", "</code>",
            "<pre>", "</pre>", "<pre><code class=\"language-rust\">", "<blockquote>",
            "</blockquote>", "<p>", "</p>", "<br>", "<br/>", "<ol start=\"-5\">", "<ul>", "<li>",
            "</li>", "</ol>", "<h1>", "<table><tr><td>", "</td></tr></table>",
            "<font color=\"#ff0000\">", "<span data-mx-color=\"nothex\">", "</span>", "</font>",
            "<img src=\"mxc://x/y\" alt=\"emoji\">", "<img>", "<a href=\"javascript:alert(1)\">",
            "<a href=\"https://matrix.to/#/!room:x\">", "<a>", "</a>", "&amp;", "&lt;", "&#0;",
            "&#x1F600;", "&bogus;", "\u{0}", "\r\n", "<mx-reply>", "</mx-reply>",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z]{1,8}".prop_map(|n| format!("<a href=\"https://matrix.to/#/@{n}:x\">{n}</a>")),
        1 => "[a-z]{1,8}".prop_map(|n| format!("<a href=\"https://matrix.to/#/{GHOST_PREFIX}{n}:x\">{n} (IRC)</a>")),
    ]
    .boxed()
}

/// Pieces that leave the HTML broken: a stray `<` can make the next tag text, an open comment
/// swallows the rest, so what follows them may legitimately show.
fn broken_piece() -> BoxedStrategy<String> {
    prop_oneof![
        1 => prop::sample::select(vec![
            "<", ">", "</", "<!--", "-->", "<![CDATA[", "<?x?>", "<div", "\"", "'", "<a href=",
            "<mx-reply><blockquote>loose</blockquote></mx-reply>", "<script>loose</script>",
            "<p><mx-reply><blockquote>loose</blockquote></mx-reply>", "<mx-reply>loose",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

/// A formatted body as clients send it: an optional reply fallback at the start (nested in
/// some), then markup with scripts and styles among it.
fn html() -> BoxedStrategy<String> {
    let fallback = prop_oneof![
        2 => Just(String::new()),
        2 => Just(format!("<mx-reply><blockquote>{QUOTED} <a href=\"https://matrix.to/#/@q:x\">q</a></blockquote></mx-reply>")),
        1 => Just(format!("<mx-reply><mx-reply>{QUOTED}</mx-reply>{QUOTED}</mx-reply>")),
        1 => Just(format!("<mx-reply>{QUOTED}")),
    ];
    let piece = prop_oneof![
        10 => markup_piece(),
        1 => Just(format!("<script>{SCRIPT}</script>")),
        1 => Just(format!("<style>{SCRIPT} {{}}</style>")),
    ];
    (fallback, vec(piece, 0..40))
        .prop_map(|(fallback, pieces)| format!("{fallback}{}", pieces.concat()))
        .boxed()
}

/// Any of the above, broken anywhere.
fn hostile_html() -> BoxedStrategy<String> {
    vec(prop_oneof![4 => markup_piece(), 1 => broken_piece()], 0..40)
        .prop_map(|p| p.concat())
        .boxed()
}

/// A plain body: text, or a reply fallback before it (`> <@user> ...` lines, a blank line).
fn body() -> BoxedStrategy<String> {
    prop_oneof![
        4 => hostile(),
        2 => (user_id(), hostile()).prop_map(|(u, t)| format!("> <{u}> {QUOTED}\n> {QUOTED} more\n\n{t}")),
        1 => (user_id(), hostile()).prop_map(|(u, t)| format!("> <{u}> {QUOTED}\n{t}")),
        1 => user_id().prop_map(|u| format!("> <{u}> {QUOTED}\n\n")),
    ]
    .boxed()
}

fn relation() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => event_id().prop_map(|id| json!({"m.in_reply_to": {"event_id": id}})),
        1 => (event_id(), any::<bool>(), event_id()).prop_map(|(root, falling, reply)| json!({
            "rel_type": "m.thread", "event_id": root, "is_falling_back": falling,
            "m.in_reply_to": {"event_id": reply},
        })),
        1 => event_id().prop_map(|id| json!({"rel_type": "m.thread", "event_id": id})),
        1 => event_id().prop_map(|id| json!({"rel_type": "m.replace", "event_id": id})),
        1 => wrong(),
        1 => Just(json!({"m.in_reply_to": "not an object"})),
    ]
    .boxed()
}

fn msgtype() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => prop::sample::select(vec![
            "m.text", "m.emote", "m.notice", "m.image", "m.file", "m.video", "m.audio",
            "m.location", "m.server_notice", "m.key.verification.request", "org.custom.thing",
        ])
        .prop_map(Value::from),
        1 => wrong(),
    ]
    .boxed()
}

/// The content of an `m.room.message`.
fn message_content() -> BoxedStrategy<Value> {
    let media = (
        field(
            "mxc://[a-z]{1,5}/[A-Za-z0-9]{1,10}"
                .prop_map(Value::from)
                .boxed(),
        ),
        field(hostile().prop_map(Value::from).boxed()),
        field(
            (
                field("[a-z]{1,6}/[a-z0-9.+-]{1,10}".prop_map(Value::from).boxed()),
                field(any::<u32>().prop_map(Value::from).boxed()),
            )
                .prop_map(|(mime, size)| object(vec![("mimetype", mime), ("size", size)]))
                .boxed(),
        ),
    );
    (
        field(msgtype()),
        field(body().prop_map(Value::from).boxed()),
        field(Just(Value::from("org.matrix.custom.html")).boxed()),
        field(
            prop_oneof![3 => html(), 1 => hostile_html()]
                .prop_map(Value::from)
                .boxed(),
        ),
        prop::option::of(relation()),
        media,
    )
        .prop_map(
            |(msgtype, body, format, formatted, relates, (url, filename, info))| {
                object(vec![
                    ("msgtype", msgtype),
                    ("body", body),
                    ("format", format),
                    ("formatted_body", formatted),
                    ("m.relates_to", relates),
                    ("url", url),
                    ("filename", filename),
                    ("info", info),
                    ("geo_uri", Some(Value::from("geo:1,2"))),
                ])
            },
        )
        .boxed()
}

/// An edit: `* ` fallback outside, the new content in `m.new_content`.
fn edit_content() -> BoxedStrategy<Value> {
    (event_id(), field(message_content()), any::<bool>())
        .prop_map(|(target, new_content, html)| {
            let mut content = object(vec![
                ("msgtype", Some(Value::from("m.text"))),
                ("body", Some(Value::from(format!("* {OUTER}")))),
                ("m.new_content", new_content),
                (
                    "m.relates_to",
                    Some(json!({"rel_type": "m.replace", "event_id": target})),
                ),
            ]);
            if html {
                content["format"] = Value::from("org.matrix.custom.html");
                content["formatted_body"] = Value::from(format!("* <b>{OUTER}</b>"));
            }
            content
        })
        .boxed()
}

fn member_content() -> BoxedStrategy<Value> {
    let membership = || {
        field(
            prop::sample::select(vec!["join", "leave", "ban", "invite", "knock", "weird"])
                .prop_map(Value::from)
                .boxed(),
        )
    };
    (
        membership(),
        field(hostile().prop_map(Value::from).boxed()),
        field(hostile().prop_map(Value::from).boxed()),
    )
        .prop_map(|(m, name, reason)| {
            object(vec![
                ("membership", m),
                ("displayname", name),
                ("reason", reason),
            ])
        })
        .boxed()
}

/// One event of a sync timeline or a transaction.
fn event() -> BoxedStrategy<Value> {
    let content = prop_oneof![
        6 => message_content().prop_map(|c| ("m.room.message", c)),
        2 => edit_content().prop_map(|c| ("m.room.message", c)),
        1 => (event_id(), hostile()).prop_map(|(id, reason)| ("m.room.redaction", json!({"redacts": id, "reason": reason}))),
        1 => (event_id(), field(hostile().prop_map(Value::from).boxed())).prop_map(|(id, key)| ("m.reaction", json!({
            "m.relates_to": object(vec![("rel_type", Some("m.annotation".into())), ("event_id", Some(id)), ("key", key)]),
        }))),
        1 => (hostile(), field("image/[a-z0-9.+/-]{1,10}".prop_map(Value::from).boxed())).prop_map(|(body, mime)| ("m.sticker", json!({
            "body": body, "url": "mxc://x/s", "info": object(vec![("mimetype", mime)]),
        }))),
        2 => member_content().prop_map(|c| ("m.room.member", c)),
        1 => field(hostile().prop_map(Value::from).boxed()).prop_map(|t| ("m.room.topic", object(vec![("topic", t)]))),
        1 => (prop::sample::select(vec!["m.room.encrypted", "m.call.invite", "x.custom", ""]), wrong())
            .prop_map(|(t, c)| (t, json!({"body": "x", "other": c}))),
    ];
    (
        content,
        field(event_id()),
        field(user_id().prop_map(Value::from).boxed()),
        field(
            any::<u32>()
                .prop_map(|t| Value::from(u64::from(t) * 1000))
                .boxed(),
        ),
        user_id(),
        prop::option::of(member_content()),
        prop::option::of(event_id()),
    )
        .prop_map(
            |((kind, content), id, sender, ts, state_key, prev, redacts)| {
                let state = matches!(kind, "m.room.member" | "m.room.topic");
                object(vec![
                    ("type", Some(Value::from(kind))),
                    ("event_id", id),
                    ("sender", sender),
                    ("origin_server_ts", ts),
                    ("room_id", Some(Value::from("!r:x"))),
                    ("content", Some(content)),
                    (
                        "state_key",
                        state.then(|| {
                            Value::from(if kind == "m.room.member" {
                                state_key
                            } else {
                                String::new()
                            })
                        }),
                    ),
                    ("unsigned", prev.map(|p| json!({"prev_content": p}))),
                    (
                        "redacts",
                        if kind == "m.room.redaction" {
                            redacts
                        } else {
                            None
                        },
                    ),
                ])
            },
        )
        .boxed()
}

/// Ghosts' nicks, as the appservice's ghost store gives them.
fn ghost_nick(id: &str) -> Option<String> {
    id.strip_prefix(GHOST_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .map(|(nick, _)| nick.to_owned())
}

fn check_mentions(text: &RichText) -> Result<(), TestCaseError> {
    for span in text.spans() {
        if let SpanKind::Mention { id } = &span.kind {
            prop_assert!(crate::html::is_user_id(id), "a mention of {:?}", id);
            prop_assert!(
                !span.text.trim().is_empty(),
                "a mention of {} shows nothing",
                id
            );
            prop_assert!(
                ghost_nick(id).is_none(),
                "a ghost's pill was left a pill: {}",
                id
            );
        }
    }
    Ok(())
}

fn check(raw: &Value, relay_reactions: bool) -> Result<(), TestCaseError> {
    // What both modes do: an event that does not deserialize is skipped.
    let Ok(event) = serde_json::from_value(raw.clone()) else {
        return Ok(());
    };
    let Some(Parsed { mut inbound, media }) = parse_event(&event, &ctx(relay_reactions)) else {
        return Ok(());
    };
    prop_assert_eq!(inbound.room.as_str(), "#room:x");
    prop_assert!(
        !inbound.author.name.is_empty(),
        "no author name for {}",
        raw
    );
    prop_assert_eq!(inbound.is_echo, inbound.author.id == "@bot:x");
    if let Kind::Reaction { .. } = inbound.kind {
        prop_assert!(
            relay_reactions,
            "a reaction relayed though reactions are off"
        );
    }
    if let Some(media) = &media {
        let name = &media.name;
        prop_assert!(
            !name.is_empty() && name.chars().count() <= 100,
            "{:?}",
            name
        );
        prop_assert!(!name.starts_with('.'), "{:?}", name);
        prop_assert!(
            name.chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_')),
            "an unsafe file name {:?}",
            name
        );
    }
    let is_reply = inbound.reply_to.is_some();
    let is_edit = matches!(inbound.kind, Kind::Edit { .. });
    if let Some(body) = inbound.kind.body_mut() {
        to_remote(body, &ghost_nick);
    }
    let Some(body) = inbound.kind.body() else {
        return Ok(());
    };
    let plain = body.to_plain();
    let plain_body = raw["content"]["body"].as_str().unwrap_or_default();
    // Outside a reply a plain body is taken as written, fallback-looking lines and all.
    if is_reply || !plain_body.contains(QUOTED) {
        let new_body = raw["content"]["m.new_content"]["body"]
            .as_str()
            .unwrap_or_default();
        if !(is_edit && new_body.contains(QUOTED)) {
            prop_assert!(
                !plain.contains(QUOTED),
                "a reply fallback left in {:?}\n--- from ---\n{}",
                plain,
                raw
            );
        }
    }
    prop_assert!(!plain.contains(SCRIPT), "script text shown: {:?}", plain);
    if is_edit {
        prop_assert!(
            !plain.contains(OUTER),
            "an edit's `* ` fallback relayed: {:?}",
            plain
        );
    }
    check_mentions(body)?;
    prop_assert!(no_empty_blocks(&body.blocks), "empty blocks in {:?}", body);
    Ok(())
}

/// A rendered block with nothing in it would be an empty line on the other side.
fn no_empty_blocks(blocks: &[Block]) -> bool {
    blocks.iter().all(|block| match block {
        Block::Paragraph { spans } => !spans.is_empty(),
        Block::Code { .. } => true,
        Block::Quote { blocks } => no_empty_blocks(blocks),
        Block::List { items, .. } => items.iter().all(|item| no_empty_blocks(item)),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_event_comes_out_well_formed_or_is_skipped(raw in event(), reactions in any::<bool>()) {
        check(&raw, reactions)?;
    }

    #[test]
    fn a_transaction_of_any_events_comes_out_well_formed(
        events in vec(event(), 0..6),
        junk in vec(wrong(), 0..3),
    ) {
        // A transaction body: events mixed with things that are not events at all.
        let mut all: Vec<Value> = events;
        all.extend(junk);
        let body = json!({"events": all, "ephemeral": wrong_literal()});
        let bytes = serde_json::to_vec(&body).expect("json");
        let body: Value = serde_json::from_slice(&bytes).expect("json");
        for raw in body["events"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            check(raw, true)?;
        }
    }

    #[test]
    fn broken_html_becomes_rich_text_with_mentions_named(html in hostile_html()) {
        let mut text = from_html(&html);
        to_remote(&mut text, &ghost_nick);
        check_mentions(&text)?;
        prop_assert!(no_empty_blocks(&text.blocks), "empty blocks in {:?}", text);
    }

    #[test]
    fn any_html_becomes_rich_text_without_fallbacks_or_scripts(html in html()) {
        let text = from_html(&html);
        let plain = text.to_plain();
        prop_assert!(!plain.contains(QUOTED), "mx-reply content in {:?} from {:?}", plain, html);
        prop_assert!(!plain.contains(SCRIPT), "script text in {:?} from {:?}", plain, html);
        let mut text = text;
        to_remote(&mut text, &ghost_nick);
        check_mentions(&text)?;
    }

    #[test]
    fn pills_become_the_names_they_show(
        pills in vec(("[a-z]{1,8}", any::<bool>(), prop_oneof![
            Just(0u8), Just(1u8), Just(2u8), Just(3u8),
        ]), 1..5),
        words in vec("[a-z]{1,8}", 0..5),
    ) {
        // (name, ghost?, how written): a matrix.to pill, a matrix:u/ pill, an
        // percent-encoded one, one with no text.
        let mut html = String::new();
        let mut want = Vec::new();
        for ((name, ghost, how), word) in pills.iter().zip(words.iter().chain(std::iter::repeat(&String::new()))) {
            let local = if *ghost { format!("_irc_{name}") } else { name.clone() };
            let shown = format!("{name}_shown");
            let link = match how {
                0 => format!("<a href=\"https://matrix.to/#/@{local}:x\">{shown}</a>"),
                1 => format!("<a href=\"matrix:u/{local}:x\">{shown}</a>"),
                2 => format!("<a href=\"https://matrix.to/#/%40{local}%3Ax?via=x\">{shown}</a>"),
                _ => format!("<a href=\"https://matrix.to/#/@{local}:x\"></a>"),
            };
            html.push_str(&format!("{word} {link} "));
            want.push(match (*ghost, *how) {
                (true, _) => name.clone(),
                (false, 3) => format!("@{local}:x"),
                (false, _) => shown,
            });
        }
        let mut text = from_html(&html);
        to_remote(&mut text, &ghost_nick);
        check_mentions(&text)?;
        let plain = text.to_plain();
        prop_assert!(!plain.contains("matrix.to") && !plain.contains("matrix:u"), "{:?}", plain);
        for name in want {
            prop_assert!(plain.contains(&name), "{:?} not in {:?} (from {:?})", name, plain, html);
        }
    }
}

fn wrong_literal() -> Value {
    json!([null, 1, "x", {"type": 5}])
}

/// Cases the properties found, kept.
mod found {
    use super::*;

    fn parse(raw: Value) -> Option<Parsed> {
        let event = serde_json::from_value(raw).ok()?;
        parse_event(&event, &ctx(true))
    }

    #[test]
    fn a_pill_without_text_shows_the_user() {
        let text = from_html("hi <a href=\"https://matrix.to/#/@bob:x\"></a>");
        assert_eq!(text.to_plain(), "hi @bob:x");
    }

    fn reply(content: Value) -> Option<String> {
        let mut content = content;
        content["m.relates_to"] = json!({"m.in_reply_to": {"event_id": "$q"}});
        let parsed = parse(json!({
            "type": "m.room.message", "event_id": "$e", "sender": "@a:x",
            "origin_server_ts": 1, "room_id": "!r:x", "content": content,
        }))?;
        parsed.inbound.kind.body().map(RichText::to_plain)
    }

    #[test]
    fn a_reply_of_an_unknown_msgtype_loses_its_fallback() {
        let plain = reply(json!({"msgtype": "org.custom.thing",
                                 "body": "> <@b:x> quoted\n> more\n\nanswer"}));
        assert_eq!(plain.as_deref(), Some("answer"));
    }

    #[test]
    fn a_media_reply_loses_the_fallback_of_its_caption() {
        let plain = reply(
            json!({"msgtype": "m.image", "url": "mxc://x/y", "filename": "cat.png",
                                 "body": "> <@b:x> quoted\n\nlook"}),
        );
        assert_eq!(plain.as_deref(), Some("look"));
    }

    #[test]
    fn a_reply_of_only_a_fallback_is_not_the_quote() {
        let parsed = parse(json!({
            "type": "m.room.message", "event_id": "$e", "sender": "@a:x",
            "origin_server_ts": 1, "room_id": "!r:x",
            "content": {"msgtype": "m.text", "body": "> <@b:x> quoted",
                        "m.relates_to": {"m.in_reply_to": {"event_id": "$q"}}},
        }));
        if let Some(parsed) = parsed {
            let plain = parsed.inbound.kind.body().map(RichText::to_plain);
            assert!(!plain.unwrap_or_default().contains("quoted"));
        }
    }
}
