//! The contract checks catch each breach: fake connectors that keep it, and that break it
//! one way each.

use std::sync::Arc;

use async_trait::async_trait;

use super::*;
use crate::connector::Delivered;

/// How a fake connector behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Manner {
    /// Keeps the contract.
    Good,
    /// Connects to its server while being built.
    ConnectsOnBuild,
    /// Answers a delivery before `run` with `Ok`.
    DeliversBeforeRun,
    /// Ignores the shutdown token.
    NeverStops,
}

struct Fake {
    manner: Manner,
    _early: Option<TcpStream>,
}

#[async_trait]
impl Connector for Fake {
    async fn run(&self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        ctx.state.up();
        if self.manner == Manner::NeverStops {
            std::future::pending::<()>().await;
        }
        ctx.shutdown.cancelled().await;
        Ok(())
    }

    async fn deliver(&self, _: Delivery) -> Result<Delivered, DeliveryError> {
        match self.manner {
            Manner::DeliversBeforeRun => Ok(Delivered::default()),
            _ => Err(DeliveryError::retryable("not running")),
        }
    }
}

struct FakeFactory(Manner);

impl ConnectorFactory for FakeFactory {
    fn protocol(&self) -> &'static str {
        "fake"
    }

    fn build(
        &self,
        _: &AccountInfo,
        table: toml::Table,
    ) -> Result<Arc<dyn Connector>, ConfigError> {
        let port = table
            .get("port")
            .and_then(toml::Value::as_integer)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| ConfigError::at(&["port"], "a port"))?;
        let early = (self.0 == Manner::ConnectsOnBuild)
            .then(|| TcpStream::connect(("127.0.0.1", port)).ok())
            .flatten();
        Ok(Arc::new(Fake {
            manner: self.0,
            _early: early,
        }))
    }
}

fn table(port: u16) -> String {
    format!("port = {port}")
}

fn contract(factory: &FakeFactory) -> Contract<'_> {
    Contract {
        factory,
        account: "fake.t",
        room: "r",
        table: &table,
    }
}

#[test]
fn a_connector_that_keeps_the_contract_passes_it() {
    let good = FakeFactory(Manner::Good);
    contract(&good).building_does_not_connect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        contract(&good).deliver_before_up_is_retryable().await;
        contract(&good).shutdown_returns_cleanly().await;
    });
}

#[test]
#[should_panic(expected = "building fake.t connected to its server")]
fn connecting_while_built_is_caught() {
    contract(&FakeFactory(Manner::ConnectsOnBuild)).building_does_not_connect();
}

#[tokio::test]
#[should_panic(expected = "not a retryable error")]
async fn delivering_before_run_is_caught() {
    contract(&FakeFactory(Manner::DeliversBeforeRun))
        .deliver_before_up_is_retryable()
        .await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "did not stop within")]
async fn ignoring_shutdown_is_caught() {
    contract(&FakeFactory(Manner::NeverStops))
        .shutdown_returns_cleanly()
        .await;
}

#[tokio::test]
async fn the_recorder_hands_over_an_event_emitted_while_waiting() {
    let recorder = Arc::new(Recorder::default());
    let sink = recorder.sink("fake.t");
    let later = tokio::spawn(async move {
        let inbound = Inbound::message("r", Author::named("bob"), RichText::plain("hi"));
        sink.emit(inbound).await
    });
    let seen = recorder
        .wait_for(CONTRACT_TIMEOUT, |e| e.author.name == "bob")
        .await;
    assert_eq!(seen.map(|e| e.room), Some("r".to_owned()));
    assert!(matches!(later.await, Ok(Ok(Some(_)))));
}
