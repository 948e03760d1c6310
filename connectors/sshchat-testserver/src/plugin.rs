//! Devzat's plugin API over h2c: token auth, the listener stream, SendMessage with `from`.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::{mpsc, oneshot};
use tonic::{Request, Response, Status, Streaming};

use crate::Shared;
use crate::chat::Listener;
use crate::proto::plugin_server::{Plugin, PluginServer};
use crate::proto::{self, CmdDef, CmdInvocation, ListenerClientData, Message, MessageRes};

/// Devzat's commands that a plugin's message runs when it is the first word (seen: cd, hang,
/// shrug, mute, clear).
const PLUGIN_COMMANDS: &[&str] = &["cd", "hang", "shrug", "mute", "clear", "users", "exit"];

pub fn serve(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let service = PluginServer::new(Service { shared });
    let task = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
    });
    (stop, task)
}

struct Service {
    shared: Arc<Shared>,
}

impl Service {
    /// The token in `authorization: Bearer <token>`, if the server issued it.
    fn token<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let token = header.strip_prefix("Bearer ").unwrap_or("");
        if !token.is_empty() && self.shared.opts.tokens.iter().any(|t| t == token) {
            Ok(token.to_owned())
        } else {
            Err(Status::unauthenticated("Invalid authorization header"))
        }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::Event, Status>> + Send>>;
type CmdStream = Pin<Box<dyn Stream<Item = Result<CmdInvocation, Status>> + Send>>;

#[tonic::async_trait]
impl Plugin for Service {
    type RegisterListenerStream = EventStream;
    type RegisterCmdStream = CmdStream;

    async fn register_listener(
        &self,
        request: Request<Streaming<ListenerClientData>>,
    ) -> Result<Response<EventStream>, Status> {
        let token = self.token(&request)?;
        let mut incoming = request.into_inner();
        let first = incoming
            .message()
            .await?
            .and_then(|m| m.data)
            .ok_or_else(|| Status::invalid_argument("first message must be a Listener"))?;
        let listener = match first {
            proto::listener_client_data::Data::Listener(listener) => listener,
            proto::listener_client_data::Data::Response(_) => {
                return Err(Status::invalid_argument("first message must be a Listener"));
            }
        };
        let (tx, rx) = mpsc::channel(1024);
        let id = {
            let mut chat = self.shared.lock();
            if listener.middleware == Some(true) {
                // Real Devzat would now block every message on this listener's answer.
                chat.middleware_requests += 1;
            }
            chat.next_id += 1;
            let id = chat.next_id;
            chat.listeners.push(Listener {
                id,
                token,
                system: listener.system_messages == Some(true),
                tx,
            });
            id
        };
        self.shared.changed.notify_waiters();
        // Drop the listener when the client goes away.
        let shared = self.shared.clone();
        tokio::spawn(async move {
            while let Ok(Some(_)) = incoming.message().await {}
            shared.lock().listeners.retain(|l| l.id != id);
            shared.changed.notify_waiters();
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn register_cmd(&self, request: Request<CmdDef>) -> Result<Response<CmdStream>, Status> {
        self.token(&request)?;
        let (_tx, rx) = mpsc::channel(1);
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn send_message(
        &self,
        request: Request<Message>,
    ) -> Result<Response<MessageRes>, Status> {
        let token = self.token(&request)?;
        let message = request.into_inner();
        let opts = self.shared.opts.clone();
        {
            let mut chat = self.shared.lock();
            if !chat.rooms.contains(&message.room) {
                return Err(Status::invalid_argument("Room does not exist"));
            }
            match message.from.clone().filter(|f| !f.is_empty()) {
                // No sender: a system line, broadcast as is.
                None => chat.system(&opts, &message.room, &message.msg, Some(&token)),
                // A named sender: run like a user's line, first word included.
                Some(from) => {
                    let first = message.msg.split_whitespace().next().unwrap_or("");
                    if PLUGIN_COMMANDS.contains(&first) {
                        chat.commands.push((from.clone(), message.msg.clone()));
                    }
                    if !matches!(first, "cd" | "hang" | "shrug" | "mute" | "clear") {
                        chat.message(
                            &opts,
                            &message.room,
                            &from,
                            &message.msg,
                            None,
                            Some(&token),
                        );
                    }
                }
            }
        }
        self.shared.changed.notify_waiters();
        Ok(Response::new(MessageRes {}))
    }
}
