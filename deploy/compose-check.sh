#!/usr/bin/env bash
#
# deploy/compose-check.sh: the compose deployment, run for real on images built here
# (deploy/images.sh). It brings deploy/compose.yml up with 3 ingest replicas, records several
# hundred sessions from applications on this host (real daemons, through the published NATS
# port, as the daemon user), kills one ingest container in the middle of it, scales ingest to
# 5 and back to 2, checks every session through the published query API (whole, each record
# once), stops everything with `docker-compose down` (ingest finishing its rounds) and ends
# with one summary line. Everything it starts is removed at the end, also on failure.
#
# Environment: DATACAT_CHECK_SESSIONS (400), DATACAT_CHECK_PROCESSES (4).
set -euo pipefail
# shellcheck source=deploy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$DATACAT_ROOT"

sessions=${DATACAT_CHECK_SESSIONS:-400}
processes=${DATACAT_CHECK_PROCESSES:-4}
started=$SECONDS

bash deploy/images.sh
while IFS= read -r line; do export "${line?}"; done < <(bash deploy/images.sh --env)

work="$(mktemp -d)"
project="datacat-check-$$"
compose() { docker-compose -p "$project" -f deploy/compose.yml --env-file "$work/.env" "$@"; }
cleanup() {
    compose down -v --timeout 60 >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

bash deploy/secrets.sh "$work/.env" 2>/dev/null
set -a
# shellcheck disable=SC1091
. "$work/.env"
set +a
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
DATACAT_NATS_PORT=$(free_port)
DATACAT_QUERY_PORT=$(free_port)
export DATACAT_NATS_PORT DATACAT_QUERY_PORT
# No more open files than the engine itself may have.
DATACAT_CLICKHOUSE_NOFILE=$(ulimit -Hn)
[ "$DATACAT_CLICKHOUSE_NOFILE" = unlimited ] || [ "$DATACAT_CLICKHOUSE_NOFILE" -gt 262144 ] &&
    DATACAT_CLICKHOUSE_NOFILE=262144
export DATACAT_CLICKHOUSE_NOFILE
query="http://127.0.0.1:$DATACAT_QUERY_PORT"

datacat_log "docker-compose up: 3 ingest replicas (project $project)"
compose up -d --scale ingest=3 2>&1 | tail -3
deadline=$((SECONDS + 180))
until curl -fsS --max-time 2 -o /dev/null "$query/health" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        datacat_err "the query service did not answer $query/health within 180 s"
        compose ps
        compose logs --tail 30
        exit 1
    fi
    sleep 1
done

export DATACAT_NATS_URL="nats://datacat-daemon:$DATACAT_NATS_DAEMON_PASSWORD@127.0.0.1:$DATACAT_NATS_PORT"
DATACAT_DAEMON_BIN="$(datacat_target_dir)/release/datacat-daemon"
export DATACAT_DAEMON_BIN
export DATACAT_SPOOL_DIR="$work/spool"
datacat_log "recording $sessions sessions from $processes applications"
python3 deploy/compose_workload.py run --sessions "$sessions" --processes "$processes" \
    --spread 24 --expected "$work/expected.json" &
workload=$!

sleep 6
victim=$(compose ps -q ingest | head -n 1)
datacat_log "killing ingest container ${victim:0:12} mid-load"
docker kill "$victim" >/dev/null
sleep 3
datacat_log "scaling ingest to 5"
compose up -d --no-recreate --scale ingest=5 2>&1 | tail -1
sleep 6
datacat_log "scaling ingest to 2"
compose up -d --no-recreate --scale ingest=2 2>&1 | tail -1
wait "$workload"

checked=$(python3 deploy/compose_workload.py check --expected "$work/expected.json" \
    --query-url "$query" --timeout 180) || {
    echo "$checked"
    compose logs --no-color ingest | grep -E "WARN|ERROR" | tail -30
    exit 1
}

# Ingest stops gracefully: each running worker finishes its rounds, says so and exits 0.
workers=$(docker ps -q --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=ingest")
running=$(printf '%s\n' "$workers" | grep -c .)
compose stop --timeout 60 ingest >/dev/null 2>&1
for worker in $workers; do
    exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$worker")
    if [ "$exit_code" != 0 ] || ! docker logs "$worker" 2>&1 | grep -q 'datacat_ingest::worker: stopped'; then
        echo "compose-check: ingest container ${worker:0:12} did not stop gracefully (exit code $exit_code); its log ends:"
        docker logs --tail 20 "$worker" 2>&1
        exit 1
    fi
done

echo "compose-check: OK in $((SECONDS - started)) s: compose up with 3 ingest replicas, one killed mid-load, scaled to 5 and back to 2; $checked; $running ingest containers stopped gracefully"
