//! How pages get their data: asked once, or asked again every [`LIVE_EVERY`] while the answer
//! may still change.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dioxus::prelude::*;

use crate::{Data, DataSource};

/// How often live pages (the sessions list, an active session) fetch again.
pub const LIVE_EVERY: Duration = Duration::from_secs(2);

/// An answer of the data source (its error as text), `None` until the first one is in.
pub type Loaded<T> = Option<Result<T, String>>;

/// Asks the data source once what `fetch` makes of `asked`.
pub fn use_answer<A, T, F, Fut>(asked: A, fetch: F) -> Resource<Result<T, String>>
where
    A: Clone + 'static,
    T: 'static,
    F: Fn(Arc<dyn DataSource>, A) -> Fut + 'static,
    Fut: Future<Output = Result<T, String>> + 'static,
{
    let data = use_context::<Data>();
    use_resource(move || fetch(data.0.clone(), asked.clone()))
}

/// Asks the data source what `fetch` makes of `asked`, and again every [`LIVE_EVERY`] while
/// `live` holds of the answer. Each answer replaces the last only once it is in, so a live
/// page never flashes back to "loading".
pub fn use_live_answer<A, T, F, Fut>(
    asked: A,
    fetch: F,
    live: fn(&Result<T, String>) -> bool,
) -> Signal<Loaded<T>>
where
    A: Clone + 'static,
    T: 'static,
    F: Fn(Arc<dyn DataSource>, A) -> Fut + Clone + 'static,
    Fut: Future<Output = Result<T, String>> + 'static,
{
    let data = use_context::<Data>();
    let mut answer = use_signal(|| None);
    use_future(move || {
        let (data, asked, fetch) = (data.clone(), asked.clone(), fetch.clone());
        async move {
            loop {
                let fresh = fetch(data.0.clone(), asked.clone()).await;
                let again = live(&fresh);
                answer.set(Some(fresh));
                if !again {
                    break;
                }
                tokio::time::sleep(LIVE_EVERY).await;
            }
        }
    });
    answer
}
