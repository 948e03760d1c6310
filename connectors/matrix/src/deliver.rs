//! Sending a [`Delivery`] into a room.
//!
//! Every request carries a transaction id derived from the gateway's event id, so a delivery
//! retried after a lost response is recognised by the homeserver instead of being posted twice.
//! Rate limiting (`M_LIMIT_EXCEEDED`) is returned as retryable with the server's `retry_after`;
//! the gateway keeps the room's order while it waits, and other rooms go on.

use std::time::{Duration, SystemTime};

use matrix_sdk::attachment::AttachmentConfig;
use matrix_sdk::ruma::api::error::{ErrorKind, RetryAfter};
use matrix_sdk::ruma::events::reaction::ReactionEventContent;
use matrix_sdk::ruma::events::room::message::TextMessageEventContent;
use matrix_sdk::ruma::{OwnedEventId, OwnedTransactionId};
use matrix_sdk::{Client, Room};
use patchbay_sdk::{Attachment, Delivered, Delivery, DeliveryError, RichText};

use crate::html::to_html;
use crate::media::read_capped;
use crate::render::{Outgoing, RenderOptions, fit, or_fallback, render};
use crate::state::{Shared, join_room};

fn txn(delivery: &Delivery, part: &str) -> OwnedTransactionId {
    OwnedTransactionId::from(format!("pb{}{part}", delivery.event.id))
}

/// Classify an sdk error for the gateway's retry logic.
fn classify(error: &matrix_sdk::Error) -> DeliveryError {
    classify_kind(error.client_api_error_kind(), error.to_string())
}

fn classify_http(error: &matrix_sdk::HttpError) -> DeliveryError {
    classify_kind(error.client_api_error_kind(), error.to_string())
}

fn classify_kind(kind: Option<&ErrorKind>, message: String) -> DeliveryError {
    match kind {
        Some(ErrorKind::LimitExceeded(data)) => DeliveryError::Retryable {
            reason: format!("rate limited: {message}"),
            retry_after: data.retry_after.as_ref().map(|after| match after {
                RetryAfter::Delay(delay) => *delay,
                RetryAfter::DateTime(at) => at
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO),
            }),
        },
        Some(
            ErrorKind::Forbidden
            | ErrorKind::NotFound
            | ErrorKind::TooLarge
            | ErrorKind::BadJson
            | ErrorKind::NotJson
            | ErrorKind::InvalidParam
            // The same reaction twice: never accepted, said in words instead (see `render`).
            | ErrorKind::DuplicateAnnotation,
        ) => DeliveryError::permanent(message),
        _ => DeliveryError::retryable(message),
    }
}

async fn room_for(shared: &Shared, client: &Client, name: &str) -> Result<Room, DeliveryError> {
    let id = join_room(shared, client, name)
        .await
        .map_err(|e| classify(&e))?;
    client
        .get_room(&id)
        .ok_or_else(|| DeliveryError::retryable(format!("{name} is not known to the client yet")))
}

/// Deliver one event.
pub async fn deliver(shared: &Shared, delivery: Delivery) -> Result<Delivered, DeliveryError> {
    let Some(client) = shared.client() else {
        return Err(DeliveryError::retryable("not connected to the homeserver"));
    };
    let options = RenderOptions {
        reactions_as_text: shared.config.reactions_as_text,
        nick_in_body: true,
    };
    let outgoing = render(&delivery, options);
    if matches!(outgoing, Outgoing::Nothing) {
        return Ok(Delivered::default());
    }
    let room = room_for(shared, &client, &delivery.room).await?;
    match outgoing {
        Outgoing::Nothing => Ok(Delivered::default()),
        Outgoing::Redact(target) => {
            room.redact(&target, None, Some(txn(&delivery, "r")))
                .await
                .map_err(|e| classify_http(&e))?;
            Ok(Delivered::default())
        }
        Outgoing::Reaction {
            annotation,
            fallback,
        } => {
            let sent = room
                .send(ReactionEventContent::new(annotation))
                .with_transaction_id(txn(&delivery, "a"))
                .await
                .map_err(|e| classify(&e));
            let fallback = fallback.map(|fallback| async move {
                room.send(*fallback)
                    .with_transaction_id(txn(&delivery, "f"))
                    .await
                    .map_err(|e| classify(&e))
            });
            let result = or_fallback(sent, fallback).await?;
            Ok(delivered(result.response.event_id))
        }
        Outgoing::Message {
            content,
            attachments,
        } => {
            let mut first = None;
            if let Some(content) = content {
                // An oversized text goes out in parts; the first part's id stands for it.
                for (i, part) in fit(*content).into_iter().enumerate() {
                    let txn_id = txn(&delivery, &format!("m{i}"));
                    let result = if shared.config.per_message_profiles {
                        room.send_raw("m.room.message", with_profile(&part, &delivery)?)
                            .with_transaction_id(&txn_id)
                            .await
                    } else {
                        room.send(part).with_transaction_id(txn_id).await
                    };
                    let result = result.map_err(|e| classify(&e))?;
                    first.get_or_insert(result.response.event_id);
                }
            }
            for (i, (attachment, caption)) in attachments.iter().enumerate() {
                let id = send_attachment(shared, &room, &delivery, i, attachment, caption).await?;
                first.get_or_insert(id);
            }
            Ok(first.map(delivered).unwrap_or_default())
        }
    }
}

/// The message with an MSC4144 per-message profile: clients that support it show the
/// relayed author (by a stable id made from their network account and author id) instead of
/// the bot; the nick stays in the body as the fallback for clients that do not.
fn with_profile(
    content: &matrix_sdk::ruma::events::room::message::RoomMessageEventContent,
    delivery: &Delivery,
) -> Result<serde_json::Value, DeliveryError> {
    let mut value = serde_json::to_value(content)
        .map_err(|e| DeliveryError::permanent(format!("cannot encode the message: {e}")))?;
    let author = &delivery.event.author;
    value["com.beeper.per_message_profile"] = serde_json::json!({
        "id": format!("{}/{}", delivery.event.origin.account, author.id),
        "displayname": delivery.nick,
        "has_fallback": true,
    });
    Ok(value)
}

fn delivered(id: OwnedEventId) -> Delivered {
    Delivered {
        remote_id: Some(id.to_string()),
    }
}

/// Fetch a file another network linked and upload it to the room with the right msgtype.
async fn send_attachment(
    shared: &Shared,
    room: &Room,
    delivery: &Delivery,
    index: usize,
    attachment: &Attachment,
    caption: &RichText,
) -> Result<OwnedEventId, DeliveryError> {
    let fetch_failed = |e: matrix_sdk::reqwest::Error| {
        DeliveryError::retryable(format!("cannot fetch {}: {e}", attachment.url))
    };
    let http = matrix_sdk::reqwest::Client::new();
    let response = http
        .get(&attachment.url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(fetch_failed)?;
    let fetched = read_capped(response, shared.config.media_max_bytes).await;
    let Some((data, header_mime)) = fetched.map_err(fetch_failed)? else {
        return send_link(room, delivery, index, attachment, caption).await;
    };
    let mime: mime::Mime = attachment
        .mime
        .clone()
        .or(header_mime)
        .and_then(|m| m.parse().ok())
        .unwrap_or(mime::APPLICATION_OCTET_STREAM);
    let name = crate::parse::attachment_file_name(attachment);
    let caption = TextMessageEventContent::html(caption.to_plain(), to_html(caption));
    let config = AttachmentConfig::new()
        .caption(Some(caption))
        .txn_id(txn(delivery, &format!("f{index}")));
    let result = room
        .send_attachment(name, &mime, data, config)
        .await
        .map_err(|e| classify(&e))?;
    Ok(result.event_id)
}

/// A file over the size cap is relayed as its link.
async fn send_link(
    room: &Room,
    delivery: &Delivery,
    index: usize,
    attachment: &Attachment,
    caption: &RichText,
) -> Result<OwnedEventId, DeliveryError> {
    let mut text = caption.clone();
    text.blocks.push(patchbay_sdk::text::Block::Paragraph {
        spans: vec![patchbay_sdk::text::Span {
            text: attachment
                .name
                .clone()
                .unwrap_or_else(|| attachment.url.clone()),
            style: Default::default(),
            kind: patchbay_sdk::text::SpanKind::Link {
                url: attachment.url.clone(),
            },
        }],
    });
    let content = matrix_sdk::ruma::events::room::message::RoomMessageEventContent::text_html(
        text.to_plain(),
        to_html(&text),
    );
    let result = room
        .send(content)
        .with_transaction_id(txn(delivery, &format!("l{index}")))
        .await
        .map_err(|e| classify(&e))?;
    Ok(result.response.event_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use matrix_sdk::ruma::api::error::LimitExceededErrorData;

    #[test]
    fn rate_limits_are_retried_after_the_servers_delay() {
        let mut data = LimitExceededErrorData::new();
        data.retry_after = Some(RetryAfter::Delay(Duration::from_millis(1500)));
        assert_eq!(
            classify_kind(Some(&ErrorKind::LimitExceeded(data)), "slow down".into()),
            DeliveryError::Retryable {
                reason: "rate limited: slow down".into(),
                retry_after: Some(Duration::from_millis(1500)),
            }
        );
    }

    #[test]
    fn refusals_are_permanent_and_the_rest_retryable() {
        assert!(matches!(
            classify_kind(Some(&ErrorKind::Forbidden), "no".into()),
            DeliveryError::Permanent { .. }
        ));
        assert!(matches!(
            classify_kind(None, "connection refused".into()),
            DeliveryError::Retryable {
                retry_after: None,
                ..
            }
        ));
    }
}
