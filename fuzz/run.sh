#!/usr/bin/env bash
# fuzz/run.sh [SECONDS]: runs every fuzz target for SECONDS (30) each, from the seeds in
# fuzz/seeds/<target> plus what earlier runs kept in fuzz/corpus/<target>. Installs
# cargo-fuzz from crates.io if it is missing. Fails if a target does not build or finds a
# crash (the input is left in fuzz/artifacts/<target>/).
#
# cargo fuzz wants a nightly compiler for its -Z flags; RUSTC_BOOTSTRAP=1 lets the stable one
# take them. No sanitizer: the code under test has no unsafe code (the workspace denies it),
# and a plain build runs several times more inputs per second.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
seconds="${1:-30}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    if [ -d "seeds/$target" ]; then
        cp -n "seeds/$target"/* "corpus/$target/" 2>/dev/null || true
    fi
    echo "[fuzz] $target for ${seconds} s"
    log="$(mktemp)"
    status=0
    # A fixed seed: from the same seeds, every run explores the same way (a CI run must not
    # fail by luck); longer runs (fuzz/README.md) explore further.
    cargo fuzz run --sanitizer none -O "$target" -- -seed="${DATACAT_FUZZ_SEED:-1}" \
        -max_total_time="$seconds" >"$log" 2>&1 || status=$?
    grep -E "^(Done [0-9]+ runs|SUMMARY|thread '.*' panicked|Failing input|error)" "$log" || true
    if [ "$status" -ne 0 ]; then
        tail -40 "$log" >&2
        echo "[fuzz] $target failed (exit $status); a crashing input is kept in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    rm -f "$log"
done
