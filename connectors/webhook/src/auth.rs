//! Who may post to a hook: a bearer token or an HMAC-SHA256 signature of the body, both
//! compared in constant time; and the signature patchbay puts on what it POSTs.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::InboundSettings;

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials at all: 401.
    Missing(&'static str),
    /// Credentials that do not match: 403.
    Wrong(&'static str),
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

/// Check a request against the hook's token and/or secret. When both are configured, either
/// one is enough (a sender can usually do only one of them).
pub fn check(
    settings: &InboundSettings,
    headers: &HeaderMap,
    query_token: Option<&str>,
    body: &[u8],
) -> Result<(), Refusal> {
    let token = presented_token(headers, query_token);
    let signature = headers
        .get(settings.signature_header.as_str())
        .and_then(|v| v.to_str().ok());
    match (&settings.token, &settings.secret) {
        (None, None) if settings.closed => Err(Refusal::Wrong(
            "this hook takes no requests (it has neither `token` nor `secret`)",
        )),
        (None, None) => Ok(()),
        (expected_token, expected_secret) => {
            if let (Some(expected), Some(given)) = (expected_token, token)
                && equal(expected.as_bytes(), given.as_bytes())
            {
                return Ok(());
            }
            if let (Some(secret), Some(given)) = (expected_secret, signature)
                && verify(secret, body, given)
            {
                return Ok(());
            }
            if token.is_none() && signature.is_none() {
                Err(Refusal::Missing(match (expected_token, expected_secret) {
                    (Some(_), Some(_)) => "a bearer token or a signature is required",
                    (Some(_), None) => "a bearer token is required",
                    _ => "a signature is required",
                }))
            } else if signature.is_some() && expected_secret.is_some() {
                Err(Refusal::Wrong("the signature does not match the body"))
            } else {
                Err(Refusal::Wrong("the token is wrong"))
            }
        }
    }
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

fn mac(secret: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_documented_signature() {
        // The example from GitHub's "Validating webhook deliveries" page.
        let signed = sign("It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            signed,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert!(verify(
            "It's a Secret to Everybody",
            b"Hello, World!",
            &signed
        ));
        assert!(!verify(
            "It's a Secret to Everybody",
            b"Hello, World?",
            &signed
        ));
        assert!(!verify("other", b"Hello, World!", &signed));
        assert!(!verify(
            "It's a Secret to Everybody",
            b"Hello, World!",
            "sha256=zz"
        ));
    }

    #[test]
    fn bearer_header_wins_over_query() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer abc".parse().expect("header"));
        assert_eq!(presented_token(&headers, Some("q")), Some("abc"));
        assert_eq!(presented_token(&HeaderMap::new(), Some("q")), Some("q"));
    }
}
