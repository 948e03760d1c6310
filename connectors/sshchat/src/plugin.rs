//! Devzat's gRPC plugin API: one listener stream for every room in, `SendMessage` out.
//!
//! The listener is registered as a plain listener, never as middleware (a middleware listener
//! makes the whole server wait for its answer), with system messages so joins and leaves come
//! too. Relayed messages are sent with `from` set to the relayed author's formatted name, so
//! they show under that name. Devzat does not echo a token's messages to its own listeners, but
//! the bridge also remembers what it sent for a minute and drops a matching event, so an echo
//! from any path (another token of the same gateway, a server that does echo) never loops.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use patchbay_sdk::text::markdown::from_markdown;
use patchbay_sdk::{
    Author, Backoff, Connection, ConnectorContext, ConnectorError, ConnectorState, Delivered,
    Delivery, DeliveryError, Ended, Inbound, Kind, Supervisor,
};
use tokio::time::Instant;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::config::{Config, PluginConfig};
use crate::parse::{DEVBOT, Line, classify_devzat};
use crate::proto::plugin_client::PluginClient;
use crate::proto::{self, ListenerClientData, listener_client_data};
use crate::render;

type Client = PluginClient<InterceptedService<Channel, Auth>>;

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Auth(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// How long a sent message is remembered for echo detection.
const ECHO_MEMORY: Duration = Duration::from_secs(60);
const ECHO_MEMORY_LEN: usize = 512;

pub struct PluginMode {
    config: Arc<Config>,
    /// The endpoint and auth header, checked at build time; the channel itself is made on first
    /// use, inside the runtime (making it spawns its connection task).
    target: Result<(Endpoint, Auth), String>,
    client: std::sync::OnceLock<Client>,
    sent: Mutex<VecDeque<(String, String, String, Instant)>>,
    /// Where the names we speak as are announced (set when `run` starts).
    sink: std::sync::OnceLock<patchbay_sdk::EventSink>,
    /// The names relayed messages were sent under, newest last: the account's own names on
    /// the server, announced (when the hop trace is off) so that another account of the
    /// gateway on the same server (an SSH session) never relays them again.
    speaking_as: Mutex<VecDeque<String>>,
}

/// Relay names announced at most (the oldest are forgotten first).
const SPEAKING_AS_LEN: usize = 256;

fn make_target(plugin: &PluginConfig) -> Result<(Endpoint, Auth), String> {
    let endpoint = Endpoint::from_shared(plugin.address.clone())
        .map_err(|err| format!("bad plugin address {}: {err}", plugin.address))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    let header = format!("Bearer {}", plugin.token)
        .parse()
        .map_err(|_| "the plugin token contains characters not allowed in a header".to_owned())?;
    Ok((endpoint, Auth(header)))
}

/// One listener stream of the account, for the sdk's [`Supervisor`] to keep up.
struct Listener<'a> {
    mode: &'a PluginMode,
    client: Client,
    ctx: &'a ConnectorContext,
    emitter: crate::emitter::Emitter,
}

impl Connection for Listener<'_> {
    async fn connect_once(&mut self) -> Ended {
        let result = tokio::select! {
            result = self.mode.listen(self.client.clone(), self.ctx, &self.emitter) => result,
            () = self.ctx.shutdown.cancelled() => return Ended::Shutdown,
        };
        let reason = match result {
            Err(status) if status.code() == Code::Unauthenticated => {
                return Ended::Fatal(format!(
                    "Devzat refused the plugin token ({}): ask the server's admin for a \
                     token (`grant`) and set plugin.token",
                    status.message()
                ));
            }
            Err(status) => format!("plugin API: {}", status.message()),
            Ok(()) => "the plugin listener stream ended".to_owned(),
        };
        // `listen` reports `Up` once the token is proven; the supervisor set `Connecting`.
        if self.ctx.state.get() == ConnectorState::Up {
            Ended::Lost(reason)
        } else {
            Ended::Failed(reason)
        }
    }
}

impl PluginMode {
    pub fn new(config: Arc<Config>) -> Self {
        let target = match &config.plugin {
            Some(plugin) => make_target(plugin),
            None => Err("no plugin configured".to_owned()),
        };
        PluginMode {
            config,
            target,
            client: std::sync::OnceLock::new(),
            sent: Mutex::new(VecDeque::new()),
            sink: std::sync::OnceLock::new(),
            speaking_as: Mutex::new(VecDeque::new()),
        }
    }

    /// The gRPC client; must be called inside the runtime.
    fn client(&self) -> Result<Client, String> {
        let (endpoint, auth) = self.target.as_ref().map_err(Clone::clone)?;
        Ok(self
            .client
            // A lazy channel connects on first use and reconnects by itself after a failure.
            .get_or_init(|| PluginClient::with_interceptor(endpoint.connect_lazy(), auth.clone()))
            .clone())
    }

    pub async fn run(&self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        let client = self.client().map_err(ConnectorError::new)?;
        let _ = self.sink.set(ctx.sink.clone());
        self.announce();
        let emitter = crate::emitter::Emitter::spawn(ctx.sink.clone());
        let backoff = Backoff::new(Duration::from_secs(1), self.config.reconnect_max);
        let mut listener = Listener {
            mode: self,
            client,
            ctx: &ctx,
            emitter,
        };
        Supervisor::new(&ctx, backoff)
            .held(Duration::from_secs(60))
            .run(&mut listener)
            .await
    }

    /// One listener stream, until it fails.
    async fn listen(
        &self,
        mut client: Client,
        ctx: &ConnectorContext,
        emitter: &crate::emitter::Emitter,
    ) -> Result<(), Status> {
        let (tx, rx) = tokio::sync::mpsc::channel::<ListenerClientData>(4);
        let first = ListenerClientData {
            data: Some(listener_client_data::Data::Listener(proto::Listener {
                middleware: Some(false),
                once: Some(false),
                regex: None,
                color_names: Some(false),
                system_messages: Some(true),
            })),
        };
        tx.send(first)
            .await
            .map_err(|_| Status::internal("listener request stream closed"))?;
        let mut probe_client = client.clone();
        let register = client.register_listener(tokio_stream::wrappers::ReceiverStream::new(rx));
        tokio::pin!(register);
        // Devzat answers a listener's registration with its first event only: in a quiet room
        // the answer waits until someone speaks. A call that can only be refused (a message to
        // a room that cannot exist) proves the connection and the token meanwhile.
        let probe = probe_client.send_message(proto::Message {
            room: String::new(),
            from: None,
            msg: String::new(),
            ephemeral_to: None,
        });
        let registered = tokio::select! {
            registered = &mut register => Some(registered?),
            probed = probe => match probed {
                Ok(_) => None,
                Err(status) if matches!(status.code(), Code::InvalidArgument | Code::NotFound) => None,
                Err(status) => return Err(status),
            },
        };
        ctx.state.up();
        tracing::info!(account = %ctx.account, "listening on Devzat's plugin API");
        let mut events = match registered {
            Some(registered) => registered,
            None => register.await?,
        }
        .into_inner();
        // `tx` stays alive for as long as we listen: closing it would end the registration.
        let _keep = tx;
        while let Some(event) = events.message().await? {
            let Some(inbound) = self.inbound(event) else {
                continue;
            };
            emitter.emit(inbound).await;
        }
        Ok(())
    }

    /// Tell the gateway the names this account speaks as on the server.
    fn announce(&self) {
        let Some(sink) = self.sink.get() else { return };
        let names: Vec<String> = self
            .speaking_as
            .lock()
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default();
        sink.announce(self.config.network(), names);
    }

    /// About to send as `name`: announce it first if it is new, so that the server's
    /// broadcast of it is known as ours before any other account sees it.
    fn speak_as(&self, name: &str) {
        let new = match self.speaking_as.lock() {
            Ok(mut names) => {
                if let Some(at) = names.iter().position(|n| n == name) {
                    // Keep the most recently used names.
                    if let Some(n) = names.remove(at) {
                        names.push_back(n);
                    }
                    false
                } else {
                    if names.len() >= SPEAKING_AS_LEN {
                        names.pop_front();
                    }
                    names.push_back(name.to_owned());
                    true
                }
            }
            Err(_) => false,
        };
        if new {
            self.announce();
        }
    }

    /// An event from the listener as an inbound event, or `None` to skip it.
    fn inbound(&self, event: proto::Event) -> Option<Inbound> {
        let room = event.room;
        let from = crate::screen::strip_ansi(&event.from);
        if from.is_empty() {
            // A system line: joins and leaves are all a bridge relays.
            let (author, kind) = match classify_devzat(&crate::screen::strip_ansi(&event.msg)) {
                Line::Join { name } | Line::Moved { name, .. } => (name, Kind::Join),
                Line::Part { name } => (name, Kind::Part { reason: None }),
                _ => return None,
            };
            if self.config.nick == author {
                return None;
            }
            let mut inbound = Inbound::message(room, Author::named(author), Default::default());
            inbound.kind = kind;
            return Some(inbound);
        }
        // A name is visible text on one line, but another plugin may send any `from`.
        let from: String = from.chars().filter(|c| !c.is_control()).collect();
        if from.trim().is_empty() {
            tracing::debug!(%room, "skipping a plugin event whose author has no visible name");
            return None;
        }
        if self.is_echo(&room, &from, &event.msg) {
            return None;
        }
        if crate::parse::is_room_command(&event.msg) {
            // Someone moving rooms (the bot's own `cd #room` included): bookkeeping, told by
            // the leave and join that follow.
            return None;
        }
        if from == DEVBOT {
            // The server's own bot (server news, games, anti-spam warnings): a notice from a
            // bot, which routes relay only when asked to.
            let text = crate::screen::strip_ansi(&event.msg);
            let mut author = Author::named(DEVBOT);
            author.is_bot = true;
            author.is_system = true;
            let mut inbound = Inbound::message(room, author, Default::default());
            inbound.kind = Kind::Notice {
                body: patchbay_sdk::RichText::plain(text),
            };
            return Some(inbound);
        }
        let (msg, hops) = crate::hops::extract(&event.msg);
        let body = from_markdown(&msg);
        if body.is_empty() {
            return None;
        }
        let mut inbound = Inbound::message(room, Author::named(from), body);
        inbound.hops = hops;
        Some(inbound)
    }

    fn is_echo(&self, room: &str, from: &str, msg: &str) -> bool {
        let Ok(mut sent) = self.sent.lock() else {
            return false;
        };
        let now = Instant::now();
        while sent
            .front()
            .is_some_and(|(.., at)| now.duration_since(*at) > ECHO_MEMORY)
        {
            sent.pop_front();
        }
        if let Some(at) = sent
            .iter()
            .position(|(r, f, m, _)| r == room && f == from && m == msg)
        {
            sent.remove(at);
            return true;
        }
        false
    }

    fn remember(&self, room: &str, from: &str, msg: &str) {
        if let Ok(mut sent) = self.sent.lock() {
            if sent.len() >= ECHO_MEMORY_LEN {
                sent.pop_front();
            }
            sent.push_back((room.into(), from.into(), msg.into(), Instant::now()));
        }
    }

    pub async fn deliver(&self, delivery: Delivery) -> Result<Delivered, DeliveryError> {
        let Some(out) = render::outgoing(&delivery, true) else {
            return Ok(Delivered::default());
        };
        let mut client = self.client().map_err(DeliveryError::permanent)?;
        let trailer = if self.config.hop_trace {
            out.trailer.as_str()
        } else {
            ""
        };
        let msg = format!("{}{trailer}", render::neutralise_devzat(&out.text));
        let from = (!out.nick.is_empty()).then(|| out.nick.clone());
        // Without the trace, the name is all that marks a relayed line as ours on the server.
        // With it, the trace does, and announcing relay names would make a real user who goes
        // by one of them (in another room, over an SSH account) count as us.
        if let Some(from) = &from
            && !self.config.hop_trace
        {
            self.speak_as(from);
        }
        self.remember(&delivery.room, &out.nick, &msg);
        let request = proto::Message {
            room: delivery.room.clone(),
            from,
            msg,
            ephemeral_to: None,
        };
        match client.send_message(request).await {
            Ok(_) => Ok(Delivered::default()),
            Err(status) => Err(match status.code() {
                Code::InvalidArgument | Code::NotFound => DeliveryError::permanent(format!(
                    "Devzat refused the message for {}: {}",
                    delivery.room,
                    status.message()
                )),
                _ => DeliveryError::retryable(format!(
                    "Devzat plugin API: {} ({:?})",
                    status.message(),
                    status.code()
                )),
            }),
        }
    }
}

#[cfg(test)]
#[path = "plugin_props.rs"]
mod props;
