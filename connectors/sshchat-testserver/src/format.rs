//! How each server draws things on a terminal: coloured names, Devzat's Markdown rendering and
//! wrapping, right-aligned timestamps, the erase-and-redraw sequences.

pub const ESC: &str = "\x1b";

/// A stable colour per name: mostly 256-colour, a few 24-bit, like Devzat's.
pub fn colour_name(name: &str) -> String {
    let hash = name
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    if hash % 5 == 0 {
        let (r, g, b) = ((hash >> 3) % 256, (hash >> 11) % 256, (hash >> 19) % 256);
        format!("{ESC}[38;2;{r};{g};{b}m{name}{ESC}[39m")
    } else {
        format!("{ESC}[38;5;{}m{name}{ESC}[39m", 17 + hash % 214)
    }
}

/// Visible width of a string with ANSI sequences.
pub fn visible_len(text: &str) -> usize {
    strip(text)
        .chars()
        .filter(|c| !c.is_control() && !is_zero_width(*c))
        .count()
}

/// Text as a person sees it: zero-width characters (hop trace, neutralised command words)
/// removed.
pub fn visible(text: &str) -> String {
    text.chars().filter(|c| !is_zero_width(*c)).collect()
}

/// Characters terminals draw with no width (zero-width space, joiners, invisible operators).
pub fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

/// Remove ANSI sequences (for transcripts and the plugin API's uncoloured view).
pub fn strip(text: &str) -> String {
    let mut out = String::new();
    let mut in_escape = false;
    for c in text.chars() {
        if in_escape {
            if c.is_ascii_alphabetic() {
                in_escape = false;
            }
        } else if c == '\x1b' {
            in_escape = true;
        } else if c != '\x07' {
            out.push(c);
        }
    }
    out
}

/// Devzat's rendering of a message: Markdown styling as ANSI (bold, italic, inline code),
/// emoji shortcodes, and its `\n` escape as a line break.
pub fn devzat_markdown(text: &str) -> String {
    let text = text.replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        // A backslash escapes Markdown punctuation.
        if let Some(after) = rest.strip_prefix('\\')
            && let Some(c) = after.chars().next()
            && c.is_ascii_punctuation()
        {
            out.push(c);
            rest = &after[1..];
        } else if let Some(after) = rest.strip_prefix("**")
            && let Some(end) = after.find("**")
        {
            out.push_str(&format!("{ESC}[1m{}{ESC}[0m", &after[..end]));
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix('`')
            && let Some(end) = after.find('`')
        {
            out.push_str(&format!("{ESC}[48;5;236m{}{ESC}[0m", &after[..end]));
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('_')
            && let Some(end) = after.find('_')
            && end > 0
        {
            out.push_str(&format!("{ESC}[3m{}{ESC}[0m", &after[..end]));
            rest = &after[end + 1..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    for (code, emoji) in [
        (":smile:", "😄"),
        (":+1:", "👍"),
        (":heart:", "❤️"),
        (":tada:", "🎉"),
        (":wave:", "👋"),
    ] {
        out = out.replace(code, emoji);
    }
    out
}

/// Wrap `text` to `width` columns after a prefix `indent` columns wide: the first line follows
/// the prefix, continuation lines are indented by it. Lines are joined with `\r\n`.
pub fn wrap(text: &str, indent: usize, width: usize) -> String {
    let avail = width.saturating_sub(indent).max(10);
    let pad = " ".repeat(indent);
    let mut lines: Vec<String> = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        let mut len = 0;
        for word in paragraph.split(' ') {
            let w = visible_len(word);
            if len > 0 && len + 1 + w > avail {
                lines.push(std::mem::take(&mut line));
                len = 0;
            }
            if len > 0 {
                line.push(' ');
                len += 1;
            }
            line.push_str(word);
            len += w;
        }
        lines.push(line);
    }
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
            out.push_str(&pad);
        }
        out.push_str(line);
    }
    out
}

/// Devzat's short duration: `< 1m`, `5m`, `1h 5m`, `2d 1h 5m`.
pub fn pretty_duration(d: std::time::Duration) -> String {
    let minutes = d.as_secs() / 60;
    if minutes == 0 {
        return "< 1m".into();
    }
    let (hours, minutes) = (minutes / 60, minutes % 60);
    if hours == 0 {
        return format!("{minutes}m");
    }
    let (days, hours) = (hours / 24, hours % 24);
    if days == 0 {
        return format!("{hours}h {minutes}m");
    }
    format!("{days}d {hours}h {minutes}m")
}

/// The right-aligned timestamp Devzat prints after a minute of silence: for a user without a
/// time zone, the time since they joined (`5m in`), on a terminal `width` wide.
pub fn timestamp_line(online: std::time::Duration, width: usize) -> String {
    let stamp = format!("{} in", pretty_duration(online));
    let width = width.min(1000);
    format!("{}{}", " ".repeat(width.saturating_sub(stamp.len())), stamp)
}

/// Devzat's name cleaning: first line only, spaces to `-`, visible ASCII, 27 characters.
pub(crate) fn devzat_clean(name: &str) -> String {
    name.lines()
        .next()
        .unwrap_or("")
        .replace(' ', "-")
        .chars()
        .filter(|c| (33..=126).contains(&(*c as u32)))
        .take(27)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_indents_continuations() {
        let text = wrap("one two three four", 5, 30);
        assert_eq!(text, "one two three four");
        let text = wrap("aaaa bbbb cccc dddd eeee ffff", 6, 19);
        assert_eq!(text, "aaaa bbbb\r\n      cccc dddd\r\n      eeee ffff");
    }

    #[test]
    fn markdown_renders_as_ansi() {
        assert_eq!(strip(&devzat_markdown("**hi** `x` :tada:")), "hi x 🎉");
        assert_eq!(devzat_markdown("a\\nb"), "a\nb");
        assert_eq!(devzat_markdown("\\[irc\\] \\*x\\*"), "[irc] *x*");
    }
}
