//! Terminal output → text lines.
//!
//! Both chat servers talk to a terminal: they colour names, move the cursor left and erase the
//! line to print a message above the prompt, move up to replace the typed echo, clear the screen
//! at join. [`Screen`] is a small, pure model of just enough of a terminal to turn that byte
//! stream back into the lines a person would read:
//!
//! - CSI sequences (`ESC [ params final`) are consumed; erase-in-line (`K`) and erase-in-display
//!   (`J`) clear the line being built ("take the text after the last `ESC[K`"); all others
//!   (colours, cursor moves) are dropped. Cursor-up (`A`) is reported on the next line, because
//!   it means the line before is being redrawn.
//! - OSC strings and two-byte escapes are dropped; BEL and other C0 controls are dropped.
//! - `\n` ends a line; a `\r` followed by printable text starts the line over (ssh-chat's echo
//!   `[name] text\r`), while `\r\n` and `\r\r\n` are plain line ends.
//!
//! Bytes are kept raw until a line ends and then decoded as UTF-8, lossily, so a multi-byte
//! character split across SSH packets survives. Nothing here can panic on any input.

/// One line as the terminal shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScreenLine {
    /// The text, control sequences removed, trailing spaces trimmed (leading spaces kept: they
    /// carry meaning, e.g. ` * alice joined.` or a right-aligned timestamp).
    pub text: String,
    /// An erase-in-line or erase-in-display was seen while this line was built: servers draw
    /// live messages over the prompt this way, while history replay is written plainly.
    pub erased: bool,
    /// The cursor moved up before this line: it replaces the line above (Devzat's own echo).
    pub replaces_previous: bool,
}

/// Longest line kept; the rest of a longer line is dropped (servers cut far below this).
const MAX_LINE: usize = 64 * 1024;
/// Longest escape sequence kept before it is abandoned as garbage.
const MAX_ESCAPE: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Text,
    /// After ESC.
    Escape,
    /// Inside `ESC [`: parameters until a final byte 0x40..=0x7e.
    Csi,
    /// Inside `ESC ]`: until BEL or `ESC \`.
    Osc,
    /// ESC seen inside an OSC string.
    OscEscape,
}

/// Incremental terminal-output decoder.
#[derive(Debug)]
pub struct Screen {
    state: State,
    line: Vec<u8>,
    params: Vec<u8>,
    pending_cr: bool,
    erased: bool,
    cursor_up: bool,
}

impl Default for Screen {
    fn default() -> Self {
        Self::new()
    }
}

impl Screen {
    pub fn new() -> Self {
        Screen {
            state: State::Text,
            line: Vec::new(),
            params: Vec::new(),
            pending_cr: false,
            erased: false,
            cursor_up: false,
        }
    }

    /// Feed bytes from the server; returns the lines they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<ScreenLine> {
        let mut out = Vec::new();
        for &b in bytes {
            self.byte(b, &mut out);
        }
        out
    }

    /// The line being built (typically a prompt), decoded and with control sequences removed.
    pub fn partial(&self) -> String {
        String::from_utf8_lossy(&self.line).into_owned()
    }

    fn byte(&mut self, b: u8, out: &mut Vec<ScreenLine>) {
        match self.state {
            State::Text => self.text_byte(b, out),
            State::Escape => match b {
                b'[' => {
                    self.params.clear();
                    self.state = State::Csi;
                }
                b']' => self.state = State::Osc,
                // A two-byte escape (ESC 7, ESC M, ...): nothing to keep.
                _ => self.state = State::Text,
            },
            State::Csi => {
                if (0x40..=0x7e).contains(&b) {
                    self.csi(b);
                    self.state = State::Text;
                } else if (0x20..=0x3f).contains(&b) && self.params.len() < MAX_ESCAPE {
                    self.params.push(b);
                } else {
                    // Not a valid CSI: abandon it and treat the byte as ordinary input.
                    self.state = State::Text;
                    self.text_byte(b, out);
                }
            }
            State::Osc => match b {
                0x07 => self.state = State::Text,
                0x1b => self.state = State::OscEscape,
                b'\n' => {
                    // An unterminated OSC must not swallow the rest of the stream.
                    self.state = State::Text;
                    self.text_byte(b, out);
                }
                _ => {}
            },
            State::OscEscape => {
                self.state = if b == b'\\' { State::Text } else { State::Osc };
            }
        }
    }

    fn text_byte(&mut self, b: u8, out: &mut Vec<ScreenLine>) {
        match b {
            0x1b => self.state = State::Escape,
            b'\n' => self.end_line(out),
            b'\r' => self.pending_cr = true,
            b'\t' => self.push(b' '),
            // BEL, backspace and the other C0 controls, and DEL.
            0x00..=0x1f | 0x7f => {}
            _ => self.push(b),
        }
    }

    fn push(&mut self, b: u8) {
        if self.pending_cr {
            // Carriage return then text: the text overwrites the line from its start.
            self.pending_cr = false;
            self.line.clear();
        }
        if self.line.len() < MAX_LINE {
            self.line.push(b);
        }
    }

    fn csi(&mut self, final_byte: u8) {
        match final_byte {
            b'K' | b'J' => {
                self.line.clear();
                self.pending_cr = false;
                self.erased = true;
            }
            b'A' => self.cursor_up = true,
            _ => {}
        }
    }

    fn end_line(&mut self, out: &mut Vec<ScreenLine>) {
        self.pending_cr = false;
        let text = String::from_utf8_lossy(&self.line);
        out.push(ScreenLine {
            text: text.trim_end().to_owned(),
            erased: self.erased,
            replaces_previous: self.cursor_up,
        });
        self.line.clear();
        self.erased = false;
        self.cursor_up = false;
    }
}

/// Remove ANSI control sequences and control characters from a string (for text that arrives
/// already split into lines, like the plugin API's coloured names).
pub fn strip_ansi(text: &str) -> String {
    let mut screen = Screen::new();
    let mut lines: Vec<String> = screen
        .feed(text.as_bytes())
        .into_iter()
        .map(|l| l.text)
        .collect();
    lines.push(screen.partial());
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn texts(lines: &[ScreenLine]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn devzat_redraw_takes_text_after_the_last_erase() {
        let mut s = Screen::new();
        assert!(s.feed(b"\x1b[38;5;99mbob\x1b[39m: ").is_empty());
        assert_eq!(s.partial(), "bob: ");
        let lines =
            s.feed(b"\x1b[5D\x1b[K\x1b[38;5;120malice\x1b[39m: hi \x1b[1mthere\x1b[0m\r\nbob: ");
        assert_eq!(texts(&lines), ["alice: hi there"]);
        assert!(lines[0].erased);
        assert_eq!(s.partial(), "bob: ");
    }

    #[test]
    fn devzat_own_echo_is_marked_as_replacing_the_line_above() {
        let mut s = Screen::new();
        s.feed(b"bob: ");
        let lines = s.feed(b"hello\r\n\x1b[A\x1b[2K\x1b[38;5;99mbob\x1b[39m: hello\r\nbob: ");
        assert_eq!(texts(&lines), ["bob: hello", "bob: hello"]);
        assert!(!lines[0].replaces_previous);
        assert!(lines[1].replaces_previous);
    }

    #[test]
    fn ssh_chat_echo_with_a_lone_carriage_return_is_overwritten() {
        let mut s = Screen::new();
        s.feed(b"[bot] ");
        let lines = s.feed(b"[bot] hello\r[bot] \x1b[6D\x1b[Kalice: yo\r\r\n[bot] ");
        assert_eq!(texts(&lines), ["alice: yo"]);
        assert_eq!(s.partial(), "[bot] ");
    }

    #[test]
    fn history_lines_are_not_erased_and_utf8_split_across_packets_survives() {
        let mut s = Screen::new();
        let bytes = "carol: héllo ✓\r\r\n".as_bytes();
        let mut lines = s.feed(&bytes[..9]);
        lines.extend(s.feed(&bytes[9..]));
        assert_eq!(texts(&lines), ["carol: héllo ✓"]);
        assert!(!lines[0].erased);
    }

    #[test]
    fn bell_osc_and_tabs() {
        let mut s = Screen::new();
        let lines = s.feed(b"\x1b]0;title\x07alice -> \x07hi\tthere   \r\n");
        assert_eq!(texts(&lines), ["alice -> hi there"]);
        assert_eq!(strip_ansi("\x1b[31mred\x1b[0m"), "red");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
            let mut s = Screen::new();
            for chunk in &chunks {
                for line in s.feed(chunk) {
                    prop_assert!(!line.text.contains('\n'));
                    prop_assert!(!line.text.contains('\x1b'));
                }
            }
            let _ = s.partial();
        }

        #[test]
        fn plain_lines_come_back_unchanged(lines in proptest::collection::vec("[ -~]{0,80}", 0..10)) {
            let mut s = Screen::new();
            let mut bytes = Vec::new();
            for line in &lines {
                bytes.extend_from_slice(line.as_bytes());
                bytes.extend_from_slice(b"\r\n");
            }
            let got = s.feed(&bytes);
            let got: Vec<String> = got.into_iter().map(|l| l.text).collect();
            let want: Vec<String> = lines.iter().map(|l| l.trim_end().to_owned()).collect();
            prop_assert_eq!(got, want);
        }
    }
}
