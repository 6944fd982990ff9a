"""Counting MLflow client calls, for the call budget of a lifecycle (docs/architecture.md,
"The MLflow call budget").

`count_mlflow_calls()` wraps every public method of `mlflow.MlflowClient`, and the fluent
functions that reach a store without going through a client the package holds
(`mlflow.artifacts.download_artifacts`, `mlflow.pyfunc.load_model`, `mlflow.pyfunc.log_model`,
`mlflow.log_*`), with a depth counter: only the outermost call is counted, so a client method
that calls another, or a fluent call that goes through a client, counts once. A fluent call
counts as one call (whatever it does inside). The package itself has no hook: this patches the
classes for the duration of the block, in the test process only.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

#: Fluent functions counted as one call each: module path → function names.
FLUENT = {
    "mlflow.artifacts": ("download_artifacts", "load_text", "load_dict"),
    "mlflow.pyfunc": ("load_model", "log_model"),
    "mlflow": ("log_param", "log_params", "log_metric", "log_metrics", "set_tag", "set_tags", "log_artifact",
               "log_artifacts", "start_run", "end_run", "search_runs", "get_run"),
}


@dataclass
class Calls:
    """The outermost calls made while counting: method name → how many."""

    by_method: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def total(self) -> int:
        return sum(self.by_method.values())

    def add(self, name: str) -> None:
        with self._lock:
            self.by_method[name] += 1

    def reset(self) -> Calls:
        """What was counted so far (a copy); the counter starts again from zero."""
        with self._lock:
            seen = Calls(Counter(self.by_method))
            self.by_method.clear()
            return seen

    def __str__(self) -> str:
        return f"{self.total} calls: " + ", ".join(f"{k} ×{v}" for k, v in self.by_method.most_common())


@contextmanager
def count_mlflow_calls() -> Iterator[Calls]:
    """Counts the outermost MLflow client calls made inside the block (any thread)."""
    import importlib

    from mlflow import MlflowClient

    calls = Calls()
    depth = threading.local()

    def counted(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            level = getattr(depth, "n", 0)
            if level == 0:
                calls.add(name)
            depth.n = level + 1
            try:
                return fn(*args, **kwargs)
            finally:
                depth.n = level
        return wrapper

    saved: list[tuple[Any, str, Any]] = []
    for name in dir(MlflowClient):
        if name.startswith("_"):
            continue
        attr = inspect.getattr_static(MlflowClient, name)
        if inspect.isfunction(attr):
            saved.append((MlflowClient, name, attr))
            setattr(MlflowClient, name, counted(name, attr))
    for module_name, names in FLUENT.items():
        module = importlib.import_module(module_name)
        for name in names:
            fn = getattr(module, name, None)
            if fn is None:
                continue
            saved.append((module, name, fn))
            setattr(module, name, counted(f"{module_name}.{name}", fn))
    try:
        yield calls
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


#: The call budget of a lifecycle that trains (docs/architecture.md, "The MLflow call budget").
BUDGET = 12
#: What a process asks once, the first time it opens the experiment (not a lifecycle's cost).
ONCE_PER_PROCESS = frozenset({"get_experiment_by_name", "create_experiment"})


def lifecycles_within_budget(settings: Any, months: int) -> list[Calls]:
    """`months` months arrive one by one, each followed by a lifecycle that trains and one
    that finds nothing to do, counted; asserts the budget and returns the training
    lifecycles' counts. The source must be reset and empty, the process may be fresh."""
    from taxifare_flow.data.local import LocalSource
    from taxifare_flow.flow.lifecycle import run_lifecycle

    source = LocalSource(settings)
    counted: list[Calls] = []
    with count_mlflow_calls() as calls:
        for month in range(months):
            assert source.bring_next_month() is not None
            outcome = run_lifecycle(settings)
            trained = calls.reset()
            assert outcome.status == "trained"
            counted.append(trained)
            once = {k: v for k, v in trained.by_method.items() if k in ONCE_PER_PROCESS}
            assert month == 0 or not once, f"month {month + 1} asked the experiment again: {trained}"
            assert trained.total - sum(once.values()) <= BUDGET, f"month {month + 1} ({outcome.decision}): {trained}"
            assert run_lifecycle(settings).status == "nothing to do"
            empty = calls.reset()
            assert empty.total == 0, f"a lifecycle with nothing to do made MLflow calls: {empty}"
    return counted
