"""Helpers shared by the test files (fixtures live in conftest.py)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taxifare_flow.settings import SETTING_VARS, Settings, load_settings


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment as a user's shell has it, plus `extra`: Prefect variables
    that session fixtures left here are not the user's and stay behind (the settings' own
    PREFECT_* variables are kept); COLUMNS is wide, so no line a test looks for is wrapped."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") or k in SETTING_VARS}
    return {**inherited, "COLUMNS": "250", **(extra or {})}


def taxifare(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, entry: bool = False,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process, as a user runs it, with `env` added to `child_env()`.
    `entry`: through the `taxifare` console script (which answers `watermark` without the
    CLI framework) rather than `python -m taxifare_flow.cli`."""
    command = [str(Path(sys.executable).with_name("taxifare"))] if entry else [sys.executable, "-m", "taxifare_flow.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=child_env(env), cwd=cwd, timeout=timeout)


@dataclass(frozen=True)
class Ran:
    """What a command run in this process showed: the fields of a CompletedProcess tests read."""

    returncode: int
    stdout: str
    stderr: str


class _Shown(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


#: Variables `configure_prefect` sets in the process it runs in: restored after an in-process run.
_PREFECT_DEFAULTS = ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_LOGGING_LEVEL", "PREFECT_SERVER_ANALYTICS_ENABLED",
                     "PREFECT_LOGGING_EXTRA_LOGGERS")


def _logging_state() -> list[tuple[logging.Logger, list[logging.Handler], int, bool, bool]]:
    """Root's and the package's loggers: Prefect's logging set-up adds its API handler to them
    (PREFECT_LOGGING_EXTRA_LOGGERS), which must not outlive an in-process run."""
    names = ["taxifare_flow", *(n for n in logging.Logger.manager.loggerDict if n.startswith("taxifare_flow."))]
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in names)]
    return [(lg, list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers]


def taxifare_in_process(*args: str, env: dict[str, str] | None = None) -> Ran:
    """The CLI in this process, through typer's CliRunner: the code from the arguments to the
    exit status that `taxifare()` runs, without a new interpreter importing mlflow and Prefect
    each time. `stderr` also holds what `main()` would print besides: the WARNING records its
    logging handler shows (through the same filter), and the traceback of an exception that
    escaped the command. The environment is `child_env(env)`'s and the loggers are as before,
    both restored afterwards; the local Prefect API a run started is stopped, as it would die
    with its process."""
    from typer.testing import CliRunner

    from taxifare_flow.cli import _OneLinePerFailure, app

    overrides: dict[str, str | None] = {k: os.environ.get(k) for k in _PREFECT_DEFAULTS}
    overrides.update({k: None for k in os.environ if k.startswith("PREFECT_") and k not in SETTING_VARS})
    overrides.update({"COLUMNS": "250", **(env or {})})
    saved = _logging_state()
    shown: list[str] = []
    handler = _Shown(shown)
    handler.addFilter(_OneLinePerFailure())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        r = CliRunner().invoke(app, list(args), env=overrides)
    finally:
        for logger, handlers, level, propagate, disabled in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate, logger.disabled = propagate, disabled
        if "taxifare_flow.flow.prefect_server" in sys.modules:
            sys.modules["taxifare_flow.flow.prefect_server"]._stop()
    stderr = r.stderr + "".join(f"{line}\n" for line in shown)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        stderr += "".join(traceback.format_exception(r.exception))
    return Ran(r.exit_code, r.stdout, stderr)


def arrive(n: int, settings: Settings | None = None) -> None:
    """`n` months arrive in the local source."""
    from taxifare_flow.data.local import LocalSource

    src = LocalSource(settings or load_settings())
    for _ in range(n):
        assert src.bring_next_month() is not None


def training_intervals(settings: Settings) -> list[tuple[int, int]]:
    """(first_row, row_count) of the FINISHED, active training runs, in row order."""
    from taxifare_flow.check import training_intervals as intervals
    from taxifare_flow.ml_logic.registry import open_registry

    return sorted(intervals(open_registry(settings)))


def assert_tiles(intervals: list[tuple[int, int]], total: int) -> None:
    """Every row trained exactly once: the intervals tile [0, total) with no gap or overlap."""
    end = 0
    for first, count in intervals:
        assert first == end, f"gap or overlap at row {end}: next run starts at {first}"
        assert count > 0
        end = first + count
    assert end == total


def fail_after(step: str, exc: BaseException) -> Any:
    """A lifecycle `wrap` that raises `exc` right after `step` returns: a crash at that point."""
    def wrap(fn: Any, name: str) -> Any:
        if name != step:
            return fn

        def crashed(*args: Any) -> Any:
            fn(*args)
            raise exc
        return crashed
    return wrap
