//! Small formatting helpers.

#[cfg(test)]
use datacat_api::query::decode as url_decode;
/// Percent-coding of query-string values lives with the query type it serves.
pub use datacat_api::query::encode as url_encode;

/// `2026-11-22T10:00:00.123Z` → `2026-11-22 10:00:00`.
pub fn short_time(rfc3339: &str) -> String {
    rfc3339
        .get(..19)
        .map(|t| t.replace('T', " "))
        .unwrap_or_else(|| rfc3339.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_encodes() {
        assert_eq!(url_decode("a%20b+c%2"), "a b c%2");
        assert_eq!(url_decode("%E2%9C%93"), "✓");
        assert_eq!(url_decode("%é%"), "%é%");
        assert_eq!(url_encode("a b/✓"), "a%20b%2F%E2%9C%93");
        assert_eq!(url_decode(&url_encode("x&y=z")), "x&y=z");
        assert_eq!(
            short_time("2026-11-22T10:00:00.123Z"),
            "2026-11-22 10:00:00"
        );
    }
}
