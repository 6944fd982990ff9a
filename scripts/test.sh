#!/usr/bin/env bash
# The test command (make test): Rust unit tests, the stubs of the Rust module against the built
# module and mypy (strict) over the package, then the pytest suites against real MLflow,
# Prefect, PostgreSQL and the BigQuery emulator (their fixtures start what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
# The same profile as the extension build, so dependencies compile once.
cargo test --quiet --profile dev-fast
.venv/bin/python -m mypy.stubtest taxifare_flow._core
# Files and strictness: [tool.mypy] in pyproject.toml.
.venv/bin/python -m mypy
.venv/bin/python -m pytest "$@"
