#!/usr/bin/env bash
# Installs the BigQuery emulator (bqemulator, DuckDB-backed) in its own virtualenv — it would
# downgrade protobuf in the project's — with DuckDB's spatial extension preinstalled, because
# offline the emulator dies at start trying to download it. Idempotent; prints the venv path.
# It is a test tool pinned by version, not part of the project: one install per user and version
# (in the user's cache, like pip's), shared by every clone, so a fresh clone's `make test` does
# not reinstall it. BQEMULATOR_VENV puts it elsewhere.
set -euo pipefail
VERSION=1.4.0
VENV="${BQEMULATOR_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/taxifare-flow/bqemulator-$VERSION}"
PY="${PYTHON:-python3}"
# Two pytest workers may ask at once: one installs, the other waits for it.
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if [ ! -x "$VENV/bin/bqemulator" ] || [ ! -f "$VENV/.ready" ]; then
  "$PY" -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q "bqemulator==$VERSION" "duckdb==1.5.5" "duckdb-extension-spatial==1.5.5" \
    "duckdb-extensions==1.5.5" numpy >&2
  "$VENV/bin/python" -c "import duckdb, duckdb_extensions; duckdb_extensions.import_extension('spatial', con=duckdb.connect())" >&2
  touch "$VENV/.ready"
fi
echo "$VENV"
