//! The `[console.NAME]` table.

use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// A console account's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Where typed lines come from: `"stdin"`, `"none"` or a file path. Default: stdin.
    #[serde(default)]
    pub input: Input,
    /// Where relayed events are printed: `"stdout"`, `"stderr"` or a file path (appended).
    /// Default: stdout.
    #[serde(default)]
    pub output: Output,
    /// The room typed lines are said in. Default: `lobby`.
    #[serde(default = "default_room")]
    pub room: String,
    /// The name typed lines are said under. Default: `console`.
    #[serde(default = "default_nick")]
    pub nick: String,
}

fn default_room() -> String {
    "lobby".into()
}

fn default_nick() -> String {
    "console".into()
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Input {
    #[default]
    Stdin,
    None,
    File(PathBuf),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Stdout,
    Stderr,
    File(PathBuf),
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match String::deserialize(deserializer)?.as_str() {
            "stdin" | "-" => Input::Stdin,
            "none" => Input::None,
            path => Input::File(PathBuf::from(path)),
        })
    }
}

impl<'de> Deserialize<'de> for Output {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match String::deserialize(deserializer)?.as_str() {
            "stdout" | "-" => Output::Stdout,
            "stderr" => Output::Stderr,
            path => Output::File(PathBuf::from(path)),
        })
    }
}
