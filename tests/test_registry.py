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
