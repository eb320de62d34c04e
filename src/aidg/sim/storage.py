"""A simulated world on disk: its public tables through the offline store, its hidden truth beside them under
``truth/`` (both encrypted with the store's key when one is set; :mod:`aidg.privacy.crypto`)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from aidg.domain import TABLES
from aidg.errors import DataError, MissingTableError
from aidg.sim.world import TRUTH_DIR, World
from aidg.store.offline import OfflineStore


def save_truth(world: World, store: OfflineStore) -> None:
    """Write the hidden truth and the world's metadata under ``<store>/truth`` (Parquet and JSON)."""
    for name, df in world.truth.items():
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        store.write_file(f"{TRUTH_DIR}/{name}.parquet", buf.getvalue())
    store.write_file(f"{TRUTH_DIR}/world.json", json.dumps(world.meta, indent=2, default=str).encode())


def load_truth(store: OfflineStore) -> tuple[dict[str, pd.DataFrame], dict[str, object]]:
    """Read what :func:`save_truth` wrote (encrypted or not); a clear error if the folder has none."""
    d = Path(store.root) / TRUTH_DIR
    if not (d / "world.json").exists():
        raise MissingTableError(
            f"{store.root} has no simulator truth ({TRUTH_DIR}/world.json): the oracle needs a world "
            "written by `aidg simulate`"
        )
    truth = {p.stem: pd.read_parquet(io.BytesIO(store.read_file(f"{TRUTH_DIR}/{p.name}")))
             for p in sorted(d.glob("*.parquet"))}  # fmt: skip
    return truth, json.loads(store.read_file(f"{TRUTH_DIR}/world.json"))


def load_world(folder: str | os.PathLike[str], cipher: Any = None) -> World:
    """A simulated world from a folder written by ``aidg simulate`` (tables + truth), validated.

    ``cipher``: as in :class:`OfflineStore` (an :class:`aidg.privacy.crypto.Cipher`; None: the key in the
    environment). Typed loosely so that the simulator does not import the privacy package.
    """
    store = OfflineStore(folder, cipher)
    truth, meta = load_truth(store)
    tables, _ = store.load(required=tuple(t for t, s in TABLES.items() if s.from_history))
    return World(tables=tables, truth=truth, meta=meta)


def save_world(world: World, folder: str | os.PathLike[str], cipher: Any = None) -> OfflineStore:
    """Write a world: its public tables through the store, its truth beside them (``cipher`` as in
    :func:`load_world`)."""
    store = OfflineStore(folder, cipher)
    store.write(world.tables)
    save_truth(world, store)
    return store


TRAIN_TABLES = ("merchants", "categories", "deals")



OPTIONAL_TABLES = ("cities", "reps", "proposals", "overrides", "feedback_notes", "merchant_locations")



def load_data_folder(data: Path) -> tuple[dict[str, pd.DataFrame], pd.Timestamp | None, World | None]:
    """Validated tables of a data folder, its as-of date and, for a simulated world, the world with its truth."""
    store = OfflineStore(data)
    names = [t for t in (*TRAIN_TABLES, *OPTIONAL_TABLES) if store.path(t) is not None]
    tables, _ = store.load(names, required=TRAIN_TABLES)
    try:
        truth, meta = load_truth(store)
    except DataError:
        return tables, None, None
    world = World(tables=tables, truth=truth, meta=meta)
    return tables, world.as_of, world


__all__ = [
    "OPTIONAL_TABLES",
    "TRAIN_TABLES",
    "load_data_folder",
    "load_truth",
    "load_world",
    "save_truth",
    "save_world",
]
