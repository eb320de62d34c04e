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
    args = ["--scale", "tiny", "--ddp-scale", "tiny", "--seconds", "5", "--workdir", str(tmp_path), "--json",
            "--arena-merchants", "5", "--arena-rounds", "300"]  # fmt: skip
    assert bench.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    for key in KEYS:
        assert isinstance(out[key], int | float) and out[key] > 0, key
    batch = out["steps"]["score_all"]  # every merchant's variants and its current deal
    assert batch["merchants"] > 0 and batch["rows"] >= batch["candidates"] + batch["merchants"]
    assert 0 < out["cache_hit_rate"] <= 1 and out["steps"]["serve"]["generate_at_rate"]["errors"] == 0
    arena = out["steps"]["arena"]  # the policy arena on a seeded subsample of the held-out merchants
    assert arena["merchants"] == 5 < arena["heldout_merchants"] and "risk_aware_ts" in arena["policies"]
    # --resume: every finished step is kept (not run again), so the second run reports the same figures
    (tmp_path / "steps" / "evaluate.json").unlink()  # as if the run had stopped before its evaluation
    assert bench.main([*args, "--resume", "--skip-ddp"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["train_seconds"] == out["train_seconds"] and again["steps"]["arena"] == arena
    assert again["prototype_type_agreement"] == out["prototype_type_agreement"]  # evaluated again: same model
