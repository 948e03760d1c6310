//! Counting: which numbered lines each source had accepted, which each destination showed,
//! and the table of lost, doubled and reordered lines per destination.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// A line the soak sends: `soak <side> <n>`; it can sit anywhere in a shown text (after a
/// nick, inside a merged `a | b` line or a JSON body).
pub fn ids(text: &str) -> Vec<(String, u64)> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(r"soak ([a-z]+) ([0-9]+)\b").expect("regex"));
    re.captures_iter(text)
        .filter_map(|c| Some((c[1].to_owned(), c[2].parse().ok()?)))
        .collect()
}

/// What one source sent and had accepted, in order.
#[derive(Default)]
pub struct Sent {
    /// Accepted lines, in send order.
    pub lines: Vec<u64>,
    /// Of those, the ones said while the gateway was down (recovered only from the server's
    /// history or the source's retry).
    pub in_outage: BTreeSet<u64>,
}

pub type SentLog = Arc<Mutex<Sent>>;

/// One destination's figures.
#[derive(Debug, Default, Clone)]
pub struct Row {
    pub dest: String,
    pub expected: usize,
    pub received: usize,
    pub lost: usize,
    pub dup: usize,
    pub reordered: usize,
    /// Lines said during a gateway outage, expected here.
    pub outage: usize,
    pub bound: usize,
    /// Lost lines, for the failure message: `side n`.
    pub lost_ids: Vec<String>,
}

/// Count `shown` (the destination's texts in order) against what every other source sent.
pub fn count(
    dest: &str,
    own: Option<&str>,
    shown: &[String],
    sources: &BTreeMap<String, SentLog>,
) -> Row {
    let mut seen: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let all: Vec<(String, u64)> = shown.iter().flat_map(|t| ids(t)).collect();
    for (side, n) in &all {
        seen.entry(side.as_str()).or_default().push(*n);
    }
    let mut row = Row {
        dest: dest.to_owned(),
        ..Row::default()
    };
    for (side, log) in sources {
        if Some(side.as_str()) == own {
            continue;
        }
        let sent = log.lock().map(|s| (s.lines.clone(), s.in_outage.clone()));
        let Ok((lines, in_outage)) = sent else {
            continue;
        };
        let got = seen.get(side.as_str()).cloned().unwrap_or_default();
        let mut times: BTreeMap<u64, usize> = BTreeMap::new();
        for n in &got {
            *times.entry(*n).or_insert(0) += 1;
        }
        row.expected += lines.len();
        row.outage += in_outage.len();
        for n in &lines {
            match times.get(n) {
                Some(k) => {
                    row.received += 1;
                    row.dup += k - 1;
                }
                None => {
                    row.lost += 1;
                    row.lost_ids.push(format!("{side} {n}"));
                }
            }
        }
        // Order: the first showing of each line, against the order sent.
        let rank: BTreeMap<u64, usize> = lines.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let mut first = BTreeSet::new();
        let mut highest = None;
        for n in &got {
            let Some(r) = rank.get(n) else { continue };
            if !first.insert(*n) {
                continue;
            }
            if highest.is_some_and(|h| *r < h) {
                row.reordered += 1;
            }
            highest = highest.max(Some(*r));
        }
    }
    row
}

/// How many expected lines `dest` has not shown yet.
pub fn missing(own: Option<&str>, shown: &[String], sources: &BTreeMap<String, SentLog>) -> usize {
    count("", own, shown, sources).lost
}

pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<9} {:>8} {:>8} {:>5} {:>5} {:>6} {:>9} {:>7}\n",
        "room", "expected", "received", "lost", "dup", "bound", "reordered", "outage"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<9} {:>8} {:>8} {:>5} {:>5} {:>6} {:>9} {:>7}\n",
            r.dest, r.expected, r.received, r.lost, r.dup, r.bound, r.reordered, r.outage
        ));
    }
    out
}
