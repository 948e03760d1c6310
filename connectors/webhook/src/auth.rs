//! Who may post to a hook: a bearer token or an HMAC-SHA256 signature, both compared in
//! constant time; and the signatures patchbay puts on what it POSTs.
//!
//! Three signature schemes are read (`signature_scheme`): GitHub's `sha256=HEX` of the body,
//! which carries no time and so cannot expire; Slack's `v0` and patchbay's own `v1`, which sign
//! a timestamp with the body. A timed signature is refused when its timestamp is more than
//! `signature_max_age` from the gateway's clock (either way: a replay, or a sender's clock
//! far off), and the server refuses a second use of one inside that window (`replay`).

use std::time::Duration;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::{InboundSettings, SignatureScheme};
use patchbay_sdk::Refusal;

/// Where patchbay's outbound timed signature goes: `v1=HEX` of `v1:{ts}:{body}`.
pub const PATCHBAY_SIGNATURE: &str = "X-Patchbay-Signature";
/// The Unix time (seconds) patchbay's timed signature covers.
pub const PATCHBAY_TIMESTAMP: &str = "X-Patchbay-Timestamp";
const SLACK_SIGNATURE: &str = "X-Slack-Signature";
const SLACK_TIMESTAMP: &str = "X-Slack-Request-Timestamp";

/// How a request proved itself.
#[derive(Debug, PartialEq, Eq)]
pub enum Proof {
    /// The hook takes anyone (`allow_unauthenticated`).
    Open,
    Token,
    /// A signature over the body alone.
    Signature,
    /// A signature over a timestamp and the body, inside the window: its MAC is what a
    /// replay would repeat.
    Timed {
        mac: Vec<u8>,
        timestamp: i64,
    },
}

/// The token a request carries: `Authorization: Bearer X`, `X-Gitlab-Token: X` or `?token=X`.
pub fn presented_token<'a>(
    headers: &'a HeaderMap,
    query_token: Option<&'a str>,
) -> Option<&'a str> {
    if let Some(value) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(token.trim());
        }
    }
    if let Some(token) = headers.get("x-gitlab-token").and_then(|v| v.to_str().ok()) {
        return Some(token);
    }
    query_token
}

/// The signature a request carries under the hook's scheme, with its timestamp header for the
/// timed schemes (`None` when that header is absent).
fn presented_signature<'a>(
    settings: &'a InboundSettings,
    headers: &'a HeaderMap,
) -> Option<(&'a str, Option<&'a str>)> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match settings.signature_scheme {
        SignatureScheme::Github => get(&settings.signature_header).map(|sig| (sig, None)),
        SignatureScheme::Slack => get(SLACK_SIGNATURE).map(|sig| (sig, get(SLACK_TIMESTAMP))),
        SignatureScheme::Patchbay => {
            get(PATCHBAY_SIGNATURE).map(|sig| (sig, get(PATCHBAY_TIMESTAMP)))
        }
    }
}

/// Check a request against the hook's token and/or secret at Unix time `now` (seconds). When
/// both are configured, either one is enough (a sender can usually do only one of them).
pub fn check(
    settings: &InboundSettings,
    headers: &HeaderMap,
    query_token: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<Proof, Refusal> {
    let token = presented_token(headers, query_token);
    let signature = presented_signature(settings, headers);
    let (expected_token, expected_secret) = match (&settings.token, &settings.secret) {
        (None, None) if settings.closed => {
            return Err(Refusal::Forbidden(
                "this hook takes no requests (it has neither `token` nor `secret`)",
            ));
        }
        (None, None) => return Ok(Proof::Open),
        pair => pair,
    };
    if let (Some(expected), Some(given)) = (expected_token, token)
        && equal(expected.as_bytes(), given.as_bytes())
    {
        return Ok(Proof::Token);
    }
    if let (Some(secret), Some((given, timestamp))) = (expected_secret, signature) {
        return match settings.signature_scheme {
            SignatureScheme::Github if verify(secret, body, given) => Ok(Proof::Signature),
            SignatureScheme::Github => {
                Err(Refusal::Forbidden("the signature does not match the body"))
            }
            scheme => {
                let version = if scheme == SignatureScheme::Slack {
                    "v0"
                } else {
                    "v1"
                };
                let timestamp = timestamp
                    .ok_or(Refusal::Forbidden(if scheme == SignatureScheme::Slack {
                        "the X-Slack-Request-Timestamp header is missing"
                    } else {
                        "the X-Patchbay-Timestamp header is missing"
                    }))?
                    .trim();
                let mac = verify_timed(secret, version, timestamp, body, given).ok_or(
                    Refusal::Forbidden("the signature does not match the timestamp and body"),
                )?;
                // Checked after the MAC, so that only a genuine (old) request learns it is old.
                let timestamp = timestamp.parse::<i64>().map_err(|_| {
                    Refusal::Forbidden("the timestamp is not a Unix time in seconds")
                })?;
                check_age(timestamp, now, settings.signature_max_age)?;
                Ok(Proof::Timed { mac, timestamp })
            }
        };
    }
    if token.is_none() && signature.is_none() {
        Err(Refusal::Unauthenticated(
            match (expected_token, expected_secret) {
                (Some(_), Some(_)) => "a bearer token or a signature is required",
                (Some(_), None) => "a bearer token is required",
                _ => "a signature is required",
            },
        ))
    } else {
        Err(Refusal::Forbidden("the token is wrong"))
    }
}

/// Whether `timestamp` is within `window` of `now`, either way.
fn check_age(timestamp: i64, now: i64, window: Duration) -> Result<(), Refusal> {
    let age = now.saturating_sub(timestamp);
    let window_secs = window.as_secs();
    if age.unsigned_abs() > window_secs {
        return Err(Refusal::Stale {
            age_secs: age,
            window_secs,
        });
    }
    Ok(())
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// `sha256=HEX` of the body under `secret`, as GitHub signs hooks.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `given` (`sha256=HEX`, or bare HEX) is the body's signature; constant time.
pub fn verify(secret: &str, body: &[u8], given: &str) -> bool {
    let hex_part = given.trim();
    let hex_part = hex_part.strip_prefix("sha256=").unwrap_or(hex_part);
    let Ok(bytes) = hex::decode(hex_part) else {
        return false;
    };
    let mut mac = mac(secret);
    mac.update(body);
    mac.verify_slice(&bytes).is_ok()
}

/// patchbay's timed signature of `body` at Unix time `timestamp`: the value of
/// [`PATCHBAY_SIGNATURE`], `v1=HEX` of HMAC-SHA256(`v1:{timestamp}:{body}`).
pub fn sign_timed(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(format!("v1:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The MAC in `given` (`{version}=HEX`) when it signs `{version}:{timestamp}:{body}`, as Slack
/// (`v0`) and patchbay (`v1`) sign; constant time.
fn verify_timed(
    secret: &str,
    version: &str,
    timestamp: &str,
    body: &[u8],
    given: &str,
) -> Option<Vec<u8>> {
    let hex_part = given.trim().strip_prefix(version)?.strip_prefix('=')?;
    let bytes = hex::decode(hex_part).ok()?;
    let mut mac = mac(secret);
    mac.update(version.as_bytes());
    mac.update(b":");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&bytes).is_ok().then_some(bytes)
}

fn mac(secret: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
