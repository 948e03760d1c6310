//! The contract checks catch each breach: fake connectors that keep it, and that break it
//! one way each.

use std::sync::Arc;

use async_trait::async_trait;

use super::*;

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

fn message(room: &str, author: &str, remote_id: Option<&str>) -> Inbound {
    let mut inbound = Inbound::message(room, Author::named(author), RichText::plain("hi"));
    inbound.remote_id = remote_id.map(str::to_owned);
    inbound
}

#[tokio::test]
async fn the_gateway_recorder_drops_a_redelivery_and_another_accounts_words() {
    let recorder = Arc::new(Recorder::gateway());
    let one = recorder.sink("fake.one");
    let two = recorder.sink("fake.two");
    assert!(matches!(
        one.emit(message("r", "bob", Some("m1"))).await,
        Ok(Some(_))
    ));
    // The same remote id again in that room is a redelivery; elsewhere, or from another
    // account, it is a new event.
    assert!(matches!(
        one.emit(message("r", "bob", Some("m1"))).await,
        Ok(None)
    ));
    assert!(matches!(
        one.emit(message("q", "bob", Some("m1"))).await,
        Ok(Some(_))
    ));
    assert!(matches!(
        two.emit(message("r", "bob", Some("m1"))).await,
        Ok(Some(_))
    ));
    // Account one says `bob` is its own on the network both are on: two drops bob's words.
    recorder.announce("fake.one", "net", vec!["bob".into()]);
    recorder.announce("fake.two", "net", vec![]);
    assert!(matches!(
        two.emit(message("r", "bob", None)).await,
        Ok(None)
    ));
    assert!(matches!(
        one.emit(message("r", "bob", None)).await,
        Ok(Some(_))
    ));
    assert_eq!(recorder.events().len(), 4);
    let dropped: Vec<String> = recorder.dropped().into_iter().map(|(a, _)| a).collect();
    assert_eq!(dropped, ["fake.one", "fake.two"]);
}

#[tokio::test]
async fn a_plain_recorder_keeps_every_event_with_the_id_it_answered() {
    let recorder = Arc::new(Recorder::default());
    let sink = recorder.sink("fake.t");
    let first = sink.emit(message("r", "bob", Some("m1"))).await;
    let again = sink.emit(message("r", "bob", Some("m1"))).await;
    let ids: Vec<EventId> = recorder.emitted().into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids,
        [first, again].map(|r| r.ok().flatten().expect("an id"))
    );
    let events = recorder.wait_events(CONTRACT_TIMEOUT, 2).await;
    assert_eq!(events.map(|e| e.len()), Some(2));
}

#[tokio::test(start_paused = true)]
async fn waiting_for_more_events_than_come_gives_none_at_the_timeout() {
    let recorder = Recorder::default();
    assert!(recorder.wait_events(CONTRACT_TIMEOUT, 1).await.is_none());
}

/// Answers retryable until `ready` deliveries were tried, then `Ok`; or always permanent.
struct Flaky {
    ready: usize,
    tries: Mutex<usize>,
    permanent: bool,
}

#[async_trait]
impl Connector for Flaky {
    async fn run(&self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        ctx.shutdown.cancelled().await;
        Ok(())
    }

    async fn deliver(&self, _: Delivery) -> Result<Delivered, DeliveryError> {
        let mut tries = lock(&self.tries);
        *tries += 1;
        if self.permanent {
            Err(DeliveryError::permanent("refused"))
        } else if *tries < self.ready {
            Err(DeliveryError::retryable("not yet"))
        } else {
            Ok(Delivered::default())
        }
    }
}

#[tokio::test(start_paused = true)]
async fn deliver_retrying_retries_until_ready_and_gives_up_on_a_permanent_error() {
    let flaky = Flaky {
        ready: 3,
        tries: Mutex::new(0),
        permanent: false,
    };
    let answer = deliver_retrying(&flaky, delivery("r", "alice", "hi"), CONTRACT_TIMEOUT).await;
    assert!(answer.is_ok());
    assert_eq!(*lock(&flaky.tries), 3);

    let refusing = Flaky {
        ready: 0,
        tries: Mutex::new(0),
        permanent: true,
    };
    let answer = deliver_retrying(&refusing, delivery("r", "alice", "hi"), CONTRACT_TIMEOUT).await;
    assert!(matches!(answer, Err(DeliveryError::Permanent { .. })));
    assert_eq!(*lock(&refusing.tries), 1);

    let never = Flaky {
        ready: usize::MAX,
        tries: Mutex::new(0),
        permanent: false,
    };
    let answer = deliver_retrying(&never, delivery("r", "alice", "hi"), CONTRACT_TIMEOUT).await;
    assert!(matches!(answer, Err(DeliveryError::Retryable { .. })));
}

#[tokio::test]
async fn serve_answers_on_the_connectors_routes_and_refuses_a_connector_without_any() {
    struct Routes;
    #[async_trait]
    impl Connector for Routes {
        async fn run(&self, _: ConnectorContext) -> Result<(), ConnectorError> {
            Ok(())
        }
        async fn deliver(&self, _: Delivery) -> Result<Delivered, DeliveryError> {
            Ok(Delivered::default())
        }
        fn http_routes(&self) -> Option<axum::Router> {
            Some(axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" })))
        }
    }
    let served = serve(&Routes).await.expect("served");
    let addr = served.addr;
    let answer = tokio::time::timeout(CONTRACT_TIMEOUT, get_ping(addr)).await;
    assert!(answer.is_ok_and(|body| body.ends_with("pong")));
    assert!(
        serve(&Fake {
            manner: Manner::Good,
            _early: None
        })
        .await
        .is_err()
    );
}

/// A bare HTTP/1.0 GET of `/ping`, returning the whole response.
async fn get_ping(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /ping HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
}

/// A store that refuses the first event, then hands each to its recorder.
struct RefusesFirst {
    recorder: Arc<Recorder>,
    refused: Mutex<bool>,
}

#[async_trait]
impl Emit for RefusesFirst {
    async fn emit(&self, account: &str, inbound: Inbound) -> Result<Option<EventId>, EmitError> {
        if !std::mem::replace(&mut *lock(&self.refused), true) {
            return Err(EmitError::Store("the disk is full".into()));
        }
        self.recorder.emit(account, inbound).await
    }
}

/// Emits two messages once running, then waits for shutdown.
struct TwoMessages;

#[async_trait]
impl Connector for TwoMessages {
    async fn run(&self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        for text in ["first", "second"] {
            let inbound = Inbound::message("r", Author::named("bob"), RichText::plain(text));
            let _ = ctx.sink.emit(inbound).await;
        }
        ctx.shutdown.cancelled().await;
        Ok(())
    }

    async fn deliver(&self, _: Delivery) -> Result<Delivered, DeliveryError> {
        Ok(Delivered::default())
    }
}

#[tokio::test]
async fn a_store_in_front_of_the_recorder_decides_what_reaches_it() {
    let recorder = Arc::new(Recorder::default());
    let store = Arc::new(RefusesFirst {
        recorder: Arc::clone(&recorder),
        refused: Mutex::new(false),
    });
    let built = Built {
        connector: Arc::new(TwoMessages),
        account: AccountInfo {
            account: "fake.t".into(),
            config_dir: std::env::temp_dir(),
            data_dir: std::env::temp_dir(),
        },
        dir: None,
    };
    let running = built.start_behind(store, recorder);
    let events = running.recorder.wait_events(CONTRACT_TIMEOUT, 1).await;
    let texts: Option<Vec<String>> = events.map(|events| {
        let bodies = events.iter().filter_map(|e| e.kind.body());
        bodies.map(RichText::to_plain).collect()
    });
    assert_eq!(texts, Some(vec!["second".to_owned()]));
    assert!(running.stop(CONTRACT_TIMEOUT).await.is_ok());
}
