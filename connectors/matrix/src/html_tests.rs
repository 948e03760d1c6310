use super::*;
use proptest::prelude::*;

#[test]
fn parses_what_element_sends() {
    let text = from_html(
        "hi <strong>bold</strong> <em>it</em> <del>gone</del> <code>x &lt; y</code> \
         <a href=\"https://example.org/?a=1&amp;b=2\">docs</a>",
    );
    let spans = text.spans();
    assert_eq!(
        text.to_plain(),
        "hi bold it gone x < y docs (https://example.org/?a=1&b=2)"
    );
    assert!(spans[1].style.bold);
    assert!(spans[3].style.italic);
    assert!(spans[5].style.strike);
    assert_eq!(spans[7].kind, SpanKind::Code);
    assert_eq!(
        spans[9].kind,
        SpanKind::Link {
            url: "https://example.org/?a=1&b=2".into()
        }
    );
}

#[test]
fn parses_blocks() {
    let text = from_html(
        "<p>first</p>\n<blockquote>\n<p>quoted<br>two</p>\n</blockquote>\n<ul>\n<li>a</li>\n\
         <li><p>b</p></li>\n</ul>\n<pre><code class=\"language-rust\">fn x() {}\n</code></pre>\n\
         <ol><li>one</li></ol>",
    );
    assert_eq!(
        text.to_plain(),
        "first\n> quoted\n> two\n- a\n- b\nfn x() {}\n1. one"
    );
    assert!(matches!(&text.blocks[3], Block::Code { lang: Some(l), .. } if l == "rust"));
    assert!(matches!(&text.blocks[4], Block::List { ordered: true, .. }));
}

#[test]
fn drops_reply_fallbacks_and_unsafe_markup() {
    let text = from_html(
        "<mx-reply><blockquote><a href=\"https://matrix.to/#/!r/$e\">In reply to</a> \
         <a href=\"https://matrix.to/#/@bob:x\">@bob:x</a><br>old</blockquote></mx-reply>\
         new <script>alert(1)</script><b onclick=\"x()\">text</b>",
    );
    assert_eq!(text.to_plain(), "new text");
}

#[test]
fn parses_mentions_and_colours() {
    let text = from_html(
        "<a href=\"https://matrix.to/#/%40alice%3Aexample.org\">Alice</a>: \
         <font data-mx-color=\"#ff0000\">red</font> <span data-mx-bg-color=\"#00ff00\">bg</span>",
    );
    let spans = text.spans();
    assert_eq!(
        spans[0].kind,
        SpanKind::Mention {
            id: "@alice:example.org".into()
        }
    );
    assert_eq!(spans[0].text, "Alice");
    assert_eq!(spans[2].style.color, Some(Color { r: 255, g: 0, b: 0 }));
    assert_eq!(
        spans[4].style.background,
        Some(Color { r: 0, g: 255, b: 0 })
    );
}

#[test]
fn collapses_whitespace_like_a_browser() {
    let text = from_html("  a \n  b<br>\n c  ");
    assert_eq!(text.to_plain(), "a b\nc");
}

#[test]
fn renders_escaped_and_styled() {
    let text = RichText::from_spans(vec![
        Span::styled("alice", Style::bold()),
        Span::text(": <script>&  two\nlines"),
    ]);
    assert_eq!(
        to_html(&text),
        "<strong>alice</strong>: &lt;script&gt;&amp; &nbsp;two<br>lines"
    );
}

#[test]
fn renders_unsafe_links_as_text() {
    let text = RichText::from_spans(vec![Span {
        text: "click".into(),
        style: Style::default(),
        kind: SpanKind::Link {
            url: "javascript:alert(1)".into(),
        },
    }]);
    let html = to_html(&text);
    assert!(!html.contains("<a"), "{html}");
    assert_eq!(from_html(&html).to_plain(), "click (javascript:alert(1))");
}

#[test]
fn renders_mentions_of_matrix_users_as_pills() {
    let text = RichText::from_spans(vec![
        Span {
            text: "Alice".into(),
            style: Style::default(),
            kind: SpanKind::Mention {
                id: "@alice:example.org".into(),
            },
        },
        Span {
            text: " bob".into(),
            style: Style::default(),
            kind: SpanKind::Mention { id: "bob".into() },
        },
    ]);
    assert_eq!(
        to_html(&text),
        "<a href=\"https://matrix.to/#/@alice:example.org\">Alice</a> bob"
    );
}

// --- properties -------------------------------------------------------------------------------

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9<>&\"'#;é€ -]{1,8}"
        .prop_map(|w| w.trim().to_owned())
        .prop_filter("empty", |w| !w.is_empty())
}

fn color() -> impl Strategy<Value = Option<Color>> {
    prop::option::of(any::<(u8, u8, u8)>().prop_map(|(r, g, b)| Color { r, g, b }))
}

fn span() -> impl Strategy<Value = Span> {
    (
        prop::collection::vec(word(), 1..4),
        any::<(bool, bool, bool, bool)>(),
        color(),
        color(),
        0..4u8,
        "[a-z&\"<>/?=]{0,8}",
    )
        .prop_map(
            |(words, (b, i, u, s), color, background, kind, path)| Span {
                text: words.join(" "),
                style: Style {
                    bold: b,
                    italic: i,
                    underline: u,
                    strike: s,
                    color,
                    background,
                },
                kind: match kind {
                    0 => SpanKind::Text,
                    1 => SpanKind::Code,
                    2 => SpanKind::Link {
                        url: format!("https://example.org/{path}"),
                    },
                    _ => SpanKind::Mention {
                        id: "@alice:example.org".into(),
                    },
                },
            },
        )
}

fn paragraph() -> impl Strategy<Value = Block> {
    prop::collection::vec((span(), prop::bool::ANY), 1..5).prop_map(|spans| {
        let mut out = Vec::new();
        for (span, newline) in spans {
            if !out.is_empty() {
                out.push(Span::text(if newline { "\n" } else { " " }));
            }
            out.push(span);
        }
        Block::Paragraph { spans: out }
    })
}

fn block() -> impl Strategy<Value = Block> {
    let leaf = prop_oneof![
        3 => paragraph(),
        1 => ("[a-z]{0,5}", "[ -~\n]{1,40}").prop_map(|(lang, code)| Block::Code {
            lang: (!lang.is_empty()).then_some(lang),
            code,
        }),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(|blocks| Block::Quote { blocks }),
            (
                any::<bool>(),
                prop::collection::vec(prop::collection::vec(inner, 1..3), 1..3)
            )
                .prop_map(|(ordered, items)| Block::List { ordered, items }),
        ]
    })
}

/// The canonical form of a text: adjacent spans of one style and kind merged, code blocks
/// without trailing newlines, consecutive paragraphs kept apart.
fn normalize(blocks: &[Block]) -> Vec<Block> {
    blocks
        .iter()
        .map(|block| match block {
            Block::Paragraph { spans } => {
                let mut merged: Vec<Span> = Vec::new();
                for span in spans {
                    if let Some(last) = merged.last_mut()
                        && last.style == span.style
                        && last.kind == span.kind
                        && span.kind != SpanKind::Code
                    {
                        last.text.push_str(&span.text);
                    } else {
                        merged.push(span.clone());
                    }
                }
                Block::Paragraph { spans: merged }
            }
            Block::Code { lang, code } => Block::Code {
                lang: lang.clone(),
                code: code.trim_end_matches('\n').to_owned(),
            },
            Block::Quote { blocks } => Block::Quote {
                blocks: normalize(blocks),
            },
            Block::List { ordered, items } => Block::List {
                ordered: *ordered,
                items: items.iter().map(|item| normalize(item)).collect(),
            },
        })
        .collect()
}

proptest! {
    #[test]
    fn html_round_trip_keeps_the_model(blocks in prop::collection::vec(block(), 1..4)) {
        let text = RichText { blocks };
        let html = to_html(&text);
        let back = from_html(&html);
        prop_assert_eq!(normalize(&back.blocks), normalize(&text.blocks), "html: {}", html);
    }

    #[test]
    fn rendered_html_survives_the_spec_sanitizer(blocks in prop::collection::vec(block(), 1..4)) {
        let html = to_html(&RichText { blocks });
        let tree = Html::parse(&html);
        tree.sanitize_with(&SanitizerConfig::strict());
        prop_assert_eq!(from_html(&tree.to_string()), from_html(&html), "html: {}", html);
    }

    #[test]
    fn parsing_arbitrary_markup_never_panics(input in "[<>a-z/=\" &;#!-]{0,80}") {
        let text = from_html(&input);
        let _ = to_html(&text);
    }
}
