//! The client contract applications are written against, through the real daemon (or the query service's direct
//! writes), NATS, ingest, ClickHouse and query:
//!
//! - a session read back right after a write shows the write (read your own writes), in the
//!   shape the client API documents (`events`, `metrics`, `state`, `state_history`,
//!   `active`, ...);
//! - a program that opens sessions, ends none and exits normally (end of script, return from
//!   main, `sys.exit(n)`) leaves them `ended` with the exit reason, whatever it still holds;
//!   only a process that dies is `crashed`.

use datacat_integration_tests::{items, python, Stack};
use serde_json::Value;

/// A program written against the client API: it writes, reads back at once, ends, reads
/// back again.
const READ_BACK: &str = r#"
import os
import datacat
from datacat import DatacatClient

url = os.environ["DATACAT_QUERY_URL"]
SEED_KEYS = ("events", "metrics", "state", "state_history", "active", "created_at", "updated_at",
             "ended_at")
for use_daemon in (True, False):
    for i in range(3):
        s = datacat.create_session(url, product="seed-port", version="1.0", use_daemon=use_daemon)
        s.update_state({"level": i, "window_state": {"open": ["main"]}})
        s.log_event("level_loaded", data={"level": i})
        s.log_metric("fps", 60.0 + i)
        d = s.get_details()
        missing = [k for k in SEED_KEYS if k not in d]
        assert not missing, (use_daemon, missing, d)
        if use_daemon:
            assert d["source"] == "server" and d["caught_up"] is True, d
        assert d["active"] is True and d["state"]["level"] == i, d
        seen = (use_daemon, i, d.get("last_seq"), d.get("caught_up"), s.client._last_seq)
        assert [e["name"] for e in d["events"]] == ["level_loaded"], (seen, d["events"])
        assert [m["value"] for m in d["metrics"]] == [60.0 + i], (seen, d["metrics"])
        s.end()
        after = s.get_details()
        assert after["active"] is False and after["status"] == "ended" and after["ended_at"], after

# The lower-level client, one call per endpoint.
client = DatacatClient(url)
sid = client.register_session("seed-port", "1.0")
client.update_state(sid, {"x": 1})
client.log_event(sid, "saved")
client.end_session(sid)
d = client.get_session(sid)
assert d["active"] is False and d["state"] == {"x": 1} and len(d["events"]) == 1, d
listed = client.get_all_sessions()
assert isinstance(listed, list) and sid in [x["id"] for x in listed], listed
print("read back ok")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_read_back_shows_every_write_before_the_read() {
    let stack = Stack::start().await.expect("stack starts");
    let output = python::run(&stack, READ_BACK).expect("the read-back program succeeds");
    assert_eq!(python::last_line(&output), "read back ok");
}

/// Programs in the style of python/examples: they open a session and never end it.
fn ends_nothing(body: &str, options: &str) -> String {
    format!(
        r#"
import gc, os, signal, sys
import datacat

def main():
    s = datacat.create_session(os.environ["DATACAT_QUERY_URL"], product="ends-nothing",
                               version="1.0"{options})
    s.update_state({{"phase": "running"}})
    s.log_event("working")
    sys.stdout.write(s.session_id + "\n")
    sys.stdout.flush()
{body}

main()
gc.collect()  # the session object is long gone; the exit must still end it
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_that_end_nothing_and_exit_normally_are_ended_not_crashed() {
    let stack = Stack::start().await.expect("stack starts");
    let normal = "without calling end()";
    let cases: Vec<(&str, String, bool, &str)> = vec![
        ("returns from main", ends_nothing("", ""), true, normal),
        (
            "returns from main, async",
            ends_nothing("", ", async_mode=True"),
            true,
            normal,
        ),
        (
            "returns from main, no daemon",
            ends_nothing("", ", use_daemon=False, async_mode=True"),
            true,
            normal,
        ),
        (
            "sys.exit(3)",
            ends_nothing("    sys.exit(3)", ""),
            false,
            "status 3 (sys.exit)",
        ),
        (
            "sys.exit(0), async",
            ends_nothing("    sys.exit(0)", ", async_mode=True"),
            true,
            "sys.exit(0)",
        ),
    ];
    for (name, script, succeeds, reason) in &cases {
        let output = python::spawn(&stack, script)
            .expect("the program starts")
            .wait_with_output()
            .unwrap();
        assert_eq!(output.status.success(), *succeeds, "{name}: {output:?}");
        let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let session = stack
            .wait_status(&id, "ended")
            .await
            .unwrap_or_else(|error| {
                panic!("{name}: {error}");
            });
        let end_reason = session["end_reason"].as_str().unwrap_or_default();
        assert!(end_reason.contains(reason), "{name}: {end_reason:?}");
        assert_eq!(event_names(&session), vec!["working"], "{name}");
    }

    // A process that dies is the one that crashed.
    let dies = ends_nothing("    os.kill(os.getpid(), signal.SIGKILL)", "");
    let output = python::spawn(&stack, &dies)
        .unwrap()
        .wait_with_output()
        .unwrap();
    assert!(!output.status.success());
    let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
    stack.wait_status(&id, "crashed").await.unwrap();
}

fn event_names(session: &Value) -> Vec<&str> {
    items(session, "events")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect()
}

/// An exception arrives as structure: the chain behind it and, opted in, its innermost
/// frames' local variables, with breadcrumbs in its data; through the daemon, NATS, ingest
/// and ClickHouse to the query API.
const EXCEPTION_DETAIL: &str = r#"
import os
import datacat

def load(path):
    attempts = 3
    try:
        return {}[path]
    except KeyError as error:
        raise ValueError("could not load " + path) from error

s = datacat.create_session(os.environ["DATACAT_QUERY_URL"], product="exception-detail",
                           version="1.0", capture_locals=True)
s.add_breadcrumb("opened the map", category="ui")
try:
    load("level-3")
except ValueError:
    s.log_exception(extra_data={"where": "loader"})
s.end()
print(s.session_id)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exceptions_chain_locals_and_breadcrumbs_arrive_as_structure() {
    let stack = Stack::start().await.expect("stack starts");
    let output = python::run(&stack, EXCEPTION_DETAIL).expect("the program succeeds");
    let id = python::last_line(&output);
    let session = stack.wait_status(&id, "ended").await.unwrap();
    let event = &session["events"][0];
    let exception = &event["exception"];
    assert_eq!(exception["type"], "ValueError", "{event}");
    assert_eq!(exception["causes"][0]["type"], "KeyError", "{event}");
    assert_eq!(exception["causes"][0]["relation"], "cause", "{event}");
    assert_eq!(exception["causes"][0]["message"], "'level-3'", "{event}");
    let frames = exception["causes"][0]["frames"].as_array().unwrap();
    let innermost = frames.last().unwrap();
    assert_eq!(innermost["function"], "load", "{event}");
    assert!(
        innermost.get("locals").is_none(),
        "a cause's frames carry no locals"
    );
    let raised_at = exception["frames"].as_array().unwrap().last().unwrap();
    assert_eq!(raised_at["function"], "load", "{event}");
    assert_eq!(raised_at["locals"]["path"], "'level-3'", "{event}");
    assert_eq!(raised_at["locals"]["attempts"], "3", "{event}");
    assert_eq!(event["data"]["where"], "loader");
    assert_eq!(
        event["data"]["breadcrumbs"][0]["message"], "opened the map",
        "{event}"
    );
}

/// A session's environment (from `DATACAT_ENVIRONMENT`) and tags, through a daemon and
/// through direct writes: the API filters on them and shows them.
const LABELLED: &str = r#"
import os
import datacat

os.environ["DATACAT_ENVIRONMENT"] = "ci"
ids = []
for use_daemon in (True, False):
    s = datacat.create_session(os.environ["DATACAT_QUERY_URL"], product="labelled",
                               version="1.0", use_daemon=use_daemon,
                               tags={"team": "render", "daemon": str(use_daemon)})
    s.end()
    ids.append(s.session_id)
other = datacat.create_session(os.environ["DATACAT_QUERY_URL"], product="labelled",
                               version="1.0", environment="nightly", tags={"team": "audio"})
other.end()
print(" ".join(ids + [other.session_id]))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_environment_and_tags_are_filtered_on_and_shown() {
    let stack = Stack::start().await.expect("stack starts");
    let output = python::run(&stack, LABELLED).expect("the program succeeds");
    let line = python::last_line(&output);
    let ids: Vec<&str> = line.split(' ').collect();
    for id in &ids {
        stack.wait_status(id, "ended").await.unwrap();
    }
    let listed = |query: &'static str| {
        let stack = &stack;
        async move {
            let page = stack
                .get_json(&format!("/api/sessions?product=labelled&{query}"))
                .await
                .unwrap();
            let mut found: Vec<String> = page["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string())
                .collect();
            found.sort();
            found
        }
    };
    let mut ci = vec![ids[0].to_string(), ids[1].to_string()];
    ci.sort();
    assert_eq!(listed("environment=ci").await, ci);
    assert_eq!(listed("tag=team:render").await, ci);
    assert_eq!(listed("environment=ci&tag=daemon:True").await, [ids[0]]);
    assert_eq!(listed("environment=nightly&tag=team:audio").await, [ids[2]]);
    assert!(listed("tag=team:render&tag=team:audio").await.is_empty());
    let detail = stack
        .get_json(&format!("/api/sessions/{}", ids[1]))
        .await
        .unwrap();
    assert_eq!(detail["environment"], "ci");
    assert_eq!(
        detail["tags"],
        serde_json::json!({"team": "render", "daemon": "False"})
    );
    let (status, refused) = stack
        .post_json(
            "/api/sessions",
            &serde_json::json!({"product": "p", "version": "1", "tags": {"a:b": "c"}}),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{refused}");
}
