"""A new SQLite store made from the migrated template (`ml_logic/store_template.py`) is the
store MLflow would have made: the same schema, revision and rows, the default experiment's
artifacts under this store's root."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from taxifare_flow.ml_logic.store import ensure_sqlite_store

#: Written at creation time: differ between any two stores, however made.
TIMES = {"creation_time", "last_update_time"}


def _dump(path: Path) -> dict[str, object]:
    with closing(sqlite3.connect(path)) as db:
        # MLflow's own migrations write a table's constraints in no fixed order (two stores it
        # makes differ so): a definition is compared as its set of lines.
        schema = sorted(((kind, name, sorted(line.strip().rstrip(",") for line in (sql or "").splitlines()))
                         for kind, name, sql in db.execute("SELECT type, name, sql FROM sqlite_master")), key=str)
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        rows: dict[str, list[tuple[object, ...]]] = {}
        for t in tables:
            cur = db.execute(f'SELECT * FROM "{t}"')
            keep = [i for i, d in enumerate(cur.description) if d[0] not in TIMES]
            rows[t] = sorted((tuple(r[i] for i in keep) for r in cur.fetchall()), key=str)
    return {"schema": schema, "rows": rows}


def test_a_store_from_the_template_is_the_store_mlflow_makes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    templates = tmp_path / "cache" / "taxifare-flow" / "mlflow-db"
    ensure_sqlite_store(tmp_path / "first" / "mlflow.db", str(tmp_path / "first" / "artifacts"))
    kept = list(templates.glob("*/mlflow.db"))
    assert len(kept) == 1, "the first store MLflow made is kept as the template"
    made = tmp_path / "second" / "mlflow.db"
    ensure_sqlite_store(made, str(tmp_path / "second" / "artifacts"))
    reference = tmp_path / "reference" / "mlflow.db"
    reference.parent.mkdir()
    SqlAlchemyStore(f"sqlite:///{reference}", str(tmp_path / "second" / "artifacts")).engine.dispose()  # type: ignore[no-untyped-call]
    assert _dump(made) == _dump(reference)
    with closing(sqlite3.connect(made)) as db:
        location, created = db.execute("SELECT artifact_location, creation_time FROM experiments").fetchone()
    assert location == str(tmp_path / "second" / "artifacts" / "0") and created > 0
    client = MlflowClient(f"sqlite:///{made}")
    run = client.create_run(client.create_experiment("e", artifact_location=str(tmp_path / "a")))
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).info.status == "FINISHED"

    # A template that cannot be used is no error: MLflow makes the store.
    kept[0].write_bytes(b"not a database")
    ensure_sqlite_store(tmp_path / "third" / "mlflow.db", str(tmp_path / "third" / "artifacts"))
    assert _dump(tmp_path / "third" / "mlflow.db")["schema"] == _dump(reference)["schema"]
    assert _dump(kept[0])["schema"] == _dump(reference)["schema"], "the damaged template was replaced"
