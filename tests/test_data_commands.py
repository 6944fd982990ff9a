"""The data-engineer commands through the real CLI: reset, show, get_new_month."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import taxifare
from taxifare_flow.cli import NO_MORE_DATA


def test_state_transitions(three_months: Path) -> None:
    data = three_months
    r = taxifare("reset_data_sources")
    assert r.returncode == 0, r.stderr
    assert "0 months, 0 rows in the source; 3 months pending (2012-08 … 2012-10)" in r.stdout
    for month, first in (("2012-08", 0), ("2012-09", 300), ("2012-10", 600)):
        r = taxifare("get_new_month")
        assert r.returncode == 0, r.stderr
        assert f"{month} arrived: 300 rows, row_id {first}..{first + 300}" in r.stdout
    r = taxifare("get_new_month")
    assert r.returncode == NO_MORE_DATA and "no more data" in r.stdout
    r = taxifare("show_data_sources")
    assert "3 months, 900 rows in the source; 0 months pending" in r.stdout
    assert "600..900" in r.stdout and "next month to arrive: none" in r.stdout
    # reset empties the source only; the history stays.
    outside = data.parent / "keep.parquet"
    outside.write_bytes(b"not ours")
    r = taxifare("reset_data_sources")
    assert "3 months pending" in r.stdout and outside.exists()
    assert sorted(p.name for p in (data / "pending").iterdir()) == [
        "2012-08.parquet", "2012-09.parquet", "2012-10.parquet", "manifest.json", "noise_floor.csv"]


def test_crash_between_write_and_rename_leaves_the_old_state(three_months: Path) -> None:
    data = three_months
    assert taxifare("reset_data_sources").returncode == 0
    assert taxifare("get_new_month").returncode == 0
    # A crash mid-write leaves a hidden temporary file and no renamed month.
    (data / "source" / ".2012-09_r000000000300-000000000600.parquet.tmp-4242").write_bytes(b"half a month")
    r = taxifare("show_data_sources")
    assert "1 month, 300 rows in the source; 2 months pending" in r.stdout
    r = taxifare("get_new_month")
    assert r.returncode == 0 and "2012-09 arrived: 300 rows, row_id 300..600" in r.stdout
    r = taxifare("reset_data_sources")
    assert not any((data / "source").iterdir()), "reset also clears leftover temporaries"


def test_bad_settings_and_broken_source_are_one_clear_line(three_months: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_FORMAT", "xlsx")
    r = taxifare("show_data_sources")
    assert r.returncode == 2 and "SOURCE_FORMAT='xlsx' is not one of parquet, csv" in r.stderr
    assert "Traceback" not in r.stderr
    monkeypatch.delenv("SOURCE_FORMAT")
    taxifare("reset_data_sources")
    taxifare("get_new_month")
    (three_months / "source" / "2012-09_r000000000400-000000000500.parquet").write_bytes(b"x")
    r = taxifare("show_data_sources")
    assert r.returncode == 2 and "gap" in r.stderr and "Traceback" not in r.stderr


def test_list_and_watermark_are_fast_commands(three_months: Path) -> None:
    r = taxifare("list")
    for command in ("show_env", "run_flow", "get_new_month", "push_month_to_bq"):
        assert command in r.stdout
    for make_only in ("reinstall_package", "dev_test", "bench", "wheel"):
        assert make_only not in r.stdout, "the CLI lists only what it runs"
    r = taxifare("watermark")
    assert r.returncode == 0 and r.stdout.strip() == "0"
    code = "import sys, taxifare_flow.entry as e; sys.argv=['taxifare','watermark']; " \
           "import contextlib\nwith contextlib.suppress(SystemExit): e.main()\n" \
           "print(sorted(m for m in ('mlflow', 'typer', 'numpy', 'pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip().splitlines() == ["0", "[]"], "the watermark command imports none of mlflow, typer, numpy, pyarrow"
