use super::*;
use crate::parse::parse_line;

fn latin1() -> &'static encoding_rs::Encoding {
    encoding_rs::WINDOWS_1252
}

fn isupport(line: &str) -> Isupport {
    let p = parse_line(line.as_bytes(), latin1()).expect("parses");
    let (_, params) = crate::parse::command_params(&p.message);
    let mut i = Isupport::default();
    i.apply(&params[1..params.len() - 1]);
    i
}

#[test]
fn isupport_gives_the_page_size_and_reference_kinds() {
    let i =
        isupport(":ergo.test 005 pb CHATHISTORY=100 MSGREFTYPES=msgid,timestamp :are supported");
    assert_eq!(i.page_size(), 100);
    assert!(i.takes_msgid());
    let i = isupport(":s 005 pb draft/CHATHISTORY=50 MSGREFTYPES=timestamp :are supported");
    assert_eq!(i.page_size(), 50);
    assert!(!i.takes_msgid());
    let i = isupport(":s 005 pb CHATHISTORY=0 CHATHISTORY=x :are supported");
    assert_eq!(i.page_size(), DEFAULT_PAGE);
    assert!(Isupport::default().takes_msgid());
}

#[test]
fn the_first_page_starts_at_the_mark_but_not_before_the_maximum_age() {
    let day = Duration::from_secs(86_400);
    assert_eq!(
        first_reference(1_000_000_000, 1_000_050_000, day),
        Reference::Time(1_000_000_000)
    );
    assert_eq!(
        first_reference(0, 200_000_000, day),
        Reference::Time(200_000_000 - 86_400_000)
    );
    assert_eq!(
        request("#c", &Reference::Time(0), 100),
        "CHATHISTORY AFTER #c timestamp=1970-01-01T00:00:00.000Z 100"
    );
}

fn page(
    c: &mut CatchUps<&'static str>,
    batch: &str,
    ids: &[&str],
    end_tag: bool,
) -> PageEnd<&'static str> {
    let now = Instant::now();
    c.batch_started(batch, "#C", end_tag, now);
    for (i, id) in ids.iter().enumerate() {
        assert!(c.owns_batch(batch));
        c.replayed(batch, Some(Timestamp(1000 + i as i64)), Some(id));
    }
    c.batch_ended(batch, now)
}

#[test]
fn pages_until_the_server_ends_the_pagination_holding_live_lines() {
    let mut c = CatchUps::default();
    let i = isupport(":s 005 pb CHATHISTORY=2 :are supported");
    let (first, held) = c.start("#c", Reference::Time(5), &i, Instant::now());
    assert!(held.is_empty());
    assert_eq!(
        first,
        "CHATHISTORY AFTER #c timestamp=1970-01-01T00:00:00.005Z 2"
    );
    assert!(c.is_active("#C"));
    // Live lines while catching up are held; one of them is also in the replay.
    assert_eq!(c.hold("#c", Some("b".into()), "live b"), None);
    assert_eq!(c.hold("#c", Some("z".into()), "live z"), None);
    assert_eq!(c.hold("#other", None, "elsewhere"), Some("elsewhere"));
    assert_eq!(
        page(&mut c, "1", &["a", "b"], false),
        PageEnd::Next("CHATHISTORY AFTER #c msgid=b 2".into())
    );
    // A short page still asks again (only ergo marks the end); an empty one ends it.
    assert_eq!(
        page(&mut c, "2", &["c"], false),
        PageEnd::Next("CHATHISTORY AFTER #c msgid=c 2".into())
    );
    assert_eq!(
        page(&mut c, "3", &[], false),
        PageEnd::Done {
            channel: "#c".into(),
            held: vec!["live z"]
        }
    );
    assert!(!c.is_active("#c"));
}

#[test]
fn the_end_tag_ends_it_and_made_up_ids_fall_back_to_times() {
    let mut c = CatchUps::default();
    let (_, _) = c.start(
        "#c",
        Reference::Time(5),
        &Isupport::default(),
        Instant::now(),
    );
    // ergo's HistServ lines carry `_` ids that cannot be looked up: the page goes on from the
    // newest real id, or from the newest time when there is none.
    assert_eq!(
        page(&mut c, "1", &["a", "_b"], false),
        PageEnd::Next("CHATHISTORY AFTER #c msgid=a 100".into())
    );
    assert_eq!(
        page(&mut c, "2", &["_c"], false),
        PageEnd::Next("CHATHISTORY AFTER #c timestamp=1970-01-01T00:00:01.000Z 100".into())
    );
    assert!(matches!(
        page(&mut c, "3", &["d"], true),
        PageEnd::Done { .. }
    ));
}

#[test]
fn a_page_that_does_not_move_forward_ends_it() {
    let mut c = CatchUps::default();
    let i = isupport(":s 005 pb CHATHISTORY=1 MSGREFTYPES=timestamp :are supported");
    let (_, _) = c.start("#c", Reference::Time(1000), &i, Instant::now());
    assert!(matches!(
        page(&mut c, "1", &["a"], false),
        PageEnd::Done { .. }
    ));
}

#[test]
fn unanswered_requests_expire_and_unrelated_batches_are_ignored() {
    let mut c: CatchUps<u32> = CatchUps::default();
    let start = Instant::now();
    let (_, _) = c.start("#c", Reference::Time(0), &Isupport::default(), start);
    c.hold("#c", None, 7);
    assert_eq!(c.batch_ended("nope", start), PageEnd::Unrelated);
    assert!(c.expired(start).is_empty());
    assert_eq!(
        c.expired(start + PAGE_TIMEOUT),
        vec![PageEnd::Done {
            channel: "#c".into(),
            held: vec![7]
        }]
    );
    assert_eq!(c.running(), 0);
    assert_eq!(c.abort("#c"), PageEnd::Unrelated);
}

fn replayed(line: &str) -> (IrcEvent, Source) {
    let p = parse_line(line.as_bytes(), latin1()).expect("parses");
    (p.event.expect("event"), p.source.expect("source"))
}

#[test]
fn histserv_bookkeeping_and_our_own_comings_and_goings_are_never_relayed() {
    let own = |n: &str| n.eq_ignore_ascii_case("pb");
    // Lines as ergo v2.19 sends them in a chathistory batch without draft/event-playback.
    for line in [
        "@time=2026-12-02T15:01:14.200Z;batch=1;msgid=_8jv :HistServ!HistServ@localhost PRIVMSG #x :pb joined the channel",
        "@batch=1;msgid=_9ab :HistServ!HistServ@localhost PRIVMSG #x :pb quit (connection closed)",
        "@batch=1 :HistServ!HistServ@localhost NOTICE #x :carol joined the channel",
        // With draft/event-playback: our own join and quit.
        "@batch=1;msgid=k1 :pb!~pb@localhost JOIN #x",
        "@batch=1;msgid=k2 :PB!~pb@localhost QUIT :Quit: patchbay is shutting down",
    ] {
        let (event, source) = replayed(line);
        assert!(
            matches!(replay_verdict(&event, &source, own), Replay::Drop(_)),
            "{line}"
        );
    }
    for line in [
        "@batch=1;msgid=m1 :carol!~c@localhost JOIN #x",
        "@batch=1;msgid=m2 :carol!~c@localhost QUIT :Quit: bye",
        "@batch=1;msgid=m3 :alice!~a@localhost PRIVMSG #x :hello",
        "@batch=1;msgid=m4 :pb!~pb@localhost PRIVMSG #x :<bob> relayed earlier",
    ] {
        let (event, source) = replayed(line);
        assert_eq!(
            replay_verdict(&event, &source, own),
            Replay::Relay,
            "{line}"
        );
    }
}
