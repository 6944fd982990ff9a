#!/usr/bin/env bash
# The test command. `scripts/test.sh [all|fast] [pytest arguments...]`
#   all  (make test, the default): Rust unit tests, the stubs of the Rust module against the
#        built module and mypy (strict) over the package, then every pytest suite against real
#        MLflow, Prefect, PostgreSQL and the BigQuery emulator (their fixtures start what is
#        missing), with the 25 slowest tests listed at the end.
#   fast (make test_fast): the same checks, but only the pytest tests that start no server and
#        run no Kaggle-size or kill loop: the markers tests/conftest.py adds (docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# Where `make install` builds (the Makefile's CARGO_TARGET_DIR): the tests share its dependencies.
# This crate's test binary has the same name in every checkout: when another checkout built it
# last, its fingerprint is forgotten (as the Makefile forgets the crate's), lest that build
# pass for this one's.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/taxifare-flow/target}
built_from="$CARGO_TARGET_DIR/dev-fast/.taxifare-tests-built-from"
if [[ "$(cat "$built_from" 2>/dev/null)" != "$PWD" ]]; then
    rm -f "$CARGO_TARGET_DIR"/dev-fast/.fingerprint/taxifare-flow-*/test-lib-_core*
    mkdir -p "$(dirname "$built_from")" && echo "$PWD" >"$built_from"
fi
tier=all
case "${1:-}" in
    all | fast) tier=$1; shift ;;
esac
# Two workers (TEST_WORKERS=0 runs in the pytest process): most of the suite's wall clock is waiting for
# servers to start and answer, and each worker starts its own (session fixtures), so two
# halve the wait. loadgroup: the BigQuery tests stay on one worker (tests/conftest.py).
workers=(-n "${TEST_WORKERS:-2}" --dist loadgroup)
if [[ $tier == fast ]]; then
    pytest_args=(-m "not postgres and not bigquery and not prefect_server and not slow" --durations=10)
else
    pytest_args=(--durations=25)
fi
# The same profile as the extension build, so dependencies compile once. Compiling the Rust
# tests and the two single-threaded type checks overlap: two cores, a minute and a half saved.
cargo_log=$(mktemp)
cargo test --quiet --profile dev-fast --lib >"$cargo_log" 2>&1 &
cargo_pid=$!
trap 'kill "$cargo_pid" 2>/dev/null || true; rm -f "$cargo_log"' EXIT
.venv/bin/python -m mypy.stubtest taxifare_flow._core
# Files and strictness: [tool.mypy] in pyproject.toml.
.venv/bin/python -m mypy
cargo_status=0
wait "$cargo_pid" || cargo_status=$?
cat "$cargo_log"
if [[ $cargo_status != 0 ]]; then
    echo "cargo test failed (exit status $cargo_status)" >&2
    exit "$cargo_status"
fi
.venv/bin/python -m pytest "${workers[@]}" "${pytest_args[@]}" "$@"
