//! DataCat ingest: JetStream consumer workers that apply session batches in order and write
//! them to ClickHouse (the `datacat-ingest` binary runs them; tests use the types).
//!
//! A worker (`worker`) fetches batches, forwards those of sessions another worker owns
//! (`affinity`), plans rounds (`plan`: each session's batches against its progress record,
//! `apply`), and hands them to ClickHouse in groups (`group`: insert, then progress by
//! compare-and-set, then acks, `ack`). The sweeper (`sweeper`) marks silent sessions lost.

mod ack;
mod affinity;
mod apply;
pub mod config;
mod group;
pub mod http;
mod inbox;
pub mod insert_reason;
mod message_budget;
mod metric_summary;
mod plan;
mod progress_cache;
pub mod setup;
pub mod stats;
pub mod sweeper;
pub mod worker;
