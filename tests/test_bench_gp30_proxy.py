"""bench/gp30_proxy.py on the tiny world: one JSON object with every proxy's figures, in range, and the trigger
catches the oracle-bad challenger against the oracle-good champion."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gp30_proxy.py"
CORRELATIONS = ("decision_spearman", "decision_pearson", "within_merchant_spearman_median", "arm_log_ratio_pearson")
SHARES = ("arm_sign_agreement", "drop_sensitivity", "drop_false_alarm")
REQUIRED = ("approval", "approval_x_conversion", "conversion_x_margin", "approval_x_conversion_x_margin")


def test_gp30_proxy_bench_reports_every_proxy_and_detects_the_bad_challenger() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--scale", "tiny", "--seed", "7", "--pairs", "40", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)  # one object on stdout; progress went to stderr
    assert "merchants" in proc.stderr
    assert out["chosen"] == "approval_x_conversion_x_discount_margin"
    assert out["pairs"] == 40 and out["merchants"] == 150
    assert out["pairs_true_drop"] > 0 and out["pairs_true_flat"] > 0
    assert math.isfinite(out["seconds"]) and out["seconds"] >= 0
    assert set(REQUIRED) <= set(out["proxies"])
    for name, figs in out["proxies"].items():
        for key in CORRELATIONS:
            assert math.isfinite(figs[key]) and -1.0 <= figs[key] <= 1.0, (name, key, figs[key])
        for key in SHARES:
            assert math.isfinite(figs[key]) and 0.0 <= figs[key] <= 1.0, (name, key, figs[key])
    chosen = out["proxies"][out["chosen"]]
    assert chosen["within_merchant_spearman_median"] > 0.5  # the proxy ranks a merchant's variants like GP30
    assert chosen["arm_log_ratio_pearson"] > 0.8
    assert out["bad_vs_good_true_ratio"] < 0.8
    assert out["bad_vs_good_proxy_ratio"] < 0.8  # the trigger fires on the worst challenger
