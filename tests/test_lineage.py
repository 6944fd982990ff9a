"""Whose lineage it is: a registered model belongs to one experiment, and a lineage to one
history. Two teams on one store with the default model name, and a history swapped under a kept
store (by seed, by import), are refused before anything moves; `check` names what is crossed."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

import pytest

from helpers import arrive, taxifare, training_intervals
from taxifare_flow.data.local import LocalSource
from taxifare_flow.errors import LineageError
from taxifare_flow.flow.backfill import backfill
from taxifare_flow.flow.lifecycle import run_lifecycle
from taxifare_flow.ml_logic import get_latest_trained_row
from taxifare_flow.ml_logic.lineage import HISTORY_TAG
from taxifare_flow.ml_logic.registry import OWNER_TAG, open_registry
from taxifare_flow.settings import load_settings

ROWS = 2500  # rows a month in the small_history fixture
SAMPLE = Path(__file__).resolve().parent.parent / "benches" / "data" / "kaggle_sample_5k.csv"


def _one_line_error(r, *needles: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for needle in needles:
        assert needle in r.stderr, r.stderr


def _source_rows(settings) -> int:
    return LocalSource(settings).row_count()


# -- two experiments, one store ---------------------------------------------------------------


@pytest.fixture
def two_teams(small_history: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> tuple[dict, dict]:
    """Alice and Bob: one tracking store, the default MLFLOW_MODEL_NAME, each their own data
    folder, experiment and history (seed 42 and seed 7)."""
    monkeypatch.delenv("MLFLOW_MODEL_NAME")
    if request.param == "postgresql":
        store = request.getfixturevalue("postgres_db")
        # The session's database is shared: this test's model name is its own.
        monkeypatch.setenv("MLFLOW_MODEL_NAME", f"taxifare-{uuid.uuid4().hex[:8]}")
    else:
        (small_history.parent / "shared").mkdir()
        store = f"sqlite:///{small_history.parent / 'shared' / 'mlflow.db'}"
    tag = uuid.uuid4().hex[:8]
    alice = {"MLFLOW_TRACKING_URI": store, "LOCAL_DATA_PATH": str(small_history.parent / "alice"),
             "MLFLOW_EXPERIMENT": f"alice-{tag}", "HISTORY_SEED": "42"}
    bob = {**alice, "LOCAL_DATA_PATH": str(small_history.parent / "bob"), "MLFLOW_EXPERIMENT": f"bob-{tag}", "HISTORY_SEED": "7"}
    return alice, bob


def _as(env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return load_settings()


@pytest.mark.parametrize("two_teams", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_a_second_experiment_cannot_continue_anothers_model(two_teams, monkeypatch: pytest.MonkeyPatch) -> None:
    alice_env, bob_env = two_teams
    alice = _as(alice_env, monkeypatch)
    LocalSource(alice).reset()
    arrive(1, alice)
    first = run_lifecycle(alice)
    name = alice.mlflow_model_name
    reg = open_registry(alice)
    assert reg.client.get_registered_model(name).tags[OWNER_TAG] == str(reg.experiment_id)

    bob = _as(bob_env, monkeypatch)
    assert bob.mlflow_model_name == name and bob.mlflow_tracking_uri == alice.mlflow_tracking_uri
    LocalSource(bob).reset()
    arrive(1, bob)
    with pytest.raises(LineageError, match=f"is the lineage of experiment '{alice.mlflow_experiment}', not of "
                                           f"MLFLOW_EXPERIMENT='{bob.mlflow_experiment}'"):
        run_lifecycle(bob)
    bob_reg = open_registry(bob)
    assert bob_reg.client.search_runs([bob_reg.experiment_id]) == [], "no run was created"
    assert [str(v.version) for v in reg.versions()] == [str(first.version)], "no version was registered"
    _one_line_error(taxifare("backfill"), alice.mlflow_experiment, bob.mlflow_experiment, "MLFLOW_MODEL_NAME")
    r = taxifare("check")
    assert r.returncode == 1 and f"is the lineage of experiment '{alice.mlflow_experiment}'" in r.stdout, r.stdout
    # Bob with a model name of his own trains his own lineage; alice continues hers.
    monkeypatch.setenv("MLFLOW_MODEL_NAME", f"bob-{uuid.uuid4().hex[:8]}")
    assert run_lifecycle(load_settings()).status == "trained"
    bob_run = open_registry(load_settings()).training_runs()[0]
    monkeypatch.setenv("MLFLOW_MODEL_NAME", name)
    alice = _as(alice_env, monkeypatch)
    arrive(1, alice)
    assert run_lifecycle(alice).end_row == 2 * ROWS
    assert taxifare("check").returncode == 0

    # What the unguarded code let happen: a version of alice's model from one of bob's runs.
    crossed = reg.client.create_model_version(name, source=f"{bob_run.info.artifact_uri}/model", run_id=bob_run.info.run_id)
    r = taxifare("check")
    assert r.returncode == 1, r.stdout
    assert f"version {crossed.version} of '{name}' comes from run {bob_run.info.run_id} of experiment " \
           f"'{bob.mlflow_experiment}'" in r.stdout, r.stdout


def test_a_model_registered_before_owners_were_recorded_is_claimed_by_its_experiment(
        small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    LocalSource(settings).reset()
    arrive(1)
    run_lifecycle(settings)
    reg = open_registry(settings)
    reg.client.delete_registered_model_tag(settings.mlflow_model_name, OWNER_TAG)
    # Another experiment: refused by the experiment of the model's versions.
    monkeypatch.setenv("MLFLOW_EXPERIMENT", settings.mlflow_experiment + "-other")
    with pytest.raises(LineageError, match=f"lineage of experiment '{settings.mlflow_experiment}'"):
        run_lifecycle(load_settings())
    # Its own experiment claims it again.
    monkeypatch.setenv("MLFLOW_EXPERIMENT", settings.mlflow_experiment)
    arrive(1)
    assert run_lifecycle(settings).end_row == 2 * ROWS
    assert reg.client.get_registered_model(settings.mlflow_model_name).tags[OWNER_TAG] == str(reg.experiment_id)


# -- a swapped history --------------------------------------------------------------------------


def _trained_two_months(settings) -> list[tuple[int, int]]:
    LocalSource(settings).reset()
    for _ in range(2):
        arrive(1, settings)
        run_lifecycle(settings)
    runs = open_registry(settings).training_runs()
    assert {r.data.tags[HISTORY_TAG] for r in runs} == {"generated:seed=42:from=2012-05:rows=2500"}
    return training_intervals(settings)


def test_a_history_of_another_seed_is_refused_under_a_kept_store(small_history: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    before = _trained_two_months(settings)
    r = taxifare("reset_data_sources", env={"HISTORY_SEED": "7"})
    assert r.returncode == 0, r.stderr
    monkeypatch.setenv("HISTORY_SEED", "7")
    seven = load_settings()
    needles = ("generated:seed=7", "generated:seed=42", "--fresh", "MLFLOW_EXPERIMENT")
    _one_line_error(taxifare("get_new_month"), *needles)
    _one_line_error(taxifare("run_all_months"), *needles)
    with pytest.raises(LineageError, match="the pending history is generated:seed=7.* was trained on generated:seed=42"):
        run_lifecycle(seven)
    assert _source_rows(seven) == 0, "no month arrived"
    assert training_intervals(seven) == before and get_latest_trained_row() == 2 * ROWS, "nothing was trained"
    r = taxifare("check")
    assert r.returncode == 1 and "the pending history is generated:seed=7" in r.stdout, r.stdout
    # The lineage's own history back: it continues.
    monkeypatch.delenv("HISTORY_SEED")
    assert taxifare("reset_data_sources").returncode == 0
    arrive(3)
    assert run_lifecycle(settings).end_row == 3 * ROWS
    assert taxifare("check").returncode == 0


def _csv_of(path: Path, rows: int) -> Path:
    with SAMPLE.open(newline="") as f:
        lines = list(csv.reader(f))[: rows + 1]
    with path.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(lines)
    return path


def test_an_imported_history_replaced_by_another_csv_is_refused(small_history: Path, tmp_path: Path) -> None:
    settings = load_settings()
    first = _csv_of(tmp_path / "a.csv", 4000)
    assert taxifare("import_csv", str(first)).returncode == 0
    LocalSource(settings).reset()
    for _ in range(2):
        arrive(1)
        run_lifecycle(settings)
    before, w = training_intervals(settings), get_latest_trained_row()
    # The same CSV imported again: the same history, which continues.
    assert taxifare("reset_data_sources").returncode == 0
    assert taxifare("import_csv", "--replace", str(first)).returncode == 0
    assert taxifare("get_new_month").returncode == 0
    # Another CSV: refused before any month arrives.
    assert taxifare("reset_data_sources").returncode == 0
    other = _csv_of(tmp_path / "b.csv", 5000)
    assert taxifare("import_csv", "--replace", str(other)).returncode == 0
    _one_line_error(taxifare("get_new_month"), "the pending history is imported:sha256=", "--fresh")
    with pytest.raises(LineageError, match="imported:sha256="):
        run_lifecycle(settings)
    assert _source_rows(settings) == 0 and training_intervals(settings) == before and get_latest_trained_row() == w
    r = taxifare("check")
    assert r.returncode == 1 and "the pending history is imported:sha256=" in r.stdout, r.stdout
