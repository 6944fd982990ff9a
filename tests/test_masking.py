"""Passwords written raw (not percent-encoded) in MLFLOW_TRACKING_DB never show: not in
`show_env`, not in error messages, not in logs. Those no parser reads the same way ('@', '/',
a stray '%', blanks) are refused by the settings with a line saying to percent-encode; the
others are masked whole."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from helpers import taxifare
from taxifare_flow import _core

# Refused: libpq, SQLAlchemy and tokio-postgres would each split these differently.
REFUSED = {
    "postgresql://u:ss:w/rd%@host/db": ("ss:w", "w/rd", "rd%"),
    "postgresql://u:p@ss@host/db": ("p@ss", "ss@host"),
    "postgresql://u:ab%zz@host/db": ("ab%zz", "%zz"),
    "postgresql://u:qz xj@host/db": ("qz xj", "qz", " xj"),
}
# Accepted (every parser agrees), and masked whole.
ACCEPTED = {
    "postgresql://u:se:cr?et#1@127.0.0.1:1/db": ("se:cr", "cr?et", "et#1"),
    "postgres://u:p%40ss%2F1@127.0.0.1:1/db": ("p%40ss", "ss%2F1"),
}


def _shows_none(text: str, fragments: tuple[str, ...]) -> None:
    for f in fragments:
        assert f not in text, f"{f!r} shown in: {text}"


@pytest.mark.parametrize("dsn", REFUSED)
def test_unencoded_passwords_are_refused_without_being_shown(dsn: str, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_DB", dsn)
    for done in (taxifare("show_env", cwd=clean_env), taxifare("watermark", cwd=clean_env), taxifare("watermark", cwd=clean_env, entry=True)):
        assert done.returncode == 2, done
        assert done.stdout == ""
        line = done.stderr.strip()
        assert len(line.splitlines()) == 1 and "percent-encode" in line and "MLFLOW_TRACKING_DB" in line, line
        _shows_none(done.stderr, REFUSED[dsn])


@pytest.mark.parametrize("dsn", ACCEPTED)
def test_accepted_passwords_are_masked_whole(dsn: str, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_DB", dsn)
    scheme = dsn.split("://")[0]
    shown = taxifare("show_env", cwd=clean_env)
    assert shown.returncode == 0, shown.stderr
    assert f"{scheme}://u:***@127.0.0.1:1/db" in shown.stdout
    _shows_none(shown.stdout, ACCEPTED[dsn])
    # The server cannot be reached: one masked line, exit 2, from both entry points.
    for done in (taxifare("watermark", cwd=clean_env), taxifare("watermark", cwd=clean_env, entry=True)):
        assert done.returncode == 2 and done.stdout == "", done
        assert "TrackingDbUnreachableError" in done.stderr and f"{scheme}://u:***@127.0.0.1:1/db" in done.stderr
        _shows_none(done.stderr, ACCEPTED[dsn])


def test_the_core_masks_raw_passwords_in_its_errors_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Called directly (no settings in between), the Rust reader still never shows them."""
    caplog.set_level(logging.DEBUG)
    for dsn, fragments in {**REFUSED, **ACCEPTED}.items():
        if "@ss@" in dsn:
            continue  # would send "ss@host" to the resolver as a host name: the settings refuse it
        unreachable = dsn.replace("@host/", "@127.0.0.1:1/")
        with pytest.raises(_core.TrackingDbError) as e:
            _core.get_latest_trained_row(unreachable, "x")
        assert "\n" not in str(e.value)
        assert "u:***@127.0.0.1:1/db" in str(e.value), str(e.value)
        _shows_none(str(e.value), fragments)
        _shows_none(caplog.text, fragments)
