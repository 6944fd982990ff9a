"""The promotion policy: does the challenger replace production?

`paired` (default): on the same holdout rows, the per-row absolute errors of production minus
those of the challenger; promote when there are at least `min_rows` pairs, the mean
improvement exceeds `margin` (relative to production's MAE) and a one-sided paired z-test
says it is not chance (z > 1.645, i.e. 5 %). `margin`: promote when the challenger's MAE beats
production's by the relative margin. Without production, the challenger is promoted.

Several challengers (horizons, `horizons.py`): one is chosen on the holdout and tested, against
a z that shares the 5 % among them (a weighted Bonferroni, `decide_horizons`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np

Z_95 = 1.645
#: The one-sided level of the paired test, shared among the challengers compared.
ALPHA = 0.05


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    pairs: int
    challenger_mae: float
    production_mae: float | None
    mean_improvement: float | None = None
    z: float | None = None
    #: The horizon of the challenger decided on (`horizons.HORIZONS`), and how many were compared.
    horizon: str | None = None
    compared: int = 1

    @property
    def label(self) -> str:
        return "promote" if self.promote else "keep"


@dataclass(frozen=True)
class Paired:
    """What the policy needs of the per-row absolute errors of two models on the same rows:
    their number and sums. The local pass sums its per-row errors; the warehouse sums them in
    SQL and sends only these."""

    n: int
    challenger_sum: float
    #: `None` without production.
    production_sum: float | None
    #: Σd and Σd² of d = production's error − the challenger's, row by row.
    diff_sum: float = 0.0
    diff_sq_sum: float = 0.0

    @classmethod
    def of(cls, challenger_errors: np.ndarray, production_errors: np.ndarray | None) -> Paired:
        c = np.asarray(challenger_errors, dtype=np.float64)
        if production_errors is None:
            return cls(len(c), float(c.sum()), None)
        p = np.asarray(production_errors, dtype=np.float64)
        if len(p) != len(c):
            raise ValueError(f"paired errors differ in length: {len(c)} vs {len(p)}")
        d = p - c
        # Not `d @ d`: a BLAS dot wakes OpenBLAS's thread pool, whose threads then spin on the
        # cores the next Rust pass needs (a `run_flow` on a 700,000-row month took 1.13 s, 0.97 s
        # without it on 2 cores).
        return cls(len(c), float(c.sum()), float(p.sum()), float(d.sum()), float(np.square(d).sum()))


def decide(
    challenger_errors: np.ndarray,
    production_errors: np.ndarray | None,
    policy: str = "paired",
    margin: float = 0.0,
    min_rows: int = 200,
) -> Decision:
    """Decides on per-row absolute errors of the two models over the same rows."""
    return decide_paired(Paired.of(challenger_errors, production_errors), policy, margin, min_rows)


def decide_paired(paired: Paired, policy: str = "paired", margin: float = 0.0, min_rows: int = 200,
                  z_needed: float = Z_95) -> Decision:
    """Decides on the sums of the per-row absolute errors of the two models; the paired test
    asks for z > `z_needed`."""
    n = paired.n
    chal_mae = paired.challenger_sum / n if n else math.nan
    if paired.production_sum is None:
        return Decision(n > 0, "no production model yet" if n else "no holdout rows", n, chal_mae, None)
    prod_mae = paired.production_sum / n if n else math.nan
    if n == 0:
        return Decision(False, "no holdout rows to compare on", 0, chal_mae, prod_mae)
    mean = paired.diff_sum / n
    needed = margin * prod_mae
    if policy == "margin":
        ok = mean > needed
        why = f"MAE {chal_mae:.4f} vs {prod_mae:.4f} (margin {margin:.1%})"
        return Decision(ok, why, n, chal_mae, prod_mae, mean)
    # The sample variance from the two sums (ddof = 1); clipped at 0 against rounding.
    sd = math.sqrt(max(paired.diff_sq_sum - n * mean * mean, 0.0) / (n - 1)) if n > 1 else 0.0
    z = mean / (sd / math.sqrt(n)) if sd > 0 else (math.inf if mean > 0 else 0.0)
    if n < min_rows:
        return Decision(False, f"only {n} paired rows (< {min_rows})", n, chal_mae, prod_mae, mean, z)
    ok = mean > needed and z > z_needed
    why = f"mean improvement {mean:.4f} (needs > {needed:.4f}), z={z:.2f} (needs > {z_needed:.4g})"
    return Decision(ok, why, n, chal_mae, prod_mae, mean, z)


#: The share of `ALPHA` the widest challenger (the lineage's own, `all`) keeps when several are
#: compared; the narrower ones share the rest.
WIDEST_SHARE = 0.8


def bonferroni_z(k: int) -> float:
    """The one-sided z a challenger must beat when one of `k` is tested with `ALPHA` shared
    equally among them (Bonferroni). One challenger: 1.645, as before."""
    return Z_95 if k <= 1 else NormalDist().inv_cdf(1 - ALPHA / k)


def horizon_levels(names: list[str]) -> dict[str, float]:
    """The z each of several challengers (widest first) must beat: a weighted Bonferroni. The
    widest keeps `WIDEST_SHARE` of the 5 % (z > 1.751), the narrower ones share the rest (z >
    2.713 for three): the chance of promoting one that is no better than production, whichever
    it is, stays ≤ 5 % (Σ levels ≤ 5 %). Why unequal: in a stable city the widest is the one
    that wins, by a little (the known 2012-09 rate change: z = 2.15); a window wins only after
    a change, and then by far (z > 10 in 2014-01 of the unannounced history), so its stricter
    level costs nothing where it matters and keeps the noise of stable months out."""
    if len(names) <= 1:
        return {n: Z_95 for n in names}
    rest = ALPHA * (1 - WIDEST_SHARE) / (len(names) - 1)
    return {n: NormalDist().inv_cdf(1 - (ALPHA * WIDEST_SHARE if i == 0 else rest)) for i, n in enumerate(names)}


def paired_z(challenger_errors: np.ndarray, reference_errors: np.ndarray) -> float:
    """The paired z of a challenger against a reference on the same rows (> 0: it is better)."""
    d = np.asarray(reference_errors, dtype=np.float64) - np.asarray(challenger_errors, dtype=np.float64)
    n = len(d)
    if n < 2:
        return 0.0
    sd = float(d.std(ddof=1))
    mean = float(d.mean())
    return mean / (sd / math.sqrt(n)) if sd > 0 else (math.inf if mean > 0 else 0.0)


def choose_horizon(errors: dict[str, np.ndarray], z_needed: float = Z_95) -> str:
    """The horizon to put against production, from the per-row holdout errors of each (widest
    first). The widest is the default: a narrower one replaces the current choice only when it
    beats it on the same rows by the paired test (z > `z_needed`). The choice needs no
    multiple-comparison level of its own: a promotion still needs the test against production
    at the chosen one's level (`decide_horizons`). Taking the lowest MAE
    instead picks, in a stable city, whichever window the holdout's noise favours: windows
    have fewer rows, so their errors vary more, and the minimum of noisy estimates favours
    them (on the plain history that cost 1 % of prequential MAE over 2010–2013)."""
    names = list(errors)
    chosen = names[0]
    for name in names[1:]:
        if paired_z(errors[name], errors[chosen]) > z_needed:
            chosen = name
    return chosen


def decide_horizons(candidates: dict[str, Paired], policy: str = "paired", margin: float = 0.0,
                    min_rows: int = 200, errors: dict[str, np.ndarray] | None = None) -> Decision:
    """Decides between production and one of several challengers (horizons, widest first),
    scored on the same holdout rows. With the per-row `errors`, the challenger put against
    production is `choose_horizon`'s; without (sums only), the lowest holdout MAE (a tie goes
    to the widest). The paired test then asks it for z above its level (`horizon_levels`, a
    weighted Bonferroni over the `k` compared): the chosen one passes only if its own test at
    its level passes, and the chance that any of the `k` passes by chance is at most 5 %,
    however it was chosen."""
    if not candidates:
        raise ValueError("no challenger to decide on")
    levels = horizon_levels(list(candidates))
    if errors is not None and len(errors) == len(candidates):
        name = choose_horizon(errors)
    else:
        name = min(candidates, key=lambda n: candidates[n].challenger_sum)
    decision = decide_paired(candidates[name], policy, margin, min_rows, z_needed=levels[name])
    widest = next(iter(candidates))
    if not decision.promote and name != widest:
        # The chosen window failed its stricter level: the widest may still pass its own (any
        # promotion is one test passing at its level, so the 5 % bound holds).
        fallback = decide_paired(candidates[widest], policy, margin, min_rows, z_needed=levels[widest])
        if fallback.promote:
            return replace(fallback, horizon=widest, compared=len(candidates))
    return replace(decision, horizon=name, compared=len(candidates))
