"""The prediction API as a client sees it: `taxifare api` (uvicorn) in a child process, asked
over HTTP with a real client, while the registry's production alias moves under it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from conftest import stop_process_group
from helpers import arrive, child_env
from taxifare_flow.api import pickup_instants
from taxifare_flow.data.local import LocalSource
from taxifare_flow.flow.lifecycle import run_lifecycle
from taxifare_flow.ml_logic.registry import PRODUCTION, open_registry
from taxifare_flow.settings import load_settings

COURSE_RIDE = {"pickup_datetime": "2013-07-06 17:18:00", "pickup_longitude": -73.950655, "pickup_latitude": 40.783282,
               "dropoff_longitude": -73.984365, "dropoff_latitude": 40.769802, "passenger_count": 1}


def call(base: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get_predict(base: str, **changes: object) -> tuple[int, Any]:
    return call(base, "/predict?" + urllib.parse.urlencode({**COURSE_RIDE, **changes}))


def until(what: str, check: Any, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.3)


@pytest.fixture
def trained(small_history: Path) -> Iterator[None]:
    """Two lifecycles: version 1 (production) and version 2."""
    settings = load_settings()
    LocalSource(settings).reset()
    arrive(2)
    run_lifecycle(settings)
    arrive(1)
    run_lifecycle(settings)
    yield


@pytest.fixture
def api(trained: None, small_history: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = small_history.parent / "api.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "taxifare_flow.cli", "api", "--port", str(port)],
                                env=child_env({"API_REFRESH_SECONDS": "0.5"}), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        until("the API answers /health", lambda: proc.poll() is not None or _answers(base))
        assert proc.poll() is None, log.read_text()
        yield base
    finally:
        stop_process_group(proc)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: the status says why it ended.
    assert proc.returncode == -signal.SIGTERM and "Traceback" not in log.read_text(), log.read_text()


def _answers(base: str) -> bool:
    try:
        return call(base, "/health")[0] == 200
    except OSError:
        return False


def test_the_course_query_prices_a_ride_and_rejections_name_the_reason(api: str) -> None:
    status, body = get_predict(api)
    assert status == 200, body
    assert set(body) == {"fare"} and isinstance(body["fare"], float) and 3 < body["fare"] < 60
    status, body = get_predict(api, pickup_longitude=2.3522, pickup_latitude=48.8566)
    assert (status, body["detail"]) == (422, "pickup outside New York")
    status, body = get_predict(api, passenger_count=0)
    assert (status, body["detail"]) == (422, "passenger_count 0 (1 to 7 accepted)")
    status, body = get_predict(api, pickup_datetime="yesterday")
    assert (status, body["detail"]) == (422, "pickup_datetime missing or not YYYY-MM-DD HH:MM:SS")
    status, body = call(api, "/predict?pickup_datetime=2013-07-06%2017:18:00")
    assert status == 422 and "pickup_longitude" in json.dumps(body)


def test_a_batch_answers_per_ride_and_names_a_missing_column(api: str) -> None:
    utc = {**COURSE_RIDE, "pickup_datetime": "2013-07-06 21:18:00 UTC"}  # the same instant, as Kaggle writes it
    bad = {**COURSE_RIDE, "passenger_count": 0}
    status, body = call(api, "/predict", [COURSE_RIDE, bad, utc])
    assert status == 200, body
    single = get_predict(api)[1]["fare"]
    assert body["fares"] == [single, None, single]
    assert body["reasons"] == [None, "passenger_count 0 (1 to 7 accepted)", None]
    status, body = call(api, "/predict", [{k: v for k, v in COURSE_RIDE.items() if k != "dropoff_latitude"}])
    assert (status, body["detail"]) == (422, "missing column: dropoff_latitude")


def test_a_promotion_is_served_without_a_restart(api: str, small_history: Path) -> None:
    status, model = call(api, "/model")
    assert status == 200
    settings = load_settings()
    reg = open_registry(settings)
    production = reg.version_by_alias(PRODUCTION)
    assert model["version"] == str(production.version)
    assert model["rows_trained"] == int(production.tags["end_row"]) and model["data_month"] == production.tags["data_month"]
    assert model["feature_version"] == settings.feature_version and model["promoted_at"]
    other = "2" if model["version"] == "1" else "1"
    before = get_predict(api)[1]["fare"]
    reg.set_alias(PRODUCTION, other)
    model = until("the API serves the promoted version", lambda: (m := call(api, "/model")[1])["version"] == other and m)
    assert model["rows_trained"] == int(reg.client.get_model_version(reg.model_name, other).tags["end_row"])
    after = get_predict(api)[1]["fare"]
    assert after != before, "the other version prices the ride differently"
    status, health = call(api, "/health")
    assert (status, health["status"], health["version"], health["error"]) == (200, "ok", other, None)
    # The alias gone (a retracted version): nothing is served, /health says so.
    reg.delete_alias(PRODUCTION)
    until("the API stops serving", lambda: call(api, "/health")[0] == 503)
    status, body = get_predict(api)
    assert status == 503 and "production" in body["detail"]


def test_new_york_local_time_becomes_utc_instants() -> None:
    got = pickup_instants(pd.Series(["2013-07-06 17:18:00", "2013-01-06 17:18:00", "2013-07-06 21:18:00 UTC",
                                     "2013-07-06T17:18:00-04:00", "nonsense", None]))
    assert got.type == pa.timestamp("s", tz="UTC")
    as_text = [None if v is None else v.strftime("%Y-%m-%d %H:%M") for v in got.to_pylist()]
    assert as_text == ["2013-07-06 21:18", "2013-01-06 22:18", "2013-07-06 21:18", "2013-07-06 21:18", None, None]
