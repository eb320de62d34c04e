"""A model version carries what serving its data folder needs: the snapshot and the bandit's context projection; the
serving package then holds everything a start reads (no registry weights, no training tables)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aidg.config import Settings
from aidg.inference import snapshot as snapshot_module
from aidg.online import serving_model as sm
from aidg.online import serving_package as sp
from aidg.registry import ModelRegistry


def _refuse(*a: object, **k: object) -> None:
    raise AssertionError("recomputed what the version carries")


@pytest.fixture(scope="module")
def inputs(trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The session's version's serving inputs computed now, once for the module (another test's erasure may have
    dropped the stored ones, as erasure must; they depend on the data folder's content, not its path)."""
    data = tmp_path_factory.mktemp("inputs") / "world"
    shutil.copytree(trained["data"], data)
    pm = ModelRegistry(trained["settings"]).load_profile(trained["report"]["version"])
    return dict(sm.ServingModel.precompute(trained["settings"], pm, data))


@pytest.fixture()
def carried(
    trained: dict[str, Any], inputs: dict[str, Any], tmp_path: Path
) -> tuple[Settings, Path, str, dict[str, Any]]:
    """The session's version with its serving inputs, registered in a home of its own, and a copy of its data
    folder (each test its own: some change them)."""
    data = tmp_path / "world"
    shutil.copytree(trained["data"], data)
    pm = ModelRegistry(trained["settings"]).load_profile(trained["report"]["version"])
    pm.artifacts[sm.SERVING_ARTIFACT] = dict(inputs)
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
        m.setattr(snapshot_module, "snapshot", _refuse)
        m.setattr(sm.ContextProjector, "fit", _refuse)
        served = sm.ServingModel(settings, data, version)
    assert served.precomputed and list(settings.paths.cache.glob("serving-v*.bin"))  # the package, for next time
    phi = served.projector.transform(np.ones((3, 128)))
    assert phi.shape == (3, served.projector.dim) and np.isfinite(phi).all()


def test_training_reuses_the_explainers_snapshot_byte_for_byte(
    carried: tuple[Settings, Path, str, dict[str, Any]], trained: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``aidg train`` hands the as-of snapshot it fitted the explainers on to the serving inputs: the same bytes
    as computing it again, and not computed again."""
    from aidg.features.context import FeatureContext
    from aidg.sim.storage import load_data_folder

    settings, data, version, stored = carried
    pm = ModelRegistry(settings).load_profile(version)
    pm.artifacts.pop(sp.SERVING_ARTIFACT)
    tables, _, _ = load_data_folder(data)
    ctx = FeatureContext.from_tables(tables, pd.Timestamp(pm.meta["as_of"]))
    snap = snapshot_module.snapshot(pm, ctx, ctx.as_of, seed=int(pm.meta["seed"]))
    with monkeypatch.context() as m:
        m.setattr(snapshot_module, "snapshot", _refuse)
        again = sm.ServingModel.precompute(settings, pm, data, ([str(i) for i in ctx.merchant_ids], snap))
    assert again["snapshot"] == stored["snapshot"] and again["projector"] == stored["projector"]
    fewer = ([str(i) for i in ctx.merchant_ids[1:]], snap.take(np.arange(1, len(ctx.merchant_ids))))
    with monkeypatch.context() as m, pytest.raises(AssertionError, match="recomputed"):
        m.setattr(snapshot_module, "snapshot", _refuse)  # other merchants: not reused
        sm.ServingModel.precompute(settings, pm, data, fewer)


def test_training_publishes_the_package_a_start_would_build(
    carried: tuple[Settings, Path, str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``aidg train`` publishes the package it built before registering (no second build): the same fingerprint
    and inputs as building it from the registry and the tables, and a start reads it."""
    from aidg.privacy.crypto import Cipher

    settings, data, version, stored = carried
    pm = ModelRegistry(settings).load_profile(version)
    trained_model = sm.ServingModel.for_training(settings, pm, data)
    trained_model.package.publish(settings, version, Cipher.plain())
    built = sp.build_package(settings, data, version, Cipher.plain(), stored["data_hash"])
    assert trained_model.package.fingerprint == built.fingerprint and trained_model.package.version == version
    assert trained_model.package.snapshot == built.snapshot == stored["snapshot"]
    with monkeypatch.context() as m:
        m.setattr(sp, "build_package", _refuse)
        served = sm.ServingModel(settings, data, version)
    assert served.fingerprint == built.fingerprint and served.projector.state() == stored["projector"]


def test_a_start_from_the_package_reads_neither_the_registry_weights_nor_the_tables(
    carried: tuple[Settings, Path, str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, data, version, _ = carried
    first = sm.ServingModel(settings, data, version)  # writes the package
    with monkeypatch.context() as m:
        m.setattr(sp, "build_package", _refuse)  # the registry's weights file and the data folder's tables
        m.setattr("aidg.sim.storage.load_data_folder", _refuse)
        again = sm.ServingModel(settings, data, version)
    assert again.fingerprint == first.fingerprint and again.posterior_name == first.posterior_name
    assert (again.snap.profile == first.snap.profile).all() and again.projector.state() == first.projector.state()
    mid = str(first.ctx.merchant_ids[0])
    a = first.score(first.bundle_from_snapshot(mid, first.as_of, 10))
    b = again.score(again.bundle_from_snapshot(mid, again.as_of, 10))
    assert all(np.array_equal(a[k], b[k]) for k in a)  # the same answers, byte for byte


def test_a_changed_data_folder_is_computed_again(carried: tuple[Settings, Path, str, dict[str, Any]]) -> None:
    settings, data, version, _ = carried
    merchants = data / "merchants.parquet"
    df = pd.read_parquet(merchants)
    df.loc[0, "baseline_price"] = float(df.loc[0, "baseline_price"]) + 1.0
    df.to_parquet(merchants, index=False)
    changed = sm.ServingModel(settings, data, version)
    assert not changed.precomputed  # served from a snapshot and projection of the changed tables
    assert list(settings.paths.cache.glob("serving-v*.bin"))  # kept for the next start
    with pytest.MonkeyPatch.context() as m:
        m.setattr(sp, "build_package", _refuse)
        assert sm.ServingModel(settings, data, version).precomputed  # read back, projection included
