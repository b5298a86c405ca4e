pub mod session;
pub mod sessions;

use dioxus::prelude::*;

/// A status as a coloured badge.
#[component]
pub fn StatusBadge(status: String) -> Element {
    rsx! { span { class: "badge status-{status}", "{status}" } }
}
