//! Bot mode's `GET /media/TOKEN/NAME`: the file a [`crate::media`] link stands for, fetched
//! through the bot's session (decrypted when it came from an encrypted room), up to the
//! configured size cap.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use matrix_sdk::media::{MediaFormat, MediaRequestParameters};
use tracing::warn;

use crate::media::file_response;
use crate::state::Shared;

/// The `/media/...` routes.
pub fn routes(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/media/{token}/{name}", get(serve))
        .with_state(shared)
}

async fn serve(
    State(shared): State<Arc<Shared>>,
    Path((token, _name)): Path<(String, String)>,
) -> Response {
    let Some(record) = shared.media.load(&token) else {
        return (StatusCode::NOT_FOUND, "no such media").into_response();
    };
    let cap = shared.config.media_max_bytes;
    if record.size.is_some_and(|size| size > cap) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "the file is over the size cap",
        )
            .into_response();
    }
    let Some(client) = shared.client() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to the homeserver",
        )
            .into_response();
    };
    let request = MediaRequestParameters {
        source: record.source.clone(),
        format: MediaFormat::File,
    };
    let data = match client.media().get_media_content(&request, true).await {
        Ok(data) => data,
        Err(e) => {
            warn!(error = %e, "cannot fetch media from the homeserver");
            return (StatusCode::BAD_GATEWAY, "cannot fetch the file").into_response();
        }
    };
    if data.len() as u64 > cap {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            "the file is over the size cap",
        )
            .into_response();
    }
    file_response(&record, data)
}
