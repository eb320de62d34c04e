"""A version's serving package: the one file `aidg serve` and `aidg explain` start from.

It holds what serving one data folder with one registered version needs, and nothing else:

- the deal scorer (its config and weights) and the explainers' state (prototypes, rule surrogate);
- the version's metadata (as-of date, seed, training merchants, serving policy);
- for the data folder it serves (by the digest of its tables): every merchant's snapshot, the bandit's context
  projection, the override counts, the three tables the candidate generator and the explanations read
  (merchants, categories, and the deals' terms and outcomes), and every merchant's record (its past outcomes
  beside the scorer's predictions, :func:`aidg.inference.history.merchant_record`), where the decision
  posterior starts.

``aidg train`` writes it beside the registered version, under ``AIDG_HOME/cache/serving-v<version>.bin``
(encrypted at rest with the key, as the weights are: it holds merchant data). A start that finds none, or one made
for another data folder, builds it once from the registry and the tables (the slow path) and writes it for the
next start. Erasure deletes the packages, so they are rebuilt from the erased folder.

Reading one imports neither MLflow nor the profile encoders (PyTorch Geometric, the text encoder): a start reads
this one file, the data folder's digest and, for ``latest``, the registry's version list.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from aidg.config import Settings
from aidg.errors import ConfigError, DataError, NotFoundError
from aidg.explain.explainer import Explainer
from aidg.features.context import FeatureContext
from aidg.features.panel import cutoff_seconds
from aidg.models.deal_scorer import ContextualDealScorer
from aidg.models.scorer_config import ScorerConfig
from aidg.privacy.crypto import Cipher
from aidg.store.offline import OfflineStore

if TYPE_CHECKING:
    from aidg.inference.profile_model import ProfileModel
    from aidg.inference.snapshot import Snapshot

log = logging.getLogger("aidg.service")
FORMAT = "aidg-serving-3"  # 2: with the merchants' records; 3: with each record's age and the cities
SERVING_ARTIFACT = "serving"  # pm.artifacts key of the snapshot and projection training computed for its folder
PACKAGE_TABLES = ("merchants", "categories", "cities")  # kept whole (cities where the folder has them)
DEAL_COLUMNS = ("merchant_id", "category_id", "started_at", "discount_pct", "price", "duration_days",
                "gp30_uplift", "gp30_known_at")  # fmt: skip  # what the candidate generator and the codes read


@dataclass
class ServingPackage:
    """What serving one data folder with one version needs (see the module docstring)."""

    version: str
    fingerprint: str  # the decrypted weights' digest with the as-of date and the merchants served
    data_hash: str  # the served folder's tables (aidg.store.OfflineStore.content_hash)
    meta: dict[str, Any]
    scorer_config: dict[str, Any]
    scorer_state: dict[str, torch.Tensor]
    explain: dict[str, Any]  # the explainers' artifacts: prototypes, surrogate and what it was asked, fingerprint mean
    snapshot: bytes  # aidg.inference.snapshot.Snapshot.to_bytes
    projector: dict[str, Any] | None  # aidg.policy.projector.ContextProjector.state (None: fit at the first start)
    tables: dict[str, pd.DataFrame]
    proposals: np.ndarray  # per merchant code: legacy proposals answered before the as-of date
    overrides: np.ndarray  # … and of those, edited by the rep
    records: pd.DataFrame  # aidg.inference.history.RECORD_COLUMNS: every merchant's record at the as-of date

    @property
    def as_of(self) -> pd.Timestamp:
        return pd.Timestamp(self.meta["as_of"])

    def scorer(self) -> ContextualDealScorer:
        """The deal scorer with its trained weights, in eval mode."""
        model = ContextualDealScorer(ScorerConfig(**self.scorer_config))
        model.load_state_dict(self.scorer_state)
        return model.eval()

    def context(self) -> FeatureContext:
        """The codes of merchants and categories (the scorer's inputs come from the snapshot, not from here)."""
        return FeatureContext.from_tables(self.tables, self.as_of)

    def explainer(self, settings: Settings) -> Explainer:
        return Explainer.from_artifacts(self.scorer(), self.explain, settings)

    def publish(self, settings: Settings, version: str, cipher: Cipher) -> Path:
        """This package (built at training, before the version had a number) as registered ``version``'s: its
        fingerprint from the registered weights, written where a start looks for it."""
        from aidg.registry import ModelRegistry

        weights = cipher.read_bytes(ModelRegistry(settings).weights_path(version))
        self.version = version
        self.fingerprint = _fingerprint(weights, self.as_of, self.tables["merchants"].merchant_id)
        return self.save(settings, cipher)

    # -- the file -----------------------------------------------------------------------------
    def save(self, settings: Settings, cipher: Cipher) -> Path:
        """Write the package where a start of its version looks for it (:func:`package_path`)."""
        buf = io.BytesIO()
        torch.save({"format": FORMAT, **self.__dict__}, buf)
        return cipher.write_bytes(package_path(settings, self.version), buf.getvalue())

    @classmethod
    def read(cls, path: Path, cipher: Cipher) -> ServingPackage | None:
        """The package at ``path``; None when there is none or it cannot be used (then it is rebuilt)."""
        if not path.exists():
            return None
        try:
            blob = torch.load(io.BytesIO(cipher.read_bytes(path)), map_location="cpu", weights_only=False)
            if not isinstance(blob, dict) or blob.pop("format", None) != FORMAT:
                raise DataError(f"not an {FORMAT} file")
            return cls(**blob)
        except (ConfigError, DataError, OSError, TypeError, RuntimeError, EOFError) as exc:
            log.warning("rebuilding the serving package %s (%s)", path.name, exc)  # another key, damaged, older
            return None


def package_path(settings: Settings, version: str) -> Path:
    return settings.paths.cache / f"serving-v{version}.bin"


def load_package(settings: Settings, data: Path, version: str, cipher: Cipher) -> tuple[ServingPackage, bool]:
    """The serving package of ``version`` for ``data``: the stored one when it was made for this folder, else one
    built from the registry and the tables (the slow path; the caller writes it once it is complete).

    Returns the package and whether it was read (False: built now).
    """
    from aidg.registry import ModelRegistry

    version = ModelRegistry(settings).resolve(version)
    data_hash = OfflineStore(data, cipher).content_hash()
    stored = ServingPackage.read(package_path(settings, version), cipher)
    if stored is not None and stored.data_hash == data_hash:
        return stored, True
    return build_package(settings, data, version, cipher, data_hash), False


def build_package(settings: Settings, data: Path, version: str, cipher: Cipher, data_hash: str) -> ServingPackage:
    """A package from the registered weights and the data folder's tables (the slow path)."""
    from aidg.inference.persistence import load_profile_model
    from aidg.registry import ModelRegistry

    weights = ModelRegistry(settings).weights_path(version)
    return package_of(load_profile_model(weights, cipher), data, version, data_hash, cipher.read_bytes(weights))


def _fingerprint(weights: bytes, as_of: pd.Timestamp, merchant_ids: Any) -> str:
    """What is served, the same on every replica: the trained weights and the merchants served at the as-of date
    (a shared Redis or database may hold another deployment's rows and posterior). Of the decrypted weights, so
    re-encrypting them in a key rotation keeps the fingerprint and the posterior."""
    h = hashlib.blake2b(weights, digest_size=8)
    h.update(f"{as_of}|{'|'.join(map(str, merchant_ids))}".encode())
    return h.hexdigest()


def _explain_artifacts(artifacts: dict[str, Any]) -> dict[str, Any]:
    """The explainers' artifacts, the rule surrogate in its current format (a version trained before it stored
    its tree's splits as arrays would load scikit-learn at every explanation)."""
    from aidg.explain.surrogate import RuleSurrogate

    out = {k: v for k, v in artifacts.items() if k != SERVING_ARTIFACT}
    if "surrogate" in out:
        out["surrogate"] = RuleSurrogate.from_bytes(out["surrogate"]).to_bytes()
    return out


def package_of(
    pm: ProfileModel,
    data: Path,
    version: str,
    data_hash: str,
    weights: bytes = b"",
    reuse: tuple[list[str], Snapshot] | None = None,
) -> ServingPackage:
    """The package of a loaded version for ``data``: the snapshot and the projection the version computed at
    training when the folder is the one it trained on, else the snapshot computed now (the projection is then
    fitted by the serving model, :class:`aidg.online.serving_model.ServingModel`). ``weights``: the decrypted
    weights file, for the fingerprint; ``reuse``: an as-of snapshot already computed (its rows' merchant ids, the
    snapshot), taken when its merchants are the folder's."""
    from aidg.features.merchant_view import override_counts
    from aidg.inference.history import merchant_record, scorer_predict
    from aidg.inference.snapshot import Snapshot, snapshot
    from aidg.sim.storage import load_data_folder

    if pm.scorer is None:
        raise NotFoundError(f"model version {version} has no deal scorer: retrain it with `aidg train`")
    as_of = pd.Timestamp(pm.meta["as_of"])
    tables, _, _ = load_data_folder(data)
    ctx = FeatureContext.from_tables(tables, as_of)
    stored = pm.artifacts.get(SERVING_ARTIFACT) or {}
    carried = stored.get("data_hash") == data_hash and stored.get("merchants") == len(ctx.merchant_ids)
    if carried:
        snap = stored["snapshot"]
    elif reuse is not None and reuse[0] == [str(m) for m in ctx.merchant_ids] and reuse[1].at == as_of:
        snap = reuse[1].to_bytes()
    else:
        snap = snapshot(pm, ctx, as_of, seed=int(pm.meta.get("seed", 0))).to_bytes()
    n_prop, n_over = override_counts(ctx, cutoff_seconds(as_of))
    ids = [str(m) for m in ctx.merchant_ids]
    records = merchant_record(scorer_predict(pm.scorer, ctx, Snapshot.from_bytes(snap, as_of)), tables, ids, as_of)
    deals = tables["deals"]
    return ServingPackage(
        version=version,
        fingerprint=_fingerprint(weights, as_of, ctx.merchant_ids),
        data_hash=data_hash,
        meta=pm.meta,
        scorer_config=pm.scorer.config.__dict__.copy(),
        scorer_state=pm.scorer.state_dict(),
        explain=_explain_artifacts(pm.artifacts),
        snapshot=snap,
        projector=stored.get("projector") if carried else None,
        tables={
            **{t: tables[t] for t in PACKAGE_TABLES if t in tables},
            "deals": deals[[c for c in DEAL_COLUMNS if c in deals.columns]].copy(),
        },
        proposals=np.asarray(n_prop),
        overrides=np.asarray(n_over),
        records=records,
    )


__all__ = ["SERVING_ARTIFACT", "ServingPackage", "build_package", "load_package", "package_of", "package_path"]
