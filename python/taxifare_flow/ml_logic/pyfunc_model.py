"""The MLflow pyfunc model, logged as code (models-from-code): MLflow stores this file, not a
pickle of a class, so loading needs only the installed `taxifare-flow` package.

Input: a DataFrame (or Arrow table) of raw ride columns. Output: fares (NaN for rides that
cleaning rejects).
"""

from typing import Any

import pandas as pd

import mlflow
from mlflow.pyfunc import PythonModel


class TaxifarePyfunc(PythonModel):
    def load_context(self, context: Any) -> None:
        from taxifare_flow.model import Model

        with open(context.artifacts["kernel"], "rb") as f:
            self._model = Model.from_bytes(f.read())

    # A DataFrame hint: MLflow accepts it without imposing a column schema.
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:  # noqa: ANN001
        return self._model.predict(model_input)


mlflow.models.set_model(TaxifarePyfunc())
