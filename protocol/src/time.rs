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

/// How far before the receive time a record's time is still believed (Sentry's Relay keeps
/// the same 30 days): an older one is a wrong clock, or a replay too old to file where it
/// says. Rows are partitioned by day, so unbelievable times would also scatter one insert
/// over hundreds of partitions, which current ClickHouse refuses.
pub const MAX_PAST_MS: u64 = 30 * 86_400_000;

/// How far after the receive time a record's time is still believed (a minute, as Relay).
pub const MAX_FUTURE_MS: u64 = 60_000;

/// A record's time as stored, and the client's own when that was not believed (0 when it
/// was): the client's time if within [`MAX_PAST_MS`] before and [`MAX_FUTURE_MS`] after the
/// receive time, the receive time otherwise.
pub fn believed_ts_ms(client_ms: u64, received_ms: u64) -> (u64, u64) {
    let earliest = received_ms.saturating_sub(MAX_PAST_MS);
    let latest = received_ms.saturating_add(MAX_FUTURE_MS);
    if (earliest..=latest).contains(&client_ms) {
        (client_ms, 0)
    } else {
        (received_ms, client_ms.max(1))
    }
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

    #[test]
    fn times_too_far_from_the_receive_time_are_replaced_and_kept() {
        let now = 1_800_000_000_000;
        assert_eq!(believed_ts_ms(now, now), (now, 0));
        assert_eq!(
            believed_ts_ms(now - MAX_PAST_MS, now),
            (now - MAX_PAST_MS, 0)
        );
        let too_old = now - MAX_PAST_MS - 1;
        assert_eq!(believed_ts_ms(too_old, now), (now, too_old));
        assert_eq!(
            believed_ts_ms(now + MAX_FUTURE_MS, now),
            (now + MAX_FUTURE_MS, 0)
        );
        let too_new = now + MAX_FUTURE_MS + 1;
        assert_eq!(believed_ts_ms(too_new, now), (now, too_new));
        // Time 0 (the epoch) is kept as 1 ms: 0 says "believed".
        assert_eq!(believed_ts_ms(0, now), (now, 1));
    }
}
