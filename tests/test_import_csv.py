"""The pending history and its provenance: a Kaggle-format CSV imported by header name, a
manifest telling where the history comes from, generated months never mixed into an imported
history, and the BigQuery trio standing on its own. Through the real CLI where a user would
type it, on the 5,000 real rows of `benches/data/kaggle_sample_5k.csv`."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import taxifare
from taxifare_flow import _core
from taxifare_flow.data import history
from taxifare_flow.data.local import LocalSource
from taxifare_flow.settings import load_settings

SAMPLE = Path(__file__).resolve().parent.parent / "benches" / "data" / "kaggle_sample_5k.csv"


@pytest.fixture
def data(three_months: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HISTORY_ROWS_PER_MONTH", "200")
    return three_months


def sample_rows() -> tuple[list[str], list[list[str]]]:
    with SAMPLE.open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def manifest(data: Path) -> dict:
    return json.loads((data / "pending" / "manifest.json").read_text())


def pending_listing(data: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((data / "pending").iterdir())} if (data / "pending").is_dir() else {}


# -- the import ----------------------------------------------------------------------------


def test_the_real_sample_imports_with_its_provenance(data: Path) -> None:
    r = taxifare("import_csv", str(SAMPLE))
    assert r.returncode == 0, r.stderr
    assert "78 months imported" in r.stdout and "5,000 rows (2009-01 … 2015-06)" in r.stdout
    m = manifest(data)
    assert m["kind"] == "imported" and m["file"] == "kaggle_sample_5k.csv"
    assert m["sha256"] == hashlib.sha256(SAMPLE.read_bytes()).hexdigest() and m["bytes"] == SAMPLE.stat().st_size
    skipped = sum(m["skipped"].values())
    assert m["rows_read"] == 5000 and sum(m["months"].values()) == 5000 - skipped
    assert min(m["months"]) == "2009-01" and max(m["months"]) == "2015-06" and len(m["months"]) == 78
    # Each month file holds its month only, and records it.
    for month in ("2009-01", "2012-09", "2015-06"):
        t = pq.read_table(data / "pending" / f"{month}.parquet")
        assert t.num_rows == m["months"][month]
        assert set(s[:7] for s in t.column("pickup_datetime").to_pylist()) == {month}
        assert pq.read_metadata(data / "pending" / f"{month}.parquet").metadata[b"taxifare.month"] == month.encode()
    r = taxifare("show_data_sources")
    assert r.returncode == 0, r.stderr
    assert "pending history: imported from kaggle_sample_5k.csv (sha256 " + m["sha256"][:12] in r.stdout
    assert "0 months, 0 rows in the source; 78 months pending (2009-01 … 2015-06)" in r.stdout
    r = taxifare("get_new_month")
    assert r.returncode == 0 and f"2009-01 arrived: {m['months']['2009-01']} rows" in r.stdout


def test_values_follow_the_header_names(data: Path, tmp_path: Path) -> None:
    """Latitude and longitude swapped in the header: values follow the names, not the positions."""
    header, rows = sample_rows()
    i_lon, i_lat = header.index("pickup_longitude"), header.index("pickup_latitude")
    swapped = list(header)
    swapped[i_lon], swapped[i_lat] = "pickup_latitude", "pickup_longitude"
    swapped_csv = write_csv(tmp_path / "swapped.csv", swapped, rows)
    r = taxifare("import_csv", str(swapped_csv))
    assert r.returncode == 0, r.stderr
    t = pq.read_table(data / "pending" / "2009-06.parquet")
    by_key = {r[0]: r for r in rows}
    for key, lat, lon in zip(t["key"].to_pylist(), t["pickup_latitude"].to_pylist(), t["pickup_longitude"].to_pylist(), strict=True):
        assert (lat, lon) == (float(by_key[key][i_lon]), float(by_key[key][i_lat]))


def test_key_is_optional_and_extra_columns_are_ignored(data: Path, tmp_path: Path) -> None:
    header, rows = sample_rows()
    no_key = write_csv(tmp_path / "nokey.csv", ["vendor", *header[1:]], [["CMT", *r[1:]] for r in rows])
    made = history.import_csv(load_settings(), no_key)
    assert made.rows == 5000 and made.has_key is False
    assert pq.read_table(data / "pending" / "2013-01.parquet")["key"].null_count == made.months["2013-01"]


@pytest.mark.parametrize(("content", "words"), [
    (b"a,b,c\n1,2,3\n", ['has no column "fare_amount"', "a,b,c"]),
    (b"", ["is empty"]),
    (SAMPLE.read_bytes().split(b"\n", 1)[0] + b"\n", ["has a header but no rows"]),
])
def test_bad_csvs_are_one_line_and_change_nothing(data: Path, tmp_path: Path, content: bytes, words: list[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    r = taxifare("import_csv", str(bad))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "bad.csv" in r.stderr and all(w in r.stderr for w in words) and "Traceback" not in r.stderr
    assert pending_listing(data) == {} and not list(data.glob(".pending-import-*"))
    # Over an existing history (with --replace): the history is untouched.
    assert taxifare("reset_data_sources").returncode == 0
    before = pending_listing(data)
    r = taxifare("import_csv", str(bad), "--replace")
    assert r.returncode == 2 and all(w in r.stderr for w in words)
    assert pending_listing(data) == before


def test_a_bad_byte_late_in_the_file_leaves_no_temporary_file(data: Path, tmp_path: Path) -> None:
    first = history.import_csv(load_settings(), SAMPLE)
    before = pending_listing(data)
    text = bytearray(SAMPLE.read_bytes())
    late = text.rindex(b"\n", 0, len(text) - 5_000)  # ~50 rows before the end
    text[late + 3] = 0xFF
    bad = tmp_path / "late.csv"
    bad.write_bytes(bytes(text))
    # Small batches: every month file is being written when the bad byte is met.
    with pytest.raises(_core.DataSourceError, match=r"late\.csv.*UTF-8"):
        history.import_csv(load_settings(), bad, replace=True, batch_rows=500)
    assert pending_listing(data) == before and history.provenance(data / "pending") == first
    assert not list(data.glob(".pending-import-*")), "the staging folder and its temporary files are gone"
    assert not [p for p in (data / "pending").iterdir() if p.name.startswith(".")]
    r = taxifare("import_csv", str(bad), "--replace")
    assert r.returncode == 2 and "UTF-8" in r.stderr and pending_listing(data) == before


def test_progress_is_reported_and_an_exception_there_stops_cleanly(data: Path) -> None:
    calls: list[tuple[int, int, int]] = []
    history.import_csv(load_settings(), SAMPLE, progress=lambda *a: calls.append(a))
    size = SAMPLE.stat().st_size
    assert calls[-1] == (size, size, 5000)

    def stop(*_: int) -> None:
        raise KeyboardInterrupt

    before = pending_listing(data)
    with pytest.raises(KeyboardInterrupt):
        history.import_csv(load_settings(), SAMPLE, replace=True, progress=stop)
    assert pending_listing(data) == before and not list(data.glob(".pending-import-*"))
    gen: list[tuple[int, int, int]] = []
    _core.generate_history(data / "gen", first_month="2013-01", last_month="2013-02", rows_per_month=600_000,
                           progress=lambda *a: gen.append(a))
    assert len(gen) >= 2 and gen[-1] == (1_200_000, 1_200_000, 1_200_000), gen


# -- provenance ------------------------------------------------------------------------------


def eighteen_months(tmp_path: Path) -> Path:
    header, rows = sample_rows()
    i = header.index("pickup_datetime")
    keep = [r for r in rows if "2011-01" <= r[i][:7] <= "2012-06"]
    return write_csv(tmp_path / "train_2011_2012.csv", header, keep)


def test_an_imported_history_is_never_filled_with_generated_months(data: Path, tmp_path: Path) -> None:
    """import then reset_data_sources: today the configured span is filled with generated months
    and a generated 2009-01 arrives first."""
    r = taxifare("import_csv", str(eighteen_months(tmp_path)))
    assert r.returncode == 0, r.stderr
    assert taxifare("reset_data_sources").returncode == 0
    r = taxifare("show_data_sources")
    assert "18 months pending (2011-01 … 2012-06)" in r.stdout, r.stdout
    assert sorted(p.name for p in (data / "pending").glob("*.parquet"))[0] == "2011-01.parquet"
    assert not (data / "pending" / "noise_floor.csv").exists()
    s = load_settings()
    assert history.ensure_history(s).kind == "imported"
    assert LocalSource(s).pending() == sorted(manifest(data)["months"]) and len(LocalSource(s).pending()) == 18
    r = taxifare("get_new_month")
    assert r.returncode == 0 and "2011-01 arrived" in r.stdout
    assert len(LocalSource(s).pending()) == 17
    # A stray month file is not part of the history.
    (data / "pending" / "2009-01.parquet").write_bytes((data / "pending" / "2011-02.parquet").read_bytes())
    assert LocalSource(s).pending()[0] == "2011-02"


def test_importing_over_a_history_needs_replace_and_an_empty_source(data: Path, tmp_path: Path) -> None:
    assert taxifare("reset_data_sources").returncode == 0
    generated = pending_listing(data)
    r = taxifare("import_csv", str(SAMPLE))
    assert r.returncode == 2 and "already holds a generated history of 3 months" in r.stderr and "--replace" in r.stderr
    assert pending_listing(data) == generated
    assert taxifare("get_new_month").returncode == 0
    r = taxifare("import_csv", str(SAMPLE), "--replace")
    assert r.returncode == 2 and "holds 1 months" in r.stderr and pending_listing(data) == generated
    assert taxifare("reset_data_sources").returncode == 0
    r = taxifare("import_csv", str(SAMPLE), "--replace")
    assert r.returncode == 0, r.stderr
    names = {p.name for p in (data / "pending").iterdir()}
    assert "noise_floor.csv" not in names and len([n for n in names if n.endswith(".parquet")]) == 78
    assert manifest(data)["kind"] == "imported"


def test_generated_history_and_settings_must_agree(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert taxifare("reset_data_sources").returncode == 0
    m = manifest(data)
    assert (m["kind"], m["seed"], m["rows_per_month"], m["first_month"], m["last_month"]) == ("generated", 42, 200, "2012-08", "2012-10")
    assert m["months"] == {"2012-08": 200, "2012-09": 200, "2012-10": 200}
    monkeypatch.setenv("HISTORY_SEED", "7")
    with pytest.raises(history.HistoryError, match=r"HISTORY_SEED=7 but pending/ was generated with seed 42.*reset_data_sources"):
        history.ensure_history(load_settings())
    assert manifest(data)["seed"] == 42
    # reset empties the source anyway: it regenerates from the settings, and says so.
    r = taxifare("reset_data_sources")
    assert r.returncode == 0 and "HISTORY_SEED=7" in r.stderr
    assert manifest(data)["seed"] == 7 and "seed 7" in taxifare("show_data_sources").stdout


def test_month_files_without_a_manifest_are_refused_until_regenerated(data: Path) -> None:
    """A pending/ written by an older version: its origin is unknown."""
    _core.generate_history(data / "pending", first_month="2012-08", last_month="2012-10", rows_per_month=200)
    for cmd in ("show_data_sources", "get_new_month"):
        r = taxifare(cmd)
        assert r.returncode == 2 and "no manifest.json" in r.stderr and "reset_data_sources" in r.stderr, (cmd, r.stderr)
    r = taxifare("reset_data_sources")
    assert r.returncode == 0, r.stderr
    assert manifest(data)["kind"] == "generated" and taxifare("get_new_month").returncode == 0


# -- BigQuery ------------------------------------------------------------------------------


def test_bigquery_trio_stands_on_its_own(data: Path, bigquery_env: None) -> None:
    """reset_bq_tables then push_month_to_bq on a fresh LOCAL_DATA_PATH: today "no more data"."""
    assert not data.exists()
    r = taxifare("reset_bq_tables")
    assert r.returncode == 0, r.stderr
    r = taxifare("push_month_to_bq")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "2012-08 loaded: 200 rows, row_id 0..200" in r.stdout
    assert manifest(data)["kind"] == "generated"
    r = taxifare("show_bq_tables")
    assert "1 month, 200 rows in the source; 2 months pending (2012-09 … 2012-10)" in r.stdout
    assert "next month to arrive: 2012-09" in r.stdout
