"""The ledger of a lineage: per ride month, the sufficient statistics of the rows its training
runs learnt (`_core.Ledger`; docs/architecture.md, "The ledger").

Each training run logs the ledger of its own rows as the artifact `ledger/ledger.bin`, in the
same `log_artifacts` call as its model. The ledger of a lineage is the sum of its runs'
ledgers, from the head down to the version that starts at row 0 (`parent_version` tags). Run
artifacts never change, so they are read through a local cache keyed by run id
(`LOCAL_DATA_PATH/ledger-cache`): a lifecycle writes its own run's ledger there and downloads
only what this machine has never seen (a new machine reads each run's once).
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from taxifare_flow import _core

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from taxifare_flow.ml_logic.registry import Registry
    from taxifare_flow.settings import Settings

log = logging.getLogger(__name__)

LEDGER_DIR = "ledger"
LEDGER_FILE = "ledger.bin"
#: Where a training run keeps its ledger, relative to its artifact root.
LEDGER_ARTIFACT = f"{LEDGER_DIR}/{LEDGER_FILE}"


#: Lineage ledgers this process summed, by (store, model, version, run): a replay's next head
#: is this month's version, whose parent's lineage is here, so a month adds one ledger to it
#: instead of summing every ancestor again (a walk that grew with the months).
#: Each kept with the chain it was summed over, (version, run, `parent_version`, `first_row`)
#: per link: a hit counts only while every link is still so in the registry (a version
#: deleted or re-tagged by hand since makes the walk start again, as a new process would).
LINEAGES_KEPT = 4
_Link = tuple[str, str, str, str]
_lineages: OrderedDict[tuple[str, str, str, str], tuple[_core.Ledger, tuple[_Link, ...]]] = OrderedDict()
_lineages_lock = threading.Lock()


def cache_dir(settings: Settings) -> Path:
    return settings.local_data_path / "ledger-cache"


def remember(settings: Settings, run_id: str, data: bytes) -> None:
    """Keeps a run's ledger bytes in the local cache (written whole, then renamed)."""
    d = cache_dir(settings)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{run_id}.tmp"
    tmp.write_bytes(data)
    tmp.replace(d / f"{run_id}.bin")


def run_ledger(settings: Settings, registry: Registry, run_id: str) -> _core.Ledger | None:
    """The ledger a training run logged; `None` when it logged none (trained before the
    ledger existed, or in the warehouse)."""
    from mlflow.exceptions import MlflowException

    cached = cache_dir(settings) / f"{run_id}.bin"
    if cached.is_file():
        try:
            return _core.Ledger.from_bytes(cached.read_bytes())
        except _core.ModelError:
            log.warning("the cached ledger of run %s is unreadable: read again from MLflow", run_id)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(registry.client.download_artifacts(run_id, LEDGER_ARTIFACT, tmp))
        except (MlflowException, OSError):
            return None
        data = local.read_bytes()
    ledger = _core.Ledger.from_bytes(data)
    remember(settings, run_id, data)
    return ledger


def lineage_ledger(settings: Settings, registry: Registry, head: ModelVersion) -> _core.Ledger | None:
    """The ledger of the rows behind `head`: its run's and its ancestors', down to the version
    that starts at row 0. `None` when one of them kept no ledger, or they mix feature versions
    (a backfill starts a new one): the lifecycle then continues the head alone, as before.
    Lineages summed before in this process are reused while their chain is unchanged."""
    versions = {str(v.version): v for v in registry.versions()}

    def key(v: ModelVersion) -> tuple[str, str, str, str]:
        return (settings.mlflow_tracking_uri, registry.model_name, str(v.version), str(v.run_id))

    def link(v: ModelVersion) -> _Link:
        return (str(v.version), str(v.run_id), v.tags.get("parent_version", "none"), v.tags.get("first_row", ""))

    def kept(v: ModelVersion) -> tuple[_core.Ledger, tuple[_Link, ...]] | None:
        with _lineages_lock:
            found = _lineages.get(key(v))
        if found is None or any(versions.get(n) is None or link(versions[n]) != (n, r, p, f) for n, r, p, f in found[1]):
            return None
        return found[0].copy(), found[1]

    total: _core.Ledger | None = None
    v = head
    chain: list[_Link] = []
    while True:
        summed = kept(v)
        own = summed[0] if summed is not None else run_ledger(settings, registry, v.run_id) if v.run_id else None
        if own is None:
            log.info("version %s kept no ledger: the lifecycle continues the lineage head alone", v.version)
            return None
        if total is None:
            total = own
        else:
            try:
                total.merge(own)
            except _core.ModelError:
                return None
        chain.extend(summed[1] if summed is not None else [link(v)])
        if summed is not None or v.tags.get("first_row") == "0":
            with _lineages_lock:
                _lineages[key(head)] = (total.copy(), tuple(chain))
                _lineages.move_to_end(key(head))
                while len(_lineages) > LINEAGES_KEPT:
                    _lineages.popitem(last=False)
            return total
        parent = v.tags.get("parent_version", "none")
        if parent not in versions or any(parent == n for n, *_ in chain):
            return None
        v = versions[parent]
