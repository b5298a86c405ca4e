//! Small formatting helpers.

/// Percent-decoding for query strings (`+` is a space).
pub fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes everything but unreserved characters: safe in a URL query value and
/// inside a JavaScript string literal.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

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
