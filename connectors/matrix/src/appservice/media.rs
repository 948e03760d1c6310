//! Matrix attachments as links for other networks, in appservice mode.
//!
//! As in bot mode (`crate::media`), each attachment gets an unguessable token recorded in the
//! data directory, and `GET <prefix>/media/TOKEN/NAME` on patchbay's listener fetches the file
//! from the homeserver (authenticated media, as the bot) and serves it, up to
//! `media_max_bytes`. The routes sit under the account's prefix, so several Matrix accounts
//! share the listener. There is no decryption: appservice mode reads no encrypted rooms.

use axum::extract::{Path, State};
use axum::response::Response;
use matrix_sdk::ruma::events::room::MediaSource;
use patchbay_sdk::Attachment;
use tracing::warn;

use super::AppService;
use crate::media::{Refusal, file_response};
use crate::parse::Media;

type Shared = std::sync::Arc<AppService>;

/// The link to `media`, when `media_public_url` says where patchbay is reached.
pub(crate) fn link(service: &AppService, media: &Media) -> Option<Attachment> {
    let public = service.config.media_public_url.as_deref()?;
    let base = format!("{public}{}", service.config.path_prefix);
    service
        .media
        .register(media, &base)
        .map_err(|e| warn!(error = %e, "cannot register a media link; the message is relayed without it: check the account's data dir (writable, disk space)"))
        .ok()
}

/// `GET <prefix>/media/{token}/{name}`.
pub(crate) async fn serve(
    State(service): State<Shared>,
    Path((token, _name)): Path<(String, String)>,
) -> Result<Response, Refusal> {
    let record = service.media.load(&token).ok_or(Refusal::Unknown)?;
    let cap = service.config.media_max_bytes;
    if record.size.is_some_and(|size| size > cap) {
        return Err(Refusal::TooLarge);
    }
    let MediaSource::Plain(mxc) = &record.source else {
        return Err(Refusal::Encrypted);
    };
    let client = service.client().map_err(Refusal::NotReady)?;
    match client.download(mxc.as_str(), cap).await {
        Ok(Some((data, _))) => Ok(file_response(&record, data)),
        Ok(None) => Err(Refusal::TooLarge),
        Err(e) => Err(Refusal::Fetch(e.into())),
    }
}
