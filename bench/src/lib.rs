//! What the benchmark programs (`src/bin/bench-*.rs`, run by `deploy/bench.sh`) share: their
//! settings and what a process used (`measure`), and where the servers run (`cores`). They
//! print figures and assert nothing: the machines are shared and noisy.

pub mod cores;
pub mod measure;
