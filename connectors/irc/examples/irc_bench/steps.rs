//! Where a relayed line's time goes, read back from the gateway's trace log.
//!
//! With `PATCHBAY_BENCH_RUST_LOG` naming the hop's targets, the gateway logs, with a
//! microsecond timestamp, each step of a relayed line: the source account's reader parsed it
//! (`< PRIVMSG`), intake got it (`emitted`) and routed it (`routed`), the store's writer thread
//! woke for it and committed it (`writer woke`, `writer committed`), intake had the answer
//! (`recorded`), its room's lane
//! took it (`lane took a run`), the connector was called (`delivery call`) and the destination
//! account's writer wrote it (`> PRIVMSG`). Paced lines go one at a time, so the steps that
//! follow a line's `<` up to its `>` are its own.

use std::time::Duration;

/// The steps in the order a line passes them, with the text that marks each in the log.
const STEPS: [(&str, &str); 9] = [
    ("read", "< PRIVMSG"),
    ("emitted", "emitted"),
    ("routed", "routed"),
    ("writer woke", "writer woke"),
    ("committed", "writer committed"),
    ("recorded", "recorded"),
    ("lane took", "lane took a run"),
    ("delivery call", "delivery call"),
    ("written", "> PRIVMSG"),
];

/// Seconds since midnight from a log line's RFC 3339 timestamp (`2026-12-03T23:20:01.123456Z`).
fn seconds_of_day(line: &str) -> Option<f64> {
    let clock = line.get(11..)?.split(['Z', '+', ' ']).next()?;
    let mut parts = clock.split(':');
    let hours: f64 = parts.next()?.parse().ok()?;
    let minutes: f64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    Some(hours * 3600.0 + minutes * 60.0 + seconds)
}

/// Drop the terminal colour codes the log writer puts around levels and targets.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// For each step after the first, the time since the step before it, over every line whose
/// text contains `tag` (one `Vec` per step, sorted).
pub fn step_times(log: &str, tag: &str) -> Vec<(&'static str, Vec<Duration>)> {
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); STEPS.len() - 1];
    // The time of each step reached so far by the line being followed.
    let mut line_steps: Vec<f64> = Vec::new();
    for raw in log.lines() {
        let line = plain(raw);
        let Some(at) = seconds_of_day(&line) else {
            continue;
        };
        let next = line_steps.len();
        if line.contains(STEPS[0].1) && line.contains("#src") && line.contains(tag) {
            line_steps = vec![at];
        } else if next > 0 && next < STEPS.len() && line.contains(STEPS[next].1) {
            if next == STEPS.len() - 1 && !(line.contains("#dst") && line.contains(tag)) {
                continue;
            }
            line_steps.push(at);
            if line_steps.len() == STEPS.len() {
                for (step, pair) in line_steps.windows(2).enumerate() {
                    let nanos = ((pair[1] - pair[0]) * 1e9).round().max(0.0);
                    times[step].push(Duration::from_nanos(nanos as u64));
                }
                line_steps.clear();
            }
        }
    }
    STEPS[1..]
        .iter()
        .zip(times)
        .map(|((name, _), mut t)| {
            t.sort();
            (*name, t)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_s_steps_are_timed_from_one_to_the_next() {
        let log = "\
2026-12-03T23:20:01.000100Z TRACE patchbay_irc::session: < PRIVMSG [\"#src\", \"relay 1\"]
2026-12-03T23:20:01.000150Z TRACE patchbay::hop: emitted account=\"irc.a\" events=1
2026-12-03T23:20:01.000160Z TRACE patchbay::hop: routed account=\"irc.a\" events=1
2026-12-03T23:20:01.000210Z TRACE patchbay::hop: writer woke
2026-12-03T23:20:01.000300Z TRACE patchbay::hop: writer committed
2026-12-03T23:20:01.000350Z TRACE patchbay::hop: recorded account=\"irc.a\"
2026-12-03T23:20:01.000400Z TRACE patchbay::hop: lane took a run deliveries=1
2026-12-03T23:20:01.000420Z TRACE patchbay::hop: delivery call attempt=1
2026-12-03T23:20:01.000500Z TRACE patchbay_irc::link: > PRIVMSG #dst :relay 1
";
        let steps = step_times(log, "relay ");
        let micros: Vec<u128> = steps.iter().map(|(_, t)| t[0].as_micros()).collect();
        assert_eq!(micros, [50, 10, 50, 90, 50, 50, 20, 80]);
    }
}
