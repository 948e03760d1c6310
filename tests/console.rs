//! End to end through the binary, with console rooms.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Gateway, binary, run_failing, run_ok, write_config};

const MIRROR: &str = r#"
[console.you]
input = "stdin"
output = "you.log"
room = "lobby"
nick = "alice"

[console.screen]
input = "none"
output = "stdout"

[console.ops]
input = "none"
output = "stdout"

[[route]]
name = "lobby"
inout = ["console.you/lobby", "console.screen/lobby"]
nick_format = "[{protocol}] {nick}"

[[route]]
name = "notify"
in = ["console.you/lobby"]
out = ["console.ops/alerts"]
kinds = ["notice"]
"#;

#[test]
fn typed_lines_are_relayed_with_formatting_and_kinds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gateway = Gateway::start(dir.path(), MIRROR);
    gateway.type_line("hello **world**");
    gateway.expect("[console.screen/lobby] <[console] alice> hello **world**");
    gateway.type_line("/me waves");
    gateway.expect("[console.screen/lobby] * [console] alice waves");
    // Notices also go to the ops room, which takes nothing else.
    gateway.type_line("/notice deploy done");
    let first = gateway.expect_line(Duration::from_secs(20), |l| l.contains("deploy done"));
    let second = gateway.expect_line(Duration::from_secs(20), |l| l.contains("deploy done"));
    let mut both = [first, second];
    both.sort();
    assert_eq!(
        both,
        [
            "[console.ops/alerts] -alice- deploy done".to_owned(),
            "[console.screen/lobby] -[console] alice- deploy done".to_owned(),
        ]
    );
    assert!(
        !gateway
            .seen
            .iter()
            .any(|l| l.starts_with("[console.ops/alerts]") && !l.contains("deploy done")),
        "the ops room got more than notices: {:?}",
        gateway.seen
    );
    assert!(gateway.stop(), "patchbay did not stop cleanly on SIGTERM");
    // Nothing was relayed back into the room it came from.
    let own = std::fs::read_to_string(dir.path().join("you.log")).unwrap_or_default();
    assert_eq!(own, "");
}

#[test]
fn check_prints_who_mirrors_whom() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stdout = run_ok(&["check"], &write_config(dir.path(), MIRROR));
    assert!(stdout.ends_with(
        ": OK, 3 accounts, 2 routes\nroute `lobby`:\n  console.you/lobby -> console.screen/lobby\n  console.screen/lobby -> console.you/lobby\nroute `notify`:\n  console.you/lobby -> console.ops/alerts\n"
    ), "{stdout}");
}

#[test]
fn a_broken_config_fails_with_every_error_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.toml");
    std::fs::write(
        &path,
        "[console.a]\nimput = \"none\"\n\n[[route]]\nname = \"r\"\ninout = [\"console.a/x\", \"console.b/y\"]\n",
    )
    .expect("write");
    let stderr = run_failing(&["run"], &path);
    let file = path.display();
    assert!(stderr.contains("2 errors in the config:"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{file}:2:9: `console.a.imput`: unknown field `imput`"
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{file}:6:25: `route \"r\".inout`: no account `console.b` is configured; did you mean `console.a`?")), "{stderr}");
}

#[test]
fn the_config_can_come_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), MIRROR);
    let output = Command::new(binary())
        .arg("check")
        .env("PATCHBAY_CONFIG", &path)
        .output()
        .expect("run check");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
