//! Deliveries in appservice mode: each is sent as its author's ghost.
//!
//! The ghost is set up first (registered, named, joined: see [`super::ghosts`]); then the
//! same rendering as bot mode, without the nick in the text, and the same transaction ids
//! made from the gateway's event id, so a retried delivery is not posted twice. Joins and
//! parts move the ghost in and out of the room, a nick change renames it; nothing is posted
//! for them.

use matrix_sdk::ruma::events::reaction::ReactionEventContent;
use patchbay_sdk::{Attachment, Delivered, Delivery, DeliveryError, Kind, RichText};
use serde_json::{Value, json};
use tracing::debug;

use super::AppService;
use super::ghosts;
use super::mentions::{self, Mentionable};
use crate::html::to_html;
use crate::render::{Outgoing, RenderOptions, fit, or_fallback, render};

fn txn(delivery: &Delivery, part: &str) -> String {
    format!("pb{}{part}", delivery.event.id)
}

fn to_json<T: serde::Serialize>(content: &T) -> Result<Value, DeliveryError> {
    serde_json::to_value(content)
        .map_err(|e| DeliveryError::permanent(format!("cannot encode the event: {e}")))
}

/// Deliver one event.
pub async fn deliver(service: &AppService, delivery: Delivery) -> Result<Delivered, DeliveryError> {
    let client = service.client()?;
    let room_id = service.room_id(&delivery.room).await?;
    match &delivery.event.kind {
        Kind::Join => {
            ghosts::ensure(service, &delivery, &delivery.nick, Some(&room_id)).await?;
            return Ok(Delivered::default());
        }
        Kind::Part { .. } => {
            let user = ghosts::user_for(service, &*service.ghosts.lock().await, &delivery);
            match client.leave(&user, &room_id).await {
                Ok(()) => {}
                // Never joined, or gone already: the ghost is out either way.
                Err(e) if matches!(e.errcode(), Some("M_FORBIDDEN" | "M_NOT_FOUND")) => {
                    debug!(%user, error = %e, "leaving a room the ghost was not in");
                }
                Err(e) => return Err(e.classify()),
            }
            ghosts::forget_room(service, &user, &room_id).await;
            return Ok(Delivered::default());
        }
        Kind::Nick { old, new } => {
            ghosts::rename(service, &delivery, old, new).await?;
            return Ok(Delivered::default());
        }
        _ => {}
    }
    let mut delivery = delivery;
    pills(service, &mut delivery, &room_id).await;
    let options = RenderOptions {
        reactions_as_text: service.config.reactions_as_text,
        nick_in_body: false,
    };
    let outgoing = render(&delivery, options);
    if matches!(outgoing, Outgoing::Nothing) {
        return Ok(Delivered::default());
    }
    let user = ghosts::ensure(service, &delivery, &delivery.nick, Some(&room_id)).await?;
    let sent = send(service, &user, &room_id, &delivery, &outgoing).await;
    match sent {
        // Kicked since it joined: join again and send once more.
        Err(DeliveryError::Permanent { reason }) if reason.contains("M_FORBIDDEN") => {
            ghosts::forget_room(service, &user, &room_id).await;
            ghosts::ensure(service, &delivery, &delivery.nick, Some(&room_id)).await?;
            send(service, &user, &room_id, &delivery, &outgoing).await
        }
        other => other,
    }
}

/// Nicks of this room's ghosts named in the text become pills of them.
async fn pills(service: &AppService, delivery: &mut Delivery, room_id: &str) {
    let store = service.ghosts.lock().await;
    let ghosts: Vec<Mentionable<'_>> = store
        .all()
        .filter(|(_, g)| g.rooms.contains(room_id))
        .map(|(user, g)| Mentionable {
            nick: &g.nick,
            user,
            display_name: g.display_name.as_deref().unwrap_or(&g.nick),
        })
        .collect();
    if let Some(body) = delivery.event.kind.body_mut() {
        mentions::to_pills(body, &ghosts);
    }
}

async fn send(
    service: &AppService,
    user: &str,
    room_id: &str,
    delivery: &Delivery,
    outgoing: &Outgoing,
) -> Result<Delivered, DeliveryError> {
    let client = service.client()?;
    let delivered = |id: String| Delivered {
        remote_id: Some(id),
    };
    match outgoing {
        Outgoing::Nothing => Ok(Delivered::default()),
        Outgoing::Redact(target) => {
            client
                .redact(user, room_id, target.as_str(), &txn(delivery, "r"))
                .await
                .map_err(|e| e.classify())?;
            Ok(Delivered::default())
        }
        Outgoing::Reaction {
            annotation,
            fallback,
        } => {
            let content = to_json(&ReactionEventContent::new(annotation.clone()))?;
            let sent = client
                .send(user, room_id, "m.reaction", &txn(delivery, "a"), content)
                .await
                .map_err(|e| e.classify());
            let fallback = fallback.as_ref().map(|fallback| async move {
                let content = to_json(fallback)?;
                let txn_id = txn(delivery, "f");
                let sent = client.send(user, room_id, "m.room.message", &txn_id, content);
                sent.await.map_err(|e| e.classify())
            });
            Ok(delivered(or_fallback(sent, fallback).await?))
        }
        Outgoing::Message {
            content,
            attachments,
        } => {
            let mut first = None;
            if let Some(content) = content {
                for (i, part) in fit((**content).clone()).into_iter().enumerate() {
                    let id = client
                        .send(
                            user,
                            room_id,
                            "m.room.message",
                            &txn(delivery, &format!("m{i}")),
                            to_json(&part)?,
                        )
                        .await
                        .map_err(|e| e.classify())?;
                    first.get_or_insert(id);
                }
            }
            for (i, (attachment, caption)) in attachments.iter().enumerate() {
                let id = send_attachment(service, user, room_id, delivery, i, attachment, caption)
                    .await?;
                first.get_or_insert(id);
            }
            Ok(first.map(delivered).unwrap_or_default())
        }
    }
}

/// A file from another network: fetched, uploaded as the ghost, sent with the msgtype its
/// MIME type gives; over `media_max_bytes`, its link is sent instead.
async fn send_attachment(
    service: &AppService,
    user: &str,
    room_id: &str,
    delivery: &Delivery,
    index: usize,
    attachment: &Attachment,
    caption: &RichText,
) -> Result<String, DeliveryError> {
    let client = service.client()?;
    let name = crate::parse::attachment_file_name(attachment);
    let fetched = client
        .fetch(&attachment.url, service.config.media_max_bytes)
        .await
        .map_err(|e| e.classify())?;
    let content = match fetched {
        Some((data, header_mime)) => {
            let mime = attachment
                .mime
                .clone()
                .or(header_mime)
                .unwrap_or_else(|| "application/octet-stream".into());
            let size = data.len();
            let mxc = client
                .upload(user, data, &mime, &name)
                .await
                .map_err(|e| e.classify())?;
            let msgtype = match mime.split('/').next() {
                Some("image") => "m.image",
                Some("video") => "m.video",
                Some("audio") => "m.audio",
                _ => "m.file",
            };
            let mut content = json!({
                "msgtype": msgtype, "body": name, "filename": name, "url": mxc,
                "info": {"mimetype": mime, "size": size},
            });
            if !caption.is_empty() {
                content["body"] = json!(caption.to_plain());
                content["format"] = json!("org.matrix.custom.html");
                content["formatted_body"] = json!(to_html(caption));
            }
            content
        }
        None => {
            let text = format!("{} {}", caption.to_plain(), attachment.url);
            json!({"msgtype": "m.text", "body": text.trim()})
        }
    };
    client
        .send(
            user,
            room_id,
            "m.room.message",
            &txn(delivery, &format!("f{index}")),
            content,
        )
        .await
        .map_err(|e| e.classify())
}
