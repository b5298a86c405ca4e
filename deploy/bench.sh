#!/usr/bin/env bash
#
# deploy/bench.sh: benchmarks (release build). They print figures and assert nothing: these
# machines are shared and noisy, so compare figures taken in one run.
#
#   deploy/bench.sh daemon    events/s from a batching client through one daemon into
#                             JetStream; daemon RSS idle and under load
#
# Environment: BENCH_EVENTS, BENCH_BATCH, BENCH_CLIENTS (see each benchmark's source).

set -euo pipefail
# shellcheck source=deploy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$DATACAT_ROOT"

which="${1:-all}"
datacat_install_deps
export DATACAT_NATS_SERVER_BIN="$DATACAT_ROOT/.local/nats/bin/nats-server"

run_daemon() {
    cargo build --release -p datacat-daemon -p datacat-integration-tests --bins
    target/release/bench-daemon
}

case "$which" in
    daemon | all) run_daemon ;;
    *)
        echo "unknown benchmark: $which (try: daemon)" >&2
        exit 2
        ;;
esac
