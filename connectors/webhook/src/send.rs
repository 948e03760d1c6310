//! POST one rendered delivery and say whether the gateway should retry.
//!
//! 2xx is delivered. 408, 429, 5xx, timeouts and connection failures are retryable (honouring
//! `Retry-After`); any other status is permanent: retrying the same body cannot help.

use std::time::{Duration, SystemTime};

use patchbay_sdk::DeliveryError;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use crate::auth;
use crate::config::OutboundSettings;

/// The longest `Retry-After` honoured; a receiver asking for more is retried sooner.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// POST `body` to the room's URL.
pub async fn post(
    client: &reqwest::Client,
    settings: &OutboundSettings,
    body: Vec<u8>,
) -> Result<(), DeliveryError> {
    let mut headers = HeaderMap::new();
    for (name, value) in &settings.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| DeliveryError::permanent(format!("bad header name `{name}`")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| DeliveryError::permanent(format!("bad value for header `{name}`")))?;
        headers.insert(name, value);
    }
    let content_type = HeaderValue::from_str(&settings.content_type)
        .map_err(|_| DeliveryError::permanent("bad content_type"))?;
    headers.insert(CONTENT_TYPE, content_type);
    if let Some(secret) = &settings.sign_secret {
        sign(&mut headers, settings, secret, &body, SystemTime::now())?;
    }
    let response = client
        .post(&settings.url)
        .headers(headers)
        .timeout(settings.timeout)
        .body(body)
        .send()
        .await
        .map_err(|err| {
            let what = if err.is_timeout() {
                "timed out"
            } else if err.is_connect() {
                "could not connect"
            } else {
                "failed"
            };
            DeliveryError::retryable(format!("POST {} {what}: {err}", settings.url))
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, SystemTime::now()));
    // A little of the answer helps whoever reads the dead-letter table.
    let text = response.text().await.unwrap_or_default();
    let snippet: String = text.chars().take(200).collect();
    let reason = format!("POST {} answered {status}: {snippet}", settings.url);
    Err(classify(status, reason, retry_after))
}

/// Sign `body` twice: `sign_header` gets GitHub's `sha256=HEX` of the body (what receivers
/// built for GitHub check), and [`auth::PATCHBAY_SIGNATURE`] gets the timed `v1` signature
/// over [`auth::PATCHBAY_TIMESTAMP`] and the body, which a receiver can refuse once it is old
/// (a patchbay hook with `signature_scheme = "patchbay"` does). Each retry is signed anew.
fn sign(
    headers: &mut HeaderMap,
    settings: &OutboundSettings,
    secret: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<(), DeliveryError> {
    let name = HeaderName::from_bytes(settings.sign_header.as_bytes())
        .map_err(|_| DeliveryError::permanent("bad sign_header"))?;
    let timestamp = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    // Hex and digits only: these are always valid header values.
    let value = |text: String| {
        HeaderValue::from_str(&text)
            .map_err(|_| DeliveryError::permanent("bad signature header value"))
    };
    headers.insert(name, value(auth::sign(secret, body))?);
    headers.insert(auth::PATCHBAY_TIMESTAMP, value(timestamp.to_string())?);
    headers.insert(
        auth::PATCHBAY_SIGNATURE,
        value(auth::sign_timed(secret, timestamp, body))?,
    );
    Ok(())
}

/// `Retry-After` as seconds or as an HTTP date, capped at [`MAX_RETRY_AFTER`].
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

fn classify(status: StatusCode, reason: String, retry_after: Option<Duration>) -> DeliveryError {
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        DeliveryError::Retryable {
            reason,
            retry_after,
        }
    } else {
        // 3xx left over after redirects, and 4xx: the request itself is refused.
        DeliveryError::Permanent { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:29:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn statuses_map_to_retry_or_not() {
        let retry = |s: u16| {
            matches!(
                classify(
                    StatusCode::from_u16(s).expect("status"),
                    String::new(),
                    None
                ),
                DeliveryError::Retryable { .. }
            )
        };
        assert!(retry(500) && retry(503) && retry(429) && retry(408));
        assert!(!retry(400) && !retry(401) && !retry(404) && !retry(413));
    }
}
