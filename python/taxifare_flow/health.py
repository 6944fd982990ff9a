"""The health check of an HTTP server this package talks to (an MLflow tracking server, a
Prefect API): asked first, in seconds, where the servers' own clients retry for minutes."""

from __future__ import annotations

import urllib.request


def why_unhealthy(base_url: str, timeout: float = 10) -> str | None:
    """None when `GET {base_url}/health` answers 200; else why not, in a few words."""
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/health", timeout=timeout) as r:
            return None if r.status == 200 else f"health check answered {r.status}"
    except OSError as e:
        return f"does not answer ({e})"
