"""What the service serves: one registered version, its merchants' online features, and per-request scoring.

:class:`ServingModel` loads a version (encoders, scorer, explainers) and the
data folder it serves, computes every merchant's snapshot once (saved under
``AIDG_HOME/cache`` so a restart or a second worker process reads it back in
a second) and materialises it into the online store (:class:`FeatureRow`).

A request's work is split where the memo's cache goes (§1.3):

- :meth:`load_bundles` is the embedding cache's loader: a merchant's feature
  row from the online store, its candidate variants for the day (the
  candidate generator is seeded by merchant and date, so they are the same
  all day), the current deal, and every deal's scorer features, packed in one
  value (``aidg.store.arrays``);
- :meth:`score` is the per-request part: one forward pass of the scorer over
  the variants and the current deal, the top-5 attention features of each,
  and the bandit contexts φ.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from aidg.config import Settings
from aidg.errors import ConfigError, DataError, NotFoundError
from aidg.explain.explainer import Explainer, load_explainer
from aidg.features.candidates import CandidateGenerator
from aidg.features.context import FeatureContext
from aidg.features.merchant_view import MERCHANT_NAMES, MerchantView, deal_view, override_counts
from aidg.inference.persistence import load_profile_model
from aidg.inference.profile_model import ProfileModel, cutoff_seconds
from aidg.inference.scoring import OUTPUTS
from aidg.inference.snapshot import Snapshot, snapshot
from aidg.online.bundle import Bundle, pack_bundle, unpack_bundle
from aidg.online.feature_row import FeatureRow
from aidg.policy.projector import ContextProjector
from aidg.privacy.crypto import Cipher, is_encrypted
from aidg.registry import ModelRegistry
from aidg.sim.storage import load_data_folder
from aidg.store.arrays import unpack_arrays
from aidg.store.offline import OfflineStore
from aidg.store.online import OnlineStore

log = logging.getLogger("aidg.service")
PROJECTOR_MERCHANTS = 200  # training merchants whose variants fit the bandit's context projection
PROBE_MERCHANTS = 20  # merchants scored at load when the projection comes with the version (non-finite → refused)
SERVING_ARTIFACT = "serving"  # pm.artifacts key of ServingModel.precompute's output


class ServingModel:
    """A registered version ready to serve (see the module docstring)."""

    def __init__(self, settings: Settings, data: Path, version: str = "latest") -> None:
        torch.set_num_threads(1)  # one BLAS thread per worker process: more oversubscribes the cores (FACTS)
        registry = ModelRegistry(settings)
        versions = registry.versions()
        if not versions:
            raise NotFoundError("no trained model yet: run `aidg train --data DIR` (or `aidg demo`) first")
        version = versions[-1] if version == "latest" else version
        weights = registry.weights_path(version)
        cipher = Cipher.from_settings(settings)
        self._prepare(settings, load_profile_model(weights, cipher), data, version, cipher)
        # what is served, the same on every replica: the trained weights and the merchants served at the as-of date
        # (a shared Redis or database may hold another deployment's rows and posterior)
        # (of the decrypted weights: re-encrypting them in a key rotation keeps the fingerprint and the posterior)
        h = hashlib.blake2b(self.cipher.read_bytes(weights), digest_size=8)
        h.update(f"{self.as_of}|{'|'.join(map(str, self.ctx.merchant_ids))}".encode())
        self.fingerprint = h.hexdigest()
        self.posterior_name = f"risk_aware_ts/v{self.version}-{self.fingerprint}"

    def _prepare(
        self, settings: Settings, pm: ProfileModel, data: Path, version: str, cipher: Cipher, write_cache: bool = True
    ) -> None:
        """Everything but the registry: the data's coded tables, the snapshot, the generator, the projection
        (``write_cache``: keep a computed snapshot under ``AIDG_HOME/cache``; not while precomputing at training)."""
        self.version, self.settings, self.data, self.cipher = version, settings, Path(data), cipher
        self._write_cache = write_cache
        self.explainer: Explainer = load_explainer(pm, settings)
        self.scorer = self.explainer.scorer.eval()
        self.as_of = pd.Timestamp(pm.meta["as_of"])
        self.tables, _, _ = load_data_folder(data)
        self.ctx = FeatureContext.from_tables(self.tables, self.as_of)
        # a version precomputes its data folder's snapshot and projection at training (training.serving_inputs):
        # used when the served folder is that folder, unchanged; otherwise computed here
        stored = pm.artifacts.get(SERVING_ARTIFACT) or {}
        self.data_hash = OfflineStore(data, cipher).content_hash()
        self.precomputed = stored.get("data_hash") == self.data_hash and stored.get("merchants") == len(
            self.ctx.merchant_ids
        )
        self.snap = self._snapshot(pm, data, stored.get("snapshot") if self.precomputed else None)
        self.merchants = self.tables["merchants"].reset_index(drop=True)
        self.generator = CandidateGenerator(self.merchants, self.tables["deals"], settings.candidates)
        names = self.scorer.config.token_names
        self.token_names = names
        self.x_index = {t: MERCHANT_NAMES.index(t) for t in names if t in MERCHANT_NAMES}
        self.n_prop, self.n_over = override_counts(self.ctx, cutoff_seconds(self.as_of))
        self._compiled: tuple[int, Any] = (0, None)  # (deals per request, compiled scorer) once compile() ran
        train = pm.meta.get("train_merchants", [])
        if self.precomputed and stored.get("projector"):
            self._probe(train, PROBE_MERCHANTS)
            self.projector = ContextProjector.from_state(stored["projector"])
        else:
            self.projector = ContextProjector().fit(self._probe(train, PROJECTOR_MERCHANTS))
        # online rows and cached bundles of this version live under their own key prefix, so a champion and a
        # challenger share one Redis; "current": the existing system (always the merchant's current deal)
        self.namespace = f"v{self.version}/"
        self.serving_policy = str(pm.meta.get("serving_policy", "risk_aware_ts"))

    @classmethod
    def precompute(cls, settings: Settings, pm: ProfileModel, data: Path) -> dict[str, Any]:
        """What a version stores for serving its own data folder (:data:`SERVING_ARTIFACT`): the folder's digest, the
        snapshot (packed as the disk cache is) and the fitted projection; ``aidg train`` calls it before registering."""
        self = cls.__new__(cls)
        self._prepare(settings, pm, data, "training", Cipher.plain(), write_cache=False)
        return {"data_hash": self.data_hash, "merchants": len(self.ctx.merchant_ids),
                "snapshot": self.snap.to_bytes(), "projector": self.projector.state()}  # fmt: skip

    # -- start-up ------------------------------------------------------------------------------
    def _snapshot(self, pm: ProfileModel, data: Path, stored: bytes | None) -> Snapshot:
        """Every merchant's scorer inputs at the as-of date: the version's own when it precomputed this folder's,
        else computed once per (version, data) and kept on disk."""
        if stored is not None:
            return Snapshot.from_bytes(stored, self.as_of)
        tag = hashlib.blake2b(str(Path(data).resolve()).encode(), digest_size=6).hexdigest()
        # a derived version (demo.challengers) keeps its base's encoders, hence its base's snapshot
        encoders = str((pm.meta.get("derived") or {}).get("base_version", self.version))
        path = self.settings.paths.cache / f"snapshot-v{encoders}-{tag}.bin"
        if path.exists():
            try:  # encrypted at rest with a key; a file of another key, or plain while a key is set: recomputed
                raw = path.read_bytes()
                if is_encrypted(raw) != self.cipher.enabled:
                    raise DataError(f"{path} is {'plain' if self.cipher.enabled else 'encrypted'}")
                packed = self.cipher.decrypt_bytes(raw, source=str(path))
                if unpack_arrays(packed)[0].get("merchants") == len(self.ctx.merchant_ids):
                    return Snapshot.from_bytes(packed, self.as_of)
            except (DataError, ConfigError) as exc:
                log.warning("recomputing the snapshot cache (%s)", exc)  # a damaged cache file is recomputed
        snap = snapshot(pm, self.ctx, self.as_of, seed=int(pm.meta.get("seed", 0)))
        if not self._write_cache:
            return snap
        packed = snap.to_bytes()
        if self.cipher.enabled:  # every merchant's scorer inputs: merchant data
            self.cipher.write_bytes(path, packed)
            return snap
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{id(self)}")
        tmp.write_bytes(packed)
        tmp.replace(path)
        return snap

    def _probe(self, train_merchants: list[str], n: int) -> np.ndarray:
        """Score the first ``n`` training merchants' variants: their representations (the projection's data), and a
        refusal when any output is not finite (finite weights can still overflow: such a version never serves)."""
        known = [m for m in sorted(train_merchants) if m in self.ctx.merchant_code.index] or list(self.ctx.merchant_ids)
        reps = []
        for m in known[:n]:
            b = unpack_bundle(self._bundle_bytes(self.feature_row(m), self.as_of, self.settings.bandit.n_candidates))
            out = self._forward(b)
            bad = [k for k in (*OUTPUTS, "representation") if not torch.isfinite(out[k]).all()]
            if bad:  # finite weights can still overflow: such a version never serves (the champion keeps serving)
                raise DataError(f"model version {self.version} gives non-finite {', '.join(bad)} for merchant "
                                f"{m!r}; refusing to serve it")  # fmt: skip
            reps.append(out["representation"][0].numpy())
        return np.concatenate(reps)

    def feature_row(self, merchant_id: str) -> FeatureRow:
        """The merchant's materialised online features from the snapshot."""
        if merchant_id not in self.ctx.merchant_code.index:
            raise NotFoundError(f"unknown merchant {merchant_id!r}")
        r = int(self.ctx.merchant_code[merchant_id])
        s = self.snap
        return FeatureRow(
            merchant_id, self.version, int(s.view.category[r]), int(s.view.secondary[r]), s.view.numeric[r].copy(),
            s.profile[r], s.intent[r], s.memory[r], s.memory_mask[r],
            n_proposals=int(self.n_prop[r]), n_overrides=int(self.n_over[r]),
        )  # fmt: skip

    def materialize(self, store: OnlineStore, batch: int = 500) -> int:
        """Write every merchant's feature row to the online store (skipped when this version is already there)."""
        ns = self.namespace
        marker = f"__materialized__/{ns}{self.fingerprint}"
        if store.read([marker])[0] is not None:
            return 0
        ids = list(self.ctx.merchant_ids)
        for i in range(0, len(ids), batch):
            store.write({ns + m: self.feature_row(m).to_bytes() for m in ids[i : i + batch]})
        store.write({marker: b"1"})
        return len(ids)

    # -- the cache's loader --------------------------------------------------------------------
    def _bundle_bytes(self, row: FeatureRow, at: pd.Timestamp, n: int) -> bytes:
        mid = row.merchant_id
        cand = self.generator.generate(mid, at, n)
        r = int(self.ctx.merchant_code[mid])
        m = self.merchants.iloc[r]
        current = pd.DataFrame(
            {
                "merchant_id": [mid], "variant": [-1], "discount_pct": [float(m.baseline_discount_pct)],
                "price": [float(m.baseline_price)], "duration_days": [int(m.baseline_duration_days)],
                "category_id": [str(m.category_id)], "focus": ["primary"], "type": ["current"], "distance": [0.0],
            }
        )  # fmt: skip
        cand = pd.concat([cand, current], ignore_index=True)
        cats = cand.category_id.astype(str).map(self.ctx.category_code)
        if cats.isna().any():
            raise DataError(f"merchant {mid!r} has a category the model does not know")
        codes = cats.astype(int).to_numpy()
        view = MerchantView(row.x[None], np.array([row.category]), np.array([row.secondary]), list(MERCHANT_NAMES))
        deal = deal_view(
            self.merchants.iloc[[r]], view, np.zeros(len(cand), np.int64), cand.discount_pct.to_numpy(float),
            cand.price.to_numpy(float), cand.duration_days.to_numpy(float), codes,
        )  # fmt: skip
        if not np.isfinite(deal).all():
            raise DataError(f"merchant {mid!r}: its deal terms give non-finite features; check its habitual deal")
        c = int(self.snap.view.category[r])
        category = str(self.ctx.category_ids[c]) if c >= 0 else "unknown"
        return pack_bundle(row, str(at.date()), category, cand, deal, codes.astype(np.int64))

    def load_bundles(self, store: OnlineStore, keys: list[str]) -> dict[str, bytes]:
        """The embedding cache's loader: ``merchant|date|n`` keys → packed bundles (unknown merchants left out).

        A row missing for a merchant the snapshot knows (the store lost it: a Redis restarted without its
        data) is rebuilt from the snapshot and written back, so the service recovers by itself.
        """
        parsed = [k.split("|") for k in keys]
        rows = store.read([p[0] for p in parsed])
        out, lost = {}, {}
        known = self.ctx.merchant_code.index
        for key, (name, day, n), raw in zip(keys, parsed, rows, strict=True):
            if raw is None:
                mid = name.removeprefix(self.namespace)
                if not name.startswith(self.namespace) or mid not in known:
                    continue
                row = self.feature_row(mid)
                lost[name] = row.to_bytes()
            else:
                row = FeatureRow.from_bytes(raw)
            out[key] = self._bundle_bytes(row, pd.Timestamp(day), int(n))
        if lost:
            store.write(lost)
            log.info("rebuilt %d online feature row(s) the store had lost, from the snapshot", len(lost))
        return out

    def bundle_from_snapshot(self, merchant_id: str, at: pd.Timestamp, n: int) -> Bundle:
        """A bundle without the online store or cache (the degraded path when a backend is down)."""
        return unpack_bundle(self._bundle_bytes(self.feature_row(merchant_id), at, n))

    # -- per request ---------------------------------------------------------------------------
    def compile(self) -> bool:
        """TorchInductor-compile the scorer for the default request shape (others run eagerly); False if it failed."""
        n = self.settings.bandit.n_candidates
        try:
            compiled = torch.compile(self.scorer, dynamic=False)
            b = self.bundle_from_snapshot(str(self.ctx.merchant_ids[0]), self.as_of, n)
            with torch.inference_mode():
                compiled(*b.tensors, b.deal, b.deal_category)  # compiles now, not on the first request
        except Exception as exc:  # a missing compiler or an unsupported op: serve eagerly, say why
            log.warning("scorer not compiled (%s: %s); serving it eagerly", type(exc).__name__, exc)
            return False
        self._compiled = (n + 1, compiled)
        return True

    @torch.inference_mode()
    def _forward(self, b: Bundle) -> dict[str, torch.Tensor]:
        shape, compiled = self._compiled
        model = compiled if compiled is not None and b.deal.shape[1] == shape else self.scorer
        return dict(model(*b.tensors, b.deal, b.deal_category))

    def score(self, b: Bundle, top: int = 5) -> dict[str, np.ndarray]:
        """The scorer's outputs for the bundle's n variants + current deal, top-``top`` features, contexts φ."""
        out = self._forward(b)
        res = {k: out[k][0].double().numpy() for k in OUTPUTS}
        res["top_index"], res["top_weight"] = self.scorer.top_attention(out["attention"][0].numpy(), top)
        res["phi"] = self.projector.transform(out["representation"][0].numpy().astype(np.float64))
        return res

    def token_values(self, b: Bundle) -> list[Any]:
        """The value shown beside each scorer token in a top-5 (the category's name, a feature's value, or None)."""
        out: list[Any] = [None] * len(self.token_names)
        for name, j in self.x_index.items():
            v = float(b.x[j])
            out[self.token_names.index(name)] = round(v, 4) if np.isfinite(v) else None
        if "category" in self.token_names:
            out[self.token_names.index("category")] = b.category
        return out


__all__ = ["SERVING_ARTIFACT", "ServingModel"]
