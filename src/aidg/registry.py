"""The model registry: every trained merchant-profile encoder is a version in MLflow's registry.

Runs log parameters, metrics and the data manifest (which merchants were
trained on); the weights are a pyfunc model's artifact (a state-dict file, not
MLflow's pytorch flavour, which needs an input example and reloads as a
GraphModule). Tracking defaults to SQLite under ``AIDG_HOME``; set
``AIDG_MLFLOW_URI`` for a server.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aidg.config import Settings
from aidg.errors import NotFoundError
from aidg.privacy.crypto import Cipher

if TYPE_CHECKING:  # the profile encoders load with a version, not with the registry (serving needs neither)
    from aidg.inference.profile_model import ProfileModel

PROFILE_MODEL = "aidg-merchant-profile"
WEIGHTS = "profile_model.pt"


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow and its SQLAlchemy emit deprecation and pickle notices that are not ours to fix."""
    import logging

    level = logging.getLogger("mlflow").level
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            logging.getLogger("mlflow").setLevel(level)


def _manifest_merchants(meta: dict[str, Any], cipher: Cipher) -> dict[str, Any]:
    """The manifest's merchants: their ids, or with encryption at rest only their counts (the ids stay in the
    encrypted weights file's ``meta``, so the plain manifest holds no merchant id)."""
    train, heldout = meta.get("train_merchants", []), meta.get("heldout_merchants", [])
    if not cipher.enabled:
        return {"train_merchants": train, "heldout_merchants": heldout}
    return {"train_merchants_count": len(train), "heldout_merchants_count": len(heldout),
            "merchant_ids": f"encrypted at rest in {WEIGHTS} (meta)"}  # fmt: skip


class ModelRegistry:
    """Register and load model versions (MLflow tracking + model registry)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        home = settings.paths.home
        self.tracking_uri = settings.mlflow_uri or f"sqlite:///{home / 'mlflow.db'}"
        self.artifacts = home / "mlartifacts"

    def _client(self) -> Any:
        with _quiet():
            # its download progress bars would interleave with our own output (every served version loads one)
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
            import mlflow
            import mlflow.pyfunc

            self.settings.paths.home.mkdir(parents=True, exist_ok=True)
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
            return mlflow

    def _experiment(self, mlflow: Any, name: str) -> str:
        exp = mlflow.get_experiment_by_name(name)
        if exp is not None:
            return str(exp.experiment_id)
        return str(mlflow.create_experiment(name, artifact_location=self.artifacts.as_uri()))

    def register_profile(self, pm: ProfileModel, params: dict[str, Any], metrics: dict[str, Any]) -> str:
        """Log a run and register ``pm`` as a new version; returns the version number.

        With an encryption key the weights file is encrypted and the manifest holds merchant counts, not ids.
        """
        from aidg.inference.persistence import save_profile_model

        cipher = Cipher.from_settings(self.settings)
        with _quiet():
            mlflow = self._client()

            class _ProfilePyfunc(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined,misc]
                """Loads the weights file; serving uses aidg's own loader, this makes the version self-describing."""

                _skip_type_hint_validation = True  # predict carries no hints on purpose: MLflow would warn

                def load_context(self, context: Any) -> None:
                    from aidg.inference.persistence import load_profile_model

                    self.model = load_profile_model(Path(context.artifacts["weights"]))

                def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
                    return model_input  # MLflow validates hints it cannot read; this method carries none

            exp = self._experiment(mlflow, "aidg-merchant-profile")
            with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(experiment_id=exp) as run:
                mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
                mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and v == v})
                manifest = Path(tmp) / "manifest.json"
                manifest.write_text(
                    json.dumps(
                        {
                            **_manifest_merchants(pm.meta, cipher),
                            "as_of": pm.meta.get("as_of"),
                            "data": params.get("data"),
                            "privacy": pm.meta.get("privacy"),  # the DP account (None: trained without DP)
                        },
                        indent=1,
                    )
                )
                mlflow.log_artifact(str(manifest))
                weights = save_profile_model(pm, Path(tmp) / WEIGHTS, cipher)
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=_ProfilePyfunc(),
                    artifacts={"weights": str(weights), "manifest": str(manifest)},
                    pip_requirements=[],
                    registered_model_name=PROFILE_MODEL,
                )
                version = str(info.registered_model_version)
                mlflow.MlflowClient().set_model_version_tag(PROFILE_MODEL, version, "run_id", run.info.run_id)
            return version

    def versions(self) -> list[str]:
        """The registered versions, oldest first (the local SQLite registry is read directly: a service start then
        needs no MLflow import, ~2 s)."""
        local = self._local_versions()
        if local is not None:
            return local
        with _quiet():
            mlflow = self._client()
            try:
                found = mlflow.MlflowClient().search_model_versions(f"name='{PROFILE_MODEL}'")
            except Exception:
                return []
            return sorted((str(v.version) for v in found), key=int)

    def _local_versions(self) -> list[str] | None:
        """The versions in the default SQLite registry read with :mod:`sqlite3` (MLflow's ``model_versions``
        table); None when tracking is elsewhere or the table does not read as expected (MLflow is asked then)."""
        db = self.settings.paths.home / "mlflow.db"
        if self.settings.mlflow_uri is not None or not db.exists():
            return None
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
                rows = con.execute(
                    "SELECT version FROM model_versions WHERE name = ? AND current_stage != 'Deleted_Internal'",
                    (PROFILE_MODEL,),
                ).fetchall()
        except sqlite3.Error:
            return None
        return sorted((str(int(r[0])) for r in rows), key=int)

    def resolve(self, version: str = "latest") -> str:
        """``latest`` → the newest registered version; any other name checked against the registry."""
        versions = self.versions()
        if not versions:
            raise NotFoundError("no trained model yet: run `aidg train --data DIR` (or `aidg demo`) first")
        v = versions[-1] if version == "latest" else version
        if v not in versions:
            raise NotFoundError(f"no model version {version!r}; versions: {', '.join(versions)}")
        return v

    def weights_path(self, version: str = "latest") -> Path:
        """Local path of a version's weights file (``latest`` = the newest version)."""
        v = self.resolve(version)
        with _quiet():
            mlflow = self._client()
            path = Path(mlflow.artifacts.download_artifacts(f"models:/{PROFILE_MODEL}/{v}"))
        found = list(path.rglob(WEIGHTS))
        if not found:
            raise NotFoundError(f"model version {v} has no {WEIGHTS} artifact")
        return found[0]

    def set_aliases(self, champion: str | None, challenger: str | None) -> None:
        """Point the registry's ``champion`` and ``challenger`` aliases at these versions (None: remove)."""
        with _quiet():
            client = self._client().MlflowClient()
            for alias, version in (("champion", champion), ("challenger", challenger)):
                if version is not None:
                    client.set_registered_model_alias(PROFILE_MODEL, alias, str(version))
                else:
                    with contextlib.suppress(Exception):  # no such alias: nothing to remove
                        client.delete_registered_model_alias(PROFILE_MODEL, alias)

    def alias(self, name: str) -> str | None:
        """The version an alias points at, or None."""
        with _quiet():
            try:
                return str(self._client().MlflowClient().get_model_version_by_alias(PROFILE_MODEL, name).version)
            except Exception:
                return None

    def load_profile(self, version: str = "latest") -> ProfileModel:
        from aidg.inference.persistence import load_profile_model

        return load_profile_model(self.weights_path(version), Cipher.from_settings(self.settings))
