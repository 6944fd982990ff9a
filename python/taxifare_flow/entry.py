"""The `taxifare` console script. `taxifare watermark` is answered here without importing the
CLI framework, numpy, pyarrow or mlflow (a cold process in a few tens of milliseconds); every
other command goes to `taxifare_flow.cli`, whose `watermark` command runs `watermark` below."""

from __future__ import annotations

import os
import sys

USAGE = "usage: taxifare watermark [--experiment NAME]"


def debug() -> bool:
    """Whether tracebacks are wanted (`--debug`, or TAXIFARE_DEBUG=1)."""
    return os.environ.get("TAXIFARE_DEBUG", "") not in ("", "0")


def one_line(e: BaseException) -> str:
    """`Type: message` on one line, passwords masked: what a user sees of a failure."""
    from taxifare_flow._core import mask_dsn

    return f"{type(e).__name__}: {mask_dsn(' '.join(str(e).split()))}"


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


def _experiment(args: list[str]) -> str | None:
    """NAME of `--experiment NAME` or `--experiment=NAME`; `None` without; ValueError otherwise."""
    if not args:
        return None
    if args[0] == "--experiment" and len(args) == 2:
        return args[1]
    if args[0].startswith("--experiment=") and len(args) == 1:
        return args[0].split("=", 1)[1]
    raise ValueError(USAGE)


def main() -> None:
    if sys.argv[1:2] == ["watermark"]:
        try:
            experiment = _experiment(sys.argv[2:])
        except ValueError:
            print(USAGE, file=sys.stderr)
            raise SystemExit(2) from None
        raise SystemExit(watermark(experiment))
    from taxifare_flow.cli import main as cli_main

    cli_main()
