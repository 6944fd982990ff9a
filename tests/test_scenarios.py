"""History scenarios (`HISTORY_SCENARIO`): the plain history is today's, bit for bit; the
`unannounced` scenario changes only fares, only from its documented dates, and is part of the
history's provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from taxifare_flow import _core
from taxifare_flow.data.history import HistoryError, ensure_history, read_manifest
from taxifare_flow.settings import HISTORY_SCENARIOS, load_settings

ROOT = Path(__file__).resolve().parents[1]

#: `hash_rows` of months generated before scenarios existed (seed 42, 3,000 rows).
PLAIN_MONTHS = {
    "2010-06": "703a9fed1ce266f8fd0bb2785c7ca0ad",
    "2014-01": "916bdc9e93a3b208506b5c4f56daaa33",
    "2014-09": "960ae3d20ca8c843c5132fe53fa969ba",
}
#: The pending history (seed 42, 2013-12 … 2014-01, 1,500 rows a month) before scenarios existed.
PLAIN_PENDING = {"2013-12": "8d26e1ce1b2504807e360c6e57b08a11", "2014-01": "795744724a6066318f17a68e1e324c30"}
PLAIN_NOISE_FLOOR = """month,rows,clean_rows,noise_floor_mae,noise_floor_rmse
2013-12,1500,1460,1.370910,2.376882
2014-01,1500,1467,1.348405,2.360818
"""


def test_the_scenarios_are_the_settings_choices() -> None:
    assert tuple(_core.history_scenarios()) == HISTORY_SCENARIOS
    assert _core.scenario_changes("plain") == []
    starts = [c["start"] for c in _core.scenario_changes("unannounced")]
    assert starts == ["2010-01-01", "2014-01-01", "2014-09-01"]
    doc = (ROOT / "docs" / "scenarios.md").read_text()
    assert all(s in doc for s in starts)
    with pytest.raises(ValueError, match="unknown history scenario"):
        _core.scenario_changes("surprise")


@pytest.mark.parametrize("month", sorted(PLAIN_MONTHS))
def test_the_plain_history_is_todays_bit_for_bit(month: str) -> None:
    assert _core.hash_rows(_core.generate_month(month, 3000, seed=42)) == PLAIN_MONTHS[month]
    assert _core.hash_rows(_core.generate_month(month, 3000, seed=42, scenario="plain")) == PLAIN_MONTHS[month]


def test_the_plain_pending_history_and_its_noise_floor_are_todays(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_DATA_PATH", str(clean_env / "data"))
    monkeypatch.setenv("HISTORY_FIRST_MONTH", "2013-12")
    monkeypatch.setenv("HISTORY_LAST_MONTH", "2014-01")
    monkeypatch.setenv("HISTORY_ROWS_PER_MONTH", "1500")
    s = load_settings()
    made = ensure_history(s)
    assert made.history_scenario == "plain"
    for month, digest in PLAIN_PENDING.items():
        assert _core.hash_rows(pq.read_table(s.pending_dir / f"{month}.parquet")) == digest
    assert (s.pending_dir / "noise_floor.csv").read_text() == PLAIN_NOISE_FLOOR
    assert json.loads((s.pending_dir / "manifest.json").read_text())["scenario"] == "plain"


def test_unannounced_changes_only_fares_and_only_after_its_dates() -> None:
    def month(m: str, scenario: str) -> dict[str, list[object]]:
        return _core.generate_month(m, 2000, seed=42, with_expected=True, scenario=scenario).read_all().to_pydict()

    # 2009: before every change, the same rows.
    assert _core.hash_rows(_core.generate_month("2009-07", 2000, seed=42, scenario="unannounced")) == \
        _core.hash_rows(_core.generate_month("2009-07", 2000, seed=42))
    for m, factor in (("2013-06", 1.06), ("2014-03", 1.06 * 1.10)):
        plain, changed = month(m, "plain"), month(m, "unannounced")
        assert plain["key"] == changed["key"] and plain["pickup_latitude"] == changed["pickup_latitude"]
        add = 2.0 if m >= "2014" else 0.0
        for a, b in zip(plain["expected_fare"], changed["expected_fare"], strict=True):
            assert isinstance(a, float) and isinstance(b, float)
            assert b == pytest.approx(a * factor + add, abs=1e-9)
    # The September 2014 surcharge: some rides pay $2.50 more than the fare change alone.
    plain, changed = month("2014-09", "plain"), month("2014-09", "unannounced")
    extra = [b - (a * 1.06 * 1.10 + 2.0) for a, b in zip(plain["expected_fare"], changed["expected_fare"], strict=True)
             if isinstance(a, float) and isinstance(b, float)]
    surcharged = sum(abs(e - 2.5) < 1e-9 for e in extra)
    assert surcharged + sum(abs(e) < 1e-9 for e in extra) == len(extra)
    assert 0.5 * len(extra) < surcharged < len(extra)


def test_the_scenario_is_part_of_the_provenance(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_DATA_PATH", str(clean_env / "data"))
    monkeypatch.setenv("HISTORY_FIRST_MONTH", "2013-12")
    monkeypatch.setenv("HISTORY_LAST_MONTH", "2014-01")
    monkeypatch.setenv("HISTORY_ROWS_PER_MONTH", "500")
    monkeypatch.setenv("HISTORY_SCENARIO", "unannounced")
    s = load_settings()
    made = ensure_history(s)
    manifest = read_manifest(s.pending_dir)
    assert manifest is not None and manifest.history_scenario == "unannounced" == made.history_scenario
    assert "scenario unannounced" in made.describe()[0]
    jan = pq.read_table(s.pending_dir / "2014-01.parquet")
    plain_jan = _core.generate_month("2014-01", 500, seed=42).read_all()
    assert pc.sum(jan["fare_amount"]).as_py() > pc.sum(plain_jan["fare_amount"]).as_py() * 1.1
    # Continuing it under another scenario is refused, naming the setting; regenerating works.
    monkeypatch.setenv("HISTORY_SCENARIO", "plain")
    with pytest.raises(HistoryError, match="HISTORY_SCENARIO=plain but pending/ was generated with scenario unannounced"):
        ensure_history(load_settings())
    assert ensure_history(load_settings(), regenerate=True).history_scenario == "plain"
    # A manifest written before scenarios existed is a plain history.
    path = s.pending_dir / "manifest.json"
    raw = json.loads(path.read_text())
    del raw["scenario"]
    path.write_text(json.dumps(raw))
    assert ensure_history(load_settings()).history_scenario == "plain"
