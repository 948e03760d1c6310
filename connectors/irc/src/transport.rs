//! The byte stream under a session: TCP, optionally TLS (rustls), and a line reader.
//!
//! The `irc` crate's own client ends its stream at the first line that is not UTF-8 or does not
//! parse; a bridge must log such a line and go on, so the session reads raw lines here and parses
//! them itself with the crate's protocol types.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::IrcConfig;

/// The longest line kept: 8191 bytes of tags plus 512 of message. Longer lines are skipped.
pub const MAX_READ_LINE: usize = 8191 + 512;

/// Why the transport could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    #[error("TLS handshake with {host}: {source}")]
    Handshake { host: String, source: io::Error },
}

/// A connected stream, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

fn read_pem_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let data = std::fs::read(path)
        .map_err(|e| TransportError::TlsSetup(format!("cannot read {}: {e}", path.display())))?;
    rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::TlsSetup(format!("bad PEM in {}: {e}", path.display())))
}

/// Verifies server certificates against the roots, and also accepts a server presenting exactly
/// one of the certificates named in `tls_ca_file` (a self-signed server certificate is its own
/// CA, which WebPKI refuses as an end entity).
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        match &self.webpki {
            Some(webpki) => webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Build the rustls client config: system roots plus the configured extra CA (or the server's
/// own self-signed certificate), and the client certificate for CertFP / SASL EXTERNAL. Checked
/// once at build time so a bad file is a config error, not a reconnect loop.
pub fn tls_config(cfg: &IrcConfig) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    // Missing or unreadable system certificates leave only the configured CA; that is fine.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    let mut pinned = Vec::new();
    if let Some(ca) = &cfg.tls_ca_file {
        let certs = read_pem_certs(ca)?;
        if certs.is_empty() {
            return Err(TransportError::TlsSetup(format!(
                "no certificate in {}",
                ca.display()
            )));
        }
        for cert in certs {
            // A leaf certificate cannot be a root; it is still accepted as pinned.
            let _ = roots.add(cert.clone());
            pinned.push(cert);
        }
    }
    // An explicit provider: with two providers compiled in, the default builder would panic.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let webpki = if roots.is_empty() {
        None
    } else {
        Some(
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| TransportError::TlsSetup(e.to_string()))?,
        )
    };
    let verifier = Arc::new(Verifier {
        webpki,
        pinned,
        provider: provider.clone(),
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::TlsSetup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match &cfg.tls_client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = read_pem_certs(cert)?;
            let key_data = std::fs::read(key).map_err(|e| {
                TransportError::TlsSetup(format!("cannot read {}: {e}", key.display()))
            })?;
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_data.as_slice())
                .map_err(|e| TransportError::TlsSetup(format!("{}: {e}", key.display())))?
                .ok_or_else(|| {
                    TransportError::TlsSetup(format!("no private key in {}", key.display()))
                })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TransportError::TlsSetup(e.to_string()))?
        }
    };
    Ok(Arc::new(config))
}

/// Connect to the configured server.
pub async fn connect(
    cfg: &IrcConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Stream, TransportError> {
    let addr = format!("{}:{}", cfg.server, cfg.port);
    let tcp = TcpStream::connect((cfg.server.as_str(), cfg.port))
        .await
        .map_err(|source| TransportError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Stream::Plain(tcp));
    };
    let name = ServerName::try_from(cfg.server.clone())
        .map_err(|e| TransportError::TlsSetup(format!("server name {}: {e}", cfg.server)))?;
    let stream = TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|source| TransportError::Handshake {
            host: cfg.server.clone(),
            source,
        })?;
    Ok(Stream::Tls(Box::new(stream)))
}

/// Reads `\n`-terminated lines of at most [`MAX_READ_LINE`] bytes; longer ones are dropped
/// whole (reported as `Ok(Some(None))`) instead of growing memory without bound.
pub struct LineReader<R> {
    inner: BufReader<R>,
    buf: Vec<u8>,
    overflow: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(inner: R) -> Self {
        LineReader {
            inner: BufReader::with_capacity(16 * 1024, inner),
            buf: Vec::with_capacity(1024),
            overflow: false,
        }
    }

    /// Whether a whole line is buffered already, so that [`next_line`](Self::next_line) will
    /// not wait for the network.
    pub fn has_line(&self) -> bool {
        self.inner.buffer().contains(&b'\n')
    }

    /// The next line without its terminator: `Ok(None)` at end of stream, `Ok(Some(None))` for
    /// a line that was too long. Cancel-safe: a partial line stays buffered.
    pub async fn next_line(&mut self) -> io::Result<Option<Option<Vec<u8>>>> {
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                return Ok(None);
            }
            let (take, done) = match available.iter().position(|b| *b == b'\n') {
                Some(pos) => (pos + 1, true),
                None => (available.len(), false),
            };
            if self.buf.len() + take <= MAX_READ_LINE {
                self.buf.extend_from_slice(&available[..take]);
            } else {
                self.overflow = true;
                self.buf.clear();
            }
            self.inner.consume(take);
            if done {
                let overflow = std::mem::take(&mut self.overflow);
                let mut line = std::mem::take(&mut self.buf);
                if overflow {
                    return Ok(Some(None));
                }
                while matches!(line.last(), Some(b'\n' | b'\r')) {
                    line.pop();
                }
                return Ok(Some(Some(line)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_lines_and_skips_overlong() {
        let mut data = b"one\r\ntwo\n".to_vec();
        data.extend(vec![b'x'; MAX_READ_LINE + 10]);
        data.extend(b"\nthree\r\npartial");
        let mut reader = LineReader::new(data.as_slice());
        assert_eq!(
            reader.next_line().await.expect("io"),
            Some(Some(b"one".to_vec()))
        );
        assert_eq!(
            reader.next_line().await.expect("io"),
            Some(Some(b"two".to_vec()))
        );
        assert_eq!(reader.next_line().await.expect("io"), Some(None));
        assert_eq!(
            reader.next_line().await.expect("io"),
            Some(Some(b"three".to_vec()))
        );
        assert_eq!(reader.next_line().await.expect("io"), None);
    }
}
