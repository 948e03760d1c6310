//! Media against a real Synapse: Matrix attachments (plain and encrypted) reach other
//! networks as `/media/...` links that really serve the file, over the size cap they are
//! refused; files linked from other networks are uploaded with the right msgtype.
#![recursion_limit = "256"]

mod support;

use matrix_sdk::attachment::AttachmentConfig;
use matrix_sdk::media::{MediaFormat, MediaRequestParameters};
use matrix_sdk::ruma::events::room::MediaSource;
use patchbay_sdk::{Attachment, Author, Delivery, Kind, RichText};
use support::{User, bot_table, relayed, start, synapse, unique};

/// Bytes that look like a PNG (the signature, then filler).
fn png(len: usize) -> Vec<u8> {
    let mut data = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    data.extend((0..len).map(|i| (i % 251) as u8));
    data
}

async fn get(url: &str) -> (u16, Option<String>, Vec<u8>) {
    let response = matrix_sdk::reqwest::Client::new()
        .get(url)
        .send()
        .await
        .expect("GET the media link");
    let status = response.status().as_u16();
    let mime = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.bytes().await.expect("body").to_vec();
    (status, mime, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn attachments_travel_both_ways_as_served_links_and_uploads() {
    let synapse = synapse();
    let alice = User::register(synapse, &unique("alice")).await;
    let bot_id = synapse.register(&unique("bot"), "password").await;
    let plain = alice.create_room(None, &[&bot_id], false).await;
    let secret = alice.create_room(None, &[&bot_id], true).await;

    // patchbay's HTTP listener, stood in for by a local server with the connector's routes
    // and a file that "another network" links to.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("media_public_url = \"{base}\"\nmedia_max_bytes = 100000");
    let table = bot_table(
        synapse,
        &bot_id,
        &[plain.to_string(), secret.to_string()],
        &extra,
    );
    let mut bot = start(&table, dir.path());
    let linked = png(5000);
    let served = linked.clone();
    let router = bot.connector.http_routes().expect("media routes").route(
        "/files/cat.png",
        axum::routing::get(move || {
            let body = served.clone();
            async move { ([("content-type", "image/png")], body) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    bot.wait_up().await;
    for room_id in [&plain, &secret] {
        alice.wait_joined(room_id, "the bot to join", &bot_id).await;
    }

    // Matrix -> links, in a plain and in an encrypted room.
    for (room_id, name) in [(&plain, "cat.png"), (&secret, "secret.png")] {
        let image = png(2000);
        alice
            .room(room_id)
            .send_attachment(
                name,
                &mime::IMAGE_PNG,
                image.clone(),
                AttachmentConfig::new(),
            )
            .await
            .expect("upload");
        let inbound = bot.next_matching("the image", |e| !e.is_echo).await;
        let Kind::Message { attachments, .. } = &inbound.kind else {
            panic!("not a message: {inbound:?}");
        };
        let attachment = &attachments[0];
        assert!(
            attachment.url.starts_with(&format!("{base}/media/")),
            "{}",
            attachment.url
        );
        assert!(attachment.url.ends_with(name), "{}", attachment.url);
        assert_eq!(attachment.mime.as_deref(), Some("image/png"));
        let (status, mime, body) = get(&attachment.url).await;
        assert_eq!(status, 200);
        assert_eq!(mime.as_deref(), Some("image/png"));
        assert!(body == image, "the served file differs from the upload");
    }

    // Over the size cap: refused, not served.
    alice
        .room(&plain)
        .send_attachment(
            "big.png",
            &mime::IMAGE_PNG,
            png(200_000),
            AttachmentConfig::new(),
        )
        .await
        .expect("upload");
    let inbound = bot.next_matching("the big image", |e| !e.is_echo).await;
    let Kind::Message { attachments, .. } = &inbound.kind else {
        panic!("not a message");
    };
    assert_eq!(get(&attachments[0].url).await.0, 413);
    // A guessed token finds nothing.
    let guessed = format!("{base}/media/{}/cat.png", "0".repeat(32));
    assert_eq!(get(&guessed).await.0, 404);

    // Another network's linked file -> uploaded to the room as an m.image with a caption.
    let linked_file = Kind::Message {
        body: RichText::plain("look"),
        attachments: vec![Attachment {
            url: format!("{base}/files/cat.png"),
            name: Some("cat.png".into()),
            mime: None,
            size: None,
        }],
    };
    let delivery = Delivery {
        nick: "bob".into(),
        ..relayed(
            "webhook.ci",
            plain.as_str(),
            Author::named("bob"),
            linked_file,
        )
    };
    let id = bot.deliver_sent(delivery).await;
    let seen = alice
        .wait_event(&plain, "the uploaded image", id.as_str())
        .await;
    assert_eq!(seen["content"]["msgtype"], "m.image");
    assert_eq!(seen["content"]["filename"], "cat.png");
    assert_eq!(seen["content"]["body"], "bob: look");
    let source: MediaSource =
        serde_json::from_value(serde_json::json!({"url": seen["content"]["url"]})).expect("source");
    let downloaded = alice
        .client
        .media()
        .get_media_content(
            &MediaRequestParameters {
                source,
                format: MediaFormat::File,
            },
            false,
        )
        .await
        .expect("download");
    assert!(
        downloaded == linked,
        "the uploaded file differs from the linked one"
    );
    bot.stop().await;
}
