"""Registered versions derived from a trained one, for rollouts, drills and the demo's story.

* ``copy``: the same weights as a new version (a retrain that changed nothing):
  a healthy challenger for rollback drills.
* ``current_system``: the same weights serving the merchant's current-system
  deal every time (``meta["serving_policy"] = "current"``): the existing
  system as a champion, scored and explained by the model but never changing
  a deal. The memo's rollout runs the new models against it.
* ``sabotaged``: the scorer's GP30-uplift outputs sign-flipped, so it prefers
  the deals it believes earn least: a deliberately bad challenger.

Each is a real registry version (weights file, manifest, run), tagged with
its kind and its base version.
"""

from __future__ import annotations

from typing import Any

import torch

from aidg.config import Settings
from aidg.errors import DataError
from aidg.registry import ModelRegistry

KINDS = ("copy", "current_system", "sabotaged")


def register_variant(settings: Settings, base_version: str = "latest", kind: str = "copy") -> str:
    """Register a ``kind`` variant of ``base_version``; returns the new version number."""
    if kind not in KINDS:
        raise DataError(f"unknown variant kind {kind!r}; choose one of {', '.join(KINDS)}")
    registry = ModelRegistry(settings)
    pm = registry.load_profile(base_version)
    base = registry.versions()[-1] if base_version == "latest" else base_version
    meta: dict[str, Any] = dict(pm.meta)
    meta["derived"] = {"kind": kind, "base_version": base}
    if kind == "current_system":
        meta["serving_policy"] = "current"
    if kind == "sabotaged":
        if pm.scorer is None:
            raise DataError(f"version {base} has no deal scorer to sabotage")
        with torch.no_grad():  # output 0 of both heads is the GP30 uplift
            pm.scorer.heads.weight[0].neg_()
            pm.scorer.heads.bias[0].neg_()
            pm.scorer.wide.weight[0].neg_()
            pm.scorer.wide.bias[0].neg_()
    pm.meta = meta
    params = {"derived_kind": kind, "base_version": base, "as_of": meta.get("as_of")}
    return registry.register_profile(pm, params, {})


__all__ = ["KINDS", "register_variant"]
