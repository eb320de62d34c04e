"""A backend stopped under load (a private redis-server, a private PostgreSQL cluster): answers stay below 500 and
degraded, ``/readyz`` names what is down, no feedback is lost, and the service recovers by itself."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.servers import require_binary

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


@pytest.mark.heavy  # over ~20 s: make faults / make test-all (make test stays under 10 minutes)
@pytest.mark.parametrize("backend", ["redis", "postgresql"])
def test_a_backend_killed_under_load_degrades_loses_nothing_and_recovers(trained: dict[str, Any], backend: str) -> None:
    if backend == "redis":
        require_binary("redis-server", "apt-get install -y redis-server")
    else:
        require_binary("initdb", "apt-get install -y postgresql", also=("/usr/lib/postgresql/*/bin/initdb",))
    from outage import run

    out = run(Path(trained["settings"].home), Path(trained["data"]), backend=backend, warm_s=3, outage_s=5, after_s=6,
              rate=10, settle_s=60)  # fmt: skip
    assert out["outage_requests"] >= 10, out
    assert out["outage_non5xx_ratio"] >= 0.999, out
    assert out["outage_degraded_ratio"] == 1.0, out["outage_not_degraded"]
    assert out["readyz_named_it"], out
    assert out["recovery_s"] is not None and out["recovery_s"] <= 40, out
    assert out["feedback_accepted"] > 0 and out["feedback_lost"] == 0, out
    assert out["feedback_applied"] == out["feedback_accepted"], out  # the outbox / the spill caught up
