"""A bad registry version never serves: corrupt or NaN weights are refused when a rollout starts (409), a
version whose finite weights still give non-finite scores is rolled back when it fails to load, and the
champion keeps answering, not degraded, all along. (A NaN at request time: ``tests/service/test_safe_answer.py``.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from aidg.config import Settings
from aidg.inference.persistence import load_profile_model
from aidg.privacy.crypto import Cipher
from aidg.registry import ModelRegistry
from aidg.service import create_app

ADMIN = "admin-key-for-bad-model-tests"


@pytest.fixture(scope="module")
def home(trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home of its own holding version 1 (the session's trained model, registered again), so the bad versions
    registered here never reach another test's registry or artifact folder (a copied home would not do: the
    registry's database records absolute artifact paths, so a copy would write into the original's folder)."""
    dst = tmp_path_factory.mktemp("badmodel") / "home"
    pm = ModelRegistry(trained["settings"]).load_profile("1")
    assert ModelRegistry(Settings(home=dst)).register_profile(pm, {"copied_from": "the session's version 1"}, {}) == "1"
    return dst


def _register(home: Path, kind: str) -> str:
    """Register a broken copy of version 1: ``nan`` (a NaN weight), ``truncated`` (half a weights file) or
    ``overflow`` (finite weights whose scores overflow to infinity)."""
    registry = ModelRegistry(Settings(home=home))
    pm = registry.load_profile("1")
    assert pm.scorer is not None
    with torch.no_grad():
        if kind == "nan":
            pm.scorer.heads.weight[0, 0] = float("nan")
        if kind == "overflow":
            pm.scorer.heads.weight.fill_(3e38)  # each finite (float32 max 3.4e38); their sums are not
    version = registry.register_profile(pm, {"broken": kind}, {})
    if kind == "truncated":
        path = registry.weights_path(version)
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    return version


@pytest.fixture(scope="module")
def client(trained: dict[str, Any], home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("badmodel-db")
    settings = Settings(
        home=home, service={"data": trained["data"], "model_version": "1"},
        database_url=f"sqlite:///{tmp / 'decisions.sqlite'}", api_keys={ADMIN: {"role": "admin"}},
    )  # fmt: skip
    with TestClient(create_app(settings), raise_server_exceptions=False, headers={"X-API-Key": ADMIN}) as c:
        yield c


def _champion_answers(client: TestClient) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    mid = next(str(m) for m in engine.model.ctx.merchant_ids if engine.privacy.personalized(str(m)))
    r = client.post("/v1/deals/generate", json={"merchant_id": mid})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_version"] == "1" and out["degraded"] is False and out["decision_id"]


@pytest.mark.parametrize(("kind", "says"), [("nan", "NaN or infinity"), ("truncated", "not a readable")],
                         ids=["nan", "truncated"])
def test_corrupt_or_nan_weights_are_refused_at_start_and_the_champion_keeps_serving(
    client: TestClient, home: Path, kind: str, says: str
) -> None:
    version = _register(home, kind)
    r = client.post("/v1/rollout/start", json={"challenger": version, "reason": f"a {kind} version"})
    assert r.status_code == 409, r.text
    msg = r.json()["message"]
    assert f"version {version} is refused" in msg and says in msg and "version 1) keeps serving" in msg
    assert client.get("/v1/rollout").json()["state"] == "idle"
    _champion_answers(client)


def test_a_version_whose_scores_overflow_is_rolled_back_when_it_fails_to_load(client: TestClient, home: Path) -> None:
    version = _register(home, "overflow")
    r = client.post("/v1/rollout/start", json={"challenger": version, "reason": "finite weights, infinite scores"})
    assert r.status_code == 200, r.text  # its weights are finite: only loading it shows what it does
    deadline = time.monotonic() + 120
    state = r.json()
    while state["state"] != "rolled_back" and time.monotonic() < deadline:
        _champion_answers(client)  # the champion answers while the challenger loads, and after
        time.sleep(0.3)
        state = client.get("/v1/rollout").json()
    assert state["state"] == "rolled_back", state
    last = state["transitions"][0]
    assert last["action"] == "auto_rollback" and "could not be loaded" in last["reason"]
    assert "non-finite" in last["reason"]
    assert state["challenger_loaded"] is False
    _champion_answers(client)


def test_the_bad_versions_stayed_out_of_the_session_home(trained: dict[str, Any], home: Path) -> None:
    """Runs last in this module: the session's trained home still has only its own versions and files."""
    registry = ModelRegistry(trained["settings"])
    versions = registry.versions()
    # every version there still loads (no NaN weights, no truncated file), and so does every weights file in its
    # folder (erasure and retention read them all): no broken copy was written there by mistake
    loaded = [registry.load_profile(v) for v in versions]
    cipher = Cipher.from_settings(trained["settings"])
    files = [load_profile_model(path, cipher) for path in Path(trained["settings"].home).rglob("*.pt")]
    assert versions and len(loaded) == len(versions) and len(files) >= len(versions)
    assert all(torch.isfinite(p).all() for pm in loaded + files for m in pm.modules().values() for p in m.parameters())
