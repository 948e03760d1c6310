//! TLS and SASL against InspIRCd with Atheme services.

mod support;

use std::time::Duration;

use patchbay_sdk::RichText;
use support::*;

async fn server(tls: bool, services: bool, no_sasl: bool) -> IrcServer {
    IrcServer::inspircd_with(InspOptions {
        tls,
        services,
        no_sasl,
    })
    .await
}

/// The bridge's table: [`config`] in `#sec`.
fn base(port: u16, extra: &str) -> String {
    config(port, "#sec", extra)
}

/// A user in `#sec` with account-tag.
async fn alice(server: &IrcServer) -> TestClient {
    TestClient::connect_in_with_caps(server.port, "alice", &["account-tag"], "#sec").await
}

/// The account the bridge's messages carry, as a user with account-tag sees it.
async fn account_seen_by_alice(server: &IrcServer, bridge: &Running) -> Option<String> {
    account_of_a_line(&mut alice(server).await, bridge).await
}

/// The account a line delivered through `bridge` carries, as `alice` sees it.
async fn account_of_a_line(alice: &mut TestClient, bridge: &Running) -> Option<String> {
    relay(bridge, "#sec", "who am i").await;
    let p = alice
        .expect("the bridge's message", |cmd, params, _| {
            cmd == "PRIVMSG" && params.get(1).is_some_and(|t| t.contains("who am i"))
        })
        .await;
    p.tags.account
}

#[tokio::test]
async fn tls_with_a_named_ca_and_sasl_plain() {
    require!("inspircd", "atheme-services", "openssl");
    let server = server(true, true, false).await;
    server.register_account("pbacct", "s3cret", None).await;
    let data = tempdir();
    let ca = server.dir.path().join("cert.pem");
    let tls_port = server.tls_port.expect("tls port");
    let bridge = start_up(
        &base(
            tls_port,
            &format!(
                "tls = true\ntls_ca_file = \"{}\"\n[sasl]\nmechanism = \"plain\"\nusername = \"pbacct\"\npassword = \"s3cret\"",
                ca.display()
            ),
        ),
        data.path(),
    ).await;
    assert_eq!(
        account_seen_by_alice(&server, &bridge).await.as_deref(),
        Some("pbacct")
    );
    let _ = bridge.stop(TIMEOUT).await;
}

#[tokio::test]
async fn sasl_external_with_a_client_certificate() {
    require!("inspircd", "atheme-services", "openssl");
    let server = server(true, true, false).await;
    let data = tempdir();
    let fp = make_cert(data.path(), "client", "pb");
    server
        .register_account("certacct", "unused-pw", Some(&fp))
        .await;
    let ca = server.dir.path().join("cert.pem");
    let bridge = start_up(
        &base(
            server.tls_port.expect("tls port"),
            &format!(
                "tls = true\ntls_ca_file = \"{}\"\ntls_client_cert_file = \"{}\"\ntls_client_key_file = \"{}\"\n[sasl]\nmechanism = \"external\"",
                ca.display(),
                data.path().join("client.pem").display(),
                data.path().join("client.key").display(),
            ),
        ),
        data.path(),
    ).await;
    assert_eq!(
        account_seen_by_alice(&server, &bridge).await.as_deref(),
        Some("certacct")
    );
    let _ = bridge.stop(TIMEOUT).await;
}

#[tokio::test]
async fn sasl_failure_is_a_clear_error_without_a_reconnect_storm() {
    require!("inspircd", "atheme-services");
    let server = server(false, true, false).await;
    server.register_account("pbacct", "right", None).await;
    let data = tempdir();
    let mut bridge = start_connector(
        &base(
            server.port,
            "[sasl]\nmechanism = \"plain\"\nusername = \"pbacct\"\npassword = \"wrong\"",
        ),
        data.path(),
    );
    expect_down(&mut bridge, "down after SASL failure", |r| {
        r.contains("SASL")
    })
    .await;
    let result = tokio::time::timeout(Duration::from_secs(10), &mut bridge.task)
        .await
        .expect("run() returns instead of reconnecting")
        .expect("task");
    let err = result.expect_err("run() reports the failure");
    assert!(
        err.to_string().contains("SASL authentication failed"),
        "{err}"
    );
    // Nothing is delivered, and the delivery says why instead of hanging.
    assert!(
        bridge
            .connector
            .deliver(delivery("#sec", "bob", RichText::plain("x")))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn tls_rejects_an_unknown_certificate() {
    require!("inspircd", "openssl");
    let server = server(true, false, false).await;
    let data = tempdir();
    let mut bridge = start_connector(
        &base(server.tls_port.expect("tls port"), "tls = true"),
        data.path(),
    );
    let bad_cert = |r: &str| r.contains("TLS") || r.contains("certificate");
    expect_down(&mut bridge, "down with a certificate error", bad_cert).await;
    let _ = bridge.stop(TIMEOUT).await;
}

#[tokio::test]
async fn without_sasl_it_identifies_to_nickserv() {
    require!("inspircd", "atheme-services");
    let server = server(false, true, true).await;
    server.register_account("pb", "s3cret", None).await;
    let data = tempdir();
    let bridge = start_up(
        &base(
            server.port,
            "[sasl]\nmechanism = \"plain\"\nusername = \"pb\"\npassword = \"s3cret\"",
        ),
        data.path(),
    )
    .await;
    // IDENTIFY goes out right after registering; the account shows on the next messages.
    let mut alice = alice(&server).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if account_of_a_line(&mut alice, &bridge).await.as_deref() == Some("pb") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never identified");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = bridge.stop(TIMEOUT).await;
}

#[tokio::test]
async fn logged_in_users_are_identified_by_their_account() {
    require!("inspircd", "atheme-services");
    let server = server(false, true, false).await;
    let data = tempdir();
    let bridge = start_up(&base(server.port, ""), data.path()).await;
    // alice registers (which logs her in), then changes nick: the account stays.
    let mut alice = TestClient::connect(server.port, "alicacct").await;
    alice
        .send("PRIVMSG NickServ :REGISTER pw12345 alice@example.org")
        .await;
    alice.expect("logged in", |cmd, _, _| cmd == "900").await;
    alice.send("NICK alicia").await;
    alice.expect("nick change", |cmd, _, _| cmd == "NICK").await;
    alice.join("#sec").await;
    bridge
        .recorder
        .wait_for(TIMEOUT, |e| {
            e.kind == patchbay_sdk::Kind::Join
                && e.author.name == "alicia"
                && e.author.id == "alicacct"
        })
        .await
        .expect("alicia's join with her account");
    alice.send("PRIVMSG #sec :hi").await;
    let event = heard(&bridge.recorder, "hi").await;
    assert_eq!(event.author.id, "alicacct");
    assert_eq!(event.author.name, "alicia");
    let _ = bridge.stop(TIMEOUT).await;
}
