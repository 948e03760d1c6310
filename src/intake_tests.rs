use std::sync::Arc;

use patchbay_sdk::{Author, Emit, Inbound, Kind, MessageRef, RichText};
use tokio_util::sync::CancellationToken;

use super::Intake;
use crate::metrics::Metrics;
use crate::router::{Direction, RoomKey, Route, Router, Settings};
use crate::store::SqliteStore;

fn intake(dir: &tempfile::TempDir) -> (Intake, Arc<SqliteStore>) {
    let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("open store"));
    let route = Route {
        name: "mirror".to_owned(),
        members: vec![
            (RoomKey::new("irc.a", "#x"), Direction::InOut),
            (RoomKey::new("irc.b", "#y"), Direction::InOut),
        ],
        settings: vec![Settings::default(); 2],
    };
    let intake = Intake::new(
        store.clone(),
        Arc::new(Router::new("gw", vec![route])),
        Arc::new(Metrics::default()),
        CancellationToken::new(),
    );
    (intake, store)
}

fn said(remote_id: &str, text: &str) -> Inbound {
    let mut inbound = Inbound::message("#x", Author::named("alice"), RichText::plain(text));
    inbound.remote_id = Some(remote_id.to_owned());
    inbound
}

#[tokio::test]
async fn a_run_resolves_references_to_messages_earlier_in_the_same_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (intake, store) = intake(&dir);
    let mut reply = said("m2", "indeed");
    reply.reply_to = Some(MessageRef::Native("m1".to_owned()));
    let mut echo = said("m3", "our own line");
    echo.is_echo = true;
    let mut edit = said("m4", "");
    edit.kind = Kind::Edit {
        target: MessageRef::Native("m1".to_owned()),
        body: RichText::plain("hello, world"),
    };
    let answers = intake
        .emit_many(
            "irc.a",
            vec![said("m1", "hello"), reply, echo, edit, said("m1", "hello")],
        )
        .await
        .expect("emit run");
    assert_eq!(answers.len(), 5);
    assert!(answers[0].is_some() && answers[1].is_some() && answers[3].is_some());
    assert_eq!(answers[2], None, "an echo is dropped");
    assert_eq!(
        answers[4], None,
        "the same network message again is a duplicate"
    );

    let dest = RoomKey::new("irc.b", "#y");
    let pending = store.pending(&dest, 0, 10).await.expect("pending");
    let first = answers[0].expect("first id");
    assert_eq!(pending.len(), 3, "message, reply and edit: {pending:?}");
    assert_eq!(pending[1].event.reply_to, Some(MessageRef::Gateway(first)));
    assert_eq!(
        pending[2].event.kind.target(),
        Some(&MessageRef::Gateway(first))
    );
}
