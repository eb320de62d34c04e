"""Fixtures of the API fuzzing tests (``test_fuzz.py``): the harness of ``bench/fuzz.py`` and the app it fuzzes."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.benches import load_bench


@pytest.fixture(scope="session")
def fuzz_harness() -> ModuleType:
    """``bench/fuzz.py`` as a module (``fuzz``, ``fuzz_settings``, ``Served``)."""
    return load_bench("fuzz.py")


@pytest.fixture(scope="module")
def fuzz_app(trained: dict[str, Any], fuzz_harness: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The service as ``bench/fuzz.py`` fuzzes it: the session's trained home, a private copy of its data folder
    and a private decision log (rollout and consent changes stay here), an admin key, no rate limit in the way."""
    from aidg.service import create_app

    tmp = tmp_path_factory.mktemp("fuzz")
    return create_app(fuzz_harness.fuzz_settings(Path(trained["settings"].home), Path(trained["data"]), tmp))
