//! Routing: which rooms an event goes to, and how it looks when it gets there.
//!
//! The router is pure apart from the rate limiters' clocks: given an event, it names every room
//! its routes reach in that direction — never the event's origin room, never a room twice, never
//! along a route the event's hop trace already holds — with the nick each destination shows.

mod rate;
mod rules;

pub use rules::{Direction, KindSet, NickFormat, NickVars, RateLimit, RoomKey, Route, Settings};

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use patchbay_sdk::{Event, Hop};

use patchbay_sdk::sync::{read, write};
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

/// The routing table, replaceable while the gateway runs (a reload): every call reads one
/// consistent table, so an event is routed wholly by the old routes or wholly by the new.
pub struct Router {
    gateway_id: String,
    table: RwLock<Arc<Table>>,
    /// Kept across reloads: a room's rate limit goes on counting what it already admitted.
    limiter: Limiter,
}

/// One version of the routes, with the indexes built from them.
struct Table {
    routes: Arc<Vec<Route>>,
    /// For each room, the routes it feeds (index into `routes`).
    feeds: HashMap<RoomKey, Vec<usize>>,
    /// Each route's index by name, for shaping deliveries.
    by_name: HashMap<String, usize>,
}

impl Table {
    fn new(routes: Vec<Route>) -> Self {
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
        Table {
            routes: Arc::new(routes),
            feeds,
            by_name,
        }
    }
}

impl Router {
    pub fn new(gateway_id: impl Into<String>, routes: Vec<Route>) -> Self {
        Router {
            gateway_id: gateway_id.into(),
            table: RwLock::new(Arc::new(Table::new(routes))),
            limiter: Limiter::default(),
        }
    }

    pub fn gateway_id(&self) -> &str {
        &self.gateway_id
    }

    /// The routes in force now.
    pub fn routes(&self) -> Arc<Vec<Route>> {
        Arc::clone(&self.table().routes)
    }

    /// Put `routes` in force from the next event on; returns whether they differ from the
    /// routes they replace (names, rooms, directions or any setting).
    pub fn replace(&self, routes: Vec<Route>) -> bool {
        let changed = format!("{routes:?}") != format!("{:?}", self.routes());
        let table = Arc::new(Table::new(routes));
        *write(&self.table) = table;
        changed
    }

    fn table(&self) -> Arc<Table> {
        Arc::clone(&read(&self.table))
    }

    /// Every room some route delivers to, once each.
    pub fn destination_rooms(&self) -> Vec<RoomKey> {
        let mut seen = std::collections::HashSet::new();
        self.routes()
            .iter()
            .flat_map(|route| route.members.iter())
            .filter(|(_, direction)| direction.receives())
            .map(|(room, _)| room)
            .filter(|room| seen.insert(*room))
            .cloned()
            .collect()
    }

    /// The rooms `event` must be delivered to.
    pub fn route(&self, event: &Event) -> Vec<Target> {
        let origin = RoomKey::new(&event.origin.account, &event.origin.room);
        let table = self.table();
        let Some(route_ids) = table.feeds.get(&origin) else {
            return Vec::new();
        };
        let mut targets: Vec<Target> = Vec::new();
        for &i in route_ids {
            let route = &table.routes[i];
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
    /// add this gateway's hop, and format the author's nick. The settings are those in force
    /// now, so a reload's nick format applies to deliveries still waiting too; a route that a
    /// reload removed shapes its waiting deliveries with the default settings.
    pub fn prepare(&self, route: &str, room: &RoomKey, event: &mut Event) -> String {
        let table = self.table();
        let settings = table
            .by_name
            .get(route)
            .and_then(|&i| table.routes.get(i))
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
