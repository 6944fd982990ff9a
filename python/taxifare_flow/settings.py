"""Settings: `.env` (if present) then the process environment, which wins.

Nothing is read at import time; `load_settings()` validates lazily and raises
`SettingsError` naming the variable and the bad value.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote

from dotenv import dotenv_values

from taxifare_flow.errors import SettingsError

DATA_SOURCES = ("local", "bigquery")
SOURCE_FORMATS = ("parquet", "csv")
MODEL_TARGETS = ("mlflow",)
PROMOTION_POLICIES = ("paired", "margin")
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
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def str(self, name: str, default: str = "") -> str:
        return self.env.get(name, "").strip() or default

    def choice(self, name: str, default: str, allowed: tuple[str, ...], upper: bool = False) -> str:
        raw = self.str(name, default)
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            raise SettingsError(f"{name}={raw!r} is not one of {', '.join(allowed)}")
        return value

    def int(self, name: str, default: int | None, minimum: int | None = None) -> int | None:
        raw = self.str(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not an integer") from None
        if minimum is not None and value < minimum:
            raise SettingsError(f"{name}={raw!r} must be at least {minimum}")
        return value

    def float(self, name: str, default: float, minimum: float | None = None, maximum: float | None = None) -> float:
        raw = self.str(name)
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
        raw = self.str(name, default)
        bad = sorted({c for c in raw if c in "'\"`\\" or not c.isprintable()})
        if bad:
            raise SettingsError(f"{name}={raw!r} contains {', '.join(repr(c) for c in bad)}: use letters, digits, '-', '_', '.' or spaces")
        return raw

    def data_path(self, name: str, default: str) -> Path:
        """A folder the commands will write into: refused now rather than as a late 'no more
        data' or a Prefect timeout."""
        raw = self.str(name, default)
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
        raw = self.str(name)
        if not raw:
            return default
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            raise SettingsError(f"{name}={raw!r} is not a port")
        return int(raw)

    def month(self, name: str, default: str) -> str:
        raw = self.str(name, default)
        year, _, month = raw.partition("-")
        if len(raw) != 7 or not (year.isdigit() and month.isdigit() and 1 <= int(month) <= 12):
            raise SettingsError(f"{name}={raw!r} is not a month (YYYY-MM)")
        return raw


@dataclass(frozen=True)
class Settings:
    """Every setting of taxifare-flow (see `.env.sample`)."""

    # data
    data_source: str
    local_data_path: Path
    source_format: str
    history_seed: int
    history_rows_per_month: int | None
    history_first_month: str
    history_last_month: str
    # model and lifecycle
    model_target: str
    ridge_alpha: float
    half_life_months: float
    holdout_fraction: float
    promotion_policy: str
    promotion_margin: float
    promotion_min_rows: int
    lock_timeout_seconds: float
    notify_webhook_url: str
    # mlflow
    mlflow_tracking_uri: str
    mlflow_tracking_db: str
    mlflow_experiment: str
    mlflow_model_name: str
    mlflow_db_user: str
    mlflow_db_password: str = field(repr=False)
    mlflow_db_hostname: str = ""
    mlflow_db_port: int = 5432
    mlflow_db_name: str = ""
    mlflow_db_sslmode: str = ""
    mlflow_db_sslrootcert: str = ""
    # prefect
    prefect_flow_name: str = "taxifare lifecycle"
    prefect_log_level: str = "WARNING"
    prefect_home: Path = Path()
    prefect_server_ephemeral_startup_timeout_seconds: float = 120.0
    prefect_api_url: str = ""
    # bigquery
    gcp_project: str = ""
    bq_dataset: str = ""
    bq_table: str = "rides"
    bq_location: str = "US"
    bq_api_endpoint: str = ""
    bq_storage_endpoint: str = ""
    bq_timeout_seconds: float = 30.0

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
    raw = r.str("MLFLOW_DB_SSLMODE")
    if raw and raw.lower() not in SSL_MODES:
        raise SettingsError(f"MLFLOW_DB_SSLMODE={raw!r} is not one of {', '.join(SSL_MODES)}")
    root = r.str("MLFLOW_DB_SSLROOTCERT")
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
    whole = r.str("MLFLOW_TRACKING_DB")
    if whole:
        if not whole.startswith(("postgresql://", "postgres://", "sqlite:///")):
            # Only the scheme: what follows may be a password.
            raise SettingsError(f"MLFLOW_TRACKING_DB must be a postgresql:// or sqlite:/// URI, got {whole.split(':', 1)[0]}:…")
        check_dsn_encoding("MLFLOW_TRACKING_DB", whole)
        return with_tls_params(whole, sslmode, sslrootcert)
    parts = {n: r.str(n) for n in ("MLFLOW_DB_USER", "MLFLOW_DB_PASSWORD", "MLFLOW_DB_HOSTNAME", "MLFLOW_DB_NAME")}
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
    url = r.str("PREFECT_API_URL").rstrip("/")
    if url and not url.startswith(("http://", "https://")):
        # Only the scheme is echoed: the rest may hold credentials.
        got = f"scheme {url.split('://', 1)[0]!r}" if "://" in url else "no scheme"
        raise SettingsError(f"PREFECT_API_URL must be an http(s) URL such as http://127.0.0.1:4200/api (got {got})")
    return url


def load_settings(dotenv_path: Path | None = None) -> Settings:
    """Reads and validates the settings."""
    r = _Reader(_env(dotenv_path))
    data_path = r.data_path("LOCAL_DATA_PATH", "data")
    default_uri = "sqlite:///" + str(data_path / "mlflow" / "mlflow.db")
    tracking_uri = r.str("MLFLOW_TRACKING_URI", default_uri)
    half_life_raw = r.str("HALF_LIFE_MONTHS", "inf").lower()
    half_life = math.inf if half_life_raw in ("inf", "none", "") else r.float("HALF_LIFE_MONTHS", math.inf, minimum=1e-9)
    rows = r.str("HISTORY_ROWS_PER_MONTH", "10000").lower()
    rows_per_month = None if rows == "kaggle" else r.int("HISTORY_ROWS_PER_MONTH", 10000, minimum=1)
    sslmode, sslrootcert = _tls_setting(r)
    return Settings(
        data_source=r.choice("DATA_SOURCE", "local", DATA_SOURCES),
        local_data_path=data_path,
        source_format=r.choice("SOURCE_FORMAT", "parquet", SOURCE_FORMATS),
        history_seed=r.int("HISTORY_SEED", 42, minimum=0) or 0,
        history_rows_per_month=rows_per_month,
        history_first_month=r.month("HISTORY_FIRST_MONTH", "2009-01"),
        history_last_month=r.month("HISTORY_LAST_MONTH", "2015-06"),
        model_target=r.choice("MODEL_TARGET", "mlflow", MODEL_TARGETS),
        ridge_alpha=r.float("RIDGE_ALPHA", 1e-3, minimum=0.0),
        half_life_months=half_life,
        holdout_fraction=r.float("HOLDOUT_FRACTION", 0.15, minimum=0.01, maximum=0.5),
        promotion_policy=r.choice("PROMOTION_POLICY", "paired", PROMOTION_POLICIES),
        promotion_margin=r.float("PROMOTION_MARGIN", 0.0, minimum=0.0),
        promotion_min_rows=r.int("PROMOTION_MIN_ROWS", 200, minimum=1) or 200,
        lock_timeout_seconds=r.float("LOCK_TIMEOUT_SECONDS", 600.0, minimum=0.0),
        notify_webhook_url=r.str("NOTIFY_WEBHOOK_URL"),
        mlflow_tracking_uri=tracking_uri,
        mlflow_tracking_db=_tracking_db(r, tracking_uri),
        mlflow_experiment=r.name("MLFLOW_EXPERIMENT", "taxifare"),
        mlflow_model_name=r.name("MLFLOW_MODEL_NAME", "taxifare"),
        mlflow_db_user=r.str("MLFLOW_DB_USER"),
        mlflow_db_password=r.str("MLFLOW_DB_PASSWORD"),
        mlflow_db_hostname=r.str("MLFLOW_DB_HOSTNAME"),
        mlflow_db_port=r.port("MLFLOW_DB_PORT", 5432),
        mlflow_db_name=r.str("MLFLOW_DB_NAME"),
        mlflow_db_sslmode=sslmode,
        mlflow_db_sslrootcert=sslrootcert,
        prefect_flow_name=r.str("PREFECT_FLOW_NAME", "taxifare lifecycle"),
        prefect_log_level=r.choice("PREFECT_LOG_LEVEL", "WARNING", LOG_LEVELS, upper=True),
        prefect_home=Path(r.str("PREFECT_HOME", str(data_path / "prefect"))).expanduser().resolve(),
        # Prefect's own name for it (its default, 20 s, is missed on a loaded 2-core machine).
        prefect_server_ephemeral_startup_timeout_seconds=r.float("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 120.0, minimum=1.0),
        prefect_api_url=_prefect_api_url(r),
        gcp_project=r.str("GCP_PROJECT"),
        bq_dataset=r.str("BQ_DATASET", "taxifare"),
        bq_table=r.str("BQ_TABLE", "rides"),
        bq_location=r.str("BQ_LOCATION", "US"),
        bq_api_endpoint=r.str("BQ_API_ENDPOINT"),
        bq_storage_endpoint=r.str("BQ_STORAGE_ENDPOINT"),
        bq_timeout_seconds=r.float("BQ_TIMEOUT_SECONDS", 30.0, minimum=0.1),
    )


SECRET_FIELDS = {"mlflow_db_password"}
GROUPS: dict[str, tuple[str, ...]] = {
    "data": (
        "data_source", "local_data_path", "source_format", "history_seed", "history_rows_per_month",
        "history_first_month", "history_last_month",
    ),
    "model & lifecycle": (
        "model_target", "ridge_alpha", "half_life_months", "holdout_fraction", "promotion_policy",
        "promotion_margin", "promotion_min_rows", "lock_timeout_seconds", "notify_webhook_url",
    ),
    "MLflow": (
        "mlflow_tracking_uri", "mlflow_tracking_db", "mlflow_experiment", "mlflow_model_name", "mlflow_db_user",
        "mlflow_db_password", "mlflow_db_hostname", "mlflow_db_port", "mlflow_db_name",
        "mlflow_db_sslmode", "mlflow_db_sslrootcert",
    ),
    "Prefect": ("prefect_flow_name", "prefect_log_level", "prefect_home", "prefect_api_url",
                "prefect_server_ephemeral_startup_timeout_seconds"),
    "BigQuery": (
        "gcp_project", "bq_dataset", "bq_table", "bq_location", "bq_api_endpoint", "bq_storage_endpoint",
        "bq_timeout_seconds",
    ),
}


def masked(settings: Settings) -> dict[str, list[tuple[str, str]]]:
    """The settings grouped by concern, every password masked (DSNs and URLs included)."""
    from taxifare_flow._core import mask_dsn

    out: dict[str, list[tuple[str, str]]] = {}
    for group, names in GROUPS.items():
        rows = []
        for name in names:
            value = getattr(settings, name)
            if name in SECRET_FIELDS:
                shown = "***" if value else ""
            elif value is None:
                shown = "kaggle size" if name == "history_rows_per_month" else ""
            else:
                shown = mask_dsn(str(value))
            rows.append((name.upper(), shown))
        out[group] = rows
    return out
