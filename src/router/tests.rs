use std::collections::BTreeSet;

use patchbay_sdk::{Author, Event, Hop, Inbound, RichText};
use proptest::prelude::*;

use super::*;

fn room(i: usize) -> RoomKey {
    RoomKey::new(format!("irc.n{}", i % 3), format!("#r{}", i / 3))
}

fn event_from(origin: &RoomKey, hops: Vec<Hop>) -> Event {
    let mut inbound = Inbound::message(
        origin.room.clone(),
        Author::named("alice"),
        RichText::plain("hello"),
    );
    inbound.hops = hops;
    Event::from_inbound(&origin.account, inbound)
}

fn route(name: &str, members: Vec<(RoomKey, Direction)>) -> Route {
    let settings = vec![Settings::default(); members.len()];
    Route {
        name: name.into(),
        members,
        settings,
    }
}

#[test]
fn inout_rooms_mirror_and_out_rooms_only_receive() {
    let a = RoomKey::new("irc.a", "#x");
    let b = RoomKey::new("matrix.b", "!room");
    let ci = RoomKey::new("webhook.ci", "builds");
    let notify = RoomKey::new("irc.a", "#ci");
    let router = Router::new(
        "gw",
        vec![route(
            "r",
            vec![
                (a.clone(), Direction::InOut),
                (b.clone(), Direction::InOut),
                (ci.clone(), Direction::In),
                (notify.clone(), Direction::Out),
            ],
        )],
    );
    let rooms = |from: &RoomKey| -> Vec<RoomKey> {
        router
            .route(&event_from(from, vec![]))
            .into_iter()
            .map(|t| t.room)
            .collect()
    };
    assert_eq!(rooms(&a), vec![b.clone(), notify.clone()]);
    assert_eq!(rooms(&ci), vec![a.clone(), b.clone(), notify.clone()]);
    assert_eq!(rooms(&notify), Vec::<RoomKey>::new());
}

#[test]
fn ignored_nicks_and_unrelayed_kinds_go_nowhere() {
    let a = RoomKey::new("irc.a", "#x");
    let b = RoomKey::new("irc.b", "#y");
    let mut r = route(
        "r",
        vec![(a.clone(), Direction::InOut), (b, Direction::InOut)],
    );
    r.settings[0].ignore_nicks = vec![regex::Regex::new("^bot").expect("regex")];
    let router = Router::new("gw", vec![r]);
    let mut event = event_from(&a, vec![]);
    assert_eq!(router.route(&event).len(), 1);
    event.author.name = "botty".into();
    assert!(router.route(&event).is_empty());
    let mut join = event_from(&a, vec![]);
    join.kind = patchbay_sdk::Kind::Join;
    assert!(router.route(&join).is_empty());
}

#[test]
fn prepare_formats_the_nick_and_records_the_hop() {
    let a = RoomKey::new("irc.a", "#x");
    let b = RoomKey::new("matrix.b", "!y");
    let mut r = route(
        "r",
        vec![(a.clone(), Direction::InOut), (b.clone(), Direction::InOut)],
    );
    r.settings[1].nick_format = NickFormat::parse("[{protocol}] {nick}").expect("valid");
    r.settings[1].rewrite = vec![(regex::Regex::new("hel+o").expect("regex"), "hi".into())];
    let router = Router::new("gw", vec![r]);
    let mut event = event_from(&a, vec![]);
    let nick = router.prepare("r", &b, &mut event);
    assert_eq!(nick, "[irc] alice");
    assert_eq!(
        event.kind.body().map(RichText::to_plain).as_deref(),
        Some("hi")
    );
    assert_eq!(
        event.hops,
        vec![Hop {
            gateway: "gw".into(),
            route: "r".into()
        }]
    );
}

/// Routes over a pool of 12 rooms: each route names distinct rooms with random directions.
fn routes(max_routes: usize, max_members: usize) -> impl Strategy<Value = Vec<Route>> {
    prop::collection::vec(
        prop::collection::btree_map(0..12usize, 0..3u8, 1..max_members),
        1..max_routes,
    )
    .prop_map(|routes| {
        routes
            .into_iter()
            .enumerate()
            .map(|(i, members)| {
                let members = members
                    .into_iter()
                    .map(|(r, d)| {
                        let direction = match d {
                            0 => Direction::InOut,
                            1 => Direction::In,
                            _ => Direction::Out,
                        };
                        (room(r), direction)
                    })
                    .collect();
                route(&format!("route{i}"), members)
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn events_reach_exactly_the_rooms_their_routes_name(
        routes in routes(6, 6),
        origin in 0..12usize,
        passed in prop::collection::btree_set(0..6usize, 0..3),
    ) {
        let origin = room(origin);
        let hops: Vec<Hop> = passed
            .iter()
            .map(|i| Hop { gateway: "gw".into(), route: format!("route{i}") })
            .collect();
        let router = Router::new("gw", routes.clone());
        let targets = router.route(&event_from(&origin, hops.clone()));

        let mut expected = BTreeSet::new();
        for route in &routes {
            let feeds = route.members.iter().any(|(r, d)| *r == origin && d.feeds());
            let passed = hops.iter().any(|h| h.route == route.name);
            if feeds && !passed {
                for (r, d) in &route.members {
                    if d.receives() && *r != origin {
                        expected.insert(r.clone());
                    }
                }
            }
        }
        let got: Vec<RoomKey> = targets.iter().map(|t| t.room.clone()).collect();
        let unique: BTreeSet<RoomKey> = got.iter().cloned().collect();
        prop_assert_eq!(got.len(), unique.len(), "a room was targeted twice");
        prop_assert!(!unique.contains(&origin), "delivered back to its origin");
        prop_assert_eq!(unique, expected);
    }

    /// Even if every network carried the hop trace and every destination fed the event back in,
    /// relaying ends: no route is taken twice by one event.
    #[test]
    fn relaying_never_loops(routes in routes(4, 4), origin in 0..12usize) {
        let router = Router::new("gw", routes.clone());
        let mut frontier = vec![event_from(&room(origin), vec![])];
        let mut relays = 0usize;
        // Each relay extends a chain of distinct routes, each step to one of at most 3 rooms.
        let bound = (1..=routes.len()).map(|depth| 3usize.pow(depth as u32) * 4usize.pow(depth as u32)).sum::<usize>();
        while let Some(event) = frontier.pop() {
            for target in router.route(&event) {
                relays += 1;
                prop_assert!(relays <= bound, "relaying did not end");
                let mut relayed = event.clone();
                router.prepare(&target.route, &target.room, &mut relayed);
                let routes_taken: BTreeSet<&str> = relayed.hops.iter().map(|h| h.route.as_str()).collect();
                prop_assert_eq!(routes_taken.len(), relayed.hops.len(), "a route was taken twice");
                frontier.push(event_from(&target.room, relayed.hops.clone()));
            }
        }
    }
}

#[test]
fn a_servers_own_voice_is_relayed_only_where_a_route_names_system() {
    let from = RoomKey::new("sshchat.a", "main");
    let to = RoomKey::new("sshchat.b", "main");
    let members = vec![
        (from.clone(), Direction::InOut),
        (to.clone(), Direction::InOut),
    ];
    let mut notice = event_from(&from, Vec::new());
    notice.kind = patchbay_sdk::Kind::Notice {
        body: patchbay_sdk::RichText::plain("Server going down!"),
    };
    notice.author.is_bot = true;
    notice.author.is_system = true;
    let default = Router::new("gw", vec![route("r", members.clone())]);
    assert!(default.route(&notice).is_empty(), "relayed by default");
    let mut asked = route("r", members);
    for settings in &mut asked.settings {
        settings.kinds.insert("system");
    }
    let asked = Router::new("gw", vec![asked]);
    let rooms: Vec<RoomKey> = asked.route(&notice).into_iter().map(|t| t.room).collect();
    assert_eq!(rooms, vec![to]);
    // A bot that is not the server (a CI webhook) is relayed as before.
    notice.author.is_system = false;
    assert_eq!(default.route(&notice).len(), 1);
}
