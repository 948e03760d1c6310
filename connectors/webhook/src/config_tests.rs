//! Tests of the `[webhook.NAME]` table.

use super::*;

fn build(source: &str) -> Result<WebhookConfig, ConfigError> {
    let dir = std::env::temp_dir();
    let info = AccountInfo {
        account: "webhook.ci".into(),
        config_dir: dir.clone(),
        data_dir: dir,
    };
    parse(&info, toml::from_str(source).expect("TOML"))
}

fn error(source: &str) -> (Vec<String>, String) {
    let err = build(source).expect_err("invalid");
    (err.path, err.message)
}

#[test]
fn rooms_inherit_the_account_defaults() {
    let config = build(
        "token = \"t\"\nformat = \"slack\"\nurl = \"http://h/x\"\npayload = \"discord\"\n[rooms.gh]\nformat = \"github\"\nsecret = \"s\"\n[rooms.out]\nurl = \"https://h/y\"\n",
    )
    .expect("valid");
    let gh = config.inbound("gh");
    assert_eq!(gh.format, Format::Github);
    assert_eq!(gh.token.as_deref(), Some("t"));
    assert_eq!(gh.secret.as_deref(), Some("s"));
    assert_eq!(gh.username, "GitHub");
    assert_eq!(config.inbound("other").format, Format::Slack);
    assert_eq!(config.inbound("other").username, "ci");
    let out = config.outbound("out").expect("out");
    assert_eq!(out.url, "https://h/y");
    assert_eq!(out.payload, Payload::Discord);
    assert_eq!(
        config.outbound("other").map(|o| o.url.as_str()),
        Some("http://h/x")
    );
}

#[test]
fn a_room_that_only_sends_needs_no_inbound_credentials() {
    let config = build("[rooms.out]\nurl = \"http://h/x\"\n").expect("valid");
    assert!(config.inbound("out").closed);
    assert!(config.inbound("elsewhere").closed);
    assert_eq!(
        error("[rooms.out]\nurl = \"http://h/x\"\n[rooms.in]\nformat = \"text\"\n"),
        (
            vec!["rooms".into(), "in".into()],
            "a hook needs `token` (bearer token) or `secret` (HMAC signature), or a `url` to send to; set `allow_unauthenticated = true` to accept anyone".into()
        )
    );
    let open = build("allow_unauthenticated = true\n").expect("valid");
    assert!(!open.inbound("any").closed);
}

#[test]
fn mistakes_are_located_and_explained() {
    assert_eq!(
        error("format = \"slack\""),
        (
            vec![],
            "a hook needs `token` (bearer token) or `secret` (HMAC signature), or a `url` to send to; set `allow_unauthenticated = true` to accept anyone".into()
        )
    );
    assert_eq!(
        error("token = \"t\"\n[rooms.a]\nurl = \"ftp://x\""),
        (
            vec!["rooms".into(), "a".into(), "url".into()],
            "`ftp://x` is not an http:// or https:// URL".into()
        )
    );
    assert_eq!(
        error("token = \"t\"\n[rooms.a]\nformat = \"template\""),
        (
            vec!["rooms".into(), "a".into(), "format".into()],
            "`format = \"template\"` needs `template` or `template_file`".into()
        )
    );
    let (path, message) =
        error("token = \"t\"\n[rooms.a]\nformat = \"template\"\ntemplate = \"{{ oops \"");
    assert_eq!(path, ["rooms", "a", "template"]);
    assert!(
        message.starts_with("the template does not compile"),
        "{message}"
    );
    assert_eq!(
        error("token = \"t\"\ntoken_file = \"/x\""),
        (
            vec!["token".into()],
            "give either `token` or `token_file`, not both".into()
        )
    );
    assert_eq!(error("token = \"t\"\nformat = \"xml\"").0, ["format"]);
    assert_eq!(
        error("token = \"t\"\n[rooms.a]\nurl = \"http://h\"\nsign_header = \"bad header\"").1,
        "`bad header` is not a valid HTTP header name"
    );
}

#[test]
fn signature_schemes_and_their_window() {
    let config = build(
        "token = \"t\"\nsignature_max_age_secs = 60\n[rooms.slack]\nsecret = \"s\"\nsignature_scheme = \"slack\"\n[rooms.own]\nsecret = \"s\"\nsignature_scheme = \"patchbay\"\nsignature_max_age_secs = 30\n",
    )
    .expect("valid");
    assert_eq!(
        config.inbound("slack").signature_scheme,
        SignatureScheme::Slack
    );
    assert_eq!(
        config.inbound("slack").signature_max_age,
        Duration::from_secs(60)
    );
    assert_eq!(
        config.inbound("own").signature_max_age,
        Duration::from_secs(30)
    );
    assert_eq!(
        config.inbound("other").signature_scheme,
        SignatureScheme::Github
    );
    assert_eq!(
        build("token = \"t\"")
            .expect("valid")
            .defaults
            .signature_max_age,
        Duration::from_secs(300)
    );
    assert_eq!(
        error("token = \"t\"\n[rooms.a]\nsignature_max_age_secs = 0"),
        (
            vec!["rooms".into(), "a".into(), "signature_max_age_secs".into()],
            "must be a number of seconds, 1 or more".into()
        )
    );
    assert_eq!(
        error("token = \"t\"\nsignature_scheme = \"hmac\"").0,
        ["signature_scheme"]
    );
    assert_eq!(
        error(
            "token = \"t\"\n[rooms.a]\nurl = \"http://h\"\nsign_header = \"x-patchbay-timestamp\""
        ),
        (
            vec!["rooms".into(), "a".into(), "sign_header".into()],
            "`x-patchbay-timestamp` carries patchbay's timed signature; pick another name".into()
        )
    );
}

#[test]
fn durations_read_as_strings_and_under_their_old_secs_names() {
    let config = build(
        "token = \"t\"\nstart_wait = \"2s\"\ntimeout = \"1m\"\nurl = \"http://h/x\"\n[rooms.a]\nurl = \"http://h/a\"\ntimeout_secs = 0.5\nsignature_max_age = \"90s\"\n",
    )
    .expect("valid");
    assert_eq!(config.start_wait, Duration::from_secs(2));
    assert_eq!(
        config.outbound("other").map(|o| o.timeout),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        config.outbound("a").map(|o| o.timeout),
        Some(Duration::from_millis(500))
    );
    assert_eq!(
        config.inbound("a").signature_max_age,
        Duration::from_secs(90)
    );
    assert_eq!(
        error("token = \"t\"\n[rooms.a]\nurl = \"http://h/a\"\ntimeout = \"0s\""),
        (
            vec!["rooms".into(), "a".into(), "timeout".into()],
            "must be above 0s".into()
        )
    );
    assert_eq!(
        error("token = \"t\"\ntimeout = \"1s\"\ntimeout_secs = 1"),
        (
            vec!["timeout_secs".into()],
            "`timeout_secs` is the old name of `timeout`: give only `timeout`".into()
        )
    );
}
