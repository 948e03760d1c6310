//! A route's compiled settings: which kinds pass, who is ignored, how nicks look, what is
//! rewritten, how fast a room may be fed.

use std::time::Duration;

pub use patchbay_sdk::RoomKey;
use patchbay_sdk::event::Kind;
use patchbay_sdk::room::protocol_of;
use patchbay_sdk::{Event, RichText};
use regex::Regex;

/// How a room takes part in a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Feeds the route and receives from it.
    InOut,
    /// Only feeds the route.
    In,
    /// Only receives.
    Out,
}

impl Direction {
    pub fn feeds(self) -> bool {
        matches!(self, Direction::InOut | Direction::In)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::InOut | Direction::Out)
    }
}

/// A set of event kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindSet(u16);

impl KindSet {
    /// Everything but joins, parts and nick changes: the noise people rarely want mirrored.
    pub fn default_relayed() -> Self {
        let mut set = KindSet(0);
        for name in Kind::NAMES {
            if !matches!(name, "join" | "part" | "nick") {
                set.insert(name);
            }
        }
        set
    }

    pub fn empty() -> Self {
        KindSet(0)
    }

    /// The pseudo-kind `system`: events in the network's own voice (a server's bot), relayed
    /// only by routes that name it.
    pub const SYSTEM: &'static str = "system";
    const SYSTEM_BIT: u16 = 1 << 15;

    /// Add a kind by name (or `system`); false when the name is not a kind.
    pub fn insert(&mut self, name: &str) -> bool {
        if name == Self::SYSTEM {
            self.0 |= Self::SYSTEM_BIT;
            return true;
        }
        match Kind::NAMES.iter().position(|n| *n == name) {
            Some(i) => {
                self.0 |= 1 << i;
                true
            }
            None => false,
        }
    }

    /// Whether `event` passes: its kind is in the set, and, if it is in the network's own
    /// voice, so is `system`.
    pub fn admits(&self, event: &Event) -> bool {
        (!event.author.is_system || self.0 & Self::SYSTEM_BIT != 0) && self.contains(&event.kind)
    }

    pub fn contains(&self, kind: &Kind) -> bool {
        Kind::NAMES
            .iter()
            .position(|n| *n == kind.name())
            .is_some_and(|i| self.0 & (1 << i) != 0)
    }
}

/// A nick format template such as `[{protocol}] {nick}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NickFormat(Vec<Piece>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Var(Var),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Var {
    Nick,
    Account,
    Protocol,
    Room,
    Route,
}

/// What a nick format's variables stand for.
pub struct NickVars<'a> {
    pub nick: &'a str,
    pub account: &'a str,
    pub room: &'a str,
    pub route: &'a str,
}

impl NickFormat {
    pub const VARIABLES: [&'static str; 5] = ["nick", "account", "protocol", "room", "route"];

    /// Parse a template; `{{` and `}}` stand for literal braces.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                    let var = match name.as_str() {
                        "nick" => Var::Nick,
                        "account" => Var::Account,
                        "protocol" => Var::Protocol,
                        "room" => Var::Room,
                        "route" => Var::Route,
                        other => {
                            return Err(format!(
                                "unknown variable `{{{other}}}`; the variables are {}",
                                Self::VARIABLES.map(|v| format!("{{{v}}}")).join(", ")
                            ));
                        }
                    };
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Var(var));
                }
                '}' => return Err("a lone `}`; write `}}` for a literal brace".into()),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(NickFormat(pieces))
    }

    pub fn render(&self, vars: &NickVars<'_>) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Var(Var::Nick) => out.push_str(vars.nick),
                Piece::Var(Var::Account) => out.push_str(vars.account),
                Piece::Var(Var::Protocol) => out.push_str(protocol_of(vars.account)),
                Piece::Var(Var::Room) => out.push_str(vars.room),
                Piece::Var(Var::Route) => out.push_str(vars.route),
            }
        }
        out
    }
}

impl Default for NickFormat {
    fn default() -> Self {
        NickFormat(vec![Piece::Var(Var::Nick)])
    }
}

/// At most `messages` per `per`, with bursts up to `messages`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub messages: u32,
    pub per: Duration,
}

/// The settings that apply to one room of one route.
#[derive(Clone, Debug)]
pub struct Settings {
    pub kinds: KindSet,
    pub nick_format: NickFormat,
    pub ignore_nicks: Vec<Regex>,
    pub ignore_text: Vec<Regex>,
    pub rewrite: Vec<(Regex, String)>,
    pub rate_limit: Option<RateLimit>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            kinds: KindSet::default_relayed(),
            nick_format: NickFormat::default(),
            ignore_nicks: Vec::new(),
            ignore_text: Vec::new(),
            rewrite: Vec::new(),
            rate_limit: None,
        }
    }
}

impl Settings {
    /// True when an event from this room must not be relayed by these rules.
    pub fn ignores(&self, event: &Event) -> bool {
        if self
            .ignore_nicks
            .iter()
            .any(|re| re.is_match(&event.author.name))
        {
            return true;
        }
        if self.ignore_text.is_empty() {
            return false;
        }
        let text = event
            .kind
            .body()
            .map(RichText::to_plain)
            .unwrap_or_default();
        self.ignore_text.iter().any(|re| re.is_match(&text))
    }

    /// Apply the rewrite rules to an event's text.
    pub fn rewrite(&self, event: &mut Event) {
        if self.rewrite.is_empty() {
            return;
        }
        if let Some(body) = event.kind.body_mut() {
            body.map_text(&mut |text| {
                let mut text = text.to_owned();
                for (re, replacement) in &self.rewrite {
                    text = re.replace_all(&text, replacement.as_str()).into_owned();
                }
                text
            });
        }
    }
}

/// A named set of rooms with directions.
#[derive(Clone, Debug)]
pub struct Route {
    pub name: String,
    pub members: Vec<(RoomKey, Direction)>,
    /// The settings of each member room: the route's, overridden by the room's own table.
    pub settings: Vec<Settings>,
}

impl Route {
    pub fn settings_for(&self, room: &RoomKey) -> Option<&Settings> {
        self.members
            .iter()
            .position(|(key, _)| key == room)
            .and_then(|i| self.settings.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nick_formats_render_their_variables() {
        let format = NickFormat::parse("[{protocol}/{room}] {nick} {{x}}").expect("valid");
        let vars = NickVars {
            nick: "alice",
            account: "irc.libera",
            room: "#rust",
            route: "r",
        };
        assert_eq!(format.render(&vars), "[irc/#rust] alice {x}");
    }

    #[test]
    fn nick_formats_reject_unknown_variables() {
        let err = NickFormat::parse("{name}").expect_err("unknown");
        assert!(err.contains("unknown variable `{name}`"), "{err}");
        assert!(NickFormat::parse("a}b").is_err());
    }

    #[test]
    fn default_kinds_leave_out_joins_and_parts() {
        let set = KindSet::default_relayed();
        assert!(!set.contains(&Kind::Join));
        assert!(!set.contains(&Kind::Part { reason: None }));
        assert!(set.contains(&Kind::Topic {
            topic: String::new()
        }));
    }

    #[test]
    fn room_keys_split_at_the_first_slash() {
        let key = RoomKey::parse("webhook.ci/builds/main").expect("valid");
        assert_eq!(key.account, "webhook.ci");
        assert_eq!(key.room, "builds/main");
        assert_eq!(key.protocol(), "webhook");
        assert!(RoomKey::parse("nope").is_none());
        assert!(RoomKey::parse("/x").is_none());
    }
}
