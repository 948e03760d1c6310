//! The one way a config file writes a span of time, for the gateway and every connector.
//!
//! A duration is a string such as `"90s"`, `"1m 30s"`, `"250ms"` or `"7d"`: always with its
//! unit, so that no reader has to guess whether `30` meant seconds or minutes. The numbers of
//! the old `*_secs` keys still read: [`Renamed`](crate::factory::Renamed) turns them into such
//! a string as it moves them to the new key.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A duration read from a config file: `"90s"`, `"1m 30s"`, `"250ms"`, `"7d"`. Bounds are the
/// reader's to check; this only refuses what is no duration (a number without a unit, a string
/// humantime cannot read), saying how to write one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// `secs` whole seconds, for defaults beside a config struct.
    pub const fn secs(secs: u64) -> Self {
        ConfigDuration(Duration::from_secs(secs))
    }

    pub const fn get(self) -> Duration {
        self.0
    }
}

/// `SECS` whole seconds, as a serde default beside the field it is for:
/// `#[serde(default = "default_secs::<60>")]`.
pub fn default_secs<const SECS: u64>() -> ConfigDuration {
    ConfigDuration::secs(SECS)
}

impl From<ConfigDuration> for Duration {
    fn from(value: ConfigDuration) -> Self {
        value.0
    }
}

impl fmt::Display for ConfigDuration {
    /// As a config file would write it (`1m 30s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

/// A bare number is no duration: say how to write one with its unit.
fn unitless<E: de::Error>(value: impl fmt::Display) -> E {
    E::custom(format!(
        "`{value}` is not a duration: give its unit, like \"30s\", \"5m\" or \"7d\""
    ))
}

impl<'de> Visitor<'de> for DurationVisitor {
    type Value = ConfigDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration like \"30s\", \"5m\" or \"7d\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        // The wording is the gateway's since before connectors shared it; its tests match it.
        humantime::parse_duration(text)
            .map(ConfigDuration)
            .map_err(|err| {
                E::custom(format!(
                    "`{text}` is not a duration ({err}); write it like \"30s\", \"5m\" or \"7d\""
                ))
            })
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Err(unitless(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Err(unitless(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Self::Value, E> {
        Err(unitless(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Table {
        wait: ConfigDuration,
    }

    fn read(value: &str) -> Result<Duration, String> {
        toml::from_str::<Table>(&format!("wait = {value}"))
            .map(|t| t.wait.get())
            .map_err(|err| err.message().to_owned())
    }

    #[test]
    fn strings_read_as_humantime_writes_them() {
        assert_eq!(read("\"90s\""), Ok(Duration::from_secs(90)));
        assert_eq!(read("\"1m 30s\""), Ok(Duration::from_secs(90)));
        assert_eq!(read("\"250ms\""), Ok(Duration::from_millis(250)));
        assert_eq!(read("\"7d\""), Ok(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn what_is_no_duration_says_how_to_write_one() {
        assert_eq!(
            read("\"soon\""),
            Err(
                "`soon` is not a duration (expected number at 0); write it like \"30s\", \"5m\" or \"7d\""
                    .into()
            )
        );
        assert_eq!(
            read("90"),
            Err("`90` is not a duration: give its unit, like \"30s\", \"5m\" or \"7d\"".into())
        );
        assert_eq!(
            read("0.5"),
            Err("`0.5` is not a duration: give its unit, like \"30s\", \"5m\" or \"7d\"".into())
        );
        assert_eq!(
            read("true"),
            Err(
                "invalid type: boolean `true`, expected a duration like \"30s\", \"5m\" or \"7d\""
                    .into()
            )
        );
    }

    #[test]
    fn display_writes_what_a_config_would() {
        assert_eq!(
            ConfigDuration(Duration::from_millis(90_500)).to_string(),
            "1m 30s 500ms"
        );
    }
}
