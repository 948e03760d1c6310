//! The admin token: who may use the admin API.
//!
//! Clients send `Authorization: Bearer TOKEN`. No credentials is 401 (with
//! `WWW-Authenticate: Bearer`, so a client knows what to send); a wrong token is 403. The token
//! is compared in constant time, so how long a refusal takes says nothing of how much of a
//! guess was right.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use super::AdminError;

/// The configured token.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(token: &str) -> Token {
        Token(Arc::from(token))
    }

    /// Whether `offered` is the token, in time that depends only on their lengths.
    pub fn matches(&self, offered: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), offered.as_bytes())
    }
}

/// Compare two byte strings without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimizer from turning the fold back into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// The bearer token of a request, if it sent one.
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Let the request through only with the token.
pub async fn require(
    State(token): State<Token>,
    request: Request,
    next: Next,
) -> Result<Response, AdminError> {
    match bearer(&request) {
        None => Err(AdminError::Unauthorized),
        Some(offered) if token.matches(offered) => Ok(next.run(request).await),
        Some(_) => Err(AdminError::Forbidden),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_bytes_match() {
        let token = Token::new("s3cret-admin-token");
        assert!(token.matches("s3cret-admin-token"));
        assert!(!token.matches("s3cret-admin-tokeN"));
        assert!(!token.matches("s3cret-admin-token "));
        assert!(!token.matches(""));
    }
}
