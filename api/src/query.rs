//! The sessions-list filters: one type for the REST API, the exports, the metric explorer and
//! the dashboard, read from and written back to a URL query string (so a filtered view is a
//! link that can be shared).

use serde::{Deserialize, Serialize};

use datacat_protocol::time::parse_time_ms;
use datacat_protocol::{Level, Status};

/// `path=value`: a flattened state path (`window_state.open`) and a leaf value. Strings match
/// their text, other leaves their JSON (`true`, `3`, `1.5`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathValue {
    pub path: String,
    pub value: String,
}

/// `key:value`: a session tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

datacat_protocol::named_enum! {
    /// What the sessions list is ordered by.
    #[derive(Default)]
    pub enum SortKey {
        #[default]
        Started = "started",
        Updated = "updated",
        Ended = "ended",
        Events = "events",
    }
}

datacat_protocol::named_enum! {
    #[derive(Default)]
    pub enum Order {
        #[default]
        Desc = "desc",
        Asc = "asc",
    }
}

datacat_protocol::named_enum! {
    /// Which per-session figure of a metric the explorer ranks and distributes.
    #[derive(Default)]
    pub enum MetricStat {
        #[default]
        Peak = "peak",
        Min = "min",
        Avg = "avg",
        Last = "last",
    }
}

/// Which sessions, in which order. Every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionQuery {
    pub product: Option<String>,
    pub version: Option<String>,
    pub status: Option<Status>,
    /// Started at or after (Unix ms; the query string takes RFC 3339 too).
    pub from_ms: Option<u64>,
    /// Started before.
    pub to_ms: Option<u64>,
    pub hostname: Option<String>,
    pub machine_id: Option<String>,
    pub environment: Option<String>,
    /// Has every one of these tags.
    pub tags: Vec<Tag>,
    /// The state now has `path = value`.
    pub state: Vec<PathValue>,
    /// The state had `path = value` at some point.
    pub ever: Vec<PathValue>,
    /// The array at `path` contains `value` now.
    pub contains: Vec<PathValue>,
    /// The array at `path` contained `value` at some point.
    pub ever_contains: Vec<PathValue>,
    /// Has an event with this name.
    pub event: Option<String>,
    /// Has an event at this level.
    pub level: Option<Level>,
    /// Text search over id, product, version, host, end reason and state.
    pub q: Option<String>,
    pub sort: SortKey,
    pub order: Order,
    pub limit: Option<u32>,
    /// Where the previous page ended (from its `next_cursor`).
    pub cursor: Option<String>,
}

/// The latest time a filter may name (2100-01-01): larger values are mistakes, not filters.
pub const MAX_TIME_MS: u64 = 4_102_444_800_000;

impl SessionQuery {
    /// Parses a URL query string (`product=game&state=level.name%3Dmars&sort=updated`).
    /// Unknown parameters are errors, so a typo does not silently widen a filter; `extra`
    /// names parameters the caller handles itself (they are skipped).
    pub fn parse(query: &str, extra: &[&str]) -> Result<Self, String> {
        let mut parsed = SessionQuery::default();
        for (key, value) in pairs(query) {
            let text = || (!value.is_empty()).then(|| value.clone());
            let path_value = || -> Result<PathValue, String> {
                let (path, v) = value
                    .split_once('=')
                    .ok_or_else(|| format!("{key} must be path=value, got {value:?}"))?;
                if path.is_empty() {
                    return Err(format!("{key} needs a path before '=', got {value:?}"));
                }
                Ok(PathValue {
                    path: path.to_string(),
                    value: v.to_string(),
                })
            };
            let time = || -> Result<Option<u64>, String> {
                if value.is_empty() {
                    return Ok(None);
                }
                match parse_time_ms(&value) {
                    Some(ms) if ms <= MAX_TIME_MS => Ok(Some(ms)),
                    Some(_) => Err(format!("{key} must be before the year 2100, got {value:?}")),
                    None => Err(format!(
                        "{key} must be Unix milliseconds or RFC 3339, got {value:?}"
                    )),
                }
            };
            match key.as_str() {
                "product" => parsed.product = text(),
                "version" => parsed.version = text(),
                "status" => parsed.status = named(&key, &value, Status::from_name, Status::names)?,
                "from" => parsed.from_ms = time()?,
                "to" => parsed.to_ms = time()?,
                "hostname" => parsed.hostname = text(),
                "machine_id" => parsed.machine_id = text(),
                "environment" => parsed.environment = text(),
                "tag" if value.is_empty() => {}
                "tag" => match value.split_once(':') {
                    Some((key, tag)) if !key.is_empty() => parsed.tags.push(Tag {
                        key: key.to_string(),
                        value: tag.to_string(),
                    }),
                    _ => return Err(format!("tag must be key:value, got {value:?}")),
                },
                // An empty box of a form: no filter.
                "state" | "ever" | "contains" | "ever_contains" if value.is_empty() => {}
                "state" => parsed.state.push(path_value()?),
                "ever" => parsed.ever.push(path_value()?),
                "contains" => parsed.contains.push(path_value()?),
                "ever_contains" => parsed.ever_contains.push(path_value()?),
                "event" => parsed.event = text(),
                "level" => parsed.level = named(&key, &value, Level::from_name, Level::names)?,
                "q" => parsed.q = text(),
                "sort" => {
                    parsed.sort =
                        named(&key, &value, SortKey::from_name, SortKey::names)?.unwrap_or_default()
                }
                "order" => {
                    parsed.order =
                        named(&key, &value, Order::from_name, Order::names)?.unwrap_or_default()
                }
                "limit" => {
                    parsed.limit = match value.as_str() {
                        "" => None,
                        v => Some(v.parse().map_err(|_| {
                            format!("limit must be a positive integer, got {value:?}")
                        })?),
                    }
                }
                "cursor" => parsed.cursor = text(),
                other if extra.contains(&other) => {}
                other => return Err(format!("unknown parameter {other:?}")),
            }
        }
        if let (Some(from), Some(to)) = (parsed.from_ms, parsed.to_ms) {
            if from > to {
                return Err("from must not be after to".into());
            }
        }
        Ok(parsed)
    }

    /// The query string that parses back to this query (without the cursor).
    pub fn to_query_string(&self) -> String {
        let mut out = Vec::new();
        let mut push = |key: &str, value: &str| {
            out.push(format!("{key}={}", encode(value)));
        };
        let status = self.status.map(Status::as_str);
        let level = self.level.map(Level::as_str);
        for (key, value) in [
            ("product", self.product.as_deref()),
            ("version", self.version.as_deref()),
            ("status", status),
            ("hostname", self.hostname.as_deref()),
            ("machine_id", self.machine_id.as_deref()),
            ("environment", self.environment.as_deref()),
            ("event", self.event.as_deref()),
            ("level", level),
            ("q", self.q.as_deref()),
        ] {
            if let Some(value) = value {
                push(key, value);
            }
        }
        for (key, value) in [("from", self.from_ms), ("to", self.to_ms)] {
            if let Some(value) = value {
                push(key, &value.to_string());
            }
        }
        for tag in &self.tags {
            push("tag", &format!("{}:{}", tag.key, tag.value));
        }
        for (key, list) in [
            ("state", &self.state),
            ("ever", &self.ever),
            ("contains", &self.contains),
            ("ever_contains", &self.ever_contains),
        ] {
            for pv in list {
                push(key, &format!("{}={}", pv.path, pv.value));
            }
        }
        if self.sort != SortKey::default() {
            push("sort", self.sort.as_str());
        }
        if self.order != Order::default() {
            push("order", self.order.as_str());
        }
        if let Some(limit) = self.limit {
            push("limit", &limit.to_string());
        }
        out.join("&")
    }
}

/// A parameter whose value is one of an enum's names: `None` when empty, an error naming
/// the choices when it is none of them.
fn named<T>(
    key: &str,
    value: &str,
    from_name: fn(&str) -> Option<T>,
    names: fn() -> String,
) -> Result<Option<T>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    from_name(value)
        .map(Some)
        .ok_or_else(|| format!("{key} must be {}, got {value:?}", names()))
}

/// The decoded `key=value` pairs of a query string.
pub fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// The last non-empty value of `key` among decoded pairs (a form's empty box is no value).
pub fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// Percent-decoding of a query-string component (`+` is a space).
pub fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2])) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encoding of a query-string component.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_filter_and_round_trips() {
        let query = SessionQuery::parse(
            "product=space%20game&status=crashed&from=2026-01-01T00:00:00Z&to=1800000000000\
             &state=level.name%3Dmars&ever=window_state.open%3Dtrue&contains=tags%3Da%3Db\
             &event=boom&level=error&q=probe&sort=updated&order=asc&limit=5",
            &[],
        )
        .unwrap();
        assert_eq!(query.product.as_deref(), Some("space game"));
        assert_eq!(query.from_ms, Some(1_767_225_600_000));
        assert_eq!(query.state[0].path, "level.name");
        assert_eq!(query.state[0].value, "mars");
        assert_eq!(query.contains[0].value, "a=b", "a value may contain '='");
        assert_eq!(query.sort, SortKey::Updated);
        assert_eq!(query.order, Order::Asc);
        let again = SessionQuery::parse(&query.to_query_string(), &[]).unwrap();
        assert_eq!(again, query);
    }

    #[test]
    fn bad_parameters_are_explained() {
        for (query, needle) in [
            ("limit=ten", "limit"),
            ("status=exploded", "status"),
            ("state=novalue", "path=value"),
            ("from=yesterday", "from"),
            ("from=2000&to=1000", "after"),
            ("to=99999999999999999", "2100"),
            ("colour=red", "unknown parameter"),
            ("sort=size", "sort"),
        ] {
            let error = SessionQuery::parse(query, &[]).unwrap_err();
            assert!(error.contains(needle), "{query}: {error}");
        }
        assert!(SessionQuery::parse("format=csv", &["format"]).is_ok());
        assert_eq!(
            SessionQuery::parse("state=&ever=&q=&from=&status=", &[]).unwrap(),
            SessionQuery::default(),
            "a form's empty boxes are no filters"
        );
    }

    #[test]
    fn the_last_non_empty_value_counts() {
        let pairs = pairs("a=1&b=&a=2&a=");
        assert_eq!(param(&pairs, "a"), Some("2"));
        assert_eq!(param(&pairs, "b"), None);
        assert_eq!(param(&pairs, "c"), None);
    }

    #[test]
    fn percent_coding_round_trips() {
        for text in ["a b", "100%", "x=y&z", "ünï", "%zz"] {
            assert_eq!(decode(&encode(text)), text);
        }
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("a+b%2"), "a b%2");
    }
}
