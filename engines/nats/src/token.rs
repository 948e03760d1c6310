//! Names as subject tokens and bucket keys.
//!
//! A room or account name may hold anything (`irc.libera`, `#rust`, `!abc:example.org`), but a
//! subject token may not hold `.`, `*`, `>` or white space, and a key-value key only
//! `[-/_=.a-zA-Z0-9]`. [`token`] keeps letters, digits, `-` and `_` and writes every other byte
//! as `=HH`, which both allow and which [`untoken`] reverses.

/// `name` as one subject token (also a valid bucket key part).
pub fn token(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("={byte:02X}"));
        }
    }
    if out.is_empty() {
        out.push('=');
    }
    out
}

/// The name a [`token`] was made from; `None` if it is not one.
pub fn untoken(token: &str) -> Option<String> {
    if token == "=" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = token.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A short stable name for a long one (consumer names): FNV-1a, 64 bits, in hex.
pub fn short_hash(name: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_hold_only_safe_bytes_and_reverse() {
        for name in [
            "irc.libera",
            "#rust",
            "!abc:example.org",
            "a b*>c",
            "",
            "é=x",
        ] {
            let t = token(name);
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)),
                "{t}"
            );
            assert_eq!(untoken(&t).as_deref(), Some(name));
        }
        assert_eq!(untoken("=G1"), None);
    }
}
