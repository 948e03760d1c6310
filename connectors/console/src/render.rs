//! How a relayed event looks on the console: one line, `[ACCOUNT/ROOM] <nick> text`, with
//! Markdown for formatting.

use patchbay_sdk::text::markdown::to_markdown;
use patchbay_sdk::{Delivery, Kind, MessageRef};

pub fn line(account: &str, delivery: &Delivery) -> String {
    let nick = &delivery.nick;
    let text = match &delivery.event.kind {
        Kind::Message { body, attachments } => {
            let mut text = format!("<{nick}> {}", to_markdown(body));
            for attachment in attachments {
                text.push_str(&format!(" [{}]", attachment.url));
            }
            text
        }
        Kind::Action { body } => format!("* {nick} {}", to_markdown(body)),
        Kind::Notice { body } => format!("-{nick}- {}", to_markdown(body)),
        Kind::Edit { target, body } => {
            format!(
                "<{nick}> (edit of {}) {}",
                reference(target),
                to_markdown(body)
            )
        }
        Kind::Delete { target } => format!("* {nick} deleted {}", reference(target)),
        Kind::Reaction { target, emoji } => {
            format!("* {nick} reacted {emoji} to {}", reference(target))
        }
        Kind::Join => format!("* {nick} joined"),
        Kind::Part {
            reason: Some(reason),
        } => format!("* {nick} left ({reason})"),
        Kind::Part { reason: None } => format!("* {nick} left"),
        Kind::Topic { topic } => format!("* {nick} set the topic: {topic}"),
        Kind::Nick { old, new } => format!("* {old} is now known as {new}"),
    };
    let reply = match (&delivery.quote, &delivery.event.reply_to) {
        (Some(quote), _) => format!(" (re {}: {})", quote.author, short(&quote.text)),
        (None, Some(target)) => format!(" (re {})", reference(target)),
        (None, None) => String::new(),
    };
    // One event, one line: newlines inside the text are shown as ⏎.
    format!("[{account}/{}] {text}{reply}", delivery.room).replace('\n', " ⏎ ")
}

fn reference(target: &MessageRef) -> String {
    match target {
        MessageRef::Native(id) => id.clone(),
        MessageRef::Gateway(id) => id.to_string(),
    }
}

fn short(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(40).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}
