"""The MLflow pyfunc model, logged as code (models-from-code): MLflow stores this file, not a
pickle of a class, so loading needs only the installed `taxifare-flow` package.

Input: a DataFrame (or Arrow table) of raw ride columns. Output: a DataFrame with `fare` (null
for a ride that cleaning rejects, never NaN: strict JSON clients read the scoring server's
answer) and `reason` (why it was rejected, else null). A missing column is an
INVALID_PARAMETER_VALUE naming it (the scoring server's 400 then says which).
"""

from typing import Any

import pandas as pd

import mlflow
from mlflow.pyfunc.model import PythonModel, PythonModelContext

#: The raw ride columns a prediction needs.
RIDE_COLUMNS = ("pickup_datetime", "pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude",
                "passenger_count")


class TaxifarePyfunc(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        from taxifare_flow.model import Model

        with open(context.artifacts["kernel"], "rb") as f:
            self._model = Model.from_bytes(f.read())

    # MLflow reads these hints: a DataFrame input imposes no column schema, and `Any` output
    # none either.
    def predict(self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        from taxifare_flow._core import TaxifareError
        from taxifare_flow.model import as_arrow

        columns = model_input.columns if isinstance(model_input, pd.DataFrame) else model_input.schema.names
        missing = [c for c in RIDE_COLUMNS if c not in columns]
        if missing:
            raise MlflowException(f"missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
                                  error_code=INVALID_PARAMETER_VALUE)
        try:
            fares, reasons = self._model.core.predict_explained(as_arrow(model_input))
        except TaxifareError as e:
            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from None
        kept = [None if r is not None else float(f) for f, r in zip(fares.tolist(), reasons)]
        return pd.DataFrame({"fare": pd.Series(kept, dtype=object), "reason": pd.Series(reasons, dtype=object)})


mlflow.models.set_model(TaxifarePyfunc())
