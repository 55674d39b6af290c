//! Text forms of times, durations, hashes and amounts, as the console shows them. Pure: the
//! current time is always passed in.

use serde_json::Value;

/// `HH:MM:SS` (UTC) of a Unix time in milliseconds.
pub fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}")
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time in milliseconds.
pub fn date_time(ms: u64) -> String {
    let days = i64::try_from(ms / 86_400_000).unwrap_or(i64::MAX / 2);
    let (y, mo, d) = civil_from_days(days);
    format!("{y:04}-{mo:02}-{d:02} {}", clock(ms))
}

/// Howard Hinnant's days-to-civil: (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

/// A duration in milliseconds, short: `850ms`, `42s`, `3m05s`, `2h07m`, `3d04h`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{ms}ms"),
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s / 60) % 60),
        _ => format!("{}d{:02}h", s / 86_400, (s / 3600) % 24),
    }
}

/// A latency in milliseconds: `850 ms`, `1.09 s`.
pub fn latency(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{}.{:02} s", ms / 1000, (ms % 1000) / 10)
    }
}

/// How long ago `then_ms` was at `now_ms`: `42s ago` (or `just now`).
pub fn ago(then_ms: u64, now_ms: u64) -> String {
    let d = now_ms.saturating_sub(then_ms);
    if d < 1000 {
        "just now".to_owned()
    } else {
        format!("{} ago", duration(d))
    }
}

/// How long until `then_ms` at `now_ms`: `in 4m10s`, or `expired`.
pub fn until(then_ms: u64, now_ms: u64) -> String {
    if then_ms <= now_ms {
        "expired".to_owned()
    } else {
        format!("in {}", duration(then_ms - now_ms))
    }
}

/// A long hex string cut to its first `n` characters and `…`.
pub fn short(hex: &str, n: usize) -> String {
    if hex.chars().count() <= n {
        hex.to_owned()
    } else {
        let head: String = hex.chars().take(n).collect();
        format!("{head}…")
    }
}

/// Text cut to `width` characters, `…` marking the cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else if width == 0 {
        String::new()
    } else {
        let head: String = text.chars().take(width - 1).collect();
        format!("{head}…")
    }
}

/// Text broken into lines of at most `width` characters, at spaces where it can be (a word
/// longer than a line is cut).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        let used = line.chars().count();
        if used > 0 && used + 1 + word.len() <= width {
            line.push(' ');
            line.extend(&word);
            continue;
        }
        if used > 0 {
            lines.push(std::mem::take(&mut line));
        }
        while word.len() > width {
            lines.push(word.drain(..width).collect());
        }
        line.extend(&word);
    }
    lines.push(line);
    lines
}

/// A base-unit amount from the JSON (a number or a string), with thousands separators.
/// Amounts past 2^64 reach the console as floating point (JSON numbers): shown as such, with
/// `≈`, never as a made-up exact integer.
pub fn amount(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(u) => group(&u.to_string()),
            None => format!("≈{}", n),
        },
        Value::String(s) if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() => group(s),
        Value::String(s) => s.clone(),
        Value::Null => "—".to_owned(),
        other => other.to_string(),
    }
}

/// `1234567` → `1_234_567` (underscores: unambiguous in every locale, and copyable).
fn group(digits: &str) -> String {
    let n = digits.len();
    let mut out = String::with_capacity(n + n / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (n - i).is_multiple_of(3) {
            out.push('_');
        }
        out.push(c);
    }
    out
}

/// A JSON value as one line of text: strings bare, everything else as compact JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "—".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(date_time(0), "1970-01-01 00:00:00");
        assert_eq!(date_time(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(date_time(951_782_400_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(42_000), "42s");
        assert_eq!(duration(185_000), "3m05s");
        assert_eq!(duration(7_620_000), "2h07m");
        assert_eq!(duration(273_600_000), "3d04h");
        assert_eq!(until(10, 20), "expired");
        assert_eq!(latency(850), "850 ms");
        assert_eq!(latency(1_093), "1.09 s");
        assert_eq!(ago(1_000, 1_500), "just now");
    }

    #[test]
    fn amounts_keep_every_digit_or_say_they_are_approximate() {
        assert_eq!(amount(&json!(2_500_000_000_000u64)), "2_500_000_000_000");
        assert_eq!(amount(&json!(999)), "999");
        assert_eq!(amount(&json!("1000")), "1_000");
        let big: Value = serde_json::from_str("340282366920938463463374607431768211455").unwrap();
        assert!(amount(&big).starts_with('≈'), "{}", amount(&big));
    }

    #[test]
    fn long_text_wraps_at_spaces() {
        assert_eq!(wrap("one two three", 7), ["one two", "three"]);
        assert_eq!(wrap("abcdefghij k", 4), ["abcd", "efgh", "ij k"]);
        assert_eq!(wrap("", 5), [""]);
    }

    #[test]
    fn cuts_are_marked() {
        assert_eq!(short("abcdef", 4), "abcd…");
        assert_eq!(short("abc", 4), "abc");
        assert_eq!(fit("hello world", 6), "hello…");
        assert_eq!(fit("hi", 6), "hi");
    }
}
