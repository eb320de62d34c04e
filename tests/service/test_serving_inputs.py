"""A model version carries what serving its data folder needs: the snapshot and the bandit's context projection."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aidg.online import serving_model as sm
from aidg.registry import ModelRegistry


def _refuse(*a: object, **k: object) -> None:
    raise AssertionError("recomputed what the version carries")


def test_a_version_serves_its_own_data_folder_without_recomputing(
    trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, version = trained["settings"], trained["report"]["version"]
    pm = ModelRegistry(settings).load_profile(version)
    stored = pm.artifacts[sm.SERVING_ARTIFACT]
    # what training stored is what computing it again gives, byte for byte
    again = sm.ServingModel.precompute(settings, pm, trained["data"])
    assert again["snapshot"] == stored["snapshot"] and again["projector"] == stored["projector"]
    assert again["data_hash"] == stored["data_hash"]
    with monkeypatch.context() as m:
        m.setattr(sm, "snapshot", _refuse)
        m.setattr(sm.ContextProjector, "fit", _refuse)
        served = sm.ServingModel(settings, trained["data"], version)
    assert served.precomputed
    phi = served.projector.transform(np.ones((3, 128)))
    assert phi.shape == (3, served.projector.dim) and np.isfinite(phi).all()


def test_a_changed_data_folder_is_computed_again(trained: dict[str, Any], tmp_path: Path) -> None:
    settings, version = trained["settings"], trained["report"]["version"]
    data = tmp_path / "world"
    shutil.copytree(trained["data"], data)
    assert sm.ServingModel(settings, data, version).precomputed  # an identical copy: the same tables
    merchants = data / "merchants.parquet"
    import pandas as pd

    df = pd.read_parquet(merchants)
    df.loc[0, "baseline_price"] = float(df.loc[0, "baseline_price"]) + 1.0
    df.to_parquet(merchants, index=False)
    changed = sm.ServingModel(settings, data, version)
    assert not changed.precomputed  # served from a snapshot and projection of the changed tables
