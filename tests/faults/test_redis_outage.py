"""Redis stopped under load (a private redis-server): answers stay below 500 and degraded, no feedback is lost."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.servers import require_binary

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


@pytest.mark.slow
def test_redis_killed_under_load_degrades_loses_nothing_and_recovers(trained: dict[str, Any]) -> None:
    require_binary("redis-server", "apt-get install -y redis-server")
    from redis_outage import run

    out = run(Path(trained["settings"].home), Path(trained["data"]), warm_s=3, outage_s=5, after_s=6, rate=10,
              settle_s=60)  # fmt: skip
    assert out["redis_outage_requests"] >= 10, out
    assert out["redis_outage_non5xx_ratio"] >= 0.999, out
    assert out["redis_outage_degraded_ratio"] == 1.0, out
    assert out["redis_recovery_s"] is not None and out["redis_recovery_s"] <= 40, out
    assert out["feedback_accepted"] > 0 and out["feedback_lost"] == 0, out
    assert out["feedback_applied"] == out["feedback_accepted"], out  # the outbox republished what the bus lost
