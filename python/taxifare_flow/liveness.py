"""Whether a process still runs: what a killed process left (a temporary file named by its
PID) may be removed only once that process is gone."""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """True while process `pid` exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
