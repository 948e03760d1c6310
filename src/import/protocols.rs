//! Each protocol's matterbridge keys → the patchbay connector's keys (see each connector's
//! `config.rs`). Keys not read here are reported by the caller as not carried over.

use std::net::SocketAddr;

use super::accounts::{Planned, RoomStyle, account_name, routing};
use super::emit::Val;
use super::report::Findings;
use super::source::{AccountView, MbAccount, Section};

/// What one protocol's planner reads: the account's keys, its matterbridge id (`irc.libera`,
/// where findings about the account as a whole go) and its matterbridge protocol.
struct Account<'a> {
    view: &'a AccountView<'a>,
    id: &'a str,
    protocol: &'a str,
}

/// One protocol's planner: fills the planned account's keys from the matterbridge ones, or
/// reports why the account is left out (`None`). One signature for all, so that [`plan`]
/// names each protocol's connector, room style and planner in one row.
type Fill = fn(&Account<'_>, &mut Planned, &mut Findings) -> Option<()>;

/// Plan one account, or report why it is left out.
pub fn plan(
    account: &MbAccount,
    general: &Section,
    taken: &[String],
    findings: &mut Findings,
) -> Option<Planned> {
    let view = AccountView {
        own: &account.section,
        general,
    };
    let id = account.id();
    let protocol = account.protocol.as_str();
    let (kind, style, fill): (_, _, Fill) = match protocol {
        "irc" => ("irc", RoomStyle::IrcChannels, irc),
        "matrix" => ("matrix", RoomStyle::MatrixRooms, matrix),
        "sshchat" => ("sshchat", RoomStyle::SshChat, sshchat),
        "api" => ("api", RoomStyle::Api, api),
        "slack" | "discord" | "mattermost" => ("webhook", RoomStyle::Webhook, webhook),
        other => {
            findings.skip(&id, super::unsupported::protocol_reason(other));
            return None;
        }
    };
    let pb = account_name(kind, protocol, &account.name, taken);
    let mut planned = Planned::new(&id, pb, kind, style);
    let source = Account {
        view: &view,
        id: &id,
        protocol,
    };
    fill(&source, &mut planned, findings)?;
    planned.routing = routing(&view, findings);
    Some(planned)
}

fn irc(account: &Account<'_>, p: &mut Planned, findings: &mut Findings) -> Option<()> {
    let Account { view, id, .. } = *account;
    p.required = &["server", "nick"];
    let (Some((server, server_key)), Some((nick, nick_key))) =
        (view.text("Server", findings), view.text("Nick", findings))
    else {
        findings.skip(
            id,
            "an IRC account needs `Server` and `Nick`; it is left out",
        );
        return None;
    };
    let (host, port) = split_host_port(&server);
    p.set("server", Val::str(host), &server_key);
    if let Some(port) = port {
        p.set("port", Val::Int(port.into()), &server_key);
    }
    if let (true, Some(from)) = view.flag("UseTLS", findings) {
        p.set("tls", Val::Bool(true), &from);
    }
    p.set("nick", Val::str(nick), &nick_key);
    if let Some((v, from)) = view.text("UserName", findings) {
        p.set("username", Val::str(v), &from);
    }
    if let Some((v, from)) = view.text("RealName", findings) {
        p.set("realname", Val::str(v), &from);
    }
    if let Some((v, from)) = view.text("Password", findings) {
        p.set("password", Val::str(v), &from);
    }
    let mut on_connect = Vec::new();
    let mut on_connect_from = String::new();
    let ns_nick = view.text("NickServNick", findings);
    let ns_password = view.text("NickServPassword", findings);
    let (sasl, sasl_key) = view.flag("UseSASL", findings);
    match (ns_nick, ns_password) {
        (Some((user, _)), Some((password, from))) if sasl => {
            let sasl = Val::Inline(vec![
                ("mechanism".into(), Val::str("plain")),
                ("username".into(), Val::str(user)),
                ("password".into(), Val::str(password)),
            ]);
            p.set("sasl", sasl, sasl_key.as_deref().unwrap_or(&from));
        }
        (Some((user, _)), Some((password, from))) if user.eq_ignore_ascii_case("nickserv") => {
            p.set("nickserv_password", Val::str(password), &from);
        }
        (Some((user, from)), Some((password, _)))
            if user.eq_ignore_ascii_case("Q@CServe.quakenet.org") =>
        {
            let account = view
                .text("NickServUsername", findings)
                .map(|(u, _)| u)
                .unwrap_or_default();
            on_connect.push(format!("PRIVMSG {user} :AUTH {account} {password}"));
            on_connect_from = from;
        }
        (Some((user, from)), Some((password, _))) => {
            on_connect.push(format!("PRIVMSG {user} :IDENTIFY {password}"));
            on_connect_from = from;
        }
        _ => {
            if let (true, Some(from)) = (sasl, sasl_key) {
                findings.skip(
                    &from,
                    "SASL needs `NickServNick` (the account) and `NickServPassword`; without both it is left off",
                );
            }
        }
    }
    if let Some((commands, from)) = view.strings("RunCommands", findings) {
        on_connect.extend(commands.iter().map(|c| c.replace("{BOTNICK}", "$nick")));
        on_connect_from = from;
    }
    if !on_connect.is_empty() {
        p.set("on_connect", Val::strs(on_connect), &on_connect_from);
    }
    if let Some((charset, from)) = view.text("Charset", findings)
        && !matches!(charset.to_ascii_lowercase().as_str(), "utf-8" | "utf8")
    {
        p.set("charset", Val::str(charset), &from);
    }
    // 0 is matterbridge's "unset" (its default, 1300 ms): patchbay's own pacing applies then.
    if let Some((delay, from)) = view.int("MessageDelay", findings)
        && delay > 0
    {
        // matterbridge sends one line every `delay` ms: a bucket of one refilled at that rate.
        let rate = (1000.0 / delay as f64 * 1000.0).round() / 1000.0;
        p.set("flood_burst", Val::Int(1), &from);
        p.set("flood_rate", Val::Float(rate.max(0.001)), &from);
    }
    if let Some((delay, from)) = view.int("RejoinDelay", findings) {
        p.set(
            "rejoin_delay",
            Val::Str(format!("{}s", delay.max(0))),
            &from,
        );
    }
    if let (true, Some(from)) = view.flag("ColorNicks", findings) {
        p.set("nick_colors", Val::Bool(true), &from);
    }
    if let Some((delay, from)) = view.text("PingDelay", findings) {
        match humantime::parse_duration(&delay) {
            Ok(d) => p.set(
                "ping_interval",
                Val::Str(humantime::format_duration(d).to_string()),
                &from,
            ),
            Err(err) => findings.skip(&from, format!("`{delay}` is not a duration: {err}")),
        }
    }
    if let (true, Some(from)) = view.flag("StripMarkdown", findings) {
        p.set("formatting", Val::str("strip"), &from);
        findings.change(
            &from,
            "became `formatting = \"strip\"`: patchbay sends plain text to IRC, without Markdown and without mIRC formatting",
        );
    }
    Some(())
}

/// `host:port`, `[v6]:port` or a bare host.
fn split_host_port(server: &str) -> (String, Option<u16>) {
    if let Some((host, port)) = server.rsplit_once(':')
        && let Ok(port) = port.parse::<u16>()
        && (!host.contains(':') || host.starts_with('['))
    {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        return (host.to_owned(), Some(port));
    }
    (server.to_owned(), None)
}

fn matrix(account: &Account<'_>, p: &mut Planned, findings: &mut Findings) -> Option<()> {
    let Account { view, id, .. } = *account;
    p.required = &["homeserver", "user", "password", "access_token"];
    let Some((server, server_key)) = view.text("Server", findings) else {
        findings.skip(id, "a Matrix account needs `Server`; it is left out");
        return None;
    };
    if !(server.starts_with("https://") || server.starts_with("http://")) {
        findings.skip(
            &server_key,
            format!("`{server}` is not an http(s) URL; the account is left out"),
        );
        return None;
    }
    let mxid = view.text("MxID", findings);
    let login = view.text("Login", findings);
    let user = match (&mxid, &login) {
        (Some((mxid, from)), _) => Some((mxid.clone(), from.clone())),
        (None, Some((login, from))) if login.starts_with('@') && login.contains(':') => {
            Some((login.clone(), from.clone()))
        }
        (None, Some((login, from))) => {
            let host = server
                .split_once("://")
                .map_or(server.as_str(), |(_, rest)| rest)
                .split(['/', ':'])
                .next()
                .unwrap_or_default()
                .to_owned();
            let user = format!("@{login}:{host}");
            findings.change(
                from,
                format!("patchbay needs the bot's full user id; `{user}` was made from `Server`: check it names your homeserver's domain"),
            );
            Some((user, from.clone()))
        }
        (None, None) => None,
    };
    let Some((user, user_key)) = user else {
        findings.skip(
            id,
            "a Matrix account needs `MxID` or `Login`; it is left out",
        );
        return None;
    };
    if !(user.starts_with('@') && user.contains(':') && !user.contains(char::is_whitespace)) {
        findings.skip(
            &user_key,
            format!(
                "`{user}` is not a full Matrix user id (@name:server); the account is left out"
            ),
        );
        return None;
    }
    p.set("homeserver", Val::str(server), &server_key);
    p.set("user", Val::str(user), &user_key);
    let token = view.text("Token", findings);
    let password = view.text("Password", findings);
    match (token, password) {
        (Some((token, from)), password) if mxid.is_some() || password.is_none() => {
            p.set("access_token", Val::str(token), &from);
            if let Some((_, pw_key)) = password {
                findings.skip(
                    &pw_key,
                    "patchbay logs in with either a token or a password; the token was kept, as matterbridge uses it first",
                );
            }
        }
        (token, Some((password, from))) => {
            p.set("password", Val::str(password), &from);
            if let Some((_, token_key)) = token {
                findings.skip(
                    &token_key,
                    "patchbay logs in with either a token or a password; without `MxID` matterbridge logs in with the password, so that was kept",
                );
            }
        }
        _ => {
            findings.skip(
                id,
                "a Matrix account needs `Password` or `Token`; it is left out",
            );
            return None;
        }
    }
    Some(())
}

fn sshchat(account: &Account<'_>, p: &mut Planned, findings: &mut Findings) -> Option<()> {
    let Account { view, id, .. } = *account;
    p.required = &["server", "nick", "dialect"];
    let (Some((server, server_key)), Some((nick, nick_key))) =
        (view.text("Server", findings), view.text("Nick", findings))
    else {
        findings.skip(
            id,
            "an sshchat account needs `Server` and `Nick`; it is left out",
        );
        return None;
    };
    p.set("server", Val::str(server), &server_key);
    p.set("dialect", Val::str("ssh-chat"), id);
    p.set("nick", Val::str(nick), &nick_key);
    Some(())
}

fn api(account: &Account<'_>, p: &mut Planned, findings: &mut Findings) -> Option<()> {
    let Account { view, id, .. } = *account;
    p.required = &["token"];
    let Some((token, token_key)) = view.text("Token", findings) else {
        findings.skip(
            id,
            "patchbay's API needs a `Token` (matterbridge's API without one is open to anyone); the account is left out",
        );
        return None;
    };
    p.set("token", Val::str(token), &token_key);
    if let Some((address, from)) = view.text("BindAddress", findings) {
        match parse_listen(&address) {
            Some(addr) => p.listen = Some((addr, from)),
            None => findings.skip(
                &from,
                format!("`{address}` is not an IP address and port; set `[http] listen` yourself"),
            ),
        }
    }
    Some(())
}

/// `127.0.0.1:4242`, `:4242` (every address) or `localhost:4242`.
fn parse_listen(address: &str) -> Option<SocketAddr> {
    if let Ok(addr) = address.parse() {
        return Some(addr);
    }
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    match host {
        "" => Some(SocketAddr::from(([0, 0, 0, 0], port))),
        "localhost" => Some(SocketAddr::from(([127, 0, 0, 1], port))),
        _ => None,
    }
}

fn webhook(account: &Account<'_>, p: &mut Planned, findings: &mut Findings) -> Option<()> {
    let Account { view, id, protocol } = *account;
    p.required = &["payload"];
    p.feeds = false;
    let title = match protocol {
        "slack" => "Slack",
        "discord" => "Discord",
        _ => "Mattermost",
    };
    for key in ["Token", "Login", "Password", "Server", "Team"] {
        if let Some((_, from)) = view.text(key, findings) {
            findings.skip(
                &from,
                format!("patchbay has no {title} API connector; only the outgoing webhook (`WebhookURL`) is carried over, so its channels only receive"),
            );
        }
    }
    if let Some((_, from)) = view.text("WebhookBindAddress", findings) {
        findings.skip(&from, super::unsupported::reason("WebhookBindAddress"));
    }
    if let Some((url, from)) = view.text("WebhookURL", findings) {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            findings.skip(&from, format!("`{url}` is not an http(s) URL"));
        } else {
            p.set("url", Val::str(url), &from);
        }
    }
    p.set("payload", Val::str(protocol), id);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_and_listeners_are_split_as_matterbridge_writes_them() {
        assert_eq!(
            split_host_port("irc.example:6697"),
            ("irc.example".into(), Some(6697))
        );
        assert_eq!(split_host_port("[::1]:6667"), ("::1".into(), Some(6667)));
        assert_eq!(split_host_port("irc.example"), ("irc.example".into(), None));
        assert_eq!(split_host_port("::1"), ("::1".into(), None));
        assert_eq!(
            parse_listen(":4242"),
            Some(SocketAddr::from(([0, 0, 0, 0], 4242)))
        );
        assert_eq!(
            parse_listen("localhost:1"),
            Some(SocketAddr::from(([127, 0, 0, 1], 1)))
        );
        assert_eq!(parse_listen("[::1]:80"), "[::1]:80".parse().ok());
        assert_eq!(parse_listen("example.org:80"), None);
    }
}
