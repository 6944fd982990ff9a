"""The MLflow pyfunc model, logged as code (models-from-code): MLflow stores this file, not a
pickle of a class, so loading needs only the installed `taxifare-flow` package.

Input: a DataFrame (or Arrow table) of raw ride columns. Output: fares (NaN for rides that
cleaning rejects).
"""

from typing import Any

import pandas as pd

import mlflow
from mlflow.pyfunc.model import PythonModel, PythonModelContext


class TaxifarePyfunc(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        from taxifare_flow.model import Model

        with open(context.artifacts["kernel"], "rb") as f:
            self._model = Model.from_bytes(f.read())

    # MLflow reads these hints: a DataFrame input imposes no column schema, and `Any` output
    # none either.
    def predict(self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        return self._model.predict(model_input)


mlflow.models.set_model(TaxifarePyfunc())
