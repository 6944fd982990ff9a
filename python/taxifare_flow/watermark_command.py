"""`taxifare watermark` without the CLI framework, numpy, pyarrow or mlflow: the console script
(`entry`) answers it before the CLI loads, and the CLI's `watermark` command (after options
such as --debug) gives the same answer."""

from __future__ import annotations

import sys

from taxifare_flow.failure import debug, one_line


def watermark(experiment: str | None) -> int:
    """Prints the first untrained row of `experiment` (default: MLFLOW_EXPERIMENT); returns the
    exit status: 0, or 2 with one line on stderr for a typed error (raised with --debug)."""
    from taxifare_flow import _core
    from taxifare_flow.ml_logic.watermark import get_latest_trained_row
    from taxifare_flow.settings import load_settings

    try:
        print(get_latest_trained_row(experiment or None, settings=load_settings()))
    except _core.TaxifareError as e:
        if debug():
            raise
        print(one_line(e), file=sys.stderr)
        return 2
    return 0
