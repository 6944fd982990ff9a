#!/usr/bin/env bash
# Installs the BigQuery emulator (bqemulator, DuckDB-backed) in its own virtualenv — it would
# downgrade protobuf in the project's — with DuckDB's spatial extension preinstalled, because
# offline the emulator dies at start trying to download it. Idempotent; prints the venv path.
set -euo pipefail
VENV="${BQEMULATOR_VENV:-$(cd "$(dirname "$0")/.." && pwd)/.bqemulator-venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/bqemulator" ] || [ ! -f "$VENV/.ready" ]; then
  "$PY" -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q "bqemulator==1.4.0" "duckdb==1.5.5" "duckdb-extension-spatial==1.5.5" \
    "duckdb-extensions==1.5.5" numpy >&2
  "$VENV/bin/python" -c "import duckdb, duckdb_extensions; duckdb_extensions.import_extension('spatial', con=duckdb.connect())" >&2
  touch "$VENV/.ready"
fi
echo "$VENV"
