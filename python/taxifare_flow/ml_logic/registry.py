"""MLflow tracking and registry glue: one run per training, the kernel as a pyfunc model,
promotion by aliases (`production`, `challenger`), never by the deprecated stages."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taxifare_flow import __version__
from taxifare_flow.model import Model
from taxifare_flow.settings import Settings

log = logging.getLogger(__name__)

PRODUCTION = "production"
CHALLENGER = "challenger"
KERNEL_FILE = "model.txfm"
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
# Explicit requirements: inferring them spawns a subprocess and costs ~1.5 s per model.
PIP_REQUIREMENTS = [f"taxifare-flow=={__version__}", "pandas", "pyarrow", "mlflow==3.17.2"]


@dataclass
class Registry:
    """An MLflow client bound to the experiment and registered model of the settings."""

    settings: Settings
    client: Any
    experiment_id: str

    @property
    def model_name(self) -> str:
        return self.settings.mlflow_model_name

    def version_by_alias(self, alias: str) -> Any | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(self.model_name, alias)
        except MlflowException:
            return None

    def versions(self, tags: dict[str, str] | None = None) -> list[Any]:
        """Versions of the model (with these tag values), oldest first. The tag filter runs in
        the store, so finding the lineage head costs the same in month 70 as in month 2."""
        from mlflow.exceptions import MlflowException

        query = f"name = '{self.model_name}'" + "".join(f" and tags.{k} = '{v}'" for k, v in (tags or {}).items())
        try:
            found = self.client.search_model_versions(query, max_results=10_000)
        except MlflowException:
            return []
        return sorted(found, key=lambda v: int(v.version))

    def _finished(self, versions: list[Any]) -> list[Any]:
        """Versions whose training run finished (a crashed run's version never counts)."""
        return [v for v in versions if v.run_id and self.client.get_run(v.run_id).info.status == "FINISHED"]

    def head_for(self, watermark: int) -> Any | None:
        """The version that ends at `watermark`: the lineage head to continue from."""
        if watermark == 0:
            return None
        heads = self._finished(self.versions({"end_row": str(watermark)}))
        return heads[-1] if heads else None

    def root(self) -> Any | None:
        """The first model ever trained (the frozen baseline)."""
        roots = self._finished(self.versions({"first_row": "0"}))
        return roots[0] if roots else None

    def load_kernel(self, version: Any) -> Model:
        """The kernel behind a model version, read from its artifacts."""
        import mlflow

        with tempfile.TemporaryDirectory() as tmp:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=tmp))
            found = next(local.rglob(KERNEL_FILE), None)
            if found is None:
                raise FileNotFoundError(f"model version {version.version} has no {KERNEL_FILE} artifact")
            return Model.from_bytes(found.read_bytes())

    def log_model_version(self, run_id: str, model: Model, tags: dict[str, str]) -> Any:
        """Saves the pyfunc model into the run's artifacts and registers it as a new version."""
        import mlflow

        with tempfile.TemporaryDirectory() as tmp:
            kernel = Path(tmp) / KERNEL_FILE
            kernel.write_bytes(model.to_bytes())
            model_dir = Path(tmp) / "model"
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
            self.client.log_artifacts(run_id, str(model_dir), "model")
        source = f"{self.client.get_run(run_id).info.artifact_uri}/model"
        self._ensure_registered_model()
        version = self.client.create_model_version(self.model_name, source=source, run_id=run_id, tags=tags)
        return version

    def _ensure_registered_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException:
            self.client.create_registered_model(self.model_name)

    def set_alias(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(self.model_name, alias, str(version))

    def reconcile_aliases(self, watermark: int) -> None:
        """Makes the aliases agree with the finished training runs: `challenger` on the lineage
        head, and `production` moved to it if its run decided so and `production` still points
        at the version that run evaluated (compare-and-set). Idempotent; repairs a lifecycle
        that stopped between finishing its run and moving the aliases."""
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


def open_registry(settings: Settings) -> Registry:
    """Points MLflow at the settings' store and makes sure the experiment exists (with its
    artifacts beside the embedded store, not in the current directory)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    if settings.tracking_is_embedded:
        settings.mlflow_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    exp = client.get_experiment_by_name(settings.mlflow_experiment)
    if exp is None:
        # A database store (SQLite or PostgreSQL) would put artifacts in ./mlruns of whatever
        # directory the command ran in; a tracking server decides for itself.
        direct = not settings.mlflow_tracking_uri.startswith(("http://", "https://", "databricks"))
        location = settings.artifact_location if direct else None
        experiment_id = client.create_experiment(settings.mlflow_experiment, artifact_location=location)
    else:
        experiment_id = exp.experiment_id
    return Registry(settings, client, experiment_id)
