//! The `patchbay` command's side of the admin API: one request to the running gateway, on
//! loopback or wherever `[admin] listen` (else `[http] listen`) points, through reqwest (the
//! client the webhook connector already builds).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::config::Config;

/// How long the command waits for the gateway: to connect, and for the whole answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call to the admin API did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there: the gateway is not running (or listens elsewhere).
    #[error("nothing answers on {0}: is the gateway running?")]
    NotRunning(SocketAddr),
    #[error("the gateway on {0} did not answer within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("talking to the gateway on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: reqwest::Error,
    },
}

/// Where to reach a running gateway's admin API, and with what token.
#[derive(Clone)]
pub struct AdminClient {
    pub addr: SocketAddr,
    token: String,
}

/// An answer: the status code and the body (JSON unless the server broke).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `error` (and `errors`) of a refusal, else the body.
    pub fn error_text(&self) -> String {
        let json = self.json();
        match (json["error"].as_str(), json["errors"].as_str()) {
            (Some(error), Some(errors)) => format!("{error}:\n{errors}"),
            (Some(error), None) => error.to_owned(),
            _ => format!("HTTP {}: {}", self.status, self.body),
        }
    }
}

/// A listen address as a place to connect to: the wildcard addresses mean this host.
pub fn connectable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

impl AdminClient {
    /// The config's admin API, if it has one (a token, and a listener to reach it on).
    pub fn from_config(config: &Config) -> Option<AdminClient> {
        let admin = config.admin.as_ref()?;
        let listen = admin.listen.or(config.http.as_ref().map(|h| h.listen))?;
        Some(AdminClient {
            addr: connectable(listen),
            token: admin.token.clone(),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Answer, ClientError> {
        self.call(reqwest::Method::GET, path).await
    }

    pub async fn post(&self, path: &str) -> Result<Answer, ClientError> {
        self.call(reqwest::Method::POST, path).await
    }

    pub async fn delete(&self, path: &str) -> Result<Answer, ClientError> {
        self.call(reqwest::Method::DELETE, path).await
    }

    async fn call(&self, method: reqwest::Method, path: &str) -> Result<Answer, ClientError> {
        let addr = self.addr;
        let failed = |source: reqwest::Error| {
            if source.is_timeout() {
                ClientError::Timeout(addr, ANSWER_TIMEOUT)
            } else if source.is_connect() {
                ClientError::NotRunning(addr)
            } else {
                ClientError::Http { addr, source }
            }
        };
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(ANSWER_TIMEOUT)
            .build()
            .map_err(failed)?;
        let response = client
            .request(method, format!("http://{addr}{path}"))
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(failed)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(failed)?;
        Ok(Answer { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listener_is_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        assert_eq!(connectable(any).to_string(), "127.0.0.1:8080");
        let v6: SocketAddr = "[::]:9".parse().expect("addr");
        assert_eq!(connectable(v6).to_string(), "[::1]:9");
    }
}
