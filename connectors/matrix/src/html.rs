//! Matrix HTML (`org.matrix.custom.html` formatted bodies) ↔ rich text.
//!
//! Parsing first runs the Matrix-spec sanitizer of `ruma-html` (which also drops reply
//! fallbacks), then walks the tree into the rich-text model: bold, italic, underline, strike,
//! colours, inline code, code blocks, links, `matrix.to` user mentions, quotes and lists. HTML
//! collapses whitespace, so runs of spaces and newlines in text nodes become one space and `<br>`
//! is the line break.
//!
//! Rendering writes only elements and attributes the spec allows, escapes every text and
//! attribute value, and keeps links only for the schemes the spec allows, so its output is
//! sanitized by construction. Runs of spaces are kept visible with `&nbsp;`.

use std::fmt::Write;

use patchbay_sdk::RichText;
use patchbay_sdk::text::{Block, Color, Span, SpanKind, Style};
use ruma_html::{Html, NodeData, NodeRef, SanitizerConfig};

/// The URL schemes a rendered link may use (the Matrix spec's list for `a href`).
const LINK_SCHEMES: [&str; 6] = ["https:", "http:", "ftp:", "mailto:", "magnet:", "matrix:"];

/// Parse a Matrix formatted body into rich text.
pub fn from_html(html: &str) -> RichText {
    let tree = Html::parse(html);
    // Script and style contents are code, not text: drop them whole.
    let config = SanitizerConfig::compat()
        .remove_reply_fallback()
        .remove_elements(["script", "style", "head", "title", "template"]);
    tree.sanitize_with(&config);
    let mut out = Vec::new();
    blocks_of(tree.children(), Style::default(), &mut out);
    RichText { blocks: out }
}

/// Collects the spans of the paragraph being read.
#[derive(Default)]
struct Para {
    spans: Vec<Span>,
}

impl Para {
    /// Append text, collapsing whitespace as HTML does (unless `verbatim`).
    fn push(&mut self, text: &str, style: Style, kind: &SpanKind, verbatim: bool) {
        let mut collapsed = String::with_capacity(text.len());
        if verbatim {
            collapsed.push_str(text);
        } else {
            let mut last_space = self.ends_with_space();
            for ch in text.chars() {
                if ch.is_ascii_whitespace() {
                    if !last_space {
                        collapsed.push(' ');
                    }
                    last_space = true;
                } else {
                    // A no-break space is how renderers keep runs of spaces visible.
                    collapsed.push(if ch == '\u{a0}' { ' ' } else { ch });
                    last_space = false;
                }
            }
        }
        if collapsed.is_empty() {
            return;
        }
        if let Some(last) = self.spans.last_mut()
            && last.style == style
            && last.kind == *kind
            && *kind != SpanKind::Code
        {
            last.text.push_str(&collapsed);
            return;
        }
        self.spans.push(Span {
            text: collapsed,
            style,
            kind: kind.clone(),
        });
    }

    /// True at the start of a line or after a space: a following space is collapsed away.
    fn ends_with_space(&self) -> bool {
        match self.spans.last() {
            None => true,
            Some(span) => span.text.ends_with([' ', '\n']),
        }
    }

    /// A `<br>`: trailing spaces before it are dropped.
    fn line_break(&mut self, style: Style, kind: &SpanKind) {
        self.trim_end(' ');
        self.push("\n", style, kind, true);
    }

    /// Drop the `end` characters the paragraph ends with, and the spans that leaves empty.
    fn trim_end(&mut self, end: char) {
        while let Some(last) = self.spans.last_mut() {
            let trimmed = last.text.trim_end_matches(end).len();
            last.text.truncate(trimmed);
            if last.text.is_empty() {
                self.spans.pop();
            } else {
                break;
            }
        }
    }

    /// Close the paragraph into `out` if it holds any text.
    fn flush(&mut self, out: &mut Vec<Block>) {
        self.trim_end(' ');
        self.trim_end('\n');
        if let Some(first) = self.spans.first_mut() {
            first.text = first.text.trim_start_matches([' ', '\n']).to_owned();
        }
        self.spans.retain(|span| !span.text.is_empty());
        if !self.spans.is_empty() {
            out.push(Block::Paragraph {
                spans: std::mem::take(&mut self.spans),
            });
        }
    }
}

fn element_name(node: &NodeRef) -> Option<String> {
    node.as_element().map(|el| el.name.local.to_string())
}

fn attr(node: &NodeRef, name: &str) -> Option<String> {
    let el = node.as_element()?;
    let attrs = el.attrs.borrow();
    attrs
        .iter()
        .find(|a| &*a.name.local == name)
        .map(|a| a.value.to_string())
}

fn is_block(name: &str) -> bool {
    matches!(
        name,
        "p" | "div"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "blockquote"
            | "ul"
            | "ol"
            | "li"
            | "pre"
            | "hr"
            | "table"
            | "thead"
            | "tbody"
            | "tr"
            | "details"
            | "summary"
            | "caption"
    )
}

/// Read a sequence of sibling nodes as blocks.
fn blocks_of(children: impl Iterator<Item = NodeRef>, style: Style, out: &mut Vec<Block>) {
    let mut para = Para::default();
    for node in children {
        let name = element_name(&node);
        match name.as_deref() {
            Some(name) if is_block(name) => {
                para.flush(out);
                block(&node, name, style, out);
            }
            _ => inline(&node, style, &SpanKind::Text, &mut para),
        }
    }
    para.flush(out);
}

fn block(node: &NodeRef, name: &str, style: Style, out: &mut Vec<Block>) {
    match name {
        "blockquote" => {
            let mut inner = Vec::new();
            blocks_of(node.children(), style, &mut inner);
            out.push(Block::Quote { blocks: inner });
        }
        "ul" | "ol" => {
            let mut items = Vec::new();
            let mut loose = Para::default();
            for child in node.children() {
                if element_name(&child).as_deref() == Some("li") {
                    let mut item = Vec::new();
                    blocks_of(child.children(), style, &mut item);
                    items.push(item);
                } else {
                    // Stray text between items becomes an item of its own.
                    inline(&child, style, &SpanKind::Text, &mut loose);
                    let mut item = Vec::new();
                    loose.flush(&mut item);
                    if !item.is_empty() {
                        items.push(item);
                    }
                }
            }
            out.push(Block::List {
                ordered: name == "ol",
                items,
            });
        }
        "pre" => {
            let mut code = String::new();
            let mut lang = None;
            for child in node.children() {
                if element_name(&child).as_deref() == Some("code") {
                    lang = attr(&child, "class").and_then(|class| {
                        class
                            .split_whitespace()
                            .find_map(|c| c.strip_prefix("language-").map(str::to_owned))
                    });
                }
                text_content(&child, &mut code);
            }
            out.push(Block::Code { lang, code });
        }
        "hr" => out.push(Block::Paragraph {
            spans: vec![Span::text("---")],
        }),
        "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
            let bold = Style {
                bold: true,
                ..style
            };
            blocks_of(node.children(), bold, out);
        }
        _ => blocks_of(node.children(), style, out),
    }
}

/// All the text under a node, `<br>` as a newline (for `<pre>`).
fn text_content(node: &NodeRef, out: &mut String) {
    match node.data() {
        NodeData::Text(text) => out.push_str(&text.borrow()),
        NodeData::Element(el) if &*el.name.local == "br" => out.push('\n'),
        _ => node.children().for_each(|child| text_content(&child, out)),
    }
}

fn parse_color(value: &str) -> Option<Color> {
    let hex = value.trim().strip_prefix('#')?;
    if hex.len() != 6 || !hex.is_ascii() {
        return None;
    }
    let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some(Color {
        r: channel(0)?,
        g: channel(2)?,
        b: channel(4)?,
    })
}

/// The Matrix user id a link points at, for `https://matrix.to/#/@user:server` and
/// `matrix:u/user:server` links.
fn mentioned_user(href: &str) -> Option<String> {
    let id = if let Some(rest) = href.strip_prefix("https://matrix.to/#/") {
        let id = percent_decode(rest.split('?').next().unwrap_or(rest));
        id.starts_with('@').then_some(id)?
    } else if let Some(rest) = href.strip_prefix("matrix:u/") {
        format!(
            "@{}",
            percent_decode(rest.split('?').next().unwrap_or(rest))
        )
    } else {
        return None;
    };
    is_user_id(&id).then_some(id)
}

/// A syntactically plausible Matrix user id: `@localpart:server`.
pub fn is_user_id(id: &str) -> bool {
    match id.strip_prefix('@').and_then(|rest| rest.split_once(':')) {
        Some((local, server)) => {
            !local.is_empty() && !server.is_empty() && !id.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn inline(node: &NodeRef, style: Style, kind: &SpanKind, para: &mut Para) {
    let name = match node.data() {
        NodeData::Text(text) => {
            para.push(&text.borrow(), style, kind, *kind == SpanKind::Code);
            return;
        }
        NodeData::Element(el) => el.name.local.to_string(),
        _ => return,
    };
    let mut style = style;
    let mut kind = kind.clone();
    match name.as_str() {
        "br" => return para.line_break(style, &kind),
        "img" => {
            // Inline images (custom emoji) show as their alt text.
            let alt = attr(node, "alt").or_else(|| attr(node, "title"));
            if let Some(alt) = alt {
                para.push(&alt, style, &kind, false);
            }
            return;
        }
        "b" | "strong" => style.bold = true,
        "i" | "em" => style.italic = true,
        "u" | "ins" => style.underline = true,
        "s" | "del" | "strike" => style.strike = true,
        "code" => kind = SpanKind::Code,
        "a" => {
            if let Some(href) = attr(node, "href") {
                kind = match mentioned_user(&href) {
                    Some(id) => SpanKind::Mention { id },
                    None => SpanKind::Link { url: href },
                };
            }
        }
        "font" | "span" => {
            let color = attr(node, "data-mx-color").or_else(|| attr(node, "color"));
            if let Some(color) = color.as_deref().and_then(parse_color) {
                style.color = Some(color);
            }
            if let Some(bg) = attr(node, "data-mx-bg-color")
                .as_deref()
                .and_then(parse_color)
            {
                style.background = Some(bg);
            }
        }
        "td" | "th" => {
            for child in node.children() {
                inline(&child, style, &kind, para);
            }
            para.push(" ", style, &SpanKind::Text, false);
            return;
        }
        _ if is_block(&name) => {
            // A block inside inline markup: keep its text on lines of its own.
            para.line_break(style, &kind);
            for child in node.children() {
                inline(&child, style, &kind, para);
            }
            para.line_break(style, &kind);
            return;
        }
        _ => {}
    }
    let written = |para: &Para| para.spans.iter().map(|s| s.text.len()).sum::<usize>();
    let before = written(para);
    for child in node.children() {
        inline(&child, style, &kind, para);
    }
    // An empty link still shows its target, an empty pill the user it names.
    if let SpanKind::Link { url: shown } | SpanKind::Mention { id: shown } = &kind
        && written(para) == before
    {
        para.push(shown, style, &kind, false);
    }
}

/// Render rich text as Matrix HTML.
pub fn to_html(text: &RichText) -> String {
    let mut out = String::new();
    render_blocks(&text.blocks, &mut out);
    out
}

/// Render a mention of a Matrix user as a pill link.
pub fn user_pill(id: &str, name: &str) -> String {
    let mut out = String::new();
    let _ = write!(out, "<a href=\"https://matrix.to/#/{}\">", escape_attr(id));
    escape_text(name, &mut out);
    out.push_str("</a>");
    out
}

fn render_blocks(blocks: &[Block], out: &mut String) {
    // A lone paragraph is sent bare, as clients do; several are wrapped in `<p>`.
    let wrap = blocks.len() > 1;
    for block in blocks {
        match block {
            Block::Paragraph { spans } => {
                if wrap {
                    out.push_str("<p>");
                }
                render_spans(spans, out);
                if wrap {
                    out.push_str("</p>");
                }
            }
            Block::Code { lang, code } => {
                out.push_str("<pre><code");
                if let Some(lang) = lang.as_deref().filter(|l| is_language_name(l)) {
                    let _ = write!(out, " class=\"language-{lang}\"");
                }
                out.push('>');
                escape_text(code, out);
                out.push_str("</code></pre>");
            }
            Block::Quote { blocks } => {
                out.push_str("<blockquote>");
                render_blocks(blocks, out);
                out.push_str("</blockquote>");
            }
            Block::List { ordered, items } => {
                out.push_str(if *ordered { "<ol>" } else { "<ul>" });
                for item in items {
                    out.push_str("<li>");
                    render_blocks(item, out);
                    out.push_str("</li>");
                }
                out.push_str(if *ordered { "</ol>" } else { "</ul>" });
            }
        }
    }
}

fn is_language_name(lang: &str) -> bool {
    !lang.is_empty()
        && lang
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '#' | '.'))
}

fn render_spans(spans: &[Span], out: &mut String) {
    // Whether the last character written was a (collapsible) space or a line start.
    let mut at_space = true;
    for span in spans {
        let mut closers = Vec::new();
        let style = span.style;
        if style.color.is_some() || style.background.is_some() {
            out.push_str("<font");
            if let Some(c) = style.color {
                let hex = hex_color(c);
                let _ = write!(out, " data-mx-color=\"{hex}\" color=\"{hex}\"");
            }
            if let Some(c) = style.background {
                let _ = write!(out, " data-mx-bg-color=\"{}\"", hex_color(c));
            }
            out.push('>');
            closers.push("</font>");
        }
        for (on, open, close) in [
            (style.bold, "<strong>", "</strong>"),
            (style.italic, "<em>", "</em>"),
            (style.underline, "<u>", "</u>"),
            (style.strike, "<del>", "</del>"),
        ] {
            if on {
                out.push_str(open);
                closers.push(close);
            }
        }
        match &span.kind {
            SpanKind::Text => at_space = escape_inline(&span.text, at_space, out),
            SpanKind::Code => {
                out.push_str("<code>");
                escape_text(&span.text, out);
                out.push_str("</code>");
                at_space = false;
            }
            SpanKind::Link { url } if LINK_SCHEMES.iter().any(|s| starts_with_ci(url, s)) => {
                let _ = write!(out, "<a href=\"{}\">", escape_attr(url));
                at_space = escape_inline(&span.text, at_space, out);
                out.push_str("</a>");
            }
            SpanKind::Link { url } => {
                // A scheme the spec does not allow (javascript:, data:): show it, do not link it.
                at_space = escape_inline(&span.text, at_space, out);
                if span.text != *url {
                    out.push_str(" (");
                    escape_text(url, out);
                    out.push(')');
                    at_space = false;
                }
            }
            SpanKind::Mention { id } if is_user_id(id) => {
                let _ = write!(out, "<a href=\"https://matrix.to/#/{}\">", escape_attr(id));
                at_space = escape_inline(&span.text, at_space, out);
                out.push_str("</a>");
            }
            SpanKind::Mention { .. } => at_space = escape_inline(&span.text, at_space, out),
        }
        for close in closers.into_iter().rev() {
            out.push_str(close);
        }
    }
}

fn starts_with_ci(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn hex_color(c: Color) -> String {
    format!("#{:02x}{:02x}{:02x}", c.r, c.g, c.b)
}

/// Escape running text: `\n` becomes `<br>`, and a space that HTML would collapse (after
/// another space or at a line start) becomes `&nbsp;`. Returns whether the text ended at a
/// collapsible position.
fn escape_inline(text: &str, mut at_space: bool, out: &mut String) -> bool {
    for ch in text.chars() {
        match ch {
            '\n' => {
                out.push_str("<br>");
                at_space = true;
            }
            ' ' | '\t' if at_space => out.push_str("&nbsp;"),
            ' ' | '\t' => {
                out.push(' ');
                at_space = true;
            }
            '\r' => {}
            _ => {
                push_escaped(ch, out);
                at_space = false;
            }
        }
    }
    at_space
}

fn escape_text(text: &str, out: &mut String) {
    text.chars().for_each(|ch| push_escaped(ch, out));
}

fn push_escaped(ch: char, out: &mut String) {
    match ch {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        '\u{a0}' => out.push_str("&nbsp;"),
        _ => out.push(ch),
    }
}

fn escape_attr(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_text(text, &mut out);
    out
}

#[cfg(test)]
#[path = "html_tests.rs"]
mod tests;
