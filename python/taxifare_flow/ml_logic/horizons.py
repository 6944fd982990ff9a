"""Challengers over several horizons, composed from the lineage's ledger (issue 22).

A lifecycle does not only continue the lineage: it composes, from the ledger of the months
already learnt, one challenger per horizon, and the pass gives each the new month's statistics
(computed once), scores each on the same holdout rows, and ends each trained on all the new
rows. The horizons (`HORIZONS`):

- `all`: every month, weighted as the lineage is (`HALF_LIFE_MONTHS`; exact by default): what
  a lifecycle trained before the ledger. In a stable city it has the most rows and wins.
- `12m`: the twelve months before the new one. A year is the shortest window that still holds
  every season (the fares of the generated history and of Kaggle's have a yearly rhythm), so
  it follows a slow drift without learning one season's mix as a rule.
- `3m` and `1m`: the last three months and the last month. After a change nobody announced,
  the month after it is all new fares: `1m` (that month plus the new month's first 85 %) learns
  only the new rules; `3m` is the compromise with three times the rows.

Windows, not half-lives: a window forgets a change completely once it is past, which is what a
fare change needs, and a window of `k` months is exactly the exact model of those months (a
half-life keeps a tail of the old fares for ever). A window equal to `all` (a lineage shorter
than the window) is not composed: it would be the same model counted twice in the comparison.

The choice between them and production is `promotion.decide_horizons`.
"""

from __future__ import annotations

from taxifare_flow import _core
from taxifare_flow.model import Model

#: The horizons, widest first (a tie goes to the wider).
HORIZONS: tuple[tuple[str, int | None], ...] = (("all", None), ("12m", 12), ("3m", 3), ("1m", 1))

#: Version tags of a model that holds only part of its lineage: of the rows before row
#: `window_row`, only those whose ride month is `window_since` or later (all rows from
#: `window_row` on). A window challenger registered at row `w` gets them, and a version that
#: continues such a head alone (its lineage kept no full ledger, e.g. after an unlearn)
#: inherits them: `taxifare unlearn` reads them to subtract only the rows the head holds.
WINDOW_SINCE_TAG = "window_since"
WINDOW_ROW_TAG = "window_row"


def month_minus(month: str, k: int) -> str:
    year, m = (int(x) for x in month.split("-"))
    i = year * 12 + m - 1 - k
    return f"{i // 12:04d}-{i % 12 + 1:02d}"


def since(name: str, new_month: str) -> str | None:
    """The first month a horizon's window holds at `new_month` (`None` for `all`)."""
    k = dict(HORIZONS).get(name)
    return None if k is None else month_minus(new_month, k)


def compose(ledger: _core.Ledger, new_month: str, ridge_alpha: float, half_life_months: float) -> dict[str, Model]:
    """The challengers before the new rows, by horizon name, widest first. A window of `k`
    months holds the ledger's months from `k` months before `new_month` on."""
    months = [m for m, _ in ledger.rows()]
    out = {"all": Model(_core_model=ledger.compose(ridge_alpha, half_life_months))}
    for name, k in HORIZONS[1:]:
        assert k is not None
        since = month_minus(new_month, k)
        if not months or (since <= months[0] and half_life_months == float("inf")):
            continue  # the same rows as `all`
        out[name] = Model(_core_model=ledger.compose(ridge_alpha, since=since, clock=ledger.last_month))
    return out
