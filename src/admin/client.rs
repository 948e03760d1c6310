//! The `patchbay` command's side of the admin API: one HTTP/1.1 request per connection to
//! the running gateway, on loopback or wherever `[admin] listen` (else `[http] listen`)
//! points. Small on purpose: a request line, two headers, and a JSON answer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Config;

/// How long the command waits for the gateway: to connect, and for the whole answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest answer read (a long dead-letter list is well under this).
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

/// Why a call to the admin API did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens there: the gateway is not running (or listens elsewhere).
    #[error("nothing answers on {0}: is the gateway running?")]
    NotRunning(SocketAddr),
    #[error("talking to the gateway on {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the gateway on {0} did not answer within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("the answer from {0} is not HTTP")]
    Malformed(SocketAddr),
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
        self.call("GET", path).await
    }

    pub async fn post(&self, path: &str) -> Result<Answer, ClientError> {
        self.call("POST", path).await
    }

    pub async fn delete(&self, path: &str) -> Result<Answer, ClientError> {
        self.call("DELETE", path).await
    }

    async fn call(&self, method: &str, path: &str) -> Result<Answer, ClientError> {
        let addr = self.addr;
        let io = |source| ClientError::Io { addr, source };
        let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
        {
            Err(_) => return Err(ClientError::Timeout(addr, CONNECT_TIMEOUT)),
            Ok(Err(err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(ClientError::NotRunning(addr));
            }
            Ok(Err(err)) => return Err(io(err)),
            Ok(Ok(stream)) => stream,
        };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
             Accept: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.token
        );
        let exchange = async {
            stream.write_all(request.as_bytes()).await?;
            let mut raw = Vec::new();
            (&mut stream).take(MAX_ANSWER).read_to_end(&mut raw).await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = tokio::time::timeout(ANSWER_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Timeout(addr, ANSWER_TIMEOUT))?
            .map_err(io)?;
        parse(&raw).ok_or(ClientError::Malformed(addr))
    }
}

/// Status and body of an HTTP/1.1 answer read to its end (`Connection: close`), chunked or
/// not.
fn parse(raw: &[u8]) -> Option<Answer> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let body = &raw[split + 4..];
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Some(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_answers_read_alike() {
        let plain = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n{\"a\":1}").expect("plain");
        assert_eq!((plain.status, plain.body.as_str()), (200, "{\"a\":1}"));
        let chunked = parse(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
        )
        .expect("chunked");
        assert_eq!((chunked.status, chunked.body.as_str()), (404, "{\"a\":1}"));
        assert!(parse(b"garbage").is_none());
    }

    #[test]
    fn a_wildcard_listener_is_reached_on_loopback() {
        let any: SocketAddr = "0.0.0.0:8080".parse().expect("addr");
        assert_eq!(connectable(any).to_string(), "127.0.0.1:8080");
        let v6: SocketAddr = "[::]:9".parse().expect("addr");
        assert_eq!(connectable(v6).to_string(), "[::1]:9");
    }
}
