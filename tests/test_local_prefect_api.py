"""The local Prefect API's start-up costs: a new PREFECT_HOME starts from a migrated copy of
Prefect's database (`prefect_db_template`), and `run_flow` with nothing to do and no server
configured starts no API at all."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from helpers import taxifare
from taxifare_flow.flow import prefect_db_template


def _db(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE alembic_version (version_num TEXT)")
        db.execute("INSERT INTO alembic_version VALUES (?)", (value,))
        db.commit()


def _version(path: Path) -> str:
    with closing(sqlite3.connect(path)) as db:
        return str(db.execute("SELECT version_num FROM alembic_version").fetchone()[0])


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in ("PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_CONNECTION_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "cache"


def test_the_first_migrated_database_seeds_new_homes_and_never_replaces_one(cache: Path, tmp_path: Path) -> None:
    first, second, kept = tmp_path / "first", tmp_path / "second", tmp_path / "kept"
    first.mkdir()
    assert not prefect_db_template.seed(first), "no template yet: Prefect migrates"
    _db(first / "prefect.db", "head")
    prefect_db_template.keep(first)
    templates = list(cache.glob("taxifare-flow/prefect-db/*/prefect.db"))
    assert len(templates) == 1 and _version(templates[0]) == "head"

    second.mkdir()
    assert prefect_db_template.seed(second)
    assert _version(second / "prefect.db") == "head"
    assert [p.name for p in second.iterdir()] == ["prefect.db"], "no temporary file left"

    _db(kept / "prefect.db", "its own")
    assert not prefect_db_template.seed(kept)
    assert _version(kept / "prefect.db") == "its own"

    prefect_db_template.keep(kept)  # kept once: a later database does not replace it
    assert _version(templates[0]) == "head"


def test_a_configured_prefect_database_is_left_to_prefect(cache: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    _db(home / "prefect.db", "head")
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://somewhere/prefect")
    prefect_db_template.keep(home)
    assert not cache.exists()


def test_run_flow_with_nothing_to_do_starts_no_local_api(small_history: Path) -> None:
    r = taxifare("run_flow")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "nothing to do: all 0 rows are trained" in r.stdout
    prefect_home = small_history / "prefect"
    assert not (prefect_home / "server.log").exists() and not (prefect_home / "prefect.db").exists()
