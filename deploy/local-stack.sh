#!/usr/bin/env bash
#
# deploy/local-stack.sh: run DataCat locally without Docker.
#
#   deploy/local-stack.sh up        install deps, build, start ClickHouse, NATS, ingest, query
#   deploy/local-stack.sh down      stop everything (query, ingest, NATS, ClickHouse)
#   deploy/local-stack.sh status    what runs, with pids, ports and health
#   deploy/local-stack.sh demo [ARGS...]
#                                   up, then run python/examples/demo_app.py (ARGS passed on)
#   deploy/local-stack.sh env       print the settings an application needs to log into the
#                                   stack (eval "$(deploy/local-stack.sh env)"): its daemon
#                                   connects as NATS's daemon user, whose password is here
#   deploy/local-stack.sh logs [-f] [NAME...]
#                                   show (or follow) logs; NAME is one of
#                                   clickhouse clickhouse-err nats migrate ingest query demo
#
# All state lives in .local/stack/ in the repository: clickhouse/ (data), nats/ (JetStream
# store), logs/, run/ (pid files, stack.env). `up` is idempotent: it starts only what is not
# running. Processes are tracked by pid file, never looked up by name.
#
# Environment overrides (defaults in brackets):
#   DATACAT_STACK_CH_HTTP_PORT [18123]   DATACAT_STACK_CH_TCP_PORT [19000]
#   DATACAT_STACK_CH_INTERSERVER_PORT [19009]
#   DATACAT_STACK_NATS_PORT [14222]      DATACAT_STACK_NATS_MONITOR_PORT [18222]
#   DATACAT_STACK_QUERY_LISTEN [127.0.0.1:8080]   DATACAT_STACK_INGEST_LISTEN [127.0.0.1:9464]
#   DATACAT_STACK_DATABASE [datacat]
#   DATACAT_SKIP_BUILD=1   do not run `cargo build --bins` (use the binaries already built)
#   CARGO_TARGET_DIR, DATACAT_CLICKHOUSE_SERVER_BIN, DATACAT_NATS_SERVER_BIN, RUST_LOG
# The values used by `up` are saved in .local/stack/run/stack.env and reused by the other
# subcommands while the stack exists; `down` forgets them.

set -euo pipefail

# shellcheck source=deploy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STACK_DIR="$DATACAT_LOCAL/stack"
CH_DIR="$STACK_DIR/clickhouse"
NATS_DIR="$STACK_DIR/nats"
LOG_DIR="$STACK_DIR/logs"
RUN_DIR="$STACK_DIR/run"
STACK_ENV="$RUN_DIR/stack.env"

CH_PIDFILE="$RUN_DIR/clickhouse.pid"
NATS_PIDFILE="$RUN_DIR/nats.pid"
INGEST_PIDFILE="$RUN_DIR/ingest.pid"
QUERY_PIDFILE="$RUN_DIR/query.pid"

STACK_VARS=(
    DATACAT_STACK_CH_HTTP_PORT DATACAT_STACK_CH_TCP_PORT DATACAT_STACK_CH_INTERSERVER_PORT
    DATACAT_STACK_NATS_PORT DATACAT_STACK_NATS_MONITOR_PORT
    DATACAT_STACK_QUERY_LISTEN DATACAT_STACK_INGEST_LISTEN DATACAT_STACK_DATABASE
)

# Settings: explicit environment > values saved by the last `up` > defaults.
load_settings() {
    if [ -f "$STACK_ENV" ]; then
        local name value
        while IFS='=' read -r name value; do
            case "$name" in DATACAT_STACK_*) ;; *) continue ;; esac
            if [ -z "${!name:-}" ]; then
                printf -v "$name" '%s' "$value"
            fi
        done <"$STACK_ENV"
    fi
    : "${DATACAT_STACK_CH_HTTP_PORT:=18123}"
    : "${DATACAT_STACK_CH_TCP_PORT:=19000}"
    : "${DATACAT_STACK_CH_INTERSERVER_PORT:=19009}"
    : "${DATACAT_STACK_NATS_PORT:=14222}"
    : "${DATACAT_STACK_NATS_MONITOR_PORT:=18222}"
    : "${DATACAT_STACK_QUERY_LISTEN:=127.0.0.1:8080}"
    : "${DATACAT_STACK_INGEST_LISTEN:=127.0.0.1:9464}"
    : "${DATACAT_STACK_DATABASE:=datacat}"

    NATS_URL="nats://127.0.0.1:$DATACAT_STACK_NATS_PORT"
    # Each program connects as its own NATS user (deploy/nats/auth.conf).
    NATS_INGEST_URL="$(datacat_nats_url "$NATS_DIR" "$DATACAT_STACK_NATS_PORT" ingest)"
    NATS_QUERY_URL="$(datacat_nats_url "$NATS_DIR" "$DATACAT_STACK_NATS_PORT" query)"
    NATS_DAEMON_URL="$(datacat_nats_url "$NATS_DIR" "$DATACAT_STACK_NATS_PORT" daemon)"
    CLICKHOUSE_URL="http://127.0.0.1:$DATACAT_STACK_CH_HTTP_PORT"
    QUERY_URL="http://$(local_addr "$DATACAT_STACK_QUERY_LISTEN")"
    INGEST_URL="http://$(local_addr "$DATACAT_STACK_INGEST_LISTEN")"

    # The environment every DataCat binary of the stack gets (clap reads DATACAT_* variables).
    BIN_ENV=(
        "DATACAT_NATS_URL=$NATS_INGEST_URL"
        "DATACAT_CLICKHOUSE_URL=$CLICKHOUSE_URL"
        "DATACAT_CLICKHOUSE_DATABASE=$DATACAT_STACK_DATABASE"
        # ClickHouse runs on this host: compressing what goes to it would only cost CPU.
        "DATACAT_CLICKHOUSE_COMPRESSION=none"
        "RUST_LOG=${RUST_LOG:-info}"
    )

    TARGET_DEBUG="$(datacat_target_dir)/debug"
    INGEST_BIN="$TARGET_DEBUG/datacat-ingest"
    QUERY_BIN="$TARGET_DEBUG/datacat-query"
    DAEMON_BIN="$TARGET_DEBUG/datacat-daemon"
}

save_settings() {
    mkdir -p "$RUN_DIR"
    local name
    {
        for name in "${STACK_VARS[@]}"; do
            printf '%s=%s\n' "$name" "${!name}"
        done
    } >"$STACK_ENV"
}

# HOST:PORT as a client reaches it (a wildcard listen address is reached on 127.0.0.1).
local_addr() {
    local hostport="$1" host port
    host="${hostport%:*}"
    port="${hostport##*:}"
    case "$host" in '' | 0.0.0.0 | '[::]' | '::') host=127.0.0.1 ;; esac
    printf '%s:%s\n' "$host" "$port"
}
port_of() { printf '%s\n' "${1##*:}"; }

# Marker identifying our own instance of a binary in /proc/PID/cmdline (see lib.sh).
bin_marker() { printf '%s ' "$1"; }

need_bin() {
    local bin="$1" what="$2"
    if [ ! -x "$bin" ]; then
        datacat_err "$bin not found: $what"
        datacat_err "build it with \`cargo build --bins\` (or run $0 up without DATACAT_SKIP_BUILD)"
        exit 1
    fi
}

rel() { printf '%s\n' "${1#"$DATACAT_ROOT"/}"; }

# `datacat-ingest` runs its workers with no subcommand; if it grows an explicit `run`
# subcommand, use that.
ingest_run_args() {
    # clap lists subcommands under "Commands:", one per line, indented.
    if "$INGEST_BIN" --help 2>/dev/null |
        awk '/^Commands:/ { c = 1; next } /^[^ ]/ { c = 0 } c && $1 == "run" { f = 1 } END { exit !f }'; then
        printf '%s\n' run
    fi
}

# start_service NAME PIDFILE BIN LISTEN HEALTH_URL [ARGS...]
start_service() {
    local name="$1" pidfile="$2" bin="$3" listen="$4" health="$5"
    shift 5
    local marker pid logfile="$LOG_DIR/$name.log"
    marker="$(bin_marker "$bin")"
    if pid="$(datacat_pid_alive "$pidfile" "$marker")"; then
        datacat_log "$name already running (pid $pid, $health)"
        return 0
    fi
    rm -f -- "$pidfile"
    datacat_check_ports_free "$name" "$(port_of "$listen")"
    # env(1) execs BIN, so the recorded pid is BIN's own pid.
    local nats_url="$NATS_INGEST_URL"
    [ "$name" != query ] || nats_url="$NATS_QUERY_URL"
    pid="$(datacat_spawn "$pidfile" "$logfile" "$marker" env "${BIN_ENV[@]}" \
        "DATACAT_NATS_URL=$nats_url" "DATACAT_LISTEN=$listen" "$bin" "$@")"
    if ! datacat_wait_http "$name" "$health" "$pidfile" "$marker"; then
        datacat_tail_log "$logfile" 40
        datacat_stop_pidfile "$name" "$pidfile" "$marker" >/dev/null 2>&1 || true
        rm -f -- "$pidfile"
        exit 1
    fi
    datacat_log "$name started (pid $pid, $health, log $(rel "$logfile"))"
}

run_migrate() {
    local logfile="$LOG_DIR/migrate.log"
    mkdir -p "$LOG_DIR"
    datacat_log "migrating ClickHouse database '$DATACAT_STACK_DATABASE' (datacat-ingest migrate)"
    printf '\n===== %s migrate =====\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" >>"$logfile"
    if ! env "${BIN_ENV[@]}" "$INGEST_BIN" migrate </dev/null >>"$logfile" 2>&1; then
        datacat_err "datacat-ingest migrate failed"
        datacat_tail_log "$logfile" 40
        exit 1
    fi
}

link_clickhouse_logs() {
    mkdir -p "$LOG_DIR"
    ln -sfn ../clickhouse/logs/clickhouse-server.log "$LOG_DIR/clickhouse.log"
    ln -sfn ../clickhouse/logs/clickhouse-server.err.log "$LOG_DIR/clickhouse-err.log"
    ln -sfn ../clickhouse/logs/stdout.log "$LOG_DIR/clickhouse-stdout.log"
}

cmd_up() {
    local t0=$SECONDS
    datacat_install_deps
    if [ "${DATACAT_SKIP_BUILD:-0}" != 1 ]; then
        datacat_ensure_cargo
        datacat_log "cargo build --bins"
        (cd "$DATACAT_ROOT" && cargo build --bins)
    fi
    need_bin "$INGEST_BIN" "the ingest crate's binary (datacat-ingest)"
    need_bin "$QUERY_BIN" "the query crate's binary (datacat-query)"

    mkdir -p "$CH_DIR" "$NATS_DIR" "$LOG_DIR" "$RUN_DIR"
    save_settings

    datacat_clickhouse_start "$CH_DIR" "$DATACAT_STACK_CH_HTTP_PORT" "$DATACAT_STACK_CH_TCP_PORT" \
        "$DATACAT_STACK_CH_INTERSERVER_PORT" "$CH_PIDFILE"
    link_clickhouse_logs
    datacat_nats_start "$NATS_DIR" "$DATACAT_STACK_NATS_PORT" "$DATACAT_STACK_NATS_MONITOR_PORT" \
        "$NATS_PIDFILE" "$LOG_DIR/nats.log"

    local need_migrate=0
    datacat_pid_alive "$INGEST_PIDFILE" "$(bin_marker "$INGEST_BIN")" >/dev/null || need_migrate=1
    datacat_pid_alive "$QUERY_PIDFILE" "$(bin_marker "$QUERY_BIN")" >/dev/null || need_migrate=1
    if [ "$need_migrate" = 1 ]; then
        run_migrate
    fi

    local -a ingest_args=()
    local a
    a="$(ingest_run_args)"
    [ -z "$a" ] || ingest_args=("$a")
    start_service ingest "$INGEST_PIDFILE" "$INGEST_BIN" "$DATACAT_STACK_INGEST_LISTEN" \
        "$INGEST_URL/health" ${ingest_args[@]+"${ingest_args[@]}"}
    start_service query "$QUERY_PIDFILE" "$QUERY_BIN" "$DATACAT_STACK_QUERY_LISTEN" \
        "$QUERY_URL/health"

    datacat_log "stack is up ($((SECONDS - t0))s)"
    cmd_status || true
}

cmd_down() {
    load_settings
    datacat_stop_pidfile query "$QUERY_PIDFILE" "$(bin_marker "$QUERY_BIN")"
    datacat_stop_pidfile ingest "$INGEST_PIDFILE" "$(bin_marker "$INGEST_BIN")"
    datacat_nats_stop "$NATS_DIR" "$NATS_PIDFILE"
    datacat_clickhouse_stop "$CH_DIR" "$CH_PIDFILE"
    rm -f -- "$STACK_ENV"
    datacat_log "stack is down (data kept in $(rel "$STACK_DIR"); delete that directory to start afresh)"
}

# status_line NAME PIDFILE MARKER ENDPOINT HEALTH_URL
status_line() {
    local name="$1" pidfile="$2" marker="$3" endpoint="$4" health="$5" pid state
    if pid="$(datacat_pid_alive "$pidfile" "$marker")"; then
        if curl -fsS --max-time 2 -o /dev/null "$health" 2>/dev/null; then
            state="running (pid $pid), healthy"
        else
            state="running (pid $pid), NOT answering $health"
            STATUS_OK=0
        fi
    else
        STATUS_OK=0
        if [ -f "$pidfile" ]; then
            state="stopped (stale pid file)"
        else
            state="stopped"
        fi
    fi
    printf '  %-11s %-44s %s\n' "$name" "$endpoint" "$state"
}

cmd_status() {
    STATUS_OK=1
    printf 'DataCat local stack (%s):\n' "$(rel "$STACK_DIR")"
    status_line clickhouse "$CH_PIDFILE" "$(_datacat_clickhouse_marker "$CH_DIR")" \
        "$CLICKHOUSE_URL (tcp :$DATACAT_STACK_CH_TCP_PORT)" "$CLICKHOUSE_URL/ping"
    status_line nats "$NATS_PIDFILE" "$(_datacat_nats_marker "$NATS_DIR")" \
        "$NATS_URL (monitor :$DATACAT_STACK_NATS_MONITOR_PORT)" \
        "http://127.0.0.1:$DATACAT_STACK_NATS_MONITOR_PORT/healthz?js-enabled-only=true"
    status_line ingest "$INGEST_PIDFILE" "$(bin_marker "$INGEST_BIN")" \
        "$INGEST_URL (/health, /metrics)" "$INGEST_URL/health"
    status_line query "$QUERY_PIDFILE" "$(bin_marker "$QUERY_BIN")" \
        "$QUERY_URL (API + dashboard)" "$QUERY_URL/health"
    if [ "$STATUS_OK" = 1 ]; then
        printf 'Dashboard: %s/\n' "$QUERY_URL"
        return 0
    fi
    return 3
}

cmd_logs() {
    local follow=0
    if [ "${1:-}" = -f ] || [ "${1:-}" = --follow ]; then
        follow=1
        shift
    fi
    local -a names=("$@") files=()
    [ "${#names[@]}" -gt 0 ] || names=(clickhouse clickhouse-err nats migrate ingest query demo)
    local n f
    for n in "${names[@]}"; do
        case "$n" in
            clickhouse | clickhouse-err | clickhouse-stdout | nats | migrate | ingest | query | demo) ;;
            *) datacat_die "unknown log '$n' (clickhouse, clickhouse-err, clickhouse-stdout, nats, migrate, ingest, query, demo)" ;;
        esac
        f="$LOG_DIR/$n.log"
        if [ -e "$f" ]; then
            files+=("$f")
        elif [ "$#" -gt 0 ]; then
            datacat_warn "no log yet: $(rel "$f")"
        fi
    done
    [ "${#files[@]}" -gt 0 ] || { datacat_log "no logs yet in $(rel "$LOG_DIR")"; return 0; }
    if [ "$follow" = 1 ]; then
        exec tail -n 20 -F -- "${files[@]}"
    fi
    for f in "${files[@]}"; do
        printf '===== %s =====\n' "$(rel "$f")"
        tail -n 50 -- "$f"
    done
}

# Waits (up to 30 s) until every session the demo printed is visible and finished in the
# query API, so the dashboard shows the whole demo when it is opened.
wait_demo_visible() {
    local ids id deadline=$((SECONDS + 30))
    ids=$(grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' "$LOG_DIR/demo.log" | tail -n 3)
    for id in $ids; do
        until curl -fsS "$QUERY_URL/api/sessions/$id" 2>/dev/null | grep -qE '"status":"(ended|crashed)"'; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                datacat_err "session $id is not visible yet; see $(rel "$LOG_DIR/ingest.log")"
                return 0
            fi
            sleep 0.2
        done
    done
    datacat_log "the demo's sessions are ingested and visible"
}

cmd_demo() {
    local demo="$DATACAT_ROOT/python/examples/demo_app.py"
    [ -f "$demo" ] || datacat_die "$(rel "$demo") not found"
    cmd_up
    need_bin "$DAEMON_BIN" "the daemon crate's binary (datacat-daemon)"
    datacat_log "running $(rel "$demo") (output also in $(rel "$LOG_DIR/demo.log"))"
    local rc=0
    (
        cd "$DATACAT_ROOT"
        export DATACAT_NATS_URL="$NATS_DAEMON_URL"
        export DATACAT_DAEMON_BIN="$DAEMON_BIN"
        export DATACAT_QUERY_URL="$QUERY_URL"
        export PYTHONPATH="$DATACAT_ROOT/python${PYTHONPATH:+:$PYTHONPATH}"
        python3 "$demo" "$@"
    ) 2>&1 | tee -a "$LOG_DIR/demo.log" || rc=$? # pipefail: the demo's status unless tee failed
    echo
    if [ "$rc" != 0 ]; then
        datacat_err "the demo app exited with status $rc (see $(rel "$LOG_DIR/demo.log")); the stack keeps running"
    else
        wait_demo_visible
    fi
    printf '==================================================================\n'
    printf '  Dashboard: %s/\n' "$QUERY_URL"
    printf '  The stack keeps running. Stop it with: deploy/local-stack.sh down\n'
    printf '==================================================================\n'
    return "$rc"
}

cmd_env() {
    printf 'export DATACAT_NATS_URL=%q\n' "$NATS_DAEMON_URL"
    printf 'export DATACAT_QUERY_URL=%q\n' "$QUERY_URL"
    printf 'export DATACAT_DAEMON_BIN=%q\n' "$DAEMON_BIN"
}

usage() {
    # The header comment, from its third line to its end.
    awk 'NR < 3 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

main() {
    local cmd="${1:-}"
    [ "$#" -eq 0 ] || shift
    load_settings
    case "$cmd" in
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        status) cmd_status "$@" ;;
        demo) cmd_demo "$@" ;;
        logs) cmd_logs "$@" ;;
        env) cmd_env "$@" ;;
        -h | --help | help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
