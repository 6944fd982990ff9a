"""The shapes of the dicts the Rust core (`taxifare_flow._core`) returns, for type checkers
and readers; `_core.pyi` names them. Importing this module costs nothing (no numpy)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NotRequired, Protocol, TypedDict, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from taxifare_flow._core import Ledger


@runtime_checkable
class ArrowArray(Protocol):
    """Exports an Arrow array or record batch through the Arrow C data interface."""

    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]: ...


@runtime_checkable
class ArrowStream(Protocol):
    """Exports an Arrow stream (a table, a reader) through the Arrow C stream interface."""

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...


#: Any Arrow data the core reads: pyarrow, polars, pandas ≥ 2.2, … through the C interfaces.
ArrowData = ArrowArray | ArrowStream

#: Cleaning counts of a slice: `raw`, `kept`, and the rows dropped by each reason.
CleaningCounts = dict[str, int]


class Evaluation(TypedDict):
    """Scores of a model on labelled rides (`Model.evaluate`)."""

    n: int
    mae: float
    rmse: float
    r2: float
    cleaning: CleaningCounts
    #: Per-row absolute errors in row order, when `return_errors` was asked.
    abs_errors: NotRequired[NDArray[np.float64]]


class GeneratedMonth(TypedDict):
    """One month of `generate_history`."""

    month: str
    rows: int
    #: False when an existing file was kept (then no statistics).
    generated: bool
    clean_rows: NotRequired[int]
    noise_floor_mae: NotRequired[float]


class ImportSummary(TypedDict):
    """What `import_kaggle_csv` read and wrote: the provenance of an imported history."""

    months: list[tuple[str, int]]
    rows_read: int
    skipped: dict[str, int]
    malformed_values: dict[str, int]
    has_key: bool
    bytes: int
    sha256: str


class MonthFile(TypedDict):
    """A month file of the source (`source_files`, `append_month`)."""

    month: str
    first_row: int
    end_row: int
    rows: int
    path: Path
    bytes: int


class Scores(TypedDict):
    """MAE, RMSE and R² of a model over the clean rows it was scored on."""

    n: int
    mae: float
    rmse: float
    r2: float


class HoldoutSums(TypedDict):
    """The challenger and production on the clean holdout rows, summed in the warehouse
    (`warehouse_paired`): the fields of `promotion.Paired`. `challenger_sum`,
    `production_sum`: Σ|e| (`None` without production); `diff_*`: Σd and Σd² of d =
    production's absolute error − the challenger's."""

    n: int
    challenger_sum: float
    production_sum: float | None
    diff_sum: float
    diff_sq_sum: float


class PassCounts(TypedDict):
    """What every pass over `[w, t)` reports, wherever it ran (the local pass, the warehouse's
    statistics query): the keys `PassResult` and `WarehousePart` share, stated once."""

    #: Cleaning of `[w, t)`, one state across the range.
    cleaning: CleaningCounts
    #: Clean rows of `[w, h)` and of the holdout `[h, t)`.
    train_kept: int
    holdout_kept: int
    #: Production and the frozen model on `[w, t)`; `None` without such a model.
    production: Scores | None
    frozen: Scores | None
    #: The lineage hash of the raw rows.
    lineage_hash: str
    #: The data-validation statistics of the raw rows, per ride month.
    profile: list[MonthProfile]


class WarehousePart(PassCounts):
    """What the warehouse's statistics query gave (`warehouse_absorb`)."""

    #: Result rows received.
    numbers: int


class PassResult(PassCounts):
    """What one lifecycle pass over `[w, t)` found (`lifecycle_pass`, `lifecycle_pass_source`)."""

    #: Rows read: each row of the range once.
    rows: int
    #: Absolute errors on the clean holdout rows, in row order: the challenger's (trained on
    #: `[w, h)`; `None` when that left it without rows) and production's.
    holdout_challenger_errors: NotRequired[NDArray[np.float64] | None]
    holdout_production_errors: NotRequired[NDArray[np.float64] | None]
    #: The other challengers' (horizons') errors on the same rows, in the order given (`None`
    #: for one without rows before the holdout); local passes only.
    holdout_horizon_errors: NotRequired[list[NDArray[np.float64] | None]]
    #: The statistics of the clean rows of `[w, t)` per ride month; local passes only.
    ledger: NotRequired[Ledger | None]
    #: The same comparison as sums (`promotion.Paired`), when the pass ran in the warehouse.
    holdout_paired: NotRequired[HoldoutSums | None]
    #: Numbers that came back from the warehouse, and the bytes its dry runs announced
    #: (warehouse passes only).
    warehouse_result_rows: NotRequired[int]
    warehouse_bytes_billed_estimate: NotRequired[int]


class FieldProfile(TypedDict):
    """One field's statistics over raw rows: fixed bins (`lo`, `width`, `bins`; index 0 is the
    underflow, `bins + 1` the overflow), sparse `[bin, count]` pairs, count of finite values,
    NaN/nulls, zeros and sum."""

    count: int
    nan: int
    zeros: int
    sum: float
    lo: float
    width: float
    bins: int
    hist: list[tuple[int, int]]


class MonthProfile(TypedDict):
    """The data-validation statistics of one ride month's raw rows (`month` is `None` for rows
    without a pickup time): rows, rows kept, drops per cleaning reason, fields."""

    month: str | None
    raw: int
    kept: int
    drops: dict[str, int]
    fields: dict[str, FieldProfile]


class ProfileResult(TypedDict):
    """`profile_rows` / `profile_source_rows`: the statistics alone, nothing trained."""

    cleaning: CleaningCounts
    profile: list[MonthProfile]
