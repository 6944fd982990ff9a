"""Settings: `.env` (if present) then the process environment, which wins.

Nothing is read at import time; `load_settings()` validates lazily and raises
`SettingsError` naming the variable and the bad value.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from dotenv import dotenv_values

from taxifare_flow import _core
from taxifare_flow.errors import SettingsError

DATA_SOURCES = ("local", "bigquery")
#: Where a BigQuery lifecycle computes: `local` reads the rows out once, `warehouse` runs the
#: kernel's cleaning, features and sums as SQL so only aggregates leave BigQuery.
BQ_COMPUTES = ("local", "warehouse")
SOURCE_FORMATS = ("parquet", "csv")
PROMOTION_POLICIES = ("paired", "margin")
#: Generated histories (`src/generator/scenario.rs`, `docs/scenarios.md`): `plain` follows the
#: fare rules the features know; `unannounced` adds fare changes no feature knows.
HISTORY_SCENARIOS = ("plain", "unannounced")
#: Feature sets a new lineage may start with, and the default (`src/kernel/feature_set.rs`).
FEATURE_VERSIONS = tuple(str(v) for v in _core.FEATURE_VERSIONS)
DEFAULT_FEATURE_VERSION = str(_core.DEFAULT_FEATURE_VERSION)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: libpq's `sslmode` values the settings accept (`allow` is left out: it encrypts only when the
#: server insists, which no deployment wants to ask for).
SSL_MODES = ("disable", "prefer", "require", "verify-ca", "verify-full")


def _env(dotenv_path: Path | None = None) -> dict[str, str]:
    path = dotenv_path if dotenv_path is not None else Path.cwd() / ".env"
    values: dict[str, str] = {}
    if path.is_file():
        values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    values.update(os.environ)
    return values


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str, default: str = "") -> str:
        return self.env.get(name, "").strip() or default

    def choice(self, name: str, default: str, allowed: tuple[str, ...], upper: bool = False) -> str:
        raw = self.text(name, default)
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            raise SettingsError(f"{name}={raw!r} is not one of {', '.join(allowed)}")
        return value

    def integer(self, name: str, default: int | None, minimum: int | None = None) -> int | None:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not an integer") from None
        if minimum is not None and value < minimum:
            raise SettingsError(f"{name}={raw!r} must be at least {minimum}")
        return value

    def number(self, name: str, default: float, minimum: float | None = None, maximum: float | None = None) -> float:
        raw = self.text(name)
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a number") from None
        # inf passes every bound and fails late (a FAILED run, a lock that never times out).
        if not math.isfinite(value):
            raise SettingsError(f"{name}={raw!r} is not a finite number")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise SettingsError(f"{name}={raw!r} is out of range [{minimum}, {maximum}]")
        return value

    def name(self, name: str, default: str) -> str:
        """A name MLflow puts inside quoted filter strings: quotes and control characters
        would break the registry's queries, so they are refused here."""
        raw = self.text(name, default)
        bad = sorted({c for c in raw if c in "'\"`\\" or not c.isprintable()})
        if bad:
            raise SettingsError(f"{name}={raw!r} contains {', '.join(repr(c) for c in bad)}: use letters, digits, '-', '_', '.' or spaces")
        return raw

    def data_path(self, name: str, default: str) -> Path:
        """A folder the commands will write into: refused now rather than as a late 'no more
        data' or a Prefect timeout."""
        raw = self.text(name, default)
        path = Path(raw).expanduser().resolve()
        if path.parts[1:2] and path.parts[1] in ("proc", "sys", "dev"):
            raise SettingsError(f"{name}={raw!r} is under /{path.parts[1]}, a virtual file system: choose a normal folder")
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            what = "is a file" if existing == path else f"is inside {str(existing)!r}, which is a file"
            raise SettingsError(f"{name}={raw!r} {what}, not a folder: choose a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise SettingsError(f"{name}={raw!r} is not writable ({str(existing)!r} refuses writes): choose a writable folder")
        return path

    def port(self, name: str, default: int) -> int:
        raw = self.text(name)
        if not raw:
            return default
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise SettingsError(f"{name}={raw!r} is not a port")
        return int(raw)

    def month(self, name: str, default: str) -> str:
        raw = self.text(name, default)
        year, _, month = raw.partition("-")
        if len(raw) != 7 or not (year.isdigit() and month.isdigit() and 1 <= int(month) <= 12):
            raise SettingsError(f"{name}={raw!r} is not a month (YYYY-MM)")
        return raw


#: BigQuery bills at least 10 MB a table a query: a lower cap would refuse every query.
MIN_BYTES_BILLED = 10 * 2**20


def _byte_cap(value: int | None) -> int | None:
    """`BQ_MAX_BYTES_BILLED`: 0 means no cap; otherwise at least BigQuery's 10 MB minimum."""
    if not value:
        return None
    if value < MIN_BYTES_BILLED:
        raise SettingsError(f"BQ_MAX_BYTES_BILLED={value} is below BigQuery's minimum bill of {MIN_BYTES_BILLED} bytes "
                            "(10 MB a table a query): every query would be refused; use 0 for no cap")
    return value


def _setting(group: str, *, secret: bool = False) -> Any:
    """A `Settings` field of `group` (how `show_env` shows it). Its variable is its name in
    capitals (`env_var`); a `secret` one is shown as `***`."""
    return field(metadata={"group": group, "secret": secret}, repr=not secret)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting of taxifare-flow (see `.env.sample`): the one list of their names. Each
    field is named after its variable; no field has a default, so `load_settings` reads them
    all."""

    data_source: str = _setting("data")
    local_data_path: Path = _setting("data")
    source_format: str = _setting("data")
    history_seed: int = _setting("data")
    history_rows_per_month: int | None = _setting("data")
    history_first_month: str = _setting("data")
    history_last_month: str = _setting("data")
    history_scenario: str = _setting("data")
    feature_version: int = _setting("model & lifecycle")
    ridge_alpha: float = _setting("model & lifecycle")
    half_life_months: float = _setting("model & lifecycle")
    holdout_fraction: float = _setting("model & lifecycle")
    promotion_policy: str = _setting("model & lifecycle")
    promotion_margin: float = _setting("model & lifecycle")
    promotion_min_rows: int = _setting("model & lifecycle")
    lock_timeout_seconds: float = _setting("model & lifecycle")
    notify_webhook_url: str = _setting("model & lifecycle")
    mlflow_tracking_uri: str = _setting("MLflow")
    mlflow_tracking_db: str = _setting("MLflow")
    mlflow_experiment: str = _setting("MLflow")
    mlflow_model_name: str = _setting("MLflow")
    mlflow_db_user: str = _setting("MLflow")
    mlflow_db_password: str = _setting("MLflow", secret=True)
    mlflow_db_hostname: str = _setting("MLflow")
    mlflow_db_port: int = _setting("MLflow")
    mlflow_db_name: str = _setting("MLflow")
    mlflow_db_sslmode: str = _setting("MLflow")
    mlflow_db_sslrootcert: str = _setting("MLflow")
    model_wheel: str = _setting("MLflow")
    prefect_flow_name: str = _setting("Prefect")
    prefect_log_level: str = _setting("Prefect")
    prefect_home: Path = _setting("Prefect")
    prefect_api_url: str = _setting("Prefect")
    prefect_server_ephemeral_startup_timeout_seconds: float = _setting("Prefect")
    prefect_flow_cron: str = _setting("Prefect")
    gcp_project: str = _setting("BigQuery")
    bq_dataset: str = _setting("BigQuery")
    bq_table: str = _setting("BigQuery")
    bq_location: str = _setting("BigQuery")
    bq_api_endpoint: str = _setting("BigQuery")
    bq_storage_endpoint: str = _setting("BigQuery")
    bq_timeout_seconds: float = _setting("BigQuery")
    bq_compute: str = _setting("BigQuery")
    bq_max_bytes_billed: int | None = _setting("BigQuery")
    api_refresh_seconds: float = _setting("API")

    @property
    def pending_dir(self) -> Path:
        return self.local_data_path / "pending"

    @property
    def source_dir(self) -> Path:
        return self.local_data_path / "source"

    @property
    def mlflow_dir(self) -> Path:
        return self.local_data_path / "mlflow"

    @property
    def reports_dir(self) -> Path:
        return self.local_data_path / "reports"

    @property
    def artifact_location(self) -> str:
        return (self.mlflow_dir / "artifacts").resolve().as_uri()

    @property
    def tracking_is_embedded(self) -> bool:
        return self.mlflow_tracking_uri.startswith("sqlite:")

    def sqlite_path(self) -> Path | None:
        """The SQLite file behind the tracking DB, if it is one."""
        if self.mlflow_tracking_db.startswith("sqlite:///"):
            return Path(self.mlflow_tracking_db.removeprefix("sqlite:///"))
        return None


def compose_tracking_db(user: str, password: str, host: str, port: int, name: str, sslmode: str = "", sslrootcert: str = "") -> str:
    """`postgresql://USER:PASSWORD@HOST:PORT/NAME[?sslmode=…&sslrootcert=…]` with user and
    password percent-encoded."""
    auth = quote(user, safe="")
    if password:
        auth += ":" + quote(password, safe="")
    return with_tls_params(f"postgresql://{auth}@{host}:{port}/{name}", sslmode, sslrootcert)


def with_tls_params(dsn: str, sslmode: str, sslrootcert: str) -> str:
    """`dsn` with `sslmode`/`sslrootcert` appended as query parameters, each only if given and
    the DSN does not set it already (the DSN wins, as over libpq's PGSSL* variables)."""
    if not dsn.startswith(("postgresql://", "postgres://")):
        return dsn
    # The query starts at the first '?' after the credentials (which end at the first '@').
    head = dsn.find("@") + 1
    query_at = dsn.find("?", head)
    present = {k for k, _ in parse_qsl(dsn[query_at + 1:], keep_blank_values=True)} if query_at >= 0 else set()
    extra = [f"{k}={quote(v, safe='/')}" for k, v in (("sslmode", sslmode), ("sslrootcert", sslrootcert)) if v and k not in present]
    if not extra:
        return dsn
    return dsn + ("&" if query_at >= 0 else "?") + "&".join(extra)


_PERCENT_OK = re.compile(r"%[0-9A-Fa-f]{2}")
_ENCODE_HINT = ("percent-encode the user and password ('@' → %40, '/' → %2F, '%' → %25, a blank → %20), "
                "or set MLFLOW_DB_USER, MLFLOW_DB_PASSWORD, … instead (they are encoded for you)")


def check_dsn_encoding(name: str, dsn: str) -> None:
    """Refuses a PostgreSQL URI whose user or password is not percent-encoded where it must be.

    libpq, SQLAlchemy and tokio-postgres split such a URI differently: a raw '@' sends the rest
    of the password to DNS as a host name, a raw '/' or a stray '%' makes libpq echo part of it
    in its error. The message never quotes the value."""
    if not dsn.startswith(("postgresql://", "postgres://")):
        return
    rest = dsn.split("://", 1)[1]
    if any(c.isspace() for c in rest):
        raise SettingsError(f"{name} holds a blank: {_ENCODE_HINT}")
    ats = rest.count("@")
    if ats > 1 or (ats == 1 and "/" in rest[: rest.index("@")]):
        raise SettingsError(f"{name} holds a raw '@' or '/' in its user or password: {_ENCODE_HINT}")
    userinfo = rest[: rest.index("@")] if ats else ""
    if userinfo.count("%") != len(_PERCENT_OK.findall(userinfo)):
        raise SettingsError(f"{name} holds a raw '%' in its user or password: {_ENCODE_HINT}")


def _tls_setting(r: _Reader) -> tuple[str, str]:
    """MLFLOW_DB_SSLMODE and MLFLOW_DB_SSLROOTCERT (an absolute path, or libpq's `system`)."""
    raw = r.text("MLFLOW_DB_SSLMODE")
    if raw and raw.lower() not in SSL_MODES:
        raise SettingsError(f"MLFLOW_DB_SSLMODE={raw!r} is not one of {', '.join(SSL_MODES)}")
    root = r.text("MLFLOW_DB_SSLROOTCERT")
    if root and root != "system":
        path = Path(root).expanduser().resolve()
        if not path.is_file():
            raise SettingsError(f"MLFLOW_DB_SSLROOTCERT={root!r} is not a file (the server's CA certificate, PEM)")
        root = str(path)
    return raw.lower(), root


def _tracking_db(r: _Reader, tracking_uri: str) -> str:
    """The watermark DSN: MLFLOW_TRACKING_DB, else composed from the MLFLOW_DB_* parts, else
    derived from MLFLOW_TRACKING_URI; MLFLOW_DB_SSLMODE/SSLROOTCERT added where it names none."""
    sslmode, sslrootcert = _tls_setting(r)
    whole = r.text("MLFLOW_TRACKING_DB")
    if whole:
        if not whole.startswith(("postgresql://", "postgres://", "sqlite:///")):
            # Only the scheme: what follows may be a password.
            raise SettingsError(f"MLFLOW_TRACKING_DB must be a postgresql:// or sqlite:/// URI, got {whole.split(':', 1)[0]}:…")
        check_dsn_encoding("MLFLOW_TRACKING_DB", whole)
        return with_tls_params(whole, sslmode, sslrootcert)
    parts = {n: r.text(n) for n in ("MLFLOW_DB_USER", "MLFLOW_DB_PASSWORD", "MLFLOW_DB_HOSTNAME", "MLFLOW_DB_NAME")}
    port = r.port("MLFLOW_DB_PORT", 5432)
    if any(parts.values()):
        for required in ("MLFLOW_DB_USER", "MLFLOW_DB_HOSTNAME", "MLFLOW_DB_NAME"):
            if not parts[required]:
                raise SettingsError(f"{required} is empty but other MLFLOW_DB_* parts are set")
        return compose_tracking_db(
            parts["MLFLOW_DB_USER"], parts["MLFLOW_DB_PASSWORD"], parts["MLFLOW_DB_HOSTNAME"], port, parts["MLFLOW_DB_NAME"],
            sslmode, sslrootcert,
        )
    if tracking_uri.startswith("sqlite:///"):
        return tracking_uri
    if tracking_uri.startswith(("postgresql://", "postgres://", "postgresql+")):
        # SQLAlchemy driver suffixes (postgresql+psycopg://) are not part of a libpq DSN.
        dsn = tracking_uri if "+" not in tracking_uri.split("://", 1)[0] else "postgresql://" + tracking_uri.split("://", 1)[1]
        check_dsn_encoding("MLFLOW_TRACKING_URI", dsn)
        return with_tls_params(dsn, sslmode, sslrootcert)
    return ""


def _prefect_api_url(r: _Reader) -> str:
    url = r.text("PREFECT_API_URL").rstrip("/")
    if url and not url.startswith(("http://", "https://")):
        # Only the scheme is echoed: the rest may hold credentials.
        got = f"scheme {url.split('://', 1)[0]!r}" if "://" in url else "no scheme"
        raise SettingsError(f"PREFECT_API_URL must be an http(s) URL such as http://127.0.0.1:4200/api (got {got})")
    return url


def _wheel(r: _Reader) -> str:
    """MODEL_WHEEL: a taxifare-flow wheel packed into every model logged from now on (its
    requirements name it), so `mlflow models serve` installs it with MLflow's default
    environment manager; empty = the requirement `taxifare-flow==VERSION` (an index must have it)."""
    raw = r.text("MODEL_WHEEL")
    if not raw:
        return ""
    path = Path(raw).expanduser().resolve()
    if path.suffix != ".whl" or not path.is_file():
        raise SettingsError(f"MODEL_WHEEL={raw!r} is not a wheel file (build one with `make wheel`: dist/taxifare_flow-*.whl)")
    return str(path)


def _cron(r: _Reader) -> str:
    """PREFECT_FLOW_CRON: five cron fields (`taxifare serve_flow`'s schedule, UTC); `none` or
    `off` for no schedule (the arrival trigger alone)."""
    raw = r.text("PREFECT_FLOW_CRON", "0 4 1 * *")
    if raw.lower() in ("none", "off"):
        return ""
    if len(raw.split()) != 5 or not re.fullmatch(r"[0-9*/,\-A-Za-z ]+", raw):
        raise SettingsError(f"PREFECT_FLOW_CRON={raw!r} is not a cron schedule of five fields (minute hour day month weekday), "
                            "e.g. '0 4 1 * *' (04:00 UTC on the 1st), or 'off'")
    return raw


def load_settings(dotenv_path: Path | None = None) -> Settings:
    """Reads and validates the settings."""
    return settings_from(_env(dotenv_path))


def settings_from(env: Mapping[str, str]) -> Settings:
    """Validates the settings given as variables (`SETTING_VARS`)."""
    r = _Reader(env)
    data_path = r.data_path("LOCAL_DATA_PATH", "data")
    default_uri = "sqlite:///" + str(data_path / "mlflow" / "mlflow.db")
    tracking_uri = r.text("MLFLOW_TRACKING_URI", default_uri)
    if tracking_uri.startswith(("postgresql://", "postgres://", "postgresql+")):
        # Also when MLFLOW_DB_* name the watermark's DSN: MLflow's SQLAlchemy reads this one.
        check_dsn_encoding("MLFLOW_TRACKING_URI", "postgresql://" + tracking_uri.split("://", 1)[1])
    half_life_raw = r.text("HALF_LIFE_MONTHS", "inf").lower()
    half_life = math.inf if half_life_raw in ("inf", "none", "") else r.number("HALF_LIFE_MONTHS", math.inf, minimum=1e-9)
    rows = r.text("HISTORY_ROWS_PER_MONTH", "10000").lower()
    rows_per_month = None if rows == "kaggle" else r.integer("HISTORY_ROWS_PER_MONTH", 10000, minimum=1)
    sslmode, sslrootcert = _tls_setting(r)
    return Settings(
        data_source=r.choice("DATA_SOURCE", "local", DATA_SOURCES),
        local_data_path=data_path,
        source_format=r.choice("SOURCE_FORMAT", "parquet", SOURCE_FORMATS),
        history_seed=r.integer("HISTORY_SEED", 42, minimum=0) or 0,
        history_rows_per_month=rows_per_month,
        history_first_month=r.month("HISTORY_FIRST_MONTH", "2009-01"),
        history_last_month=r.month("HISTORY_LAST_MONTH", "2015-06"),
        history_scenario=r.choice("HISTORY_SCENARIO", "plain", HISTORY_SCENARIOS),
        feature_version=int(r.choice("FEATURE_VERSION", DEFAULT_FEATURE_VERSION, FEATURE_VERSIONS)),
        ridge_alpha=r.number("RIDGE_ALPHA", 1e-3, minimum=0.0),
        half_life_months=half_life,
        holdout_fraction=r.number("HOLDOUT_FRACTION", 0.15, minimum=0.01, maximum=0.5),
        promotion_policy=r.choice("PROMOTION_POLICY", "paired", PROMOTION_POLICIES),
        # A fraction of production's MAE: at 1 a challenger would need a negative error.
        promotion_margin=r.number("PROMOTION_MARGIN", 0.01, minimum=0.0, maximum=1.0),
        promotion_min_rows=r.integer("PROMOTION_MIN_ROWS", 200, minimum=1) or 200,
        lock_timeout_seconds=r.number("LOCK_TIMEOUT_SECONDS", 600.0, minimum=0.0),
        notify_webhook_url=r.text("NOTIFY_WEBHOOK_URL"),
        mlflow_tracking_uri=tracking_uri,
        mlflow_tracking_db=_tracking_db(r, tracking_uri),
        mlflow_experiment=r.name("MLFLOW_EXPERIMENT", "taxifare"),
        mlflow_model_name=r.name("MLFLOW_MODEL_NAME", "taxifare"),
        mlflow_db_user=r.text("MLFLOW_DB_USER"),
        mlflow_db_password=r.text("MLFLOW_DB_PASSWORD"),
        mlflow_db_hostname=r.text("MLFLOW_DB_HOSTNAME"),
        mlflow_db_port=r.port("MLFLOW_DB_PORT", 5432),
        mlflow_db_name=r.text("MLFLOW_DB_NAME"),
        mlflow_db_sslmode=sslmode,
        mlflow_db_sslrootcert=sslrootcert,
        model_wheel=_wheel(r),
        prefect_flow_name=r.text("PREFECT_FLOW_NAME", "taxifare lifecycle"),
        prefect_log_level=r.choice("PREFECT_LOG_LEVEL", "WARNING", LOG_LEVELS, upper=True),
        prefect_home=Path(r.text("PREFECT_HOME", str(data_path / "prefect"))).expanduser().resolve(),
        # Prefect's own name for it (its default, 20 s, is missed on a loaded 2-core machine).
        prefect_server_ephemeral_startup_timeout_seconds=r.number("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 120.0, minimum=1.0),
        prefect_api_url=_prefect_api_url(r),
        prefect_flow_cron=_cron(r),
        gcp_project=r.text("GCP_PROJECT"),
        bq_dataset=r.text("BQ_DATASET", "taxifare"),
        bq_table=r.text("BQ_TABLE", "rides"),
        bq_location=r.text("BQ_LOCATION", "US"),
        bq_api_endpoint=r.text("BQ_API_ENDPOINT"),
        bq_storage_endpoint=r.text("BQ_STORAGE_ENDPOINT"),
        bq_timeout_seconds=r.number("BQ_TIMEOUT_SECONDS", 30.0, minimum=0.1),
        bq_compute=r.choice("BQ_COMPUTE", "local", BQ_COMPUTES),
        bq_max_bytes_billed=_byte_cap(r.integer("BQ_MAX_BYTES_BILLED", 10 * 2**30, minimum=0)),
        api_refresh_seconds=r.number("API_REFRESH_SECONDS", 30.0, minimum=0.1),
    )


def env_var(f: Field[Any]) -> str:
    """The variable a `Settings` field is read from."""
    return f.name.upper()


#: Every variable of the settings, in `Settings` order.
SETTING_VARS: tuple[str, ...] = tuple(env_var(f) for f in fields(Settings))


def masked(settings: Settings) -> dict[str, list[tuple[str, str]]]:
    """The settings grouped by concern, every password masked (DSNs and URLs included)."""
    from taxifare_flow._core import mask_dsn

    out: dict[str, list[tuple[str, str]]] = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.metadata["secret"]:
            shown = "***" if value else ""
        elif value is None:
            shown = "kaggle size" if f.name == "history_rows_per_month" else ""
        else:
            shown = mask_dsn(str(value))
        out.setdefault(f.metadata["group"], []).append((env_var(f), shown))
    return out
