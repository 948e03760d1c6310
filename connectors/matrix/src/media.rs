//! Matrix media served as plain links on patchbay's HTTP listener: the links' records, for
//! both modes.
//!
//! Homeserver media needs authentication, so a link to it is useless on other networks. Each
//! attachment seen on Matrix gets an unguessable token (128 random bits) recorded in the data
//! directory; `GET /media/TOKEN/NAME` (bot mode: `media_route`; appservice mode:
//! `appservice::media`) fetches it and serves it with [`file_response`].
//!
//! Files are fetched (from the homeserver, or for Matrix from other networks' links) through
//! [`read_capped`], the one place that keeps a download under `media_max_bytes`.

use std::path::PathBuf;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use matrix_sdk::reqwest;
use matrix_sdk::ruma::events::room::MediaSource;
use patchbay_sdk::Attachment;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::parse::Media;

/// What a token stands for.
#[derive(Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) source: MediaSource,
    pub(crate) name: String,
    pub(crate) mime: Option<String>,
    pub(crate) size: Option<u64>,
}

/// Token → media records, one small JSON file each.
pub struct MediaStore {
    dir: PathBuf,
}

impl MediaStore {
    pub fn new(dir: PathBuf) -> Self {
        MediaStore { dir }
    }

    /// Record `media` under a fresh token and return the attachment linking to it under
    /// `public_url`.
    pub fn register(&self, media: &Media, public_url: &str) -> std::io::Result<Attachment> {
        let token = format!("{:032x}", rand::random::<u128>());
        let record = Record {
            source: media.source.clone(),
            name: media.name.clone(),
            mime: media.mime.clone(),
            size: media.size,
        };
        std::fs::create_dir_all(&self.dir)?;
        let json = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
        std::fs::write(self.dir.join(format!("{token}.json")), json)?;
        let url = format!("{public_url}/media/{token}/{}", media.name);
        Ok(Attachment {
            url,
            name: Some(media.name.clone()),
            mime: media.mime.clone(),
            size: media.size,
        })
    }

    /// Forget links older than `max_age` (they then answer 404), so the directory does not
    /// grow without bound. Returns how many were removed.
    pub fn prune(&self, max_age: std::time::Duration) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .is_some_and(|age| age > max_age);
            if old && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// The record of a token; `None` for a malformed, unknown or forgotten one.
    pub(crate) fn load(&self, token: &str) -> Option<Record> {
        if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let bytes = std::fs::read(self.dir.join(format!("{token}.json"))).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Why a media link is answered without its file (both modes); each answers for itself.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// A malformed, unknown or forgotten token.
    #[error("no such media")]
    Unknown,
    /// Appservice mode reads no encrypted rooms, so it cannot decrypt their files.
    #[error("an encrypted file")]
    Encrypted,
    #[error("the file is over the size cap")]
    TooLarge,
    /// Bot mode: no logged-in client right now.
    #[error("not connected to the homeserver")]
    NotConnected,
    /// Appservice mode: the client cannot be made yet (the tokens).
    #[error("not ready")]
    NotReady(#[source] patchbay_sdk::DeliveryError),
    #[error("cannot fetch the file")]
    Fetch(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = match &self {
            Refusal::Unknown | Refusal::Encrypted => StatusCode::NOT_FOUND,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::NotConnected => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::NotReady(e) => {
                warn!(error = %e, "cannot serve media; the link answers 503 until it can: check the account's data dir");
                StatusCode::SERVICE_UNAVAILABLE
            }
            Refusal::Fetch(e) => {
                warn!(error = %e, "cannot fetch media from the homeserver; the link answers 502 until it can: check the homeserver's media repository");
                StatusCode::BAD_GATEWAY
            }
        };
        (status, self.to_string()).into_response()
    }
}

/// A fetched file's body and `Content-Type`, or `None` when it is over `cap` bytes: checked on
/// the announced length before reading and on the body after, as a server may announce none.
pub(crate) async fn read_capped(
    response: reqwest::Response,
    cap: u64,
) -> Result<Option<(Vec<u8>, Option<String>)>, reqwest::Error> {
    if response.content_length().is_some_and(|len| len > cap) {
        return Ok(None);
    }
    let mime = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let data = response.bytes().await?;
    if data.len() as u64 > cap {
        return Ok(None);
    }
    Ok(Some((data.to_vec(), mime)))
}

/// The file as served: its type, its name, and headers that keep a browser from running it.
pub(crate) fn file_response(record: &Record, data: Vec<u8>) -> Response {
    let mime = record
        .mime
        .as_deref()
        .and_then(|m| HeaderValue::from_str(m).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let disposition = HeaderValue::from_str(&format!("inline; filename=\"{}\"", record.name))
        .unwrap_or(HeaderValue::from_static("inline"));
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; sandbox"),
            ),
        ],
        data,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use matrix_sdk::ruma::OwnedMxcUri;
    use std::time::{Duration, SystemTime};

    #[test]
    fn links_resolve_until_they_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MediaStore::new(dir.path().join("media"));
        let media = Media {
            source: MediaSource::Plain(OwnedMxcUri::from("mxc://localhost/abc")),
            name: "cat.png".into(),
            mime: Some("image/png".into()),
            size: Some(3),
        };
        let attachment = store
            .register(&media, "https://bridge.example")
            .expect("register");
        let token = attachment
            .url
            .strip_prefix("https://bridge.example/media/")
            .and_then(|rest| rest.strip_suffix("/cat.png"))
            .expect("url shape")
            .to_owned();
        assert_eq!(token.len(), 32);
        assert!(store.load(&token).is_some());
        assert!(store.load("../../etc/passwd").is_none());
        assert!(store.load(&"0".repeat(32)).is_none());

        assert_eq!(store.prune(Duration::from_secs(3600)), 0);
        let file = std::fs::File::options()
            .write(true)
            .open(dir.path().join("media").join(format!("{token}.json")))
            .expect("open");
        file.set_modified(SystemTime::now() - Duration::from_secs(7200))
            .expect("age the record");
        assert_eq!(store.prune(Duration::from_secs(3600)), 1);
        assert!(store.load(&token).is_none());
    }
}
