"""What the service serves: one registered version, its merchants' online features, and per-request scoring.

:class:`ServingModel` starts from the version's serving package (:mod:`aidg.online.serving_package`: the scorer,
the explainers, every merchant's snapshot, the context projection and the few tables the candidate generator
reads, in one file) and materialises the snapshot into the online store (:class:`FeatureRow`). It never reads the
registry's weights file or the training tables when the package was made for the data folder served; otherwise it
builds the package once and writes it for the next start.

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

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from aidg.config import Settings
from aidg.domain import SCORER_OUTPUTS as OUTPUTS
from aidg.errors import DataError, NotFoundError
from aidg.explain.explainer import Explainer
from aidg.features.candidates import CandidateGenerator
from aidg.features.merchant_view import MERCHANT_NAMES, MerchantView, deal_view
from aidg.inference.snapshot import Snapshot
from aidg.online.bundle import Bundle, pack_bundle, unpack_bundle
from aidg.online.feature_row import FeatureRow
from aidg.online.serving_package import SERVING_ARTIFACT, ServingPackage, load_package, package_of
from aidg.policy.projector import ContextProjector
from aidg.privacy.crypto import Cipher
from aidg.store.offline import OfflineStore
from aidg.store.online import OnlineStore

if TYPE_CHECKING:
    from aidg.inference.profile_model import ProfileModel

log = logging.getLogger("aidg.service")
PROJECTOR_MERCHANTS = 200  # training merchants whose variants fit the bandit's context projection
PROBE_MERCHANTS = 20  # merchants scored at load when the projection comes with the version (non-finite → refused)


class ServingModel:
    """A registered version ready to serve (see the module docstring)."""

    def __init__(self, settings: Settings, data: Path, version: str = "latest") -> None:
        torch.set_num_threads(1)  # one BLAS thread per worker process: more oversubscribes the cores (FACTS)
        cipher = Cipher.from_settings(settings)
        package, stored = load_package(settings, Path(data), version, cipher)
        self._prepare(settings, package, Path(data), cipher)
        if not stored:  # built now from the registry and the tables: the next start reads it
            package.save(settings, cipher)

    def _prepare(self, settings: Settings, package: ServingPackage, data: Path, cipher: Cipher) -> None:
        """The scorer, explainers, snapshot, candidate generator and projection of ``package`` (the projection
        fitted now when the package does not carry one)."""
        self.package, self.version = package, package.version
        self.settings, self.data, self.cipher = settings, data, cipher
        self.explainer: Explainer = package.explainer(settings)
        self.scorer = self.explainer.scorer
        self.as_of = package.as_of
        self.ctx = package.context()
        self.snap = Snapshot.from_bytes(package.snapshot, self.as_of)
        self.merchants = package.tables["merchants"].reset_index(drop=True)
        self.generator = CandidateGenerator(self.merchants, package.tables["deals"], settings.candidates)
        names = self.scorer.config.token_names
        self.token_names = names
        self.x_index = {t: MERCHANT_NAMES.index(t) for t in names if t in MERCHANT_NAMES}
        self.n_prop, self.n_over = package.proposals, package.overrides
        self.fingerprint = package.fingerprint
        self.posterior_name = f"risk_aware_ts/v{self.version}-{self.fingerprint}"
        self._compiled: tuple[int, Any] = (0, None)  # (deals per request, compiled scorer) once compile() ran
        train = package.meta.get("train_merchants", [])
        self.precomputed = package.projector is not None  # training computed the snapshot and projection
        if package.projector is not None:
            self._probe(train, PROBE_MERCHANTS)
            self.projector = ContextProjector.from_state(package.projector)
        else:  # fitted now, and kept in the package
            self.projector = ContextProjector().fit(self._probe(train, PROJECTOR_MERCHANTS))
            package.projector = self.projector.state()
        # online rows and cached bundles of this version live under their own key prefix, so a champion and a
        # challenger share one Redis; "current": the existing system (always the merchant's current deal)
        self.namespace = f"v{self.version}/"
        self.serving_policy = str(package.meta.get("serving_policy", "risk_aware_ts"))

    @classmethod
    def for_training(
        cls, settings: Settings, pm: ProfileModel, data: Path, reuse: tuple[list[str], Snapshot] | None = None
    ) -> ServingModel:
        """The model training serves its own data folder with, before the version is registered: its package holds
        the snapshot and the fitted projection (:meth:`inputs`), published once the version has a number
        (:meth:`aidg.online.serving_package.ServingPackage.publish`). ``reuse``: a snapshot at the as-of date already
        computed (merchant ids of its rows, snapshot), used when it covers the same merchants."""
        self = cls.__new__(cls)
        data_hash = OfflineStore(data, Cipher.plain()).content_hash()
        self._prepare(settings, package_of(pm, data, "training", data_hash, reuse=reuse), Path(data), Cipher.plain())
        return self

    def inputs(self) -> dict[str, Any]:
        """What a version stores for serving its own data folder (:data:`SERVING_ARTIFACT`): the folder's digest,
        the snapshot and the fitted projection (a package is rebuilt from them when it is lost)."""
        return {"data_hash": self.package.data_hash, "merchants": len(self.ctx.merchant_ids),
                "snapshot": self.package.snapshot, "projector": self.projector.state()}  # fmt: skip

    @classmethod
    def precompute(
        cls, settings: Settings, pm: ProfileModel, data: Path, reuse: tuple[list[str], Snapshot] | None = None
    ) -> dict[str, Any]:
        """:meth:`inputs` of :meth:`for_training` (what ``aidg train`` stores in the version)."""
        return cls.for_training(settings, pm, data, reuse).inputs()

    # -- start-up ------------------------------------------------------------------------------
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
        cand = pd.concat([cand, self.generator.current(mid)], ignore_index=True)
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
