"""MLflow tracking and registry glue: one run per training, the kernel as a pyfunc model,
promotion by aliases (`production`, `challenger`), never by the deprecated stages."""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from taxifare_flow import __version__
from taxifare_flow.errors import LineageError, RegistryError, TrackingStoreError
from taxifare_flow.model import Model
from taxifare_flow.settings import Settings

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

PRODUCTION = "production"
CHALLENGER = "challenger"
#: The version tag that records when `production` last moved to the version (UTC, ISO 8601).
PROMOTED_AT = "production_at"
#: Runs that train a model (param `context`): a lifecycle's, and `taxifare backfill`'s.
TRAINING_CONTEXTS = ("train", "backfill")
#: Registered-model tags naming the experiment whose lineage the model is (set at creation).
OWNER_TAG = "owner_experiment_id"
OWNER_NAME_TAG = "owner_experiment"
KERNEL_FILE = "model.txfm"
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
# Explicit requirements: inferring them spawns a subprocess and costs ~1.5 s per model.
PIP_REQUIREMENTS = [f"taxifare-flow=={__version__}", "pandas", "pyarrow", "mlflow==3.17.2"]


@dataclass
class Registry:
    """An MLflow client bound to the experiment and registered model of the settings."""

    settings: Settings
    client: MlflowClient
    experiment_id: str

    @property
    def model_name(self) -> str:
        return self.settings.mlflow_model_name

    def version_by_alias(self, alias: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(self.model_name, alias)
        except MlflowException:
            return None

    def versions(self, tags: dict[str, str] | None = None) -> list[ModelVersion]:
        """Versions of the model (with these tag values), oldest first. The tag filter runs in
        the store, so finding the lineage head costs the same in month 70 as in month 2."""
        from mlflow.exceptions import MlflowException

        query = f"name = '{self.model_name}'" + "".join(f" and tags.{k} = '{v}'" for k, v in (tags or {}).items())
        try:
            found = self.client.search_model_versions(query, max_results=10_000)
        except MlflowException:
            return []
        return sorted(found, key=lambda v: int(v.version))

    def run_state(self, run_id: str | None) -> str:
        """`valid` for a FINISHED, active run; otherwise why not (`deleted`, `FAILED`, …)."""
        from mlflow.exceptions import MlflowException

        if not run_id:
            return "no run"
        try:
            info = self.client.get_run(run_id).info
        except MlflowException:
            return "deleted for good"
        if info.lifecycle_stage != "active":
            return "deleted"
        return "valid" if info.status == "FINISHED" else info.status

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

    def load_kernel(self, version: ModelVersion) -> Model:
        """The kernel behind a model version, read from its artifacts."""
        import mlflow

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=tmp))
            found = next(local.rglob(KERNEL_FILE), None)
            if found is None:
                raise RegistryError(f"model version {version.version} has no {KERNEL_FILE} artifact ({version.source})")
            return Model.from_bytes(found.read_bytes())

    def log_model_version(self, run_id: str, model: Model, tags: dict[str, str], ledger: bytes | None = None) -> ModelVersion:
        """Saves the pyfunc model into the run's artifacts, with the ledger of the run's rows
        when given (`ledger/ledger.bin`, in the same upload), and registers it as a new version."""
        import mlflow

        from taxifare_flow.ml_logic.ledger import LEDGER_DIR, LEDGER_FILE, remember

        with tempfile.TemporaryDirectory() as tmp:
            kernel = Path(tmp) / KERNEL_FILE
            kernel.write_bytes(model.to_bytes())
            upload = Path(tmp) / "upload"
            upload.mkdir()
            model_dir = upload / "model"
            # The input is a DataFrame of raw rides in any column flavour: MLflow cannot infer a
            # signature from it and says so at WARNING on every save.
            pyfunc_log = logging.getLogger("mlflow.pyfunc")
            level = pyfunc_log.level
            pyfunc_log.setLevel(logging.ERROR)
            try:
                mlflow.pyfunc.save_model(
                    str(model_dir),
                    python_model=str(PYFUNC_CODE),
                    artifacts={"kernel": str(kernel)},
                    pip_requirements=PIP_REQUIREMENTS,
                )
            finally:
                pyfunc_log.setLevel(level)
            if self.settings.model_wheel:
                pack_wheel(model_dir, Path(self.settings.model_wheel))
            if ledger is not None:
                (upload / LEDGER_DIR).mkdir()
                (upload / LEDGER_DIR / LEDGER_FILE).write_bytes(ledger)
            self.client.log_artifacts(run_id, str(upload))
        if ledger is not None:
            remember(self.settings, run_id, ledger)
        source = f"{self.client.get_run(run_id).info.artifact_uri}/model"
        self._ensure_registered_model()
        version = self.client.create_model_version(self.model_name, source=source, run_id=run_id, tags=tags)
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

        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException:
            try:
                self.client.create_registered_model(self.model_name, tags=self._owner_tags())
                return
            except MlflowException:  # created meanwhile
                pass
        self.assert_owned()

    def _owner_tags(self) -> dict[str, str]:
        return {OWNER_TAG: str(self.experiment_id), OWNER_NAME_TAG: self.settings.mlflow_experiment}

    def _experiment_of(self, run_id: str | None) -> str | None:
        from mlflow.exceptions import MlflowException

        if not run_id:
            return None
        try:
            return str(self.client.get_run(run_id).info.experiment_id)
        except MlflowException:
            return None

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
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(self.model_name)
        except MlflowException:
            return None
        if model.tags.get(OWNER_TAG):
            return str(model.tags[OWNER_TAG])
        return next((e for v in self.versions() if (e := self._experiment_of(v.run_id)) is not None), None)

    def assert_owned(self) -> None:
        """Refuses (`LineageError`, nothing changed) a registered model that is another
        experiment's lineage; claims an existing model that records no owner and is ours."""
        owner = self.owner()
        if owner is None or owner == str(self.experiment_id):
            if owner is not None and self.client.get_registered_model(self.model_name).tags.get(OWNER_TAG) is None:
                for k, v in self._owner_tags().items():
                    self.client.set_registered_model_tag(self.model_name, k, v)
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

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.model_name, alias, str(version))
        if alias == PRODUCTION:
            # Aliases carry no time: the version does (`GET /model` of the API shows it).
            from datetime import datetime, timezone

            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self.client.set_model_version_tag(self.model_name, str(version), PROMOTED_AT, now)

    def delete_alias(self, alias: str) -> None:
        self.client.delete_registered_model_alias(self.model_name, alias)

    def training_runs(self) -> list[Run]:
        """FINISHED, active training runs of the experiment: the ones the watermark counts."""
        return list(self.client.search_runs(
            [self.experiment_id], "params.context = 'train' and attributes.status = 'FINISHED'", max_results=50_000,
        ))

    def running_runs(self) -> list[Run]:
        """RUNNING runs that train (a lifecycle's, or a backfill's): under the lifecycle lock,
        what a killed process left."""
        running = self.client.search_runs([self.experiment_id], "attributes.status = 'RUNNING'", max_results=50_000)
        return [r for r in running if r.data.params.get("context") in TRAINING_CONTEXTS]

    def kill_stale_runs(self) -> list[str]:
        """Marks RUNNING training and backfill runs KILLED. Only under the lifecycle lock, where
        no other lifecycle can be running: a RUNNING run there is what a killed process left."""
        stale = self.running_runs()
        for run in stale:
            self.client.set_terminated(run.info.run_id, "KILLED")
            log.warning("training run %s was left RUNNING by a stopped lifecycle: marked KILLED", run.info.run_id)
        return [r.info.run_id for r in stale]

    def tag_orphans(self) -> list[str]:
        """Tags `orphaned` the versions whose run is not FINISHED and active (registered by a
        lifecycle that then crashed, or retracted since). They stay for inspection; nothing
        ever continues from them or serves them. Only the few versions concerned are read: a
        search over every version costs a quarter of a second at 78 months."""
        from mlflow.entities import ViewType
        from mlflow.exceptions import MlflowException

        bad = {r.info.run_id for r in self.client.search_runs(
            [self.experiment_id], "attributes.status != 'FINISHED'", run_view_type=ViewType.ALL, max_results=50_000)}
        bad |= {r.info.run_id for r in self.client.search_runs(
            [self.experiment_id], "", run_view_type=ViewType.DELETED_ONLY, max_results=50_000)}
        name = f"name = '{self.model_name}'"
        try:
            tagged_before = self.client.search_model_versions(f"{name} and tags.orphaned LIKE 'run %'", max_results=10_000)
            ids = sorted(bad)
            suspects = [v for i in range(0, len(ids), 100) for v in self.client.search_model_versions(
                f"{name} and run_id IN ({', '.join(repr(x) for x in ids[i:i + 100])})", max_results=10_000)]
        except MlflowException:  # no registered model yet
            return []
        for v in tagged_before:
            if v.run_id not in bad and self.is_valid(v):  # its run was restored
                self.client.delete_model_version_tag(self.model_name, v.version, "orphaned")
                log.warning("version %s is no longer orphaned: its run %s was restored", v.version, v.run_id)
        tagged = []
        for v in suspects:
            if "orphaned" not in v.tags:
                reason = self.run_state(v.run_id)
                self.client.set_model_version_tag(self.model_name, v.version, "orphaned", f"run {v.run_id} is {reason}")
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
            self.client.set_model_version_tag(self.model_name, v.version, "orphaned",
                                              f"run {v.run_id} is {reason}" if v.run_id else reason)
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
        at the version that run evaluated (compare-and-set). Idempotent; repairs a lifecycle
        that stopped between finishing its run and moving the aliases."""
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
        if prod_version == head.tags.get("evaluated_production", "none"):
            self.set_alias(PRODUCTION, head.version)
            log.info("production → version %s", head.version)
        else:
            log.warning(
                "production moved to version %s since version %s was evaluated against %s: not overwritten",
                prod_version, head.version, head.tags.get("evaluated_production"),
            )


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


def open_registry(settings: Settings) -> Registry:
    """Points MLflow at the settings' store and makes sure the experiment exists (with its
    artifacts beside the embedded store, not in the current directory). A SQLite store is
    created whole or not at all; a store that cannot be opened is one `TrackingStoreError`."""
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
    return Registry(settings, client, experiment_id)


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
