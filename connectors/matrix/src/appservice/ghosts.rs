//! Ghosts: one Matrix user per remote author, registered through the application service.
//!
//! What is known about them (user id, display name, avatar, the rooms they joined, the
//! remote nick they stand for) is kept in `<data>/ghosts.json`, rewritten atomically after
//! every change, so a restart registers nothing again, renames nobody and joins no room twice.
//! Ghosts are keyed by the author's network account and stable author id; a nick change adds
//! the new id as another key of the same ghost, so the renamed author keeps their Matrix user.

use patchbay_sdk::{Delivery, DeliveryError};
use tracing::{info, warn};

use super::AppService;
pub use super::ghost_store::{Ghost, GhostStore};

/// Homeservers refuse longer display names (Synapse: 256 characters).
const MAX_DISPLAY_NAME_CHARS: usize = 256;

/// A display name the homeserver takes: cut to its limit.
pub fn fit_display_name(name: &str) -> String {
    name.chars().take(MAX_DISPLAY_NAME_CHARS).collect()
}

/// The key of a delivery's author.
pub fn key(account: &str, author_id: &str) -> String {
    format!("{account}|{author_id}")
}

/// The ghost user id for a delivery's author (known, or derived from the template).
pub fn user_for(service: &AppService, store: &GhostStore, delivery: &Delivery) -> String {
    let event = &delivery.event;
    if let Some(user) = store.user_for_key(&key(&event.origin.account, &event.author.id)) {
        return user.to_owned();
    }
    let (protocol, account) = event
        .origin
        .account
        .split_once('.')
        .unwrap_or(("", event.origin.account.as_str()));
    let config = &service.config;
    let local =
        config
            .ghost_template
            .localpart(protocol, account, &event.author.id, &config.server_name);
    format!("@{local}:{}", config.server_name)
}

/// Make sure the delivery's author has a registered ghost with the right profile, joined to
/// `room_id`; returns its user id. `display_name` is what the ghost shows.
pub async fn ensure(
    service: &AppService,
    delivery: &Delivery,
    display_name: &str,
    room_id: Option<&str>,
) -> Result<String, DeliveryError> {
    let client = service.client()?;
    let display_name = fit_display_name(display_name);
    let display_name = display_name.as_str();
    let mut store = service.ghosts.lock().await;
    let user = user_for(service, &store, delivery);
    let event = &delivery.event;
    if store.get(&user).is_none() {
        let local = user
            .strip_prefix('@')
            .and_then(|u| u.split_once(':'))
            .map_or(user.as_str(), |(l, _)| l);
        client.register(local).await.map_err(|e| e.classify())?;
        info!(%user, "registered a ghost");
        let ghost = Ghost {
            nick: event.author.name.clone(),
            ..Ghost::default()
        };
        store.add(&user, ghost, key(&event.origin.account, &event.author.id))?;
    }
    let ghost = store.get(&user).cloned().unwrap_or_default();
    if ghost.display_name.as_deref() != Some(display_name) {
        client
            .set_profile(&user, "displayname", display_name)
            .await
            .map_err(|e| e.classify())?;
        let nick = event.author.name.clone();
        store.update(&user, |g| {
            g.display_name = Some(display_name.to_owned());
            g.nick = nick;
        })?;
    }
    if let Some(avatar) = &event.author.avatar
        && ghost.avatar_source.as_ref() != Some(avatar)
    {
        // An avatar that cannot be fetched is not worth failing the message for.
        match set_avatar(service, &user, avatar).await {
            Ok(()) => store.update(&user, |g| g.avatar_source = Some(avatar.clone()))?,
            Err(e) => {
                warn!(%user, %avatar, error = %e, "cannot set the ghost's avatar; it keeps its old one: check that the avatar URL is reachable from the homeserver and its media size limit")
            }
        }
    }
    if let Some(room_id) = room_id
        && !ghost.rooms.contains(room_id)
    {
        join(service, &user, room_id).await?;
        store.update(&user, |g| {
            g.rooms.insert(room_id.to_owned());
        })?;
    }
    Ok(user)
}

async fn set_avatar(service: &AppService, user: &str, url: &str) -> Result<(), DeliveryError> {
    let client = service.client()?;
    let Some((data, mime)) = client
        .fetch(url, service.config.media_max_bytes)
        .await
        .map_err(|e| e.classify())?
    else {
        return Err(DeliveryError::permanent(
            "the avatar is over media_max_bytes",
        ));
    };
    let mime = mime.unwrap_or_else(|| "image/png".into());
    let mxc = client
        .upload(user, data, &mime, "avatar")
        .await
        .map_err(|e| e.classify())?;
    client
        .set_profile(user, "avatar_url", &mxc)
        .await
        .map_err(|e| e.classify())
}

/// Join a ghost to a room, asking the bot to invite it when the room wants an invite.
async fn join(service: &AppService, user: &str, room_id: &str) -> Result<(), DeliveryError> {
    let client = service.client()?;
    match client.join(Some(user), room_id).await {
        Ok(_) => Ok(()),
        Err(e) if e.errcode() == Some("M_FORBIDDEN") => {
            client
                .invite(room_id, user)
                .await
                .map_err(|e| e.classify())?;
            client
                .join(Some(user), room_id)
                .await
                .map(drop)
                .map_err(|e| e.classify())
        }
        Err(e) => Err(e.classify()),
    }
}

/// The ghost left `room_id` (or was found not to be in it any more).
pub async fn forget_room(service: &AppService, user: &str, room_id: &str) {
    let mut store = service.ghosts.lock().await;
    if let Err(e) = store.update(user, |g| {
        g.rooms.remove(room_id);
    }) {
        warn!(%user, error = %e, "cannot save the ghost table; check the account's data dir (writable, disk space): until then ghosts are found again by their user ids");
    }
}

/// A remote author changed nick: the same ghost, renamed; the new author id names it too.
pub async fn rename(
    service: &AppService,
    delivery: &Delivery,
    old: &str,
    new: &str,
) -> Result<(), DeliveryError> {
    let client = service.client()?;
    let event = &delivery.event;
    let mut store = service.ghosts.lock().await;
    let account = &event.origin.account;
    let user = store
        .user_for_key(&key(account, old))
        .or_else(|| store.user_for_key(&key(account, &event.author.id)))
        .map(str::to_owned);
    let Some(user) = user else {
        // No ghost yet: the first message under the new name makes one.
        return Ok(());
    };
    let display = fit_display_name(
        &if delivery.nick.contains(old) && !delivery.nick.contains(new) {
            delivery.nick.replace(old, new)
        } else {
            delivery.nick.clone()
        },
    );
    store.alias(key(account, new), &user)?;
    store.alias(key(account, &event.author.id), &user)?;
    let current = store.get(&user).and_then(|g| g.display_name.clone());
    if current.as_deref() != Some(display.as_str()) {
        client
            .set_profile(&user, "displayname", &display)
            .await
            .map_err(|e| e.classify())?;
    }
    let new = new.to_owned();
    store.update(&user, |g| {
        g.display_name = Some(display);
        g.nick = new;
    })
}
