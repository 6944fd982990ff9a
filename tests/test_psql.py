"""`taxifare psql`: psql on the PostgreSQL tracking DB, the password never on psql's command line
nor in any output."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from helpers import taxifare
from taxifare_flow.psql import find_psql, split_password



def test_split_password_keeps_everything_else() -> None:
    assert split_password("postgresql://ml%20user:p%40ss%3Aw%2Frd%25@db.internal:6543/mlflow") == (
        "postgresql://ml%20user@db.internal:6543/mlflow", "p@ss:w/rd%")
    # libpq also takes the password as a parameter, and several hosts.
    assert split_password("postgresql://u@h1:5432,h2:5433/db?sslmode=require&password=s%26cret&connect_timeout=3") == (
        "postgresql://u@h1:5432,h2:5433/db?sslmode=require&connect_timeout=3", "s&cret")
    assert split_password("postgresql://u@h/db?options=-c%20search_path%3Dx&password=pw") == (
        "postgresql://u@h/db?options=-c%20search_path%3Dx", "pw")
    assert split_password("postgresql://u@h/db") == ("postgresql://u@h/db", None)
    assert split_password("postgresql://u:@h/db") == ("postgresql://u@h/db", "")


def test_psql_on_a_password_server_keeps_the_password_off_its_command_line(
        clean_env: Path, postgres_password_server: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    dsn, password = postgres_password_server
    url = urlsplit(dsn)
    for name, value in {"MLFLOW_DB_USER": "postgres", "MLFLOW_DB_PASSWORD": password,
                        "MLFLOW_DB_HOSTNAME": url.hostname, "MLFLOW_DB_PORT": str(url.port),
                        "MLFLOW_DB_NAME": "postgres"}.items():
        monkeypatch.setenv(name, value)
    # A psql that records the arguments it was started with, then is the real psql.
    bindir = clean_env / "bin"
    bindir.mkdir()
    argv_file = clean_env / "argv"
    wrapper = bindir / "psql"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {argv_file}\nexec {find_psql()} "$@"\n')
    wrapper.chmod(0o755)
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "PGPASSWORD": ""}

    r = taxifare("psql", "-X", "-w", "-At", "-c", "select 'connected as ' || current_user", env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "connected as postgres"
    argv = argv_file.read_text().splitlines()
    assert argv[0] == f"postgresql://postgres@{url.hostname}:{url.port}/postgres"
    assert argv[1:] == ["-X", "-w", "-At", "-c", "select 'connected as ' || current_user"]
    assert not any(password in a for a in argv)
    assert password not in r.stdout + r.stderr

    # Arguments after `--` go to psql as they are.
    r = taxifare("psql", "--", "-X", "-w", "-At", "-c", "select 1 + 1", env=env)
    assert (r.returncode, r.stdout.strip()) == (0, "2"), r.stderr

    # The password did the authenticating (psql got it through PGPASSWORD): without it, refused.
    monkeypatch.delenv("MLFLOW_DB_PASSWORD")
    r = taxifare("psql", "-X", "-w", "-c", "select 1", env=env)
    assert r.returncode == 2
    assert "password" in r.stderr and password not in r.stderr


def test_psql_refuses_sqlite_and_a_server_without_db_in_one_line(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = taxifare("psql", "-c", "select 1")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"NotPostgresError: psql needs a PostgreSQL tracking DB; this one is SQLite: sqlite3 "
        f"{clean_env.resolve() / 'data' / 'mlflow' / 'mlflow.db'}"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://user:s3cret@mlflow.example.org")
    r = taxifare("psql")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "set MLFLOW_TRACKING_DB or MLFLOW_DB_*" in lines[0] and "s3cret" not in lines[0]
