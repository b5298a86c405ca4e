#!/usr/bin/env bash
#
# deploy/compose-check.sh: the compose deployment, run for real on images built here
# (deploy/images.sh). Applications on this host (real daemons, through the published NATS
# port, as the daemon user) record sessions into it; every session is then checked through
# the published query API: whole, each record once.
#
#   1. docker-compose up with 3 ingest replicas; every service's healthcheck (run inside its
#      image) turns healthy.
#   2. Several hundred sessions; one ingest container killed (SIGKILL) in the middle of them,
#      ingest scaled to 5 and back to 2. Every session checked.
#   3. Once ingest has acknowledged everything: more sessions, and `docker-compose down` in
#      the middle of them (the volumes kept). Each ingest container finishes its rounds, says
#      so and exits 0; the daemons keep what they record meanwhile. `up` again: every session
#      checked, and no message ingest had applied before `down` comes back to it (the new
#      workers count no duplicates).
#
# It ends with one summary line. Everything it starts is removed at the end, also on failure.
#
# Environment: DATACAT_CHECK_SESSIONS (400; step 3 records half as many),
# DATACAT_CHECK_PROCESSES (4).
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

export DATACAT_NATS_URL="nats://datacat-daemon:$DATACAT_NATS_DAEMON_PASSWORD@127.0.0.1:$DATACAT_NATS_PORT"
DATACAT_DAEMON_BIN="$(datacat_target_dir)/release/datacat-daemon"
export DATACAT_DAEMON_BIN
export DATACAT_SPOOL_DIR="$work/spool"

# ingest_containers: the running ingest containers' ids.
ingest_containers() {
    docker ps -q --filter "label=com.docker.compose.project=$project" \
        --filter "label=com.docker.compose.service=ingest"
}

# wait_healthy SECONDS: every running container of the project with a healthcheck is healthy.
wait_healthy() {
    local deadline=$((SECONDS + $1)) unhealthy
    while :; do
        unhealthy=$(docker ps -q --filter "label=com.docker.compose.project=$project" |
            xargs docker inspect -f '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}healthy{{end}}' |
            grep -v ' healthy$' || true)
        [ -z "$unhealthy" ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            datacat_err "not healthy within $1 s: $unhealthy"
            docker ps -q --filter "label=com.docker.compose.project=$project" |
                xargs docker inspect -f '{{.Name}}: {{json .State.Health}}' | tail -5
            exit 1
        fi
        sleep 2
    done
}

# wait_query: the published query API answers.
wait_query() {
    local deadline=$((SECONDS + 180))
    until curl -fsS --max-time 2 -o /dev/null "$query/health" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            datacat_err "the query service did not answer $query/health within 180 s"
            compose ps
            compose logs --tail 30
            exit 1
        fi
        sleep 1
    done
}

# check_sessions PRODUCT: every session recorded for PRODUCT is whole and single; prints
# what was checked.
check_sessions() {
    python3 deploy/compose_workload.py check --product "$1" --expected "$work/$1.json" \
        --query-url "$query" --timeout 180 || {
        compose logs --no-color ingest | grep -E "WARN|ERROR" | tail -30
        return 1
    }
}

# unsettled: session batches in the stream that ingest has not acknowledged yet.
unsettled() {
    compose exec -T nats wget -q -O - 'http://127.0.0.1:8222/jsz?accounts=true&consumers=true' |
        python3 deploy/compose_workload.py unsettled
}

datacat_log "docker-compose up: 3 ingest replicas (project $project)"
compose up -d --scale ingest=3 2>&1 | tail -3
wait_query
wait_healthy 90
healthy=$(docker ps -q --filter "label=com.docker.compose.project=$project" | grep -c .)

# ---- 2. an ingest container killed, ingest scaled up and down, under load
datacat_log "recording $sessions sessions from $processes applications"
python3 deploy/compose_workload.py run --product compose-check --sessions "$sessions" \
    --processes "$processes" --spread 24 --expected "$work/compose-check.json" &
workload=$!
sleep 6
victim=$(ingest_containers | head -n 1)
datacat_log "killing ingest container ${victim:0:12} mid-load"
docker kill "$victim" >/dev/null
sleep 3
datacat_log "scaling ingest to 5"
compose up -d --no-recreate --scale ingest=5 2>&1 | tail -1
sleep 6
datacat_log "scaling ingest to 2"
compose up -d --no-recreate --scale ingest=2 2>&1 | tail -1
wait "$workload"
checked=$(check_sessions compose-check) || { echo "$checked"; exit 1; }
datacat_log "$checked"

# ---- 3. docker-compose down under load, and up again
# Everything before settled first (the killed worker's batches come back after the ack wait),
# so that any duplicate the new workers count was caused by `down`.
deadline=$((SECONDS + 120))
until [ "$(unsettled)" = 0 ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        datacat_err "ingest left $(unsettled) batches unacknowledged for 120 s"
        exit 1
    fi
    sleep 2
done
down_sessions=$((sessions / 2))
datacat_log "recording $down_sessions more sessions; docker-compose down in the middle of them"
python3 deploy/compose_workload.py run --product compose-down --sessions "$down_sessions" \
    --processes "$processes" --spread 12 --expected "$work/compose-down.json" &
workload=$!
sleep 6
workers=$(ingest_containers)
for worker in $workers; do
    docker wait "$worker" >"$work/exit-$worker" 2>&1 &
    docker logs -f "$worker" >"$work/log-$worker" 2>&1 &
done
compose down --timeout 60 2>&1 | tail -1
stopped=0 rows_at_shutdown=0 handed_back=0
for worker in $workers; do
    for _ in $(seq 50); do [ -s "$work/exit-$worker" ] && break; sleep 0.2; done
    exit_code=$(cat "$work/exit-$worker")
    if [ "$exit_code" != 0 ] || ! grep -q 'datacat_ingest::worker: stopped' "$work/log-$worker"; then
        echo "compose-check: ingest container ${worker:0:12} did not stop gracefully on down (exit code $exit_code); its log ends:"
        tail -20 "$work/log-$worker"
        exit 1
    fi
    stopped=$((stopped + 1))
    # What the worker's last rounds committed, and what it handed back unplanned.
    line=$(grep 'datacat_ingest::worker: stopped' "$work/log-$worker")
    [[ "$line" =~ rows_at_shutdown=([0-9]+) ]] && rows_at_shutdown=$((rows_at_shutdown + BASH_REMATCH[1]))
    [[ "$line" =~ handed_back=([0-9]+) ]] && handed_back=$((handed_back + BASH_REMATCH[1]))
done
sleep 3
datacat_log "docker-compose up again: 2 ingest replicas"
compose up -d --scale ingest=2 2>&1 | tail -1
wait_query
wait "$workload"
checked_down=$(check_sessions compose-down) || { echo "$checked_down"; exit 1; }
datacat_log "$checked_down"
duplicates=0
for worker in $(ingest_containers); do
    count=$(docker exec "$worker" curl -fsS http://127.0.0.1:9464/metrics |
        awk '$1 == "datacat_ingest_duplicates_total" { print $2 }')
    [[ "$count" =~ ^[0-9]+$ ]] || {
        datacat_err "ingest container ${worker:0:12} has no datacat_ingest_duplicates_total in /metrics"
        exit 1
    }
    duplicates=$((duplicates + count))
done
if [ "$duplicates" != 0 ]; then
    echo "compose-check: after down and up, ingest was given $duplicates batches it had applied before"
    exit 1
fi

echo "compose-check: OK in $((SECONDS - started)) s: compose up with 3 ingest replicas ($healthy containers healthy), one killed mid-load, scaled to 5 and back to 2: $checked; down mid-load ($stopped ingest containers stopped gracefully, committing $rows_at_shutdown rows of their last rounds and handing back $handed_back batches) and up: $checked_down, no batch applied twice"
