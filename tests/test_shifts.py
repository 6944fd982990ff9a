"""The three seed tests of the original package, made real: settings, the watermark, and the
whole lifecycle over months that shift."""

from __future__ import annotations

import csv
import time
import uuid
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest
from typer.testing import CliRunner

from taxifare_flow import _core
from taxifare_flow.settings import SETTING_VARS, SettingsError, load_settings, masked, settings_from
from helpers import assert_tiles, training_intervals


PASSWORD = "p@ss:w/rd%"
DB_PARTS = {"MLFLOW_DB_USER": "ml user", "MLFLOW_DB_PASSWORD": PASSWORD, "MLFLOW_DB_HOSTNAME": "db.internal",
            "MLFLOW_DB_PORT": "6543", "MLFLOW_DB_NAME": "mlflow"}


@pytest.mark.parametrize(("env", "tracking_db", "password"), [
    pytest.param(DB_PARTS, "postgresql://ml%20user:p%40ss%3Aw%2Frd%25@db.internal:6543/mlflow", PASSWORD,
                 id="parts-percent-encoded"),
    pytest.param({**DB_PARTS, "MLFLOW_TRACKING_DB": "postgresql://u:secret@h:5432/other"},
                 "postgresql://u:secret@h:5432/other", "secret", id="whole-dsn-wins-over-parts"),
    pytest.param({"MLFLOW_DB_PORT": "6543"}, "sqlite:///{data}/mlflow/mlflow.db", "", id="no-parts-embedded-sqlite"),
    pytest.param({"LOCAL_DATA_PATH": "elsewhere"}, "sqlite:///{data}/mlflow/mlflow.db", "", id="embedded-follows-data-path"),
])
def test_shifts_parameters(env: dict[str, str], tracking_db: str, password: str, clean_env: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The tracking DB the watermark reads: composed from the parts (percent-encoded, so the
    password round-trips), a whole DSN, or the embedded SQLite file under LOCAL_DATA_PATH."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert s.mlflow_tracking_db == tracking_db.format(data=Path(env.get("LOCAL_DATA_PATH", "data")).resolve())
    assert unquote(urlsplit(s.mlflow_tracking_db).password or "") == password


@pytest.mark.parametrize(("env", "message"), [
    pytest.param({**DB_PARTS, "MLFLOW_DB_PORT": "abc"}, r"MLFLOW_DB_PORT='abc' is not a port", id="port"),
    pytest.param({"DATA_SOURCE": "s3"}, r"DATA_SOURCE='s3' is not one of local, bigquery", id="choice"),
    pytest.param({**DB_PARTS, "MLFLOW_DB_HOSTNAME": ""}, "MLFLOW_DB_HOSTNAME is empty", id="missing-part"),
    pytest.param({"RIDGE_ALPHA": "inf"}, r"RIDGE_ALPHA='inf' is not a finite number", id="not-finite"),
    pytest.param({"BQ_COMPUTE": "gpu"}, r"BQ_COMPUTE='gpu' is not one of local, warehouse", id="compute"),
    pytest.param({"BQ_MAX_BYTES_BILLED": "1000"}, r"BQ_MAX_BYTES_BILLED=1000 is below BigQuery's minimum bill", id="byte-cap"),
])
def test_shifts_parameters_refused(env: dict[str, str], message: str, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad values name the variable and the value; nothing is read at import time."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_shifts_parameters_dotenv_then_environment(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text("MLFLOW_EXPERIMENT=from-dotenv\nMLFLOW_MODEL_NAME=dotenv-model\n")
    monkeypatch.setenv("MLFLOW_MODEL_NAME", "from-env")
    s = load_settings()
    assert (s.mlflow_experiment, s.mlflow_model_name) == ("from-dotenv", "from-env")


def test_shifts_parameters_are_the_settings_fields(clean_env: Path) -> None:
    """One list of names: the settings read exactly the variables of the `Settings` fields,
    and `show_env` shows each of them once, in that order."""

    class Recording(dict[str, str]):
        def __init__(self) -> None:
            super().__init__()
            self.read: set[str] = set()

        def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
            self.read.add(key)
            return super().get(key, default)

    env = Recording()
    settings = settings_from(env)
    assert env.read == set(SETTING_VARS)
    assert [name for rows in masked(settings).values() for name, _ in rows] == list(SETTING_VARS)


def test_shifts_parameters_show_env_masks_passwords(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from taxifare_flow.cli import app

    for name, value in {"MLFLOW_DB_USER": "u", "MLFLOW_DB_PASSWORD": PASSWORD, "MLFLOW_DB_HOSTNAME": "h", "MLFLOW_DB_NAME": "d"}.items():
        monkeypatch.setenv(name, value)
    # Percent-encoded: a raw '@' in MLflow's own URI is refused even when MLFLOW_DB_* are set.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"postgresql://u:{quote(PASSWORD, safe='')}@h:5432/d")
    result = CliRunner().invoke(app, ["show_env"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output and "p%40ss" not in result.output and quote(PASSWORD, safe="") not in result.output
    assert "***" in result.output and "MLFLOW_DB_PASSWORD" in result.output
    for group in ("data", "model & lifecycle", "MLflow", "Prefect", "BigQuery"):
        assert group in result.output


def _training_run(client, experiment_id: str, first: int, count: int, end_ms: int, status: str = "FINISHED") -> str:
    run = client.create_run(experiment_id, start_time=end_ms - 1000)
    for k, v in {"context": "train", "first_row": first, "row_count": count}.items():
        client.log_param(run.info.run_id, k, v)
    client.set_terminated(run.info.run_id, status, end_time=end_ms)
    return run.info.run_id


def test_shifts_get_latest_trained_row(tracking_store: str, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real MLflow writes, the Rust core reads: on SQLite and on PostgreSQL."""
    from mlflow.tracking import MlflowClient

    from taxifare_flow.ml_logic import get_latest_trained_row

    name = f"shifts-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_store)
    monkeypatch.setenv("MLFLOW_EXPERIMENT", name)
    client = MlflowClient(tracking_store)
    client.search_experiments()  # creates the store's tables, as any first MLflow call does
    assert get_latest_trained_row() == 0, "no experiment yet"
    exp = client.create_experiment(name)
    assert get_latest_trained_row() == 0, "no training yet"
    now = int(time.time() * 1000)
    _training_run(client, exp, 0, 1000, now - 3000)
    _training_run(client, exp, 1000, 500, now - 2000)
    assert get_latest_trained_row() == 1500
    assert _core.get_latest_trained_row(tracking_store, name) == 1500
    # A later failed run does not move the watermark.
    _training_run(client, exp, 1500, 700, now, status="FAILED")
    assert get_latest_trained_row() == 1500
    assert get_latest_trained_row(experiment=name + "-other") == 0


@pytest.mark.slow
@pytest.mark.parametrize("data_source", ["local", pytest.param("bigquery", marks=pytest.mark.bigquery),
                                         pytest.param("bigquery-warehouse", marks=pytest.mark.bigquery)])
def test_shifts_complete(data_source: str, small_history: Path, prefect_harness: None, request: pytest.FixtureRequest,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole simulation with the real Prefect engine and a real MLflow store, on the local
    source, on BigQuery (the emulator), and on BigQuery computing inside the warehouse."""
    if data_source.startswith("bigquery"):
        request.getfixturevalue("bigquery_env")
    in_warehouse = data_source == "bigquery-warehouse"
    months = [f"2012-{m:02d}" for m in range(5, 13)] + ["2013-01", "2013-02"]
    if in_warehouse:
        monkeypatch.setenv("BQ_COMPUTE", "warehouse")
        # Each month in the warehouse is a dozen emulator queries (~20 s): five months, still
        # across the 2012-09 fare change, say what ten would.
        months = months[3:8]
        monkeypatch.setenv("HISTORY_FIRST_MONTH", months[0])
        monkeypatch.setenv("HISTORY_LAST_MONTH", months[-1])
    from taxifare_flow.data import open_source
    from taxifare_flow.flow.prefect_flow import run_flow
    from taxifare_flow.flow.simulate import simulate
    from taxifare_flow.ml_logic import get_latest_trained_row
    from taxifare_flow.ml_logic.registry import PRODUCTION, open_registry
    from taxifare_flow.report import collect, write_report

    settings = load_settings()
    open_source(settings, "local").reset()
    open_source(settings).reset()
    read_before = _core.rows_decoded()
    ticks = list(simulate(settings))
    read = _core.rows_decoded() - read_before
    assert [t.month for t in ticks] == months
    total = open_source(settings).row_count()
    assert total == len(months) * 2500
    # One pass per lifecycle: every row was read exactly once, whatever the source; none
    # left BigQuery when it computed.
    assert read == (0 if in_warehouse else total), f"{read} rows read for {total} rows trained"
    assert [t.outcome.rows_decoded for t in ticks] == [0 if in_warehouse else t.rows for t in ticks]

    assert_tiles(training_intervals(settings), total)
    assert get_latest_trained_row() == total

    reg = open_registry(settings)
    prod = reg.version_by_alias(PRODUCTION)
    assert prod is not None and str(prod.version) in {str(v.version) for v in reg.versions()}
    assert reg.version_by_alias("challenger").version == reg.head_for(total).version

    # Each month after the first has production's prequential MAE, with the month as step.
    runs = reg.client.search_runs([reg.experiment_id], "params.context = 'train'")
    history = {int(r.data.params["first_row"]): r for r in runs}
    # One cleaned-row count: the run's param is the outcome's (the whole range).
    by_first = {t.outcome.first_row: t.outcome for t in ticks}
    assert {f: int(r.data.params["cleaned_row_count"]) for f, r in history.items()} == {
        f: o.cleaned_rows for f, o in by_first.items()}
    assert all(r.data.tags["lineage_hash"].startswith("bq:") == in_warehouse for r in runs)
    for first, run in sorted(history.items())[1:]:
        logged = reg.client.get_metric_history(run.info.run_id, "prequential_mae")
        assert len(logged) == 1 and 0 < logged[0].value < 20
        month = run.data.params["data_month"]
        assert logged[0].step == (int(month[:4]) - 2009) * 12 + int(month[5:]) - 1

    # The fare change shows: the frozen first model is worse after it than retrained models.
    rows = {r["month"]: r for r in collect(settings)}
    assert rows[months[-1]]["frozen_mae"] > rows[months[-1]]["prequential_mae"]

    # No new data: a no-op, no new MLflow run.
    before = len(runs)
    outcome = run_flow(settings)
    assert outcome.status == "nothing to do"
    assert len(reg.client.search_runs([reg.experiment_id])) == before

    files = write_report(settings)
    for p in (files.csv, files.png, files.html):
        assert p.is_file() and p.stat().st_size > 0
    with files.csv.open() as f:
        report_rows = list(csv.DictReader(f))
    assert [r["month"] for r in report_rows] == [t.month for t in ticks]
    assert all(float(r["noise_floor_mae"]) > 0 for r in report_rows)
