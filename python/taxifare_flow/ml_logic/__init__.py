"""MLflow glue: the watermark (read by the Rust core), the registry, the pyfunc model."""

from taxifare_flow.ml_logic.watermark import get_latest_trained_row

__all__ = ["get_latest_trained_row"]
