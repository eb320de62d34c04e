"""bench/full_scale.py end to end on the tiny world (heavy: minutes); its figures at the memo's scale come
from the runs the README names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benches import load_bench

KEYS = ("simulate_seconds", "train_seconds", "train_peak_rss_gb", "ddp_speedup_2proc", "batch_candidates_per_s",
        "prototype_type_agreement", "reward_spearman", "serve_cold_start_s", "serve_rss_mb_per_worker",
        "cache_hit_rate", "generate_p99_ms_at_100rps")  # fmt: skip


@pytest.mark.heavy
def test_full_scale_bench_reports_every_key_on_the_tiny_world(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench("full_scale.py")
    args = ["--scale", "tiny", "--ddp-scale", "tiny", "--seconds", "5", "--workdir", str(tmp_path), "--json"]
    assert bench.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    for key in KEYS:
        assert isinstance(out[key], int | float) and out[key] > 0, key
    batch = out["steps"]["score_all"]  # every merchant's variants and its current deal
    assert batch["merchants"] > 0 and batch["rows"] >= batch["candidates"] + batch["merchants"]
    assert 0 < out["cache_hit_rate"] <= 1 and out["steps"]["serve"]["generate_at_rate"]["errors"] == 0
