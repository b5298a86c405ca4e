//! The NATS users of `deploy/nats/auth.conf`, on a real server: a daemon's credentials
//! publish session batches and nothing else (no stream deleted, no session read, no bucket
//! touched); the query service's direct writes reach their bucket only; without credentials
//! nothing connects. Every other test runs its programs as these users too.

use std::time::Duration;

use datacat_integration_tests::{NatsRole, Stack};
use datacat_jetstream::{connect, connect_options};
use datacat_protocol::subject;
use futures::StreamExt;

/// A JetStream context as `role`'s program connects (its user, its inbox prefix).
async fn connect_as(stack: &Stack, role: NatsRole) -> async_nats::jetstream::Context {
    connect(connect_options(role.user()), &stack.nats_url_as(role))
        .await
        .unwrap_or_else(|e| panic!("{} connects with its credentials: {e}", role.user()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_nats_user_can_do_its_part_and_no_more() {
    let stack = Stack::start().await.expect("stack starts");
    let daemon = connect_as(&stack, NatsRole::Daemon).await;

    // Its part: a batch published and acknowledged.
    let ack = daemon
        .publish(subject::session_subject("perm-test"), "x".into())
        .await
        .expect("publish sent")
        .await;
    assert!(ack.is_ok(), "a daemon publishes session batches: {ack:?}");

    // No more: streams, consumers and buckets are out of reach.
    let timeout = Duration::from_secs(5);
    let deleted = tokio::time::timeout(timeout, daemon.delete_stream(subject::STREAM)).await;
    assert!(
        !matches!(deleted, Ok(Ok(_))),
        "a daemon cannot delete the stream"
    );
    let listed = tokio::time::timeout(timeout, daemon.get_stream(subject::STREAM)).await;
    assert!(!matches!(listed, Ok(Ok(_))), "nor read it: {listed:?}");
    let bucket =
        tokio::time::timeout(timeout, daemon.get_key_value(subject::PROGRESS_BUCKET)).await;
    assert!(
        !matches!(bucket, Ok(Ok(_))),
        "nor reach ingest's progress: {bucket:?}"
    );

    // It cannot read sessions either: a subscription to their subjects gets nothing.
    let mut spy = daemon
        .client()
        .subscribe(subject::SESSION_SUBJECTS)
        .await
        .expect("the request is sent (the server refuses it)");
    let admin = stack.jetstream().await.unwrap();
    admin
        .publish(subject::session_subject("perm-test"), "y".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(1), spy.next()).await;
    assert!(
        !matches!(seen, Ok(Some(_))),
        "a daemon reads no session: {seen:?}"
    );

    // The stream is still there, with both batches.
    let mut stream = admin.get_stream(subject::STREAM).await.unwrap();
    assert!(stream.info().await.unwrap().state.messages >= 2);

    // The query service's user: its bucket, not the stream's administration.
    let query = connect_as(&stack, NatsRole::Query).await;
    let writes = query
        .get_key_value(subject::DIRECT_WRITES_BUCKET)
        .await
        .expect("the query service reaches the direct-writes bucket");
    writes
        .create(subject::direct_write_key("perm-test"), "0".into())
        .await
        .expect("and numbers a session's batches there");
    let deleted = tokio::time::timeout(timeout, query.delete_stream(subject::STREAM)).await;
    assert!(
        !matches!(deleted, Ok(Ok(_))),
        "the query service cannot delete the stream"
    );
    let progress =
        tokio::time::timeout(timeout, query.get_key_value(subject::PROGRESS_BUCKET)).await;
    assert!(
        !matches!(progress, Ok(Ok(_))),
        "nor reach ingest's progress: {progress:?}"
    );

    // Without credentials (or with wrong ones) nothing connects.
    let bare = format!("nats://127.0.0.1:{}", stack.nats.port);
    let refused = tokio::time::timeout(timeout, async_nats::connect(bare)).await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "no credentials, no connection"
    );
    let wrong = format!("nats://datacat-daemon:guess@127.0.0.1:{}", stack.nats.port);
    let refused = tokio::time::timeout(timeout, async_nats::connect(wrong)).await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a wrong password, no connection"
    );
}
