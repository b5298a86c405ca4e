//! Query-string parameters. They are parsed by hand: filters repeat
//! (`state=a%3D1&state=b%3D2`), and a parameter an endpoint does not take is an error that
//! names it (a typo must not silently widen a filter). The structs at the end only document
//! them in the OpenAPI document.

use datacat_api::answers::{Order, SessionQuery, SortKey};
use datacat_api::query::{pairs, param};
use datacat_protocol::{Level, Status};
use utoipa::IntoParams;

use crate::error::ApiError;

/// The `min_seq` parameter of a read: wait (bounded) until that batch is applied.
pub const MIN_SEQ: &str = "min_seq";

/// The query's `key=value` pairs, checked against the parameters an endpoint takes.
pub fn params(query: &Option<String>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let pairs = pairs(query.as_deref().unwrap_or_default());
    if let Some((key, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "unknown parameter {key:?}; this endpoint takes {allowed:?}"
        )));
    }
    Ok(pairs)
}

pub fn number<T: std::str::FromStr>(
    pairs: &[(String, String)],
    key: &str,
) -> Result<Option<T>, ApiError> {
    param(pairs, key)
        .map(|v| {
            v.parse().map_err(|_| {
                ApiError::BadRequest(format!("{key} must be a non-negative integer, got {v:?}"))
            })
        })
        .transpose()
}

pub fn session_query(query: &Option<String>, extra: &[&str]) -> Result<SessionQuery, ApiError> {
    SessionQuery::parse(query.as_deref().unwrap_or_default(), extra).map_err(ApiError::BadRequest)
}

/// Which rows of its lists a session's detail holds: `limit` (10 000 by default, at most
/// 100 000) rows of each from `offset` (0), in time order.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DetailParams {
    limit: Option<u64>,
    offset: Option<u64>,
}

/// The detail rows the `limit` and `offset` parameters ask for.
pub fn detail_rows(pairs: &[(String, String)]) -> Result<datacat_warehouse::DetailRows, ApiError> {
    let limit = number(pairs, "limit")?.unwrap_or(datacat_warehouse::read::DEFAULT_DETAIL_ROWS);
    let max = datacat_warehouse::read::MAX_DETAIL_ROWS;
    if limit == 0 || limit > max {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1 to {max} rows per list, got {limit}"
        )));
    }
    Ok(datacat_warehouse::DetailRows::From {
        offset: number(pairs, "offset")?.unwrap_or(0),
        limit,
    })
}

/// Read your own writes: the sequence number of the writer's last batch (a daemon's, or a
/// direct write's `seq`). The read waits (at most `--read-wait-ms`, 2 s by default) until
/// ingest has applied it, then answers with what is there.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct MinSeq {
    min_seq: Option<u64>,
}

/// The sessions-list filters, as query parameters (parsed by `SessionQuery::parse`; this
/// struct only documents them).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SessionFilters {
    product: Option<String>,
    version: Option<String>,
    status: Option<Status>,
    /// Started at or after: Unix milliseconds or RFC 3339.
    from: Option<String>,
    /// Started before: Unix milliseconds or RFC 3339.
    to: Option<String>,
    hostname: Option<String>,
    machine_id: Option<String>,
    /// Where the session ran, as its client said (`production`, `ci`, ...).
    environment: Option<String>,
    /// `key:value`: the session has this tag (repeatable: every one).
    #[param(pattern = "^[^:]+:.*$")]
    tag: Option<Vec<String>>,
    /// `path=value`: the state now has this leaf (repeatable).
    #[param(pattern = "^[^=]+=.*$")]
    state: Option<Vec<String>>,
    /// `path=value`: the state had this leaf at some point (repeatable).
    #[param(pattern = "^[^=]+=.*$")]
    ever: Option<Vec<String>>,
    /// `path=value`: the array at path contains value now (repeatable).
    #[param(pattern = "^[^=]+=.*$")]
    contains: Option<Vec<String>>,
    /// `path=value`: the array at path contained value at some point (repeatable).
    #[param(pattern = "^[^=]+=.*$")]
    ever_contains: Option<Vec<String>>,
    /// Has an event with this name.
    event: Option<String>,
    /// Has an event at this level.
    level: Option<Level>,
    /// Text search over id, product, version, host, end reason and state.
    q: Option<String>,
    /// Default: started.
    sort: Option<SortKey>,
    /// Default: desc.
    order: Option<Order>,
    /// Page size (list: at most 1000).
    #[param(minimum = 1)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Filters of a session's events.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct EventParams {
    level: Option<Level>,
    name: Option<String>,
    category: Option<String>,
    /// At most 5000.
    #[param(minimum = 1)]
    limit: Option<u32>,
    offset: Option<u64>,
}
