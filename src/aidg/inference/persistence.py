"""Saving and loading a ProfileModel as one file: configs, state dicts and metadata.

The file holds merchant data (the training merchants' ids in ``meta``, the prototypes' embeddings and medoids in
``artifacts``), so with an encryption key (:mod:`aidg.privacy.crypto`) it is written encrypted.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import torch

from aidg.errors import DataError
from aidg.inference.profile_model import ProfileModel
from aidg.models.deal_history_encoder import DealHistoryConfig, DealHistoryEncoder
from aidg.models.deal_scorer import ContextualDealScorer
from aidg.models.heads import MLPHead
from aidg.models.merchant_graph_sage import GraphConfig, MerchantGraphSAGE
from aidg.models.merchant_profile_encoder import MerchantProfileEncoder, ProfileConfig
from aidg.models.override_pattern_analyzer import OverrideConfig, OverridePatternAnalyzer
from aidg.models.scorer_config import ScorerConfig
from aidg.models.sentiment_extractor import SentimentConfig, SentimentExtractor
from aidg.models.sequence_encoder import EventSequenceEncoder, SequenceConfig
from aidg.privacy.crypto import Cipher

FORMAT = "aidg-profile-1"


def _head_spec(h: MLPHead) -> dict[str, int]:
    return {"in_dim": h.in_dim, "extra_dim": h.extra_dim, "out_dim": h.out_dim, "hidden": int(h.hidden)}


def save_profile_model(pm: ProfileModel, path: Path, cipher: Cipher | None = None) -> Path:
    """Write ``pm`` to ``path`` (torch format; the MiniLM base weights are stored with the fine-tuned top).

    ``cipher``: encryption at rest (None: the key of the settings in the environment; no key: a plain torch file).
    """
    blob: dict[str, Any] = {
        "format": FORMAT,
        "configs": {
            "deal": dataclasses.asdict(pm.deal.config),
            "override": dataclasses.asdict(pm.override.config),
            "graph": dataclasses.asdict(pm.graph.config),
            "sequence": dataclasses.asdict(pm.sequence.config),
            "fusion": dataclasses.asdict(pm.fusion.config),
            "sentiment": dataclasses.asdict(pm.sentiment.config) if pm.sentiment is not None else None,
            "uplift_head": _head_spec(pm.uplift_head),
            "heads": {k: _head_spec(v) for k, v in pm.heads.items()},
            "scorer": dataclasses.asdict(pm.scorer.config) if pm.scorer is not None else None,
        },
        "artifacts": pm.artifacts,
        "state": {k: m.state_dict() for k, m in pm.modules().items()},
        "meta": pm.meta,
    }
    c = cipher or Cipher.from_env()
    if c.enabled:
        buf = io.BytesIO()
        torch.save(blob, buf)
        c.write_bytes(path, buf.getvalue())
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)
    return path


def load_profile_model(path: Path, cipher: Cipher | None = None) -> ProfileModel:
    """Read what :func:`save_profile_model` wrote (encrypted or not); a clear error if the file is not such a model.

    An encrypted file without the key that wrote it raises :class:`~aidg.errors.ConfigError` naming the setting.
    """
    try:
        raw = (cipher or Cipher.from_env()).read_bytes(path)
    except OSError as exc:  # a missing file; a key problem is a ConfigError and passes
        raise DataError(f"{path} is not a readable AIDG profile model ({exc})") from None
    try:
        blob = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise DataError(f"{path} is not a readable AIDG profile model ({exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise DataError(f"{path} is not an AIDG profile model (format {FORMAT!r})")
    c = blob["configs"]
    pm = ProfileModel(
        deal=DealHistoryEncoder(DealHistoryConfig(**c["deal"])),
        override=OverridePatternAnalyzer(OverrideConfig(**c["override"])),
        sentiment=SentimentExtractor(SentimentConfig(**c["sentiment"])) if c["sentiment"] is not None else None,
        graph=MerchantGraphSAGE(GraphConfig(**c["graph"])),
        sequence=EventSequenceEncoder(SequenceConfig(**c["sequence"])),
        fusion=MerchantProfileEncoder(ProfileConfig(**c["fusion"])),
        uplift_head=MLPHead(**c["uplift_head"]),
        heads={k: MLPHead(**v) for k, v in c["heads"].items()},
        meta=blob["meta"],
        scorer=ContextualDealScorer(ScorerConfig(**c["scorer"])) if c.get("scorer") else None,
        artifacts=blob.get("artifacts", {}),
    )
    for name, module in pm.modules().items():
        try:
            module.load_state_dict(blob["state"][name])
        except (KeyError, RuntimeError) as exc:
            raise DataError(
                f"{path}: {name} does not match this version of AIDG ({str(exc)[:200]}); retrain it"
            ) from None
    for name, module in pm.modules().items():
        if any(not torch.isfinite(p).all() for p in module.parameters()):
            raise DataError(f"{path}: weights of {name} contain NaN or infinity; refusing to load")
    return pm.eval()
