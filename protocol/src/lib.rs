//! The DataCat wire contract shared by the daemon, ingest and query.
//!
//! * [`record`]: what a session produces (start, state update, event, metric, heartbeat, end).
//! * [`batch`]: the unit the daemon publishes: one session, one sequence number, many records.
//! * [`calls`]: client calls (JSON bodies) and the records they become.
//! * [`codec`]: the versioned MessagePack encoding of a batch.
//! * [`subject`]: JetStream stream, subject and key-value names.
//! * [`merge`]: the deep merge that defines a session's state, and the diff that inverts it.
//! * [`query`]: the sessions-list filters, parsed from and written to URL query strings.
//! * [`api`]: the JSON shapes the query service answers with (shared with the dashboard).

pub mod api;
pub mod batch;
pub mod calls;
pub mod codec;
pub mod merge;
pub mod query;
pub mod record;
pub mod subject;
pub mod time;

pub use batch::Batch;
pub use codec::{decode_batch, decode_batch_head, encode_batch, BatchHead, CodecError};
pub use merge::{deep_merge, state_diff};
pub use record::{
    Alive, DataDropped, EndStatus, Event, ExceptionInfo, Frame, HangChange, Histogram, Level,
    MachineInfo, Metric, MetricKind, Record, SessionEnd, SessionStart,
};
