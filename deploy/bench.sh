#!/usr/bin/env bash
#
# deploy/bench.sh: benchmarks (release build). They print figures and assert nothing: these
# machines are shared and noisy, so compare figures taken in one run.
#
#   deploy/bench.sh daemon    events/s from a batching client through one daemon into
#                             JetStream; daemon RSS idle and under load
#   deploy/bench.sh ingest    rows/s from JetStream into ClickHouse with 1, 2, 3 workers,
#                             against a raw ClickHouse insert of the same rows, with
#                             ClickHouse on cores of its own and on shared cores
#   deploy/bench.sh query     query latency (p50 / p95) over 1 M sessions, 10 M events and
#                             10 M metric points
#   deploy/bench.sh python    the Python client: per-call cost in async mode, events/s
#                             delivered from one process to a real daemon
#   deploy/bench.sh e2e       datacat-loadgen through real daemons at 50 000 events/s:
#                             throughput, ingest lag, freshness p50 / p99
#   deploy/bench.sh suite     all of them, then one table of every figure and its target
#   deploy/bench.sh           the suite (the default)
#
# Environment: BENCH_EVENTS, BENCH_BATCH, BENCH_CLIENTS, BENCH_LAYOUTS (see each benchmark's
# source).

set -euo pipefail
# shellcheck source=deploy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$DATACAT_ROOT"

which="${1:-suite}"
datacat_install_deps
export DATACAT_NATS_SERVER_BIN="$DATACAT_ROOT/.local/nats/bin/nats-server"

export DATACAT_CLICKHOUSE_SERVER_BIN="${DATACAT_CLICKHOUSE_SERVER_BIN:-/usr/sbin/clickhouse-server}"
cargo build --release -p datacat-daemon -p datacat-ingest -p datacat-query -p datacat-bench --bins

# Two shapes of the same six million records (about 10 M rows, between a warm-up and a
# cool-down of the same size): deep (2000 sessions with 60 batches each queued: workers share
# sessions and wait for each other's rounds) and wide (60 000 sessions with 2). Smaller
# workloads measure mostly the pipeline filling and draining: it holds a few million rows
# with 3 workers. The benchmark process peaks at about 12 GB (it reads the warm-up's and the
# measured rows back for the raw insert). Each shape runs in two layouts: `dedicated`
# (ClickHouse alone on half the cores, as on its own machine in a deployment: does ingest
# keep it fed?) and `shared` (everything on every core: what a row costs in CPU). About
# 20 minutes per layout on the 2-core machines; BENCH_LAYOUTS="dedicated" runs one.
bench_ingest() {
    for layout in ${BENCH_LAYOUTS:-dedicated shared}; do
        BENCH_LAYOUT=$layout BENCH_SESSIONS=2000 BENCH_BATCHES=60 target/release/bench-ingest
        echo
        BENCH_LAYOUT=$layout BENCH_SESSIONS=60000 BENCH_BATCHES=2 target/release/bench-ingest
        echo
    done
}

bench_python() {
    DATACAT_DAEMON_BIN="$DATACAT_ROOT/target/release/datacat-daemon" python3 python/bench/bench_client.py
}

case "$which" in
    daemon) target/release/bench-daemon ;;
    ingest) bench_ingest ;;
    query) target/release/bench-query ;;
    python) bench_python ;;
    e2e) target/release/bench-e2e ;;
    suite | all)
        out="$DATACAT_ROOT/.local/bench"
        mkdir -p "$out"
        bench_python | tee "$out/python.log"
        target/release/bench-daemon | tee "$out/daemon.log"
        bench_ingest | tee "$out/ingest.log"
        target/release/bench-e2e | tee "$out/e2e.log"
        target/release/bench-query | tee "$out/query.log"
        echo
        python3 deploy/bench_table.py "$out"
        ;;
    *)
        echo "unknown benchmark: $which (try: daemon, ingest, query, python, e2e, suite, all)" >&2
        exit 2
        ;;
esac
