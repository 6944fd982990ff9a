"""The prediction API: FastAPI on uvicorn, serving the registered model's `production` version.

`GET /predict` takes the course's query parameters (the pickup time in New York local time) and
answers `{"fare": float}`; `POST /predict` takes a batch of raw rides. A ride that cleaning
rejects is a 422 naming the reason (never a NaN). The production version is resolved once at
start and then every `API_REFRESH_SECONDS` by a background thread: a promotion is served without
a restart, and no request waits on the registry.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from taxifare_flow._core import TaxifareError
from taxifare_flow.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from mlflow.entities.model_registry import ModelVersion

    from taxifare_flow.ml_logic.registry import Registry
    from taxifare_flow.model import Model

log = logging.getLogger(__name__)

#: The zone of the course's `pickup_datetime` query parameter (and of any batch time without one).
NEW_YORK = "America/New_York"
#: The raw ride columns a prediction needs.
RIDE_COLUMNS = ("pickup_datetime", "pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude",
                "passenger_count")
_ZONED = r"(?:\s*UTC|Z|[+-]\d\d:?\d\d)$"


def pickup_instants(times: pd.Series[str]) -> pa.Array[Any]:
    """Pickup times as UTC instants (`timestamp[s, UTC]`), vectorised: a time without a zone is
    New York local time (as the course's API takes it), one ending in ` UTC`, `Z` or an offset
    keeps its zone. Unreadable times become null, which cleaning names as the reason. Of a
    repeated hour (November) the first is taken; a skipped hour (March) moves forward."""
    text = times.astype("string").str.strip()
    zoned = text.str.contains(_ZONED, regex=True).fillna(False).to_numpy(dtype=bool)
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    if zoned.any():
        iso = text[zoned].str.replace(r"\s*UTC$", "+00:00", regex=True)
        out[zoned] = pd.to_datetime(iso, utc=True, errors="coerce", format="ISO8601")
    if (~zoned).any():
        local = pd.to_datetime(text[~zoned], errors="coerce", format="ISO8601")
        out[~zoned] = local.dt.tz_localize(NEW_YORK, ambiguous=np.ones(len(local), dtype=bool),
                                           nonexistent="shift_forward").dt.tz_convert(timezone.utc)
    return pa.array(out.dt.floor("s"), type=pa.timestamp("s", tz="UTC"))


def rides_table(rides: pd.DataFrame) -> pa.Table:
    """Raw rides as the kernel reads them, pickup times made UTC instants; other columns as given
    (the kernel names a missing or mistyped one)."""
    table = pa.Table.from_pandas(rides, preserve_index=False)
    if "pickup_datetime" in rides.columns:
        i = table.schema.get_field_index("pickup_datetime")
        table = table.set_column(i, "pickup_datetime", pickup_instants(rides["pickup_datetime"]))
    return table


@dataclass(frozen=True)
class ServedVersion:
    """What `GET /model` says of the version being served."""

    name: str
    version: str
    run_id: str
    rows_trained: int
    data_month: str
    feature_version: int
    promoted_at: str
    loaded_at: str


class Production:
    """The `production` version of the registered model, re-resolved every `refresh_seconds` by
    a background thread; requests read the current one without touching the registry. A failed
    refresh keeps the version being served and is reported by `/health`."""

    def __init__(self, settings: Settings, refresh_seconds: float) -> None:
        self.settings = settings
        self.refresh_seconds = refresh_seconds
        self._served: tuple[ServedVersion, Model] | None = None
        self._registry: Registry | None = None
        self.checked_at = 0.0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> tuple[ServedVersion, Model] | None:
        return self._served

    def refresh(self) -> None:
        """Resolves the alias (one registry call); loads the kernel only when the version changed."""
        from taxifare_flow.failure import one_line
        from taxifare_flow.ml_logic.registry import PROMOTED_AT, open_registry

        try:
            if self._registry is None:
                self._registry = open_registry(self.settings)
            reg = self._registry
            found = self._production(reg)
            served = self._served
            if found is None:
                if served is not None:
                    # The alias was removed (its version retracted): a retracted version never serves.
                    log.warning("%s has no production version any more: version %s is no longer served",
                                reg.model_name, served[0].version)
                self._served = None
            elif served is None or served[0].version != str(found.version):
                kernel = reg.load_kernel(found)
                tags = found.tags
                info = ServedVersion(
                    name=reg.model_name, version=str(found.version), run_id=found.run_id or "",
                    rows_trained=int(tags.get("end_row", "0") or 0), data_month=tags.get("data_month", ""),
                    feature_version=kernel.feature_version, promoted_at=tags.get(PROMOTED_AT, ""),
                    loaded_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                )
                self._served = (info, kernel)
                log.warning("serving %s version %s (rows 0..%s, data month %s)", info.name, info.version,
                            info.rows_trained, info.data_month)
            self.last_error = None
        except Exception as e:  # noqa: BLE001 - a failed refresh keeps the served version and never stops the API
            self.last_error = one_line(e)
            log.warning("refreshing the production model failed: %s", self.last_error)
        self.checked_at = time.monotonic()

    @staticmethod
    def _production(reg: Registry) -> ModelVersion | None:
        """The version at `production`; None only when the registry says there is none (an
        unreachable registry raises, so the served version stays)."""
        from mlflow.exceptions import MlflowException

        from taxifare_flow.ml_logic.registry import PRODUCTION

        try:
            return reg.client.get_model_version_by_alias(reg.model_name, PRODUCTION)
        except MlflowException as e:
            if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="production-refresh", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.refresh_seconds + 30)


class Rejected(Exception):
    """A ride the model cannot price: the 422's detail."""


def create_app(settings: Settings, refresh_seconds: float | None = None) -> FastAPI:
    """The FastAPI application serving `settings`' registered model at `production`."""
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    from fastapi import Body, FastAPI, HTTPException, Query
    from fastapi.responses import JSONResponse

    production = Production(settings, refresh_seconds if refresh_seconds is not None else settings.api_refresh_seconds)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        production.start()
        yield
        production.stop()

    app = FastAPI(title="taxifare", summary="NYC taxi fares from the production model", lifespan=lifespan)

    def served() -> tuple[ServedVersion, Model]:
        current = production.current
        if current is None:
            why = production.last_error or f"no version of {settings.mlflow_model_name!r} has the alias production yet"
            raise HTTPException(503, f"no model to serve: {why}")
        return current

    def predict(rides: pd.DataFrame) -> tuple[list[float | None], list[str | None]]:
        _, kernel = served()
        try:
            fares, reasons = kernel.core.predict_explained(rides_table(rides))
        except TaxifareError as e:
            # A missing or mistyped column: the kernel's message names it.
            raise HTTPException(422, str(e)) from None
        return [None if r is not None else float(f) for f, r in zip(fares.tolist(), reasons)], reasons

    @app.get("/predict")
    def predict_one(
        pickup_datetime: str = Query(..., description="New York local time, YYYY-MM-DD HH:MM:SS",
                                     examples=["2013-07-06 17:18:00"]),
        pickup_longitude: float = Query(..., examples=[-73.950655]),
        pickup_latitude: float = Query(..., examples=[40.783282]),
        dropoff_longitude: float = Query(..., examples=[-73.984365]),
        dropoff_latitude: float = Query(..., examples=[40.769802]),
        passenger_count: int = Query(..., examples=[1]),
    ) -> dict[str, float]:
        """The fare of one ride, `{"fare": float}`; 422 with the reason if cleaning rejects it."""
        ride = pd.DataFrame({"pickup_datetime": [pickup_datetime], "pickup_longitude": [pickup_longitude],
                             "pickup_latitude": [pickup_latitude], "dropoff_longitude": [dropoff_longitude],
                             "dropoff_latitude": [dropoff_latitude], "passenger_count": [passenger_count]})
        fares, reasons = predict(ride)
        if reasons[0] is not None or fares[0] is None:
            raise HTTPException(422, reasons[0] or "no fare")
        return {"fare": round(fares[0], 2)}

    @app.post("/predict")
    def predict_many(rides: list[dict[str, Any]] = Body(..., description="raw rides: the columns of GET /predict "
                                                                          "(a time without zone is New York local)")
                     ) -> dict[str, list[Any]]:
        """Fares of a batch, `{"fares": [float | null], "reasons": [str | null]}` in the order
        given: a rejected ride is `null` with its reason (the batch still answers 200)."""
        if not rides:
            return {"fares": [], "reasons": []}
        frame = pd.DataFrame.from_records(rides)
        missing = [c for c in RIDE_COLUMNS if c not in frame.columns]
        if missing:
            raise HTTPException(422, f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
        fares, reasons = predict(frame)
        return {"fares": [None if f is None else round(f, 2) for f in fares], "reasons": reasons}

    @app.get("/health")
    def health() -> JSONResponse:
        """200 while a model is served (`stale` when the last refresh failed), 503 without one."""
        current = production.current
        body = {
            "status": "ok" if current is not None and production.last_error is None else
                      "stale" if current is not None else "no model",
            "version": current[0].version if current is not None else None,
            "seconds_since_refresh": round(time.monotonic() - production.checked_at, 1),
            "refresh_seconds": production.refresh_seconds,
            "error": production.last_error,
        }
        return JSONResponse(body, status_code=200 if current is not None else 503)

    @app.get("/model")
    def model() -> dict[str, Any]:
        """The version served: its number, rows trained, data month, feature version, promotion time."""
        return asdict(served()[0])

    return app


def serve(settings: Settings, host: str, port: int) -> None:
    """Runs the API with uvicorn until interrupted (SIGINT/SIGTERM stop it cleanly)."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)
