//! IRCv3 server-time (`2024-03-01T12:34:56.789Z`) ↔ milliseconds since the epoch, without a
//! date library: the civil-date conversions are Howard Hinnant's algorithms.

use patchbay_sdk::Timestamp;

/// Parse `YYYY-MM-DDTHH:MM:SS[.fff]Z` (server-time) into milliseconds since the epoch.
pub fn parse_server_time(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() < 20 || b.get(4) != Some(&b'-') || b.get(10) != Some(&b'T') {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, min, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let rest = s.get(19..)?;
    let millis = if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() || frac.get(digits.len()..) != Some("Z") {
            return None;
        }
        let mut ms = digits.chars().take(3).collect::<String>();
        while ms.len() < 3 {
            ms.push('0');
        }
        ms.parse::<i64>().ok()?
    } else if rest == "Z" {
        0
    } else {
        return None;
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(Timestamp(
        ((days * 86400 + hour * 3600 + min * 60 + sec) * 1000) + millis,
    ))
}

/// Format a timestamp as server-time for `CHATHISTORY` requests.
pub fn format_server_time(ts: Timestamp) -> String {
    let ms = ts.0.rem_euclid(1000);
    let secs = ts.0.div_euclid(1000);
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_time_edge_cases() {
        assert_eq!(
            parse_server_time("1970-01-01T00:00:00Z"),
            Some(Timestamp(0))
        );
        assert_eq!(
            parse_server_time("1970-01-01T00:00:01.5Z"),
            Some(Timestamp(1500))
        );
        assert_eq!(
            parse_server_time("2000-02-29T00:00:00.000Z"),
            Some(Timestamp(951_782_400_000))
        );
        assert_eq!(parse_server_time("garbage"), None);
        assert_eq!(parse_server_time("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_server_time("2024-01-01T00:00:00.Z"), None);
        assert_eq!(parse_server_time("2024-01-01T00:00:00ü"), None);
    }

    #[test]
    fn server_time_formats_round_trip() {
        for t in [0, 1_709_296_496_789, 951_782_400_000, 4_102_444_799_999] {
            let s = format_server_time(Timestamp(t));
            assert_eq!(parse_server_time(&s), Some(Timestamp(t)), "{s}");
        }
    }
}
