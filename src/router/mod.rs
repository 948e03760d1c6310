//! Routing: which rooms an event goes to, and how it looks when it gets there.
//!
//! The router is pure apart from the rate limiters' clocks: given an event, it names every room
//! its routes reach in that direction — never the event's origin room, never a room twice, never
//! along a route the event's hop trace already holds — with the nick each destination shows.

mod rate;
mod rules;

pub use rules::{Direction, KindSet, NickFormat, NickVars, RateLimit, RoomKey, Route, Settings};

use std::collections::HashMap;
use std::time::Instant;

use patchbay_sdk::{Event, Hop};

use rate::Limiter;

/// Where one event goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub room: RoomKey,
    /// The route it travels along (the first one that reaches the room).
    pub route: String,
    /// When the room's rate limit lets it be delivered, if it must wait.
    pub not_before: Option<Instant>,
}

/// The routing table.
pub struct Router {
    gateway_id: String,
    routes: Vec<Route>,
    /// For each room, the routes it feeds (index into `routes`).
    feeds: HashMap<RoomKey, Vec<usize>>,
    /// Each route's index by name, for shaping deliveries.
    by_name: HashMap<String, usize>,
    limiter: Limiter,
}

impl Router {
    pub fn new(gateway_id: impl Into<String>, routes: Vec<Route>) -> Self {
        let mut feeds: HashMap<RoomKey, Vec<usize>> = HashMap::new();
        for (i, route) in routes.iter().enumerate() {
            for (room, direction) in &route.members {
                if direction.feeds() {
                    let list = feeds.entry(room.clone()).or_default();
                    if !list.contains(&i) {
                        list.push(i);
                    }
                }
            }
        }
        let by_name = routes
            .iter()
            .enumerate()
            .map(|(i, route)| (route.name.clone(), i))
            .collect();
        Router {
            gateway_id: gateway_id.into(),
            routes,
            feeds,
            by_name,
            limiter: Limiter::default(),
        }
    }

    pub fn gateway_id(&self) -> &str {
        &self.gateway_id
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Every room some route delivers to, once each.
    pub fn destination_rooms(&self) -> impl Iterator<Item = &RoomKey> {
        let mut seen = std::collections::HashSet::new();
        self.routes
            .iter()
            .flat_map(|route| route.members.iter())
            .filter(|(_, direction)| direction.receives())
            .map(|(room, _)| room)
            .filter(move |room| seen.insert(*room))
    }

    /// The rooms `event` must be delivered to.
    pub fn route(&self, event: &Event) -> Vec<Target> {
        let origin = RoomKey::new(&event.origin.account, &event.origin.room);
        let Some(route_ids) = self.feeds.get(&origin) else {
            return Vec::new();
        };
        let mut targets: Vec<Target> = Vec::new();
        for &i in route_ids {
            let route = &self.routes[i];
            if self.already_passed(event, &route.name) {
                continue;
            }
            if route
                .settings_for(&origin)
                .is_some_and(|settings| settings.ignores(event))
            {
                continue;
            }
            for ((room, direction), settings) in route.members.iter().zip(&route.settings) {
                if !direction.receives()
                    || *room == origin
                    || !settings.kinds.admits(event)
                    || targets.iter().any(|t| t.room == *room)
                {
                    continue;
                }
                let not_before = settings
                    .rate_limit
                    .and_then(|limit| self.limiter.admit(&route.name, room, limit));
                targets.push(Target {
                    room: room.clone(),
                    route: route.name.clone(),
                    not_before,
                });
            }
        }
        targets
    }

    /// Shape `event` for delivery into `room` along `route`: apply the room's rewrite rules,
    /// add this gateway's hop, and format the author's nick.
    pub fn prepare(&self, route: &str, room: &RoomKey, event: &mut Event) -> String {
        let settings = self
            .by_name
            .get(route)
            .and_then(|&i| self.routes.get(i))
            .and_then(|r| r.settings_for(room));
        event.hops.push(Hop {
            gateway: self.gateway_id.clone(),
            route: route.to_owned(),
        });
        let default = Settings::default();
        let settings = settings.unwrap_or(&default);
        settings.rewrite(event);
        settings.nick_format.render(&NickVars {
            nick: &event.author.name,
            account: &event.origin.account,
            room: &event.origin.room,
            route,
        })
    }

    fn already_passed(&self, event: &Event, route: &str) -> bool {
        event
            .hops
            .iter()
            .any(|hop| hop.gateway == self.gateway_id && hop.route == route)
    }
}

#[cfg(test)]
mod tests;
