use super::*;

fn settings(scheme: SignatureScheme) -> InboundSettings {
    InboundSettings {
        secret: Some("8f742231b10e8888abcd99yyyzzz85a5".into()),
        signature_scheme: scheme,
        ..crate::config::test_hook()
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.insert(*name, value.parse().expect("header value"));
    }
    headers
}

/// The example on Slack's "Verifying requests from Slack" page.
const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SLACK_SIGNATURE_VALUE: &str =
    "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
const SLACK_TS: i64 = 1_531_420_618;

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
fn slacks_documented_example_is_accepted_while_fresh() {
    let slack = settings(SignatureScheme::Slack);
    let signed = headers(&[
        ("x-slack-signature", SLACK_SIGNATURE_VALUE),
        ("x-slack-request-timestamp", "1531420618"),
    ]);
    let proof = check(&slack, &signed, None, SLACK_BODY.as_bytes(), SLACK_TS + 10);
    assert!(
        matches!(&proof, Ok(Proof::Timed { timestamp, mac }) if *timestamp == SLACK_TS && mac.len() == 32),
        "{proof:?}"
    );
    // A body changed by one byte no longer matches.
    let mut tampered = SLACK_BODY.to_owned();
    tampered.push('x');
    assert_eq!(
        check(&slack, &signed, None, tampered.as_bytes(), SLACK_TS),
        Err(Refusal::Forbidden(
            "the signature does not match the timestamp and body"
        ))
    );
    // Nor does a timestamp moved to look fresh.
    let moved = headers(&[
        ("x-slack-signature", SLACK_SIGNATURE_VALUE),
        ("x-slack-request-timestamp", "1531420900"),
    ]);
    assert!(matches!(
        check(&slack, &moved, None, SLACK_BODY.as_bytes(), 1_531_420_900),
        Err(Refusal::Forbidden(_))
    ));
}

#[test]
fn a_timed_signature_outside_the_window_is_stale_either_way() {
    let slack = settings(SignatureScheme::Slack);
    let signed = headers(&[
        ("x-slack-signature", SLACK_SIGNATURE_VALUE),
        ("x-slack-request-timestamp", "1531420618"),
    ]);
    let body = SLACK_BODY.as_bytes();
    assert!(check(&slack, &signed, None, body, SLACK_TS + 300).is_ok());
    assert_eq!(
        check(&slack, &signed, None, body, SLACK_TS + 301),
        Err(Refusal::Stale {
            age_secs: 301,
            window_secs: 300
        })
    );
    // A sender's clock ahead of ours by more than the window.
    assert_eq!(
        check(&slack, &signed, None, body, SLACK_TS - 400),
        Err(Refusal::Stale {
            age_secs: -400,
            window_secs: 300
        })
    );
}

#[test]
fn patchbays_timed_signature_round_trips() {
    let mut own = settings(SignatureScheme::Patchbay);
    own.secret = Some("shared".into());
    let body = br#"{"text":"hi"}"#;
    let signature = sign_timed("shared", 1_700_000_000, body);
    assert!(signature.starts_with("v1=") && signature.len() == 67);
    let signed = headers(&[
        ("x-patchbay-signature", &signature),
        ("x-patchbay-timestamp", "1700000000"),
    ]);
    assert!(matches!(
        check(&own, &signed, None, body, 1_700_000_005),
        Ok(Proof::Timed { .. })
    ));
    let no_time = headers(&[("x-patchbay-signature", &signature)]);
    assert_eq!(
        check(&own, &no_time, None, body, 1_700_000_005),
        Err(Refusal::Forbidden(
            "the X-Patchbay-Timestamp header is missing"
        ))
    );
    // The body-only GitHub-style signature is not enough for a hook that wants a timed one.
    let github = headers(&[("x-patchbay-signature", &sign("shared", body))]);
    assert!(matches!(
        check(&own, &github, None, body, 1_700_000_005),
        Err(Refusal::Forbidden(_))
    ));
    assert_eq!(
        check(&own, &HeaderMap::new(), None, body, 0),
        Err(Refusal::Unauthenticated("a signature is required"))
    );
}

#[test]
fn bearer_header_wins_over_query() {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", "Bearer abc".parse().expect("header"));
    assert_eq!(presented_token(&headers, Some("q")), Some("abc"));
    assert_eq!(presented_token(&HeaderMap::new(), Some("q")), Some("q"));
}
