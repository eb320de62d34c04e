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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from aidg.config import Settings
from aidg.errors import ConfigError, DataError, NotFoundError
from aidg.explain.bundle import load_explainer
from aidg.explain.explainer import Explainer
from aidg.features.context import FeatureContext
from aidg.features.merchant_view import MERCHANT_NAMES, MerchantView, deal_view, override_counts
from aidg.models.persistence import load_profile_model
from aidg.models.profile_model import cutoff_seconds
from aidg.models.scorer_data import Snapshot, snapshot
from aidg.models.scoring import OUTPUTS
from aidg.policy.candidates import CandidateGenerator
from aidg.policy.context import ContextProjector
from aidg.privacy.crypto import Cipher, is_encrypted
from aidg.registry import ModelRegistry
from aidg.store.arrays import pack_arrays, unpack_arrays
from aidg.store.online import CacheBackend, OnlineStore
from aidg.stream.rows import FeatureRow, bundle_key
from aidg.workflows import load_training_data

log = logging.getLogger("aidg.service")
PROJECTOR_MERCHANTS = 200  # training merchants whose variants fit the bandit's context projection
SNAPSHOT_ARRAYS = ("numeric", "category", "secondary", "profile", "intent", "memory", "memory_mask")


@dataclass
class Bundle:
    """One merchant's cached serving inputs for one day: scorer tensors, the variants and the current deal."""

    merchant_id: str
    at: str
    category: str
    override_rate: float
    tensors: tuple[torch.Tensor, ...]  # the scorer's merchant inputs, batch of one
    deal: torch.Tensor  # (1, n + 1, D): the n variants, then the current deal
    deal_category: torch.Tensor  # (1, n + 1)
    x: np.ndarray  # (F,) readable features (shown in the top-5)
    terms: dict[str, np.ndarray]  # variant, discount_pct, price, duration_days, distance: (n + 1,)
    labels: dict[str, list[str]]  # category_id, focus, type: n + 1 strings

    @property
    def n(self) -> int:
        return int(self.deal.shape[1]) - 1


def _bundle_bytes(
    row: FeatureRow, at: str, category: str, cand: pd.DataFrame, deal: np.ndarray, dcat: np.ndarray
) -> bytes:
    meta = {
        "merchant_id": row.merchant_id,
        "at": at,
        "category_name": category,
        "category": row.category,
        "override_rate": row.override_rate,
        **{k: cand[k].astype(str).tolist() for k in ("category_id", "focus", "type")},
    }
    arrays = {
        **{k: getattr(row, k) for k in ("x", "profile", "intent", "memory", "memory_mask")},
        "deal": deal,
        "deal_category": dcat,
        **{k: cand[k].to_numpy(np.float64) for k in ("variant", "discount_pct", "price", "duration_days", "distance")},
    }
    return pack_arrays(meta, arrays)


def unpack_bundle(data: bytes) -> Bundle:
    """A cached value back as tensors (no copies of the arrays)."""
    meta, a = unpack_arrays(data)
    t = torch.from_numpy
    tensors = (
        t(np.array(a["x"][None], np.float32)),
        torch.tensor([int(meta["category"])], dtype=torch.int64),
        t(np.array(a["profile"][None], np.float32)),
        t(np.array(a["intent"][None], np.float32)),
        t(np.array(a["memory"][None], np.float32)),
        t(np.array(a["memory_mask"][None], bool)),
    )
    return Bundle(
        str(meta["merchant_id"]),
        str(meta["at"]),
        str(meta["category_name"]),
        float(meta["override_rate"]),
        tensors,
        t(np.array(a["deal"][None], np.float32)),
        t(np.array(a["deal_category"][None], np.int64)),
        np.asarray(a["x"]),
        {k: np.asarray(a[k]) for k in ("variant", "discount_pct", "price", "duration_days", "distance")},
        {k: list(meta[k]) for k in ("category_id", "focus", "type")},
    )


def patched_bundle(raw: bytes, row: FeatureRow) -> bytes:
    """A cached bundle with the merchant's updated readable features (the stream worker's write-through).

    Only the override record changes with feedback, and the variants' deal features do not read it, so the
    scorer's merchant features and the guard's override rate are all there is to replace.
    """
    meta, arrays = unpack_arrays(raw)
    meta["override_rate"] = row.override_rate
    return pack_arrays(meta, {**arrays, "x": row.x})


def refreshed_bundles(cache: CacheBackend, row: FeatureRow, payload: dict[str, Any]) -> dict[str, bytes]:
    """The cached bundle a decision was served from, patched with ``row``; empty when it is not cached."""
    at, n = payload.get("as_of"), payload.get("n_variants")
    if at is None or n is None:
        return {}
    key = str(payload.get("ns", "")) + bundle_key(row.merchant_id, at, int(n))
    raw = cache.get_many([key])[0]
    return {key: patched_bundle(raw, row)} if raw is not None else {}


class ServingModel:
    """A registered version ready to serve (see the module docstring)."""

    def __init__(self, settings: Settings, data: Path, version: str = "latest") -> None:
        torch.set_num_threads(1)  # one BLAS thread per worker process: more oversubscribes the cores (FACTS)
        registry = ModelRegistry(settings)
        versions = registry.versions()
        if not versions:
            raise NotFoundError("no trained model yet: run `aidg train --data DIR` (or `aidg demo`) first")
        self.version = versions[-1] if version == "latest" else version
        self.settings, self.data = settings, Path(data)
        weights = registry.weights_path(self.version)
        self.cipher = Cipher.from_settings(settings)
        pm = load_profile_model(weights, self.cipher)
        self.explainer: Explainer = load_explainer(pm, settings)
        self.scorer = self.explainer.scorer.eval()
        self.as_of = pd.Timestamp(pm.meta["as_of"])
        self.tables, _, _ = load_training_data(data)
        self.ctx = FeatureContext.from_tables(self.tables, self.as_of)
        self.snap = self._snapshot(pm, data)
        self.merchants = self.tables["merchants"].reset_index(drop=True)
        self.generator = CandidateGenerator(self.merchants, self.tables["deals"], settings.candidates)
        names = self.scorer.config.token_names
        self.token_names = names
        self.readable = np.array([i for i, t in enumerate(names) if not t.startswith("profile[")])
        self.x_index = {t: MERCHANT_NAMES.index(t) for t in names if t in MERCHANT_NAMES}
        self.n_prop, self.n_over = override_counts(self.ctx, cutoff_seconds(self.as_of))
        self._compiled: tuple[int, Any] = (0, None)  # (deals per request, compiled scorer) once compile() ran
        self.projector = self._fit_projector(pm.meta.get("train_merchants", []))
        # what is served, the same on every replica: the trained weights and the merchants served at the as-of date
        # (a shared Redis or database may hold another deployment's rows and posterior)
        # (of the decrypted weights: re-encrypting them in a key rotation keeps the fingerprint and the posterior)
        h = hashlib.blake2b(self.cipher.read_bytes(weights), digest_size=8)
        h.update(f"{self.as_of}|{'|'.join(map(str, self.ctx.merchant_ids))}".encode())
        self.fingerprint = h.hexdigest()
        self.posterior_name = f"risk_aware_ts/v{self.version}-{self.fingerprint}"
        # online rows and cached bundles of this version live under their own key prefix, so a champion and a
        # challenger share one Redis; "current": the existing system (always the merchant's current deal)
        self.namespace = f"v{self.version}/"
        self.serving_policy = str(pm.meta.get("serving_policy", "risk_aware_ts"))

    # -- start-up ------------------------------------------------------------------------------
    def _snapshot(self, pm: Any, data: Path) -> Snapshot:
        """Every merchant's scorer inputs at the as-of date, computed once per (version, data) and kept on disk."""
        tag = hashlib.blake2b(str(Path(data).resolve()).encode(), digest_size=6).hexdigest()
        # a derived version (monitor.challengers) keeps its base's encoders, hence its base's snapshot
        encoders = str((pm.meta.get("derived") or {}).get("base_version", self.version))
        path = self.settings.paths.cache / f"snapshot-v{encoders}-{tag}.bin"
        if path.exists():
            try:  # encrypted at rest with a key; a file of another key, or plain while a key is set: recomputed
                raw = path.read_bytes()
                if is_encrypted(raw) != self.cipher.enabled:
                    raise DataError(f"{path} is {'plain' if self.cipher.enabled else 'encrypted'}")
                meta, a = unpack_arrays(self.cipher.decrypt_bytes(raw, source=str(path)))
                if meta.get("merchants") == len(self.ctx.merchant_ids):
                    view = MerchantView(np.array(a["numeric"]), np.array(a["category"]), np.array(a["secondary"]),
                                        list(MERCHANT_NAMES))  # fmt: skip
                    return Snapshot(self.as_of, view, *(np.array(a[k]) for k in SNAPSHOT_ARRAYS[3:]))
            except (DataError, ConfigError) as exc:
                log.warning("recomputing the snapshot cache (%s)", exc)  # a damaged cache file is recomputed
        snap = snapshot(pm, self.ctx, self.as_of, seed=int(pm.meta.get("seed", 0)))
        v = snap.view
        arrays = dict(zip(SNAPSHOT_ARRAYS, (v.numeric, v.category, v.secondary, snap.profile, snap.intent,
                                            snap.memory, snap.memory_mask), strict=True))  # fmt: skip
        packed = pack_arrays({"merchants": len(self.ctx.merchant_ids)}, arrays)
        if self.cipher.enabled:  # every merchant's scorer inputs: merchant data
            self.cipher.write_bytes(path, packed)
            return snap
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{id(self)}")
        tmp.write_bytes(packed)
        tmp.replace(path)
        return snap

    def _fit_projector(self, train_merchants: list[str]) -> ContextProjector:
        """The bandit's context projection, fitted on training merchants' variants (deterministic per version)."""
        known = [m for m in sorted(train_merchants) if m in self.ctx.merchant_code.index] or list(self.ctx.merchant_ids)
        reps = []
        for m in known[:PROJECTOR_MERCHANTS]:
            b = unpack_bundle(self._bundle_bytes(self.feature_row(m), self.as_of, self.settings.bandit.n_candidates))
            out = self._forward(b)
            bad = [k for k in (*OUTPUTS, "representation") if not torch.isfinite(out[k]).all()]
            if bad:  # finite weights can still overflow: such a version never serves (the champion keeps serving)
                raise DataError(f"model version {self.version} gives non-finite {', '.join(bad)} for merchant "
                                f"{m!r}; refusing to serve it")  # fmt: skip
            reps.append(out["representation"][0].numpy())
        return ContextProjector().fit(np.concatenate(reps))

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
        return _bundle_bytes(row, str(at.date()), category, cand, deal, codes.astype(np.int64))

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
        attn = out["attention"][0].numpy()[:, self.readable]  # (n + 1, readable)
        k = min(top, attn.shape[1])
        idx = np.argpartition(-attn, k - 1, axis=1)[:, :k]
        w = np.take_along_axis(attn, idx, 1)
        order = np.argsort(-w, axis=1)
        res["top_index"] = self.readable[np.take_along_axis(idx, order, 1)]
        res["top_weight"] = np.take_along_axis(w, order, 1)
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


__all__ = ["Bundle", "ServingModel", "patched_bundle", "refreshed_bundles", "unpack_bundle"]
