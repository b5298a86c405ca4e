//! Reading the JSON answers of the HTTP APIs in tests.

use serde_json::Value;

/// The array at `answer[key]`; a test fails with the answer when there is none.
pub fn items<'a>(answer: &'a Value, key: &str) -> &'a [Value] {
    match answer[key].as_array() {
        Some(items) => items,
        None => panic!("no array at {key:?} in {answer}"),
    }
}
