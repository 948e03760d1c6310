//! Why an HTTP request was not accepted, as one type that answers for itself (feature `http`).
//!
//! Each variant is one kind of refusal with its status; [`IntoResponse`] renders every one the
//! same way — `{"error": "<what is wrong>"}` with the status, `WWW-Authenticate` on 401 and
//! `Retry-After` where waiting helps — so a handler is a line of `?` per step. Every connector
//! that serves HTTP on the gateway's listener (webhooks, the API) answers through it, so a
//! client reads the same shape from each, and the failures they share are mapped once here:
//! the gateway not running yet ([`until_running`]), not recording (`From<EmitError>`), a body
//! too large or too slow ([`read_body`]).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use crate::connector::{EmitError, EventSink};
use crate::health::{HealthEvent, Signal};

/// Why a request was refused; its `Display` is the sentence the client reads.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request is malformed or asks for something impossible: 400.
    #[error("{0}")]
    BadRequest(String),
    /// No credentials at all: 401 with a `Bearer` challenge.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Credentials that do not match: 403.
    #[error("{0}")]
    Forbidden(&'static str),
    /// A signed request whose timestamp is outside the accepted window (a replay, or a
    /// sender's clock far off): 403.
    #[error(
        "the request's timestamp is {age_secs} s away from the gateway's clock; signed requests are accepted for {window_secs} s (signature_max_age_secs)"
    )]
    Stale { age_secs: i64, window_secs: u64 },
    /// Nothing is served there: 404.
    #[error("{0}")]
    NotFound(String),
    /// The body did not arrive within the listener's body timeout: 408.
    #[error("the body did not arrive in time")]
    BodyTimeout,
    /// A signature that was already accepted inside its window: 409. The first request was
    /// relayed; a sender retrying on purpose signs again with a new timestamp.
    #[error("this signature was already accepted: a replayed request is not relayed twice")]
    Replayed,
    /// The body is over the limit: 413.
    #[error("the body is over the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// Over a rate limit: 429 with `Retry-After`.
    #[error("{message}")]
    TooMany {
        message: String,
        retry_after: Duration,
    },
    /// The gateway cannot take it now (starting, stopping, store failing): 503 with
    /// `Retry-After`.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Duration,
    },
}

/// How long a client is told to wait when the gateway is starting, stopping or failing.
pub const UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);

impl Refusal {
    /// A 503 that asks the client to come back in [`UNAVAILABLE_RETRY`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Refusal::Unavailable {
            message: message.into(),
            retry_after: UNAVAILABLE_RETRY,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Refusal::Forbidden(_) | Refusal::Stale { .. } => StatusCode::FORBIDDEN,
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::Replayed => StatusCode::CONFLICT,
            Refusal::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// How long the client should wait before trying again, where waiting helps.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Refusal::TooMany { retry_after, .. } | Refusal::Unavailable { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }
}

/// The gateway's answer to an emit, as the client hears it: both are worth retrying later.
impl From<EmitError> for Refusal {
    fn from(err: EmitError) -> Self {
        match err {
            EmitError::Closed => Refusal::unavailable("the gateway is stopping"),
            err @ EmitError::Store(_) => Refusal::unavailable(err.to_string()),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after();
        let body = serde_json::json!({ "error": self.to_string() });
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"patchbay\""),
            );
        }
        if let Some(wait) = retry_after {
            // Whole seconds, rounded up, at least 1: `Retry-After: 0` invites a busy loop.
            let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

crate::health_events! {
    /// A request the connector refused: the account's [`Signal::RequestRefused`]. Its line is at
    /// debug: the sender reads the reason in its answer, and a sender that keeps getting it wrong
    /// would otherwise fill the log; the count is what shows an operator that one does.
    pub struct RequestRefused<'a> {
        /// What was asked for, as the connector names it (a hook's room, `stream`).
        pub what: &'a str,
        pub refusal: &'a Refusal,
    } => Signal::RequestRefused, |account| tracing::debug!(account = %account, what = %what, status = refusal.status().as_u16(), "refused a request: {refusal}");
}

/// `answer` as it was, with its refusal, if it is one, emitted as [`RequestRefused`] for
/// `sink`'s account: a handler passes its whole answer through this, so that every refusal it
/// gives is counted once. Without a sink (the connector is not running yet, and the answer
/// is the 503 "starting") there is no account to count for.
pub fn counted<T>(
    answer: Result<T, Refusal>,
    sink: Option<&EventSink>,
    what: &str,
) -> Result<T, Refusal> {
    if let (Err(refusal), Some(sink)) = (&answer, sink) {
        RequestRefused { what, refusal }.emit(sink);
    }
    answer
}

/// Read a request body of at most `limit` bytes: 413 over it (at once when `Content-Length`
/// says so), 408 when the listener's body timeout cut it off, 400 when the connection broke.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Refusal::TooLarge { limit });
    }
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        let err = err.into_inner();
        if err.is::<http_body_util::LengthLimitError>() {
            Refusal::TooLarge { limit }
        } else if timed_out(&*err) {
            Refusal::BodyTimeout
        } else {
            Refusal::BadRequest(format!("the body could not be read: {err}"))
        }
    })
}

/// What `run` hands the HTTP side (the sink, an open log), waiting up to `wait` for the
/// connector to be run: routes are served from the moment the listener is up, which may be
/// before the gateway has started the account. 503 "starting" when it does not come in time.
pub async fn until_running<T: Clone>(
    ready: &watch::Sender<Option<T>>,
    wait: Duration,
) -> Result<T, Refusal> {
    let mut rx = ready.subscribe();
    match tokio::time::timeout(wait, rx.wait_for(Option::is_some)).await {
        Ok(Ok(ready)) => ready.clone(),
        _ => None,
    }
    .ok_or_else(|| Refusal::unavailable("the gateway is starting"))
}

/// Whether an error, or one of its sources, is a timeout (how the listener's body deadline
/// shows through the body stream).
fn timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        next = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_answers_with_its_status_message_and_headers() {
        let response = Refusal::Unauthenticated("a bearer token is required").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));

        let response = Refusal::TooMany {
            message: "slow down".into(),
            retry_after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");

        let response = Refusal::unavailable("starting").into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert_eq!(Refusal::Replayed.status(), StatusCode::CONFLICT);
        assert_eq!(
            Refusal::Stale {
                age_secs: 600,
                window_secs: 300
            }
            .to_string(),
            "the request's timestamp is 600 s away from the gateway's clock; signed requests are accepted for 300 s (signature_max_age_secs)"
        );
    }

    #[test]
    fn a_gateway_that_cannot_record_is_a_503_to_retry() {
        let refusal = Refusal::from(EmitError::Closed);
        assert_eq!(refusal.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refusal.to_string(), "the gateway is stopping");
        let refusal = Refusal::from(EmitError::Store("disk full".into()));
        assert_eq!(refusal.retry_after(), Some(UNAVAILABLE_RETRY));
        assert!(refusal.to_string().contains("disk full"), "{refusal}");
    }

    #[tokio::test(start_paused = true)]
    async fn routes_served_before_run_wait_then_answer_starting() {
        let (ready, _) = watch::channel::<Option<u32>>(None);
        let refusal = until_running(&ready, Duration::from_secs(3))
            .await
            .expect_err("never run");
        assert_eq!(refusal.to_string(), "the gateway is starting");
        ready.send_replace(Some(7));
        assert_eq!(until_running(&ready, Duration::ZERO).await, Ok(7));
    }

    #[test]
    fn a_timed_out_body_stream_is_a_408() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "the body took too long");
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(io);
        assert!(timed_out(&*boxed));
        let other = std::io::Error::other("reset");
        assert!(!timed_out(&other));
    }
}
