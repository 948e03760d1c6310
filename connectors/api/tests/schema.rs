//! docs/api.openapi.json says what the code sends: what the API and the json webhook payload
//! serialize is checked against the document's schemas with a small validator (the subset of
//! JSON Schema the document uses: $ref, oneOf, allOf, type, const, enum, properties, required,
//! additionalProperties, items, minimum, maximum).

use patchbay_api::{Direction, Entry};
use patchbay_sdk::text::markdown::from_markdown;
use patchbay_sdk::{
    Attachment, Author, Delivery, Event, EventId, Hop, Inbound, Kind, MessageRef, Quote, RichText,
};
use serde_json::{Value, json};

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.openapi.json");
    let text = std::fs::read_to_string(path).expect("docs/api.openapi.json");
    serde_json::from_str(&text).expect("the document is JSON")
}

struct Validator {
    doc: Value,
}

impl Validator {
    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.trim_start_matches("#/components/schemas/");
                &self.doc["components"]["schemas"][name]
            }
            None => schema,
        }
    }

    /// Problems with `value` under `schema`, each with its path.
    fn check(&self, schema: &Value, value: &Value, path: &str) -> Vec<String> {
        let schema = self.resolve(schema);
        let mut problems = Vec::new();
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for part in all {
                problems.extend(self.check(part, value, path));
            }
        }
        if let Some(any) = schema.get("oneOf").and_then(Value::as_array) {
            let matching = any
                .iter()
                .filter(|option| self.check(option, value, path).is_empty())
                .count();
            if matching != 1 {
                problems.push(format!(
                    "{path}: matches {matching} of the oneOf options: {value}"
                ));
            }
        }
        if let Some(constant) = schema.get("const")
            && constant != value
        {
            problems.push(format!("{path}: {value} is not {constant}"));
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            problems.push(format!("{path}: {value} is not one of {options:?}"));
        }
        if let Some(types) = schema.get("type") {
            let types: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            let is = |t: &str| match t {
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                "object" => value.is_object(),
                "array" => value.is_array(),
                "null" => value.is_null(),
                _ => false,
            };
            if !types.iter().any(|t| is(t)) {
                problems.push(format!("{path}: {value} is not of type {types:?}"));
            }
        }
        if let (Some(min), Some(n)) = (
            schema.get("minimum").and_then(Value::as_f64),
            value.as_f64(),
        ) && n < min
        {
            problems.push(format!("{path}: {n} < {min}"));
        }
        if let (Some(max), Some(n)) = (
            schema.get("maximum").and_then(Value::as_f64),
            value.as_f64(),
        ) && n > max
        {
            problems.push(format!("{path}: {n} > {max}"));
        }
        if let Some(object) = value.as_object() {
            let properties = schema.get("properties").and_then(Value::as_object);
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(key) = required.as_str()
                    && !object.contains_key(key)
                {
                    problems.push(format!("{path}: `{key}` is missing"));
                }
            }
            for (key, item) in object {
                match properties.and_then(|p| p.get(key)) {
                    Some(property) => {
                        problems.extend(self.check(property, item, &format!("{path}.{key}")))
                    }
                    None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        problems.push(format!("{path}: `{key}` is not in the schema"));
                    }
                    None => {}
                }
            }
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (i, item) in array.iter().enumerate() {
                problems.extend(self.check(items, item, &format!("{path}[{i}]")));
            }
        }
        problems
    }

    fn assert_valid(&self, schema: &str, value: &Value) {
        let reference = json!({ "$ref": format!("#/components/schemas/{schema}") });
        assert!(
            self.doc["components"]["schemas"].get(schema).is_some(),
            "no schema {schema}"
        );
        let problems = self.check(&reference, value, schema);
        assert!(problems.is_empty(), "{value}\n{}", problems.join("\n"));
    }
}

fn every_kind() -> Vec<Kind> {
    let body = from_markdown(
        "**bold** _it_ `code` [link](https://x) ~~gone~~\n\n> quoted\n\n- a\n- b\n\n```rust\nfn main() {}\n```",
    );
    let target = MessageRef::Native("n1".into());
    vec![
        Kind::Message {
            body: body.clone(),
            attachments: vec![Attachment {
                url: "https://f/1.png".into(),
                name: Some("1.png".into()),
                mime: Some("image/png".into()),
                size: Some(12),
            }],
        },
        Kind::Action { body: body.clone() },
        Kind::Notice {
            body: RichText::plain("n"),
        },
        Kind::Edit {
            target: MessageRef::Gateway(EventId::new()),
            body: RichText::plain("e"),
        },
        Kind::Delete {
            target: target.clone(),
        },
        Kind::Reaction {
            target,
            emoji: "👍".into(),
        },
        Kind::Join,
        Kind::Part {
            reason: Some("bye".into()),
        },
        Kind::Part { reason: None },
        Kind::Topic { topic: "t".into() },
        Kind::Nick {
            old: "a".into(),
            new: "b".into(),
        },
    ]
}

fn event(kind: Kind) -> Event {
    let mut author = Author::named("alice");
    author.avatar = Some("https://img/a.png".into());
    let mut inbound = Inbound::message("#r", author, RichText::plain("x"));
    inbound.kind = kind;
    inbound.remote_id = Some("m1".into());
    inbound.reply_to = Some(MessageRef::Gateway(EventId::new()));
    inbound.hops = vec![Hop {
        gateway: "patchbay".into(),
        route: "r".into(),
    }];
    Event::from_inbound("irc.libera", inbound)
}

#[test]
fn entries_and_stream_frames_match_the_document() {
    let validator = Validator { doc: document() };
    let mut coloured = RichText::plain("red");
    if let Some(patchbay_sdk::text::Block::Paragraph { spans }) = coloured.blocks.first_mut() {
        spans[0].style.color = Some(patchbay_sdk::text::Color { r: 255, g: 0, b: 0 });
        spans[0].kind = patchbay_sdk::text::SpanKind::Mention { id: "@u:x".into() };
    }
    let mut kinds = every_kind();
    kinds.push(Kind::Message {
        body: coloured,
        attachments: Vec::new(),
    });
    for (i, kind) in kinds.into_iter().enumerate() {
        let entry = Entry {
            id: i as i64 + 1,
            room: "lobby".into(),
            direction: if i % 2 == 0 {
                Direction::Delivered
            } else {
                Direction::Sent
            },
            nick: "[irc] alice".into(),
            route: "lobby".into(),
            event: event(kind),
        };
        let value = serde_json::to_value(&entry).expect("serialize");
        validator.assert_valid("Entry", &value);
        let mut frame = value.clone();
        frame["op"] = "entry".into();
        validator.assert_valid("ServerFrame", &frame);
        validator.assert_valid("Page", &json!({"entries": [value], "next": i + 1}));
    }
    for frame in [
        json!({"op": "ack", "ref": "r", "id": 3, "event_id": EventId::new().to_string(), "duplicate": false}),
        json!({"op": "ack", "id": null, "event_id": null, "duplicate": true}),
        json!({"op": "error", "error": "x"}),
        json!({"op": "pong"}),
    ] {
        validator.assert_valid("ServerFrame", &frame);
    }
    for frame in [
        json!({"op": "send", "room": "lobby", "ref": "1", "username": "bob", "text": "hi"}),
        json!({"op": "send", "room": "lobby", "username": "bob", "attachments": [{"url": "https://f/1", "size": 3}]}),
        json!({"op": "ping"}),
    ] {
        validator.assert_valid("ClientFrame", &frame);
    }
    validator.assert_valid(
        "Send",
        &json!({"username": "b", "type": "edit", "text": "t", "target": EventId::new().to_string(), "id": "k"}),
    );
    // The validator does catch a stray field.
    let problems = validator.check(
        &json!({"$ref": "#/components/schemas/Send"}),
        &json!({"username": "b", "txt": "t"}),
        "Send",
    );
    assert_eq!(problems, ["Send: `txt` is not in the schema"]);
}

#[test]
fn the_json_webhook_payload_matches_the_document() {
    let validator = Validator { doc: document() };
    for kind in every_kind() {
        let delivery = Delivery {
            room: "team".into(),
            event: event(kind),
            nick: "[irc] alice".into(),
            route: "r".into(),
            quote: Some(Quote {
                author: "bob".into(),
                text: "earlier".into(),
            }),
        };
        validator.assert_valid(
            "Delivery",
            &serde_json::to_value(&delivery).expect("serialize"),
        );
    }
}
