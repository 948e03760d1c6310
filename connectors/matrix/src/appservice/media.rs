//! Matrix attachments as links for other networks, in appservice mode.
//!
//! As in bot mode (`crate::media`), each attachment gets an unguessable token recorded in the
//! data directory, and `GET <prefix>/media/TOKEN/NAME` on patchbay's listener fetches the file
//! from the homeserver (authenticated media, as the bot) and serves it, up to
//! `media_max_bytes`. The routes sit under the account's prefix, so several Matrix accounts
//! share the listener. There is no decryption: appservice mode reads no encrypted rooms.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use matrix_sdk::ruma::events::room::MediaSource;
use patchbay_sdk::Attachment;
use tracing::warn;

use super::AppService;
use crate::parse::Media;

type Shared = std::sync::Arc<AppService>;

/// The link to `media`, when `media_public_url` says where patchbay is reached.
pub(crate) fn link(service: &AppService, media: &Media) -> Option<Attachment> {
    let public = service.config.media_public_url.as_deref()?;
    let base = format!("{public}{}", service.config.path_prefix);
    service
        .media
        .register(media, &base)
        .map_err(|e| warn!(error = %e, "cannot register a media link"))
        .ok()
}

/// `GET <prefix>/media/{token}/{name}`.
pub(crate) async fn serve(
    State(service): State<Shared>,
    Path((token, _name)): Path<(String, String)>,
) -> Response {
    let Some(record) = service.media.load(&token) else {
        return (StatusCode::NOT_FOUND, "no such media").into_response();
    };
    let cap = service.config.media_max_bytes;
    let too_large = (
        StatusCode::PAYLOAD_TOO_LARGE,
        "the file is over the size cap",
    );
    if record.size.is_some_and(|size| size > cap) {
        return too_large.into_response();
    }
    let MediaSource::Plain(mxc) = &record.source else {
        return (StatusCode::NOT_FOUND, "an encrypted file").into_response();
    };
    let client = match service.client() {
        Ok(client) => client,
        Err(e) => {
            warn!(error = %e, "cannot serve media");
            return (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response();
        }
    };
    match client.download(mxc.as_str(), cap).await {
        Ok(Some((data, _))) => crate::media::file_response(&record, data),
        Ok(None) => too_large.into_response(),
        Err(e) => {
            warn!(error = %e, "cannot fetch media from the homeserver");
            (StatusCode::BAD_GATEWAY, "cannot fetch the file").into_response()
        }
    }
}
