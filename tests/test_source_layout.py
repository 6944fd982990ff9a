"""The source is what its names say: no empty range, months in order, each file's rows in the
month its name states (recorded at arrival). Every refusal names the file and changes nothing.
Through the real CLI (`get_new_month`, `show_data_sources`) and `_core.source_problems`."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import taxifare, taxifare_in_process
from taxifare_flow import _core
from taxifare_flow.data.local import LocalSource
from taxifare_flow.settings import load_settings


def name(month: str, first: int, end: int, ext: str = "parquet") -> str:
    return f"{month}_r{first:012d}-{end:012d}.{ext}"


@pytest.fixture(params=["parquet", "csv"])
def four_months(request: pytest.FixtureRequest, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """2009-01 … 2009-04 arrived (5,000 rows each) of a history running to 2009-08."""
    data = clean_env / "data"
    monkeypatch.setenv("LOCAL_DATA_PATH", str(data))
    monkeypatch.setenv("HISTORY_ROWS_PER_MONTH", "5000")
    monkeypatch.setenv("HISTORY_FIRST_MONTH", "2009-01")
    monkeypatch.setenv("HISTORY_LAST_MONTH", "2009-08")
    monkeypatch.setenv("SOURCE_FORMAT", request.param)
    # The set-up runs the same commands in this process: the tests' own calls are real ones.
    assert taxifare_in_process("reset_data_sources").returncode == 0
    for _ in range(4):
        r = taxifare_in_process("get_new_month")
        assert r.returncode == 0, r.stderr
    return data / "source", request.param


def listing(source: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in source.iterdir()}


def refused(source: Path, culprit: str, *words: str) -> None:
    """`get_new_month` and `show_data_sources` refuse in one line naming `culprit`; nothing changes."""
    before = listing(source)
    r = taxifare("get_new_month")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert culprit in r.stderr and all(w in r.stderr for w in words), r.stderr
    assert "Traceback" not in r.stderr and "arrived" not in r.stdout
    assert listing(source) == before, "nothing on disk changed"
    problems = _core.source_problems(source)
    assert problems and any(culprit in p for p in problems), problems


def test_a_sound_source_has_no_problems(four_months: tuple[Path, str]) -> None:
    source, fmt = four_months
    assert _core.source_problems(source) == []
    assert LocalSource(load_settings()).problems() == []
    assert _core.source_problems(source.parent / "nothing-arrived-yet") == []
    if fmt == "parquet":
        meta = pq.read_metadata(source / name("2009-03", 10_000, 15_000)).metadata
        assert meta[b"taxifare.month"] == b"2009-03", "the month is recorded in the file at arrival"
    r = taxifare("get_new_month")
    assert r.returncode == 0 and "2009-05 arrived: 5,000 rows, row_id 20,000..25,000" in r.stdout


def test_an_empty_range_file_is_refused_not_skipped_to(four_months: tuple[Path, str]) -> None:
    """`touch source/2009-06_r000000020000-000000020000.parquet`: today 2009-07 arrives next,
    2009-05 and 2009-06 are skipped for good."""
    source, fmt = four_months
    stray = source / name("2009-06", 20_000, 20_000, fmt)
    stray.touch()
    refused(source, stray.name, "empty row_id range")
    r = taxifare("show_data_sources")
    assert r.returncode == 2 and stray.name in r.stderr
    stray.unlink()
    r = taxifare("get_new_month")
    assert r.returncode == 0 and "2009-05 arrived" in r.stdout, "once removed, the next month is the right one"


def test_a_file_renamed_to_a_later_month_is_refused(four_months: tuple[Path, str]) -> None:
    """The last month relabelled 2009-05: today 2009-06 arrives next, 2009-04's label and
    2009-05's rows are lost. Names alone are consistent: the month recorded in the file is not."""
    source, fmt = four_months
    relabelled = source / name("2009-05", 15_000, 20_000, fmt)
    (source / name("2009-04", 15_000, 20_000, fmt)).rename(relabelled)
    refused(source, relabelled.name, "2009-04", "2009-05")


def test_months_out_of_order_are_refused(four_months: tuple[Path, str]) -> None:
    """2009-02 and 2009-03 swap labels: today 2009-05 arrives as if nothing were wrong."""
    source, fmt = four_months
    (source / name("2009-03", 10_000, 15_000, fmt)).rename(source / name("2009-02", 10_000, 15_000, fmt))
    (source / name("2009-02", 5_000, 10_000, fmt)).rename(source / name("2009-03", 5_000, 10_000, fmt))
    refused(source, name("2009-02", 10_000, 15_000, fmt), "months must strictly increase")


def test_a_file_whose_rows_disagree_with_its_name_is_refused(four_months: tuple[Path, str]) -> None:
    """Two same-sized months swap contents: names tile, but row_ids and months do not match."""
    source, fmt = four_months
    a, b = source / name("2009-02", 5_000, 10_000, fmt), source / name("2009-03", 10_000, 15_000, fmt)
    a_bytes = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(a_bytes)
    refused(source, a.name)
    assert any(b.name in p for p in _core.source_problems(source))
