#!/usr/bin/env bash
# The test command (make test): Rust unit tests, then the pytest suites against real MLflow,
# Prefect, PostgreSQL and the BigQuery emulator (their fixtures start what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --quiet
.venv/bin/python -m pytest "$@"
