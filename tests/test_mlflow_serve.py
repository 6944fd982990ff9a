"""`mlflow models serve -m models:/NAME@production` with MLflow's default environment manager
(virtualenv: pyenv's Python and a fresh venv that installs the model's requirements from the
package index, and taxifare-flow from the wheel packed into the model by MODEL_WHEEL), from a
fresh directory. Slow: the environment installs mlflow and its dependencies once."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import _wait_for_http, stop_process_group
from helpers import child_env
from taxifare_flow import Model, _core
from taxifare_flow.ml_logic.registry import PRODUCTION, open_registry
from taxifare_flow.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def post(url: str, body: Any) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_registered_version_serves_with_the_default_env_manager(clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    dist = tmp_path_factory.mktemp("dist")
    built = subprocess.run([str(Path(sys.executable).with_name("maturin")), "build", "--profile", "dev-fast", "--out", str(dist)],
                           cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel, = dist.glob("taxifare_flow-*.whl")
    store = "sqlite:///" + str(clean_env / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("LOCAL_DATA_PATH", str(clean_env / "data"))
    monkeypatch.setenv("MLFLOW_MODEL_NAME", f"served-{uuid.uuid4().hex[:6]}")
    monkeypatch.setenv("MODEL_WHEEL", str(wheel))
    settings = load_settings()
    reg = open_registry(settings)
    model = Model()
    model.partial_fit(_core.generate_month("2014-04", 3000, seed=2))
    run = reg.client.create_run(reg.experiment_id)
    version = reg.log_model_version(run.info.run_id, model, {"first_row": "0", "end_row": "3000"})
    reg.client.set_terminated(run.info.run_id, "FINISHED")
    reg.set_alias(PRODUCTION, version.version)

    fresh = tmp_path_factory.mktemp("fresh")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = fresh / "serve.log"
    # PIP_NO_COMPILE: pip would compile every module of the environment's packages to bytecode,
    # most of its CPU time here, for one serving process that imports a fraction of them.
    env = child_env({"MLFLOW_TRACKING_URI": store, "MLFLOW_ENV_ROOT": str(fresh / "envs"), "PIP_NO_COMPILE": "1"})
    env.pop("VIRTUAL_ENV", None)
    with log.open("w") as out:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m",
                                 f"models:/{settings.mlflow_model_name}@production", "-p", str(port), "-h", "127.0.0.1"],
                                cwd=fresh, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_http(f"http://127.0.0.1:{port}/ping", proc, log, timeout=1500)
        rides = _core.generate_month("2014-05", 3, seed=3).read_all().to_pandas().drop(columns=["fare_amount", "key"],
                                                                                           errors="ignore")
        rides["pickup_datetime"] = rides["pickup_datetime"].astype(str)
        rides.loc[1, "passenger_count"] = 0
        split = json.loads(rides.to_json(orient="split", index=False))
        status, body = post(f"http://127.0.0.1:{port}/invocations", {"dataframe_split": split})
        assert status == 200, body
        predictions = body["predictions"]
        assert [p["reason"] for p in predictions] == [None, "passenger_count 0 (1 to 7 accepted)", None]
        assert predictions[1]["fare"] is None and all(isinstance(predictions[i]["fare"], float) for i in (0, 2))
        gone = split["columns"].index("dropoff_latitude")
        del split["columns"][gone]
        for row in split["data"]:
            del row[gone]
        status, body = post(f"http://127.0.0.1:{port}/invocations", {"dataframe_split": split})
        assert status == 400 and "missing column: dropoff_latitude" in body["message"], body
    finally:
        stop_process_group(proc)
