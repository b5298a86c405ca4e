//! What the benchmark programs (`src/bin/bench-*.rs`) share.

/// A benchmark setting from the environment, or its default when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
