//! Registration: capability negotiation, SASL, and finding a free nick (pure state machine).
//!
//! The session feeds every line before `001` to [`Registration::handle`] as a command and its
//! parameters, and sends what it returns. The `irc` crate leaves the SASL exchange to its
//! users; it is done here: `CAP LS 302` → `CAP REQ` (the IRCv3 capabilities we use that the
//! server offers, plus `sasl` when configured) → `AUTHENTICATE PLAIN|EXTERNAL` with a base64
//! payload in 400-byte chunks → `903` → `CAP END`. A SASL failure is fatal: retrying with the
//! same credentials would only hammer services.

use std::collections::HashSet;

use base64::Engine;

use crate::config::{IrcConfig, Sasl};
use crate::numeric::Numeric;

/// The capabilities a bridge asks for when offered. `draft/event-playback` makes a history
/// replay carry joins, parts and quits as themselves instead of as HistServ messages;
/// `labeled-response` lets a delivery find its echo by label, whatever the server did to the
/// text.
pub const WANTED_CAPS: [&str; 12] = [
    "server-time",
    "message-tags",
    "echo-message",
    "batch",
    "account-tag",
    "extended-join",
    "multi-prefix",
    "draft/chathistory",
    "chathistory",
    "cap-notify",
    "draft/event-playback",
    "labeled-response",
];

/// What to do after a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Nothing,
    Send(Vec<String>),
    /// `001`: registered under this nick.
    Registered {
        nick: String,
    },
    /// Retrying cannot help.
    Fatal(String),
}

#[derive(Debug)]
pub struct Registration {
    nicks: Vec<String>,
    next_nick: usize,
    username: String,
    realname: String,
    password: Option<String>,
    sasl: Option<Sasl>,
    nickserv_password: Option<String>,
    offered: HashSet<String>,
    enabled: HashSet<String>,
    sasl_done: bool,
    sasl_started: bool,
    cap_ended: bool,
}

impl Registration {
    pub fn new(cfg: &IrcConfig) -> Self {
        Registration {
            nicks: cfg.nick_candidates(),
            next_nick: 1,
            username: cfg.username.clone(),
            realname: cfg.realname.clone(),
            password: cfg.password.clone(),
            sasl: cfg.sasl.clone(),
            nickserv_password: cfg.nickserv_password.clone(),
            offered: HashSet::new(),
            enabled: HashSet::new(),
            sasl_done: false,
            sasl_started: false,
            cap_ended: false,
        }
    }

    /// The first lines to send.
    pub fn start(&self) -> Vec<String> {
        let mut out = vec!["CAP LS 302".to_owned()];
        if let Some(p) = &self.password {
            out.push(format!("PASS :{p}"));
        }
        out.push(format!("NICK {}", self.nicks[0]));
        out.push(format!("USER {} 0 * :{}", self.username, self.realname));
        out
    }

    pub fn enabled_caps(&self) -> &HashSet<String> {
        &self.enabled
    }

    /// The password to identify to NickServ with after registering: the configured one, or the
    /// SASL PLAIN password when the server offered no SASL.
    pub fn nickserv_password(&self) -> Option<String> {
        if self.sasl_done {
            return None;
        }
        if let Some(p) = &self.nickserv_password {
            return Some(p.clone());
        }
        match &self.sasl {
            Some(Sasl::Plain { password, .. }) => Some(password.clone()),
            _ => None,
        }
    }

    fn end_caps(&mut self) -> Vec<String> {
        if self.cap_ended {
            return Vec::new();
        }
        self.cap_ended = true;
        vec!["CAP END".to_owned()]
    }

    fn sasl_payload(&self) -> Vec<String> {
        let raw = match &self.sasl {
            Some(Sasl::Plain { username, password }) => {
                format!("{username}\0{username}\0{password}")
            }
            _ => return vec!["AUTHENTICATE +".to_owned()],
        };
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
        let mut out: Vec<String> = encoded
            .as_bytes()
            .chunks(400)
            .map(|c| format!("AUTHENTICATE {}", String::from_utf8_lossy(c)))
            .collect();
        if encoded.len() % 400 == 0 {
            out.push("AUTHENTICATE +".to_owned());
        }
        out
    }

    /// Handle a line before registration completes.
    pub fn handle(&mut self, command: &str, params: &[String]) -> Step {
        match command {
            "CAP" => return self.handle_cap(params),
            "AUTHENTICATE" if params.first().map(String::as_str) == Some("+") => {
                return Step::Send(self.sasl_payload());
            }
            _ => {}
        }
        let Some(numeric) = Numeric::of(command) else {
            return Step::Nothing;
        };
        let last = || params.last().map_or("", String::as_str);
        match numeric {
            Numeric::SaslSuccess | Numeric::SaslAlready => {
                self.sasl_done = true;
                Step::Send(self.end_caps())
            }
            // Logged in comes before the success; the mechanisms list needs no answer.
            Numeric::LoggedIn | Numeric::SaslMechs => Step::Nothing,
            Numeric::NickLocked
            | Numeric::SaslFail
            | Numeric::SaslTooLong
            | Numeric::SaslAborted => Step::Fatal(format!(
                "SASL authentication failed ({command}): {}",
                last()
            )),
            Numeric::PasswdMismatch => Step::Fatal(format!(
                "the server rejected the connection password: {}",
                last()
            )),
            // Nick in use / erroneous / unavailable: try the next candidate.
            Numeric::ErroneousNickname
            | Numeric::NicknameInUse
            | Numeric::NickCollision
            | Numeric::UnavailResource => {
                let nick = match self.nicks.get(self.next_nick) {
                    Some(n) => n.clone(),
                    None => {
                        let base: String = self.nicks[0].chars().take(12).collect();
                        format!("{base}{}", rand::random_range(100..1000))
                    }
                };
                self.next_nick += 1;
                Step::Send(vec![format!("NICK {nick}")])
            }
            Numeric::Welcome => Step::Registered {
                nick: params
                    .first()
                    .cloned()
                    .unwrap_or_else(|| self.nicks[0].clone()),
            },
            _ => Step::Nothing,
        }
    }

    /// Lines after registration that still concern it (capabilities offered later).
    pub fn handle_late(&mut self, command: &str, params: &[String]) -> Step {
        if command == "CAP" {
            let sub = params
                .get(1)
                .map(|s| s.to_ascii_uppercase())
                .unwrap_or_default();
            match sub.as_str() {
                "ACK" => self.ack(params),
                "DEL" => {
                    for cap in params.last().map_or("", String::as_str).split(' ') {
                        self.enabled.remove(cap);
                    }
                }
                _ => {}
            }
        }
        Step::Nothing
    }

    fn ack(&mut self, params: &[String]) {
        for cap in params.last().map_or("", String::as_str).split(' ') {
            if let Some(off) = cap.strip_prefix('-') {
                self.enabled.remove(off);
            } else if !cap.is_empty() {
                self.enabled.insert(cap.to_owned());
            }
        }
    }

    fn handle_cap(&mut self, params: &[String]) -> Step {
        let sub = params
            .get(1)
            .map(|s| s.to_ascii_uppercase())
            .unwrap_or_default();
        match sub.as_str() {
            "LS" => {
                let list = params.last().map_or("", String::as_str);
                for cap in list.split(' ').filter(|c| !c.is_empty()) {
                    let name = cap.split('=').next().unwrap_or(cap);
                    self.offered.insert(name.to_owned());
                }
                // `CAP * LS * :...` means more lines follow.
                if params.len() >= 4 && params[2] == "*" {
                    return Step::Nothing;
                }
                let mut wanted: Vec<&str> = WANTED_CAPS
                    .iter()
                    .copied()
                    .filter(|c| self.offered.contains(*c))
                    .collect();
                if self.sasl.is_some() && self.offered.contains("sasl") {
                    wanted.push("sasl");
                }
                if wanted.is_empty() {
                    Step::Send(self.end_caps())
                } else {
                    Step::Send(vec![format!("CAP REQ :{}", wanted.join(" "))])
                }
            }
            "ACK" => {
                self.ack(params);
                if self.sasl.is_some() && self.enabled.contains("sasl") && !self.sasl_started {
                    self.sasl_started = true;
                    let mechanism = match self.sasl {
                        Some(Sasl::External) => "EXTERNAL",
                        _ => "PLAIN",
                    };
                    Step::Send(vec![format!("AUTHENTICATE {mechanism}")])
                } else if self.sasl_started {
                    Step::Nothing
                } else {
                    Step::Send(self.end_caps())
                }
            }
            "NAK" => Step::Send(self.end_caps()),
            _ => Step::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> IrcConfig {
        let table = format!("server = \"s\"\nnick = \"pb\"\n{extra}");
        crate::config::from_test_table(&table).expect("config")
    }

    fn p(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn sasl_plain_exchange() {
        let mut reg = Registration::new(&cfg(
            "[sasl]\nmechanism = \"plain\"\nusername = \"acct\"\npassword = \"secret\"",
        ));
        assert_eq!(reg.start()[0], "CAP LS 302");
        assert_eq!(
            reg.handle("CAP", &p(&["*", "LS", "*", "sasl=PLAIN server-time"])),
            Step::Nothing
        );
        assert_eq!(
            reg.handle("CAP", &p(&["*", "LS", "echo-message batch"])),
            Step::Send(vec!["CAP REQ :server-time echo-message batch sasl".into()])
        );
        assert_eq!(
            reg.handle(
                "CAP",
                &p(&["*", "ACK", "server-time echo-message batch sasl"])
            ),
            Step::Send(vec!["AUTHENTICATE PLAIN".into()])
        );
        let expected = base64::engine::general_purpose::STANDARD.encode("acct\0acct\0secret");
        assert_eq!(
            reg.handle("AUTHENTICATE", &p(&["+"])),
            Step::Send(vec![format!("AUTHENTICATE {expected}")])
        );
        assert_eq!(
            reg.handle("900", &p(&["pb", "pb!pb@h", "acct", "logged in"])),
            Step::Nothing
        );
        assert_eq!(
            reg.handle("903", &p(&["pb", "ok"])),
            Step::Send(vec!["CAP END".into()])
        );
        assert_eq!(reg.nickserv_password(), None);
        assert!(reg.enabled_caps().contains("echo-message"));
    }

    #[test]
    fn sasl_failure_is_fatal_with_a_clear_reason() {
        let mut reg = Registration::new(&cfg("[sasl]\nmechanism = \"plain\"\npassword = \"bad\""));
        let step = reg.handle("904", &p(&["pb", "SASL authentication failed"]));
        assert!(matches!(step, Step::Fatal(ref r) if r.contains("SASL authentication failed")));
    }

    #[test]
    fn no_sasl_offered_falls_back_to_nickserv() {
        let mut reg = Registration::new(&cfg("[sasl]\nmechanism = \"plain\"\npassword = \"pw\""));
        assert_eq!(
            reg.handle("CAP", &p(&["*", "LS", "multi-prefix"])),
            Step::Send(vec!["CAP REQ :multi-prefix".into()])
        );
        assert_eq!(
            reg.handle("CAP", &p(&["*", "ACK", "multi-prefix"])),
            Step::Send(vec!["CAP END".into()])
        );
        assert_eq!(reg.nickserv_password().as_deref(), Some("pw"));
    }

    #[test]
    fn nick_in_use_walks_the_candidates() {
        let mut reg = Registration::new(&cfg("alt_nicks = [\"pb2\"]"));
        assert_eq!(
            reg.handle("433", &p(&["*", "pb", "in use"])),
            Step::Send(vec!["NICK pb2".into()])
        );
        let Step::Send(lines) = reg.handle("433", &p(&["*", "pb2", "in use"])) else {
            panic!("expected a NICK");
        };
        assert!(lines[0].starts_with("NICK pb") && lines[0].len() == "NICK pb".len() + 3);
        assert_eq!(
            reg.handle("001", &p(&["pb123", "Welcome"])),
            Step::Registered {
                nick: "pb123".into()
            }
        );
    }

    #[test]
    fn long_sasl_payloads_are_chunked() {
        let long = "x".repeat(600);
        let mut reg = Registration::new(&cfg(&format!(
            "[sasl]\nmechanism = \"plain\"\nusername = \"u\"\npassword = \"{long}\""
        )));
        let Step::Send(lines) = reg.handle("AUTHENTICATE", &p(&["+"])) else {
            panic!("expected payload");
        };
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.len() <= "AUTHENTICATE ".len() + 400));
    }
}
