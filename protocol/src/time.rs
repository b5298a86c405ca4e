//! Time helpers shared by services: Unix milliseconds in, RFC 3339 out.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    let now = OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as u64
}

/// Unix milliseconds as an RFC 3339 UTC timestamp with millisecond precision.
pub fn rfc3339_ms(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// A point in time given as Unix milliseconds or an RFC 3339 timestamp.
pub fn parse_time_ms(text: &str) -> Option<u64> {
    if let Ok(ms) = text.parse::<u64>() {
        return Some(ms);
    }
    let parsed = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    u64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The UTC date of Unix milliseconds as `YYYY-MM-DD` (how ClickHouse names a date partition).
pub fn iso_date(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map(|t| {
            let date = t.date();
            format!(
                "{:04}-{:02}-{:02}",
                date.year(),
                u8::from(date.month()),
                date.day()
            )
        })
        .unwrap_or_default()
}

/// Days since the Unix epoch, the way ClickHouse stores a `Date`.
pub fn epoch_days(ms: u64) -> u16 {
    (ms / 86_400_000).min(u64::from(u16::MAX)) as u16
}

/// Client timestamps arrive as float Unix seconds; absent or absurd ones fall back to `now`.
pub fn client_ts_ms(seconds: Option<f64>, now: u64) -> u64 {
    match seconds {
        Some(s) if s.is_finite() && s > 0.0 && s < 4_102_444_800.0 => (s * 1000.0) as u64,
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso_date(1_700_000_000_123), "2023-11-14");
        assert_eq!(iso_date(0), "1970-01-01");
        assert_eq!(
            parse_time_ms("2023-11-14T22:13:20.123Z"),
            Some(1_700_000_000_123)
        );
        assert_eq!(parse_time_ms("1700000000123"), Some(1_700_000_000_123));
        assert_eq!(parse_time_ms("yesterday"), None);
    }

    #[test]
    fn client_timestamps_are_sanitised() {
        assert_eq!(client_ts_ms(Some(1.5), 9), 1500);
        assert_eq!(client_ts_ms(None, 9), 9);
        assert_eq!(client_ts_ms(Some(f64::NAN), 9), 9);
        assert_eq!(client_ts_ms(Some(-1.0), 9), 9);
        assert_eq!(epoch_days(86_400_000 * 3 + 5), 3);
    }
}
