//! The application service's calls to the homeserver: plain HTTP with the `as_token`, acting
//! as the bot or, with `user_id=` (masquerading), as one of the ghosts.
//!
//! Every failure is mapped once, in [`ApiError::classify`], to the gateway's retry policy:
//! rate limits wait for the server's `retry_after`, refusals are permanent, the rest retried.

use std::time::Duration;

use matrix_sdk::reqwest;
use patchbay_sdk::DeliveryError;
use serde_json::{Value, json};

use crate::media::read_capped;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The homeserver answered with a Matrix error.
    #[error("{status} {errcode}: {message}")]
    Matrix {
        status: u16,
        errcode: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// No answer (connection refused, timeout), or an error status where a file was fetched.
    #[error("cannot {doing}: {source}")]
    Unreachable {
        /// What the call was doing: "reach the homeserver", "download mxc://…".
        doing: String,
        source: reqwest::Error,
    },
    /// An answer without what the call needs from it.
    #[error("the homeserver did not answer: {0}")]
    Transport(String),
}

impl ApiError {
    fn unreachable(doing: impl Into<String>, source: reqwest::Error) -> Self {
        ApiError::Unreachable {
            doing: doing.into(),
            source,
        }
    }

    pub fn errcode(&self) -> Option<&str> {
        match self {
            ApiError::Matrix { errcode, .. } => Some(errcode),
            ApiError::Unreachable { .. } | ApiError::Transport(_) => None,
        }
    }

    /// The gateway's view of this failure.
    pub fn classify(&self) -> DeliveryError {
        match self {
            ApiError::Matrix {
                errcode,
                retry_after,
                ..
            } if errcode == "M_LIMIT_EXCEEDED" => DeliveryError::Retryable {
                reason: format!("rate limited: {self}"),
                retry_after: *retry_after,
            },
            ApiError::Matrix { errcode, .. }
                if matches!(
                    errcode.as_str(),
                    "M_FORBIDDEN"
                        | "M_NOT_FOUND"
                        | "M_TOO_LARGE"
                        | "M_BAD_JSON"
                        | "M_NOT_JSON"
                        | "M_INVALID_PARAM"
                        | "M_EXCLUSIVE"
                        | "M_INVALID_USERNAME"
                        | "M_DUPLICATE_ANNOTATION"
                ) =>
            {
                DeliveryError::permanent(self.to_string())
            }
            _ => DeliveryError::retryable(self.to_string()),
        }
    }
}

/// Percent-encode one path segment or query value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The homeserver as the application service sees it.
#[derive(Clone)]
pub struct AsClient {
    http: reqwest::Client,
    homeserver: String,
    as_token: String,
}

impl AsClient {
    pub fn new(homeserver: &str, as_token: &str) -> Self {
        AsClient {
            http: reqwest::Client::new(),
            homeserver: homeserver.to_owned(),
            as_token: as_token.to_owned(),
        }
    }

    /// One call; `user` masquerades as that user (a ghost), `None` acts as the bot.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        user: Option<&str>,
        body: Option<Vec<u8>>,
        content_type: &str,
    ) -> Result<Value, ApiError> {
        let mut url = format!("{}{path}", self.homeserver);
        if let Some(user) = user {
            url.push(if path.contains('?') { '&' } else { '?' });
            url.push_str("user_id=");
            url.push_str(&encode(user));
        }
        let mut request = self
            .http
            .request(method, &url)
            .bearer_auth(&self.as_token)
            .timeout(Duration::from_secs(60));
        if let Some(body) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|source| ApiError::unreachable("reach the homeserver", source))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ApiError::unreachable("reach the homeserver", source))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        Err(ApiError::Matrix {
            status: status.as_u16(),
            errcode: value["errcode"].as_str().unwrap_or("M_UNKNOWN").to_owned(),
            message: value["error"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect()),
            retry_after: value["retry_after_ms"].as_u64().map(Duration::from_millis),
        })
    }

    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        user: Option<&str>,
        body: Value,
    ) -> Result<Value, ApiError> {
        self.call(
            method,
            path,
            user,
            Some(body.to_string().into_bytes()),
            "application/json",
        )
        .await
    }

    /// Who the `as_token` is: the bot's user id (also proves the homeserver knows us).
    pub async fn whoami(&self) -> Result<String, ApiError> {
        let value = self
            .call(
                reqwest::Method::GET,
                "/_matrix/client/v3/account/whoami",
                None,
                None,
                "",
            )
            .await?;
        Ok(value["user_id"].as_str().unwrap_or_default().to_owned())
    }

    /// Ask the homeserver to call this application service's ping at the registered `url`
    /// (`POST /_matrix/client/v1/appservice/{id}/ping`), and return the round trip it
    /// measured. A homeserver that reached us sends at once the transactions it holds for us
    /// (Synapse otherwise waits out a backoff that grows to 8.5 minutes while we are down).
    pub async fn ping(&self, id: &str, transaction: &str) -> Result<Duration, ApiError> {
        let path = format!("/_matrix/client/v1/appservice/{}/ping", encode(id));
        let body = json!({ "transaction_id": transaction });
        let value = self.json(reqwest::Method::POST, &path, None, body).await?;
        Ok(Duration::from_millis(
            value["duration_ms"].as_u64().unwrap_or_default(),
        ))
    }

    /// Register a user of the namespace; one that exists already is fine.
    pub async fn register(&self, localpart: &str) -> Result<(), ApiError> {
        let body = json!({"type": "m.login.application_service", "username": localpart,
                          "inhibit_login": true});
        match self
            .json(
                reqwest::Method::POST,
                "/_matrix/client/v3/register",
                None,
                body,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.errcode() == Some("M_USER_IN_USE") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Set one field of `user`'s profile (`displayname`, or `avatar_url` to an `mxc://`
    /// URI): the homeserver takes each at its own path, with a body of that field alone.
    pub async fn set_profile(&self, user: &str, field: &str, value: &str) -> Result<(), ApiError> {
        let path = format!("/_matrix/client/v3/profile/{}/{field}", encode(user));
        let body = json!({ field: value });
        self.json(reqwest::Method::PUT, &path, Some(user), body)
            .await
            .map(drop)
    }

    /// Upload a file as `user`; returns its `mxc://` URI.
    pub async fn upload(
        &self,
        user: &str,
        data: Vec<u8>,
        mime: &str,
        name: &str,
    ) -> Result<String, ApiError> {
        let path = format!("/_matrix/media/v3/upload?filename={}", encode(name));
        let value = self
            .call(reqwest::Method::POST, &path, Some(user), Some(data), mime)
            .await?;
        value["content_uri"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ApiError::Transport("the upload answer has no content_uri".into()))
    }

    /// Join a room (by id or alias) as `user` (`None`: the bot); returns the room id.
    pub async fn join(&self, user: Option<&str>, room: &str) -> Result<String, ApiError> {
        let path = format!("/_matrix/client/v3/join/{}", encode(room));
        let value = self
            .json(reqwest::Method::POST, &path, user, json!({}))
            .await?;
        Ok(value["room_id"].as_str().unwrap_or(room).to_owned())
    }

    /// The bot invites `user` into `room`.
    pub async fn invite(&self, room: &str, user: &str) -> Result<(), ApiError> {
        let path = format!("/_matrix/client/v3/rooms/{}/invite", encode(room));
        self.json(reqwest::Method::POST, &path, None, json!({"user_id": user}))
            .await
            .map(drop)
    }

    pub async fn leave(&self, user: &str, room: &str) -> Result<(), ApiError> {
        let path = format!("/_matrix/client/v3/rooms/{}/leave", encode(room));
        self.json(reqwest::Method::POST, &path, Some(user), json!({}))
            .await
            .map(drop)
    }

    /// Send a room event as `user`; the transaction id makes a retry idempotent.
    pub async fn send(
        &self,
        user: &str,
        room: &str,
        event_type: &str,
        txn: &str,
        content: Value,
    ) -> Result<String, ApiError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/{}/{}",
            encode(room),
            encode(event_type),
            encode(txn)
        );
        let value = self
            .json(reqwest::Method::PUT, &path, Some(user), content)
            .await?;
        value["event_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ApiError::Transport("the send answer has no event_id".into()))
    }

    pub async fn redact(
        &self,
        user: &str,
        room: &str,
        event_id: &str,
        txn: &str,
    ) -> Result<(), ApiError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/redact/{}/{}",
            encode(room),
            encode(event_id),
            encode(txn)
        );
        self.json(reqwest::Method::PUT, &path, Some(user), json!({}))
            .await
            .map(drop)
    }

    /// A member's display name in a room, as the bot sees it.
    pub async fn member_name(&self, room: &str, user: &str) -> Result<Option<String>, ApiError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            encode(room),
            encode(user)
        );
        let value = self
            .call(reqwest::Method::GET, &path, None, None, "")
            .await?;
        Ok(value["displayname"].as_str().map(str::to_owned))
    }

    /// Download a file of the homeserver (`mxc://SERVER/ID`) through the authenticated media
    /// API, as the bot, at most `cap` bytes; `None` when it is larger.
    pub async fn download(
        &self,
        mxc: &str,
        cap: u64,
    ) -> Result<Option<(Vec<u8>, Option<String>)>, ApiError> {
        let Some((server, id)) = mxc.strip_prefix("mxc://").and_then(|r| r.split_once('/')) else {
            return Err(ApiError::Transport(format!("`{mxc}` is not an mxc:// URI")));
        };
        let url = format!(
            "{}/_matrix/client/v1/media/download/{}/{}",
            self.homeserver,
            encode(server),
            encode(id)
        );
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.as_token)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|source| ApiError::unreachable(format!("download {mxc}"), source))?;
        read_capped(response, cap)
            .await
            .map_err(|source| ApiError::unreachable(format!("fetch {mxc}"), source))
    }

    /// Fetch a file another network links to, at most `cap` bytes; `None` when it is larger.
    pub async fn fetch(
        &self,
        url: &str,
        cap: u64,
    ) -> Result<Option<(Vec<u8>, Option<String>)>, ApiError> {
        let response = self
            .http
            .get(url)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|source| ApiError::unreachable(format!("fetch {url}"), source))?;
        read_capped(response, cap)
            .await
            .map_err(|source| ApiError::unreachable(format!("fetch {url}"), source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode("!abc:example.org"), "%21abc%3Aexample.org");
        assert_eq!(encode("@_pb_a=20:x"), "%40_pb_a%3D20%3Ax");
    }

    #[test]
    fn failures_map_to_the_retry_policy() {
        let limited = ApiError::Matrix {
            status: 429,
            errcode: "M_LIMIT_EXCEEDED".into(),
            message: "slow down".into(),
            retry_after: Some(Duration::from_millis(700)),
        };
        assert!(matches!(
            limited.classify(),
            DeliveryError::Retryable { retry_after: Some(d), .. } if d == Duration::from_millis(700)
        ));
        let refused = ApiError::Matrix {
            status: 403,
            errcode: "M_FORBIDDEN".into(),
            message: "no".into(),
            retry_after: None,
        };
        assert!(matches!(
            refused.classify(),
            DeliveryError::Permanent { .. }
        ));
        assert!(matches!(
            ApiError::Transport("refused".into()).classify(),
            DeliveryError::Retryable { .. }
        ));
    }
}
