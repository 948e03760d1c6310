//! Tests of [`super`]: each dialect's formats, and the parsers never panic.

use super::*;
use crate::screen::Screen;
use proptest::prelude::*;

fn run(dialect: Dialect, name: &str, bytes: &[u8]) -> (Vec<Line>, LineParser) {
    let mut screen = Screen::new();
    let mut parser = LineParser::new(dialect, name);
    let mut out = Vec::new();
    for line in screen.feed(bytes) {
        out.extend(parser.push(&line));
    }
    out.extend(parser.flush());
    (out, parser)
}

fn msg(from: &str, text: &str) -> Line {
    Line::Message {
        from: from.into(),
        text: text.into(),
    }
}

#[test]
fn devzat_classifies_each_format() {
    assert_eq!(
        classify_devzat("alice: hi: there"),
        msg("alice", "hi: there")
    );
    assert_eq!(
        classify_devzat(" --> alice has joined the chat"),
        Line::Join {
            name: "alice".into()
        }
    );
    assert_eq!(
        classify_devzat(" <-- bob has left the chat"),
        Line::Part { name: "bob".into() }
    );
    assert_eq!(
        classify_devzat("alice -> psst"),
        Line::DirectIn {
            from: "alice".into(),
            text: "psst".into()
        }
    );
    assert_eq!(
        classify_devzat("                    3:04pm"),
        Line::Timestamp
    );
    assert_eq!(
        classify_devzat("Your username is already in use. Pick a different one:"),
        Line::NamePrompt
    );
    assert!(matches!(
        classify_devzat("Welcome to the chat. There are 2 more users"),
        Line::System { .. }
    ));
}

#[test]
fn devzat_skips_history_and_own_lines_and_joins_wrapped_lines() {
    let bytes = concat!(
        "\x1b[H\x1b[2Jcarol: old news\r\n",
        "Welcome to the chat. There are 1 more users\r\n",
        " --> bot has joined the chat\r\n",
        "bot: \x1b[4D\x1b[K\x1b[38;5;3malice\x1b[39m: a long\r\n",
        "       wrapped line\r\n",
        "bot: hello\r\n\x1b[A\x1b[2Kbot: hello\r\n",
        "\x1b[4D\x1b[K --> dave has joined the chat\r\n",
        "                                   12:01pm\r\nbot: "
    )
    .as_bytes();
    let (lines, parser) = run(Dialect::Devzat, "bot", bytes);
    assert!(parser.is_live());
    let lines: Vec<Line> = lines
        .into_iter()
        .filter(|l| !matches!(l, Line::Own { .. }))
        .collect();
    assert_eq!(
        lines,
        vec![
            msg("alice", "a long\nwrapped line"),
            Line::Join {
                name: "dave".into()
            }
        ]
    );
}

#[test]
fn devzat_own_arrival_after_cd_is_reported_and_others_arrivals_are_joins() {
    let bytes = concat!(
        " --> bot has joined the chat\r\nbot: ",
        "\x1b[5D\x1b[K --> bot has joined #dev\r\nbot: ",
        "\x1b[5D\x1b[K --> eve has joined #dev\r\nbot: "
    )
    .as_bytes();
    let (lines, _) = run(Dialect::Devzat, "bot", bytes);
    assert_eq!(
        lines,
        vec![
            Line::Entered {
                room: "#dev".into()
            },
            Line::Join { name: "eve".into() }
        ]
    );
}

#[test]
fn devzat_name_prompt_is_reported_during_join() {
    let (lines, _) = run(
        Dialect::Devzat,
        "bot",
        b"Your username is already in use. Pick a different one:\r\n> ",
    );
    assert_eq!(lines, vec![Line::NamePrompt]);
}

#[test]
fn ssh_chat_learns_guest_name_and_skips_history() {
    let bytes = b"alice: from history\r\r\n * bot joined. (Connected: 2)\r\r\n\
[Guest3] \x1b[8D\x1b[K * Guest3 joined. (Connected: 3)\r\r\n[Guest3] \x1b[8D\x1b[Kalice: hi\r\r\n\
[Guest3] \x1b[8D\x1b[K** alice waves\r\r\n[Guest3] \x1b[8D\x1b[K-> Message rejected: Rate limiting is in effect.\r\r\n\
[Guest3] \x1b[8D\x1b[K[PM from alice] psst\r\r\n[Guest3] \x1b[8D\x1b[K * alice left. (After 7 seconds)\r\r\n[Guest3] ";
    let (lines, parser) = run(Dialect::SshChat, "bot", bytes);
    assert_eq!(parser.name(), "Guest3");
    assert_eq!(
        lines,
        vec![
            msg("alice", "hi"),
            Line::Emote {
                from: "alice".into(),
                text: "waves".into()
            },
            Line::RateLimited,
            Line::DirectIn {
                from: "alice".into(),
                text: "psst".into()
            },
            Line::Part {
                name: "alice".into()
            },
        ]
    );
}

#[test]
fn ssh_chat_someone_elses_join_before_ours_is_not_taken_for_ours() {
    let bytes =
        b"\x1b[K * carol joined. (Connected: 2)\r\r\n\x1b[K * bot joined. (Connected: 3)\r\r\n";
    let (lines, parser) = run(Dialect::SshChat, "bot", bytes);
    assert_eq!(parser.name(), "bot");
    assert!(parser.is_live());
    assert_eq!(
        lines,
        vec![Line::Join {
            name: "carol".into()
        }]
    );
}

#[test]
fn ssh_chat_nick_change_of_others_and_of_us() {
    assert_eq!(
        classify_ssh_chat(" * old is now known as new."),
        Line::Nick {
            old: "old".into(),
            new: "new".into()
        }
    );
}

#[test]
fn devbot_speaks_as_the_server_not_as_a_person() {
    let bytes = concat!(
        " --> bot has joined the chat\r\nbot: ",
        "\x1b[5D\x1b[Kdevbot: Server going down! This is probably because it is being updated.\r\nbot: ",
        "\x1b[5D\x1b[Kalice: hi\r\nbot: "
    )
    .as_bytes();
    let (lines, _) = run(Dialect::Devzat, "bot", bytes);
    assert_eq!(
        lines,
        vec![
            Line::Devbot {
                text: "Server going down! This is probably because it is being updated.".into()
            },
            msg("alice", "hi")
        ]
    );
}

#[test]
fn ssh_chat_echo_of_our_enter_confirms_the_line() {
    // As the real ssh-chat sends it in bot mode: the line editor's echo, ended by the Enter.
    let bytes = b"\x1b[K * bot joined. (Connected: 2)\r\r\n[bot] hello one\r\n[bot] \x1b[6D\x1b[K[bot] \r\n";
    let (lines, _) = run(Dialect::SshChat, "bot", bytes);
    assert_eq!(
        lines,
        vec![Line::Own {
            text: "hello one".into(),
            redraw: true
        }]
    );
}

#[test]
fn room_moves_typed_by_others_are_not_chat() {
    assert!(is_room_command("cd #dev") && is_room_command("cd ..") && is_room_command("cd"));
    assert!(!is_room_command("cd is a command") && !is_room_command("cdrom"));
    let bytes = concat!(
        " --> bot has joined the chat\r\nbot: ",
        "\x1b[5D\x1b[Kann: cd #dev\r\nbot: ",
        "\x1b[5D\x1b[Kann is joining #dev\r\nbot: "
    )
    .as_bytes();
    let (lines, _) = run(Dialect::Devzat, "bot", bytes);
    assert_eq!(lines, vec![Line::Part { name: "ann".into() }]);
}

#[test]
fn devzat_own_copy_after_a_timestamp_still_confirms_the_line() {
    // The real Devzat after a minute of silence: the typed echo, then the cursor moves up and
    // the timestamp replaces the echo, then the server's copy of the line follows plainly.
    let bytes = concat!(
        " --> bot has joined the chat\r\nbot: after a minute\r\n",
        "\x1b[A\x1b[2K                    1m in\r\nbot: after a minute\r\nbot: "
    )
    .as_bytes();
    let (lines, _) = run(Dialect::Devzat, "bot", bytes);
    assert_eq!(
        lines,
        vec![
            Line::Own {
                text: "after a minute".into(),
                redraw: false
            },
            Line::Own {
                text: "after a minute".into(),
                redraw: true
            }
        ]
    );
}

proptest! {
    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        for dialect in [Dialect::Devzat, Dialect::SshChat] {
            let _ = run(dialect, "bot", &bytes);
        }
    }

    #[test]
    fn parsers_never_panic_on_text(lines in proptest::collection::vec("\\PC{0,60}", 0..12)) {
        for line in &lines {
            let _ = classify_devzat(line);
            let _ = classify_ssh_chat(line);
        }
    }
}
