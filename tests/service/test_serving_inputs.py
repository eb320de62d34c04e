"""A model version carries what serving its data folder needs: the snapshot and the bandit's context projection."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aidg.config import Settings
from aidg.online import serving_model as sm
from aidg.registry import ModelRegistry


def _refuse(*a: object, **k: object) -> None:
    raise AssertionError("recomputed what the version carries")


@pytest.fixture()
def carried(trained: dict[str, Any], tmp_path: Path) -> tuple[Settings, Path, str, dict[str, Any]]:
    """The session's version with its serving inputs computed now (another test's erasure may have dropped the
    stored ones, as erasure must), registered in a home of its own, and a copy of its data folder."""
    data = tmp_path / "world"
    shutil.copytree(trained["data"], data)
    pm = ModelRegistry(trained["settings"]).load_profile(trained["report"]["version"])
    pm.artifacts[sm.SERVING_ARTIFACT] = sm.ServingModel.precompute(trained["settings"], pm, data)
    settings = Settings(home=tmp_path / "home")
    version = ModelRegistry(settings).register_profile(pm, {"data": str(data), "as_of": pm.meta["as_of"]}, {})
    return settings, data, version, pm.artifacts[sm.SERVING_ARTIFACT]


def test_a_version_serves_its_own_data_folder_without_recomputing(
    carried: tuple[Settings, Path, str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, data, version, stored = carried
    pm = ModelRegistry(settings).load_profile(version)
    # what the version stores is what computing it again gives, byte for byte
    again = sm.ServingModel.precompute(settings, pm, data)
    assert again["snapshot"] == stored["snapshot"] and again["projector"] == stored["projector"]
    assert again["data_hash"] == stored["data_hash"]
    with monkeypatch.context() as m:
        m.setattr(sm, "snapshot", _refuse)
        m.setattr(sm.ContextProjector, "fit", _refuse)
        served = sm.ServingModel(settings, data, version)
    assert served.precomputed and not list(settings.paths.cache.glob("snapshot-v*.bin"))
    phi = served.projector.transform(np.ones((3, 128)))
    assert phi.shape == (3, served.projector.dim) and np.isfinite(phi).all()


def test_a_changed_data_folder_is_computed_again(carried: tuple[Settings, Path, str, dict[str, Any]]) -> None:
    settings, data, version, _ = carried
    merchants = data / "merchants.parquet"
    df = pd.read_parquet(merchants)
    df.loc[0, "baseline_price"] = float(df.loc[0, "baseline_price"]) + 1.0
    df.to_parquet(merchants, index=False)
    changed = sm.ServingModel(settings, data, version)
    assert not changed.precomputed  # served from a snapshot and projection of the changed tables
    assert list(settings.paths.cache.glob("snapshot-v*.bin"))  # kept for the next start
