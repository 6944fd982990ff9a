"""Moving a lineage from feature version 1 to 2: one recorded backfill run, the watermark and the
tiling untouched, the next lifecycle continuing in v2, the v1 production model still served."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import arrive, assert_tiles, taxifare, training_intervals
from taxifare_flow import _core
from taxifare_flow.check import check
from taxifare_flow.data.local import LocalSource
from taxifare_flow.flow.backfill import backfill
from taxifare_flow.flow.lifecycle import run_lifecycle
from taxifare_flow.ml_logic import get_latest_trained_row
from taxifare_flow.ml_logic.registry import CHALLENGER, PRODUCTION, open_registry
from taxifare_flow.settings import load_settings


def test_backfill_moves_the_lineage_to_v2(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURE_VERSION", "1")
    v1 = load_settings()
    LocalSource(v1).reset()
    arrive(1)
    run_lifecycle(v1)
    arrive(1)
    run_lifecycle(v1)
    reg = open_registry(v1)
    head_v1 = reg.head_for(5000)
    assert reg.load_kernel(head_v1).feature_version == 1
    production = reg.version_by_alias(PRODUCTION)
    assert production is not None

    monkeypatch.setenv("FEATURE_VERSION", "2")
    settings = load_settings()
    read_before = _core.rows_decoded()
    done = backfill(settings)
    assert done.status == "backfilled" and done.end_row == 5000 and done.previous_head == str(head_v1.version)
    assert _core.rows_decoded() - read_before == 5000, "one pass over the trained rows"
    # The watermark and the tiling are those of the training runs: unchanged.
    assert get_latest_trained_row() == 5000
    assert_tiles(training_intervals(settings), 5000)
    head = reg.head_for(5000)
    assert str(head.version) == done.version and head.tags["decision"] == "backfill"
    kernel = reg.load_kernel(head)
    assert kernel.feature_version == 2
    assert kernel.n_rows == done.cleaned_rows == int(reg.client.get_run(done.run_id).data.params["cleaned_row_count"])
    assert str(reg.version_by_alias(CHALLENGER).version) == done.version
    assert str(reg.version_by_alias(PRODUCTION).version) == str(production.version), "production is untouched"
    assert all(f.ok for f in check(settings)), [f for f in check(settings) if not f.ok]
    assert backfill(settings).status == "nothing to do"

    # The next lifecycle continues the v2 head; production (v1) is scored in the same pass.
    arrive(1)
    outcome = run_lifecycle(settings)
    assert (outcome.first_row, outcome.end_row) == (5000, 7500) and outcome.prequential_mae is not None
    new = reg.head_for(7500)
    assert new.tags["parent_version"] == done.version and new.tags["feature_version"] == "2"
    assert reg.load_kernel(new).n_rows == pytest.approx(done.cleaned_rows + outcome.cleaned_rows)
    assert_tiles(training_intervals(settings), 7500)

    # The v1 production version is still served as it was (the pyfunc of an old version).
    import mlflow

    served = mlflow.pyfunc.load_model(f"models:/{settings.mlflow_model_name}/{production.version}")
    rides = _core.generate_month("2012-08", 50, seed=7).read_all().to_pandas().drop(columns=["fare_amount"])
    expected = reg.load_kernel(production).predict(rides)
    answer = served.predict(rides)
    # Versions logged before the pyfunc answered `fare`/`reason` keep their own code (models-from-code).
    fares = answer["fare"].tolist() if hasattr(answer, "columns") else answer.tolist()
    assert [f if f is not None else float("nan") for f in fares] == pytest.approx(expected.tolist(), rel=1e-12, nan_ok=True)


def test_backfill_command_says_what_it_did(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATURE_VERSION", "1")
    LocalSource(load_settings()).reset()
    r = taxifare("backfill", "--feature-version", "2")
    assert r.returncode == 0 and "nothing is trained yet" in r.stdout, r.stdout + r.stderr
    arrive(1)
    run_lifecycle(load_settings())
    r = taxifare("backfill", "--feature-version", "2")
    assert r.returncode == 0, r.stderr
    assert "feature version 2: version 2 trained on rows 0..2,500" in r.stdout
    # 2 → 3 (the default of new lineages): the same recorded step.
    r = taxifare("backfill", "--feature-version", "3")
    assert r.returncode == 0, r.stderr
    assert "feature version 3: version 3 trained on rows 0..2,500" in r.stdout
    reg = open_registry(load_settings())
    assert reg.load_kernel(reg.head_for(2500)).feature_version == 3
    r = taxifare("backfill", "--feature-version", "4")
    assert r.returncode == 2 and "feature" in r.stderr.lower(), r.stderr


@pytest.mark.slow  # a backfill killed with SIGKILL, then repaired
def test_a_killed_backfill_is_repaired_like_a_killed_lifecycle(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`kill -9` in the middle of a backfill leaves its run RUNNING: `check` names it, and the
    next lifecycle's repairs mark it KILLED (it trained nothing the watermark counts)."""
    import subprocess
    import sys

    from helpers import child_env

    monkeypatch.setenv("FEATURE_VERSION", "1")
    settings = load_settings()
    LocalSource(settings).reset()
    arrive(1)
    run_lifecycle(settings)
    # The child dies by SIGKILL inside the backfill's one pass, after its run was created.
    code = ("import os, signal\n"
            "from taxifare_flow.data.local import LocalSource\n"
            "LocalSource.learn = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
            "from taxifare_flow.flow.backfill import backfill\n"
            "from taxifare_flow.settings import load_settings\n"
            "backfill(load_settings(), 2)\n")
    child = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, child.stderr
    reg = open_registry(settings)
    running = reg.running_runs()
    assert [r.data.params["context"] for r in running] == ["backfill"]
    r = taxifare("check")
    assert r.returncode == 1 and f"backfill run {running[0].info.run_id} is RUNNING with no lifecycle running" in r.stdout, r.stdout
    arrive(1)
    run_lifecycle(settings)
    assert reg.client.get_run(running[0].info.run_id).info.status == "KILLED"
    assert reg.running_runs() == []
    assert taxifare("check").returncode == 0
    assert_tiles(training_intervals(settings), get_latest_trained_row())
