//! Renamed keys: the old spelling reads as the new one, and errors point at what the file says.

use serde::Deserialize;

use super::*;
use crate::duration::ConfigDuration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    wait: Option<ConfigDuration>,
    keep: Option<ConfigDuration>,
    #[serde(default)]
    rooms: std::collections::BTreeMap<String, RawRoom>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoom {
    timeout: Option<ConfigDuration>,
}

const RENAMED: &[Renamed] = &[
    Renamed::secs("wait_secs", "wait"),
    Renamed::days("keep_days", "keep"),
    Renamed::secs("timeout_secs", "timeout").under("rooms.*"),
];

fn read(source: &str) -> Result<Raw, ConfigError> {
    read_checked(source, Ok)
}

fn read_checked(
    source: &str,
    check: impl FnOnce(Raw) -> Result<Raw, ConfigError>,
) -> Result<Raw, ConfigError> {
    parse_renamed(toml::from_str(source).expect("test toml"), RENAMED, check)
}

fn secs(d: Option<ConfigDuration>) -> Option<f64> {
    d.map(|d| d.get().as_secs_f64())
}

#[test]
fn old_keys_read_as_the_new_ones_in_their_unit() {
    let raw = read("wait_secs = 0.5\nkeep_days = 2\n[rooms.a]\ntimeout_secs = 3\n").expect("valid");
    assert_eq!(secs(raw.wait), Some(0.5));
    assert_eq!(secs(raw.keep), Some(2.0 * 86_400.0));
    assert_eq!(secs(raw.rooms["a"].timeout), Some(3.0));
    let raw = read("wait = \"1m 30s\"\n[rooms.a]\ntimeout = \"250ms\"\n").expect("valid");
    assert_eq!(secs(raw.wait), Some(90.0));
    assert_eq!(secs(raw.rooms["a"].timeout), Some(0.25));
}

#[test]
fn old_and_new_name_together_is_an_error_naming_both() {
    let err = read("[rooms.a]\ntimeout = \"1s\"\ntimeout_secs = 1\n").expect_err("both");
    assert_eq!(err.path, ["rooms", "a", "timeout_secs"]);
    assert_eq!(
        err.message,
        "`timeout_secs` is the old name of `timeout`: give only `timeout`"
    );
}

#[test]
fn an_error_about_a_moved_key_names_the_key_the_file_wrote() {
    let err = read("wait_secs = -1").expect_err("negative");
    assert_eq!(err.path, ["wait_secs"]);
    let err = read_checked("[rooms.b]\ntimeout_secs = 0", |_| {
        Err(ConfigError::at(
            &["rooms", "b", "timeout"],
            "must be above 0",
        ))
    })
    .expect_err("checked");
    assert_eq!(err.path, ["rooms", "b", "timeout_secs"]);
    let err = read_checked("[rooms.b]\ntimeout = 0", |_| {
        Err(ConfigError::at(
            &["rooms", "b", "timeout"],
            "must be above 0",
        ))
    })
    .expect_err("checked");
    assert_eq!(err.path, ["rooms", "b", "timeout"]);
}

#[test]
fn deprecated_keys_say_what_to_write_instead() {
    let table: toml::Table =
        toml::from_str("wait_secs = 90\nkeep_days = 7\nkeep = 1\n[rooms.a]\ntimeout_secs = 0.25\n[rooms.b]\ntimeout_secs = \"x\"\n")
            .expect("test toml");
    let found: Vec<(Vec<String>, String)> = deprecated_keys(&table, RENAMED)
        .into_iter()
        .map(|d| (d.path.clone(), d.message()))
        .collect();
    let path = |p: &[&str]| p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        found,
        [
            (
                path(&["wait_secs"]),
                "`wait_secs` is deprecated: write `wait = \"1m 30s\"`".to_owned()
            ),
            (
                path(&["keep_days"]),
                "`keep_days` is deprecated: write `keep = \"7days\"`".to_owned()
            ),
            (
                path(&["rooms", "a", "timeout_secs"]),
                "`timeout_secs` is deprecated: write `timeout = \"250ms\"`".to_owned()
            ),
            (
                path(&["rooms", "b", "timeout_secs"]),
                "`timeout_secs` is deprecated: write `timeout`, a duration like \"30s\", \"5m\" or \"7d\"".to_owned()
            ),
        ]
    );
}
