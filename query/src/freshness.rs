//! Read your own writes. Ingest applies batches asynchronously, so a client that ends a
//! session and reads it straight back could see it still active. A writer knows the sequence
//! number of its last batch (a daemon numbers its batches; direct writes answer with `seq`)
//! and passes it as `min_seq`: the read then waits, for at most `--read-wait-ms`, until
//! ingest has applied that batch, and answers with what is there either way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ApiError;
use crate::AppState;

/// Reads that named a `min_seq` not yet applied, and those of them still behind at the end
/// of the wait.
pub static READS_WAITED: AtomicU64 = AtomicU64::new(0);
pub static READS_BEHIND: AtomicU64 = AtomicU64::new(0);

/// The first pause between two looks at the session; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// Waits until batch `min_seq` of session `id` is applied, or the read wait is over.
/// Returns whether it was applied.
pub async fn wait_applied(
    state: &AppState,
    id: &str,
    min_seq: Option<u64>,
) -> Result<bool, ApiError> {
    let Some(min_seq) = min_seq else {
        return Ok(true);
    };
    let deadline = Instant::now() + state.read_wait;
    let mut pause = FIRST_PAUSE;
    let mut waited = false;
    loop {
        if state
            .reader
            .applied_seq(id)
            .await?
            .is_some_and(|seq| seq >= min_seq)
        {
            return Ok(true);
        }
        if !waited {
            waited = true;
            READS_WAITED.fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now();
        if now >= deadline {
            READS_BEHIND.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}
