//! Ghost user ids (pure): the localpart template, escaping into the user-id grammar, and the
//! namespace the registration claims.
//!
//! A ghost's localpart is the template with `{protocol}`, `{account}` and `{nick}` filled in
//! from the remote author (their network, their account there and their stable author id),
//! each value escaped the way the Matrix spec's appendix suggests for mapping other names:
//! `a-z 0-9 . -` stay, `_` becomes `__`, an uppercase letter `_` + its lowercase, anything else
//! `=` + the hex of its UTF-8 bytes. The mapping is injective and depends on nothing but its
//! input, so the same author always gets the same ghost. A user id over the spec's 255 bytes
//! is cut and ends in a hash of the whole localpart, which keeps it stable and distinct.

/// The longest user id the spec allows, in bytes.
const MAX_USER_ID_BYTES: usize = 255;

/// One piece of a ghost template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Protocol,
    Account,
    Nick,
}

/// A validated `ghost_template`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GhostTemplate {
    parts: Vec<Part>,
}

/// The characters a localpart may hold.
fn is_localpart_char(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/' | '+')
}

/// True for a non-empty string of localpart characters.
pub fn is_localpart(text: &str) -> bool {
    !text.is_empty() && text.chars().all(is_localpart_char)
}

/// A `ghost_template` that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{template}`: {problem}")]
pub struct TemplateError {
    /// The template as written.
    pub template: String,
    pub problem: TemplateProblem,
}

/// What is wrong with a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateProblem {
    #[error("a `{{` without its `}}`")]
    Unclosed,
    #[error("unknown placeholder `{{{0}}}` (use {{protocol}}, {{account}}, {{nick}})")]
    Placeholder(String),
    #[error("`{0}` cannot be in a Matrix localpart (lowercase a-z, 0-9 and ._=-/+)")]
    Character(char),
    #[error(
        "it must start with a fixed prefix (e.g. `_patchbay_`): the homeserver gives the bridge \
         every user id that starts with it"
    )]
    NoPrefix,
    #[error("it must contain {{nick}}, or every author would share one ghost")]
    NoNick,
}

impl GhostTemplate {
    /// Parse a template. It must start with a literal prefix (the namespace the registration
    /// claims exclusively: without one the bridge would claim every user of the server) and
    /// name `{nick}` (without it every author of a network would share one ghost).
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let error = |problem| TemplateError {
            template: text.to_owned(),
            problem,
        };
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let Some((name, tail)) = after.split_once('}') else {
                    return Err(error(TemplateProblem::Unclosed));
                };
                parts.push(match name {
                    "protocol" => Part::Protocol,
                    "account" => Part::Account,
                    "nick" => Part::Nick,
                    other => return Err(error(TemplateProblem::Placeholder(other.to_owned()))),
                });
                rest = tail;
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let literal = &rest[..end];
                if let Some(bad) = literal.chars().find(|c| !is_localpart_char(*c)) {
                    return Err(error(TemplateProblem::Character(bad)));
                }
                parts.push(Part::Literal(literal.to_owned()));
                rest = &rest[end..];
            }
        }
        if !matches!(parts.first(), Some(Part::Literal(_))) {
            return Err(error(TemplateProblem::NoPrefix));
        }
        if !parts.contains(&Part::Nick) {
            return Err(error(TemplateProblem::NoNick));
        }
        Ok(GhostTemplate { parts })
    }

    /// The fixed start of every ghost localpart.
    pub fn prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Literal(prefix)) => prefix,
            _ => "",
        }
    }

    /// True when `localpart` is in the ghosts' namespace.
    pub fn matches_localpart(&self, localpart: &str) -> bool {
        localpart.starts_with(self.prefix())
    }

    /// The ghost localpart for an author; the user id `@localpart:server_name` is at most 255
    /// bytes.
    pub fn localpart(
        &self,
        protocol: &str,
        account: &str,
        nick: &str,
        server_name: &str,
    ) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Protocol => escape_into(protocol, &mut out),
                Part::Account => escape_into(account, &mut out),
                Part::Nick => escape_into(nick, &mut out),
            }
        }
        // `@` + localpart + `:` + server name.
        let room = MAX_USER_ID_BYTES.saturating_sub(server_name.len() + 2);
        if out.len() <= room {
            return out;
        }
        let hash = format!("-{:016x}", fnv1a(out.as_bytes()));
        let keep = room.saturating_sub(hash.len()).max(self.prefix().len());
        // Escaped text is ASCII, so any byte index is a char boundary.
        out.truncate(keep);
        out.push_str(&hash);
        out
    }
}

/// Escape one value into localpart characters (injective; see the module doc).
pub fn escape_into(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            'a'..='z' | '0'..='9' | '.' | '-' => out.push(c),
            '_' => out.push_str("__"),
            'A'..='Z' => {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            }
            other => {
                let mut buf = [0u8; 4];
                for byte in other.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("={byte:02x}"));
                }
            }
        }
    }
}

/// 64-bit FNV-1a: a stable hash (unlike std's, which may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Escape text for a regex (the registration's namespaces are regexes).
pub fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn default() -> GhostTemplate {
        GhostTemplate::parse(super::super::config::DEFAULT_GHOST_TEMPLATE).expect("valid")
    }

    #[test]
    fn plain_names_stay_readable() {
        assert_eq!(
            default().localpart("irc", "libera", "alice", "example.org"),
            "_patchbay_irc_libera_alice"
        );
    }

    #[test]
    fn hostile_names_become_valid_stable_localparts() {
        let t = default();
        let cases = [
            "Alice Smith",
            "a:b@c",
            "ÜBER straße 🎉",
            "_under_",
            &"x".repeat(300),
            &"Ω".repeat(300),
        ];
        for nick in cases {
            let local = t.localpart("irc", "libera", nick, "example.org");
            assert!(is_localpart(&local), "{nick:?} -> {local}");
            assert!(
                local.len() + "example.org".len() + 2 <= MAX_USER_ID_BYTES,
                "{local}"
            );
            assert!(local.starts_with("_patchbay_irc_libera_"), "{local}");
            assert_eq!(local, t.localpart("irc", "libera", nick, "example.org"));
        }
        assert_eq!(
            t.localpart("irc", "libera", "Alice Smith", "x"),
            "_patchbay_irc_libera__alice=20_smith"
        );
        // Case and underscores do not collide.
        assert_ne!(
            t.localpart("irc", "l", "Bob", "x"),
            t.localpart("irc", "l", "_bob", "x")
        );
        // Long names that differ only at the end still differ.
        let a = format!("{}a", "x".repeat(300));
        let b = format!("{}b", "x".repeat(300));
        assert_ne!(
            t.localpart("irc", "l", &a, "x"),
            t.localpart("irc", "l", &b, "x")
        );
    }

    #[test]
    fn templates_are_checked() {
        assert!(GhostTemplate::parse("{nick}").is_err());
        assert!(GhostTemplate::parse("_pb_{protocol}").is_err());
        assert!(GhostTemplate::parse("_pb_{who}").is_err());
        assert!(GhostTemplate::parse("_PB_{nick}").is_err());
        assert!(GhostTemplate::parse("_pb_{nick").is_err());
        let t = GhostTemplate::parse("_pb_{nick}").expect("valid");
        assert_eq!(t.prefix(), "_pb_");
        assert!(t.matches_localpart("_pb_alice"));
        assert!(!t.matches_localpart("patchbay"));
    }

    #[test]
    fn regexes_are_escaped() {
        assert_eq!(regex_escape("_pb.x+"), "_pb\\.x\\+");
    }

    proptest! {
        #[test]
        fn any_author_gets_a_valid_localpart(nick in any::<String>(), account in "[a-z]{1,8}") {
            let local = default().localpart("irc", &account, &nick, "example.org");
            prop_assert!(is_localpart(&local));
            prop_assert!(local.len() + 13 <= MAX_USER_ID_BYTES);
        }
    }
}
