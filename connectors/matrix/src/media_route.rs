//! Bot mode's `GET /media/TOKEN/NAME`: the file a [`crate::media`] link stands for, fetched
//! through the bot's session (decrypted when it came from an encrypted room), up to the
//! configured size cap.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use matrix_sdk::media::{MediaFormat, MediaRequestParameters};

use crate::media::{Refusal, file_response};
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
) -> Result<Response, Refusal> {
    let record = shared.media.load(&token).ok_or(Refusal::Unknown)?;
    let cap = shared.config.media_max_bytes;
    if record.size.is_some_and(|size| size > cap) {
        return Err(Refusal::TooLarge);
    }
    let client = shared.client().ok_or(Refusal::NotConnected)?;
    let request = MediaRequestParameters {
        source: record.source.clone(),
        format: MediaFormat::File,
    };
    let data = client
        .media()
        .get_media_content(&request, true)
        .await
        .map_err(|e| Refusal::Fetch(e.into()))?;
    if data.len() as u64 > cap {
        return Err(Refusal::TooLarge);
    }
    Ok(file_response(&record, data))
}
