//! The hop trace, carried invisibly in the text.
//!
//! SSH chats have no message metadata, so a message another patchbay relayed looks like any
//! other: two gateways bridging the same two rooms would relay each other's relays forever. Each
//! relayed message therefore ends with its hop trace written in zero-width characters (four of
//! them as base-4 digits, between two invisible delimiters). A patchbay reading such a message
//! restores the trace, and its router then refuses to send the message along a route the trace
//! already holds, so a loop ends after at most one round.
//!
//! People see nothing; clients that render zero-width characters visibly see a short smear at
//! the end of relayed lines, which `hop_trace = false` turns off.
//!
//! The other invisible mark, [`ZWSP`] in front of a relayed line that starts with a command
//! word (written by [`crate::render`]), is defined here too: [`extract`] removes both on the
//! way in, and `render` builds on this module, never the other way round.

use patchbay_sdk::Hop;

/// Zero-width space: invisible, but it stops a first word from matching a command.
pub const ZWSP: char = '\u{200B}';

const START: char = '\u{2063}';
const END: char = '\u{2064}';
const DIGITS: [char; 4] = ['\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}'];
/// Field and record separators inside the encoded bytes.
const FIELD: u8 = 0x1f;
const RECORD: u8 = 0x1e;
/// Largest encoded trace, in bytes before encoding (each becomes 4 characters of 3 bytes).
const MAX_TRACE: usize = 96;

/// The invisible trailer for `hops` (empty when there are none). The newest hops are kept when
/// the trace is too long.
pub fn trailer(hops: &[Hop]) -> String {
    let mut records: Vec<Vec<u8>> = Vec::new();
    let mut total = 0;
    for hop in hops.iter().rev() {
        let mut record = Vec::new();
        record.extend(hop.gateway.bytes().filter(|b| *b != FIELD && *b != RECORD));
        record.push(FIELD);
        record.extend(hop.route.bytes().filter(|b| *b != FIELD && *b != RECORD));
        if total + record.len() + 1 > MAX_TRACE {
            break;
        }
        total += record.len() + 1;
        records.push(record);
    }
    if records.is_empty() {
        return String::new();
    }
    records.reverse();
    let bytes = records.join(&RECORD);
    let mut out = String::with_capacity(bytes.len() * 4 + 2);
    out.push(START);
    for byte in bytes {
        for shift in [6, 4, 2, 0] {
            out.push(DIGITS[usize::from((byte >> shift) & 3)]);
        }
    }
    out.push(END);
    out
}

/// Remove every trailer from `text` (and a leading zero-width space, the mark of a neutralised
/// command word), returning the text and the hops the trailers carried (a merged line may carry
/// several).
pub fn extract(text: &str) -> (String, Vec<Hop>) {
    let mut clean = String::with_capacity(text.len());
    let mut hops = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(START) {
        clean.push_str(&rest[..start]);
        let after = &rest[start + START.len_utf8()..];
        match after.find(END) {
            Some(end) => {
                hops.extend(decode(&after[..end]));
                rest = &after[end + END.len_utf8()..];
            }
            None => {
                rest = after;
            }
        }
    }
    clean.push_str(rest);
    // A leading zero-width space is the mark of a neutralised command word (ours or another
    // bridge's): not part of the text.
    if let Some(stripped) = clean.strip_prefix(ZWSP) {
        clean = stripped.to_owned();
    }
    let mut unique: Vec<Hop> = Vec::new();
    for hop in hops {
        if !unique.contains(&hop) {
            unique.push(hop);
        }
    }
    (clean, unique)
}

fn decode(encoded: &str) -> Vec<Hop> {
    let digits: Vec<u8> = encoded
        .chars()
        .filter_map(|c| DIGITS.iter().position(|d| *d == c).map(|p| p as u8))
        .collect();
    let bytes: Vec<u8> = digits
        .chunks_exact(4)
        .map(|d| (d[0] << 6) | (d[1] << 4) | (d[2] << 2) | d[3])
        .collect();
    bytes
        .split(|b| *b == RECORD)
        .filter_map(|record| {
            let mut fields = record.splitn(2, |b| *b == FIELD);
            let gateway = String::from_utf8(fields.next()?.to_vec()).ok()?;
            let route = String::from_utf8(fields.next()?.to_vec()).ok()?;
            (!gateway.is_empty() && !route.is_empty()).then_some(Hop { gateway, route })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hop(gateway: &str, route: &str) -> Hop {
        Hop {
            gateway: gateway.into(),
            route: route.into(),
        }
    }

    #[test]
    fn round_trip_and_invisible() {
        let hops = vec![hop("gw-one", "dvz"), hop("gw-two", "mirror")];
        let t = trailer(&hops);
        assert!(
            t.chars()
                .all(|c| c == START || c == END || DIGITS.contains(&c))
        );
        let (text, back) = extract(&format!("hello{t}"));
        assert_eq!(text, "hello");
        assert_eq!(back, hops);
        assert_eq!(trailer(&[]), "");
    }

    #[test]
    fn merged_lines_carry_the_union_and_long_traces_keep_the_newest() {
        let a = trailer(&[hop("g", "r1")]);
        let b = trailer(&[hop("g", "r2"), hop("g", "r1")]);
        let (text, hops) = extract(&format!("x: 1{a}\\ny: 2{b}"));
        assert_eq!(text, "x: 1\\ny: 2");
        assert_eq!(hops, vec![hop("g", "r1"), hop("g", "r2")]);
        let many: Vec<Hop> = (0..40)
            .map(|i| hop("gateway", &format!("route{i}")))
            .collect();
        let (_, kept) = extract(&trailer(&many));
        assert!(kept.len() < 40 && !kept.is_empty());
        assert_eq!(kept.last(), many.last());
    }

    proptest! {
        #[test]
        fn extract_never_panics_and_round_trips(text in "\\PC{0,80}", g in "[a-z0-9-]{1,12}", r in "[a-z0-9#/]{1,12}") {
            let _ = extract(&text);
            let clean: String = text.chars().filter(|c| *c != START && *c != END).collect();
            let (back, hops) = extract(&format!("{clean}{}", trailer(&[hop(&g, &r)])));
            prop_assert_eq!(back, clean);
            prop_assert_eq!(hops, vec![hop(&g, &r)]);
        }
    }
}
