//! Every example config in `config/` passes `patchbay check`, so the examples keep working as
//! the code changes.

mod support;

use std::process::Command;

#[test]
fn every_example_config_is_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("config/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let output = Command::new(support::binary())
            .args(["check", "--config"])
            .arg(&path)
            // The secrets the examples take from the environment.
            .env("IRC_PASSWORD", "example")
            .env("MATRIX_PASSWORD", "example")
            .env("HOOK_TOKEN", "example")
            .output()
            .expect("run patchbay check");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains(": OK, "),
            "{} is not valid:\n{}{}",
            path.display(),
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
        checked.push(path);
    }
    assert!(checked.len() >= 2, "examples checked: {checked:?}");
}
