//! `[[gateway]]` → `[[route]]`, with each room's settings.
//!
//! matterbridge and patchbay attach settings to different ends of a relay: matterbridge's
//! `IgnoreNicks`, `IgnoreMessages` and `ReplaceMessages` belong to the sending account, its
//! `RemoteNickFormat` and `ShowJoinPart` to the receiving one. patchbay's ignore rules belong
//! to the room events come from (the same end), its nick format, kinds and rewrite rules to
//! the room deliveries go to. So ignores and nick formats carry over exactly, and a rewrite
//! carries over when every room sending into a destination rewrites the same way (always so
//! with two rooms); otherwise it is reported. A setting every room of a route shares is written
//! once on the route, else on each room.

use super::accounts::{Planned, RoomStyle, Rules};
use super::emit::{TableOut, Val, key};
use super::nick::{NickContext, translate};
use super::report::Findings;
use super::source::{Dir, MbFile, MbGateway, drop_read};
use crate::connectors::Registry;
use crate::router::RoomKey;

/// One room of a gateway, admitted into its account.
#[derive(Debug)]
struct Member {
    /// Index into the planned accounts.
    account: usize,
    room: String,
    dir: Dir,
    path: String,
}

/// A gateway whose rooms were admitted, waiting for the accounts' final check.
#[derive(Debug)]
pub struct Pending {
    name: String,
    path: String,
    members: Vec<Member>,
}

/// Admit every enabled gateway's rooms into their accounts (IRC channels to join, Matrix rooms,
/// webhook URLs). Routes are made by [`routes`] once the accounts are checked.
pub fn admit(
    file: &MbFile,
    accounts: &mut [Planned],
    registry: &Registry,
    findings: &mut Findings,
) -> Vec<Pending> {
    let mut pending = Vec::new();
    for gateway in &file.gateways {
        if !gateway.enable {
            findings.skip(
                &gateway.path,
                "`enable` is not true, so matterbridge does not run this gateway either; left out",
            );
            drop_gateway(gateway);
            continue;
        }
        let mut members = Vec::new();
        for member in &gateway.members {
            let Some(index) = accounts
                .iter()
                .position(|a| a.mb_id.eq_ignore_ascii_case(&member.account))
            else {
                let reason = if file.account(&member.account).is_some() {
                    format!("account `{}` is left out (see above)", member.account)
                } else {
                    format!("no account `{}` in the file", member.account)
                };
                findings.skip(&member.path, reason);
                drop_read(&member.options);
                continue;
            };
            let account = &mut accounts[index];
            account.used = true;
            let Some(room) = admit_room(account, member, registry, findings) else {
                continue;
            };
            let mut dir = member.dir;
            if !account.feeds {
                match dir {
                    Dir::In => {
                        findings.skip(
                            &member.path,
                            format!("`{}` only receives in patchbay (an outgoing webhook), so it cannot feed the gateway", member.account),
                        );
                        continue;
                    }
                    Dir::InOut => {
                        findings.change(
                            &member.path,
                            format!("`{}` only receives in patchbay (an outgoing webhook): the room is `out`, not `inout`", member.account),
                        );
                        dir = Dir::Out;
                    }
                    Dir::Out => {}
                }
            }
            members.push(Member {
                account: index,
                room,
                dir,
                path: member.path.clone(),
            });
        }
        pending.push(Pending {
            name: gateway.name.clone(),
            path: gateway.path.clone(),
            members,
        });
    }
    pending
}

fn drop_gateway(gateway: &MbGateway) {
    drop_read(&gateway.section);
    for member in &gateway.members {
        drop_read(&member.section);
        drop_read(&member.options);
    }
}

/// The room a gateway entry names, as the account's patchbay connector names it.
fn admit_room(
    account: &mut Planned,
    member: &super::source::MbMember,
    registry: &Registry,
    findings: &mut Findings,
) -> Option<String> {
    let channel = member.channel.trim();
    let room = match account.style {
        RoomStyle::SshChat => "#main".to_owned(),
        RoomStyle::Api | RoomStyle::Webhook => {
            let room: String = channel
                .chars()
                .map(|c| if matches!(c, '/' | '?' | '#') { '-' } else { c })
                .collect();
            let room = room.trim_matches('-').to_owned();
            if room != channel && !room.is_empty() {
                findings.change(
                    &member.path,
                    format!("channel `{channel}` is the room `{room}` in patchbay (a URL segment)"),
                );
            }
            room
        }
        RoomStyle::IrcChannels | RoomStyle::MatrixRooms => channel.to_owned(),
    };
    let checked = match registry.get(account.protocol) {
        Some(factory) => factory.check_room(&room),
        None => matrix_room(&room),
    };
    if let Err(message) = checked {
        findings.skip(
            &member.path,
            format!("not a room patchbay can use: {message}"),
        );
        return None;
    }
    let option = match account.style {
        RoomStyle::IrcChannels => member
            .options
            .get("key")
            .and_then(|f| f.value.as_str().map(str::to_owned))
            .filter(|k| !k.is_empty()),
        RoomStyle::Webhook => {
            let own = member
                .options
                .get("WebhookURL")
                .and_then(|f| f.value.as_str().map(str::to_owned))
                .filter(|u| !u.is_empty());
            if let Some(url) = &own
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                findings.skip(
                    &format!("{}.WebhookURL", member.options.path),
                    format!("`{url}` is not an http(s) URL"),
                );
                return None;
            }
            if own.is_none() && !account.keys.iter().any(|(k, _)| k == "url") {
                findings.skip(
                    &member.path,
                    "no `WebhookURL` for this channel (neither the account's nor the entry's options): patchbay cannot send to it",
                );
                return None;
            }
            own
        }
        _ => None,
    };
    account.add_room(&room, option);
    Some(room)
}

/// The Matrix room grammar, for builds without the Matrix connector.
fn matrix_room(room: &str) -> Result<(), String> {
    if room.len() > 1 && room.starts_with(['#', '!']) && !room.contains(char::is_whitespace) {
        Ok(())
    } else {
        Err(format!(
            "`{room}` is not a Matrix room id (!x) or alias (#x:server)"
        ))
    }
}

/// The `[[route]]` tables (each followed by its `[route.room."…"]` tables).
/// Rooms no route uses are taken out of their accounts again, and an account left without
/// rooms is dropped.
pub fn routes(
    pending: Vec<Pending>,
    accounts: &mut [Planned],
    findings: &mut Findings,
) -> Vec<Vec<TableOut>> {
    let mut used: Vec<(usize, String)> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (i, gateway) in pending.into_iter().enumerate() {
        let mut members: Vec<Member> = Vec::new();
        for member in gateway.members {
            if !accounts[member.account].alive {
                findings.skip(
                    &member.path,
                    format!(
                        "account `{}` is left out (see above)",
                        accounts[member.account].mb_id
                    ),
                );
                continue;
            }
            match members
                .iter_mut()
                .find(|m| m.account == member.account && m.room == member.room)
            {
                Some(existing) if existing.dir != member.dir => existing.dir = Dir::InOut,
                Some(_) => {}
                None => members.push(member),
            }
        }
        let relays = members.iter().any(|f| {
            feeds(f.dir)
                && members
                    .iter()
                    .any(|r| receives(r.dir) && (r.account, &r.room) != (f.account, &f.room))
        });
        if !relays {
            findings.skip(
                &gateway.path,
                "fewer than two rooms patchbay can relay between are left (one that sends and another that receives); the gateway is left out",
            );
            continue;
        }
        let mut name = if gateway.name.trim().is_empty() {
            format!("gateway{}", i + 1)
        } else {
            gateway.name.trim().to_owned()
        };
        if names.contains(&name) {
            let base = name.clone();
            let mut n = 2;
            while names.contains(&name) {
                name = format!("{base}-{n}");
                n += 1;
            }
            findings.change(
                &gateway.path,
                format!("another gateway has this name; the route is `{name}`"),
            );
        }
        names.push(name.clone());
        used.extend(members.iter().map(|m| (m.account, m.room.clone())));
        out.push(route(&name, &members, accounts, findings));
    }
    for (i, account) in accounts.iter_mut().enumerate() {
        account
            .rooms
            .retain(|(room, _)| used.iter().any(|(a, r)| *a == i && r == room));
        if account.alive && account.rooms.is_empty() {
            findings.skip(
                &account.mb_id,
                "none of its gateways could be carried over (see them); left out",
            );
            account.alive = false;
        }
    }
    out
}

fn feeds(dir: Dir) -> bool {
    matches!(dir, Dir::In | Dir::InOut)
}

fn receives(dir: Dir) -> bool {
    matches!(dir, Dir::Out | Dir::InOut)
}

/// One room's settings as computed, before they are put on the route or the room.
#[derive(Default)]
struct RoomSettings {
    ignore_nicks: Option<Vec<String>>,
    ignore_text: Option<Vec<String>>,
    nick_format: Option<String>,
    kinds: Option<Vec<String>>,
    rewrite: Option<Vec<(String, String)>>,
}

fn route(
    name: &str,
    members: &[Member],
    accounts: &[Planned],
    findings: &mut Findings,
) -> Vec<TableOut> {
    let key_of = |m: &Member| RoomKey::new(&accounts[m.account].pb, &m.room).to_string();
    let mut table = TableOut::new("route");
    table.array = true;
    table.set("name", Val::str(name));
    for (list, dir) in [("inout", Dir::InOut), ("in", Dir::In), ("out", Dir::Out)] {
        let rooms: Vec<String> = members
            .iter()
            .filter(|m| m.dir == dir)
            .map(key_of)
            .collect();
        if !rooms.is_empty() {
            table.set(list, Val::strs(rooms));
        }
    }

    let mut settings: Vec<RoomSettings> = Vec::new();
    for member in members {
        let account = &accounts[member.account];
        let mut s = RoomSettings::default();
        if feeds(member.dir) {
            s.ignore_nicks = Some(account.routing.ignore_nicks.clone());
            s.ignore_text = Some(account.routing.ignore_text.clone());
        }
        if receives(member.dir) {
            let senders: Vec<&Member> = members
                .iter()
                .filter(|m| feeds(m.dir) && (m.account, &m.room) != (member.account, &member.room))
                .collect();
            s.nick_format = Some(nick_format(account, &senders, accounts, findings));
            s.kinds = kinds(account, &senders, accounts, findings);
            s.rewrite = rewrite(&key_of(member), &senders, accounts, findings);
        }
        settings.push(s);
    }

    let mut rooms: Vec<TableOut> = members
        .iter()
        .map(|m| TableOut::new(format!("route.room.{}", key(&key_of(m)))))
        .collect();
    put(&mut table, &mut rooms, &settings, "nick_format", |s| {
        s.nick_format.clone().map(Val::str)
    });
    put(&mut table, &mut rooms, &settings, "kinds", |s| {
        s.kinds.clone().map(Val::strs)
    });
    put(&mut table, &mut rooms, &settings, "ignore_nicks", |s| {
        s.ignore_nicks
            .clone()
            .filter(|v| !v.is_empty())
            .map(Val::strs)
    });
    put(&mut table, &mut rooms, &settings, "ignore_text", |s| {
        s.ignore_text
            .clone()
            .filter(|v| !v.is_empty())
            .map(Val::strs)
    });
    put(&mut table, &mut rooms, &settings, "rewrite", |s| {
        s.rewrite.clone().filter(|v| !v.is_empty()).map(|rules| {
            Val::List(
                rules
                    .into_iter()
                    .map(|(pattern, replace)| {
                        Val::Inline(vec![
                            ("pattern".into(), Val::Str(pattern)),
                            ("replace".into(), Val::Str(replace)),
                        ])
                    })
                    .collect(),
            )
        })
    });
    let mut tables = vec![table];
    tables.extend(rooms.into_iter().filter(|t| !t.entries.is_empty()));
    tables
}

/// Put a setting on the route when every room it applies to has the same value (rooms it
/// does not apply to give `None` and do not count), else on each room that has one. A route
/// value cannot be taken back by a room, so a setting only some rooms have goes on those rooms.
fn put(
    route: &mut TableOut,
    rooms: &mut [TableOut],
    settings: &[RoomSettings],
    name: &str,
    value: impl Fn(&RoomSettings) -> Option<Val>,
) {
    let applies = |s: &RoomSettings| match name {
        "ignore_nicks" => s.ignore_nicks.is_some(),
        "ignore_text" => s.ignore_text.is_some(),
        _ => s.nick_format.is_some(),
    };
    let values: Vec<Option<Val>> = settings.iter().map(&value).collect();
    let relevant: Vec<&Option<Val>> = settings
        .iter()
        .zip(&values)
        .filter(|(s, _)| applies(s))
        .map(|(_, v)| v)
        .collect();
    if let Some(first) = relevant.first()
        && relevant.iter().all(|v| v == first)
    {
        if let Some(v) = first {
            route.set(name, v.clone());
        }
        return;
    }
    for (room, v) in rooms.iter_mut().zip(values) {
        if let Some(v) = v {
            room.set(name, v);
        }
    }
}

/// The nick format of deliveries into `dest`'s room (matterbridge: the receiver's
/// `RemoteNickFormat`, its `{LABEL}` the sender's).
fn nick_format(
    dest: &Planned,
    senders: &[&Member],
    accounts: &[Planned],
    findings: &mut Findings,
) -> String {
    let Some((format, from)) = dest
        .routing
        .nick_format
        .clone()
        .filter(|(f, _)| !f.is_empty())
    else {
        findings.change(
            &format!("{}.RemoteNickFormat", dest.mb_id),
            "not set: matterbridge then shows no nick at all; patchbay shows `{nick}`",
        );
        return "{nick}".into();
    };
    let mut labels: Vec<String> = senders
        .iter()
        .map(|m| accounts[m.account].routing.label.clone())
        .collect();
    labels.dedup();
    let translated = translate(
        &format,
        &NickContext {
            labels: &labels,
            dest_protocol: dest.protocol,
        },
    );
    for note in translated.notes {
        findings.change(&from, format!("became `{}`: {note}", translated.format));
    }
    translated.format
}

/// The default kinds, with joins and parts where matterbridge's `ShowJoinPart` shows them.
fn kinds(
    dest: &Planned,
    senders: &[&Member],
    accounts: &[Planned],
    findings: &mut Findings,
) -> Option<Vec<String>> {
    if !dest.routing.show_join_part {
        return None;
    }
    let mut kinds: Vec<String> = patchbay_sdk::Kind::NAMES
        .iter()
        .filter(|k| !matches!(**k, "join" | "part" | "nick"))
        .map(|k| (*k).to_owned())
        .collect();
    kinds.extend(["join".to_owned(), "part".to_owned()]);
    for sender in senders {
        if let Some(from) = &accounts[sender.account].routing.no_send_join_part {
            findings.skip(
                from,
                format!("`{}` shows joins and parts, and patchbay cannot keep one sending room's out of it", dest.mb_id),
            );
        }
    }
    Some(kinds)
}

/// The rewrite rules of deliveries into `room`: the senders' `ReplaceMessages`, when they agree.
fn rewrite(
    room: &str,
    senders: &[&Member],
    accounts: &[Planned],
    findings: &mut Findings,
) -> Option<Vec<(String, String)>> {
    let rules: Vec<Option<&(Rules, String)>> = senders
        .iter()
        .map(|m| accounts[m.account].routing.rewrite.as_ref())
        .collect();
    let first = rules.first().copied().flatten().map(|(r, _)| r);
    if rules.iter().all(|r| r.map(|(r, _)| r) == first) {
        return first.cloned();
    }
    for (_, from) in rules.into_iter().flatten() {
        findings.skip(
            from,
            format!("the rooms sending into `{room}` rewrite differently, and patchbay rewrites per receiving room; nothing is rewritten there"),
        );
    }
    None
}
