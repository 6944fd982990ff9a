"""The data-validation gate (docs/validation.md): statistics of every ride month computed in
the lifecycle's one pass (`_core`, `src/kernel/profile.rs`), kept with each training run,
merged into a reference of recent trained months; a new range that differs from it the way
broken data does is refused before anything is registered."""

from taxifare_flow.validation.gate import Verdict, judge
from taxifare_flow.validation.stats import Stats

__all__ = ["Stats", "Verdict", "judge"]
