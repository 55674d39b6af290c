//! Time as the policy reads it: UTC milliseconds since the Unix epoch, window lengths
//! (`30m`, `24h`, `7d`), hours of the day (`08:00-18:00`), weekdays and RFC 3339 instants.

const MS_PER_MINUTE: u64 = 60_000;
const MS_PER_DAY: u64 = 86_400_000;

/// The weekday names, Monday first.
pub(crate) const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Parses a window or age: a positive integer and a unit `s`, `m`, `h`, `d` or `w`; returns
/// milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("'{text}' is not a duration: write a positive number and a unit s, m, h, d or w (e.g. \"30m\", \"24h\", \"7d\")")
    };
    let unit = text.chars().last().ok_or_else(bad)?;
    let per: u64 = match unit {
        's' => 1_000,
        'm' => MS_PER_MINUTE,
        'h' => 60 * MS_PER_MINUTE,
        'd' => MS_PER_DAY,
        'w' => 7 * MS_PER_DAY,
        _ => return Err(bad()),
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    n.checked_mul(per).ok_or_else(bad)
}

/// Hours of the day in UTC: `start-end` as `HH:MM-HH:MM`, start inclusive, end exclusive;
/// an end before the start wraps past midnight (`22:00-06:00`). `24:00` is allowed as end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HoursUtc {
    start: u32,
    end: u32,
}

impl HoursUtc {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "'{text}' is not a time range: write \"HH:MM-HH:MM\" in UTC, e.g. \"08:00-18:00\""
            )
        };
        let (a, b) = text.split_once('-').ok_or_else(bad)?;
        let minute = |s: &str, allow_24: bool| -> Option<u32> {
            let (h, m) = s.trim().split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            let total = h * 60 + m;
            (m < 60 && (h < 24 || (allow_24 && total == 1440))).then_some(total)
        };
        let start = minute(a, false).ok_or_else(bad)?;
        let end = minute(b, true).ok_or_else(bad)?;
        if start == end {
            return Err(format!("'{text}' is an empty time range (start = end)"));
        }
        Ok(Self { start, end })
    }

    pub(crate) fn contains(&self, now_ms: u64) -> bool {
        let m = minute_of_day(now_ms);
        if self.start < self.end {
            self.start <= m && m < self.end
        } else {
            m >= self.start || m < self.end
        }
    }
}

pub(crate) fn minute_of_day(now_ms: u64) -> u32 {
    ((now_ms % MS_PER_DAY) / MS_PER_MINUTE) as u32
}

/// Monday = 0 … Sunday = 6 (1970-01-01 was a Thursday).
pub(crate) fn weekday(now_ms: u64) -> usize {
    ((now_ms / MS_PER_DAY + 3) % 7) as usize
}

/// `HH:MM` of an instant, UTC.
pub(crate) fn hh_mm(now_ms: u64) -> String {
    let m = minute_of_day(now_ms);
    format!("{:02}:{:02}", m / 60, m % 60)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Writes milliseconds since the epoch as an RFC 3339 UTC instant to the second
/// (`2025-03-04T12:30:00Z`): what [`parse_rfc3339_ms`] reads.
pub fn format_rfc3339_ms(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX / 2);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Parses an RFC 3339 instant in UTC (`2025-03-04T12:30:00Z`, fractional seconds allowed,
/// `+00:00` accepted as `Z`) into milliseconds since the epoch.
pub fn parse_rfc3339_ms(text: &str) -> Result<u64, String> {
    let bad = || format!("'{text}' is not an RFC 3339 UTC time like \"2025-03-04T12:30:00Z\"");
    let s = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix('z'))
        .or_else(|| text.strip_suffix("+00:00"))
        .ok_or_else(bad)?;
    let (date, time) = s.split_once(['T', 't', ' ']).ok_or_else(bad)?;
    let d: Vec<&str> = date.split('-').collect();
    let (hms, frac) = match time.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (time, None),
    };
    let t: Vec<&str> = hms.split(':').collect();
    if d.len() != 3 || t.len() != 3 || d[0].len() != 4 {
        return Err(bad());
    }
    let num = |s: &str, len: usize| -> Result<i64, String> {
        if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (y, mo, da) = (num(d[0], 4)?, num(d[1], 2)?, num(d[2], 2)?);
    let (h, mi, se) = (num(t[0], 2)?, num(t[1], 2)?, num(t[2], 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    let ms = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            let f3: String = f.chars().chain("000".chars()).take(3).collect();
            f3.parse::<i64>().map_err(|_| bad())?
        }
        Some(_) => return Err(bad()),
    };
    let days = days_from_civil(y, mo, da);
    let total = ((days * 86_400 + h * 3600 + mi * 60 + se) * 1000) + ms;
    u64::try_from(total).map_err(|_| format!("'{text}' is before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip() {
        for text in [
            "1970-01-01T00:00:00Z",
            "2000-02-29T23:59:59Z",
            "2025-03-04T12:30:00Z",
            "2100-12-31T00:00:01Z",
        ] {
            let ms = parse_rfc3339_ms(text).unwrap();
            assert_eq!(format_rfc3339_ms(ms), text);
            assert_eq!(format_rfc3339_ms(ms + 999), text);
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("30m"), Ok(30 * 60_000));
        assert_eq!(parse_duration_ms("24h"), Ok(86_400_000));
        assert_eq!(parse_duration_ms("7d"), Ok(7 * 86_400_000));
        assert_eq!(parse_duration_ms("1w"), Ok(7 * 86_400_000));
        for bad in ["", "h", "0h", "-1h", "1.5h", "24", "24x", "+1h"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn instants_and_calendar() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
        let t = parse_rfc3339_ms("2024-02-29T13:45:30.5Z").unwrap();
        assert_eq!(t, 1_709_214_330_500);
        assert_eq!(hh_mm(t), "13:45");
        assert_eq!(WEEKDAYS[weekday(t)], "thu");
        assert_eq!(WEEKDAYS[weekday(0)], "thu");
        assert!(parse_rfc3339_ms("2024-02-29T13:45:30+01:00").is_err());
        assert!(parse_rfc3339_ms("yesterday").is_err());
    }

    #[test]
    fn hours() {
        let day = HoursUtc::parse("08:00-18:00").unwrap();
        let at = |h: u64, m: u64| (h * 60 + m) * 60_000 + 5 * 86_400_000;
        assert!(day.contains(at(8, 0)));
        assert!(day.contains(at(17, 59)));
        assert!(!day.contains(at(18, 0)));
        assert!(!day.contains(at(7, 59)));
        let night = HoursUtc::parse("22:00-06:00").unwrap();
        assert!(night.contains(at(23, 0)));
        assert!(night.contains(at(5, 0)));
        assert!(!night.contains(at(12, 0)));
        assert!(HoursUtc::parse("00:00-24:00").unwrap().contains(at(23, 59)));
        assert!(HoursUtc::parse("8-18").is_err());
        assert!(HoursUtc::parse("08:00-08:00").is_err());
        assert!(HoursUtc::parse("25:00-08:00").is_err());
    }
}
