//! DataCat's HTTP API: what clients send (to a daemon, or to the query service's direct
//! writes) and what the query service answers, shared by the daemon, the query service, the
//! warehouse's readers and the dashboard. The records calls become are the wire contract
//! (`datacat-protocol`).
//!
//! * [`calls`]: client calls (JSON bodies) and the records they become.
//! * [`answers`]: the JSON shapes the query service answers with.
//! * [`query`]: the sessions-list filters, parsed from and written to URL query strings.
//! * [`errors`]: the error codes of JSON error answers, and their HTTP statuses.
//! * [`handshake`]: the daemon's ready line (its port and the token calls carry).
//!
//! With the `openapi` feature, every shape also describes itself for the OpenAPI document
//! (the query service turns it on; a daemon has no use for it).

pub mod answers;
pub mod calls;
pub mod errors;
pub mod handshake;
pub mod query;
