//! What a sync response means for the gateway: the timeline events of each joined room are
//! emitted in order (after filling a gap in a limited timeline from `/messages`), and invites
//! from trusted users are accepted.

use matrix_sdk::deserialized_responses::TimelineEvent;
use matrix_sdk::room::MessagesOptions;
use matrix_sdk::ruma::UInt;
use matrix_sdk::ruma::events::room::member::MembershipState;
use matrix_sdk::ruma::events::{AnySyncStateEvent, AnySyncTimelineEvent};
use matrix_sdk::sync::SyncResponse;
use matrix_sdk::{Client, Room};
use patchbay_sdk::{ConnectorContext, EmitError, EventSink, HealthEvent, RichText};
use tracing::{debug, info, warn};

use crate::health::{GapNotFilled, Undecryptable};
use crate::parse::{Context, parse_event};
use crate::state::Shared;

/// The events between `to` (our previous sync position) and `from` (the start of a limited
/// timeline), oldest first: what a long downtime pushed out of the sync's timeline.
async fn backfill(room: &Room, from: &str, to: &str, sink: &EventSink) -> Vec<TimelineEvent> {
    let mut newest_first = Vec::new();
    let mut from = from.to_owned();
    loop {
        let mut options = MessagesOptions::backward().from(Some(from.as_str()));
        options.to = Some(to.to_owned());
        options.limit = UInt::from(100u32);
        match room.messages(options).await {
            Ok(page) => {
                let done = page.chunk.is_empty();
                newest_first.extend(page.chunk);
                match page.end {
                    Some(end) if !done => from = end,
                    _ => break,
                }
            }
            Err(e) => {
                GapNotFilled {
                    room: &room.room_id(),
                    error: &e,
                }
                .emit(sink);
                break;
            }
        }
    }
    if !newest_first.is_empty() {
        info!(room = %room.room_id(), events = newest_first.len(), "filled a sync gap");
    }
    newest_first.reverse();
    newest_first
}

/// Emit every relayable event of a sync response, in order per room, a room's as one run.
pub async fn process(
    shared: &Shared,
    client: &Client,
    ctx: &ConnectorContext,
    response: &SyncResponse,
    since: Option<&str>,
) -> Result<(), EmitError> {
    let own_user = client.user_id().map(|u| u.to_string()).unwrap_or_default();
    for (room_id, update) in &response.rooms.joined {
        let Some(room) = client.get_room(room_id) else {
            continue;
        };
        let mut raw: Vec<TimelineEvent> = Vec::new();
        if update.timeline.limited
            && let (Some(from), Some(to)) = (update.timeline.prev_batch.as_deref(), since)
        {
            raw = backfill(&room, from, to, &ctx.sink).await;
        }
        raw.extend(update.timeline.events.iter().cloned());
        let events: Vec<AnySyncTimelineEvent> = raw
            .iter()
            .filter_map(|event| match event.raw().deserialize() {
                Ok(event) => Some(event),
                Err(e) => {
                    debug!(room = %room_id, error = %e, "skipping an event that does not parse");
                    None
                }
            })
            .collect();
        // When the bot just joined, the timeline starts with history: relay only what follows
        // its own join.
        let start = events
            .iter()
            .rposition(|event| is_own_join(event, &own_user))
            .map_or(0, |i| i + 1);
        let room_name = shared.room_name(room_id);
        // The room's events go to the gateway as one run: one commit for all of them, which is
        // what makes a catch-up after a downtime (hundreds of events) quick.
        let mut inbounds = Vec::with_capacity(events.len() - start);
        for event in &events[start..] {
            if let AnySyncTimelineEvent::MessageLike(
                matrix_sdk::ruma::events::AnySyncMessageLikeEvent::RoomEncrypted(_),
            ) = event
            {
                Undecryptable {
                    room: &room_name,
                    event: &event.event_id(),
                }
                .emit(&ctx.sink);
                continue;
            }
            let member = room.get_member_no_sync(event.sender()).await.ok().flatten();
            let display_name = member.as_ref().and_then(|m| m.display_name());
            let context = Context {
                room: &room_name,
                own_user: &own_user,
                display_name,
                relay_reactions: shared.config.relay_reactions,
            };
            let Some(parsed) = parse_event(event, &context) else {
                continue;
            };
            let mut inbound = parsed.inbound;
            if let Some(media) = parsed.media
                && let patchbay_sdk::Kind::Message { attachments, body } = &mut inbound.kind
            {
                let registered = match shared.config.media_public_url.as_deref() {
                    Some(base) => shared
                        .media
                        .register(&media, base)
                        .map_err(|e| warn!(error = %e, "cannot register a media link; the message is relayed without it: check the account's data dir (writable, disk space)"))
                        .ok(),
                    None => None,
                };
                match registered {
                    Some(attachment) => attachments.push(attachment),
                    // No link to give (no media_public_url): at least say what was sent.
                    None if body.is_empty() => *body = RichText::plain(format!("[{}]", media.name)),
                    None => {}
                }
            }
            inbounds.push(inbound);
        }
        if !inbounds.is_empty() {
            ctx.sink.emit_many(inbounds).await?;
        }
    }
    Ok(())
}

fn is_own_join(event: &AnySyncTimelineEvent, own_user: &str) -> bool {
    match event {
        AnySyncTimelineEvent::State(AnySyncStateEvent::RoomMember(member)) => {
            member.state_key().as_str() == own_user
                && member.membership() == &MembershipState::Join
                && member
                    .as_original()
                    .and_then(|m| m.unsigned.prev_content.as_ref())
                    .is_none_or(|prev| prev.membership != MembershipState::Join)
        }
        _ => false,
    }
}

/// Join rooms the bot is invited to, when the inviter is trusted or the room is configured.
pub async fn accept_invites(shared: &Shared, client: &Client, response: &SyncResponse) {
    for room_id in response.rooms.invited.keys() {
        let Some(room) = client.get_room(room_id) else {
            continue;
        };
        let inviter = match room.invite_details().await {
            Ok(invite) => invite.inviter_id.to_string(),
            Err(e) => {
                debug!(room = %room_id, error = %e, "cannot read the invite");
                continue;
            }
        };
        let configured = shared
            .config
            .rooms
            .iter()
            .any(|name| name == room_id.as_str());
        if configured || shared.config.invite_from.contains(&inviter) {
            match room.join().await {
                Ok(()) => info!(room = %room_id, %inviter, "accepted an invite"),
                Err(e) => {
                    warn!(room = %room_id, error = %e, "cannot accept the invite; invite the bot again, or add the room to `rooms`")
                }
            }
        } else {
            debug!(room = %room_id, %inviter, "ignoring an invite from an untrusted user");
        }
    }
}
