//! The deep merge that defines a session's state, and the diff that inverts it.
//!
//! Merge rules:
//! * an object merged into an object merges key by key, recursively;
//! * a `null` value deletes the key (at any depth, including inside newly inserted objects);
//! * anything else (scalars, arrays, an object over a non-object) replaces the old value.

use serde_json::{Map, Value};

/// Merges `update` into `state` in place.
pub fn deep_merge(state: &mut Value, update: &Value) {
    let Value::Object(update) = update else {
        *state = without_nulls(update);
        return;
    };
    if !state.is_object() {
        *state = Value::Object(Map::new());
    }
    let Value::Object(target) = state else {
        unreachable!("made an object above")
    };
    merge_objects(target, update);
}

fn merge_objects(target: &mut Map<String, Value>, update: &Map<String, Value>) {
    for (key, value) in update {
        match (value, target.get_mut(key)) {
            (Value::Null, _) => {
                target.remove(key);
            }
            (Value::Object(nested), Some(Value::Object(existing))) => {
                merge_objects(existing, nested)
            }
            (value, _) => {
                target.insert(key.clone(), without_nulls(value));
            }
        }
    }
}

/// An inserted object must not carry nulls: a null never survives a merge.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The smallest update that turns `old` into `new` under [`deep_merge`], or `None` if they are
/// equal. `new` is expected to be a merge result (objects without null values).
pub fn state_diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut diff = Map::new();
            for key in old.keys() {
                if !new.contains_key(key) {
                    diff.insert(key.clone(), Value::Null);
                }
            }
            for (key, new_value) in new {
                match old.get(key) {
                    Some(old_value) if old_value == new_value => {}
                    Some(old_value @ Value::Object(_)) if new_value.is_object() => {
                        if let Some(nested) = state_diff(old_value, new_value) {
                            diff.insert(key.clone(), nested);
                        }
                    }
                    _ => {
                        diff.insert(key.clone(), new_value.clone());
                    }
                }
            }
            (!diff.is_empty()).then_some(Value::Object(diff))
        }
        (old, new) if old == new => None,
        (_, new) => Some(new.clone()),
    }
}

/// Flattens a state into `(path, value)` leaves: object keys joined with `.`, arrays kept
/// whole as one leaf. Used for "state now / ever had" lookups. A key's own `.` and `\\` are
/// escaped (`\\.`, `\\\\`), so `{"a.b": 1}` (path `a\\.b`) and `{"a": {"b": 1}}` (path `a.b`)
/// stay apart; keys without them read as they are.
pub fn flatten(state: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    // A state is an object; anything else (the `null` before the first update) has no leaves.
    if state.is_object() {
        flatten_into(state, &mut String::new(), &mut out);
    }
    out
}

/// Merges `update` into `state` like [`deep_merge`] and reports the leaves that changed:
/// `f(path, old value, true)` for each leaf that changed or went, then `f(path, new value,
/// false)` for each leaf that is new or changed. Only the top-level keys the update names
/// are flattened (a merge touches nothing else), so the cost follows the update, not the
/// whole state.
pub fn merge_reporting(state: &mut Value, update: &Value, mut f: impl FnMut(&str, &Value, bool)) {
    let touched = match (&*state, update) {
        (Value::Object(_), Value::Object(update)) => Some(update),
        _ => None,
    };
    let leaves_of = |state: &Value| match touched {
        Some(keys) => {
            let mut out = Vec::new();
            for key in keys.keys() {
                if let Some(value) = state.get(key) {
                    let mut path = String::new();
                    push_key(&mut path, key);
                    flatten_into(value, &mut path, &mut out);
                }
            }
            out
        }
        None => flatten(state),
    };
    let before = leaves_of(state);
    deep_merge(state, update);
    let after = leaves_of(state);
    report_changes(&before, &after, &mut f);
}

/// Calls `f` for the leaves that differ between `before` and `after` (removals first).
fn report_changes(
    before: &[(String, Value)],
    after: &[(String, Value)],
    f: &mut impl FnMut(&str, &Value, bool),
) {
    let (old, new) = (Leaves::new(before), Leaves::new(after));
    for (path, value) in before {
        if new.get(path) != Some(value) {
            f(path, value, true);
        }
    }
    for (path, value) in after {
        if old.get(path) != Some(value) {
            f(path, value, false);
        }
    }
}

/// Leaves looked up by path: updates touch a handful, where a linear scan beats hashing;
/// a hash index beyond that.
enum Leaves<'a> {
    Few(&'a [(String, Value)]),
    Many(std::collections::HashMap<&'a str, &'a Value>),
}

impl<'a> Leaves<'a> {
    fn new(leaves: &'a [(String, Value)]) -> Self {
        if leaves.len() <= 32 {
            Leaves::Few(leaves)
        } else {
            Leaves::Many(leaves.iter().map(|(p, v)| (p.as_str(), v)).collect())
        }
    }

    fn get(&self, path: &str) -> Option<&'a Value> {
        match self {
            Leaves::Few(leaves) => leaves.iter().find(|(p, _)| p == path).map(|(_, v)| v),
            Leaves::Many(index) => index.get(path).copied(),
        }
    }
}

/// Appends an object key to a path, its `.` and `\\` escaped with `\\`.
fn push_key(path: &mut String, key: &str) {
    if !key.contains(['.', '\\']) {
        path.push_str(key);
        return;
    }
    for c in key.chars() {
        if c == '.' || c == '\\' {
            path.push('\\');
        }
        path.push(c);
    }
}

fn flatten_into(value: &Value, path: &mut String, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() || path.is_empty() => {
            for (key, nested) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                push_key(path, key);
                flatten_into(nested, path, out);
                path.truncate(len);
            }
        }
        leaf => out.push((path.clone(), leaf.clone())),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn merged(steps: &[Value]) -> Value {
        let mut state = json!({});
        for step in steps {
            deep_merge(&mut state, step);
        }
        state
    }

    #[test]
    fn nested_objects_merge_and_arrays_replace() {
        let state = merged(&[
            json!({"window_state": {"open": ["w1", "w2"], "active": "w1"}, "memory": {"footprint_mb": 50}}),
            json!({"window_state": {"open": ["w1", "w2", "w3"]}}),
        ]);
        assert_eq!(
            state,
            json!({"window_state": {"open": ["w1", "w2", "w3"], "active": "w1"}, "memory": {"footprint_mb": 50}})
        );
    }

    #[test]
    fn sibling_keys_survive() {
        let state = merged(&[
            json!({"program": {"name": "graphite", "version": "2025.10.1"}}),
            json!({"program": {"running_mode": "standalone"}, "resource": {"mode": "content"}}),
            json!({"resource": {"mode": "client"}}),
        ]);
        assert_eq!(
            state,
            json!({"program": {"name": "graphite", "version": "2025.10.1", "running_mode": "standalone"},
                   "resource": {"mode": "client"}})
        );
    }

    #[test]
    fn null_deletes_at_any_depth() {
        let mut state =
            merged(&[json!({"user": "alice", "count": 5, "data": {"key1": "v1", "key2": "v2"}})]);
        deep_merge(&mut state, &json!({"user": null}));
        assert_eq!(
            state,
            json!({"count": 5, "data": {"key1": "v1", "key2": "v2"}})
        );
        deep_merge(&mut state, &json!({"data": {"key1": null}, "absent": null}));
        assert_eq!(state, json!({"count": 5, "data": {"key2": "v2"}}));
    }

    #[test]
    fn nulls_inside_inserted_objects_are_dropped() {
        let state = merged(&[
            json!({"a": 1}),
            json!({"a": {"b": null, "c": {"d": null, "e": 2}}}),
        ]);
        assert_eq!(state, json!({"a": {"c": {"e": 2}}}));
    }

    #[test]
    fn diff_of_equal_states_is_none() {
        let s = json!({"a": {"b": [1, 2]}});
        assert_eq!(state_diff(&s, &s), None);
    }

    #[test]
    fn diff_is_minimal() {
        let old = json!({"a": {"b": 1, "c": 2}, "d": [1], "gone": true});
        let new = json!({"a": {"b": 1, "c": 3}, "d": [1], "added": {"x": 1}});
        assert_eq!(
            state_diff(&old, &new),
            Some(json!({"gone": null, "a": {"c": 3}, "added": {"x": 1}}))
        );
    }

    #[test]
    fn merge_reporting_with_many_leaves_uses_the_index_and_agrees() {
        let mut state = json!({"big": {}});
        for i in 0..40 {
            state["big"][format!("k{i}")] = json!(i);
        }
        let update = json!({"big": {"k3": null, "k5": 50, "new": true}});
        let mut reported = Vec::new();
        merge_reporting(&mut state, &update, |path, value, removed| {
            reported.push((path.to_string(), value.clone(), removed));
        });
        assert_eq!(
            reported,
            vec![
                ("big.k3".to_string(), json!(3), true),
                ("big.k5".to_string(), json!(5), true),
                ("big.k5".to_string(), json!(50), false),
                ("big.new".to_string(), json!(true), false),
            ]
        );
    }

    #[test]
    fn a_key_with_a_dot_is_not_a_nested_path() {
        let dotted = flatten(&json!({"a.b": 1, "a": {"b": 2}, "c\\d": 3}));
        assert_eq!(
            dotted,
            vec![
                ("a\\.b".to_string(), json!(1)),
                ("a.b".to_string(), json!(2)),
                ("c\\\\d".to_string(), json!(3)),
            ]
        );
        let mut state = json!({});
        let mut changed = Vec::new();
        merge_reporting(&mut state, &json!({"x.y": {"z": 1}}), |path, _, _| {
            changed.push(path.to_string())
        });
        assert_eq!(changed, vec!["x\\.y.z"]);
    }

    #[test]
    fn flatten_of_no_state_is_empty() {
        assert!(flatten(&Value::Null).is_empty());
        assert!(flatten(&json!({})).is_empty());
    }

    #[test]
    fn flatten_joins_object_paths_and_keeps_arrays() {
        let leaves =
            flatten(&json!({"window_state": {"open": ["a", "b"], "active": "a"}, "n": 1, "e": {}}));
        assert_eq!(
            leaves,
            vec![
                ("window_state.open".to_string(), json!(["a", "b"])),
                ("window_state.active".to_string(), json!("a")),
                ("n".to_string(), json!(1)),
                ("e".to_string(), json!({})),
            ]
        );
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-50i64..50).prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map("[a-d]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_update() -> impl Strategy<Value = Value> {
        prop::collection::btree_map("[a-d]", arb_value(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    /// Arrays are opaque values (they replace wholesale), so only object members count.
    fn has_null_member(value: &Value) -> bool {
        match value {
            Value::Object(map) => map.values().any(|v| v.is_null() || has_null_member(v)),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn merged_states_never_hold_null_members(updates in prop::collection::vec(arb_update(), 0..6)) {
            prop_assert!(!has_null_member(&merged(&updates)));
        }

        #[test]
        fn diff_then_merge_reproduces_the_new_state(
            a in prop::collection::vec(arb_update(), 0..4),
            b in prop::collection::vec(arb_update(), 0..4),
        ) {
            let old = merged(&a);
            let new = merged(&b);
            let mut patched = old.clone();
            if let Some(diff) = state_diff(&old, &new) {
                deep_merge(&mut patched, &diff);
            }
            prop_assert_eq!(patched, new);
        }

        #[test]
        fn merge_reporting_reports_exactly_the_changed_leaves(
            steps in prop::collection::vec(arb_update(), 0..4),
            update in arb_update(),
            from_nothing in any::<bool>(),
        ) {
            let mut state = if from_nothing { Value::Null } else { merged(&steps) };
            let mut expected = Vec::new();
            let before = flatten(&state);
            let mut full = state.clone();
            deep_merge(&mut full, &update);
            let after = flatten(&full);
            for (path, value) in &before {
                if !after.contains(&(path.clone(), value.clone())) {
                    expected.push((path.clone(), value.clone(), true));
                }
            }
            for (path, value) in &after {
                if !before.contains(&(path.clone(), value.clone())) {
                    expected.push((path.clone(), value.clone(), false));
                }
            }
            let mut reported = Vec::new();
            merge_reporting(&mut state, &update, |path, value, removed| {
                reported.push((path.to_string(), value.clone(), removed));
            });
            prop_assert_eq!(&state, &full);
            expected.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            reported.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            prop_assert_eq!(reported, expected);
        }

        #[test]
        fn merge_is_idempotent(state in prop::collection::vec(arb_update(), 0..4), update in arb_update()) {
            let mut once = merged(&state);
            deep_merge(&mut once, &update);
            let mut twice = once.clone();
            deep_merge(&mut twice, &update);
            prop_assert_eq!(once, twice);
        }
    }
}
