//! Outbound POSTs over HTTPS to a receiver with its own CA: trusted with `tls_ca_file`,
//! refused (retryably, without a panic) without it.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use patchbay_sdk::DeliveryError;
use patchbay_sdk::testkit::delivery;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn openssl(args: &[&str], dir: &Path) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A CA and a certificate it signs for 127.0.0.1, in `dir`.
fn make_ca_and_leaf(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-days",
        "2",
        "-subj",
        "/CN=patchbay test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&ca, dir);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-subj",
        "/CN=localhost",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
    ]);
    openssl(&csr, dir);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write ext");
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "leaf.pem",
        ],
        dir,
    );
}

/// An HTTPS receiver answering 200 to each request and recording its body.
async fn https_receiver(dir: &Path) -> (String, Arc<Mutex<Vec<String>>>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("leaf.pem"))
        .expect("leaf.pem")
        .collect::<Result<_, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(dir.join("leaf.key")).expect("leaf.key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let got = Arc::new(Mutex::new(Vec::new()));
    let bodies = Arc::clone(&got);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let bodies = Arc::clone(&bodies);
            tokio::spawn(async move {
                // A client refusing the certificate ends the handshake: nothing to record.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = tls.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            bodies
                                .lock()
                                .expect("lock")
                                .push(text[end + 4..].to_owned());
                            let _ = tls
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                .await;
                            let _ = tls.shutdown().await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (format!("https://127.0.0.1:{}/in", addr.port()), got)
}

#[tokio::test]
async fn a_receiver_with_its_own_ca_is_reached_over_https_only_when_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_ca_and_leaf(dir.path());
    let (url, got) = https_receiver(dir.path()).await;
    let hook = support::build(
        dir.path(),
        "out",
        &format!(
            "[rooms.pinned]\nurl = \"{url}\"\npayload = \"slack\"\ntls_ca_file = \"ca.pem\"\n\n[rooms.public]\nurl = \"{url}\"\n"
        ),
    );
    hook.deliver(delivery("pinned", "alice", "over TLS"))
        .await
        .expect("delivered over https");
    let bodies = got.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 1);
    let json: serde_json::Value = serde_json::from_str(&bodies[0]).expect("JSON");
    assert_eq!(json["text"], "over TLS");
    // Without the CA, the platform's roots do not know it: a retryable failure, not a panic.
    let err = hook
        .deliver(delivery("public", "alice", "over TLS"))
        .await
        .expect_err("untrusted");
    assert!(matches!(err, DeliveryError::Retryable { .. }), "{err}");
    assert_eq!(got.lock().expect("lock").len(), 1);
}

#[test]
fn a_ca_file_without_certificates_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").expect("write");
    let table: toml::Table =
        toml::from_str("[rooms.a]\nurl = \"https://h/x\"\ntls_ca_file = \"empty.pem\"\n")
            .expect("toml");
    let info = patchbay_sdk::AccountInfo {
        account: "webhook.out".into(),
        config_dir: dir.path().to_owned(),
        data_dir: dir.path().to_owned(),
    };
    use patchbay_sdk::ConnectorFactory;
    let err = match patchbay_webhook::WebhookFactory.build(&info, table) {
        Ok(_) => panic!("accepted a CA file without certificates"),
        Err(err) => err,
    };
    assert_eq!(err.path, ["rooms", "a", "tls_ca_file"]);
    assert!(
        err.message.ends_with("empty.pem holds no PEM certificate"),
        "{}",
        err.message
    );
}
