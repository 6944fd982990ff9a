"""How a failure reaches the user: one line (`Type: message`, passwords masked), a traceback
only when asked. Shared by the console script (`entry`) and the CLI (`cli`); imports nothing
heavy."""

from __future__ import annotations

import os


def debug() -> bool:
    """Whether tracebacks are wanted (`--debug`, or TAXIFARE_DEBUG=1)."""
    return os.environ.get("TAXIFARE_DEBUG", "") not in ("", "0")


def one_line(e: BaseException) -> str:
    """`Type: message` on one line, passwords masked: what a user sees of a failure."""
    from taxifare_flow._core import mask_dsn

    return f"{type(e).__name__}: {mask_dsn(' '.join(str(e).split()))}"
