"""The `taxifare` console script. `taxifare watermark` is answered here without importing the
CLI framework, numpy, pyarrow or mlflow (a cold process in a few tens of milliseconds); every
other command goes to `taxifare_flow.cli`, whose `watermark` command gives the same answer
(`watermark_command`). The CLI never imports this module: the dependency goes one way."""

from __future__ import annotations

import sys

from taxifare_flow.watermark_command import watermark

USAGE = "usage: taxifare watermark [--experiment NAME]"


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
