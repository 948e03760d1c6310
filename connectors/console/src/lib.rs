//! The console connector: a chat room on the terminal.
//!
//! Lines typed on standard input (or read from a file) become messages from a local user in the
//! account's room; events relayed to the account are printed, one line each, as
//! `[ACCOUNT/ROOM] <nick> text`. It needs no server, so it is how a newcomer sees routing work
//! and how the gateway's own end-to-end tests watch what it delivers.

mod config;
mod render;

pub use config::ConsoleConfig;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use patchbay_sdk::factory::AccountInfo;
use patchbay_sdk::text::markdown::from_markdown;
use patchbay_sdk::{
    Author, ConfigError, Connector, ConnectorContext, ConnectorError, ConnectorFactory, Delivered,
    Delivery, DeliveryError, Inbound, Kind, parse_table,
};
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

use config::{Input, Output};

/// Builds console accounts from `[console.NAME]` tables.
pub struct ConsoleFactory;

impl ConnectorFactory for ConsoleFactory {
    fn protocol(&self) -> &'static str {
        "console"
    }

    fn build(
        &self,
        account: &AccountInfo,
        table: toml::Table,
    ) -> Result<Arc<dyn Connector>, ConfigError> {
        let config: ConsoleConfig = parse_table(table)?;
        let output = match &config.output {
            Output::Stdout => Sink::Stdout,
            Output::Stderr => Sink::Stderr,
            Output::File(path) => Sink::File(account.resolve(path)),
        };
        let input = match &config.input {
            Input::File(path) => Input::File(account.resolve(path)),
            other => other.clone(),
        };
        Ok(Arc::new(Console {
            account: account.account.clone(),
            room: config.room.clone(),
            nick: config.nick.clone(),
            input,
            output: Mutex::new(OutputState {
                sink: output,
                file: None,
            }),
            sent: AtomicU64::new(0),
        }))
    }
}

enum Sink {
    Stdout,
    Stderr,
    File(PathBuf),
}

struct OutputState {
    sink: Sink,
    file: Option<tokio::fs::File>,
}

/// One console account.
pub struct Console {
    account: String,
    room: String,
    nick: String,
    input: Input,
    output: Mutex<OutputState>,
    sent: AtomicU64,
}

#[async_trait]
impl Connector for Console {
    async fn run(&self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        ctx.state.up();
        let reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match &self.input {
            Input::None => {
                ctx.shutdown.cancelled().await;
                return Ok(());
            }
            Input::Stdin => Box::new(tokio::io::stdin()),
            Input::File(path) => Box::new(tokio::fs::File::open(path).await.map_err(|err| {
                ConnectorError::with_source(format!("cannot open {}", path.display()), err)
            })?),
        };
        let mut lines = BufReader::new(reader).lines();
        loop {
            let line = tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(()),
                line = lines.next_line() => line,
            };
            let line = match line {
                Ok(Some(line)) => line,
                // End of input: keep printing deliveries until shutdown.
                Ok(None) => {
                    ctx.shutdown.cancelled().await;
                    return Ok(());
                }
                Err(err) => {
                    tracing::warn!(account = %self.account, "console input is not readable: {err}; this account stops reading input (its output still works): set `input = \"none\"` where no terminal is attached");
                    ctx.shutdown.cancelled().await;
                    return Ok(());
                }
            };
            let Some(inbound) = self.parse_line(&line) else {
                continue;
            };
            if let Err(err) = ctx.sink.emit(inbound).await {
                tracing::error!(account = %self.account, "a console line was not accepted: {err}");
            }
        }
    }

    async fn deliver(&self, delivery: Delivery) -> Result<Delivered, DeliveryError> {
        let line = render::line(&self.account, &delivery);
        self.write_line(&line).await.map_err(|err| {
            DeliveryError::retryable(format!("cannot write console output: {err}"))
        })?;
        let n = self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(Delivered {
            remote_id: Some(format!("{}-{n}", delivery.event.id)),
        })
    }
}

impl Console {
    /// A typed line as an event: `/me text` is an action, `/notice text` a notice, anything else
    /// a message in Markdown. Blank lines are skipped.
    fn parse_line(&self, line: &str) -> Option<Inbound> {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            return None;
        }
        let mut inbound = Inbound::message(
            self.room.clone(),
            Author::named(self.nick.clone()),
            from_markdown(line),
        );
        if let Some(text) = line.strip_prefix("/me ") {
            inbound.kind = Kind::Action {
                body: from_markdown(text),
            };
        } else if let Some(text) = line.strip_prefix("/notice ") {
            inbound.kind = Kind::Notice {
                body: from_markdown(text),
            };
        }
        Some(inbound)
    }

    async fn write_line(&self, line: &str) -> std::io::Result<()> {
        let mut state = self.output.lock().await;
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        match &state.sink {
            Sink::Stdout => write_all(&mut tokio::io::stdout(), &bytes).await,
            Sink::Stderr => write_all(&mut tokio::io::stderr(), &bytes).await,
            Sink::File(path) => {
                let path = path.clone();
                if state.file.is_none() {
                    let file = tokio::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .await?;
                    state.file = Some(file);
                }
                match state.file.as_mut() {
                    Some(file) => write_all(file, &bytes).await,
                    None => Ok(()),
                }
            }
        }
    }
}

async fn write_all<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}
