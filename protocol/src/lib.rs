//! The DataCat wire contract: what daemons and direct writes publish to JetStream and what
//! ingest reads from it (the HTTP API's shapes are `datacat-api`'s).
//!
//! * [`record`]: what a session produces (start, state update, event, metric, heartbeat, end).
//! * [`batch`]: the unit the daemon publishes: one session, one sequence number, many records.
//! * [`codec`]: the versioned MessagePack encoding of a batch, and the sizes of what it carries.
//! * [`subject`]: JetStream stream, subject and key-value names.
//! * [`merge`]: the deep merge that defines a session's state, and the diff that inverts it.
//! * [`names`]: enums whose variants each have one name.
//! * [`vocabulary`]: those of the records: levels, metric kinds, end statuses, statuses.
//! * [`time`]: timestamps as the records carry them.

pub mod batch;
pub mod codec;
pub mod merge;
pub mod names;
pub mod record;
pub mod subject;
pub mod time;
pub mod vocabulary;

pub use batch::Batch;
pub use codec::{decode_batch, decode_batch_head, encode_batch, BatchHead, CodecError};
pub use merge::{deep_merge, state_diff};
pub use record::{
    Alive, Cause, DataDropped, Event, ExceptionInfo, Frame, HangChange, Histogram, MachineInfo,
    Metric, Record, SessionEnd, SessionStart,
};
pub use vocabulary::{EndStatus, Level, MetricKind, Status};
