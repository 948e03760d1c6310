//! Why a matterbridge setting has no place in a patchbay config. Each key an import did not
//! carry over is reported with the reason found here (keys compared without case), or a
//! general one.

/// Settings patchbay has no equivalent for, and why. Keys in lower case.
#[rustfmt::skip]
const REASONS: &[(&str, &str)] = &[
    ("key", "a channel key is only used for IRC channels"),
    ("skiptlsverify", "patchbay always verifies TLS certificates; for a self-signed server give its certificate as `tls_ca_file`"),
    ("bind", "patchbay does not choose the local address of its connections"),
    ("debug", "logging is set with RUST_LOG (e.g. RUST_LOG=patchbay=debug)"),
    ("debuglevel", "logging is set with RUST_LOG (e.g. RUST_LOG=patchbay=debug)"),
    ("messagequeue", "patchbay drops nothing when sending is slow: deliveries wait in the durable outbox"),
    ("messagelength", "patchbay splits long messages at the IRC line limit itself (see `max_lines`)"),
    ("messagesplit", "patchbay always splits long messages (see `max_lines`)"),
    ("messageclipped", "patchbay notes cut messages with its own `[N more lines cut]`"),
    ("messagesplitmaxcount", "outbound webhooks send one message per delivery"),
    ("verbosejoinpart", "patchbay's join and part events carry no ident@host"),
    ("userelaymsg", "patchbay does not use the RELAYMSG extension"),
    ("joindelay", "patchbay joins channels without a delay"),
    ("extractnicks", "patchbay does not take nicks out of other relay bots' text"),
    ("replacenicks", "patchbay's rewrite rules change message text only, never nicks"),
    ("stripnick", "patchbay does not strip characters from nicks"),
    ("nohomeserversuffix", "patchbay names Matrix users by their display name"),
    ("useusername", "patchbay names users by their display name"),
    ("htmldisable", "patchbay always sends Matrix messages with HTML formatting"),
    ("keepquotedreply", "patchbay relays replies as replies through its message-id map"),
    ("spoofusername", "patchbay shows relayed users through the route's nick format"),
    ("mediaserverupload", "patchbay uploads attachments to no media server; other networks get links (Matrix files through patchbay's own /media route, see `media_public_url`)"),
    ("mediaserverdownload", "patchbay uploads attachments to no media server; other networks get links (see `media_public_url`)"),
    ("mediadownloadpath", "patchbay writes attachments to no web server directory"),
    ("mediadownloadsize", "the Matrix connector's limit is `media_max_bytes`"),
    ("mediadownloadblacklist", "patchbay has no attachment filter"),
    ("mediaconverttgs", "Telegram is not a patchbay connector"),
    ("mediaconvertwebptopng", "Telegram is not a patchbay connector"),
    ("logfile", "patchbay logs to standard error; redirect it or run it under systemd"),
    ("ignorefailureonstart", "patchbay never stops the other accounts when one fails; it retries the failed one"),
    ("tengomodifymessage", "patchbay runs no Tengo scripts"),
    ("showtopicchange", "topic changes are relayed by kind (`topic` is in every route's default `kinds`)"),
    ("synctopic", "patchbay relays topic changes as events, it does not set topics"),
    ("showusertyping", "patchbay relays no typing notifications"),
    ("editsuffix", "each connector marks edits its own way (IRC: `edit_prefix`)"),
    ("editdisable", "patchbay relays edits; leave `edit` out of a route's `kinds` to stop them"),
    ("iconurl", "outbound webhooks send the author's own avatar"),
    ("prefixmessageswithnick", "the nick goes into the webhook's username"),
    ("nickformatter", "patchbay has no Slack or Mattermost API connector"),
    ("nicksperrow", "patchbay has no Slack or Mattermost API connector"),
    ("preservethreading", "patchbay has no Slack API connector"),
    ("usediscriminator", "patchbay has no Discord bot connector"),
    ("uselocalavatar", "patchbay has no Discord bot connector"),
    ("autowebhooks", "patchbay has no Discord bot connector; give each channel's webhook URL"),
    ("allowmention", "outbound Discord webhooks allow no mass mentions"),
    ("showembeds", "patchbay has no Discord bot connector"),
    ("skipversioncheck", "patchbay has no Mattermost API connector"),
    ("notls", "patchbay has no Mattermost API connector"),
    ("webhookbindaddress", "patchbay reads inbound hooks as JSON at /hooks/NAME/ROOM on its [http] listener; Slack and Mattermost outgoing webhooks (form posts) have no equivalent"),
    ("bindaddress", "patchbay reads inbound hooks as JSON at /hooks/NAME/ROOM on its [http] listener"),
    ("buffer", "patchbay's API keeps a durable log for `history_days` (7 by default) instead of an in-memory buffer"),
    ("tlsclientcertificate", "patchbay reads the certificate and the key from two PEM files: set `tls_client_cert_file` and `tls_client_key_file`"),
    ("nickservusername", "only used for QuakeNet's Q; sent as part of the AUTH line in `on_connect`"),
];

/// Why `key` (the last segment of a setting's path) is not carried over.
pub fn reason(key: &str) -> &'static str {
    let lower = key.to_ascii_lowercase();
    REASONS
        .iter()
        .find(|(k, _)| *k == lower)
        .map_or("patchbay has no such setting", |(_, reason)| reason)
}

/// Why an account of `protocol` is not carried over at all.
pub fn protocol_reason(protocol: &str) -> String {
    let name = match protocol {
        "xmpp" => "XMPP",
        "telegram" => "Telegram",
        "rocketchat" => "Rocket.Chat",
        "steam" => "Steam",
        "nctalk" => "Nextcloud Talk",
        "mumble" => "Mumble",
        "vk" => "VK",
        "whatsapp" | "whatsappmulti" => "WhatsApp",
        "zulip" => "Zulip",
        "keybase" => "Keybase",
        "msteams" => "Microsoft Teams",
        "gitter" => "Gitter",
        "harmony" => "Harmony",
        other => other,
    };
    format!("patchbay has no {name} connector; this account and its channels are left out")
}
