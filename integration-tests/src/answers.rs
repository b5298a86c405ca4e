//! Reading the JSON answers of the HTTP APIs in tests.

use anyhow::Result;
use serde_json::Value;

/// POSTs `body` to `url`: the status and the JSON answer (`null` if not JSON).
pub async fn post(
    client: &reqwest::Client,
    url: String,
    body: impl Into<reqwest::Body>,
) -> Result<(u16, Value)> {
    // JSON, as every client sends it (direct writes refuse any other type).
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// The array at `answer[key]`; a test fails with the answer when there is none.
pub fn items<'a>(answer: &'a Value, key: &str) -> &'a [Value] {
    match answer[key].as_array() {
        Some(items) => items,
        None => panic!("no array at {key:?} in {answer}"),
    }
}
