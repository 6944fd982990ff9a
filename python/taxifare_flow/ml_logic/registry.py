"""MLflow tracking and registry glue: one run per training, the kernel as a pyfunc model,
promotion by aliases (`production`, `challenger`), never by the deprecated stages."""

from __future__ import annotations

import logging
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from taxifare_flow import __version__
from taxifare_flow.errors import LineageError, RegistryError, TrackingStoreError
from taxifare_flow.model import Model
from taxifare_flow.settings import Settings

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

PRODUCTION = "production"
CHALLENGER = "challenger"
#: The version tag that records when `production` last moved to the version (UTC, ISO 8601).
PROMOTED_AT = "production_at"
#: Runs that register a model (param `context`): a lifecycle's, `taxifare backfill`'s and
#: `taxifare unlearn`'s (left RUNNING by a killed process, they are marked KILLED alike).
TRAINING_CONTEXTS = ("train", "backfill", "unlearn")
#: Registered-model tags naming the experiment whose lineage the model is (set at creation).
OWNER_TAG = "owner_experiment_id"
OWNER_NAME_TAG = "owner_experiment"
KERNEL_FILE = "model.txfm"
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
# Explicit requirements: inferring them spawns a subprocess and costs ~1.5 s per model.
PIP_REQUIREMENTS = [f"taxifare-flow=={__version__}", "pandas", "pyarrow", "mlflow==3.17.2"]
#: Kernel bytes kept in the process, by version (a version's artifacts never change): the
#: lineage head, production and the frozen root are read once per process, not once a month.
KERNEL_CACHE_SIZE = 8
_kernel_cache: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
_kernel_cache_lock = threading.Lock()
#: Experiment ids by (tracking URI, name): an experiment's id never changes.
_experiment_ids: dict[tuple[str, str], str] = {}


def _cache_kernel(key: tuple[str, str, str], data: bytes) -> None:
    with _kernel_cache_lock:
        _kernel_cache[key] = data
        _kernel_cache.move_to_end(key)
        while len(_kernel_cache) > KERNEL_CACHE_SIZE:
            _kernel_cache.popitem(last=False)


def _cached_kernel(key: tuple[str, str, str]) -> bytes | None:
    with _kernel_cache_lock:
        data = _kernel_cache.get(key)
        if data is not None:
            _kernel_cache.move_to_end(key)
        return data


@dataclass
class Snapshot:
    """The registry and the experiment's runs as read once, under the lifecycle lock, and kept
    up to date by this process's own writes (docs/architecture.md, "The MLflow call budget")."""

    #: Every run of the experiment, active and deleted, by id.
    runs: dict[str, Run]
    #: (status, lifecycle stage) written or read since, by run id: overrides `runs`.
    states: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: The registered model's tags, `None` when it does not exist.
    model_tags: dict[str, str] | None = None
    #: alias → version.
    aliases: dict[str, str] = field(default_factory=dict)
    #: Every version of the model, oldest first.
    versions: list[ModelVersion] = field(default_factory=list)
    #: Runs of other experiments looked up since: run id → experiment id (None: gone for good).
    foreign: dict[str, str | None] = field(default_factory=dict)


@dataclass
class Registry:
    """An MLflow client bound to the experiment and registered model of the settings.

    Outside `pinned()`, every read asks MLflow. Inside it (a lifecycle, a backfill, `check`),
    reads answer from one `Snapshot` taken when the block starts, and the writes made through
    this object update it: the lifecycle reads the registry once, not once per question."""

    settings: Settings
    client: MlflowClient
    experiment_id: str
    snapshot: Snapshot | None = None

    @property
    def model_name(self) -> str:
        return self.settings.mlflow_model_name

    # -- the snapshot -------------------------------------------------------------------------

    def read_snapshot(self) -> Snapshot:
        """Every run of the experiment, the registered model with its tags and aliases, and its
        versions: by SQL from a database store (`snapshot_sql`: the same entities in a tenth of
        the time, no MLflow call), else through the client."""
        from sqlalchemy.exc import SQLAlchemyError

        from taxifare_flow.ml_logic import snapshot_sql

        if snapshot_sql.reads_by_sql(self.settings.mlflow_tracking_uri):
            try:
                return self.read_snapshot_by_sql()
            except SQLAlchemyError as e:  # MLflow's own read then says what is wrong, as it says it
                log.info("the registry snapshot by SQL failed (%s): read through MLflow", type(e).__name__)
        return self.read_snapshot_by_client()

    def read_snapshot_by_sql(self) -> Snapshot:
        from taxifare_flow.ml_logic import snapshot_sql

        uri = self.settings.mlflow_tracking_uri
        snap = Snapshot({r.info.run_id: r for r in snapshot_sql.read_runs(uri, self.experiment_id)})
        found = snapshot_sql.read_model(uri, self.model_name)
        if found is not None:
            snap.model_tags, snap.aliases, snap.versions = found
        return snap

    def read_snapshot_by_client(self) -> Snapshot:
        """Every run of the experiment (one search), the registered model with its tags and
        aliases (one read by name), and its versions (one search, skipped when there is no model)."""
        from mlflow.entities import ViewType
        from mlflow.exceptions import MlflowException

        runs = self.client.search_runs([self.experiment_id], "", run_view_type=ViewType.ALL, max_results=50_000)
        snap = Snapshot({r.info.run_id: r for r in runs})
        # By name (a third of a name search's time: the search also reads every model's latest
        # versions); a model that does not exist yet is an error here, as a search finding none.
        model: RegisteredModel | None
        try:
            model = self.client.get_registered_model(self.model_name)
        except MlflowException:
            model = None
        if model is not None:
            snap.model_tags = dict(model.tags)
            snap.aliases = {a: str(v) for a, v in (model.aliases or {}).items()}
            snap.versions = self._search_versions(f"name = '{self.model_name}'")
        return snap

    @contextmanager
    def pinned(self) -> Iterator[Snapshot]:
        """Reads answer from one snapshot inside the block (see the class)."""
        outer = self.snapshot
        self.snapshot = self.read_snapshot()
        try:
            yield self.snapshot
        finally:
            self.snapshot = outer

    def refresh(self) -> None:
        """Reads the snapshot again (after repairs, which change what they touch in ways not
        worth mirroring)."""
        if self.snapshot is not None:
            self.snapshot = self.read_snapshot()

    def _search_versions(self, query: str) -> list[ModelVersion]:
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_model_versions(query, max_results=10_000)
        except MlflowException:
            return []
        return sorted(found, key=lambda v: int(v.version))

    def _version(self, number: str) -> ModelVersion | None:
        assert self.snapshot is not None
        return next((v for v in self.snapshot.versions if str(v.version) == number), None)

    # -- reads --------------------------------------------------------------------------------

    def version_by_alias(self, alias: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        if self.snapshot is not None:
            number = self.snapshot.aliases.get(alias)
            return self._version(number) if number is not None else None
        try:
            return self.client.get_model_version_by_alias(self.model_name, alias)
        except MlflowException:
            return None

    def versions(self, tags: dict[str, str] | None = None) -> list[ModelVersion]:
        """Versions of the model (with these tag values), oldest first. The tag filter runs in
        the store, so finding the lineage head costs the same in month 70 as in month 2."""
        if self.snapshot is not None:
            return [v for v in self.snapshot.versions if all(v.tags.get(k) == val for k, val in (tags or {}).items())]
        query = f"name = '{self.model_name}'" + "".join(f" and tags.{k} = '{v}'" for k, v in (tags or {}).items())
        return self._search_versions(query)

    def _run_status(self, run_id: str) -> tuple[str, str] | None:
        """(status, lifecycle stage) of a run; `None` when it is gone for good."""
        from mlflow.exceptions import MlflowException

        snap = self.snapshot
        if snap is not None:
            if run_id in snap.states:
                return snap.states[run_id]
            if run_id in snap.runs:
                info = snap.runs[run_id].info
                return info.status, info.lifecycle_stage
        try:
            info = self.client.get_run(run_id).info
        except MlflowException:
            found = None
        else:
            found = (info.status, info.lifecycle_stage)
        if snap is not None:  # another experiment's run, or gone: asked once per snapshot
            snap.states[run_id] = found if found is not None else ("", "deleted for good")
        return found

    def run_state(self, run_id: str | None) -> str:
        """`valid` for a FINISHED, active run; otherwise why not (`deleted`, `FAILED`, …)."""
        if not run_id:
            return "no run"
        found = self._run_status(run_id)
        if found is None or found[1] == "deleted for good":
            return "deleted for good"
        status, stage = found
        if stage != "active":
            return "deleted"
        return "valid" if status == "FINISHED" else status

    def is_valid(self, version: ModelVersion) -> bool:
        """A version counts only while its training run is FINISHED and active: a crashed run's
        version, or one whose run was deleted or failed after the fact, is retracted."""
        return self.run_state(version.run_id) == "valid"

    def _finished(self, versions: list[ModelVersion]) -> list[ModelVersion]:
        return [v for v in versions if self.is_valid(v)]

    def head_for(self, watermark: int) -> ModelVersion | None:
        """The version that ends at `watermark`: the lineage head to continue from."""
        if watermark == 0:
            return None
        heads = self._finished(self.versions({"end_row": str(watermark)}))
        return heads[-1] if heads else None

    def root(self) -> ModelVersion | None:
        """The first model ever trained (the frozen baseline)."""
        roots = self._finished(self.versions({"first_row": "0"}))
        return roots[0] if roots else None

    def _snapshot_runs(self, status: str | None) -> list[Run]:
        """Active runs of the snapshot with this status (as written since), newest first."""
        assert self.snapshot is not None
        found = []
        for run_id, run in self.snapshot.runs.items():
            state = self.run_state_pair(run_id)
            if state[1] == "active" and (status is None or state[0] == status):
                found.append(run)
        return sorted(found, key=lambda r: -(r.info.start_time or 0))

    def run_state_pair(self, run_id: str) -> tuple[str, str]:
        found = self._run_status(run_id)
        return found if found is not None else ("", "deleted for good")

    def training_runs(self) -> list[Run]:
        """FINISHED, active training runs of the experiment: the ones the watermark counts
        (newest first inside `pinned()`)."""
        return self.finished_runs("train")

    def finished_runs(self, context: str) -> list[Run]:
        """FINISHED, active runs of the experiment with this `context` param (newest first
        inside `pinned()`)."""
        if self.snapshot is not None:
            return [r for r in self._snapshot_runs("FINISHED") if r.data.params.get("context") == context]
        return list(self.client.search_runs(
            [self.experiment_id], f"params.context = '{context}' and attributes.status = 'FINISHED'", max_results=50_000,
        ))

    def deleted_runs(self, context: str) -> list[Run]:
        """Deleted runs of the experiment with this `context` param."""
        from mlflow.entities import ViewType

        if self.snapshot is not None:
            return [r for i, r in self.snapshot.runs.items()
                    if self.run_state_pair(i)[1] == "deleted" and r.data.params.get("context") == context]
        return list(self.client.search_runs([self.experiment_id], f"params.context = '{context}'",
                                            run_view_type=ViewType.DELETED_ONLY, max_results=50_000))

    def running_runs(self) -> list[Run]:
        """RUNNING runs that train (a lifecycle's, or a backfill's): under the lifecycle lock,
        what a killed process left."""
        if self.snapshot is not None:
            running = self._snapshot_runs("RUNNING")
        else:
            running = self.client.search_runs([self.experiment_id], "attributes.status = 'RUNNING'", max_results=50_000)
        return [r for r in running if r.data.params.get("context") in TRAINING_CONTEXTS]

    def _bad_runs(self) -> set[str]:
        """Runs of the experiment that are not FINISHED, or deleted."""
        from mlflow.entities import ViewType

        if self.snapshot is not None:
            return {i for i in self.snapshot.runs if self.run_state_pair(i) != ("FINISHED", "active")}
        bad = {r.info.run_id for r in self.client.search_runs(
            [self.experiment_id], "attributes.status != 'FINISHED'", run_view_type=ViewType.ALL, max_results=50_000)}
        bad |= {r.info.run_id for r in self.client.search_runs(
            [self.experiment_id], "", run_view_type=ViewType.DELETED_ONLY, max_results=50_000)}
        return bad

    # -- the model's bytes ------------------------------------------------------------------

    def _kernel_key(self, version: ModelVersion) -> tuple[str, str, str]:
        return (self.settings.mlflow_tracking_uri, str(version.version), str(version.source))

    def load_kernel(self, version: ModelVersion) -> Model:
        """The kernel behind a model version, read from its artifacts once per process."""
        import mlflow

        key = self._kernel_key(version)
        data = _cached_kernel(key)
        if data is None:
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=tmp))
                found = next(local.rglob(KERNEL_FILE), None)
                if found is None:
                    raise RegistryError(f"model version {version.version} has no {KERNEL_FILE} artifact ({version.source})")
                data = found.read_bytes()
            _cache_kernel(key, data)
        return Model.from_bytes(data)

    # -- writes -------------------------------------------------------------------------------

    def create_run(self, run_name: str) -> Run:
        """A new RUNNING run of the experiment."""
        run = self.client.create_run(self.experiment_id, run_name=run_name)
        if self.snapshot is not None:
            self.snapshot.runs[run.info.run_id] = run
            self.snapshot.states[run.info.run_id] = ("RUNNING", "active")
        return run

    def set_terminated(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status)
        if self.snapshot is not None:
            self.snapshot.states[run_id] = (status, self.run_state_pair(run_id)[1])

    def set_version_tag(self, version: str, key: str, value: str) -> None:
        self.client.set_model_version_tag(self.model_name, str(version), key, value)
        if self.snapshot is not None and (v := self._version(str(version))) is not None:
            v.tags[key] = value  # the entity's own dict: MLflow hands it out mutable

    def delete_version_tag(self, version: str, key: str) -> None:
        self.client.delete_model_version_tag(self.model_name, str(version), key)
        if self.snapshot is not None and (v := self._version(str(version))) is not None:
            v.tags.pop(key, None)

    def log_model_version(self, run_id: str, model: Model, tags: dict[str, str], artifact_uri: str | None = None,
                          texts: dict[str, str] | None = None, ledger: bytes | None = None) -> ModelVersion:
        """Saves the pyfunc model into the run's artifacts (with `texts`, more artifacts by
        path, and the ledger of the run's rows when given, `ledger/ledger.bin`, in the same
        upload) and registers it as a new version. `artifact_uri`: the run's, when the caller
        has it (else asked)."""
        from taxifare_flow.ml_logic.ledger import LEDGER_DIR, LEDGER_FILE, remember

        data = model.to_bytes()
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "artifacts"
            model_dir = root / "model"
            save_pyfunc(model_dir, Path(tmp) / KERNEL_FILE, data)
            if self.settings.model_wheel:
                pack_wheel(model_dir, Path(self.settings.model_wheel))
            for path, text in (texts or {}).items():
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_text(text)
            if ledger is not None:
                (root / LEDGER_DIR).mkdir(parents=True, exist_ok=True)
                (root / LEDGER_DIR / LEDGER_FILE).write_bytes(ledger)
            if artifact_uri is None and self.snapshot is not None and run_id in self.snapshot.runs:
                artifact_uri = self.snapshot.runs[run_id].info.artifact_uri  # as create_run returned it
            # One upload for the model and the run's other artifacts. With the run's artifact
            # URI at hand, straight to its artifact repository: `log_artifacts` would first
            # read the run back (`get_run`) to learn the URI create_run returned.
            if artifact_uri is None:
                self.client.log_artifacts(run_id, str(root))
            else:
                from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

                repository = get_artifact_repository(artifact_uri, tracking_uri=self.client.tracking_uri)
                repository.log_artifacts(str(root))  # type: ignore[no-untyped-call]  # unannotated in mlflow
        if ledger is not None:
            remember(self.settings, run_id, ledger)
        if artifact_uri is None:
            artifact_uri = self.client.get_run(run_id).info.artifact_uri
        self._ensure_registered_model()
        version = self.client.create_model_version(self.model_name, source=f"{artifact_uri}/model", run_id=run_id,
                                                   tags=tags)
        _cache_kernel(self._kernel_key(version), data)
        if self.snapshot is not None:
            self.snapshot.versions.append(version)
        return version

    def free_unregistered_artifacts(self, run_id: str) -> bool:
        """Removes the model artifacts of a run that no version was registered from, when they
        are local files (what a full disk left half-written). Whether anything was removed."""
        import shutil
        from urllib.parse import urlparse

        from mlflow.exceptions import MlflowException

        try:
            if self.client.search_model_versions(f"run_id = '{run_id}'"):
                return False
            uri = self.client.get_run(run_id).info.artifact_uri
        except MlflowException:
            return False
        parsed = urlparse(uri)
        if parsed.scheme not in ("", "file"):
            return False
        model = Path(parsed.path) / "model"
        if not model.is_dir():
            return False
        shutil.rmtree(model, ignore_errors=True)
        log.info("removed the half-written model artifacts of run %s (%s)", run_id, model)
        return True

    def _ensure_registered_model(self) -> None:
        """Creates the registered model owned by this experiment, or checks that the existing
        one is (another experiment's first lifecycle may have created it meanwhile)."""
        from mlflow.exceptions import MlflowException

        if self.snapshot is not None and self.snapshot.model_tags is not None:
            self.assert_owned()
            return
        if self._model_tags() is None:
            try:
                self.client.create_registered_model(self.model_name, tags=self._owner_tags())
                if self.snapshot is not None:
                    self.snapshot.model_tags = self._owner_tags()
                return
            except MlflowException:  # created meanwhile
                if self.snapshot is not None:
                    self.refresh()
        self.assert_owned()

    def _model_tags(self) -> dict[str, str] | None:
        """The registered model's tags; `None` when it does not exist."""
        from mlflow.exceptions import MlflowException

        if self.snapshot is not None:
            return self.snapshot.model_tags
        try:
            return dict(self.client.get_registered_model(self.model_name).tags)
        except MlflowException:
            return None

    def _owner_tags(self) -> dict[str, str]:
        return {OWNER_TAG: str(self.experiment_id), OWNER_NAME_TAG: self.settings.mlflow_experiment}

    def _experiment_of(self, run_id: str | None) -> str | None:
        from mlflow.exceptions import MlflowException

        if not run_id:
            return None
        snap = self.snapshot
        if snap is not None:
            if run_id in snap.runs:
                return str(self.experiment_id)
            if run_id in snap.foreign:
                return snap.foreign[run_id]
        try:
            found: str | None = str(self.client.get_run(run_id).info.experiment_id)
        except MlflowException:
            found = None
        if snap is not None:
            snap.foreign[run_id] = found
        return found

    def _experiment_name(self, experiment_id: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_experiment(experiment_id).name)
        except MlflowException:
            return f"#{experiment_id} (deleted for good)"

    def owner(self) -> str | None:
        """The id of the experiment whose lineage the registered model is: its tag, or, for a
        model registered before owners were recorded, the experiment of its first version's
        run. `None` when the model does not exist or has no version yet (anyone may claim it)."""
        tags = self._model_tags()
        if tags is None:
            return None
        if tags.get(OWNER_TAG):
            return str(tags[OWNER_TAG])
        return next((e for v in self.versions() if (e := self._experiment_of(v.run_id)) is not None), None)

    def assert_owned(self) -> None:
        """Refuses (`LineageError`, nothing changed) a registered model that is another
        experiment's lineage; claims an existing model that records no owner and is ours."""
        owner = self.owner()
        if owner is None or owner == str(self.experiment_id):
            tags = self._model_tags()
            if owner is not None and tags is not None and tags.get(OWNER_TAG) is None:
                for k, v in self._owner_tags().items():
                    self.client.set_registered_model_tag(self.model_name, k, v)
                if self.snapshot is not None and self.snapshot.model_tags is not None:
                    self.snapshot.model_tags.update(self._owner_tags())
            return
        raise LineageError(
            f"the registered model {self.model_name!r} is the lineage of experiment {self._experiment_name(owner)!r}, "
            f"not of MLFLOW_EXPERIMENT={self.settings.mlflow_experiment!r}: set MLFLOW_MODEL_NAME to a model name of "
            "this experiment's own (nothing was changed)"
        )

    def crossed_lineages(self) -> list[str]:
        """Where the registered model mixes lineages: it belongs to another experiment, or
        some of its versions come from runs of another experiment than its owner."""
        owner = self.owner()
        if owner is None:
            return []
        problems = []
        if owner != str(self.experiment_id):
            problems.append(f"the registered model {self.model_name!r} is the lineage of experiment "
                            f"{self._experiment_name(owner)!r}, not of MLFLOW_EXPERIMENT={self.settings.mlflow_experiment!r}")
        for v in self.versions():
            e = self._experiment_of(v.run_id)
            if e is not None and e != owner:
                problems.append(f"version {v.version} of {self.model_name!r} comes from run {v.run_id} of experiment "
                                f"{self._experiment_name(e)!r}, but the model is the lineage of {self._experiment_name(owner)!r}")
        return problems

    def set_alias(self, alias: str, version: str, stamp: bool = True) -> None:
        """Points `alias` at `version`; moving `production` stamps the version's PROMOTED_AT
        tag (`stamp=False`: it was stamped when the version was registered)."""
        self.client.set_registered_model_alias(self.model_name, alias, str(version))
        if self.snapshot is not None:
            self.snapshot.aliases[alias] = str(version)
        if alias == PRODUCTION and stamp:
            # Aliases carry no time: the version does (`GET /model` of the API shows it).
            self.set_version_tag(str(version), PROMOTED_AT, now_utc())

    def delete_alias(self, alias: str) -> None:
        self.client.delete_registered_model_alias(self.model_name, alias)
        if self.snapshot is not None:
            self.snapshot.aliases.pop(alias, None)

    def kill_stale_runs(self) -> list[str]:
        """Marks RUNNING training and backfill runs KILLED. Only under the lifecycle lock, where
        no other lifecycle can be running: a RUNNING run there is what a killed process left."""
        stale = self.running_runs()
        for run in stale:
            self.set_terminated(run.info.run_id, "KILLED")
            log.warning("training run %s was left RUNNING by a stopped lifecycle: marked KILLED", run.info.run_id)
        return [r.info.run_id for r in stale]

    def tag_orphans(self) -> list[str]:
        """Tags `orphaned` the versions whose run is not FINISHED and active (registered by a
        lifecycle that then crashed, or retracted since). They stay for inspection; nothing
        ever continues from them or serves them. Outside a snapshot only the few versions
        concerned are read: a search over every version costs a quarter of a second at 78
        months."""
        from mlflow.exceptions import MlflowException

        bad = self._bad_runs()
        if self.snapshot is not None:
            tagged_before = [v for v in self.snapshot.versions if v.tags.get("orphaned", "").startswith("run ")]
            suspects = [v for v in self.snapshot.versions if v.run_id in bad]
        else:
            name = f"name = '{self.model_name}'"
            try:
                tagged_before = self.client.search_model_versions(f"{name} and tags.orphaned LIKE 'run %'",
                                                                  max_results=10_000)
                ids = sorted(bad)
                suspects = [v for i in range(0, len(ids), 100) for v in self.client.search_model_versions(
                    f"{name} and run_id IN ({', '.join(repr(x) for x in ids[i:i + 100])})", max_results=10_000)]
            except MlflowException:  # no registered model yet
                return []
        for v in tagged_before:
            if v.run_id not in bad and self.is_valid(v):  # its run was restored
                self.delete_version_tag(v.version, "orphaned")
                log.warning("version %s is no longer orphaned: its run %s was restored", v.version, v.run_id)
        tagged = []
        for v in suspects:
            if "orphaned" not in v.tags:
                reason = self.run_state(v.run_id)
                self.set_version_tag(v.version, "orphaned", f"run {v.run_id} is {reason}")
                log.warning("version %s is orphaned: its run %s is %s", v.version, v.run_id, reason)
                tagged.append(str(v.version))
        return tagged

    def tag_unreachable_orphans(self) -> list[str]:
        """Tags `orphaned` the versions `tag_orphans` cannot find from the experiment's runs:
        registered without a run, or whose run is gone for good. Reads every version."""
        tagged = []
        for v in self.versions():
            if "orphaned" in v.tags or self.is_valid(v):
                continue
            reason = self.run_state(v.run_id)
            self.set_version_tag(v.version, "orphaned", f"run {v.run_id} is {reason}" if v.run_id else reason)
            log.warning("version %s is orphaned: %s", v.version, reason)
            tagged.append(str(v.version))
        return tagged

    def retract_aliases(self) -> list[str]:
        """Moves `production` and `challenger` off versions whose run is no longer FINISHED and
        active: production falls back to the newest valid promoted version (or none)."""
        notes = []
        for alias in (PRODUCTION, CHALLENGER):
            current = self.version_by_alias(alias)
            if current is None or self.is_valid(current):
                continue
            reason = self.run_state(current.run_id)
            fallback = None
            if alias == PRODUCTION:
                promoted = self.versions({"decision": "promote"})
                fallback = next((v for v in reversed(promoted) if int(v.version) < int(current.version)
                                 and "orphaned" not in v.tags and self.is_valid(v)), None)
            if fallback is None:
                self.delete_alias(alias)
            else:
                self.set_alias(alias, fallback.version)
            target = f"version {fallback.version}" if fallback is not None else "none"
            notes.append(f"{alias} was version {current.version}, whose run {current.run_id} is {reason}: {alias} → {target}")
            log.warning("retracted: %s", notes[-1])
        return notes

    def reconcile_aliases(self, watermark: int) -> None:
        """Makes the aliases agree with the finished training runs: `challenger` on the lineage
        head, and `production` moved to it if its run decided so and `production` still points
        at the version that run evaluated (compare-and-set: production is read from MLflow
        just before it moves, even inside a snapshot). Idempotent; repairs a lifecycle that
        stopped between finishing its run and moving the aliases."""
        self.retract_aliases()
        head = self.head_for(watermark)
        if head is None:
            return
        current = self.version_by_alias(CHALLENGER)
        if current is None or str(current.version) != str(head.version):
            self.set_alias(CHALLENGER, head.version)
        if head.tags.get("decision") != "promote":
            return
        prod = self.version_by_alias(PRODUCTION)
        # MLflow hands versions out as int or str depending on the call: compare as text.
        prod_version = str(prod.version) if prod is not None else "none"
        if prod_version == str(head.version):
            return
        if self.snapshot is not None:
            # The snapshot is as old as the lifecycle: someone may have moved production by
            # hand since. Asked again, as the compare of compare-and-set.
            live = self._live_alias(PRODUCTION)
            prod_version = live if live is not None else "none"
            if live is not None:
                self.snapshot.aliases[PRODUCTION] = live
            else:
                self.snapshot.aliases.pop(PRODUCTION, None)
        if prod_version == head.tags.get("evaluated_production", "none"):
            # A version registered with its PROMOTED_AT stamp (the lifecycle's) is not stamped again.
            self.set_alias(PRODUCTION, head.version, stamp=PROMOTED_AT not in head.tags)
            log.info("production → version %s", head.version)
        else:
            if head.tags.get(PROMOTED_AT):
                self.delete_version_tag(head.version, PROMOTED_AT)  # it never became production
            log.warning(
                "production moved to version %s since version %s was evaluated against %s: not overwritten",
                prod_version, head.version, head.tags.get("evaluated_production"),
            )

    def _live_alias(self, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(self.model_name, alias).version)
        except MlflowException:
            return None


def _save_model(model_dir: Path, kernel: Path, data: bytes) -> None:
    """`mlflow.pyfunc.save_model` of a kernel (its bytes written to `kernel` first)."""
    import mlflow

    kernel.write_bytes(data)
    # The input is a DataFrame of raw rides in any column flavour: MLflow cannot infer a
    # signature from it and says so at WARNING on every save.
    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_log.level
    pyfunc_log.setLevel(logging.ERROR)
    try:
        mlflow.pyfunc.save_model(str(model_dir), python_model=str(PYFUNC_CODE), artifacts={"kernel": str(kernel)},
                                 pip_requirements=PIP_REQUIREMENTS)
    finally:
        pyfunc_log.setLevel(level)


@dataclass
class _PyfuncTemplate:
    """A pyfunc model MLflow saved in this process with an empty kernel, and the lines of its
    `MLmodel` that differ from one save to the next."""

    directory: Path
    size: int  # MLflow's `model_size_bytes` of it: the files but the environment's, kernel empty
    lines: dict[str, str]  # key → the template's line


_pyfunc_template: list[_PyfuncTemplate] = []
#: The `MLmodel` lines a save writes anew: the model's identity and time, its size, and the
#: (temporary) path its kernel was copied from.
_PER_SAVE = ("model_uuid:", "utc_time_created:", "model_size_bytes:", "uri:")


def _template() -> _PyfuncTemplate | None:
    """The process's pyfunc template, saved once by `mlflow.pyfunc.save_model`; `None` when its
    `MLmodel` is not as expected (then every model is saved by MLflow itself)."""
    import atexit
    import shutil

    if _pyfunc_template:
        return _pyfunc_template[0]
    tmp = Path(tempfile.mkdtemp(prefix="taxifare-pyfunc-"))
    atexit.register(shutil.rmtree, tmp, True)
    _save_model(tmp / "model", tmp / KERNEL_FILE, b"")
    text = (tmp / "model" / "MLmodel").read_text()
    lines: dict[str, str] = {}
    for line in text.splitlines():
        key = next((k for k in _PER_SAVE if line.strip().startswith(k)), None)
        if key is not None:
            if key in lines:
                return None
            lines[key] = line
    size = next((int(v.split(":", 1)[1]) for k, v in lines.items() if k == "model_size_bytes:"), -1)
    if set(lines) != set(_PER_SAVE) or size <= 0 or (tmp / "model" / "artifacts" / KERNEL_FILE).stat().st_size != 0:
        return None
    _pyfunc_template.append(_PyfuncTemplate(tmp / "model", size, lines))
    return _pyfunc_template[0]


def save_pyfunc(model_dir: Path, kernel: Path, data: bytes) -> None:
    """The pyfunc model of a kernel in `model_dir`, as `mlflow.pyfunc.save_model` writes it (the
    same files; `MLmodel` with this save's uuid, time, size and kernel path), from a template
    MLflow saved once in this process: its environment files (requirements, conda, python_env)
    and the checks behind them depend on nothing a month changes, and making them was most of a
    save's time (~0.1 s a month on a loaded machine). `kernel` is the path `MLmodel` names as
    the kernel's source (written only when MLflow saves)."""
    import shutil
    import uuid
    from datetime import datetime, timezone

    import yaml  # type: ignore[import-untyped]  # no stubs installed

    template = _template()
    if template is None:
        _save_model(model_dir, kernel, data)
        return
    shutil.copytree(template.directory, model_dir)
    (model_dir / "artifacts" / KERNEL_FILE).write_bytes(data)
    values: dict[str, object] = {
        "model_uuid:": uuid.uuid4().hex, "utc_time_created:": str(datetime.now(timezone.utc).replace(tzinfo=None)),
        "model_size_bytes:": template.size + len(data), "uri:": str(kernel),
    }
    text = (template.directory / "MLmodel").read_text()
    for key, line in template.lines.items():
        indent = line[:len(line) - len(line.lstrip())]
        # As MLflow writes it (`yaml.safe_dump`: a time quoted, a path as it needs).
        fresh = indent + yaml.safe_dump({key[:-1]: values[key]}, default_flow_style=False, width=10_000).strip()
        text = text.replace(line + "\n", fresh + "\n", 1)
    (model_dir / "MLmodel").write_text(text)


def now_utc() -> str:
    """The time a PROMOTED_AT tag records (UTC, ISO 8601, seconds)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def pack_wheel(model_dir: Path, wheel: Path) -> None:
    """Puts `wheel` among the model's files and makes its requirements install it from there, as
    MLflow's `add_libraries_to_model` does: MLflow installs requirements from the model's
    directory, so `wheels/NAME.whl` resolves wherever the model is served."""
    import shutil

    (model_dir / "wheels").mkdir()
    shutil.copy2(wheel, model_dir / "wheels" / wheel.name)
    local = f"wheels/{wheel.name}"
    requirements = model_dir / "requirements.txt"
    lines = requirements.read_text().splitlines()
    requirements.write_text("\n".join(local if line.startswith("taxifare-flow") else line for line in lines) + "\n")
    conda = model_dir / "conda.yaml"
    if conda.is_file():
        conda.write_text("\n".join(line.replace(f"taxifare-flow=={__version__}", local) for line in conda.read_text().splitlines()) + "\n")


def open_registry(settings: Settings, cached: bool = False) -> Registry:
    """Points MLflow at the settings' store and makes sure the experiment exists (with its
    artifacts beside the embedded store, not in the current directory). A SQLite store is
    created whole or not at all; a store that cannot be opened is one `TrackingStoreError`.
    `cached`: the experiment's id as this process found it before, if it did (a lifecycle:
    `assert_experiment_active` names a deleted one where it matters)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from alembic.util.exc import CommandError as AlembicError
    from mlflow.tracking import MlflowClient
    from sqlalchemy.exc import SQLAlchemyError

    from taxifare_flow._core import mask_dsn
    from taxifare_flow.ml_logic.store import ready_store

    uri = settings.mlflow_tracking_uri
    ready_store(settings)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        # Opening the store checks its schema: a store another MLflow made or half-migrated
        # raises here.
        client = MlflowClient(uri, uri)
        key = (uri, settings.mlflow_experiment)
        if cached and key in _experiment_ids:
            return Registry(settings, client, _experiment_ids[key])
        exp = client.get_experiment_by_name(settings.mlflow_experiment)
        if exp is None:
            # A database store (SQLite or PostgreSQL) would put artifacts in ./mlruns of whatever
            # directory the command ran in; a tracking server decides for itself.
            direct = not uri.startswith(("http://", "https://", "databricks"))
            location = settings.artifact_location if direct else None
            experiment_id = client.create_experiment(settings.mlflow_experiment, artifact_location=location)
        elif exp.lifecycle_stage != "active":
            raise TrackingStoreError(
                f"experiment {settings.mlflow_experiment!r} is deleted in {mask_dsn(uri)}: restore it "
                f"(mlflow experiments restore -x {exp.experiment_id}) or choose another MLFLOW_EXPERIMENT"
            )
        else:
            experiment_id = exp.experiment_id
    except (MlflowException, SQLAlchemyError, AlembicError) as e:
        raise TrackingStoreError(_unusable(uri, e)) from None
    _experiment_ids[key] = str(experiment_id)
    return Registry(settings, client, experiment_id)


def assert_experiment_active(registry: Registry) -> None:
    """Raises `TrackingStoreError` when the registry's experiment was deleted (by hand, since
    this process found it)."""
    from mlflow.exceptions import MlflowException

    from taxifare_flow._core import mask_dsn

    settings = registry.settings
    try:
        exp = registry.client.get_experiment(registry.experiment_id)
    except MlflowException:
        exp = None
    if exp is None or exp.lifecycle_stage != "active":
        _experiment_ids.pop((settings.mlflow_tracking_uri, settings.mlflow_experiment), None)
        raise TrackingStoreError(
            f"experiment {settings.mlflow_experiment!r} is deleted in {mask_dsn(settings.mlflow_tracking_uri)}: restore "
            f"it (mlflow experiments restore -x {registry.experiment_id}) or choose another MLFLOW_EXPERIMENT"
        )


def _unusable(uri: str, e: BaseException) -> str:
    """One line for a store MLflow refused to open, password masked."""
    import mlflow

    from taxifare_flow._core import mask_dsn

    text = " ".join(str(getattr(e, "message", e)).split())
    schema = re.search(r"found version (\w+), but expected (\w+)", text)
    unknown = re.search(r"Can't locate revision identified by '(\w+)'", text)
    if schema or unknown:
        found = schema[1] if schema else unknown[1] if unknown else ""
        fix = (f"back it up, then run `mlflow db upgrade {mask_dsn(uri)}`" if schema
               else "use the MLflow that made it, or start a new store")
        return (f"the MLflow store {mask_dsn(uri)} has schema revision {found}, which MLflow {mlflow.__version__} does not "
                f"open{f' (it needs {schema[2]})' if schema else ''}: another MLflow version made or half-migrated it "
                f"(an interrupted `mlflow ui` or `mlflow db upgrade`?); {fix}")
    cause = str(getattr(e, "message", e)).strip().splitlines()
    return f"the MLflow store {mask_dsn(uri)} cannot be used: {mask_dsn(cause[-1] if cause else type(e).__name__)}"
