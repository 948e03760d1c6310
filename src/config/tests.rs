//! Broken configs and the exact message each produces.

use std::path::Path;

use super::*;

const ACCOUNTS: &str = r#"
[console.a]
input = "none"
[console.b]
input = "none"
"#;

/// Every diagnostic `source` gets, as `check` prints it (none for a valid config).
pub(super) fn errors(source: &str) -> Vec<String> {
    match parse(Path::new("patchbay.toml"), source, &Registry::builtin()) {
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn broken_configs_name_file_line_key_and_the_fix() {
    let cases: &[(&str, &[&str])] = &[
        (
            "[general]\ndata_dri = \"x\"\n",
            &[
                "patchbay.toml:2:1: `general`: unknown field `data_dri`, expected one of `data_dir`, `gateway_id`, `nick_format`, `kinds`, `retention`, `shutdown_timeout`; did you mean `data_dir`?",
            ],
        ),
        (
            "[genral]\n",
            &["patchbay.toml:1:2: `genral`: unknown table `genral`; did you mean `general`?"],
        ),
        (
            "[console.a]\ninput = \"none\"\nroom = 5\n",
            &["patchbay.toml:3:8: `console.a.room`: invalid type: integer `5`, expected a string"],
        ),
        (
            "[console.a]\nimput = \"none\"\n",
            &[
                "patchbay.toml:2:9: `console.a.imput`: unknown field `imput`, expected one of `input`, `output`, `room`, `nick`; did you mean `input`?",
            ],
        ),
        (
            "[general]\nretention = \"forever\"\n",
            &[
                "patchbay.toml:2:13: `general`: `forever` is not a duration (expected number at 0); write it like \"30s\", \"5m\" or \"7d\"",
            ],
        ),
        (
            "[[route]]\nname = \"r\"\ninout = [\"console.a/x\", \"console.c/y\"]\n",
            &[
                "patchbay.toml:3:25: `route \"r\".inout`: no account `console.c` is configured; did you mean `console.a`?",
            ],
        ),
        (
            "[[route]]\nname = \"r\"\ninout = [\"console.a\", \"console.b/y\"]\n",
            &[
                "patchbay.toml:3:10: `route \"r\".inout`: `console.a` is not a room: write \"ACCOUNT/ROOM\", e.g. \"irc.libera/#rust\"",
            ],
        ),
        (
            "[[route]]\nname = \"r\"\ninout = [\"console.a/x\", \"console.b/y\"]\nkinds = [\"mesage\"]\nnick_format = \"{name}\"\nignore_text = [\"(\"]\n",
            &[
                "patchbay.toml:4:10: `route \"r\".kinds`: `mesage` is not a kind of event; did you mean `message`? the kinds are message, action, notice, edit, delete, reaction, join, part, topic, nick, and `system` (a server's own messages)",
                "patchbay.toml:5:15: `route \"r\".nick_format`: unknown variable `{name}`; the variables are {nick}, {account}, {protocol}, {room}, {route}",
                "patchbay.toml:6:16: `route \"r\".ignore_text`: `(` is not a valid regex: error: unclosed group",
            ],
        ),
        (
            "[[route]]\nname = \"r\"\nout = [\"console.a/x\", \"console.b/y\"]\n",
            &[
                "patchbay.toml:2:8: `route \"r\"`: this route relays nothing: it needs at least two rooms, one that feeds it (`inout` or `in`) and another that receives (`inout` or `out`)",
            ],
        ),
        (
            "[[route]]\nname = \"r\"\ninout = [\"console.a/x\", \"console.b/y\"]\n[route.room.\"console.b/z\"]\nnick_format = \"{nick}\"\n",
            &[
                "patchbay.toml:4:13: `route \"r\".room.\"console.b/z\"`: settings for a room the route does not name; list it in `inout`, `in` or `out`",
            ],
        ),
        (
            "[route]\nname = \"r\"\n",
            &[
                "patchbay.toml:1:1: `route`: routes are an array of tables: write each as `[[route]]`",
            ],
        ),
        (
            "[console.a]\ninput = \"none\"\nnick = \"${PATCHBAY_SURELY_UNSET_VARIABLE}\"\n",
            &[
                "patchbay.toml:3:8: `console.a.nick`: the environment variable `PATCHBAY_SURELY_UNSET_VARIABLE` is not set (or not UTF-8)",
            ],
        ),
        (
            "[general\n",
            &["patchbay.toml:1:9: unclosed table, expected `]`"],
        ),
    ];
    for (source, expected) in cases {
        let source = if source.contains("[[route]]") {
            format!("{ACCOUNTS}{source}")
        } else {
            (*source).to_owned()
        };
        let offset = if source.starts_with(ACCOUNTS) {
            ACCOUNTS.lines().count()
        } else {
            0
        };
        let got: Vec<String> = errors(&source)
            .into_iter()
            .map(|e| shift_line(&e, offset))
            .collect();
        assert_eq!(got, *expected, "config:\n{source}");
    }
}

/// Report line numbers as if the shared accounts header were not there.
fn shift_line(message: &str, offset: usize) -> String {
    let Some(rest) = message.strip_prefix("patchbay.toml:") else {
        return message.to_owned();
    };
    let (line, rest) = rest.split_once(':').unwrap_or((rest, ""));
    match line.parse::<usize>() {
        Ok(n) => format!("patchbay.toml:{}:{rest}", n - offset),
        Err(_) => message.to_owned(),
    }
}

#[test]
fn several_errors_are_reported_at_once() {
    let source = "[general]\nbogus = 1\n[http]\nlisten = \"nowhere\"\n[console.a]\nroom = []\n";
    let got = errors(source);
    assert_eq!(got.len(), 3, "{got:#?}");
}

#[test]
fn a_valid_config_describes_who_mirrors_whom() {
    let source = format!(
        "{ACCOUNTS}[console.ci]\ninput = \"none\"\n[[route]]\nname = \"r\"\ninout = [\"console.a/x\", \"console.b/y\"]\nin = [\"console.ci/builds\"]\n"
    );
    let config = parse(Path::new("patchbay.toml"), &source, &Registry::builtin()).expect("valid");
    assert_eq!(
        describe(&config),
        "patchbay.toml: OK, 3 accounts, 1 route\nroute `r`:\n  console.a/x -> console.b/y\n  console.b/y -> console.a/x\n  console.ci/builds -> console.a/x, console.b/y\n"
    );
    assert_eq!(config.general.data_dir, Path::new("./data"));
}

#[test]
fn per_room_settings_override_the_route() {
    let source = format!(
        "{ACCOUNTS}[[route]]\nname = \"r\"\nnick_format = \"<{{nick}}>\"\ninout = [\"console.a/x\", \"console.b/y\"]\n[route.room.\"console.b/y\"]\nnick_format = \"[{{protocol}}] {{nick}}\"\n"
    );
    let config = parse(Path::new("patchbay.toml"), &source, &Registry::builtin()).expect("valid");
    let route = &config.routes[0];
    let vars = crate::router::NickVars {
        nick: "al",
        account: "irc.x",
        room: "#r",
        route: "r",
    };
    assert_eq!(route.settings[0].nick_format.render(&vars), "<al>");
    assert_eq!(route.settings[1].nick_format.render(&vars), "[irc] al");
}

#[test]
fn an_old_key_name_still_reads_with_a_warning_at_its_line() {
    let irc = "[irc.net]\nserver = \"irc.example\"\nnick = \"pb\"\nping_interval_secs = 90\n";
    let config = parse(Path::new("patchbay.toml"), irc, &Registry::builtin()).expect("valid");
    let warnings: Vec<String> = config.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "patchbay.toml:4:22: `irc.net.ping_interval_secs`: `ping_interval_secs` is deprecated: write `ping_interval = \"1m 30s\"`"
        ]
    );
    assert_eq!(
        errors(&format!("{irc}ping_interval = \"90s\"\n")),
        [
            "patchbay.toml:4:22: `irc.net.ping_interval_secs`: `ping_interval_secs` is the old name of `ping_interval`: give only `ping_interval`"
        ]
    );
    let new = "[irc.net]\nserver = \"irc.example\"\nnick = \"pb\"\nping_interval = \"90s\"\n";
    let config = parse(Path::new("patchbay.toml"), new, &Registry::builtin()).expect("valid");
    assert!(config.warnings.is_empty());
}
