"""Shared fixtures: simulated worlds are built once per session."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from aidg.sim import World, simulate
from aidg.sim.storage import save_world


@pytest.fixture(scope="session")
def tiny_world() -> World:
    return simulate("tiny", seed=5)


@pytest.fixture(scope="session")
def small_world() -> World:
    return simulate("small", seed=31)


@pytest.fixture(scope="session")
def small_world_dir(small_world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    save_world(small_world, out)
    return out


@pytest.fixture()
def aidg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private AIDG_HOME for one test."""
    home = tmp_path / "home"
    monkeypatch.setenv("AIDG_HOME", str(home))
    return home


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread inside the block (the tiny world's training and evaluation are then deterministic)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny world trained end to end once (encoders, scorer, explainers), registered under a private home.

    ``AIDG_TEST_TRAINED=DIR``: train it into DIR once and reuse it in later runs (a shortcut for iterating on a
    few tests, and ``bench/protections.py``'s many short runs); tests that register versions add them there."""
    import os
    import pickle

    from aidg import workflows
    from aidg.config import Settings

    keep = os.environ.get("AIDG_TEST_TRAINED")
    root = Path(keep) if keep else tmp_path_factory.mktemp("trained")
    world = simulate("tiny", seed=12)
    data, report_file = root / "world", root / "report.pkl"
    settings = Settings(home=root / "home")
    if keep and report_file.exists():
        return {"settings": settings, "data": data, "world": world, "report": pickle.loads(report_file.read_bytes())}
    save_world(world, data)
    with one_thread():  # bit-for-bit the same model every run (two threads reorder float sums): the goldens hold
        report = workflows.train(settings, data, scale="tiny", seed=0)
    if keep:
        report_file.write_bytes(pickle.dumps(report))
    return {"settings": settings, "data": data, "world": world, "report": report}
