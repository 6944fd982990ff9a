"""The MLflow call budget of a lifecycle (docs/architecture.md, "The MLflow call budget"): at
most 12 client calls for one that trains, none beyond the watermark for one with nothing to do,
counted at `MlflowClient`'s public methods (outermost calls) on the SQLite store. The same
count against a tracking server over HTTP is in tests/test_tracking_server.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_calls import BUDGET, count_mlflow_calls, lifecycles_within_budget
from taxifare_flow.data.local import LocalSource
from taxifare_flow.settings import load_settings


def test_the_counter_counts_outermost_calls_only(small_history: Path) -> None:
    from taxifare_flow.ml_logic.registry import open_registry

    settings = load_settings()
    with count_mlflow_calls() as calls:
        reg = open_registry(settings)
        reg.client.search_runs([reg.experiment_id])
        # A fluent call counts once, whatever client calls it makes inside.
        import mlflow

        mlflow.search_runs([reg.experiment_id])
    assert calls.by_method["search_runs"] == 1
    assert calls.by_method["get_experiment_by_name"] == 1
    assert calls.by_method["mlflow.search_runs"] == 1, calls  # its own MlflowClient.search_runs not again
    with count_mlflow_calls() as calls:
        pass
    assert calls.total == 0
    reg.client.search_runs([reg.experiment_id])
    assert calls.total == 0, "nothing is counted once the block ended"


def test_a_lifecycle_keeps_to_the_call_budget(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # MAE only, no margin: months that promote (the most calls) as well as months that keep.
    monkeypatch.setenv("PROMOTION_POLICY", "margin")
    monkeypatch.setenv("PROMOTION_MARGIN", "0")
    settings = load_settings()
    LocalSource(settings).reset()
    counted = lifecycles_within_budget(settings, 5)
    assert any(c.by_method["set_registered_model_alias"] == 2 for c in counted[1:]), "a month promoted"
    # A month with production reads the registry once, by SQL from this database store
    # (`snapshot_sql`), not through the client; over HTTP it is three calls (test_tracking_server).
    later = counted[-1].by_method
    assert later["search_runs"] == later["search_model_versions"] == later["get_registered_model"] == 0
    assert later["get_run"] == 0 and later["download_artifacts"] == 0
    assert max(c.total for c in counted[1:]) <= BUDGET
