//! The names of everything patchbay keeps in JetStream, for one site or several.
//!
//! One JetStream (no sites): under a prefix `P`, the subjects are `P.out<k>.<account>.<room>`
//! and `P.dead.<account>.<room>`, the streams `P_outbox_<k>` and `P_dead`, the buckets `P_map`
//! and `P_leases`.
//!
//! The outbox is [`OUTBOX_SHARDS`] streams, `<k>` one hex digit that a hash of the room's
//! account and name picks. nats-server checks every consumer of a work-queue stream on each
//! acknowledgement (does another one still want the message?), so one stream for all rooms
//! made each delivery cost in proportion to the rooms being delivered to: a tenth of the
//! server's CPU with 100 busy rooms (see the README's JetStream figures).
//!
//! Several sites: each site `S` owns `P.S.…` subjects and `P_S_…` streams and buckets, so the
//! names never meet: the sites are JetStream domains of their own joined by leaf nodes, where a
//! stream in one domain would otherwise capture another domain's subjects (and the names stay
//! apart should the sites ever share one JetStream). A delivery into a room whose account
//! runs at another site `T` is published at the accepting site, to its own export stream
//! `P_S_export` under `P.S.x.T.out<k>.<account>.<room>`: that publish needs nothing but the
//! local servers, so a site cut off from the others goes on accepting. Site `T`'s outbox shard
//! `k` sources `P.S.x.T.out<k>.>` from every other site's export, renamed to `P.T.out<k>.>`:
//! JetStream's sourcing remembers how far it read, so what waited while the link was down
//! crosses once, in the order it was published, when the link is back.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::options::SiteOptions;
use crate::token::{token, untoken};

/// How many streams the outbox is split into (see the module doc). Fixed: a room's shard is
/// part of its subject, so changing it would strand the deliveries waiting.
pub const OUTBOX_SHARDS: usize = 16;

/// The outbox shard of a room, from the tokens of its account and name.
fn shard_of(account_token: &str, room_token: &str) -> usize {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in account_token
        .bytes()
        .chain([b'.'])
        .chain(room_token.bytes())
    {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash as usize % OUTBOX_SHARDS
}

/// The names under one prefix, and this site's among the sites.
#[derive(Clone, Debug)]
pub struct Layout {
    prefix: String,
    site: Option<String>,
    /// Account -> its site, for every account of every site.
    account_sites: Arc<BTreeMap<String, String>>,
    /// `<root>.out`, what every subject of this site's outbox starts with.
    outbox_stem: Arc<str>,
}

impl Layout {
    pub fn new(prefix: &str) -> Self {
        Layout {
            prefix: prefix.to_owned(),
            site: None,
            account_sites: Arc::default(),
            outbox_stem: format!("{prefix}.out").into(),
        }
    }

    pub fn with_site(prefix: &str, site: &SiteOptions) -> Self {
        Layout {
            prefix: prefix.to_owned(),
            site: Some(site.name.clone()),
            account_sites: Arc::new(site.accounts.clone()),
            outbox_stem: format!("{}.out", Self::root_of(prefix, Some(&site.name))).into(),
        }
    }

    /// This site's name, when there are several.
    pub fn site(&self) -> Option<&str> {
        self.site.as_deref()
    }

    /// The first tokens of this site's subjects.
    fn root(&self) -> String {
        Self::root_of(&self.prefix, self.site.as_deref())
    }

    fn root_of(prefix: &str, site: Option<&str>) -> String {
        match site {
            Some(site) => format!("{prefix}.{site}"),
            None => prefix.to_owned(),
        }
    }

    /// A stream or bucket name of `site` (this one's when `None` and there are no sites).
    pub(crate) fn name_of(&self, site: Option<&str>, kind: &str) -> String {
        match site {
            Some(site) => format!("{}_{site}_{kind}", self.prefix),
            None => format!("{}_{kind}", self.prefix),
        }
    }

    pub(crate) fn name(&self, kind: &str) -> String {
        self.name_of(self.site.as_deref(), kind)
    }

    /// The subject of `room`'s outbox in `account`, at this site.
    pub fn outbox_subject(&self, account: &str, room: &str) -> String {
        let (account, room) = (token(account), token(room));
        let shard = shard_of(&account, &room);
        format!("{}.out{shard:x}.{account}.{room}", self.root())
    }

    /// The outbox shard (stream) that holds `room`'s deliveries.
    pub fn outbox_shard(&self, account: &str, room: &str) -> usize {
        shard_of(&token(account), &token(room))
    }

    /// Where a new delivery into `room` of `account` is published: the room's outbox when the
    /// account runs at this site (or there are no sites), else this site's export to the
    /// account's site.
    pub fn delivery_subject(&self, account: &str, room: &str) -> String {
        match self.remote_site(account) {
            Some(site) => {
                let (account, room) = (token(account), token(room));
                let shard = shard_of(&account, &room);
                format!("{}.x.{site}.out{shard:x}.{account}.{room}", self.root())
            }
            None => self.outbox_subject(account, room),
        }
    }

    /// The site `account` runs at when that is not this one.
    pub fn remote_site(&self, account: &str) -> Option<&str> {
        let local = self.site.as_deref()?;
        self.account_sites
            .get(account)
            .map(String::as_str)
            .filter(|site| *site != local)
    }

    pub(crate) fn dead_subject(&self, account: &str, room: &str) -> String {
        format!("{}.dead.{}.{}", self.root(), token(account), token(room))
    }

    /// The (account, room) of an outbox subject.
    pub fn parse_outbox_subject(&self, subject: &str) -> Option<(String, String)> {
        let rest = subject.strip_prefix(&format!("{}.out", self.root()))?;
        let (shard, rest) = rest.split_once('.')?;
        let (account, room) = rest.split_once('.')?;
        if usize::from_str_radix(shard, 16).ok()? != shard_of(account, room) {
            return None;
        }
        Some((untoken(account)?, untoken(room)?))
    }

    /// The outbox shard a subject of this site's outbox is in (`None` for any other subject).
    pub(crate) fn shard_of_subject(&self, subject: &str) -> Option<usize> {
        let rest = subject.strip_prefix(&*self.outbox_stem)?;
        let (shard, _) = rest.split_once('.')?;
        usize::from_str_radix(shard, 16)
            .ok()
            .filter(|shard| *shard < OUTBOX_SHARDS)
    }

    /// The subject of outbox shard `shard`'s keeper (see [`crate::keeper`]).
    pub(crate) fn keeper_subject(&self, shard: usize) -> String {
        format!("{}{shard:x}._keep", self.outbox_stem)
    }

    /// Every subject of outbox shard `shard`.
    pub(crate) fn outbox_subjects(&self, shard: usize) -> String {
        format!("{}.out{shard:x}.>", self.root())
    }

    /// The core subject that wakes the lane of `room` when a delivery into it is stored, for
    /// a room of this site (see [`crate::doorbell`]); `None` for another site's room, whose
    /// site finds the delivery when its outbox has sourced it.
    pub fn bell_subject(&self, account: &str, room: &str) -> Option<String> {
        if self.remote_site(account).is_some() {
            return None;
        }
        Some(format!(
            "{}.bell.{}.{}",
            self.root(),
            token(account),
            token(room)
        ))
    }

    pub(crate) fn bell_subjects(&self) -> String {
        format!("{}.bell.>", self.root())
    }

    /// The outbox subject of the room a bell subject is for.
    pub(crate) fn outbox_of_bell(&self, bell: &str) -> Option<String> {
        let rest = bell.strip_prefix(&format!("{}.bell.", self.root()))?;
        let (account, room) = rest.split_once('.')?;
        let shard = shard_of(account, room);
        Some(format!("{}.out{shard:x}.{rest}", self.root()))
    }

    pub(crate) fn dead_subjects(&self) -> String {
        format!("{}.dead.>", self.root())
    }

    pub(crate) fn export_subjects(&self) -> String {
        format!("{}.x.>", self.root())
    }

    /// What outbox shard `shard` of this site takes in from `peer`'s export: (filter,
    /// renamed to).
    pub(crate) fn import_from(&self, peer: &str, shard: usize) -> Option<(String, String)> {
        let local = self.site.as_deref()?;
        let from = format!(
            "{}.x.{local}.out{shard:x}.>",
            Self::root_of(&self.prefix, Some(peer))
        );
        Some((from, self.outbox_subjects(shard)))
    }

    /// The stream of outbox shard `shard`.
    pub(crate) fn outbox_stream(&self, shard: usize) -> String {
        self.name(&format!("outbox_{shard:x}"))
    }

    /// The single outbox stream of patchbay before the outbox was sharded.
    pub(crate) fn unsharded_outbox_stream(&self) -> String {
        self.name("outbox")
    }

    pub(crate) fn dead_stream(&self) -> String {
        self.name("dead")
    }

    pub(crate) fn export_stream(&self) -> String {
        self.name("export")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites() -> Layout {
        Layout::with_site(
            "pb",
            &SiteOptions {
                name: "eu".into(),
                accounts: [("irc.eu", "eu"), ("devzat.us", "us")]
                    .into_iter()
                    .map(|(a, s)| (a.to_owned(), s.to_owned()))
                    .collect(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn a_keeper_is_in_its_shard_and_never_a_rooms_subject() {
        for layout in [Layout::new("pb"), sites()] {
            for shard in 0..OUTBOX_SHARDS {
                let keeper = layout.keeper_subject(shard);
                assert_eq!(layout.shard_of_subject(&keeper), Some(shard));
                assert_eq!(layout.parse_outbox_subject(&keeper), None);
            }
            let room = layout.outbox_subject("irc.eu", "#_keep");
            assert_eq!(
                layout.shard_of_subject(&room),
                Some(layout.outbox_shard("irc.eu", "#_keep"))
            );
            assert_eq!(
                layout.shard_of_subject(&layout.dead_subject("irc.eu", "#x")),
                None
            );
        }
        // Another site's export is not this site's outbox.
        assert_eq!(
            sites().shard_of_subject(&sites().delivery_subject("devzat.us", "x")),
            None
        );
    }

    #[test]
    fn one_jetstream_keeps_the_plain_names() {
        let layout = Layout::new("pb");
        let shard = layout.outbox_shard("irc.a", "#x");
        assert_eq!(layout.outbox_stream(shard), format!("pb_outbox_{shard:x}"));
        assert_eq!(
            layout.delivery_subject("irc.a", "#x"),
            layout.outbox_subject("irc.a", "#x")
        );
        let subject = layout.outbox_subject("irc.a", "#x");
        assert!(
            subject.starts_with(&format!("pb.out{shard:x}.")),
            "{subject}"
        );
        assert_eq!(
            layout.parse_outbox_subject(&subject),
            Some(("irc.a".into(), "#x".into()))
        );
        assert_eq!(layout.import_from("us", shard), None);
    }

    #[test]
    fn rooms_spread_over_every_outbox_shard() {
        let layout = Layout::new("pb");
        let mut rooms = [0usize; OUTBOX_SHARDS];
        for i in 0..1600 {
            rooms[layout.outbox_shard("irc.a", &format!("#room{i}"))] += 1;
        }
        assert!(rooms.iter().all(|&n| n > 50), "{rooms:?}");
        // A subject under the wrong shard is nobody's outbox.
        let subject = layout.outbox_subject("irc.a", "#x");
        let shard = layout.outbox_shard("irc.a", "#x");
        let wrong = subject.replacen(
            &format!("out{shard:x}"),
            &format!("out{:x}", (shard + 1) % OUTBOX_SHARDS),
            1,
        );
        assert_eq!(layout.parse_outbox_subject(&wrong), None);
    }

    #[test]
    fn a_bell_names_a_local_room_s_outbox_and_a_remote_room_has_none() {
        let eu = sites();
        let bell = eu
            .bell_subject("irc.eu", "#x.y")
            .expect("a local room has a bell");
        assert!(bell.starts_with("pb.eu.bell."), "{bell}");
        assert_eq!(
            eu.outbox_of_bell(&bell),
            Some(eu.outbox_subject("irc.eu", "#x.y"))
        );
        assert_eq!(eu.bell_subject("devzat.us", "#main"), None);
        assert_eq!(eu.outbox_of_bell("pb.us.bell.a.b"), None);
    }

    #[test]
    fn a_remote_account_s_deliveries_go_to_the_export_and_arrive_in_its_outbox() {
        let eu = sites();
        assert_eq!(eu.outbox_stream(3), "pb_eu_outbox_3");
        assert_eq!(eu.export_stream(), "pb_eu_export");
        let local = eu.delivery_subject("irc.eu", "#x");
        assert_eq!(local, eu.outbox_subject("irc.eu", "#x"));
        assert!(local.starts_with("pb.eu.out"));
        let remote = eu.delivery_subject("devzat.us", "#main");
        assert!(remote.starts_with("pb.eu.x.us."), "{remote}");
        // At the US site, the EU export's subject renamed by the import is the room's outbox.
        let us = Layout::with_site(
            "pb",
            &SiteOptions {
                name: "us".into(),
                ..Default::default()
            },
        );
        let shard = us.outbox_shard("devzat.us", "#main");
        let (filter, into) = us.import_from("eu", shard).expect("sites");
        assert_eq!(filter, format!("pb.eu.x.us.out{shard:x}.>"));
        assert_eq!(into, format!("pb.us.out{shard:x}.>"));
        let renamed = format!(
            "pb.us.{}",
            remote.strip_prefix("pb.eu.x.us.").expect("prefix")
        );
        assert_eq!(renamed, us.outbox_subject("devzat.us", "#main"));
        assert_eq!(
            us.parse_outbox_subject(&renamed),
            Some(("devzat.us".into(), "#main".into()))
        );
    }

    #[test]
    fn an_account_of_no_site_stays_local() {
        assert_eq!(
            sites().delivery_subject("webhook.any", "out"),
            sites().outbox_subject("webhook.any", "out")
        );
    }
}
