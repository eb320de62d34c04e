"""Loading a ``bench/`` script as a module in tests (the benches are scripts, not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def load_bench(filename: str, name: str | None = None) -> ModuleType:
    """``bench/<filename>`` imported as the module ``name`` (default ``bench_<stem>``), registered in
    ``sys.modules`` (its dataclasses resolve their annotations there); ``bench/`` goes on ``sys.path`` too, so
    the script's own imports of its neighbours work."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    path = BENCH_DIR / filename
    spec = importlib.util.spec_from_file_location(name or f"bench_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
