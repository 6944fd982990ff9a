"""Registry glue with the real MLflow: log → register → alias → load by alias → predict."""

from __future__ import annotations

import uuid

import mlflow
import numpy as np
import pytest

from taxifare_flow import Model, _core
from taxifare_flow.ml_logic.registry import PRODUCTION, open_registry
from taxifare_flow.settings import load_settings


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_pyfunc_by_alias_predicts_raw_rides(store: str, clean_env, monkeypatch, request) -> None:
    uri = request.getfixturevalue("sqlite_store" if store == "sqlite" else "postgres_db")
    monkeypatch.setenv("LOCAL_DATA_PATH", str(clean_env / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT", f"reg-{uuid.uuid4().hex[:6]}")
    monkeypatch.setenv("MLFLOW_MODEL_NAME", f"reg-{uuid.uuid4().hex[:6]}")
    settings = load_settings()
    reg = open_registry(settings)
    model = Model()
    model.partial_fit(_core.generate_month("2014-04", 3000, seed=2))
    saved = model.to_bytes()
    run = reg.client.create_run(reg.experiment_id)
    version = reg.log_model_version(run.info.run_id, model, {"first_row": "0", "end_row": "3000"})
    reg.client.set_terminated(run.info.run_id, "FINISHED")
    reg.set_alias(PRODUCTION, version.version)

    rides = _core.generate_month("2014-05", 200, seed=3).read_all().to_pandas().drop(columns=["fare_amount"])
    served = mlflow.pyfunc.load_model(f"models:/{settings.mlflow_model_name}@{PRODUCTION}")
    expected = model.predict(rides)
    answer = served.predict(rides)
    assert list(answer.columns) == ["fare", "reason"]
    assert [f if f is not None else np.nan for f in answer["fare"]] == pytest.approx(expected.tolist(), nan_ok=True, rel=0)
    # A rejected ride is null with its reason, never NaN; a missing column is named.
    rejected = served.predict(rides.head(2).assign(passenger_count=[0, 1]))
    assert rejected["fare"][0] is None and rejected["reason"][0] == "passenger_count 0 (1 to 7 accepted)"
    assert rejected["reason"][1] is None and isinstance(rejected["fare"][1], float)
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="missing column: dropoff_latitude"):
        served.predict(rides.drop(columns=["dropoff_latitude"]))
    loaded = reg.load_kernel(reg.version_by_alias(PRODUCTION))
    # The artifact round-trips bit for bit (statistics and settings; nothing solved yet), and the
    # same statistics solve to the same coefficients.
    assert loaded.to_bytes() == saved
    np.testing.assert_array_equal(loaded.predict(rides), model.predict(rides))
    assert reg.version_by_alias(PRODUCTION).tags["end_row"] == "3000"
    # The artifacts live beside the embedded store, not in the working directory.
    assert not (clean_env / "mlruns").exists()


def _runs_view(snap) -> list[tuple]:
    """A snapshot's runs as plain values, in its order (metrics NaN-safe)."""
    def metric(m) -> tuple:
        return (m.key, "nan" if m.value != m.value else m.value, m.timestamp, m.step)

    return [
        (i, r.info.run_name, r.info.experiment_id, r.info.user_id, r.info.status, r.info.start_time, r.info.end_time,
         r.info.lifecycle_stage, r.info.artifact_uri, sorted(r.data.params.items()), sorted(r.data.tags.items()),
         sorted(metric(m) for m in r.data._metric_objs))
        for i, r in snap.runs.items()
    ]


def _versions_view(snap) -> list[tuple]:
    return [(str(v.version), v.name, v.source, v.run_id, v.status, v.current_stage, v.creation_timestamp,
             v.last_updated_timestamp, v.description, v.user_id, sorted(v.tags.items())) for v in snap.versions]


def test_the_snapshot_read_by_sql_equals_mlflows_own(tracking_store: str, clean_env, monkeypatch) -> None:
    """`read_snapshot` reads a database store by SQL: the same runs (every state, params, tags,
    latest metrics, NaN included), model tags, aliases and versions as MLflow's own searches."""
    from mlflow.entities import Metric, Param, RunTag

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_store)
    monkeypatch.setenv("MLFLOW_EXPERIMENT", f"snap-{uuid.uuid4().hex[:6]}")
    monkeypatch.setenv("MLFLOW_MODEL_NAME", f"snap-{uuid.uuid4().hex[:6]}")
    reg = open_registry(load_settings())
    assert reg.read_snapshot_by_sql() == reg.read_snapshot_by_client()  # no run, no model yet
    model = Model()
    model.partial_fit(_core.generate_month("2014-04", 500, seed=2))
    client = reg.client
    ids = []
    for n, status in enumerate(["FINISHED", "FINISHED", "KILLED", "FAILED", "RUNNING", "FINISHED"]):
        run = reg.create_run(f"run {n}")
        ids.append(run.info.run_id)
        client.log_batch(run.info.run_id, metrics=[Metric("mae", 1.5 + n, 1000 + n, n), Metric("mae", 9.0, 900, 0),
                                                   Metric("ks", float("nan"), 7, 3)],
                         params=[Param("context", "train"), Param("first_row", str(n * 100))],
                         tags=[RunTag("note", f"n={n}"), RunTag("empty", "")])
        if n < 3:
            reg.log_model_version(run.info.run_id, model, {"first_row": str(n * 100), "end_row": str(n * 100 + 100)})
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status)
    client.delete_run(ids[1])
    client.delete_model_version(reg.model_name, "3")
    reg.set_alias(PRODUCTION, "1")
    reg.set_alias("challenger", "2")
    client.set_registered_model_tag(reg.model_name, "owner_note", "x")
    by_sql, by_client = reg.read_snapshot_by_sql(), reg.read_snapshot_by_client()
    for search in ("search_runs", "search_model_versions", "get_registered_model"):  # no MLflow call
        monkeypatch.setattr(client, search, lambda *a, **k: pytest.fail("read through the client"))
    assert _runs_view(reg.read_snapshot()) == _runs_view(by_sql)
    assert len(by_sql.runs) == 6 and [v.version for v in by_sql.versions] == [1, 2]
    assert _runs_view(by_sql) == _runs_view(by_client)
    assert _versions_view(by_sql) == _versions_view(by_client)
    assert by_sql.model_tags == by_client.model_tags and by_sql.model_tags["owner_note"] == "x"
    assert by_sql.aliases == by_client.aliases == {PRODUCTION: "1", "challenger": "2"}


def test_what_is_read_by_sql(monkeypatch) -> None:
    """Database stores in MLflow's default workspace; a tracking server, or workspaces turned
    on (the client knows which one it is in), through the client."""
    from taxifare_flow.ml_logic.snapshot_sql import reads_by_sql

    assert reads_by_sql("sqlite:////tmp/mlflow.db") and reads_by_sql("postgresql://u@127.0.0.1:5432/db")
    assert not reads_by_sql("http://127.0.0.1:5000") and not reads_by_sql("https://mlflow.example.com")
    monkeypatch.setenv("MLFLOW_ENABLE_WORKSPACES", "true")
    assert not reads_by_sql("sqlite:////tmp/mlflow.db")
