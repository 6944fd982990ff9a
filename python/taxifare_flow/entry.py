"""The `taxifare` console script. `taxifare watermark` is answered here without importing the
CLI framework, numpy, pyarrow or mlflow (a cold process in a few tens of milliseconds); every
other command goes to `taxifare_flow.cli`."""

from __future__ import annotations

import os
import sys


def _watermark(args: list[str]) -> int:
    from taxifare_flow import _core
    from taxifare_flow.ml_logic.watermark import get_latest_trained_row
    from taxifare_flow.settings import load_settings

    experiment = None
    if args[:1] == ["--experiment"] and len(args) == 2:
        experiment = args[1]
    elif args and args[0].startswith("--experiment="):
        experiment = args[0].split("=", 1)[1]
    elif args:
        print("usage: taxifare watermark [--experiment NAME]", file=sys.stderr)
        return 2
    try:
        print(get_latest_trained_row(experiment or None, settings=load_settings()))
    except _core.TaxifareError as e:
        if os.environ.get("TAXIFARE_DEBUG", "") not in ("", "0"):
            raise
        print(f"{type(e).__name__}: {_core.mask_dsn(' '.join(str(e).split()))}", file=sys.stderr)
        return 2
    return 0


def main() -> None:
    if sys.argv[1:2] == ["watermark"]:
        raise SystemExit(_watermark(sys.argv[2:]))
    from taxifare_flow.cli import main as cli_main

    cli_main()
