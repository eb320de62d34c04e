"""The right to deletion: ``erase_merchant`` removes a merchant from every place AIDG keeps it.

Order (each step is idempotent, so a failed erasure is finished by running it again):

1. an audit record ``erasure/requested`` with the merchant's keyed hash: the tombstone. Replicas re-read it
   with their posterior (every ``posterior_refresh_seconds``) and refuse the merchant from then on; the
   job waits ``grace_s`` so that requests already in flight land before the sweep;
2. the event bus: every entry of the stream and its dead-letter stream that names the merchant or one of
   its decisions (``XDEL``, acknowledged in every group first);
3. the decision log: the merchant's contribution subtracted from the bandit posteriors (exact unlearning,
   :meth:`~aidg.decisionlog.privacy.PrivacyStore.forget_merchant`), then its decisions, reward events,
   shadow records and consent row deleted;
4. the online store (``v<version>/<merchant>``) and the embedding cache (``v<version>/<merchant>|…``);
5. the offline tables of every data folder given (the merchant's row and everything that refers to it,
   :func:`~aidg.privacy.consent.drop_merchants`) and the simulator's truth beside them;
6. every registered model version: the ids in its manifest and weights file's metadata, and its
   prototypes (medoids and embeddings) — the weights themselves are DP-trained (``aidg train --dp``) or
   must be retrained without the merchant, which training does by itself (it leaves erased hashes out);
7. the serving packages under ``AIDG_HOME/cache`` (rebuilt from the erased data at the next start);
8. the log files under ``AIDG_HOME/logs``: the hash (and the raw id, should any have slipped through)
   replaced by ``[erased]``;
9. steps 2–4 once more, for anything a worker wrote while the sweep ran, then the audit record
   ``erasure/done`` with what was removed where (counts only).

The audit records hold the hash and counts, never the raw id: they are how training, replicas and
auditors know the merchant is gone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aidg.config import Settings
from aidg.decisionlog.log import DecisionLog, DecisionRecord
from aidg.decisionlog.privacy import PrivacyStore
from aidg.errors import NotFoundError
from aidg.explain.prototypes import PrototypicalMemory
from aidg.online.serving_package import SERVING_ARTIFACT
from aidg.online.worker import WORKER_LOCK, posterior_of
from aidg.policy.bandit import join_part
from aidg.privacy.consent import drop_merchants
from aidg.privacy.crypto import Cipher, is_encrypted
from aidg.privacy.ids import glob_escape, hash_id, scrub_file
from aidg.progress import Progress
from aidg.registry import WEIGHTS
from aidg.sim import World
from aidg.sim.storage import load_truth, save_truth
from aidg.store import OfflineStore
from aidg.store.online import CacheBackend, OnlineStore
from aidg.stream.bus import EventBus


@dataclass
class Stores:
    """The live stores an erasure or retention run sweeps (the service's backends, or the CLI's own)."""

    decisions: DecisionLog
    online: OnlineStore
    cache: CacheBackend
    bus: EventBus
    stream: str

    @classmethod
    def of(cls, backends: Any, settings: Settings) -> Stores:
        """The stores of a service's (or the CLI's own) ``service.backends.Backends`` and the settings' stream."""
        return cls(backends.decisions, backends.online, backends.cache, backends.bus, settings.stream.stream)


def residual_of(settings: Settings) -> Callable[[DecisionRecord, dict[str, float]], float]:
    """What a decision added to the posterior's ``b``: ``r(applied parts) − score`` (sums of ``join_part``)."""

    def residual(rec: DecisionRecord, parts: dict[str, float]) -> float:
        before: dict[str, float] = {}
        total = 0.0
        for part, value in parts.items():
            joined = join_part(rec.score, rec.predicted, before, part, value, settings.reward)
            if joined is not None:
                total += joined[1]
            before[part] = value
        return total

    return residual


def _live(stores: Stores, merchant_id: str, decision_ids: set[str]) -> dict[str, int]:
    m = glob_escape(merchant_id)

    def names(p: dict[str, Any]) -> bool:
        return p.get("merchant_id") == merchant_id or p.get("decision_id") in decision_ids

    try:
        counts = {"stream_entries": stores.bus.erase(stores.stream, names)}
    except NotImplementedError:  # Kafka keeps records until its topic retention drops them (docs/privacy.md)
        counts = {"stream_entries_not_erasable": 1}
    return {
        **counts,
        "online_rows": stores.online.delete(stores.online.scan(f"*/{m}") + stores.online.scan(m)),
        "cache_entries": stores.cache.delete(stores.cache.scan(f"*/{m}|*") + stores.cache.scan(f"{m}|*")),
    }


def erase_offline(folder: Path, merchant_id: str, cipher: Cipher) -> dict[str, int]:
    """Remove the merchant from a data folder's tables and truth; rows removed per table."""
    store = OfflineStore(folder, cipher)
    tables = {t: store.read_raw(t) for t in store.tables()}
    kept = drop_merchants(tables, [merchant_id])
    removed = {t: len(tables[t]) - len(kept[t]) for t in tables if len(kept[t]) != len(tables[t])}
    if removed:
        store.write({t: kept[t] for t in removed})
    if (store.root / "truth").is_dir():
        truth, meta = load_truth(store)
        changed = False
        for name, df in truth.items():
            if "merchant_id" in df.columns and (df.merchant_id.astype(str) == merchant_id).any():
                truth[name] = df[df.merchant_id.astype(str) != merchant_id].reset_index(drop=True)
                removed[f"truth/{name}"] = len(df) - len(truth[name])
                changed = True
        if changed:
            save_truth(World(tables={}, truth=truth, meta=meta), store)
    return removed


def _scrub_meta(meta: dict[str, Any], merchant_id: str) -> int:
    n = 0
    for key, value in meta.items():
        if isinstance(value, list) and merchant_id in value:
            meta[key] = [v for v in value if v != merchant_id]
            n += 1
        elif isinstance(value, dict):
            n += _scrub_meta(value, merchant_id)
    return n


def erase_models(artifacts: Path, merchant_id: str, cipher: Cipher) -> dict[str, int]:
    """The merchant out of every registered version's weights file (meta, prototypes, the precomputed serving
    snapshot) and manifest."""
    from aidg.inference.persistence import load_profile_model, save_profile_model  # the encoders: only here

    counts = {"model_files": 0, "manifests": 0, "prototypes": 0, "serving_inputs": 0}
    if not artifacts.is_dir():
        return counts
    needle = merchant_id.encode()
    for path in sorted(artifacts.rglob(WEIGHTS)):
        pm = load_profile_model(path, cipher)
        hits = _scrub_meta(pm.meta, merchant_id)
        state = pm.artifacts.get("prototypes")
        if isinstance(state, dict):
            memory = PrototypicalMemory.from_state(state)
            if memory.remove(merchant_id):
                pm.artifacts["prototypes"] = memory.state()
                counts["prototypes"] += 1
                hits += 1
        if pm.artifacts.pop(SERVING_ARTIFACT, None) is not None:  # every merchant's precomputed snapshot rows
            counts["serving_inputs"] += 1  # (the service computes them again from the erased data folder)
            hits += 1
        if hits:
            save_profile_model(pm, path, cipher)
            counts["model_files"] += 1
    for path in sorted(artifacts.rglob("manifest.json")):
        stored = path.read_bytes()
        raw = cipher.read_bytes(path)
        if needle not in raw:
            continue
        manifest = json.loads(raw)
        _scrub_meta(manifest, merchant_id)
        data = json.dumps(manifest, indent=1).encode()
        (cipher if is_encrypted(stored) else Cipher.plain()).write_bytes(path, data)
        counts["manifests"] += 1
    return counts


def erase_merchant(
    settings: Settings,
    merchant_id: str,
    stores: Stores,
    *,
    data_dirs: Sequence[Path] = (),
    actor: str = "cli",
    grace_s: float | None = None,
    known: Callable[[str], bool] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Erase ``merchant_id`` everywhere (see the module docstring); returns the audit record's content.

    Args:
        known: Whether the merchant exists (default: in a data folder, or with decisions); an unknown id is
            a :class:`~aidg.errors.NotFoundError` and nothing is written.
        grace_s: How long replicas get to see the tombstone (default: twice their refresh interval).
    """
    say = progress or (lambda s, f: None)
    t0 = time.perf_counter()
    cipher = Cipher.from_settings(settings)
    subject = hash_id(merchant_id, settings.privacy.id_hash_key)
    pstore = PrivacyStore(stores.decisions)
    ids = pstore.decision_ids(merchant_id)
    exists = (
        known(merchant_id)
        if known is not None
        else bool(ids) or any(_has_merchant(d, merchant_id, cipher) for d in data_dirs)
    )
    if not exists and subject not in pstore.erased():
        raise NotFoundError(f"unknown merchant {merchant_id!r}: not in the data folders nor the decision log")
    pstore.audit("erasure", subject, actor, {"phase": "requested"})
    time.sleep(2 * settings.service.posterior_refresh_seconds if grace_s is None else grace_s)
    say("event bus, decision log, online store and cache", 0.1)
    ids |= pstore.decision_ids(merchant_id)
    counts: dict[str, Any] = _live(stores, merchant_id, ids)
    counts.update(pstore.forget_merchant(merchant_id, residual_of(settings), posterior_of, WORKER_LOCK))
    say("offline tables", 0.4)
    for folder in data_dirs:
        for table, n in erase_offline(Path(folder), merchant_id, cipher).items():
            counts[f"offline/{table}"] = counts.get(f"offline/{table}", 0) + n
    say("registered models", 0.6)
    counts.update(erase_models(settings.paths.home / "mlartifacts", merchant_id, cipher))
    cache = settings.paths.cache  # the serving packages (aidg.online.serving_package) and older snapshot files
    snapshots = sorted([*cache.glob("serving-*"), *cache.glob("snapshot-*")]) if cache.is_dir() else []
    for p in snapshots:
        p.unlink(missing_ok=True)
    counts["serving_snapshots"] = len(snapshots)
    logs = sorted(settings.paths.logs.glob("*.log*")) if settings.paths.logs.is_dir() else []
    counts["log_mentions"] = sum(scrub_file(p, [merchant_id, subject]) for p in logs)
    say("second pass", 0.9)
    again = _live(stores, merchant_id, ids | pstore.decision_ids(merchant_id))
    again.update({f"late_{k}": v for k, v in pstore.forget_merchant(merchant_id, residual_of(settings), posterior_of,
                                                                      WORKER_LOCK).items()})  # fmt: skip
    for k, v in again.items():
        counts[k] = counts.get(k, 0) + v
    counts = {k: int(v) for k, v in counts.items() if v}
    seconds = round(time.perf_counter() - t0, 3)
    audit_id = pstore.audit("erasure", subject, actor, {"phase": "done", "removed": counts, "seconds": seconds})
    say("done", 1.0)
    return {"erased": subject, "audit_id": audit_id, "removed": counts, "seconds": seconds}


def _has_merchant(folder: Path, merchant_id: str, cipher: Cipher) -> bool:
    store = OfflineStore(folder, cipher)
    if store.path("merchants") is None:
        return False
    return bool((store.read_raw("merchants").merchant_id.astype(str) == merchant_id).any())


__all__ = ["Stores", "erase_merchant", "erase_models", "erase_offline", "residual_of"]
