#!/usr/bin/env bash
#
# deploy/test-all.sh: THE one command that runs every DataCat test.
# The README and CI (.ci/run) both call exactly this; it exits non-zero if anything fails.
#
# Steps (fail fast):
#   1. dependencies   ClickHouse 18.16 (apt), nats-server 2.15.1 (pip, .local/nats),
#                     pytest for python3 and for pyenv's Python 2.7.18, schemathesis
#                     (.local/schemathesis, fuzzes the query API in step 5), Debian's
#                     chromium + chromium-driver (the dashboard test drives a real browser)
#   2. cargo fmt --all -- --check
#   3. cargo clippy --workspace --all-targets -- -D warnings, also with the integration
#      tests' containers feature
#   4. cargo build --workspace --bins
#   5. the Python client's wheel, with the release daemon in it (pip wheel ./python)
#   6. cargo test --workspace (python_wheel.rs installs that wheel into fresh environments)
#   7. cargo fuzz: the batch codec and the call parser, 30 s each (fuzz/README.md)
#   8. Go client: gofmt, go vet, go test (go/) against the real daemon
#   9. pytest python/tests with python3
#  10. pytest python/tests with Python 3.8.18 (the oldest Python 3 the client supports)
#  11. pytest python/tests with Python 2.7.18
#  12. with a Docker engine: deploy/compose-check.sh (the compose deployment, for real)
#
# With a Docker engine, step 6 runs the integration tests' NATS and ClickHouse as containers
# of images built here (deploy/images.sh; no registry is needed), and the NATS cluster as
# containers on a Docker network; without one, or with DATACAT_TEST_CONTAINERS=0, as local
# processes. deploy/README.md ("Tests on containers") says which tests run where.
#
# Exported to the tests (steps 6-8):
#   DATACAT_NATS_SERVER_BIN        absolute path of .local/nats/bin/nats-server
#   DATACAT_CLICKHOUSE_SERVER_BIN  /usr/sbin/clickhouse-server
#   DATACAT_DAEMON_BIN             absolute path of <target>/debug/datacat-daemon
#   DATACAT_WHEEL                  the wheel step 5 built

set -euo pipefail

# shellcheck source=deploy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$DATACAT_ROOT"

TOTAL_STEPS=12
STEP_NO=0
STEP_NAME=""
STEP_T0=$SECONDS
T0=$SECONDS
SUMMARY=()

fmt_secs() { printf '%dm%02ds' "$(($1 / 60))" "$(($1 % 60))"; }

end_step() {
    if [ -n "$STEP_NAME" ]; then
        SUMMARY+=("$(printf '  ok   %-56s %s' "$STEP_NAME" "$(fmt_secs $((SECONDS - STEP_T0)))")")
        STEP_NAME=""
    fi
}

step() {
    end_step
    STEP_NO=$((STEP_NO + 1))
    STEP_NAME="$*"
    STEP_T0=$SECONDS
    printf '\n======================================================================\n'
    printf '== [%d/%d] %s\n' "$STEP_NO" "$TOTAL_STEPS" "$STEP_NAME"
    printf '======================================================================\n'
}

on_exit() {
    local rc=$?
    local total=$((SECONDS - T0))
    printf '\n======================================================================\n'
    if [ "$rc" -eq 0 ]; then
        end_step
        printf '%s\n' "${SUMMARY[@]}"
        printf 'ALL TESTS PASSED. Total elapsed time: %s (%ds)\n' "$(fmt_secs "$total")" "$total"
    else
        [ "${#SUMMARY[@]}" -eq 0 ] || printf '%s\n' "${SUMMARY[@]}"
        printf '  FAIL %-56s %s\n' "${STEP_NAME:-setup}" "$(fmt_secs $((SECONDS - STEP_T0)))"
        printf 'FAILED in step [%d/%d] %s (exit status %d). Total elapsed time: %s (%ds)\n' \
            "$STEP_NO" "$TOTAL_STEPS" "${STEP_NAME:-setup}" "$rc" "$(fmt_secs "$total")" "$total"
    fi
    printf '======================================================================\n'
}
trap on_exit EXIT

# run_pytest LABEL PYTHON PYTHONPATH: pytest on python/tests. Any non-zero exit fails the run,
# including 5 ("no tests collected"): the tests exist, so collecting none is an error.
run_pytest() {
    local label="$1" py="$2" pypath="$3" rc=0
    printf '[datacat] %s: %s\n' "$label" "$("$py" --version 2>&1)"
    # No bytecode files: Python 2 would write stale-prone *.pyc next to the sources.
    PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$pypath" "$py" -m pytest -p no:cacheprovider -ra python/tests || rc=$?
    case "$rc" in
        0) return 0 ;;
        5) datacat_err "$label: pytest collected no tests in python/tests (exit 5); that counts as a failure" ;;
        *) datacat_err "$label: pytest failed (exit $rc)" ;;
    esac
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
step "dependencies"
datacat_install_deps
datacat_install_test_deps
datacat_ensure_cargo
PY27="$(datacat_py27)"
PY38="$(datacat_py38)"
PY3_SITE="$(datacat_py3_pythonpath)"
printf '[datacat] cargo:      %s\n' "$(cargo --version)"
printf '[datacat] ClickHouse: %s\n' "$DATACAT_CLICKHOUSE_SERVER_BIN"
printf '[datacat] NATS:       %s (%s)\n' "$DATACAT_NATS_SERVER_BIN" "$("$DATACAT_NATS_SERVER_BIN" --version 2>&1)"
printf '[datacat] Python:     %s, %s, %s\n' "$(python3 --version 2>&1)" "$("$PY38" --version 2>&1)" "$("$PY27" --version 2>&1)"

case "$DATACAT_NATS_SERVER_BIN" in /*) ;; *) DATACAT_NATS_SERVER_BIN="$DATACAT_ROOT/$DATACAT_NATS_SERVER_BIN" ;; esac
export DATACAT_NATS_SERVER_BIN DATACAT_CLICKHOUSE_SERVER_BIN
DATACAT_DAEMON_BIN="$(datacat_target_dir)/debug/datacat-daemon"
export DATACAT_DAEMON_BIN

# ---------------------------------------------------------------------------------------------
step "cargo fmt --all -- --check"
cargo fmt --all -- --check

# ---------------------------------------------------------------------------------------------
step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p datacat-integration-tests --all-targets --features containers -- -D warnings

# ---------------------------------------------------------------------------------------------
step "cargo build --workspace --bins"
cargo build --workspace --bins
if [ ! -x "$DATACAT_DAEMON_BIN" ]; then
    datacat_err "the build did not produce $DATACAT_DAEMON_BIN (the daemon binary the tests need)"
    exit 1
fi

# ---------------------------------------------------------------------------------------------
step "python wheel: pip wheel ./python (the client, with the release daemon)"
DATACAT_WHEEL="$(datacat_wheel)"
export DATACAT_WHEEL
datacat_log "built ${DATACAT_WHEEL#"$DATACAT_ROOT"/}"

docker_engine() {
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

# ---------------------------------------------------------------------------------------------
step "cargo test --workspace"
# With a Docker engine, NATS and ClickHouse run as containers (testcontainers) of the images
# deploy/images.sh builds from the package registries; otherwise, or with
# DATACAT_TEST_CONTAINERS=0, as local processes. The same tests either way, but for the
# partition test, which needs containers (deploy/README.md, Tests on containers).
if docker_engine && [ "${DATACAT_TEST_CONTAINERS:-1}" = 1 ]; then
    bash deploy/images.sh servers
    while IFS= read -r line; do export "${line?}"; done < <(bash deploy/images.sh --env)
    datacat_log "Docker engine: NATS ($DATACAT_NATS_IMAGE) and ClickHouse ($DATACAT_CLICKHOUSE_IMAGE) run as containers"
    cargo test --workspace --features datacat-integration-tests/containers
else
    datacat_log "NATS and ClickHouse run as local processes (no Docker engine, or DATACAT_TEST_CONTAINERS=0)"
    cargo test --workspace
fi

# ---------------------------------------------------------------------------------------------
step "cargo fuzz: codec and call parser, ${DATACAT_FUZZ_SECONDS:-30} s each"
bash fuzz/run.sh "${DATACAT_FUZZ_SECONDS:-30}"

# ---------------------------------------------------------------------------------------------
step "go client: gofmt, go vet, go test"
unformatted="$(cd go && gofmt -l .)"
[ -z "$unformatted" ] || { datacat_err "gofmt would change: $unformatted"; exit 1; }
(cd go && go vet ./... && go test -count=1 ./...)

# ---------------------------------------------------------------------------------------------
step "pytest python/tests (python3)"
[ -d python/tests ] || { datacat_err "python/tests does not exist"; exit 1; }
run_pytest "python3" python3 "$DATACAT_ROOT/python${PY3_SITE:+:$PY3_SITE}"

# ---------------------------------------------------------------------------------------------
step "pytest python/tests (Python 3.8.18)"
PYENV_VERSION="$DATACAT_PY38_VERSION" run_pytest "Python 3.8.18" "$PY38" "$DATACAT_ROOT/python"

# ---------------------------------------------------------------------------------------------
step "pytest python/tests (Python 2.7.18)"
PYENV_VERSION="$DATACAT_PY27_VERSION" run_pytest "Python 2.7.18" "$PY27" "$DATACAT_ROOT/python"

# ---------------------------------------------------------------------------------------------
step "compose deployment: deploy/compose-check.sh"
if docker_engine; then
    bash deploy/compose-check.sh
else
    datacat_log "no Docker engine: the compose deployment is not run"
fi
