"""The commented settings file: `taxifare init` writes it as `.env`, and the repository's
`.env.sample` is this text (`taxifare init --path .env.sample --force` regenerates it; a test
checks that they agree, that it names every setting of `settings.Settings` once, and that its
values are the settings' defaults)."""

from __future__ import annotations

from pathlib import Path

from taxifare_flow.errors import SettingsError

TEMPLATE = """\
# taxifare-flow settings, written by `taxifare init` (as .env, git-ignored; `make init`) from the
# package's own list. Edit it; the process environment wins
# over .env. Every value below is a safe local default: the embedded SQLite MLflow store, the
# local Parquet source and a generated history, all under LOCAL_DATA_PATH.

# --- data ---------------------------------------------------------------------------------
# local | bigquery
DATA_SOURCE=local
# pending/ (the history), source/ (arrived months), mlflow/, prefect/, reports/
LOCAL_DATA_PATH=./data
# parquet | csv (format of the arrived month files)
SOURCE_FORMAT=parquet
HISTORY_SEED=42
# rows per generated month, or "kaggle" for the full Kaggle size (55,423,856 rows in all)
HISTORY_ROWS_PER_MONTH=10000
HISTORY_FIRST_MONTH=2009-01
HISTORY_LAST_MONTH=2015-06
# plain (the fare rules the features know) | unannounced (fare changes no feature knows, dated
# in docs/scenarios.md: a drift over 2010, +10 % and +$2 from 2014-01-01, a Manhattan surcharge
# from 2014-09-01)
HISTORY_SCENARIO=plain

# --- model and lifecycle -----------------------------------------------------------------
# feature set of a new lineage, and the target of `taxifare backfill` (1 | 2 | 3); a lineage keeps
# its version until a backfill moves it
FEATURE_VERSION=3
# ridge penalty on standardised coefficients (1e-3: the month one-hots, the year trend and
# the fare-era indicators are nearly collinear over the first months)
RIDGE_ALPHA=1e-3
# forgetting half-life in months of ride time; inf = exact, nothing forgotten
HALF_LIFE_MONTHS=inf
# share of each month's new rows held out (the newest) to compare challenger and production
HOLDOUT_FRACTION=0.15
# paired (z-test on per-row errors) | margin (MAE only)
PROMOTION_POLICY=paired
# relative MAE improvement required (0.01 = 1 %)
PROMOTION_MARGIN=0.01
PROMOTION_MIN_ROWS=200
LOCK_TIMEOUT_SECONDS=600
# a JSON summary is POSTed here after each lifecycle (empty = off)
NOTIFY_WEBHOOK_URL=

# --- MLflow ------------------------------------------------------------------------------
# empty = sqlite:///$LOCAL_DATA_PATH/mlflow/mlflow.db
MLFLOW_TRACKING_URI=
MLFLOW_EXPERIMENT=taxifare
MLFLOW_MODEL_NAME=taxifare
# The DB the Rust core reads the watermark from: a whole postgresql:// or sqlite:/// URI ...
MLFLOW_TRACKING_DB=
# ... or its parts (user and password are percent-encoded for you). Empty = the SQLite file
# behind MLFLOW_TRACKING_URI.
MLFLOW_DB_USER=
MLFLOW_DB_PASSWORD=
MLFLOW_DB_HOSTNAME=
MLFLOW_DB_PORT=5432
MLFLOW_DB_NAME=
# TLS to the tracking DB (libpq's meanings), added to the DSN above unless it sets its own:
# disable | prefer | require | verify-ca | verify-full (empty = libpq's default, prefer, or
# PGSSLMODE). Managed PostgreSQL: verify-full with the provider's CA file below.
MLFLOW_DB_SSLMODE=
# the server's CA certificate (PEM), or "system" for the machine's trusted roots (empty =
# PGSSLROOTCERT, else ~/.postgresql/root.crt if present, else the machine's trusted roots)
MLFLOW_DB_SSLROOTCERT=
# a taxifare-flow wheel (make wheel: dist/*.whl) packed into each model logged from now on, so
# `mlflow models serve -m models:/NAME@production` installs it with MLflow's default env manager
# (empty = requirement taxifare-flow==VERSION, which only a package index you run can answer)
MODEL_WHEEL=

# --- Prefect -----------------------------------------------------------------------------
PREFECT_FLOW_NAME=taxifare lifecycle
PREFECT_LOG_LEVEL=WARNING
# empty = $LOCAL_DATA_PATH/prefect (Prefect's local state: profiles, the ephemeral server's DB)
PREFECT_HOME=
# seconds the local Prefect API may take to start (it migrates its database on a first run)
PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120
# a Prefect server to report flow and task runs to, e.g. http://127.0.0.1:4200/api
# (start one with `prefect server start`); empty = ephemeral local mode, no server to run
PREFECT_API_URL=
# `taxifare serve_flow`'s schedule: five cron fields, UTC (default 04:00 on the 1st of each month);
# off = only the trigger on taxifare.month.arrived
PREFECT_FLOW_CRON=0 4 1 * *

# --- BigQuery (DATA_SOURCE=bigquery) ------------------------------------------------------
GCP_PROJECT=
BQ_DATASET=taxifare
BQ_TABLE=rides
BQ_LOCATION=US
# emulator endpoints (anonymous credentials are used only when these are set)
BQ_API_ENDPOINT=
BQ_STORAGE_ENDPOINT=
BQ_TIMEOUT_SECONDS=30
# where a lifecycle computes: local (the new rows are read out once) or warehouse (cleaning,
# features and sums run as SQL in BigQuery; only ~10^4 numbers leave it)
BQ_COMPUTE=local
# a query that would bill more bytes fails before it runs (dry run, then BigQuery's own cap);
# 0 = no cap. Default 10 GiB (~$0.06 at on-demand prices)
BQ_MAX_BYTES_BILLED=10737418240

# --- API (taxifare api) ------------------------------------------------------------------
# seconds between two look-ups of the production alias (a promotion is served within this)
API_REFRESH_SECONDS=30
"""


def variables(text: str = TEMPLATE) -> dict[str, str]:
    """`NAME: value` of every assignment in a settings file (comments and blank lines skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out


def write_env(path: Path, force: bool = False) -> Path:
    """Writes the commented settings file to `path`; an existing file is kept unless `force`."""
    if path.exists() and not force:
        raise SettingsError(f"{path} exists: edit it, or rerun with --force to replace it with the defaults")
    path.write_text(TEMPLATE)
    return path
