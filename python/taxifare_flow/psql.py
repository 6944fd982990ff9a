"""`taxifare psql`: psql on the tracking DB — the habit `psql $MLFLOW_TRACKING_DB` — with the
password kept off the command line, where `ps` and shell history would show it.

The password travels in the child's `PGPASSWORD` (readable only by the same user, through
/proc/PID/environ); the DSN handed to psql as its argument carries none.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from taxifare_flow.errors import NotPostgresError
from taxifare_flow.settings import Settings


@dataclass(frozen=True)
class PsqlCommand:
    """What to exec: `argv` (no password in it) and the extra environment (`PGPASSWORD`)."""

    argv: list[str]
    env: dict[str, str] = field(repr=False)


def split_password(dsn: str) -> tuple[str, str | None]:
    """The DSN without its password (in the user info or a `password=` query parameter) and the
    password, percent-decoded. Hosts, port lists and other parameters are kept as written."""
    parts = urlsplit(dsn)
    password: str | None = None
    netloc = parts.netloc
    # rpartition: the host list never holds '@', an unencoded password might.
    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        user, colon, encoded = userinfo.partition(":")
        if colon:
            password = unquote(encoded)
        netloc = f"{user}@{hosts}" if user else hosts
    query = parts.query
    if query:
        params = parse_qsl(query, keep_blank_values=True)
        if any(k == "password" for k, _ in params):
            password = next(v for k, v in params if k == "password")
            # %20, not '+': libpq decodes only %XX in a URI.
            query = urlencode([(k, v) for k, v in params if k != "password"], quote_via=quote)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)), password


def find_psql() -> str:
    """psql on PATH, else the newest one of the Debian/Ubuntu server packages."""
    found = shutil.which("psql")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if candidates:
        return str(candidates[-1])
    raise FileNotFoundError("psql is not installed: install the PostgreSQL client (e.g. apt install postgresql-client)")


def psql_command(settings: Settings, args: list[str], psql: str | None = None) -> PsqlCommand:
    """psql on the tracking DB with `args` appended (e.g. `-c "select 1"`)."""
    from taxifare_flow._core import mask_dsn

    db = settings.mlflow_tracking_db
    if not db:
        raise NotPostgresError(
            f"psql needs a PostgreSQL tracking DB; MLFLOW_TRACKING_URI={mask_dsn(settings.mlflow_tracking_uri)} is a "
            "server: set MLFLOW_TRACKING_DB or MLFLOW_DB_*"
        )
    if not db.startswith(("postgresql://", "postgres://")):
        raise NotPostgresError(f"psql needs a PostgreSQL tracking DB; this one is SQLite: sqlite3 {settings.sqlite_path()}")
    dsn, password = split_password(db)
    env = {"PGPASSWORD": password} if password is not None else {}
    return PsqlCommand([psql or find_psql(), dsn, *args], env)


def exec_psql(command: PsqlCommand) -> None:
    """Replaces this process with psql: it owns the terminal and its signals (Ctrl-C cancels a
    query, not the wrapper), and nothing is left behind when it exits."""
    os.execve(command.argv[0], command.argv, {**os.environ, **command.env})
